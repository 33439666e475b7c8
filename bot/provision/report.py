"""Progress while provisioning (a rich bar on a terminal, plain lines otherwise) and the summary."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bot.provision.apply import CHECK, CREATE, Summary

PHASE_LABELS = {CREATE: "创建房间 / creating rooms", CHECK: "核对房间 / checking rooms"}
WAITING = "另一次开通正在进行，等它结束… / another provisioning run is going on: waiting for it"
SHOW = 50  # per list; a province has thousands of rows


class RichReporter:
    """A progress bar per phase; use as a context manager."""

    def __init__(self, out: TextIO) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(file=out),
            transient=False,
        )
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> RichReporter:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def phase(self, name: str, total: int) -> None:
        if total:
            self._tasks[name] = self._progress.add_task(PHASE_LABELS.get(name, name), total=total)

    def advance(self, name: str) -> None:
        if name in self._tasks:
            self._progress.advance(self._tasks[name])

    def waiting(self) -> None:
        self._progress.console.print(WAITING)


class PlainReporter:
    """One line per tenth of each phase: readable in a log or a pipe."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._totals: dict[str, int] = {}
        self._done: dict[str, int] = {}

    def __enter__(self) -> PlainReporter:
        return self

    def __exit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def phase(self, name: str, total: int) -> None:
        self._totals[name], self._done[name] = total, 0
        if total:
            print(f"{PHASE_LABELS.get(name, name)}: 0/{total}", file=self.out, flush=True)

    def advance(self, name: str) -> None:
        total = self._totals.get(name, 0)
        done = self._done[name] = self._done.get(name, 0) + 1
        step = max(1, total // 10)
        if done == total or done % step == 0:
            print(f"{PHASE_LABELS.get(name, name)}: {done}/{total}", file=self.out, flush=True)

    def waiting(self) -> None:
        print(WAITING, file=self.out, flush=True)


def reporter_for(out: TextIO | None = None) -> RichReporter | PlainReporter:
    out = out or sys.stdout
    return RichReporter(out) if out.isatty() else PlainReporter(out)


def format_summary(s: Summary) -> list[str]:
    lines = [
        f"房间 / rooms: {s.rooms}（新建 / created {len(s.created)}，找回 / adopted "
        f"{len(s.adopted)}，更新 / updated {len(s.updated)}，无变化 / unchanged {s.unchanged}）",
        f"邀请 / invited: {len(s.invited)}，移出 / removed: {len(s.removed)}，"
        f"失败 / failed: {len(s.failed)}，请求 / state-changing requests: {s.requests}",
    ]
    _section(lines, "失败 / failed", s.failed)
    _section(
        lines,
        "尚无账号，开通后下次运行时邀请 / no account yet, invited once it exists",
        s.no_account,
    )
    _section(
        lines,
        "名册中无 Matrix 账号，无法邀请 / no Matrix id in the roster, cannot invite",
        s.without_matrix_id,
    )
    _section(
        lines,
        "已离开或拒绝邀请（--reinvite 可重新邀请） / left or declined (see --reinvite)",
        [f"{room}: {user}" for room, user in s.declined],
    )
    _section(lines, "移出 / removed", [f"{room}: {user}" for room, user in s.removed])
    return lines


def _section(lines: list[str], title: str, items: list[str]) -> None:
    if not items:
        return
    lines.append(f"{title}（{len(items)}）：")
    lines.extend(f"  - {item}" for item in items[:SHOW])
    if len(items) > SHOW:
        lines.append(f"  … 另有 {len(items) - SHOW} 项 / and {len(items) - SHOW} more")

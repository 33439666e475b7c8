"""CLI entry points for ``gridbot roster import`` and ``gridbot roster check``.

Output is plain text, one item a line, so it reads the same in a terminal, a pipe or a log.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from bot.config import Limits
from bot.roster.apply import (
    KIND_LABELS,
    UNIT_KIND_LABELS,
    Change,
    ChangeKind,
    Changes,
    import_roster,
)
from bot.roster.check import GAP_LABELS, CoverageSummary, Gap, check_coverage, coverage_summary
from storage.db import Database
from storage.migrate import current_revision, head_revision
from storage.models import UnitKind

# Per kind and group; a first import of a whole province would otherwise print thousands of lines.
SHOW_PER_KIND = 50

_GROUPS = (
    ("added", "新增 / added", "+"),
    ("changed", "变更 / changed", "~"),
    ("deactivated", "停用 / deactivated", "-"),
)


async def cmd_import(
    db: Database,
    path: Path,
    dry_run: bool,
    out: TextIO | None = None,
    *,
    file_wins: bool = False,
    limits: Limits | None = None,
) -> int:
    """Import a roster file; 0 when it was valid (applied or dry run), 1 on errors."""
    out = out or sys.stdout
    result = await import_roster(db, path, dry_run=dry_run, file_wins=file_wins, limits=limits)
    for warning in result.warnings:
        print(f"注意 / note: {warning}", file=out)
    if result.errors:
        for error in result.errors:
            print(error, file=out)
        print(
            f"共 {len(result.errors)} 个错误，未写入任何内容"
            f" / {len(result.errors)} error(s), nothing written",
            file=out,
        )
        return 1
    print(
        f"名册 / roster: {path.name}，{result.rows} 行 / rows，"
        f"范围 / scope: {'、'.join(result.units)}",
        file=out,
    )
    if not result.changes:
        print(
            "没有变化：数据库已与名册一致 / no changes: the database matches the roster", file=out
        )
    else:
        for line in format_changes(result.changes):
            print(line, file=out)
    if dry_run:
        print("试运行，未写入 / dry run, nothing written", file=out)
    elif result.changes:
        print("已导入 / imported", file=out)
    return 0


async def cmd_dry_run(
    url: str,
    path: Path,
    out: TextIO | None = None,
    *,
    file_wins: bool = False,
    limits: Limits | None = None,
) -> int:
    """``gridbot roster import --dry-run``: the diff against the database at ``url``, which it
    leaves exactly as it was (not migrated, not created, nothing written); no homeserver."""
    out = out or sys.stdout
    try:
        db, note = await dry_run_database(url)
    except DryRunRefused as exc:
        print(exc, file=out)
        return 1
    try:
        if note:
            print(f"注意 / note: {note}", file=out)
        return await cmd_import(db, path, True, out, file_wins=file_wins, limits=limits)
    finally:
        await db.close()


class DryRunRefused(Exception):
    """The database cannot be compared with a file without changing it first."""


async def dry_run_database(url: str) -> tuple[Database, str | None]:
    """The database a dry run compares the file with, opened so that nothing is written: it
    is not migrated (``DryRunRefused`` when it is behind this version) and not created (a
    missing SQLite file or a database never migrated is an empty roster, compared in memory).
    Returns it and a note on which it is."""
    if _no_sqlite_file(url):
        return await _empty_database(), _EMPTY_NOTE
    db = Database(url)
    try:
        revision = await current_revision(db.engine)
    except BaseException:
        await db.close()
        raise
    if revision is None:
        await db.close()
        return await _empty_database(), _EMPTY_NOTE
    if revision != head_revision():
        await db.close()
        raise DryRunRefused(
            f"数据库结构是旧版本（{revision}），试运行不会升级它；请先运行 gridbot db upgrade"
            f" / the database is at an older revision ({revision}) and a dry run does not"
            " upgrade it: run gridbot db upgrade first"
        )
    return db, None


def _no_sqlite_file(url: str) -> bool:
    """A SQLite URL whose file does not exist (connecting would create it)."""
    parsed = make_url(url)
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or path in (None, "", ":memory:"):
        return False
    return not Path(path).exists()


_EMPTY_NOTE = (
    "数据库还不存在或是空的：与空名册比较 / the database does not exist yet or is empty:"
    " compared with an empty roster"
)


async def _empty_database() -> Database:
    # One in-memory SQLite connection for the whole run (each new one would be a new database).
    db = Database("sqlite+aiosqlite://", poolclass=StaticPool)
    await db.upgrade()
    return db


def format_changes(changes: Changes, limit: int | None = SHOW_PER_KIND) -> list[str]:
    """The diff grouped as added / changed / deactivated, with counts per kind."""
    lines: list[str] = []
    for attr, title, mark in _GROUPS:
        group: list[Change] = getattr(changes, attr)
        if not group:
            continue
        counts = Counter(c.kind for c in group)
        per_kind = "，".join(f"{KIND_LABELS[k]} {counts[k]}" for k in ChangeKind if counts[k])
        lines.append(f"{title}（{len(group)}）：{per_kind}")
        for kind in ChangeKind:
            of_kind = [c for c in group if c.kind == kind]
            shown = of_kind if limit is None else of_kind[:limit]
            lines.extend(f"  {mark} [{KIND_LABELS[kind]}] {c}" for c in shown)
            if hidden := len(of_kind) - len(shown):
                lines.append(f"  … 另有{KIND_LABELS[kind]} {hidden} 项 / and {hidden} more")
    return lines


async def cmd_check(db: Database, out: TextIO | None = None) -> int:
    """Print coverage gaps; 0 when there are none, 1 otherwise."""
    out = out or sys.stdout
    gaps = await check_coverage(db)
    summary = await coverage_summary(db)
    for line in format_gaps(gaps):
        print(line, file=out)
    print(_summary_line(summary), file=out)
    if gaps:
        print(f"发现 {len(gaps)} 处缺口 / {len(gaps)} gap(s) found", file=out)
        return 1
    if summary.units == 0:
        print("名册为空，请先导入 / the roster is empty; import one first", file=out)
    else:
        print("网格全覆盖，检查通过 / full coverage, check passed", file=out)
    return 0


def format_gaps(gaps: list[Gap]) -> list[str]:
    lines: list[str] = []
    by_kind: dict[str, list[Gap]] = {}
    for gap in gaps:
        by_kind.setdefault(gap.kind, []).append(gap)
    for kind, label in GAP_LABELS.items():
        group = by_kind.get(kind, [])
        if group:
            lines.append(f"{label}（{len(group)}）：")
            lines.extend(f"  - {gap}" for gap in group)
    return lines


def _summary_line(s: CoverageSummary) -> str:
    # 单位 counts every unit, as an import's 新增 line does (province and city too).
    kinds = "，".join(
        f"{UNIT_KIND_LABELS[UnitKind(kind)]} {n}" for kind, n in s.units_by_kind.items() if n
    )
    return (
        f"在册 / active: 单位 {s.units}{f'（{kinds}）' if kinds else ''}，"
        f"一级网格 {s.level1_grids}，二级网格 {s.level2_grids}，"
        f"企业 {s.enterprises}（已登记经纬度 {s.located}），二级网格员 {s.level2_members}"
        f" / units, level-1 grids, level-2 grids, enterprises (with coordinates),"
        " level-2 members"
    )

"""``gridbot report``: the same reports on the command line, written as files.

    gridbot report year 2026 县:芦溪县 --format xlsx,html --out reports/ -c bot.yaml

The words are those of /report (kind, period, scope); the operator sees everything (like an
admin). The chat summary is printed (plain text); the chart, the workbook and the work report
are written into ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

# Only what building the parser needs at import: every `gridbot` command builds it.
if TYPE_CHECKING:
    from bot.config import Config
    from bot.outgoing import Attachment
    from storage.db import Database


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "words",
        nargs="*",
        help="month|quarter|year (月|季|年), a period (2026-11, 2026Q3, 2026, 上月), a scope "
        "(县:芦溪县, 市:萍乡市, 领域:货运, 网格员 张敏)",
    )
    p.add_argument(
        "--format",
        default="",
        help="files besides the chart: xlsx, html (comma-separated; default xlsx, and html "
        "for a year; 'chat' for the chart only)",
    )
    p.add_argument("--out", default=".", help="folder for the files (default: here)")
    p.add_argument("--locale", choices=("zh_CN", "en"), help="language (default: the config's)")


def _write(out: Path, attachments: list[Attachment]) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for attachment in attachments:
        assert attachment.data is not None
        (out / attachment.name).write_bytes(attachment.data)
        names.append(str(out / attachment.name))
    return names


async def run(db: Database, config: Config, args: argparse.Namespace) -> int:
    from bot.errors import UserError
    from handlers.reports import files
    from handlers.reports.build import build
    from handlers.reports.period import PeriodError, parse, window
    from handlers.reports.scope import ReportError, read, resolve
    from messages import Messages
    from storage.directory import Reach

    messages = Messages()
    locale = args.locale or config.language
    text = " ".join(args.words)
    if args.format:
        text += f" --format {args.format}"
    now = datetime.now(UTC).astimezone(config.tz)
    try:
        ask = read(text)
        try:
            period = parse(ask.kind, ask.period, now.date())
        except PeriodError as err:
            raise ReportError(f"period_{err.key}", err.text) from None
        async with db.transaction() as session:
            target = await resolve(
                session, Reach(everything=True), None, ask, window(period, config.tz, now)
            )
            report = await build(session, config, target, period, now)
    except UserError as err:
        print(messages.render(locale, err.template, **err.values).plain)
        return 2
    formats = ask.formats or files.default_formats(period.kind)
    rendered = await files.render(report, formats, locale, messages)
    names = await asyncio.to_thread(_write, Path(args.out), rendered.files)
    summary = messages.render(
        locale,
        "report_summary",
        **rendered.summary,
        files=names,
        scheduled=False,
        late=False,
        due_at=None,
    )
    print(summary.plain)
    return 0

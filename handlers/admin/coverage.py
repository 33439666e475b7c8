"""/coverage (/网格检查): the plan's coverage check (``gridbot roster check``) in the admin room."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bot.commands import command
from bot.context import CommandContext
from bot.roster.check import check_coverage, coverage_summary
from bot.roster.commands import _summary_line
from handlers.admin.roster import ADMIN_ROLES, ADMIN_ROOMS
from storage import admins as admin_store

SHOW_GAPS = 40


class InSession:
    """The event's transaction where the roster check wants a Database: it reads in the same
    snapshot as the rest of the event."""

    def __init__(self, session: Any) -> None:
        self.session = session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        yield self.session


@command(
    "coverage",
    aliases=("网格检查",),
    summary={
        "zh_CN": "网格覆盖检查：列出没有网格长、负责人或网格员的缺口",
        "en": "coverage check: list grids and enterprises without a chief or member",
    },
    roles=ADMIN_ROLES,
    rooms=ADMIN_ROOMS,
)
async def coverage(ctx: CommandContext) -> None:
    db: Any = InSession(ctx.session)
    gaps = await check_coverage(db)
    if ctx.identity.admin_units is not None:
        mine = set(await admin_store.unit_names(ctx.session, ctx.identity.admin_units))
        gaps = [g for g in gaps if g.unit in mine]
    summary = _summary_line(await coverage_summary(db))
    ctx.reply(
        "admin_coverage",
        gaps=[str(g) for g in gaps[:SHOW_GAPS]],
        total=len(gaps),
        more=max(0, len(gaps) - SHOW_GAPS),
        summary=summary,
    )

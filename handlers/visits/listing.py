"""/visits (/走访情况) [month]: visit compliance for the sender's scope.

A level-2 member sees their own enterprises, visited or not; a level-2 chief or office member
sees their grid; level-1 staff see the level-2 grids of their county; admins see every grid.
The table is HTML with a plain-text fallback that draws a ▇ bar per member. Every visit is
marked where it was made (现场 on site, 异地 away with the distance, 未定位 not located: the
one rule, storage.visits.siting, against config ``visits.onsite_radius_m``): a member sees each
of their visits, the coverage table the counts per pair (or per member) and the farthest away.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from bot import dates
from bot.commands import DIRECT, GRID_ROOMS, Arg, ArgError, command, tr
from bot.context import CommandContext
from bot.errors import UserError
from storage.directory import Action, level2_grids_in, reach, roles_for
from storage.visit_reports import GridCoverage, Sitings, coverage, pairs_for_month, rate

# Above this many member × enterprise pairs the table lists members only (a Matrix event
# must stay well under 64 KiB).
DETAIL_LIMIT = 150
BAR_WIDTH = 10

_MONTH_ARG = Arg({"zh_CN": "月份", "en": "month"}, required=False, key="month")


@command(
    "visits",
    aliases=("走访情况", "走访统计"),
    summary={"zh_CN": "查看本月（或指定月份）走访完成情况", "en": "visit coverage for a month"},
    details={
        "zh_CN": (
            "网格员：自己负责的企业本月已走访、未走访情况。网格长、办公室和管理员：所辖范围内"
            "网格员×企业走访次数与覆盖率。月份可写 2026-11、11月、上月，默认本月。"
        ),
        "en": (
            "Members: their enterprises visited or not this month. Chiefs, offices and admins: "
            "the member × enterprise visit counts and coverage of their scope. The month may be "
            "2026-11, 11月 or 上月 (last month); default this month."
        ),
    },
    args=(_MONTH_ARG,),
    roles=roles_for(Action.COVERAGE) | roles_for(Action.VISIT),
    rooms=GRID_ROOMS | {DIRECT},
)
async def visits_report(ctx: CommandContext) -> None:
    today = dates.today(ctx.services.config.tz)
    try:
        year, month = _month(ctx.args.get("month"), today)
    except ArgError as err:  # read here, not by the Arg: "上月" depends on today
        cmd = ctx.command
        assert cmd is not None
        raise UserError(
            "usage",
            usage=cmd.usage(ctx.locale),
            reason=tr(err.reason, ctx.locale),
            summary=tr(cmd.summary, ctx.locale),
            name=cmd.name,
        ) from None
    current = (year, month) == (today.year, today.month)
    upto = today if current else None
    overseen = reach(ctx.identity, Action.COVERAGE)
    if overseen.empty:  # a member: their own enterprises
        await _member_view(ctx, year, month, upto, current, today)
        return
    grids = await level2_grids_in(ctx.session, overseen)
    radius = ctx.services.config.visits.onsite_radius_m
    bounds = dates.month_bounds(year, month)
    table = await coverage(ctx.session, bounds, grids, upto=upto, radius_m=radius)
    ctx.reply("visits_table", **table_values(table, year, month, current))


def _month(text: str | None, today: date) -> tuple[int, int]:
    if not text:
        return today.year, today.month
    parsed = dates.parse_month(text, today)
    if parsed is None:
        raise ArgError(
            {"zh_CN": f"看不懂月份：{text}（例如 2026-11）", "en": f"unreadable month: {text}"}
        )
    if parsed > (today.year, today.month):
        raise ArgError({"zh_CN": f"月份还没到：{text}", "en": f"that month is ahead: {text}"})
    return parsed


async def _member_view(
    ctx: CommandContext, year: int, month: int, upto: date | None, current: bool, today: date
) -> None:
    person = ctx.identity.person
    assert person is not None  # every role above the admin one comes with a roster person
    bounds = dates.month_bounds(year, month)
    radius = ctx.services.config.visits.onsite_radius_m
    pairs = await pairs_for_month(
        ctx.session, bounds, person_id=person.id, upto=upto, radius_m=radius
    )
    last = bounds[1]
    ctx.reply(
        "visits_member",
        month=f"{year}-{month:02d}",
        current=current,
        days_left=(last - today).days if current else 0,
        visited=[
            {
                "name": p.enterprise_name,
                "count": p.visits,
                "last": p.last,
                "visits": [{"code": m.code, "day": m.day, "siting": m.siting} for m in p.marks],
            }
            for p in pairs
            if p.visited
        ],
        missing=[p.enterprise_name for p in pairs if not p.visited],
        rate=rate(sum(p.visited for p in pairs), len(pairs)),
    )


def _sitings(s: Sitings) -> dict[str, Any]:
    """Template values of how visits were made: on site, away (and the farthest), not located."""
    return {"onsite": s.onsite, "away": s.away, "unlocated": s.unlocated, "farthest": s.farthest}


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    filled = round(width * done / total) if total else width
    return "▇" * filled + "░" * (width - filled)


def table_values(table: list[GridCoverage], year: int, month: int, current: bool) -> dict[str, Any]:
    """Template values for a coverage table (shared with the month-end summaries)."""
    total = sum(g.total for g in table)
    visited = sum(g.visited for g in table)
    grids = [
        {
            "name": g.name,
            "total": g.total,
            "visited": g.visited,
            "rate": rate(g.visited, g.total),
            "unserved": g.unserved,
            "members": [
                {
                    "name": m.name,
                    "user_id": m.matrix_id,
                    "total": m.total,
                    "visited": m.visited,
                    "visits": m.visits,
                    "bar": bar(m.visited, m.total),
                    "missing": [p.enterprise_name for p in m.missing],
                    "sitings": _sitings(m.sitings),
                    "pairs": [
                        {
                            "name": p.enterprise_name,
                            "count": p.visits,
                            "sitings": _sitings(p.sitings),
                        }
                        for p in m.pairs
                    ],
                }
                for m in g.members
            ],
        }
        for g in table
    ]
    return {
        "month": f"{year}-{month:02d}",
        "current": current,
        "grids": grids,
        "total": total,
        "visited": visited,
        "rate": rate(visited, total),
        "detail": total <= DETAIL_LIMIT,
    }

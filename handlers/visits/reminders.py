"""The duties the plan schedules: monthly visits and quarterly safety meetings.

A planner keeps one ScheduledJob row per occurrence (keys below) for this month and the next,
so the database always knows what is due; the scheduler runs each row once, and a row whose
time passed while the bot was down runs at start and its message says it is late.

    visit-reminder:2026-11-20     members with unvisited enterprises (timing.visits.reminder_days)
    visit-gaps:2026-11            the month's gaps to level-2 chiefs and level-1 offices
                                  (timing.visits.summary_day of the next month)
    meeting-reminder:2026-Q4:12-15  level-2 chiefs with no meeting this quarter
                                  (timing.visits.meeting_reminder_days in the quarter's last month)
    meeting-gaps:2026-Q4          grids without a meeting to the level-1 chief (summary_day)

All at timing.visits.reminder_hour local time. Where messages go: the level-2 room of the grid
(mentioning the members or the chief) and the level-1 room (mentioning the office or the chief),
looked up in RoomInfo; a grid without such a room falls back to each person's direct chat with
the bot when one is known (storage.visits.direct_room_with), else it is logged and skipped.

Only future occurrences are planned: a fresh install does not send the month's past reminders.
A late reminder is dropped when it is already stale: its month (or quarter) is over, or a later
reminder of the same kind is due as well (that one is sent instead), so nothing arrives twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import scheduler
from bot.context import Services
from bot.dates import month_bounds, quarter_of
from bot.scheduler import JobContext
from handlers.visits.listing import table_values
from storage.directory import L1_OFFICE, L1_ROOM, L2_ROOM, Contact, holders, room_of
from storage.models import Grid, RoleKind, ScheduledJob
from storage.visit_reports import coverage, level2_grids, pairs_for_month
from storage.visits import direct_room_with, language_of, meeting_grids_in

log = logging.getLogger(__name__)


# --- planning --------------------------------------------------------------------------------


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


@scheduler.planner
async def plan_obligations(session: AsyncSession, services: Services, now: datetime) -> None:
    """Make sure this month's and next month's occurrences exist as job rows."""
    tz = services.config.tz
    timing = services.config.timing.visits
    today = now.astimezone(tz).date()

    def at(year: int, month: int, day: int) -> datetime:
        return datetime.combine(date(year, month, day), time(timing.reminder_hour), tz)

    async def plan(kind: str, key: str, due: datetime, payload: dict[str, Any]) -> None:
        if due > now:  # past occurrences never planned so far are not invented afterwards
            await scheduler.schedule(session, kind, key, due, payload)

    this = (today.year, today.month)
    for year, month in (this, _next_month(*this)):
        after = _next_month(year, month)
        for day in timing.reminder_days:
            await plan(
                "visit-reminder",
                f"visit-reminder:{year}-{month:02d}-{day:02d}",
                at(year, month, day),
                {"year": year, "month": month, "day": day},
            )
        await plan(
            "visit-gaps",
            f"visit-gaps:{year}-{month:02d}",
            at(*after, timing.summary_day),
            {"year": year, "month": month},
        )
        if month % 3:
            continue  # only the last month of a quarter has meeting duties
        quarter = month // 3
        for day in timing.meeting_reminder_days:
            await plan(
                "meeting-reminder",
                f"meeting-reminder:{year}-Q{quarter}:{month:02d}-{day:02d}",
                at(year, month, day),
                {"year": year, "quarter": quarter, "day": day},
            )
        await plan(
            "meeting-gaps",
            f"meeting-gaps:{year}-Q{quarter}",
            at(*after, timing.summary_day),
            {"year": year, "quarter": quarter},
        )


# --- jobs ------------------------------------------------------------------------------------


@scheduler.job("visit-reminder")
async def visit_reminder(ctx: JobContext) -> None:
    year, month = ctx.payload["year"], ctx.payload["month"]
    today = _today(ctx)
    if (today.year, today.month) != (year, month):
        log.info("%s skipped: the month is over (the month-end summary covers it)", ctx.job.key)
        return
    if ctx.payload.get("day") not in ctx.services.config.timing.visits.reminder_days:
        log.info("%s skipped: the day is no longer configured", ctx.job.key)
        return
    if await _superseded(ctx):
        return
    pairs = await pairs_for_month(ctx.session, year, month, upto=today)
    missing: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for p in pairs:
        if p.visited or (p.until is not None and p.until < today):
            continue
        member = missing[p.grid_id].setdefault(
            p.person_id, {"name": p.person_name, "user_id": p.matrix_id, "missing": []}
        )
        member["missing"].append(p.enterprise_name)
    last = month_bounds(year, month)[1]
    for grid in await level2_grids(ctx.session):
        members = list(missing.get(grid.id, {}).values())
        if not members:
            continue
        values = {
            "month": f"{year}-{month:02d}",
            "grid": grid.name,
            "last_day": last,
            "days_left": (last - today).days,
        }
        room = await room_of(ctx.session, L2_ROOM, grid.id)
        if room is not None:
            ids = [m["user_id"] for m in members if m["user_id"]]
            ctx.send(room, "visit_reminder", mentions=ids, members=members, **values)
            continue
        for m in members:  # no level-2 room: each member's direct chat, if known
            await _send_direct(ctx, m["user_id"], "visit_reminder", members=[m], **values)


@scheduler.job("visit-gaps")
async def visit_gaps(ctx: JobContext) -> None:
    year, month = ctx.payload["year"], ctx.payload["month"]
    grids = await level2_grids(ctx.session)
    table = {g.grid_id: g for g in await coverage(ctx.session, year, month, grids)}
    by_parent: dict[int, list[Grid]] = defaultdict(list)
    for grid in grids:
        cov = table[grid.id]
        if grid.parent_id is not None:
            by_parent[grid.parent_id].append(grid)
        if not cov.members and not cov.unserved:
            continue
        values = table_values([cov], year, month, current=False)
        chiefs = await holders(ctx.session, {RoleKind.L2_CHIEF}, grid_id=grid.id)
        room = await room_of(ctx.session, L2_ROOM, grid.id)
        await _tell(ctx, room, chiefs, "visit_gaps", scope=grid.name, level=2, **values)
    for parent_id, children in by_parent.items():
        parent = await ctx.session.get(Grid, parent_id)
        if parent is None or not parent.active:
            continue
        values = table_values([table[g.id] for g in children], year, month, current=False)
        office = await holders(ctx.session, L1_OFFICE, grid_id=parent_id)
        room = await room_of(ctx.session, L1_ROOM, parent_id)
        await _tell(ctx, room, office, "visit_gaps", scope=parent.name, level=1, **values)


@scheduler.job("meeting-reminder")
async def meeting_reminder(ctx: JobContext) -> None:
    year, quarter = ctx.payload["year"], ctx.payload["quarter"]
    today = _today(ctx)
    if quarter_of(today) != (year, quarter):
        log.info("%s skipped: the quarter is over (the quarter summary covers it)", ctx.job.key)
        return
    if ctx.payload.get("day") not in ctx.services.config.timing.visits.meeting_reminder_days:
        log.info("%s skipped: the day is no longer configured", ctx.job.key)
        return
    if await _superseded(ctx):
        return
    first, last = _quarter_bounds(year, quarter)
    held = await meeting_grids_in(ctx.session, first, today)
    for grid in await level2_grids(ctx.session):
        if grid.id in held:
            continue
        chiefs = await holders(ctx.session, {RoleKind.L2_CHIEF}, grid_id=grid.id)
        room = await room_of(ctx.session, L2_ROOM, grid.id)
        await _tell(
            ctx,
            room,
            chiefs,
            "meeting_reminder",
            grid=grid.name,
            year=year,
            quarter=quarter,
            last_day=last,
            days_left=(last - today).days,
        )


@scheduler.job("meeting-gaps")
async def meeting_gaps(ctx: JobContext) -> None:
    year, quarter = ctx.payload["year"], ctx.payload["quarter"]
    first, last = _quarter_bounds(year, quarter)
    held = await meeting_grids_in(ctx.session, first, last)
    level1 = await ctx.session.scalars(
        select(Grid).where(Grid.level == 1, Grid.active.is_(True)).order_by(Grid.name, Grid.id)
    )
    for parent in list(level1):
        children = await level2_grids(ctx.session, parent_ids=[parent.id])
        if not children:
            continue
        missing = []
        for grid in children:
            if grid.id not in held:
                chiefs = await holders(ctx.session, {RoleKind.L2_CHIEF}, grid_id=grid.id)
                missing.append({"grid": grid.name, "chiefs": [p.name for p in chiefs]})
        chiefs = await holders(ctx.session, {RoleKind.L1_CHIEF}, grid_id=parent.id)
        room = await room_of(ctx.session, L1_ROOM, parent.id)
        await _tell(
            ctx,
            room,
            chiefs,
            "meeting_gaps",
            scope=parent.name,
            year=year,
            quarter=quarter,
            missing=missing,
            total=len(children),
        )


# --- helpers ---------------------------------------------------------------------------------


def _today(ctx: JobContext) -> date:
    return ctx.now.astimezone(ctx.services.config.tz).date()


def _quarter_bounds(year: int, quarter: int) -> tuple[date, date]:
    return date(year, 3 * quarter - 2, 1), month_bounds(year, 3 * quarter)[1]


async def _superseded(ctx: JobContext) -> bool:
    """A later occurrence of the same kind is due too (the bot was down): let that one speak."""
    later = await ctx.session.scalar(
        select(ScheduledJob.key)
        .where(
            ScheduledJob.kind == ctx.job.kind,
            ScheduledJob.done_at.is_(None),
            ScheduledJob.due_at > ctx.job.due_at,
            ScheduledJob.due_at <= ctx.now,
        )
        .limit(1)
    )
    if later is not None:
        log.info("%s skipped: %s is due as well and is sent instead", ctx.job.key, later)
    return later is not None


async def _tell(
    ctx: JobContext,
    room: str | None,
    people: list[Contact],
    template: str,
    **values: Any,
) -> None:
    """One message in ``room`` mentioning ``people``, or else one in each one's direct chat."""
    ids = [p.user_id for p in people if p.user_id]
    if room is not None:
        ctx.send(room, template, mentions=ids, people=_named(people), **values)
        return
    for p in people:
        await _send_direct(ctx, p.user_id, template, people=_named([p]), **values)


def _named(people: list[Contact]) -> list[dict[str, Any]]:
    return [p.as_dict() for p in people]


async def _send_direct(ctx: JobContext, user_id: str | None, template: str, **values: Any) -> None:
    room = await direct_room_with(ctx.session, user_id) if user_id else None
    if room is None:
        log.warning("%s: no room to reach %s; not sent", ctx.job.key, user_id or "(no Matrix id)")
        return
    locale = await language_of(ctx.session, user_id) if user_id else None
    ctx.send(room, template, locale=locale, mentions=[user_id] if user_id else [], **values)

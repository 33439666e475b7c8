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

Each asks someone to act, so each rings (an m.text mentioning exactly those who must act); a
summary with nothing left to do is a quiet m.notice that mentions nobody.

Only future occurrences are planned: a fresh install does not send the month's past reminders.
A late reminder is dropped when it is already stale: its month (or quarter) is over, or a later
reminder of the same kind is due as well (that one is sent instead), so nothing arrives twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any

from bot import scheduler
from bot.context import Services
from bot.dates import month_bounds, quarter_of
from bot.scheduler import JobContext
from handlers.visits.listing import table_values
from storage import jobs
from storage.db import Session
from storage.directory import L1_OFFICE, L1_ROOM, L2_ROOM, Contact, holders, room_of
from storage.models import Grid, RoleKind
from storage.visit_reports import coverage, level1_grids, level2_grids, pairs_for_month
from storage.visits import direct_room_with, language_of, meeting_grids_in

log = logging.getLogger(__name__)


# --- planning --------------------------------------------------------------------------------


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


@scheduler.planner
async def plan_obligations(session: Session, services: Services, now: datetime) -> None:
    """Make sure this month's and next month's occurrences exist as job rows."""
    tz = services.config.tz
    timing = services.config.timing.visits
    today = now.astimezone(tz).date()

    def at(year: int, month: int, day: int) -> datetime:
        return datetime.combine(date(year, month, day), time(timing.reminder_hour), tz)

    async def plan(kind: str, key: str, due: datetime, payload: dict[str, Any]) -> None:
        if due > now:  # past occurrences never planned so far are not invented afterwards
            await scheduler.schedule(session, kind, key, due, payload)

    async def duty(
        name: str, month: tuple[int, int], period: str, days: Iterable[int], payload: dict[str, int]
    ) -> None:
        """A duty that ends with ``month``: its reminders on ``days`` of that month and the
        summary of its ``period`` on the summary day of the month after."""
        year, mon = month
        # The keys as they always were (rows already planned must match).
        day_key = f"{period}-" if name == "visit" else f"{period}:{mon:02d}-"
        for day in days:
            key = f"{name}-reminder:{day_key}{day:02d}"
            await plan(f"{name}-reminder", key, at(year, mon, day), {**payload, "day": day})
        summary = at(*_next_month(year, mon), timing.summary_day)
        await plan(f"{name}-gaps", f"{name}-gaps:{period}", summary, payload)

    this = (today.year, today.month)
    for year, month in (this, _next_month(*this)):
        days = timing.reminder_days
        payload = {"year": year, "month": month}
        await duty("visit", (year, month), f"{year}-{month:02d}", days, payload)
        if month % 3 == 0:  # only the last month of a quarter has meeting duties
            q, days = month // 3, timing.meeting_reminder_days
            payload = {"year": year, "quarter": q}
            await duty("meeting", (year, month), f"{year}-Q{q}", days, payload)


# --- jobs ------------------------------------------------------------------------------------


@scheduler.job("visit-reminder")
async def visit_reminder(ctx: JobContext) -> None:
    year, month = ctx.payload["year"], ctx.payload["month"]
    today = _today(ctx)
    ongoing = (today.year, today.month) == (year, month)
    if not await _stands(ctx, ongoing, ctx.services.config.timing.visits.reminder_days):
        return
    pairs = await pairs_for_month(ctx.session, month_bounds(year, month), upto=today)
    missing: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)
    for p in pairs:
        if p.visited or (p.until is not None and p.until < today):
            continue
        member = missing[p.grid_id].setdefault(
            p.person_id, {"name": p.person_name, "user_id": p.matrix_id, "missing": []}
        )
        member["missing"].append(p.enterprise_name)
    last = month_bounds(year, month)[1]
    values = {"month": f"{year}-{month:02d}", "last_day": last, "days_left": (last - today).days}
    for grid in await level2_grids(ctx.session):
        members = list(missing.get(grid.id, {}).values())
        if members:
            room = await room_of(ctx.session, L2_ROOM, grid.id)
            await _tell(ctx, room, "visit_reminder", members, "members", grid=grid.name, **values)


@scheduler.job("visit-gaps")
async def visit_gaps(ctx: JobContext) -> None:
    year, month = ctx.payload["year"], ctx.payload["month"]
    grids = await level2_grids(ctx.session)
    radius = ctx.services.config.visits.onsite_radius_m
    table = {
        g.grid_id: g
        for g in await coverage(ctx.session, month_bounds(year, month), grids, radius_m=radius)
    }
    by_parent: dict[int, list[Grid]] = defaultdict(list)
    for grid in grids:
        if grid.parent_id is not None:
            by_parent[grid.parent_id].append(grid)
        if table[grid.id].members or table[grid.id].unserved:
            chiefs = await holders(ctx.session, {RoleKind.L2_CHIEF}, grid_id=grid.id)
            await _summarize(ctx, L2_ROOM, grid, chiefs, [table[grid.id]], level=2)
    for parent in await level1_grids(ctx.session):
        children = by_parent.get(parent.id)
        if children:
            office = await holders(ctx.session, L1_OFFICE, grid_id=parent.id)
            await _summarize(ctx, L1_ROOM, parent, office, [table[g.id] for g in children], level=1)


@scheduler.job("meeting-reminder")
async def meeting_reminder(ctx: JobContext) -> None:
    year, quarter = ctx.payload["year"], ctx.payload["quarter"]
    today = _today(ctx)
    ongoing = quarter_of(today) == (year, quarter)
    if not await _stands(ctx, ongoing, ctx.services.config.timing.visits.meeting_reminder_days):
        return
    first, last = _quarter_bounds(year, quarter)
    held = await meeting_grids_in(ctx.session, first, today)
    values = {"year": year, "quarter": quarter, "last_day": last, "days_left": (last - today).days}
    for grid in await level2_grids(ctx.session):
        if grid.id not in held:
            chiefs = await holders(ctx.session, {RoleKind.L2_CHIEF}, grid_id=grid.id)
            room = await room_of(ctx.session, L2_ROOM, grid.id)
            await _tell(ctx, room, "meeting_reminder", _named(chiefs), grid=grid.name, **values)


@scheduler.job("meeting-gaps")
async def meeting_gaps(ctx: JobContext) -> None:
    year, quarter = ctx.payload["year"], ctx.payload["quarter"]
    held = await meeting_grids_in(ctx.session, *_quarter_bounds(year, quarter))
    for parent in await level1_grids(ctx.session):
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
        values = {"year": year, "quarter": quarter, "scope": parent.name, "total": len(children)}
        act = bool(missing)
        await _tell(ctx, room, "meeting_gaps", _named(chiefs), act=act, missing=missing, **values)


# --- helpers ---------------------------------------------------------------------------------


def _today(ctx: JobContext) -> date:
    return ctx.now.astimezone(ctx.services.config.tz).date()


def _quarter_bounds(year: int, quarter: int) -> tuple[date, date]:
    return date(year, 3 * quarter - 2, 1), month_bounds(year, 3 * quarter)[1]


async def _stands(ctx: JobContext, ongoing: bool, days: Iterable[int]) -> bool:
    """Whether a reminder is still worth sending: its month (or quarter) is not over (the
    summary covers it then), its day is still configured, and no later reminder of its kind
    is due as well (the bot was down: that one speaks instead)."""
    if not ongoing:
        why = "its period is over (the summary covers it)"
    elif ctx.payload.get("day") not in days:
        why = "the day is no longer configured"
    elif later := await jobs.later_one_due(ctx.session, ctx.job.kind, ctx.job.due_at, ctx.now):
        why = f"{later} is due as well and is sent instead"
    else:
        return True
    log.info("%s skipped: %s", ctx.job.key, why)
    return False


async def _summarize(
    ctx: JobContext, kind: str, grid: Grid, people: list[Contact], table: list[Any], level: int
) -> None:
    """The month's coverage of ``table`` in the ``kind`` room of ``grid``, for ``people``;
    it asks them to act while a visit is missing or an enterprise has no member."""
    year, month = ctx.payload["year"], ctx.payload["month"]
    values = table_values(table, year, month, current=False)
    act = values["visited"] < values["total"] or any(g["unserved"] for g in values["grids"])
    room = await room_of(ctx.session, kind, grid.id)
    await _tell(
        ctx, room, "visit_gaps", _named(people), act=act, scope=grid.name, level=level, **values
    )


async def _tell(
    ctx: JobContext,
    room: str | None,
    template: str,
    people: list[dict[str, Any]],
    key: str = "people",
    *,
    act: bool = True,
    **values: Any,
) -> None:
    """One message in ``room`` naming ``people`` (dicts with "user_id" and "name", given to
    the template as ``key``), or else one in each one's direct chat. When it asks them to
    ``act`` it rings them; otherwise it is a notice that mentions nobody."""
    if room is not None:
        ids = [p["user_id"] for p in people if p["user_id"]] if act else []
        ctx.send(room, template, mentions=ids, rings=act, **{key: people}, **values)
        return
    for p in people:  # no room for the grid: each one's direct chat, if known
        await _send_direct(ctx, p["user_id"], template, act, **{key: [p]}, **values)


def _named(people: list[Contact]) -> list[dict[str, Any]]:
    return [p.as_dict() for p in people]


async def _send_direct(
    ctx: JobContext, user_id: str | None, template: str, act: bool, **values: Any
) -> None:
    room = await direct_room_with(ctx.session, user_id) if user_id else None
    if room is None:
        log.warning("%s: no room to reach %s; not sent", ctx.job.key, user_id or "(no Matrix id)")
        return
    locale = await language_of(ctx.session, user_id) if user_id else None
    mentions = [user_id] if user_id and act else []
    ctx.send(room, template, locale=locale, mentions=mentions, rings=act, **values)

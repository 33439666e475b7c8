"""Reports and training obligations on schedule (timing.reports; all at ``hour`` local time).

    report-monthly:2026-11      the month's report in each level-1 room, on the first working
                                day of the next month (official calendar, 调休 included)
    report-quarterly:2026-Q3    the quarter's report in each level-2 room, on the first working
                                day after the quarter
    report-annual:2026          a draft annual work report (HTML + workbook) in each level-1
                                room on ``annual_draft`` (MM-DD)
    training-annual:2026        level-2 chiefs and members not trained this year, to the
                                level-1 office, ``training_notice_days`` before ``training_by``
    training-newcomers:2026-11-30  people in a level-2 role with no training on record at all
                                (先培训、后上岗), to the level-1 office, weekly on
                                ``newcomer_weekday``: those who took up the post in the last
                                week, and a reminder of the earlier ones

Like the visit reminders (handlers/visits/reminders.py) a planner keeps the rows of the
coming occurrences (idempotent by key; only future ones, so a fresh install invents no past
report); each runs once, a late one says so. A report that is ready rings those who must read
it (the level-1 office; a level-2 grid's chief), and the training lists ask the office to act:
m.text mentioning them (bot.rings).
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Any

from bot import scheduler
from bot.context import Services
from bot.dates import is_workday
from bot.scheduler import JobContext
from handlers.reports import files
from handlers.reports.build import Target, build
from handlers.reports.model import COUNTY, GRID
from handlers.reports.period import MONTH, QUARTER, YEAR, Period, containing, window
from storage import reports as db
from storage.db import Session
from storage.directory import L1_OFFICE, L1_ROOM, L2_ROOM, Contact, Reach, holders, rooms_of
from storage.models import RoleKind
from storage.reports import Scope

log = logging.getLogger(__name__)


def first_working_day(year: int, month: int) -> date:
    day = date(year, month, 1)
    while not is_workday(day):
        day += timedelta(days=1)
    return day


def _month_day(text: str, year: int) -> date | None:
    if not text:
        return None
    month, day = (int(x) for x in text.split("-"))
    try:
        return date(year, month, day)
    except ValueError:  # 02-29 in a common year
        return date(year, month, 28)


@scheduler.planner
async def plan_reports(session: Session, services: Services, now: datetime) -> None:
    config = services.config
    timing = config.timing.reports
    tz = config.tz
    today = now.astimezone(tz).date()

    def at(day: date) -> datetime:
        return datetime.combine(day, time(timing.hour), tz)

    async def plan(kind: str, key: str, day: date, payload: dict[str, Any]) -> None:
        if at(day) > now:
            await scheduler.schedule(session, kind, key, at(day), payload)

    this = containing(MONTH, today)
    for month in (this, Period(MONTH, this.year + (this.number == 12), this.number % 12 + 1)):
        reported = month.previous()
        day = first_working_day(month.year, month.number)
        if timing.monthly:
            await plan(
                "report-monthly",
                f"report-monthly:{reported.label}",
                day,
                {"year": reported.year, "month": reported.number},
            )
        if timing.quarterly and month.number % 3 == 1:
            quarter = containing(QUARTER, reported.first)
            await plan(
                "report-quarterly",
                f"report-quarterly:{quarter.year}-Q{quarter.number}",
                day,
                {"year": quarter.year, "quarter": quarter.number},
            )
    for year in (today.year, today.year + 1):
        draft = _month_day(timing.annual_draft, year)
        if draft is not None:
            of = year if draft.month >= 7 else year - 1
            await plan("report-annual", f"report-annual:{of}", draft, {"year": of})
        by = _month_day(timing.training_by, year)
        if by is not None:
            notice = by - timedelta(days=timing.training_notice_days)
            payload = {"year": year, "by": by.isoformat()}
            await plan("training-annual", f"training-annual:{year}", notice, payload)
    weekday = timing.newcomer_weekday - 1
    upcoming = today + timedelta(days=(weekday - today.weekday()) % 7)
    for day in (upcoming, upcoming + timedelta(days=7)):
        since = day - timedelta(days=7)
        payload = {"since": since.isoformat()}
        await plan("training-newcomers", f"training-newcomers:{day.isoformat()}", day, payload)


# --- reports --------------------------------------------------------------------------------


async def _post(
    ctx: JobContext,
    room: str,
    target: Target,
    period: Period,
    readers: list[Contact],
    *,
    draft: bool = False,
) -> None:
    """Post a report that is ready, ringing those who must read it (bot.rings)."""
    config = ctx.services.config
    report = await build(ctx.session, config, target, period, ctx.now, draft=draft)
    formats = files.default_formats(period.kind)
    rendered = await files.render(report, formats, config.language, ctx.services.messages)
    names = [f.name for f in rendered.files]
    ctx.send(
        room,
        "report_summary",
        mentions=[p.user_id for p in readers if p.user_id],
        rings=True,
        **rendered.summary,
        files=names,
        scheduled=True,
        readers=[p.name for p in readers],
    )
    for attachment in rendered.files:
        ctx.send(room, None, attachment=attachment)


async def _counties(ctx: JobContext) -> list[tuple[db.Unit, str]]:
    counties = await db.counties(ctx.session, Scope(Reach(everything=True)))
    rooms = await rooms_of(ctx.session, L1_ROOM, [u.key for u in counties if u.key])
    missing = [u.name for u in counties if u.key not in rooms]
    if missing:
        log.warning("%s: no level-1 room for %s; not sent", ctx.job.key, "、".join(missing))
    return [(u, rooms[u.key]) for u in counties if u.key in rooms]


def _county(unit: db.Unit) -> Target:
    return Target(COUNTY, Scope(Reach(l1_grids=frozenset({unit.key or 0}))), unit.name)


@scheduler.job("report-monthly")
async def monthly_report(ctx: JobContext) -> None:
    period = Period(MONTH, ctx.payload["year"], ctx.payload["month"])
    for unit, room in await _counties(ctx):
        office = await holders(ctx.session, L1_OFFICE, grid_id=unit.key)
        await _post(ctx, room, _county(unit), period, office)


@scheduler.job("report-quarterly")
async def quarterly_report(ctx: JobContext) -> None:
    period = Period(QUARTER, ctx.payload["year"], ctx.payload["quarter"])
    grids = await db.domains(ctx.session, Scope(Reach(everything=True)))
    rooms = await rooms_of(ctx.session, L2_ROOM, [u.key for u in grids if u.key])
    for unit in grids:
        if unit.key in rooms:
            scope = Scope(Reach(l2_grids=frozenset({unit.key or 0})))
            target = Target(GRID, scope, f"{unit.parent}·{unit.name}")
            chiefs = await holders(ctx.session, {RoleKind.L2_CHIEF}, grid_id=unit.key)
            await _post(ctx, rooms[unit.key], target, period, chiefs)


@scheduler.job("report-annual")
async def annual_draft(ctx: JobContext) -> None:
    period = Period(YEAR, ctx.payload["year"], 0)
    for unit, room in await _counties(ctx):
        office = await holders(ctx.session, L1_OFFICE, grid_id=unit.key)
        await _post(ctx, room, _county(unit), period, office, draft=True)


# --- training obligations -------------------------------------------------------------------


async def _training(ctx: JobContext) -> list[tuple[db.Unit, str, list[db.TrainingStatus]]]:
    """Per county with a level-1 room: everyone in a level-2 role today, with their training."""
    tz = ctx.services.config.tz
    today = ctx.now.astimezone(tz).date()
    out = []
    for unit, room in await _counties(ctx):
        win = window(containing(YEAR, today), tz, ctx.now)
        status = await db.training_status(ctx.session, _county(unit).scope, win)
        out.append((unit, room, status))
    return out


def _person(s: db.TrainingStatus) -> dict[str, Any]:
    p = s.person
    return {"name": p.name, "grid": p.grid, "kind": p.kind, "since": p.since}


async def _tell_office(
    ctx: JobContext, unit: db.Unit, room: str, template: str, **values: Any
) -> None:
    office = await holders(ctx.session, L1_OFFICE, grid_id=unit.key)
    mentions = [p.user_id for p in office if p.user_id]
    people = [p.as_dict() for p in office]
    ctx.send(
        room, template, mentions=mentions, rings=True, county=unit.name, office=people, **values
    )


@scheduler.job("training-annual")
async def training_due(ctx: JobContext) -> None:
    by = date.fromisoformat(ctx.payload["by"])
    for unit, room, status in await _training(ctx):
        untrained = [_person(s) for s in status if not s.trained_this_year]
        if untrained:
            await _tell_office(
                ctx, unit, room, "training_due", year=ctx.payload["year"], by=by, people=untrained
            )


@scheduler.job("training-newcomers")
async def training_newcomers(ctx: JobContext) -> None:
    since = date.fromisoformat(ctx.payload["since"])
    for unit, room, status in await _training(ctx):
        never = [s for s in status if s.first_training is None]
        new = [_person(s) for s in never if s.person.since >= since]
        earlier = [_person(s) for s in never if s.person.since < since]
        if new or earlier:
            await _tell_office(
                ctx, unit, room, "training_newcomers", since=since, new=new, earlier=earlier
            )

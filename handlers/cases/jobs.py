"""Scheduled work on cases: overdue hazard reminders and escalation, requests that nobody took
going up by themselves, and photos waiting for their thread root to be sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot import scheduler
from bot.scheduler import JobContext, job
from handlers.cases import deadlines, hazard_rules, request_rules
from handlers.cases.support import Actor, Poster, root_ready
from storage import cases
from storage.cases import R_OPEN, CaseRequest

# The thread root is usually sent within a second of the report: retry soon, then back off
# (2 s, 4 s … 64 s; about 2 minutes in all) before posting without a thread.
PHOTO_RETRY = timedelta(seconds=2)
PHOTO_TRIES = 6


@job(deadlines.HAZARD_OVERDUE)
async def hazard_overdue(ctx: JobContext) -> None:
    p = ctx.payload
    hazard = await hazard_rules.session_hazard(ctx.session, p["code"])
    if hazard is None or not hazard_rules.still_due(hazard, p):
        return  # fixed, or given a new deadline (which has jobs of its own)
    await hazard_rules.remind_overdue(
        Poster.of(ctx), ctx.services.config, hazard, int(p.get("n", 0)), ctx.late
    )


@job(deadlines.HAZARD_OVERDUE_CHIEF)
async def hazard_overdue_chief(ctx: JobContext) -> None:
    p = ctx.payload
    hazard = await hazard_rules.session_hazard(ctx.session, p["code"])
    if hazard is None or not hazard_rules.still_due(hazard, p):
        return
    await hazard_rules.escalate_overdue(Poster.of(ctx), hazard, ctx.late)


@job(deadlines.REQUEST_DEADLINE)
async def request_deadline(ctx: JobContext) -> None:
    p = ctx.payload
    req = await cases.get_case(ctx.session, p["code"])
    if not isinstance(req, CaseRequest) or req.status != R_OPEN or req.level != p["level"]:
        return  # taken, solved, or already moved on
    poster = Poster.of(ctx)
    if request_rules.next_level(req.level) is None:
        await request_rules.top_overdue(poster, req, ctx.late)
    else:
        await request_rules.pass_up(poster, Actor.system(), None, ctx.services.config, req, "")


@job(deadlines.CASE_PHOTOS)
async def case_photos(ctx: JobContext) -> None:
    p = ctx.payload
    tries = int(p.get("try", 0))
    if not await root_ready(ctx.session, p["code"], p["room_id"]) and tries < PHOTO_TRIES:
        await scheduler.schedule(
            ctx.session,
            deadlines.CASE_PHOTOS,
            f"{ctx.job.key.split('#')[0]}#{tries + 1}",
            datetime.now(UTC) + PHOTO_RETRY * 2**tries,
            {**p, "try": tries + 1},
        )
        return
    await Poster.of(ctx).photos(p["code"], p["room_id"], p["photos"], p["stage"])

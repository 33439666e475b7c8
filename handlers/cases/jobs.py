"""Scheduled work on cases: overdue hazard reminders and escalation, requests that nobody took
going up by themselves."""

from __future__ import annotations

from bot.scheduler import JobContext, job
from handlers.cases import deadlines, hazard_rules, request_rules
from handlers.cases.support import Actor, Poster
from storage import cases
from storage.cases import R_OPEN, CaseRequest


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

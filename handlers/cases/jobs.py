"""Scheduled work on cases: overdue hazard reminders and escalation, requests that nobody took
going up by themselves."""

from __future__ import annotations

from bot.scheduler import JobContext, job
from handlers.cases import deadlines, hazard_rules, request_rules
from handlers.cases.actors import Actor
from handlers.cases.threads import CaseThreads
from storage import cases
from storage.cases import R_OPEN, CaseRequest, Hazard


async def _hazard_still_due(ctx: JobContext) -> Hazard | None:
    """The hazard a deadline job watches, unless it was fixed or given a new deadline (which
    has jobs of its own) since."""
    hazard = await cases.get_case(ctx.session, ctx.payload["code"])
    if isinstance(hazard, Hazard) and hazard_rules.still_due(hazard, ctx.payload):
        return hazard
    return None


@job(deadlines.HAZARD_OVERDUE)
async def hazard_overdue(ctx: JobContext) -> None:
    hazard = await _hazard_still_due(ctx)
    if hazard is not None:
        n = int(ctx.payload.get("n", 0))
        await hazard_rules.remind_overdue(CaseThreads(ctx), hazard, n, ctx.late)


@job(deadlines.HAZARD_OVERDUE_CHIEF)
async def hazard_overdue_chief(ctx: JobContext) -> None:
    hazard = await _hazard_still_due(ctx)
    if hazard is not None:
        await hazard_rules.escalate_overdue(CaseThreads(ctx), hazard, ctx.late)


@job(deadlines.REQUEST_DEADLINE)
async def request_deadline(ctx: JobContext) -> None:
    p = ctx.payload
    req = await cases.get_case(ctx.session, p["code"])
    if not isinstance(req, CaseRequest) or req.status != R_OPEN or req.level != p["level"]:
        return  # taken, solved, or already moved on
    threads = CaseThreads(ctx)
    if request_rules.next_level(req.level) is None:
        await request_rules.top_overdue(threads, req, ctx.late)
    else:
        await request_rules.pass_up(threads, Actor.system(), None, req, "")

"""Deadlines of cases and the scheduled jobs that watch them (run by handlers/cases/jobs.py).

Job keys carry the deadline they watch, so a moved deadline simply makes new jobs and the old
ones find the case changed and do nothing. The jobs are created in the transaction of the
step that set the deadline (the ``threads`` of that command or job).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from bot import scheduler
from bot.config import Config
from bot.dates import add_working_hours
from handlers.cases.threads import CaseThreads
from storage.cases import CaseRequest, Hazard

HAZARD_OVERDUE = "hazard-overdue"
HAZARD_OVERDUE_CHIEF = "hazard-overdue-chief"
REQUEST_DEADLINE = "request-deadline"


def end_of_day(day: date, config: Config) -> datetime:
    """A deadline day ends at the next local midnight; returned in UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), config.tz).astimezone(UTC)


def working_hours_after(start: datetime, hours: int, config: Config) -> datetime:
    return add_working_hours(start.astimezone(config.tz), hours).astimezone(UTC)


def request_hours(config: Config, level: str) -> int:
    e = config.timing.escalation
    return {"member": e.member_hours, "level2": e.level2_hours, "level1": e.level1_hours}[level]


def request_deadline(config: Config, level: str, start: datetime) -> datetime:
    return working_hours_after(start, request_hours(config, level), config)


def _hazard_watch(hazard: Hazard) -> tuple[str, dict[str, Any]]:
    """Key stem and payload: a watch is for one deadline in one rectification round (a failed
    re-check starts a new round), so jobs of an older round or deadline find nothing to do."""
    stamp = hazard.deadline_at.isoformat()
    payload = {"code": hazard.code, "deadline_at": stamp, "round": hazard.rework_count}
    return f"{hazard.code}:{stamp}:r{hazard.rework_count}", payload


async def watch_hazard(threads: CaseThreads, hazard: Hazard) -> None:
    """First overdue reminder at the deadline (at once if it has passed already); the chief is
    told some working hours later."""
    config = threads.config
    first = max(hazard.deadline_at, datetime.now(UTC))
    await _remind(threads, hazard, 0, first)
    stem, payload = _hazard_watch(hazard)
    hours = config.timing.escalation.hazard_overdue_escalate_hours
    await scheduler.schedule(
        threads.session,
        HAZARD_OVERDUE_CHIEF,
        f"{HAZARD_OVERDUE_CHIEF}:{stem}",
        working_hours_after(first, hours, config),
        payload,
    )


async def remind_again(threads: CaseThreads, hazard: Hazard, n: int, after: datetime) -> None:
    """Reminder ``n``, some working hours after the one before."""
    config = threads.config
    hours = config.timing.escalation.hazard_overdue_remind_hours
    await _remind(threads, hazard, n, working_hours_after(after, hours, config))


async def _remind(threads: CaseThreads, hazard: Hazard, n: int, due_at: datetime) -> None:
    stem, payload = _hazard_watch(hazard)
    key = f"{HAZARD_OVERDUE}:{stem}:{n}"
    await scheduler.schedule(threads.session, HAZARD_OVERDUE, key, due_at, {**payload, "n": n})


async def watch_request(threads: CaseThreads, request: CaseRequest) -> None:
    await scheduler.schedule(
        threads.session,
        REQUEST_DEADLINE,
        request_job_key(request),
        request.deadline_at,
        {"code": request.code, "level": request.level},
    )


async def unwatch_request(threads: CaseThreads, request: CaseRequest) -> None:
    await scheduler.cancel(threads.session, request_job_key(request))


def request_job_key(request: CaseRequest) -> str:
    return f"{REQUEST_DEADLINE}:{request.code}:{request.level}"

"""Jobs due at a time. The database is the truth; APScheduler is only the alarm clock.

At start every job not yet done is looked at: one whose time passed while the bot was down
runs at once and is marked late (its message says so) rather than dropped. A job is marked done
in the same transaction as the messages it queues, so none runs twice. Recurring duties are
"planners" that make sure the next occurrence exists as a row (idempotent by key).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot import outgoing
from bot.context import Services
from bot.conversation import sweep_expired
from bot.outgoing import Outgoing, Speaks
from storage.db import Database, describe, is_unavailable
from storage.models import OutboxMessage, ScheduledJob

log = logging.getLogger(__name__)


# A job that runs more than this after its time counts as late (the bot was down or busy).
LATE_AFTER = timedelta(minutes=5)
MAX_ATTEMPTS = 5
TICK_SECONDS = 30
DB_RETRY = 3  # seconds to the next tick after the database was lost


@dataclass
class JobContext(Speaks):
    services: Services
    session: AsyncSession
    job: ScheduledJob
    now: datetime
    late: bool
    sent: list[OutboxMessage] = field(default_factory=list)

    @property
    def payload(self) -> dict[str, Any]:
        return self.job.payload or {}

    def post(self, message: Outgoing) -> OutboxMessage:
        """Queue any message (see bot.outgoing); templates also get ``late`` and ``due_at``."""
        message.values.setdefault("late", self.late)
        message.values.setdefault("due_at", self.job.due_at.astimezone(self.services.config.tz))
        msg = outgoing.queue(
            self.session,
            self.services.messages,
            message,
            locale=self.services.config.language,
            cause=f"job:{self.job.key}",
        )
        self.sent.append(msg)
        return msg


JobFn = Callable[[JobContext], Awaitable[None]]
# A planner adds the rows of upcoming recurring jobs (it must be idempotent: use job keys).
Planner = Callable[[AsyncSession, Services, datetime], Awaitable[None]]


_JOB_ATTR = "__gridbot_job__"
_EARLIEST = "gridbot_earliest_job"
_PLANNER_ATTR = "__gridbot_planner__"


def job(kind: str) -> Callable[[JobFn], JobFn]:
    """Mark a function as the handler of scheduled jobs of ``kind`` (collected by the app)."""

    def mark(fn: JobFn) -> JobFn:
        setattr(fn, _JOB_ATTR, kind)
        return fn

    return mark


def planner(fn: Planner) -> Planner:
    """Mark a function as a planner of recurring jobs (collected by the app)."""
    setattr(fn, _PLANNER_ATTR, True)
    return fn


async def schedule(
    session: AsyncSession,
    kind: str,
    key: str,
    due_at: datetime,
    payload: dict[str, Any] | None = None,
    *,
    move: bool = False,
) -> ScheduledJob:
    """Create job ``key`` unless it exists; ``move`` gives an unfinished one the new time."""
    job = await session.scalar(select(ScheduledJob).where(ScheduledJob.key == key))
    if job is None:
        job = ScheduledJob(kind=kind, key=key, due_at=due_at, payload=payload or {}, attempts=0)
        session.add(job)
    elif move and job.done_at is None:
        job.due_at = due_at
        job.payload = payload or job.payload
    else:
        return job
    # Whoever commits this session tells the scheduler (see earliest_scheduled), so a job due
    # in seconds does not wait for the next interval tick.
    earliest = session.info.get(_EARLIEST)
    session.info[_EARLIEST] = due_at if earliest is None else min(earliest, due_at)
    return job


def earliest_scheduled(session: AsyncSession) -> datetime | None:
    """The earliest due time of jobs this session created or moved (before it closes)."""
    return session.info.get(_EARLIEST)


async def cancel(session: AsyncSession, key: str) -> None:
    job = await session.scalar(select(ScheduledJob).where(ScheduledJob.key == key))
    if job is not None and job.done_at is None:
        job.done_at = datetime.now(UTC)
        job.outcome = "skipped"


class Scheduler:
    def __init__(self, db: Database, services: Services) -> None:
        self.db = db
        self.services = services
        self.handlers: dict[str, JobFn] = {}
        self.planners: list[Planner] = []
        self._aps: AsyncIOScheduler | None = None
        self._alarm: datetime | None = None
        # The interval timer, the next-job timer and callers may tick at once; overlapping
        # ticks could both see a job not done and send its messages twice.
        self._tick_lock = asyncio.Lock()

    def register(self, kind: str, fn: JobFn) -> None:
        self.handlers[kind] = fn

    def include(self, module: ModuleType) -> None:
        for obj in vars(module).values():
            kind = getattr(obj, _JOB_ATTR, None)
            if isinstance(kind, str):
                self.register(kind, obj)
            if getattr(obj, _PLANNER_ATTR, False):
                self.add_planner(obj)

    def add_planner(self, planner: Planner) -> None:
        if planner not in self.planners:  # seen again through a module that imports it
            self.planners.append(planner)

    async def start(self) -> None:
        self._aps = AsyncIOScheduler(timezone=self.services.config.tz)
        self._aps.add_job(
            self.tick, "interval", seconds=TICK_SECONDS, id="tick", max_instances=1, coalesce=True
        )
        self._aps.start()
        await self.tick()  # run what came due while the bot was down

    async def stop(self) -> None:
        if self._aps is not None:
            self._aps.shutdown(wait=False)
            self._aps = None

    async def tick(self) -> int:
        """Plan, run every due job, end idle conversations; then set the alarm for the next job.

        Without the database (e.g. PostgreSQL restarting) nothing is lost: a job whose
        transaction was cut off is still due and unclaimed, and the tick is tried again soon."""
        async with self._tick_lock:
            try:
                return await self._tick()
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                log.warning(
                    "database unavailable (%s); jobs run again in %d s", describe(exc), DB_RETRY
                )
                self._alarm = None
                self.wake_at(datetime.now(UTC) + timedelta(seconds=DB_RETRY))
                return 0

    async def _tick(self) -> int:
        now = datetime.now(UTC)
        async with self.db.transaction() as session:
            for planner in self.planners:
                await planner(session, self.services, now)
        ran = 0
        async with self.db.transaction() as session:
            due = list(
                await session.scalars(
                    select(ScheduledJob.id)
                    .where(ScheduledJob.done_at.is_(None), ScheduledJob.due_at <= now)
                    .order_by(ScheduledJob.due_at, ScheduledJob.id)
                )
            )
        for job_id in due:
            ran += await self._run(job_id, now)
        async with self.db.transaction() as session:
            await sweep_expired(session, self.services.messages, now)
        await self._arm()
        return ran

    async def _run(self, job_id: int, now: datetime) -> int:
        try:
            async with self.db.transaction() as session:
                job = await session.get(ScheduledJob, job_id)
                if job is None or job.done_at is not None:
                    return 0
                handler = self.handlers.get(job.kind)
                late = now - job.due_at > LATE_AFTER
                if handler is None:
                    log.error("no handler for job kind %s (%s)", job.kind, job.key)
                    job.outcome, job.done_at = "error", now
                    return 0
                # Claim the job first, conditionally, in the transaction that will hold its
                # messages: a second tick or process finds it claimed and leaves it; an error
                # in the handler rolls the claim back with everything else.
                claimed = await session.execute(
                    update(ScheduledJob)
                    .where(ScheduledJob.id == job_id, ScheduledJob.done_at.is_(None))
                    .values(done_at=now, outcome="late" if late else "done")
                    .execution_options(synchronize_session=False)
                )
                if not claimed.rowcount:
                    return 0
                await session.refresh(job)
                await handler(JobContext(self.services, session, job, now, late))
                if late:
                    log.warning("job %s ran late (due %s)", job.key, job.due_at)
                return 1
        except Exception as exc:
            if is_unavailable(exc):
                raise  # not the job's fault: rolled back, still due, no attempt counted
            log.exception("job %s failed", job_id)
            async with self.db.transaction() as session:
                job = await session.get(ScheduledJob, job_id)
                if job is not None:
                    job.attempts += 1
                    job.last_error = repr(exc)[:2000]
                    if job.attempts >= MAX_ATTEMPTS:
                        job.outcome, job.done_at = "error", now
            return 0

    def after_commit(self, info: dict[str, Any]) -> None:
        """A committed transaction scheduled jobs: tick by the earliest of them."""
        due = info.get(_EARLIEST)
        if due is not None:
            self.wake_at(due)

    def wake_at(self, due: datetime) -> None:
        """Make sure the scheduler ticks by ``due`` (a handler just scheduled a job)."""
        if self._aps is None:
            return
        if self._alarm is not None and self._alarm <= due:
            return
        self._alarm = max(due, datetime.now(UTC))
        self._aps.add_job(self.tick, "date", run_date=self._alarm, id="next", replace_existing=True)

    async def _arm(self) -> None:
        """Wake exactly when the next job is due (the interval tick is the safety net)."""
        if self._aps is None:
            return
        async with self.db.transaction() as session:
            nxt = await session.scalar(
                select(ScheduledJob.due_at)
                .where(ScheduledJob.done_at.is_(None))
                .order_by(ScheduledJob.due_at)
                .limit(1)
            )
        self._alarm = None
        if nxt is not None and nxt > datetime.now(UTC):
            self._alarm = nxt
            self._aps.add_job(self.tick, "date", run_date=nxt, id="next", replace_existing=True)

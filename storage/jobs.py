"""Questions a feature asks about its scheduled jobs (bot/scheduler.py creates and runs them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ScheduledJob


async def keys_pending_after(session: AsyncSession, kind: str, after: datetime) -> set[str]:
    """Keys of the jobs of ``kind`` not yet done and due after ``after``."""
    rows = await session.scalars(
        select(ScheduledJob.key).where(
            ScheduledJob.kind == kind,
            ScheduledJob.done_at.is_(None),
            ScheduledJob.due_at > after,
        )
    )
    return set(rows)


async def later_one_due(
    session: AsyncSession, kind: str, after: datetime, now: datetime
) -> str | None:
    """The key of a job of ``kind`` not yet done, due after ``after`` and by ``now`` (the bot
    was down: a reminder lets that later one speak); None when there is none."""
    return await session.scalar(
        select(ScheduledJob.key)
        .where(
            ScheduledJob.kind == kind,
            ScheduledJob.done_at.is_(None),
            ScheduledJob.due_at > after,
            ScheduledJob.due_at <= now,
        )
        .limit(1)
    )

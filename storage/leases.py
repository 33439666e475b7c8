"""The runner lease's row (bot/lease.py): take, extend, release, read; each in the caller's
session. One row per lease name; taken with a conditional UPDATE, atomic on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import RunnerLease


async def take(session: AsyncSession, name: str, holder: str, seconds: float) -> bool | None:
    """Take the lease if it is free, expired or already ``holder``'s: True; held by another:
    False; no row yet: None (the caller adds it with :func:`add`, in a transaction of its own)."""
    now = datetime.now(UTC)
    taken = await session.execute(
        update(RunnerLease)
        .where(
            RunnerLease.name == name,
            or_(
                RunnerLease.holder.is_(None),
                RunnerLease.holder == holder,
                RunnerLease.expires_at < now,
            ),
        )
        .values(holder=holder, expires_at=now + timedelta(seconds=seconds), taken_at=now)
    )
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        return True
    return False if await session.get(RunnerLease, name) is not None else None


def add(session: AsyncSession, name: str, holder: str, seconds: float) -> None:
    """The lease's first row, held by ``holder`` (a unique name: a second adder fails)."""
    now = datetime.now(UTC)
    session.add(
        RunnerLease(
            name=name, holder=holder, expires_at=now + timedelta(seconds=seconds), taken_at=now
        )
    )


async def extend(session: AsyncSession, name: str, holder: str, seconds: float) -> bool:
    """Whether ``holder`` still held the lease (now extended by ``seconds``)."""
    kept = await session.execute(
        update(RunnerLease)
        .where(RunnerLease.name == name, RunnerLease.holder == holder)
        .values(expires_at=datetime.now(UTC) + timedelta(seconds=seconds))
    )
    return bool(kept.rowcount)  # type: ignore[attr-defined]


async def release(session: AsyncSession, name: str, holder: str) -> None:
    await session.execute(
        update(RunnerLease)
        .where(RunnerLease.name == name, RunnerLease.holder == holder)
        .values(holder=None, expires_at=None)
    )


async def holder_of(session: AsyncSession, name: str) -> tuple[str | None, datetime | None]:
    """(holder, expires_at) as stored; (None, None) without a row."""
    row = (
        await session.execute(
            select(RunnerLease.holder, RunnerLease.expires_at).where(RunnerLease.name == name)
        )
    ).first()
    return (row[0], row[1]) if row else (None, None)

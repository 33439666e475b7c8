"""One provisioning run at a time, across every process that shares the database.

Rooms carry no alias the homeserver could refuse a second time, so two runs at once (the bot's
worker after a ``/staff`` change, ``gridbot provision`` from a shell) would both make a missing
room. The lease is a single row taken with a conditional UPDATE (atomic on SQLite and
PostgreSQL) and renewed while the run lasts; a holder that dies lets it expire.

It also remembers whether the last run finished recording what it made: a run killed between
a createRoom and the batch that records it leaves ``unfinished`` set, and the next holder looks
for such rooms before making any (see ``Provisioner._adopt_unrecorded``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.models import ProvisionLease

log = logging.getLogger(__name__)

LEASE_SECONDS = 30.0
POLL_SECONDS = 1.0
_ROW = 1


@dataclass
class Lease:
    holder: str
    interrupted: bool  # the previous run did not finish recording the rooms it made
    complete: bool = False  # set by the run once everything it made is recorded
    lost: bool = False  # set if another run took the lease over (this one stalled too long)


async def _try_take(db: Database, holder: str, seconds: float) -> bool | None:
    """Take the lease if free or expired: whether the previous run was unfinished, or None."""
    now = datetime.now(UTC)
    async with db.transaction() as s:
        taken = await s.execute(
            update(ProvisionLease)
            .where(
                ProvisionLease.id == _ROW,
                or_(ProvisionLease.holder.is_(None), ProvisionLease.expires_at < now),
            )
            .values(holder=holder, expires_at=now + timedelta(seconds=seconds))
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            row = await s.get(ProvisionLease, _ROW)
            assert row is not None
            interrupted = bool(row.unfinished)
            row.unfinished = True
            return interrupted
        if await s.get(ProvisionLease, _ROW) is not None:
            return None
    try:
        async with db.transaction() as s:
            s.add(
                ProvisionLease(
                    id=_ROW,
                    holder=holder,
                    expires_at=now + timedelta(seconds=seconds),
                    unfinished=True,
                )
            )
    except IntegrityError:
        return None  # another process made the row first and holds it
    return False


async def _renew(db: Database, lease: Lease, seconds: float, stop: asyncio.Event) -> None:
    """Renew every third of the lease until ``stop`` is set (never cancelled mid-write)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds / 3)
            return
        try:
            async with db.transaction() as s:
                kept = await s.execute(
                    update(ProvisionLease)
                    .where(ProvisionLease.id == _ROW, ProvisionLease.holder == lease.holder)
                    .values(expires_at=datetime.now(UTC) + timedelta(seconds=seconds))
                )
        except Exception as exc:  # the database busy or away: try again at the next third
            log.warning("provisioning lease not renewed: %s", exc)
            continue
        if kept.rowcount != 1:  # type: ignore[attr-defined]
            lease.lost = True
            log.error("provisioning lease lost to another run (this one stalled)")
            return


async def _release(db: Database, lease: Lease) -> None:
    async with db.transaction() as s:
        await s.execute(
            update(ProvisionLease)
            .where(ProvisionLease.id == _ROW, ProvisionLease.holder == lease.holder)
            .values(holder=None, expires_at=None, unfinished=not lease.complete)
        )


@contextlib.asynccontextmanager
async def provisioning_lease(
    db: Database,
    *,
    seconds: float = LEASE_SECONDS,
    on_wait: Callable[[], None] | None = None,
) -> AsyncIterator[Lease]:
    """Hold the lease for the block; waits (calling ``on_wait`` once) while another run has it.

    Leaving the block by an exception keeps ``unfinished`` set, like a crash would."""
    holder = uuid.uuid4().hex
    waited = False
    while (interrupted := await _try_take(db, holder, seconds)) is None:
        if not waited and on_wait is not None:
            on_wait()
        waited = True
        await asyncio.sleep(POLL_SECONDS)
    lease = Lease(holder, interrupted)
    stop = asyncio.Event()
    renewing = asyncio.create_task(_renew(db, lease, seconds, stop))
    try:
        yield lease
    except BaseException:
        lease.complete = False
        raise
    finally:
        # Told to stop, not cancelled: a renewal cancelled inside its database call could leave
        # SQLite's write lock held by a lost connection, and the release below (and every other
        # write of the bot) would then wait for it in vain.
        stop.set()
        await asyncio.shield(renewing)
        await asyncio.shield(_release(db, lease))

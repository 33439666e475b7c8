"""One bot process consumes the inbox; the others wait as hot standbys.

Several ``gridbot run`` processes may share one database (two machines, or a second process
kept ready). Each stores what it receives (appservice mode: whichever the homeserver's request
reaches); only the holder of the ``inbox`` lease runs the dispatcher, the sender, the scheduler
and the provisioner. The lease is one row taken with a conditional UPDATE (atomic on SQLite and
PostgreSQL) and renewed every third of its length; a holder that dies stops renewing, and a
standby polling every second takes it over within about ``seconds`` of the death.

A holder that cannot renew in time (a stalled process, a database away longer than the lease)
may have been replaced: it is told (``lost``) and stops, so two processes never go on handling
side by side; a supervisor restarts it and it becomes the standby.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from storage import leases
from storage.db import Database, is_unavailable

log = logging.getLogger(__name__)

INBOX = "inbox"
POLL_SECONDS = 1.0


def holder_name() -> str:
    """Who holds a lease, readable in logs and /health: host, pid and a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class Lease:
    name: str
    holder: str
    seconds: float
    # Set when the lease could not be kept (another process may hold it now).
    lost: asyncio.Event = field(default_factory=asyncio.Event)


async def try_take(db: Database, name: str, holder: str, seconds: float) -> bool:
    """Take the lease if it is free, expired, or already ours; whether we hold it now."""
    async with db.transaction() as s:
        taken = await leases.take(s, name, holder, seconds)
    if taken is not None:
        return taken
    try:
        async with db.transaction() as s:
            leases.add(s, name, holder, seconds)
    except IntegrityError:
        return False  # another process made the row first and holds it
    return True


async def current_holder(db: Database, name: str = INBOX) -> tuple[str | None, datetime | None]:
    """(holder, expires_at) of the lease as stored."""
    async with db.transaction() as s:
        return await leases.holder_of(s, name)


async def _renew(db: Database, lease: Lease) -> None:
    """Extend the lease every third of its length; give it up as lost when it was taken over
    or could not be renewed before it ran out."""
    loop = asyncio.get_running_loop()
    kept_until = loop.time() + lease.seconds
    while True:
        await asyncio.sleep(lease.seconds / 3)
        try:
            async with db.transaction() as s:
                kept = await leases.extend(s, lease.name, lease.holder, lease.seconds)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            if loop.time() < kept_until:
                continue  # the lease still runs: try again
            log.error("inbox lease ran out while the database was away: stopping")
            lease.lost.set()
            return
        if not kept:
            log.error("inbox lease taken over by another process (this one stalled): stopping")
            lease.lost.set()
            return
        kept_until = loop.time() + lease.seconds


async def _release(db: Database, lease: Lease) -> None:
    with contextlib.suppress(Exception):  # unreleased, it simply expires
        async with db.transaction() as s:
            await leases.release(s, lease.name, lease.holder)


@contextlib.asynccontextmanager
async def hold(
    db: Database,
    stopping: asyncio.Event,
    *,
    seconds: float,
    name: str = INBOX,
    holder: str | None = None,
    on_wait: Callable[[str | None], None] | None = None,
) -> AsyncIterator[Lease | None]:
    """Hold the lease for the block, waiting as a standby while another process holds it.

    Yields None if ``stopping`` was set before the lease could be taken. ``on_wait`` is called
    once, with the current holder, when the lease is not free at first."""
    holder = holder or holder_name()
    waited = False
    while True:
        try:
            if await try_take(db, name, holder, seconds):
                break
        except Exception as exc:
            if not is_unavailable(exc):
                raise
        if not waited and on_wait is not None:
            with contextlib.suppress(Exception):
                on_wait((await current_holder(db, name))[0])
        waited = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), POLL_SECONDS)
        if stopping.is_set():
            yield None
            return
    lease = Lease(name, holder, seconds)
    renewing = asyncio.create_task(_renew(db, lease), name=f"lease-{name}")
    try:
        yield lease
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await renewing
        if not lease.lost.is_set():
            await asyncio.shield(_release(db, lease))

"""What every benchmark shares: the password of its throw-away accounts, a plain nio login,
bounded concurrency, a process's CPU time, waiting for an in-process GridBot to be ready, and
the phases of a broadcast read from its database.

The interleaving of GridBot with its baseline and the statistics are in bench/interleave.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from nio import AsyncClient, AsyncClientConfig, LoginResponse

from bot.sandbox.homeserver import Synapse

PASSWORD = "bench-password"
T = TypeVar("T")


def client_config() -> AsyncClientConfig:
    # No encryption and no token store: each benchmark client starts fresh.
    return AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)


async def login(hs: Synapse, user_id: str, device: str = "bench") -> AsyncClient:
    """A nio client logged in as ``user_id`` (password PASSWORD); the caller closes it."""
    client = AsyncClient(hs.url, user_id, config=client_config())
    resp = await client.login(PASSWORD, device_name=device)
    if not isinstance(resp, LoginResponse):
        await client.close()
        raise RuntimeError(f"login {user_id}: {resp}")
    return client


async def bounded(items: Iterable[T], fn: Callable[[T], Awaitable[Any]], limit: int) -> list[Any]:
    """``fn`` over ``items`` with at most ``limit`` running at once; results in order."""
    slots = asyncio.Semaphore(limit)

    async def one(item: T) -> Any:
        async with slots:
            return await fn(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_ready(bot: Any, run_task: asyncio.Task[None], within: float = 180) -> None:
    """Until an in-process GridBot has logged in and handled its first sync (``bot.ready``);
    what it died of if it stopped first."""
    ready = getattr(bot, "ready", None)
    if not isinstance(ready, asyncio.Event):
        await asyncio.sleep(2)  # no readiness signal: give it time for login and first sync
        return
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({waiter, run_task}, timeout=within, return_when="FIRST_COMPLETED")
    if run_task in done:
        waiter.cancel()
        run_task.result()  # raises what the bot died of
        raise RuntimeError("GridBot stopped before it was ready")
    if waiter not in done:
        waiter.cancel()
        raise TimeoutError(f"GridBot not ready within {within} s")


async def broadcast_phases(
    session: Any, room_id: str, issuer: str, wall0: float
) -> tuple[float, float, float]:
    """Seconds after ``wall0`` (when 确认 was sent): when the issuer's last event in ``room_id``
    was handled, and when the first and the last notice post were sent (NaN if not yet)."""
    import math
    from datetime import UTC, datetime

    from sqlalchemy import func, select

    from storage import notices as N
    from storage.models import InboxEvent, OutboxMessage

    handled = await session.scalar(
        select(InboxEvent.handled_at)
        .where(InboxEvent.room_id == room_id, InboxEvent.sender == issuer)
        .order_by(InboxEvent.seq.desc())
        .limit(1)
    )
    since = datetime.fromtimestamp(wall0, UTC)
    first, last = (
        await session.execute(
            select(func.min(OutboxMessage.sent_at), func.max(OutboxMessage.sent_at))
            .join(N.NoticeDelivery, N.NoticeDelivery.outbox_id == OutboxMessage.id)
            .where(N.NoticeDelivery.part == N.PART_POST, OutboxMessage.sent_at >= since)
        )
    ).one()

    def after(t: datetime | None) -> float:
        if t is None:
            return math.nan
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() - wall0

    return after(handled), after(first), after(last)

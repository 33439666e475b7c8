"""The inbox lease (bot/lease.py), on SQLite and PostgreSQL: one holder at a time, a standby
that takes over when the holder stops renewing, and a stalled holder told it lost the lease."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from bot import lease
from storage.db import Database
from storage.models import RunnerLease


async def test_a_second_process_waits_until_the_first_lets_go(db: Database) -> None:
    stopping = asyncio.Event()
    order: list[str] = []
    first_in = asyncio.Event()
    let_go = asyncio.Event()
    waited: list[str | None] = []

    async def first() -> None:
        async with lease.hold(db, stopping, seconds=3, holder="first") as held:
            assert held is not None
            order.append("first")
            first_in.set()
            await let_go.wait()

    async def second() -> None:
        await first_in.wait()
        async with lease.hold(db, stopping, seconds=3, holder="second", on_wait=waited.append):
            order.append("second")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await asyncio.sleep(1.5)
    assert order == ["first"] and waited == ["first"]  # the standby knows whom it waits for
    let_go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert order == ["first", "second"]


async def test_a_dead_holder_is_taken_over_once_its_lease_runs_out(db: Database) -> None:
    # The first holder "dies": it took the lease and never renews it.
    assert await lease.try_take(db, lease.INBOX, "dead", seconds=2)
    assert not await lease.try_take(db, lease.INBOX, "standby", seconds=2)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with lease.hold(db, stopping, seconds=2, holder="standby") as held:
        assert held is not None
        took = loop.time() - start
    assert 0.5 < took < 5, took
    assert (await lease.current_holder(db))[0] is None  # released on the way out


async def test_a_holder_whose_lease_was_taken_over_is_told(db: Database) -> None:
    stopping = asyncio.Event()
    async with lease.hold(db, stopping, seconds=1.5, holder="stalled") as held:
        assert held is not None
        # As if it stood still past its lease and another process took over.
        async with db.transaction() as s:
            await s.execute(
                update(RunnerLease)
                .where(RunnerLease.name == lease.INBOX)
                .values(holder="other", expires_at=datetime.now(UTC) + timedelta(seconds=60))
            )
        await asyncio.wait_for(held.lost.wait(), 5)
    assert (await lease.current_holder(db))[0] == "other"  # a lost lease is not released


async def test_a_standby_stops_waiting_when_asked(db: Database) -> None:
    assert await lease.try_take(db, lease.INBOX, "busy", seconds=60)
    stopping = asyncio.Event()

    async def standby() -> object:
        async with lease.hold(db, stopping, seconds=60, holder="standby") as held:
            return held

    task = asyncio.create_task(standby())
    await asyncio.sleep(0.3)
    stopping.set()
    assert await asyncio.wait_for(task, 5) is None

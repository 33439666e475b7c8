"""The provisioning lease on SQLite and PostgreSQL: one run at a time, and an interrupted run is
noticed by the next one (which then looks for rooms made but never recorded)."""

from __future__ import annotations

import asyncio

import pytest

from bot.provision import lease as lease_module
from bot.provision.lease import provisioning_lease
from storage.db import Database


class Boom(Exception):
    pass


async def test_a_second_run_waits_for_the_first(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease_module, "POLL_SECONDS", 0.05)
    order: list[str] = []
    waits: list[str] = []
    first_in = asyncio.Event()

    async def first() -> None:
        async with provisioning_lease(db):
            order.append("first starts")
            first_in.set()
            await asyncio.sleep(0.3)
            order.append("first ends")

    async def second() -> None:
        await first_in.wait()
        async with provisioning_lease(db, on_wait=lambda: waits.append("waiting")):
            order.append("second starts")

    await asyncio.gather(first(), second())
    assert order == ["first starts", "first ends", "second starts"]
    assert waits == ["waiting"]  # told once, not once per poll


async def test_an_interrupted_run_is_noticed_by_the_next(db: Database) -> None:
    async with provisioning_lease(db) as clean:
        clean.complete = True
    async with provisioning_lease(db) as after_clean:
        assert not after_clean.interrupted
        after_clean.complete = True

    with pytest.raises(Boom):
        async with provisioning_lease(db) as crashed:
            crashed.complete = True  # an exception still counts as unfinished
            raise Boom
    async with provisioning_lease(db) as after_crash:
        assert after_crash.interrupted
        # Not marked complete (e.g. a createRoom answer was lost): the next run looks again.
    async with provisioning_lease(db) as after_unsure:
        assert after_unsure.interrupted
        after_unsure.complete = True
    async with provisioning_lease(db) as settled:
        assert not settled.interrupted


async def test_a_dead_holder_is_taken_over_once_its_lease_expires(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A killed process never releases: its lease runs out and the next run sees it unfinished."""
    monkeypatch.setattr(lease_module, "POLL_SECONDS", 0.05)
    assert await lease_module._try_take(db, "dead-process", 0.3) is False
    waits: list[str] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with provisioning_lease(db, on_wait=lambda: waits.append("waiting")) as taken:
        waited = loop.time() - started
        assert taken.interrupted
        taken.complete = True
    assert waits == ["waiting"] and waited >= 0.25


async def test_a_long_run_keeps_its_lease(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Renewal: a run longer than the lease time is not taken over while it is alive."""
    monkeypatch.setattr(lease_module, "POLL_SECONDS", 0.05)
    async with provisioning_lease(db, seconds=0.3) as long_run:
        await asyncio.sleep(0.8)
        assert await lease_module._try_take(db, "intruder", 0.3) is None
        assert not long_run.lost
        long_run.complete = True

"""A lost or busy database, without a homeserver: one classification (storage.db.is_unavailable)
on real errors; a send worker and an event being handled survive it and repeat nothing.

The real thing (PostgreSQL restarted under the running bot) is tests/test_e2e_faults.py.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from nio import RoomSendResponse
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

import handlers.basics.whoami
from bot.commands import Router
from bot.context import Services
from bot.scheduler import JobContext, Scheduler, schedule
from bot.sender import Sender
from messages import Messages
from storage import inbox, outbox
from storage.db import Database, describe, is_unavailable
from storage.models import InboxEvent, OutboxMessage, ScheduledJob
from tests.dispatch_harness import DispatchHarness
from tests.dispatch_harness import test_config as harness_config
from tests.fixtures_db import PG_ADMIN_DB, PG_HOST, PG_PORT, PG_USER
from tests.sender_support import send_until_empty


def _lost() -> OperationalError:
    """What SQLAlchemy raises when the server went away under a statement."""
    return OperationalError(
        "SELECT 1", {}, ConnectionResetError("connection lost"), connection_invalidated=True
    )


async def _error_of(db: Database, sql: str, *, busy_ms: int | None = None) -> Exception:
    try:
        async with db.engine.begin() as conn:
            if busy_ms is not None:
                await conn.exec_driver_sql(f"PRAGMA busy_timeout={busy_ms}")
            await conn.exec_driver_sql(sql)
    except Exception as exc:
        return exc
    raise AssertionError(f"{sql} did not fail")


async def test_sqlite_busy_is_unavailable_a_wrong_statement_is_not(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process writing, for longer than we wait
        try:
            locked = await _error_of(db, "INSERT INTO t VALUES (2)", busy_ms=50)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert is_unavailable(locked), repr(locked)
        assert describe(locked) == "OperationalError: database is locked"

        assert not is_unavailable(await _error_of(db, "SELECT * FROM no_such_table"))
        duplicate = await _error_of(db, "INSERT INTO t VALUES (1)")
        assert isinstance(duplicate, IntegrityError) and not is_unavailable(duplicate)
    finally:
        await db.close()


async def test_postgresql_away_or_cut_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = s.getsockname()[1]
    refused = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{nobody}/x")
    try:
        with pytest.raises(OSError) as info:
            await refused.ping()
        assert is_unavailable(info.value) and "ConnectionRefusedError" in describe(info.value)
        assert not await refused.wait_available(limit=0.6)
    finally:
        await refused.close()

    # The shared server: only this test's own connection is cut (as a restart cuts them all).
    shared = Database(f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{PG_ADMIN_DB}")
    try:
        try:
            await shared.ping()
        except Exception as exc:
            pytest.skip(f"PostgreSQL at {PG_HOST}:{PG_PORT} unreachable: {exc}")
        cut = await _error_of(shared, "SELECT pg_terminate_backend(pg_backend_pid())")
        assert is_unavailable(cut), repr(cut)
        assert "AdminShutdownError" in describe(cut) or "closed" in describe(cut)
        assert await shared.wait_available(limit=5), "pre-ping: a fresh connection at once"
        duplicate = await _error_of(shared, "SELECT 1/0")
        assert not is_unavailable(duplicate)
        assert not is_unavailable(asyncpg.UniqueViolationError("duplicate key"))
    finally:
        await shared.close()


def test_the_homeservers_connection_errors_are_not_the_databases() -> None:
    refused = aiohttp.ClientOSError(111, "Connect call failed")  # an OSError, ECONNREFUSED
    assert isinstance(refused, OSError) and not is_unavailable(refused)
    assert not is_unavailable(aiohttp.ServerDisconnectedError())
    assert is_unavailable(ConnectionRefusedError(111, "refused"))  # asyncpg connecting
    assert is_unavailable(_lost())
    assert not is_unavailable(ValueError("a bug"))


class DedupClient:
    """room_send as Synapse answers it: the same txn id gives the same event, once."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.delivered: dict[str, list[str]] = defaultdict(list)

    async def room_send(
        self, room_id: str, _type: str, content: dict[str, Any], tx_id: str, **_: Any
    ) -> RoomSendResponse:
        self.calls.append(tx_id)
        if tx_id not in self.delivered[room_id]:
            self.delivered[room_id].append(tx_id)
        return RoomSendResponse(f"$ev-{tx_id}", room_id)


def fail_first(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, times: int = 1) -> None:
    """The first ``times`` calls of ``module.name`` fail as if the server went away."""
    real = getattr(module, name)
    left = [times]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if left[0] > 0:
            left[0] -= 1
            raise _lost()
        return await real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)


async def test_a_send_worker_survives_the_database_going_away(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with sqlite_db.transaction() as s:
        queued = [
            outbox.enqueue(s, "!r:x", {"msgtype": "m.notice", "body": f"{i}"}).txn_id
            for i in range(3)
        ]
    client = DedupClient()
    sender = Sender(client, sqlite_db)  # type: ignore[arg-type]
    # The sender's look for rooms with messages fails, the room worker's first two reads fail,
    # and storing the first message's event id after Synapse took it fails (so it is sent
    # again, with the same txn id: Synapse answers with the same event).
    fail_first(monkeypatch, outbox, "pending_rooms")
    fail_first(monkeypatch, outbox, "next_for_room", times=2)
    fail_first(monkeypatch, outbox, "mark_sent")
    await send_until_empty(sender, sqlite_db)
    assert client.delivered["!r:x"] == queued, "each message in the room once, in order"
    assert client.calls == [queued[0], *queued], "re-sent with its txn id after the lost record"
    assert sender.busy_rooms == 0
    async with sqlite_db.transaction() as s:
        rows = list(await s.scalars(select(OutboxMessage)))
    assert {r.status for r in rows} == {"sent"}


async def test_an_event_cut_off_by_a_lost_database_is_handled_once_when_it_is_back(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = DispatchHarness(sqlite_db, [handlers.basics.whoami])
    real = inbox.mark_handled
    cut = [True]

    async def mark_handled(session: AsyncSession, event_id: str, outcome: str) -> bool:
        if cut[0]:  # the database goes away at the end of the event's transaction
            await session.execute(text("SELECT 1"))
            raise _lost()
        return await real(session, event_id, outcome)

    monkeypatch.setattr(inbox, "mark_handled", mark_handled)
    with pytest.raises(OperationalError):
        await harness.say("@someone:localhost", "/whoami")
    async with sqlite_db.transaction() as s:
        event = await s.get(InboxEvent, harness.last_event_id)
        assert event is not None and event.handled_at is None, "still pending"
    assert await harness.new_messages() == [], "rolled back: no reply, no internal error"

    cut[0] = False  # the database is back: whoever drains the inbox handles it, once
    await harness.dispatcher.drain()
    answers = await harness.new_messages()
    assert len(answers) == 1 and "不在网格名册中" in answers[0]
    await harness.dispatcher.drain()
    assert await harness.new_messages() == []


async def test_waiters_share_one_probe_and_go_when_the_database_answers(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings = [0]
    real = sqlite_db.ping

    async def ping() -> None:
        pings[0] += 1
        if pings[0] < 3:
            raise _lost()
        await real()

    monkeypatch.setattr(sqlite_db, "ping", ping)
    results = await asyncio.gather(*(sqlite_db.wait_available() for _ in range(20)))
    assert results == [True] * 20 and pings[0] == 3, pings
    stopping = asyncio.Event()
    stopping.set()
    pings[0] = 0
    assert await sqlite_db.wait_available(stopping) in (True, False)  # a stop never hangs


async def test_a_job_cut_off_by_a_lost_database_runs_once_when_it_is_back(
    sqlite_db: Database,
) -> None:
    services = Services(config=harness_config(), messages=Messages(), router=Router())
    scheduler = Scheduler(sqlite_db, services)
    runs: list[bool] = []

    async def remind(ctx: JobContext) -> None:
        runs.append(True)
        if len(runs) == 1:
            raise _lost()  # the database goes away in the job's transaction

    scheduler.register("remind", remind)
    async with sqlite_db.transaction() as s:
        await schedule(s, "remind", "remind:1", datetime.now(UTC) - timedelta(seconds=1))
    assert await scheduler.tick() == 0, "the tick survives it"
    async with sqlite_db.transaction() as s:
        job = await s.scalar(select(ScheduledJob))
        assert job is not None and job.done_at is None and job.attempts == 0, "still due, no fault"
    assert await scheduler.tick() == 1
    assert await scheduler.tick() == 0
    async with sqlite_db.transaction() as s:
        job = await s.scalar(select(ScheduledJob))
        assert job is not None and job.done_at is not None and job.outcome == "done"
    assert len(runs) == 2, "rolled back once, then done once"

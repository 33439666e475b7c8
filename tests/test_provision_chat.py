"""Provisioning progress in the admin room without a homeserver: the one progress message
ends on the run's real last state, and the summary of a run that is retried goes out once."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.outgoing import Outgoing, queue
from bot.provision import chat as chat_module
from bot.provision import store as provision_store
from bot.provision import worker as worker_module
from bot.provision.apply import CHECK, CREATE, Summary
from bot.provision.chat import ChatProgress
from bot.provision.worker import CHAT_REASON, ProvisionWorker
from messages import Messages
from storage import outbox
from storage.db import Database
from storage.models import OutboxMessage
from tests.dispatch_harness import test_config as make_config

ROOM = "!admin:localhost"


async def _progress_message(db: Database) -> str:
    async with db.transaction() as s:
        msg = queue(
            s,
            Messages(),
            Outgoing(ROOM, "admin_provision_progress", {"phase": "start", "done": 0, "total": 0}),
            locale="zh_CN",
            cause="$confirm",
        )
    return msg.txn_id


async def _messages(db: Database) -> list[OutboxMessage]:
    async with db.transaction() as s:
        return list(
            await s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.room_id == ROOM)
                .order_by(OutboxMessage.id)
            )
        )


def _shown(msg: OutboxMessage) -> str:
    """What a client shows for the message: an edit's new content."""
    return str((msg.content.get("m.new_content") or msg.content)["body"])


async def test_the_progress_message_ends_on_the_last_state_even_if_an_edit_failed(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edit to "核对房间 31/31" could not be queued (the database was busy): the progress
    message must not stay at "建群 30/31" once the run is over."""
    txn = await _progress_message(sqlite_db)
    progress = ChatProgress(sqlite_db, Messages(), txn, "zh_CN")
    progress.phase(CREATE, 31)
    progress.phase(CHECK, 31)
    for _ in range(30):
        progress.advance(CREATE)
    await progress.show()
    progress.advance(CREATE)
    for _ in range(31):
        progress.advance(CHECK)

    real_queue = chat_module.queue
    calls = 0

    def busy_once(*args: Any, **kwargs: Any) -> OutboxMessage:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))
        return real_queue(*args, **kwargs)

    monkeypatch.setattr(chat_module, "queue", busy_once)
    with pytest.raises(OperationalError):
        await progress.show()  # what the edit loop does every few seconds (errors ignored)
    await progress.finish(Summary(rooms=31, created=["r"] * 31))

    edits = [m for m in await _messages(sqlite_db) if m.edit_of_txn == txn]
    assert [_shown(e) for e in edits][-1].startswith("核对房间 31/31")
    assert "建群 30/31" in _shown(edits[0])


async def test_a_retried_run_posts_its_summary_once(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that failed a room is retried (the request stays queued): the retry's summary
    edits the first one in place rather than posting the summary again."""
    txn = await _progress_message(sqlite_db)
    async with sqlite_db.transaction() as s:
        provision_store.request_provisioning(s, f"{CHAT_REASON}{txn}")
    outcomes = [
        Summary(rooms=3, created=["a", "b"], failed=["县空间: create_room: M_UNKNOWN boom"]),
        Summary(rooms=3, created=["县空间"]),
        Summary(rooms=3),
    ]

    class FakeProvisioner:
        def __init__(self, *args: Any, reporter: Any = None, **kwargs: Any) -> None:
            self.reporter = reporter

        async def run(self) -> Summary:
            self.reporter.phase(CREATE, 1)
            self.reporter.advance(CREATE)
            return outcomes.pop(0)

    monkeypatch.setattr(worker_module, "Provisioner", FakeProvisioner)
    services = SimpleNamespace(config=make_config(admins=[]), messages=Messages())
    worker = ProvisionWorker(SimpleNamespace(user_id="@bot:localhost"), sqlite_db, services)  # type: ignore[arg-type]
    first = await worker.run_pending()
    assert first is not None and not first.ok
    second = await worker.run_pending()  # the retry: the request was still queued
    assert second is not None and second.ok
    assert await worker.run_pending() is None  # done: nothing queued any more

    rows = await _messages(sqlite_db)
    summaries = [m for m in rows if "房间调整完成" in str(m.content.get("body"))]
    posted = [m for m in summaries if m.edit_of_txn is None]
    assert len(posted) == 1, [_shown(m) for m in summaries]
    assert "未能完成" in _shown(posted[0])
    # The retry's outcome replaces it: the last word on the summary has no failure left.
    latest = [m for m in summaries if m.edit_of_txn == posted[0].txn_id][-1]
    assert "未能完成" not in _shown(latest) and "新建 1" in _shown(latest)


async def test_leaving_the_progress_waits_for_an_edit_in_flight(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run ends while an edit is being written: it is finished, not cancelled (a write
    cancelled inside the driver can keep SQLite locked, and the bot then stalls)."""
    monkeypatch.setattr(chat_module, "EDIT_EVERY", 0.01)
    txn = await _progress_message(sqlite_db)
    real_by_txn = outbox.by_txn
    in_edit, go_on = asyncio.Event(), asyncio.Event()

    async def slow_by_txn(session: Any, txn_id: str) -> OutboxMessage | None:
        found = await real_by_txn(session, txn_id)
        in_edit.set()
        await go_on.wait()
        return found

    monkeypatch.setattr(outbox, "by_txn", slow_by_txn)
    progress = ChatProgress(sqlite_db, Messages(), txn, "zh_CN")
    progress.phase(CREATE, 2)
    progress.advance(CREATE)
    await progress.__aenter__()
    await asyncio.wait_for(in_edit.wait(), 5)
    leaving = asyncio.create_task(progress.__aexit__(None, None, None))
    await asyncio.sleep(0.1)
    assert not leaving.done()  # it waits for the edit
    go_on.set()
    await asyncio.wait_for(leaving, 5)
    edits = [m for m in await _messages(sqlite_db) if m.edit_of_txn == txn]
    assert [_shown(e).strip() for e in edits] == ["建群 1/2"]


async def test_many_runs_ending_mid_edit_leave_the_database_writable(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs that end at any moment of an edit: the summary can still be written at once."""
    monkeypatch.setattr(chat_module, "EDIT_EVERY", 0.0005)
    txn = await _progress_message(sqlite_db)
    rng = random.Random(15)
    for i in range(150):
        progress = ChatProgress(sqlite_db, Messages(), txn, "zh_CN")
        progress.phase(CREATE, 100)
        async with progress:
            for _ in range(8):
                progress.advance(CREATE)
                await asyncio.sleep(rng.random() * 0.002)
        # Within SQLite's busy timeout (10 s) only if no lost connection holds the lock.
        await asyncio.wait_for(progress.finish(Summary(rooms=i)), 5)

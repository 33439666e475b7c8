"""Provisioning progress in the admin room without a homeserver: the one progress message
ends on the run's real last state, and the summary of a run that is retried goes out once."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from bot.outgoing import Outgoing, queue
from bot.provision import chat as chat_module
from bot.provision.apply import CHECK, CREATE, Summary
from bot.provision.chat import ChatProgress
from messages import Messages
from storage.db import Database
from storage.models import OutboxMessage

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

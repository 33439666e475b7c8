"""The one send path on the real Synapse: a thread, a reply into it and an edit resolved by the
sender at send time; one file sent into several rooms, uploaded once, arriving byte for byte.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot import outgoing, rings
from bot.outgoing import Attachment, Outgoing
from bot.sender import Sender
from messages import Messages
from storage.db import Database
from storage.models import OutboxMessage
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import create_room, wait_for_join
from tests.sender_support import send_until_empty


async def _room_events(client: Any, room_id: str) -> list[dict[str, Any]]:
    """The room's m.room.message events, oldest first, as raw JSON (relations included)."""
    resp = await client.room_messages(room_id, start="", limit=50, direction="b")
    events = [e.source for e in resp.chunk if e.source.get("type") == "m.room.message"]
    return list(reversed(events))


async def _send_everything(db: Database, client: Any) -> None:
    await send_until_empty(Sender(client, db), db, limit=60)


async def test_relations_and_a_shared_file_arrive_as_declared(
    sqlite_db: Database,
    make_user: MakeUser,
    nio_client: NioClientFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the templates of bot.rings' table may ring: pretend this one rings sometimes.
    ring = rings.Ring("test", (rings.To("r", "alice", when="a test says so"),))
    monkeypatch.setitem(rings.RINGS, "internal_error", ring)
    bot_id, bot_pw = await make_user("gridbot")
    alice_id, alice_pw = await make_user("alice")
    bot = await nio_client(bot_id, bot_pw)
    alice = await nio_client(alice_id, alice_pw)
    rooms = [await create_room(bot, [alice_id]) for _ in range(3)]
    for room in rooms:
        await alice.join(room)
        await wait_for_join(bot, room, alice_id)

    data = bytes(range(256)) * 40  # 10 KiB that a re-encoding would garble
    report = Attachment("周报.xlsx", "application/octet-stream", data=data)
    messages = Messages()
    async with sqlite_db.transaction() as s:

        def q(message: Outgoing) -> OutboxMessage:
            return outgoing.queue(s, messages, message, locale="zh_CN", cause="test")

        root = q(Outgoing(rooms[0], "internal_error"))
        in_thread = q(
            Outgoing(rooms[0], "internal_error", thread_root=root, rings=True, mentions=[alice_id])
        )
        q(Outgoing(rooms[0], "internal_error", reply_to=in_thread, mentions=[alice_id]))
        q(Outgoing(rooms[0], "nothing_to_cancel", {}, edit_of=root))
        for room in rooms:
            q(Outgoing(room, attachment=report, thread_root=root if room == rooms[0] else None))
    await _send_everything(sqlite_db, bot)

    async with sqlite_db.transaction() as s:
        sent = {m.txn_id: m.event_id for m in await s.scalars(select(OutboxMessage))}
    events = await _room_events(alice, rooms[0])
    assert [e["sender"] for e in events] == [bot_id] * 5
    root_ev, thread_ev, reply_ev, edit_ev, file_ev = events
    assert root_ev["event_id"] == sent[root.txn_id]
    assert thread_ev["content"]["m.relates_to"]["rel_type"] == "m.thread"
    assert thread_ev["content"]["m.relates_to"]["event_id"] == root_ev["event_id"]
    assert thread_ev["content"]["msgtype"] == "m.text"
    assert reply_ev["content"]["m.relates_to"] == {
        "m.in_reply_to": {"event_id": thread_ev["event_id"]}
    }
    assert reply_ev["content"]["m.mentions"] == {"user_ids": [alice_id]}
    assert edit_ev["content"]["m.relates_to"] == {
        "rel_type": "m.replace",
        "event_id": root_ev["event_id"],
    }
    assert file_ev["content"]["m.relates_to"]["event_id"] == root_ev["event_id"]

    urls = {file_ev["content"]["url"]}
    for room in rooms[1:]:
        (other,) = await _room_events(alice, room)
        urls.add(other["content"]["url"])
    assert len(urls) == 1, "the file was uploaded once and its mxc URI reused"
    resp = await alice.download(mxc=urls.pop())
    assert resp.body == data

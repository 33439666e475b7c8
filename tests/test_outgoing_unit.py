"""The one send path, against a recording client: relations resolved at send time, a file
uploaded once for every room it goes to, edits, and the sender woken by any commit.

The same path runs against the real Synapse in tests/test_e2e_outgoing.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nio import RoomSendResponse, UploadResponse
from sqlalchemy import select

from bot import outgoing, rings
from bot.outgoing import Attachment, Outgoing
from bot.sender import Sender
from messages import Messages
from storage.db import Database
from storage.models import OutboxFile, OutboxMessage
from storage.outbox import QUEUED_ROOMS
from tests.sender_support import send_until_empty


class RecordingClient:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.uploads: list[str] = []

    async def room_send(
        self, room_id: str, _type: str, content: dict[str, Any], tx_id: str, **_: Any
    ) -> RoomSendResponse:
        await asyncio.sleep(0)
        self.sent.append((room_id, content))
        return RoomSendResponse(f"$ev-{tx_id}", room_id)

    async def upload(
        self, provider: Any, content_type: str, filename: str, filesize: int
    ) -> tuple[UploadResponse, None]:
        data = provider(0, 0).read()
        assert len(data) == filesize
        await asyncio.sleep(0.01)  # let the other rooms' workers reach the upload meanwhile
        self.uploads.append(filename)
        return UploadResponse(f"mxc://localhost/{len(self.uploads)}"), None


async def _send_all(db: Database, client: RecordingClient) -> None:
    await send_until_empty(Sender(client, db), db)  # type: ignore[arg-type]


def _queue(s: Any, message: Outgoing) -> OutboxMessage:
    return outgoing.queue(s, Messages(), message, locale="zh_CN", cause="test")


async def test_thread_reply_and_edit_resolve_to_the_parents_sent_event_ids(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only the templates of bot.rings' table may ring: pretend this one rings sometimes.
    ring = rings.Ring("test", (rings.To("r", "b", when="a test says so"),))
    monkeypatch.setitem(rings.RINGS, "internal_error", ring)
    async with db.transaction() as s:
        root = _queue(s, Outgoing("!r:x", "internal_error"))
        in_thread = _queue(s, Outgoing("!r:x", "internal_error", thread_root=root))
        reply = _queue(
            s,
            Outgoing("!r:x", "internal_error", reply_to=in_thread, rings=True, mentions=["@b:x"]),
        )
        _queue(s, Outgoing("!r:x", "internal_error", edit_of=root, mentions=["@a:x"]))
    client = RecordingClient()
    await _send_all(db, client)
    events = {}
    async with db.transaction() as s:
        for row in await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)):
            events[row.id] = row.event_id
    contents = [c for _r, c in client.sent]
    assert "m.relates_to" not in contents[0]
    assert contents[1]["m.relates_to"] == {
        "rel_type": "m.thread",
        "event_id": events[root.id],
        "is_falling_back": True,
        "m.in_reply_to": {"event_id": events[root.id]},
    }
    assert contents[2]["m.relates_to"] == {"m.in_reply_to": {"event_id": events[in_thread.id]}}
    assert contents[2]["msgtype"] == "m.text" and contents[0]["msgtype"] == "m.notice"
    edit = contents[3]
    assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": events[root.id]}
    assert edit["body"].startswith("* ") and edit["m.mentions"] == {}
    assert edit["m.new_content"]["m.mentions"] == {"user_ids": ["@a:x"]}
    _ = reply


async def test_a_file_to_many_rooms_is_uploaded_once(db: Database) -> None:
    report = Attachment("月报.xlsx", "application/vnd.ms-excel", data=b"PK" + b"x" * 5000)
    rooms = [f"!room{i}:x" for i in range(6)]
    async with db.transaction() as s:
        for room in rooms:
            _queue(s, Outgoing(room, attachment=report))
    async with db.transaction() as s:  # the same bytes in a later transaction too
        _queue(s, Outgoing("!late:x", attachment=report))
    client = RecordingClient()
    await _send_all(db, client)
    assert client.uploads == ["月报.xlsx"]
    assert sorted(r for r, _c in client.sent) == sorted([*rooms, "!late:x"])
    for _room, content in client.sent:
        assert content["url"] == "mxc://localhost/1" and content["msgtype"] == "m.file"
        assert content["info"]["size"] == 5002 and content["filename"] == "月报.xlsx"
    async with db.transaction() as s:
        files = list(await s.scalars(select(OutboxFile)))
    assert len(files) == 2 and all(f.url == "mxc://localhost/1" for f in files)


async def test_a_relation_to_a_failed_message_is_dropped_not_waited_for(db: Database) -> None:
    async with db.transaction() as s:
        root = _queue(s, Outgoing("!r:x", "internal_error"))
        _queue(s, Outgoing("!r:x", "internal_error", thread_root=root))
        await s.flush()
        root.status = "failed"
    client = RecordingClient()
    await _send_all(db, client)
    assert len(client.sent) == 1 and "m.relates_to" not in client.sent[0][1]


async def test_every_commit_that_queues_tells_the_listeners_its_rooms(db: Database) -> None:
    heard: list[set[str]] = []
    db.after_commit.append(lambda info: heard.append(set(info.get(QUEUED_ROOMS) or ())))
    async with db.transaction() as s:
        _queue(s, Outgoing("!a:x", "internal_error"))
        _queue(s, Outgoing("!b:x", "internal_error"))
    try:
        async with db.transaction() as s:
            _queue(s, Outgoing("!c:x", "internal_error"))
            raise RuntimeError("rolled back")
    except RuntimeError:
        pass
    assert heard == [{"!a:x", "!b:x"}]


async def test_a_relation_must_stay_in_its_room(db: Database) -> None:
    async with db.transaction() as s:
        root = _queue(s, Outgoing("!r:x", "internal_error"))
        try:
            _queue(s, Outgoing("!other:x", "internal_error", thread_root=root))
        except ValueError as err:
            assert "room" in str(err)
        else:
            raise AssertionError("a cross-room relation was queued")

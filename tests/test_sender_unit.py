"""The sender against a scripted client: 429s wait retry_after_ms per room, retries keep the txn id.

The real homeserver path is covered end to end; these pin down the retry rules that a healthy
test homeserver never triggers.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import aiohttp
from nio import RoomSendError, RoomSendResponse
from sqlalchemy import select

from bot.sender import Sender
from storage import outbox
from storage.db import Database
from storage.models import OutboxMessage
from tests.sender_support import send_until_empty


class ScriptedClient:
    """room_send answers from a per-room script: "ok", "429:<ms>", "net", "forbidden"."""

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self.scripts = {k: list(v) for k, v in scripts.items()}
        self.calls: list[tuple[str, str, float]] = []
        self.delivered: dict[str, list[str]] = defaultdict(list)
        self.loop = asyncio.get_running_loop()

    async def room_send(
        self,
        room_id: str,
        _type: str,
        content: dict[str, Any],
        tx_id: str,
        ignore_unverified_devices: bool = True,
    ) -> Any:
        self.calls.append((room_id, tx_id, self.loop.time()))
        step = self.scripts.get(room_id, []).pop(0) if self.scripts.get(room_id) else "ok"
        if step.startswith("429:"):
            return RoomSendError("slow down", "M_LIMIT_EXCEEDED", int(step[4:]))
        if step == "net":
            raise aiohttp.ClientConnectionError("connection reset")
        if step == "forbidden":
            return RoomSendError("not in room", "M_FORBIDDEN")
        # Synapse deduplicates by txn id: a repeated id returns the same event.
        if tx_id not in self.delivered[room_id]:
            self.delivered[room_id].append(tx_id)
        return RoomSendResponse(f"$ev-{tx_id}", room_id)


async def _queue(db: Database, room: str, n: int) -> list[str]:
    async with db.transaction() as s:
        msgs = [
            outbox.enqueue(s, room, {"msgtype": "m.notice", "body": f"{room} {i}"})
            for i in range(n)
        ]
    return [m.txn_id for m in msgs]


async def _run_until_sent(sender: Sender, db: Database, limit: float = 10) -> None:
    await send_until_empty(sender, db, limit)


async def test_429_waits_retry_after_and_other_rooms_go_on(sqlite_db: Database) -> None:
    slow = await _queue(sqlite_db, "!slow:x", 2)
    fast = await _queue(sqlite_db, "!fast:x", 3)
    client = ScriptedClient({"!slow:x": ["429:400", "ok", "ok"]})
    sender = Sender(client, sqlite_db)  # type: ignore[arg-type]
    await _run_until_sent(sender, sqlite_db)
    assert client.delivered["!slow:x"] == slow and client.delivered["!fast:x"] == fast
    slow_calls = [c for c in client.calls if c[0] == "!slow:x"]
    fast_done = max(c[2] for c in client.calls if c[0] == "!fast:x")
    assert slow_calls[0][1] == slow_calls[1][1], "the retry reuses the transaction id"
    assert slow_calls[1][2] - slow_calls[0][2] >= 0.39, "waited retry_after_ms"
    assert fast_done < slow_calls[1][2], "the other room was not held up"


async def test_network_loss_retries_with_the_same_txn_id(sqlite_db: Database) -> None:
    txns = await _queue(sqlite_db, "!r:x", 1)
    client = ScriptedClient({"!r:x": ["net", "net", "ok"]})
    await _run_until_sent(Sender(client, sqlite_db), sqlite_db)  # type: ignore[arg-type]
    assert [c[1] for c in client.calls] == txns * 3
    assert client.delivered["!r:x"] == txns
    async with sqlite_db.transaction() as s:
        row = await s.scalar(select(OutboxMessage))
    assert row is not None and row.status == "sent" and row.attempts == 2


async def test_forbidden_room_is_marked_failed_and_reported(sqlite_db: Database) -> None:
    await _queue(sqlite_db, "!gone:x", 1)
    client = ScriptedClient({"!gone:x": ["forbidden"]})
    failed: list[tuple[int, str]] = []
    sender = Sender(client, sqlite_db, on_failed=lambda i, e: failed.append((i, e)))  # type: ignore[arg-type]
    await _run_until_sent(sender, sqlite_db)
    async with sqlite_db.transaction() as s:
        row = await s.scalar(select(OutboxMessage))
    assert row is not None and row.status == "failed" and "M_FORBIDDEN" in (row.last_error or "")
    assert failed and failed[0][0] == row.id


async def test_settled_waits_until_the_send_in_flight_has_its_event_id(sqlite_db: Database) -> None:
    """An answer to a message the bot is sending right now must find that message's event id:
    the dispatcher waits for ``settled`` first, which returns only once the id is stored."""
    gate, in_flight = asyncio.Event(), asyncio.Event()

    class SlowClient(ScriptedClient):
        async def room_send(self, room_id: str, *args: Any, **kwargs: Any) -> Any:
            in_flight.set()
            await gate.wait()  # Synapse has the event; its response is still on the way
            return await super().room_send(room_id, *args, **kwargs)

    (txn,) = await _queue(sqlite_db, "!r:x", 1)
    sender = Sender(SlowClient({}), sqlite_db)  # type: ignore[arg-type]
    task = asyncio.create_task(send_until_empty(sender, sqlite_db))
    await asyncio.wait_for(in_flight.wait(), 5)
    waiting = asyncio.create_task(sender.settled(["!r:x", "!other:x"]))
    await asyncio.sleep(0.1)
    assert not waiting.done(), "returned while the send was still in flight"
    gate.set()
    await asyncio.wait_for(waiting, 5)
    async with sqlite_db.transaction() as s:
        row = await s.scalar(select(OutboxMessage))
    assert row is not None and row.event_id == f"$ev-{txn}", "stored before settled returned"
    await task

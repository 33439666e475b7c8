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


async def test_a_429_pauses_every_room_once_and_the_retry_keeps_the_txn_id(
    sqlite_db: Database,
) -> None:
    """Synapse's message limit is the bot's, in every room: after a 429 no room sends until
    retry_after_ms has passed (nobody runs into the same limit meanwhile)."""
    slow = await _queue(sqlite_db, "!slow:x", 2)
    fast = await _queue(sqlite_db, "!fast:x", 3)
    client = ScriptedClient({"!slow:x": ["429:400", "ok", "ok"]})
    sender = Sender(client, sqlite_db)  # type: ignore[arg-type]
    await _run_until_sent(sender, sqlite_db)
    assert client.delivered["!slow:x"] == slow and client.delivered["!fast:x"] == fast
    slow_calls = [c for c in client.calls if c[0] == "!slow:x"]
    limited_at = slow_calls[0][2]
    assert slow_calls[0][1] == slow_calls[1][1], "the retry reuses the transaction id"
    later = [c[2] - limited_at for c in client.calls if c[2] > limited_at]
    assert later and min(later) >= 0.39, "every room waited retry_after_ms"
    assert len(client.calls) == 6, "one 429, and nobody ran into it again"


class RateLimitedClient(ScriptedClient):
    """Synapse's rc_message for one sender, in every room: a burst, then ``rate`` a second;
    over it a 429 with the wait until the next message may go. Each request takes a little
    while, as over a network."""

    def __init__(self, burst: int, rate: float) -> None:
        super().__init__({})
        self.burst, self.rate = burst, rate
        self.tokens, self.at = float(burst), self.loop.time()
        self.limited = 0
        self.holding = asyncio.Event()  # set at the first 429
        self.sent: list[tuple[str, str, float]] = []  # (room, body, time) of each accepted

    async def room_send(
        self,
        room_id: str,
        _type: str,
        content: dict[str, Any],
        tx_id: str,
        ignore_unverified_devices: bool = True,
    ) -> Any:
        await asyncio.sleep(0.004)
        now = self.loop.time()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.calls.append((room_id, tx_id, now))
        if self.tokens < 1:
            self.limited += 1
            self.holding.set()
            wait_ms = int((1 - self.tokens) / self.rate * 1000) + 1
            return RoomSendError("Too Many Requests", "M_LIMIT_EXCEEDED", wait_ms)
        self.tokens -= 1
        self.sent.append((room_id, content["body"], now))
        return await super().room_send(room_id, _type, content, tx_id)


async def test_an_answer_goes_ahead_of_a_rate_limited_fan_out(sqlite_db: Database) -> None:
    """A broadcast to 12 rooms is held by the homeserver's rate limit; a reply to a person's
    command queued meanwhile is the next message out, not the last. One room's own messages
    keep their order, and the workers do not hammer the homeserver: about one 429 per message."""
    async with sqlite_db.transaction() as s:
        for i in range(12):
            outbox.enqueue(s, f"!ent{i:02d}:x", {"body": f"post {i}"}, cause="notice:N-2026-0001")
        for n in range(3):  # one room gets several: they must stay in order
            outbox.enqueue(s, "!ent00:x", {"body": f"more {n}"}, cause="notice:N-2026-0001")
    client = RateLimitedClient(burst=3, rate=4)
    sender = Sender(client, sqlite_db)  # type: ignore[arg-type]
    task = asyncio.create_task(send_until_empty(sender, sqlite_db))
    await asyncio.wait_for(client.holding.wait(), 5)
    async with sqlite_db.transaction() as s:  # a person's command came in: its reply
        outbox.enqueue(s, "!dm:x", {"body": "answer"}, cause="$cmd", reply_to="$cmd")
    queued_at = client.loop.time()
    await task
    after = [body for _room, body, at in client.sent if at >= queued_at]
    # At most the one on its way, and those let through while the answer was being read from
    # the database (a message every 0.25 s here, so a loaded machine lets a few more through;
    # every 5 s on a real homeserver). Behind the fan-out it would come about twelfth.
    assert after.index("answer") <= 4, after
    assert [b for r, b, _ in client.sent if r == "!ent00:x"] == [
        "post 0",
        "more 0",
        "more 1",
        "more 2",
    ]
    # The requests in flight when the limit was first hit (16 slots), then one or two 429s per
    # message (the server's bucket refills one message at a time); waiting each on its own, the
    # workers would collect several per message.
    assert client.limited <= 2 * len(client.sent) + 16, "each worker waited for its own 429"


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


async def test_after_a_passing_429_the_sender_widens_again(sqlite_db: Database) -> None:
    """One 429, then a homeserver that takes everything: after the pause the sends go one at a
    time only until two in a row succeed, then as many at once as before."""
    async with sqlite_db.transaction() as s:
        for i in range(40):
            outbox.enqueue(s, f"!r{i:02d}:x", {"body": f"m {i}"}, cause="notice:N-2026-0001")

    class Busy(ScriptedClient):
        def __init__(self) -> None:
            super().__init__({"!r00:x": ["429:200"]})
            self.now = 0
            self.after: list[int] = []  # requests in flight at each start after the pause

        async def room_send(self, room_id: str, *args: Any, **kwargs: Any) -> Any:
            self.now += 1
            limited = [c[2] for c in self.calls if c[0] == "!r00:x"]
            if limited and self.loop.time() >= limited[0] + 0.19:  # after the pause
                self.after.append(self.now)
            try:
                await asyncio.sleep(0.02)
                return await super().room_send(room_id, *args, **kwargs)
            finally:
                self.now -= 1

    client = Busy()
    await _run_until_sent(Sender(client, sqlite_db), sqlite_db)  # type: ignore[arg-type]
    assert len(client.delivered) == 40
    assert client.after[0] == 1, client.after  # one at a time after the pause…
    assert max(client.after) > 4, client.after  # …then as wide as before


async def test_an_answer_behind_fan_out_in_its_own_room_takes_that_room_ahead(
    sqlite_db: Database,
) -> None:
    """The issuer's chat holds a progress report (fan-out, already waiting for its turn) when
    the answer to their command is queued behind it: a room's messages keep their order, so
    the room goes ahead of the other fan-out with both, report first."""
    async with sqlite_db.transaction() as s:
        for i in range(16):
            outbox.enqueue(s, f"!ent{i:02d}:x", {"body": f"post {i}"}, cause="notice:N-2026-0001")
    client = RateLimitedClient(burst=3, rate=4)
    task = asyncio.create_task(send_until_empty(Sender(client, sqlite_db), sqlite_db))  # type: ignore[arg-type]
    await asyncio.wait_for(client.holding.wait(), 5)
    async with sqlite_db.transaction() as s:
        outbox.enqueue(s, "!dm:x", {"body": "progress 25%"}, cause="job:notice:progress:0")
    await asyncio.sleep(0.1)  # its worker now waits at the gate, as fan-out
    queued_at = client.loop.time()
    async with sqlite_db.transaction() as s:
        outbox.enqueue(s, "!dm:x", {"body": "answer"}, cause="$cmd", reply_to="$cmd")
    await task
    after = [body for _room, body, at in client.sent if at >= queued_at]
    # Promoted: next but the ones let through while the answer was being committed.
    assert "progress 25%" in after and after.index("progress 25%") <= 2, after
    assert after.index("answer") == after.index("progress 25%") + 1, after

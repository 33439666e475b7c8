"""Send the outbox: one worker per room, all taking turns at one gate to the homeserver.

Every message carries the transaction id stored with it before the first attempt; Synapse
deduplicates on (room, sender, device, txn id), so a retry after a lost response never shows
the message twice.

A room's messages go in the order they were queued. Between rooms, the :class:`SendGate`
decides: at most ``max_in_flight`` requests at once, nobody while the homeserver has asked the
bot to wait (its rate limit is the bot's, in every room: one 429 pauses every worker, once), and
of those waiting, answers to people go before fan-out (``storage.outbox.rank``), so a broadcast
never holds a reply for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import io
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiohttp
from nio import AsyncClient, RoomSendError, RoomSendResponse, UploadResponse

from bot.crypto import BadFile, Crypto, encrypt_file
from storage import outbox
from storage.db import Database, describe, is_unavailable
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

# Errors after which retrying cannot help: the message is marked failed and reported (what
# each means to people: storage.outbox.failure_cause).
_PERMANENT = {
    "M_FORBIDDEN",
    "M_NOT_FOUND",
    "M_UNKNOWN",
    "M_BAD_JSON",
    "M_NOT_JSON",
    "M_TOO_LARGE",
    "M_NOT_JOINED",
    "M_INSUFFICIENT_POWER",
    "M_UNKNOWN_ROOM",
}
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
# Database lost (storage.db.is_unavailable): once it answers, a room worker retries after
# 0.1 s, 0.2 s … 2 s (while it keeps failing); the warning is logged once per 30 s.
_DB_RETRY_FIRST, _DB_RETRY_CAP, _DB_WARN_EVERY = 0.1, 2.0, 30.0
_RESUMED_LATELY = 1.0  # seconds
_UPLOADED = object()  # an attempt that uploaded a file: prepare the message again


def retry_after(resp: object) -> float | None:
    """Seconds the homeserver asks the bot to wait (a 429), or None for any other answer."""
    if getattr(resp, "status_code", None) not in ("M_LIMIT_EXCEEDED", 429):
        return None
    return (getattr(resp, "retry_after_ms", None) or 1000) / 1000


class SendGate:
    """Whose request goes to the homeserver next.

    At most ``slots`` requests are in flight. After a 429 nobody goes until the wait the
    homeserver asked for is over; then one at a time (its bucket refills one message at a
    time: a crowd would only collect more 429s), twice as many again after each two answers
    in a row without a 429 (it passed). Of those waiting, the lowest rank goes first
    (``storage.outbox.rank``: answers to people, then the oldest).
    """

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._busy = 0
        # (rank, arrival, future, key): a heap; a promoted waiter is pushed again (see promote).
        self._waiting: list[tuple[tuple[int, int], int, asyncio.Future[None], str]] = []
        self._order = itertools.count()
        self._until = 0.0  # loop time before which nobody goes
        self._window = slots  # how many may be in flight now: 1 after a 429
        self._streak = 0  # answers without a 429 since the last one
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._promoted: dict[str, int] = {}  # key → rank for its next turn

    @property
    def waiting(self) -> int:
        return len({id(f) for _, _, f, _ in self._waiting if not f.done()})

    @property
    def paused(self) -> bool:
        return asyncio.get_running_loop().time() < self._until

    @contextlib.asynccontextmanager
    async def turn(self, rank: tuple[int, int], key: str = "") -> AsyncIterator[None]:
        """Hold one of the slots while talking to the homeserver (``key``: who waits, for
        :meth:`promote`)."""
        await self._acquire(rank, key)
        try:
            yield
        finally:
            self._busy -= 1
            self._admit()

    def pause(self, seconds: float) -> None:
        """The homeserver asked to wait: nobody goes before then (a later 429 may extend it)."""
        if self._closed:
            return  # stopping: whoever waits is let through to see it
        loop = asyncio.get_running_loop()
        self._window, self._streak = 1, 0
        until = loop.time() + seconds
        if until > self._until:
            self._until = until
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        self._admit()

    def succeeded(self) -> None:
        """The homeserver answered a turn without a 429: after two in a row, widen again.
        (Answers to requests made before a 429 that come back during its pause do not count.)"""
        if asyncio.get_running_loop().time() < self._until:
            return
        self._streak += 1
        if self._streak >= 2 and self._window < self._slots:
            self._window = min(self._slots, self._window * 2)
            self._admit()

    def close(self) -> None:
        """Stopping: let every waiter through at once (each sees the sender stop)."""
        self._closed = True
        self._until = 0.0
        self._admit()

    def promote(self, key: str, first: int) -> None:
        """Whoever waits under ``key`` now ranks ``first`` (if that is ahead of where it was):
        an answer was queued behind its message in its room. Kept for its next turn too, in
        case it is on its way to the gate (see :meth:`forget`)."""
        self._promoted[key] = min(first, self._promoted.get(key, first))
        for rank, order, fut, k in list(self._waiting):
            if k == key and not fut.done() and first < rank[0]:
                heapq.heappush(self._waiting, ((first, rank[1]), order, fut, key))

    def forget(self, key: str) -> None:
        """``key`` has nothing left to send: a promotion waiting for it is void."""
        self._promoted.pop(key, None)

    async def _acquire(self, rank: tuple[int, int], key: str) -> None:
        loop = asyncio.get_running_loop()
        if key in self._promoted:
            rank = (min(rank[0], self._promoted.pop(key)), rank[1])
        if not self._waiting and self._busy < self._capacity and loop.time() >= self._until:
            self._busy += 1
            return
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiting, (rank, next(self._order), fut, key))
        self._admit()
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # let in just as it was cancelled
                self._busy -= 1
                self._admit()
            raise

    @property
    def _capacity(self) -> int:
        if self._closed:
            return len(self._waiting) + self._busy + 1
        return self._window

    def _admit(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting and self._waiting[0][2].done():
            heapq.heappop(self._waiting)  # cancelled while waiting
        wait = self._until - loop.time()
        if self._waiting and wait > 0.001:
            if self._timer is None:
                self._timer = loop.call_later(wait, self._on_timer)
            return
        while self._waiting and self._busy < self._capacity:
            _, _, fut, _ = heapq.heappop(self._waiting)
            if not fut.done():
                self._busy += 1
                fut.set_result(None)
        if not any(not f.done() for _, _, f, _ in self._waiting):
            self._waiting.clear()

    def _on_timer(self) -> None:
        self._timer = None
        self._admit()


class Backoff:
    """Capped exponential backoff: 0.5 s, 1 s, 2 s … up to ``cap``."""

    def __init__(self, base: float = 0.5, cap: float = 30.0) -> None:
        self.base, self.cap, self.failures = base, cap, 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2**self.failures))
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class Sender:
    def __init__(
        self,
        client: AsyncClient,
        db: Database,
        *,
        max_in_flight: int = 16,
        on_failed: Callable[[int, str], None] | None = None,
        crypto: Crypto | None = None,
    ) -> None:
        self.client = client
        # Encrypted rooms: members' devices judged before a send, files encrypted before upload.
        self.crypto = crypto
        self.db = db
        self._wake = asyncio.Event()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_in_flight)  # reading the outbox
        self.gate = SendGate(max_in_flight)  # talking to the homeserver
        self._stopping = False
        self.on_failed = on_failed
        self._uploads: dict[str, asyncio.Lock] = {}
        # Per room, set once the send in flight there has its outcome recorded (see settled).
        self._recording: dict[str, asyncio.Event] = {}
        # Set (and replaced) when the homeserver answers again: cuts network backoffs short.
        self._back = asyncio.Event()
        self._back_at = float("-inf")
        self._db_warned_at = float("-inf")

    def resume(self) -> None:
        """The homeserver answers again (the sync loop saw it): every worker backing off after
        a failed send tries again now, not when its backoff runs out."""
        self._back_at = asyncio.get_running_loop().time()
        self._back.set()
        self._back = asyncio.Event()

    async def _rest(self, delay: float) -> None:
        """Back off ``delay`` seconds after a failed send, or until :meth:`resume`. A failure
        seen just after a resume (its request may have been made before) is retried soon."""
        if asyncio.get_running_loop().time() - self._back_at < _RESUMED_LATELY:
            delay = min(delay, 0.2)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._back.wait(), timeout=delay)

    async def settled(self, room_ids: Iterable[str]) -> None:
        """Wait until the sends in flight in these rooms have their event ids stored.

        Someone can see the bot's message and answer it (a reply, a reaction, a thread post)
        before the bot has recorded the event id Synapse gave it; handling that answer first
        would not recognise the message it refers to. So the dispatcher waits for this first.
        """
        pending = [self._recording[r] for r in set(room_ids) if r in self._recording]
        if pending:
            await asyncio.gather(*(e.wait() for e in pending))

    @property
    def busy_rooms(self) -> int:
        """How many rooms have a worker sending right now (0 when the sender is idle)."""
        return len(self._workers)

    def wake(
        self, room_ids: Iterable[str] | None = None, answers: Iterable[str] | None = None
    ) -> None:
        """New messages are queued: in ``room_ids`` when given (no outbox scan needed), with
        answers to people in ``answers`` (a room's worker waiting with fan-out goes first)."""
        for room_id in answers or ():
            self.gate.promote(room_id, outbox.ANSWER)
        if room_ids is None:
            self._wake.set()
            return
        for room_id in room_ids:
            if not self._stopping and room_id not in self._workers:
                self._workers[room_id] = asyncio.create_task(
                    self._room_worker(room_id), name=f"send:{room_id}"
                )

    async def run(self) -> None:
        """Start a worker for every room with pending messages, whenever woken."""
        self._wake.set()  # pick up what a previous run left pending
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            if self._stopping:
                break
            try:
                async with self.db.transaction() as session:
                    room_ids = await outbox.pending_rooms(session)
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                log.warning("database unavailable (%s); sender waits for it", describe(exc))
                await self.db.wait_available()
                self._wake.set()  # look again
                continue
            for room_id in room_ids:
                if room_id not in self._workers:
                    self._workers[room_id] = asyncio.create_task(
                        self._room_worker(room_id), name=f"send:{room_id}"
                    )

    async def stop(self, grace: float = 10.0) -> None:
        """Let in-flight sends finish (what is left stays in the outbox for the next start)."""
        self._stopping = True
        self._wake.set()
        self.gate.close()
        workers = list(self._workers.values())
        if workers:
            _done, still = await asyncio.wait(workers, timeout=grace)
            for t in still:
                t.cancel()

    async def _room_worker(self, room_id: str) -> None:
        try:
            await self._drain_room_surviving(room_id)
        finally:
            self._workers.pop(room_id, None)
            self.gate.forget(room_id)

    async def _drain_room_surviving(self, room_id: str) -> None:
        """``_drain_room``, again and again while the database is lost (e.g. PostgreSQL
        restarting): the worker backs off and carries on where the outbox says, never dies of
        it. A message sent whose event id could not be stored is sent again with its txn id
        (Synapse answers with the same event)."""
        delay = _DB_RETRY_FIRST
        while True:
            try:
                await self._drain_room(room_id)
                return
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                if self._stopping:
                    return  # what is left stays in the outbox for the next start
                now = asyncio.get_running_loop().time()
                if now - self._db_warned_at > _DB_WARN_EVERY:  # one line, not one per room
                    self._db_warned_at = now
                    log.warning("database unavailable while sending (%s); retrying", describe(exc))
            await self.db.wait_available()  # one probe for all the rooms
            await asyncio.sleep(delay)  # (SQLite: reads may work while writes are locked)
            delay = min(delay * 2, _DB_RETRY_CAP)

    async def _drain_room(self, room_id: str) -> None:
        backoff = Backoff()
        if self.crypto is not None:
            # Whether the room is encrypted decides how its files are prepared.
            with contextlib.suppress(*_NETWORK_ERRORS):
                await self.crypto.ensure_room(room_id)
        while not self._stopping:
            # Take a reading slot before touching the database, so thousands of room workers
            # wait here instead of holding pooled connections.
            async with self._slots:
                async with self.db.transaction() as session:
                    msg = await outbox.next_for_room(session, room_id)
                    prepared = (
                        await outbox.prepare(session, msg, self._encrypted(room_id))
                        if msg is not None
                        else None
                    )
                    rank = await outbox.rank_in_room(session, msg) if prepared else None
            if msg is None or prepared is None:
                # No await between the empty check and leaving the table: a message queued
                # from now on wakes the run loop, which then sees no worker and starts one.
                self._workers.pop(room_id, None)
                return
            if prepared.dropped:
                continue  # marked failed by prepare: nothing left to send it for
            if prepared.upload is None and prepared.content is None:
                await asyncio.sleep(0.2)  # a parent of this message is still being sent
                continue
            # Then a turn with the homeserver: answers to people before fan-out. Rate limited,
            # the same message waits for its next turn (nothing to read again meanwhile).
            assert rank is not None
            wait: float | None = 0.0
            while wait is not None:
                async with self.gate.turn(rank, room_id):
                    if self._stopping:
                        return
                    resp = await self._attempt(room_id, msg, prepared)
                    if (wait := retry_after(resp)) is not None:
                        # Before the turn passes on: nobody runs into the same limit meanwhile.
                        log.info("rate limited in %s; every room waits %.1f s", room_id, wait)
                        self.gate.pause(wait)
                    elif not isinstance(resp, _NETWORK_ERRORS):
                        self.gate.succeeded()
            if resp is _UPLOADED:
                backoff.reset()
                continue  # uploaded: prepare again, now with the mxc URI
            if isinstance(resp, _NETWORK_ERRORS):
                delay = backoff.next_delay()
                log.warning("send to %s failed (%r); retry in %.1fs", room_id, resp, delay)
                await self._record(msg.id, repr(resp), give_up=False)
                await self._rest(delay)  # outside the slot: other rooms go on meanwhile
                continue
            if isinstance(resp, RoomSendResponse):
                backoff.reset()  # recorded as sent above, before anyone waiting was let go
                continue
            await self._handle_error(room_id, msg.id, resp, backoff)

    def _encrypted(self, room_id: str) -> bool:
        return self.crypto is not None and self.crypto.encrypted(room_id)

    async def _attempt(self, room_id: str, msg: OutboxMessage, prepared: outbox.Prepared) -> object:
        """Upload the message's file, or send it; the homeserver's answer (or the error)."""
        if prepared.upload is not None:
            resp = await self._upload(prepared.upload)
            return _UPLOADED if resp is None else resp
        assert prepared.content is not None
        content = prepared.content
        if "file" in content and "url" not in content and not self._encrypted(room_id):
            # An encrypted file someone sent, relayed into an unencrypted room: decrypted and
            # uploaded in plaintext (nobody there holds the key).
            relayed = await self._plain_relay(content)
            if not isinstance(relayed, dict):
                return relayed
            prepared = outbox.Prepared(content=relayed)
        if self.crypto is not None and self.crypto.on:
            try:
                await self.crypto.ensure_room(room_id)
                await self.crypto.before_send(room_id)
            except _NETWORK_ERRORS as exc:
                return exc
        self._recording[room_id] = recorded = asyncio.Event()
        try:
            return await self._send(room_id, msg, prepared.content)
        finally:
            self._recording.pop(room_id, None)
            recorded.set()

    async def _send(self, room_id: str, msg: OutboxMessage, content: dict[str, Any]) -> object:
        """Send one message; once Synapse took it, store its event id before returning."""
        try:
            resp = await self.client.room_send(
                room_id,
                msg.event_type,
                content,
                tx_id=msg.txn_id,
                ignore_unverified_devices=True,
            )
        except _NETWORK_ERRORS as exc:
            return exc
        if isinstance(resp, RoomSendResponse):
            async with self.db.transaction() as session:
                await outbox.mark_sent(session, msg.id, resp.event_id)
        return resp

    async def _plain_relay(self, content: dict[str, Any]) -> dict[str, Any] | object:
        """``content`` with its encrypted ``file`` replaced by a plaintext upload's ``url``."""
        assert self.crypto is not None
        try:
            data = await self.crypto.fetch_file(content["file"])
        except BadFile as exc:
            return RoomSendError(f"the relayed file could not be read: {exc}", "M_UNKNOWN")
        mimetype = str((content.get("info") or {}).get("mimetype") or "application/octet-stream")
        try:
            resp, _keys = await self.client.upload(
                lambda *_: io.BytesIO(data),
                content_type=mimetype,
                filename=str(content.get("filename") or content.get("body") or "file"),
                filesize=len(data),
            )
        except _NETWORK_ERRORS as exc:
            return exc
        if not isinstance(resp, UploadResponse):
            return resp
        plain = {k: v for k, v in content.items() if k != "file"}
        plain["url"] = resp.content_uri
        return plain

    async def _upload(self, upload: outbox.Upload) -> object | None:
        """Upload a file once for all the rooms it goes to (once in plaintext for unencrypted
        rooms, once encrypted for encrypted rooms); None when its mxc URI (or encrypted file
        object) is stored, else the error (handled like a send error of the message)."""
        lock = self._uploads.setdefault(upload.sha256, asyncio.Lock())
        async with lock:
            async with self.db.transaction() as session:
                if upload.encrypted:
                    done = await outbox.uploaded_encrypted(session, upload.sha256, upload.file_id)
                else:
                    done = await outbox.uploaded_url(session, upload.sha256, upload.file_id)
                if done:
                    return None  # another room's worker uploaded the same bytes meanwhile
            data, keys = upload.data, None
            if upload.encrypted:
                data, keys = encrypt_file(upload.data)
            try:
                resp, _keys = await self.client.upload(
                    lambda *_: io.BytesIO(data),
                    content_type="application/octet-stream" if keys else upload.mimetype,
                    filename=upload.name,
                    filesize=len(data),
                )
            except _NETWORK_ERRORS as exc:
                return exc
            if not isinstance(resp, UploadResponse):
                return resp
            async with self.db.transaction() as session:
                if keys is not None:
                    await outbox.set_file_encrypted(
                        session, upload.file_id, {**keys, "url": resp.content_uri}
                    )
                else:
                    await outbox.set_file_url(session, upload.file_id, resp.content_uri)
            return None

    async def _handle_error(
        self, room_id: str, msg_id: int, resp: object, backoff: Backoff
    ) -> None:
        code = getattr(resp, "status_code", None)
        text = f"{code}: {getattr(resp, 'message', resp)}"
        if retry_after(resp) is not None:
            return  # the gate holds every room until the homeserver's wait is over
        give_up = code in _PERMANENT
        await self._record(msg_id, text, give_up=give_up)
        if give_up:
            log.error("giving up on message %d to %s: %s", msg_id, room_id, text)
            if self.on_failed:
                self.on_failed(msg_id, text)
            return
        delay = backoff.next_delay()
        log.warning("send to %s failed (%s); retry in %.1fs", room_id, text, delay)
        await self._rest(delay)

    async def _record(self, msg_id: int, error: str, *, give_up: bool) -> None:
        async with self.db.transaction() as session:
            await outbox.mark_attempt(session, msg_id, error, give_up=give_up)


__all__ = ["Backoff", "RoomSendError", "SendGate", "Sender", "retry_after"]

"""Send the outbox: one worker per room, so a rate-limited room does not stall the others.

Every message carries the transaction id stored with it before the first attempt; Synapse
deduplicates on (room, sender, device, txn id), so a retry after a lost response never shows
the message twice.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
from nio import AsyncClient, RoomSendError, RoomSendResponse, UploadResponse

from storage import outbox
from storage.db import Database
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

# Errors after which retrying cannot help: the message is marked failed and reported.
_PERMANENT = {"M_FORBIDDEN", "M_NOT_FOUND", "M_UNKNOWN", "M_BAD_JSON", "M_NOT_JSON", "M_TOO_LARGE"}
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


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
    ) -> None:
        self.client = client
        self.db = db
        self._wake = asyncio.Event()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(max_in_flight)
        self._stopping = False
        self.on_failed = on_failed
        self._uploads: dict[str, asyncio.Lock] = {}
        # Per room, set once the send in flight there has its outcome recorded (see settled).
        self._recording: dict[str, asyncio.Event] = {}

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

    def wake(self, room_ids: Iterable[str] | None = None) -> None:
        """New messages are queued: in ``room_ids`` when given (no outbox scan needed)."""
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
            async with self.db.transaction() as session:
                room_ids = await outbox.pending_rooms(session)
            for room_id in room_ids:
                if room_id not in self._workers:
                    self._workers[room_id] = asyncio.create_task(
                        self._room_worker(room_id), name=f"send:{room_id}"
                    )

    async def stop(self, grace: float = 10.0) -> None:
        """Let in-flight sends finish (what is left stays in the outbox for the next start)."""
        self._stopping = True
        self._wake.set()
        workers = list(self._workers.values())
        if workers:
            _done, still = await asyncio.wait(workers, timeout=grace)
            for t in still:
                t.cancel()

    async def _room_worker(self, room_id: str) -> None:
        try:
            await self._drain_room(room_id)
        finally:
            self._workers.pop(room_id, None)

    async def _drain_room(self, room_id: str) -> None:
        backoff = Backoff()
        while not self._stopping:
            # Take a send slot before touching the database, so thousands of room workers wait
            # here instead of holding pooled connections.
            async with self._slots:
                async with self.db.transaction() as session:
                    msg = await outbox.next_for_room(session, room_id)
                    prepared = await outbox.prepare(session, msg) if msg is not None else None
                if msg is None or prepared is None:
                    # No await between the empty check and leaving the table: a message queued
                    # from now on wakes the run loop, which then sees no worker and starts one.
                    self._workers.pop(room_id, None)
                    return
                if prepared.upload is not None:
                    resp = await self._upload(prepared.upload)
                    if resp is None:
                        backoff.reset()
                        continue  # uploaded: prepare again, now with the mxc URI
                elif prepared.content is None:
                    resp = None  # a parent of this message is still being sent
                else:
                    self._recording[room_id] = recorded = asyncio.Event()
                    try:
                        resp = await self._send(room_id, msg, prepared.content)
                    finally:
                        self._recording.pop(room_id, None)
                        recorded.set()
            if resp is None:
                await asyncio.sleep(0.2)
                continue
            if isinstance(resp, _NETWORK_ERRORS):
                delay = backoff.next_delay()
                log.warning("send to %s failed (%r); retry in %.1fs", room_id, resp, delay)
                await self._record(msg.id, repr(resp), give_up=False)
                await asyncio.sleep(delay)  # outside the slot: other rooms go on meanwhile
                continue
            if isinstance(resp, RoomSendResponse):
                backoff.reset()  # recorded as sent above, before anyone waiting was let go
                continue
            await self._handle_error(room_id, msg.id, resp, backoff)

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

    async def _upload(self, upload: outbox.Upload) -> object | None:
        """Upload a file once for all the rooms it goes to; None when its mxc URI is stored,
        else the error (handled like a send error of the message that carries it)."""
        lock = self._uploads.setdefault(upload.sha256, asyncio.Lock())
        async with lock:
            async with self.db.transaction() as session:
                if await outbox.uploaded_url(session, upload.sha256, upload.file_id):
                    return None  # another room's worker uploaded the same bytes meanwhile
            try:
                resp, _keys = await self.client.upload(
                    lambda *_: io.BytesIO(upload.data),
                    content_type=upload.mimetype,
                    filename=upload.name,
                    filesize=len(upload.data),
                )
            except _NETWORK_ERRORS as exc:
                return exc
            if not isinstance(resp, UploadResponse):
                return resp
            async with self.db.transaction() as session:
                await outbox.set_file_url(session, upload.file_id, resp.content_uri)
            return None

    async def _handle_error(
        self, room_id: str, msg_id: int, resp: object, backoff: Backoff
    ) -> None:
        code = getattr(resp, "status_code", None)
        text = f"{code}: {getattr(resp, 'message', resp)}"
        if code in ("M_LIMIT_EXCEEDED", 429):
            wait_ms = getattr(resp, "retry_after_ms", None) or 1000
            log.info("rate limited in %s; waiting %d ms", room_id, wait_ms)
            await asyncio.sleep(wait_ms / 1000)
            return
        give_up = code in _PERMANENT
        await self._record(msg_id, text, give_up=give_up)
        if give_up:
            log.error("giving up on message %d to %s: %s", msg_id, room_id, text)
            if self.on_failed:
                self.on_failed(msg_id, text)
            return
        delay = backoff.next_delay()
        log.warning("send to %s failed (%s); retry in %.1fs", room_id, text, delay)
        await asyncio.sleep(delay)

    async def _record(self, msg_id: int, error: str, *, give_up: bool) -> None:
        async with self.db.transaction() as session:
            await outbox.mark_attempt(session, msg_id, error, give_up=give_up)


__all__ = ["Backoff", "RoomSendError", "Sender"]

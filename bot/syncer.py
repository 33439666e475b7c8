"""The sync loop: fetch, fill gaps, store events with their sync token, then let them be handled.

Unlike nio's ``sync_forever`` the token is saved only in the same transaction as the events it
covers, and a ``limited`` timeline is paged back through ``/messages`` down to the last event
already in the inbox (or the bot's join), so commands sent during an outage are all handled.

Faults: while the homeserver is away the loop backs off, but probes ``/_matrix/client/versions``
every second, so it syncs again (and the sender resends) as soon as the server answers. When the
database is lost while a batch is stored or handled, nothing of it is lost: the token moves only
with the stored events, a handled event's transaction rolls back and it stays pending; the loop
waits for the database and then handles everything pending, oldest first, each once.

Encryption: nio stores a sync's room keys and olm sessions in its crypto store inside
``client.sync()`` (``receive_response``), before :meth:`SyncLoop.process` commits the events and
the token; so a token is never committed before the keys of the events it covers are stored
(bot/crypto.py). After each stored sync ``after_sync`` does the key upkeep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    InviteMemberEvent,
    MessageDirection,
    RoomGetStateResponse,
    RoomMessagesResponse,
    SyncResponse,
)

from bot.sender import Backoff
from storage import inbox, rooms
from storage.db import Database, describe, is_unavailable
from storage.inbox import IncomingEvent
from storage.models import InboxEvent

log = logging.getLogger(__name__)

_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
_GAP_PAGE = 100
_GAP_MAX_PAGES = 50  # 5,000 events per room per outage; beyond that the oldest are dropped
# While the homeserver is away: look every PROBE_SECONDS whether it answers again, so the bot
# is back within about a second of it, however long the backoff has grown.
PROBE_SECONDS = 1.0
_PROBE_TIMEOUT = 5.0
_VERSIONS = "/_matrix/client/versions"


@dataclass(frozen=True)
class Invite:
    room_id: str
    inviter: str
    is_direct: bool


@dataclass(frozen=True)
class JoinPoint:
    ts: int
    event_id: str | None


def _incoming(room_id: str, source: dict[str, Any]) -> IncomingEvent | None:
    return IncomingEvent.of(source, room_id)


def _sources(events: Iterable[Any]) -> list[dict[str, Any]]:
    return [e.source if hasattr(e, "source") else e for e in events]


class SyncLoop:
    def __init__(
        self,
        client: AsyncClient,
        db: Database,
        *,
        timeout_ms: int,
        filter_id: str | dict[str, Any] | None,
        token: str | None,
        on_invite: Callable[[Invite], Awaitable[None]],
        on_stored: Callable[[list[InboxEvent] | None], Awaitable[None]],
        on_recovered: Callable[[], None] | None = None,
        after_sync: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.db = db
        self.timeout_ms = timeout_ms
        self.filter_id = filter_id
        self.token = token
        self.on_invite = on_invite
        self.on_stored = on_stored
        # Told when the homeserver answers again after an outage (the sender resends at once).
        self.on_recovered = on_recovered
        # After each stored sync, before its events are handled: the key upkeep nio's
        # sync_forever does (upload one-time keys, query and claim keys, send to-device).
        self.after_sync = after_sync
        self.user_id = client.user_id
        # The bot's join point per room, as stored; read once per room, not on every sync.
        self._joins: dict[str, JoinPoint] = {}
        # When syncing started to fail (None while it works).
        self._failing_since: float | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = Backoff(base=1.0, cap=60.0)
        # Events stored by an earlier run but not yet handled (a crash between the two steps).
        await self._store_and_handle(None, stopping)
        while not stopping.is_set():
            resp = await self._sync_or_stop(stopping, backoff)
            if resp is None:
                continue
            if self._failing_since is not None:
                log.warning("syncing again after %.1f s", time.monotonic() - self._failing_since)
                self._failing_since = None
                if self.on_recovered is not None:
                    self.on_recovered()
            backoff.reset()
            # The batch in hand is finished even if a stop is requested meanwhile.
            await asyncio.shield(self._store_and_handle(resp, stopping))

    async def _store_and_handle(self, resp: SyncResponse | None, stopping: asyncio.Event) -> None:
        """Store one sync response (None: nothing new) and handle what it added.

        Losing the database or the homeserver on the way loses nothing and repeats nothing: the
        token moves only with the stored events, a handled event rolls back and stays pending.
        So wait for what was lost, store the same response again (stored events are skipped)
        and handle everything pending, oldest first; give up only when the bot is stopping."""
        faulted = False
        while True:
            try:
                added = await self.process(resp) if resp is not None else None
                if resp is not None and self.after_sync is not None:
                    await self.after_sync()
                # After a fault, events of this response may have been stored, or half handled,
                # without our knowing: handle whatever is pending instead of what was "added".
                await self.on_stored(None if faulted else added)
                return
            except Exception as exc:
                # (A timeout may be either's: wait for both, each returns at once if it is up.)
                homeserver = isinstance(exc, aiohttp.ClientError | TimeoutError)
                database = is_unavailable(exc)
                if not (homeserver or database):
                    raise
                if database:
                    log.warning("database unavailable (%s); waiting for it", describe(exc))
                    if not await self.db.wait_available(stopping):
                        return  # stopping: the unstored is synced again, the rest is pending
                if homeserver:
                    await self._pause(stopping, 60.0, f"homeserver lost mid-batch ({exc!r})")
                    if stopping.is_set():
                        return
            faulted = True

    async def _sync_or_stop(self, stopping: asyncio.Event, backoff: Backoff) -> SyncResponse | None:
        sync = asyncio.create_task(
            self.client.sync(timeout=self.timeout_ms, sync_filter=self.filter_id, since=self.token)
        )
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({sync, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not sync.done():
            # Nothing of this sync was stored, so abandoning it loses nothing.
            sync.cancel()
            with contextlib.suppress(asyncio.CancelledError, *_NETWORK_ERRORS):
                await sync
            return None
        if self._failing_since is None and (
            sync.exception() is not None or not isinstance(sync.result(), SyncResponse)
        ):
            self._failing_since = time.monotonic()
        try:
            resp = sync.result()
        except _NETWORK_ERRORS as exc:
            await self._pause(stopping, backoff.next_delay(), f"sync failed: {exc!r}")
            return None
        if isinstance(resp, SyncResponse):
            return resp
        code = getattr(resp, "status_code", None)
        if code in ("M_LIMIT_EXCEEDED", 429):
            wait = (getattr(resp, "retry_after_ms", None) or 1000) / 1000
            await self._pause(stopping, wait, "sync rate limited", probe=False)
        else:
            await self._pause(stopping, backoff.next_delay(), f"sync error: {resp}")
        return None

    async def _pause(
        self, stopping: asyncio.Event, delay: float, why: str, *, probe: bool = True
    ) -> None:
        """Wait ``delay`` seconds, or less: until a probe finds the homeserver answering (unless
        ``probe`` is off, e.g. after a 429), or the bot stops."""
        log.warning("%s; retrying in %.1fs%s", why, delay, " or when it answers" if probe else "")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stopping.wait(), timeout=min(left, PROBE_SECONDS) if probe else left
                )
            if stopping.is_set() or (probe and await self._answers()):
                return

    async def _answers(self) -> bool:
        """Whether the homeserver answers ``GET /_matrix/client/versions`` (no auth, no DB)."""
        try:
            resp = await self.client.send("GET", _VERSIONS, timeout=_PROBE_TIMEOUT)
        except _NETWORK_ERRORS:
            return False
        try:
            return resp.status == 200
        finally:
            resp.release()

    async def process(self, resp: SyncResponse) -> list[InboxEvent]:
        """Store the events of one sync response (gaps filled) and its token in one transaction.

        Returns the new events that need handling.
        """
        joined = resp.rooms.join
        unknown = [r for r in joined if r not in self._joins]
        if unknown:
            async with self.db.transaction() as session:
                for room_id, info in (await rooms.get_many(session, unknown)).items():
                    if info.joined_ts is not None and not info.left:
                        self._joins[room_id] = JoinPoint(info.joined_ts, info.join_event_id)
        batch: list[IncomingEvent] = []
        joins: dict[str, JoinPoint] = {}
        for room_id, info in joined.items():
            state = _sources(info.state)
            timeline = _sources(info.timeline.events)
            join = self._own_join(state + timeline)
            known = self._joins.get(room_id)
            if join is None and known is None:
                join = await self._join_from_state(room_id)
            if join is not None:
                joins[room_id] = join
            if info.timeline.limited and info.timeline.prev_batch:
                point = join or known
                older = await self._fill_gap(room_id, info.timeline.prev_batch, point, timeline)
                timeline = older + timeline
            batch.extend(e for e in (_incoming(room_id, s) for s in timeline) if e)

        for invite in self._invites(resp):
            await self.on_invite(invite)

        async with self.db.transaction() as session:
            for room_id, point in joins.items():
                await rooms.record_join(session, room_id, point.ts, point.event_id)
            for room_id in resp.rooms.leave:
                await rooms.record_leave(session, room_id)
            added = await inbox.store_batch(session, self.user_id, batch, resp.next_batch)
        self.token = resp.next_batch
        for room_id, point in joins.items():
            current = self._joins.get(room_id)
            if current is None or point.ts >= current.ts:
                self._joins[room_id] = point
        for room_id in resp.rooms.leave:
            self._joins.pop(room_id, None)
        if added:
            log.debug("stored %d new events", len(added))
        return added

    def _own_join(self, sources: list[dict[str, Any]]) -> JoinPoint | None:
        point = None
        for src in sources:
            if (
                src.get("type") == "m.room.member"
                and src.get("state_key") == self.user_id
                and (src.get("content") or {}).get("membership") == "join"
                and src.get("event_id")
            ):
                ts = int(src.get("origin_server_ts", 0))
                prev = (src.get("unsigned") or {}).get("prev_content") or {}
                if prev.get("membership") == "join":
                    continue  # a profile change, not a (re)join
                if point is None or ts >= point.ts:
                    point = JoinPoint(ts, src["event_id"])
        return point

    async def _join_from_state(self, room_id: str) -> JoinPoint | None:
        resp = await self.client.room_get_state(room_id)
        if not isinstance(resp, RoomGetStateResponse):
            log.warning("cannot read state of %s: %s", room_id, resp)
            return None
        return self._own_join(resp.events)

    async def _fill_gap(
        self,
        room_id: str,
        prev_batch: str,
        join: JoinPoint | None,
        timeline: list[dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """Page back from ``prev_batch`` to the newest event we already have, or the join."""
        collected: list[dict[str, Any]] = []
        in_batch = {s.get("event_id") for s in timeline}
        token: str | None = prev_batch
        for _ in range(_GAP_MAX_PAGES):
            if token is None:
                break
            resp = await self.client.room_messages(
                room_id, start=token, direction=MessageDirection.back, limit=_GAP_PAGE
            )
            if not isinstance(resp, RoomMessagesResponse):
                code = getattr(resp, "status_code", None)
                if code in ("M_LIMIT_EXCEEDED", 429):
                    await asyncio.sleep((getattr(resp, "retry_after_ms", None) or 1000) / 1000)
                    continue
                log.error("cannot page back in %s: %s; some events may be missed", room_id, resp)
                break
            page = _sources(resp.chunk)
            async with self.db.transaction() as session:
                have = await inbox.known_event_ids(session, (s.get("event_id", "") for s in page))
            reached = False
            for src in page:  # newest first
                eid = src.get("event_id")
                if eid in have or (
                    join is not None
                    and (eid == join.event_id or int(src.get("origin_server_ts", 0)) < join.ts)
                ):
                    reached = True
                    break
                if eid not in in_batch:
                    collected.append(src)
            if reached or not page or resp.end in (None, token):
                break
            token = resp.end
        else:
            log.error("gap in %s longer than %d events; oldest dropped", room_id, len(collected))
        collected.reverse()
        if collected:
            log.info("filled a gap of %d events in %s", len(collected), room_id)
        return collected

    def _invites(self, resp: SyncResponse) -> list[Invite]:
        found = []
        for room_id, info in resp.rooms.invite.items():
            for ev in info.invite_state:
                # nio keeps the content of stripped invite events on the object, not in .source.
                if (
                    isinstance(ev, InviteMemberEvent)
                    and ev.state_key == self.user_id
                    and ev.membership == "invite"
                ):
                    is_direct = bool((ev.content or {}).get("is_direct"))
                    found.append(Invite(room_id, ev.sender, is_direct))
                    break
        return found

"""The inbox consumer of appservice mode: what the endpoint stored, handed on in order.

In sync mode the sync loop stores a batch and hands it on itself. Here the endpoint may be in
another process (every bot process sharing the database listens; only the lease holder handles),
so the holder reads the inbox: at once when its own endpoint stored something, and every
``poll_seconds`` besides for what another process's endpoint stored.

Invites to the bot arrive as membership events among the others; they are answered (joined or
declined, handlers/basics/invites.py) before the events after them are handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from bot.syncer import Invite
from storage import inbox
from storage.db import Database, describe, is_unavailable
from storage.models import InboxEvent

log = logging.getLogger(__name__)

_BATCH = 100


def invite_of(user_id: str, event: InboxEvent) -> Invite | None:
    """The invite this event makes of the bot, if it is one."""
    content = event.source.get("content") or {}
    if (
        event.type == "m.room.member"
        and event.source.get("state_key") == user_id
        and content.get("membership") == "invite"
    ):
        return Invite(event.room_id, event.sender, bool(content.get("is_direct")))
    return None


class AppserviceFeed:
    def __init__(
        self,
        db: Database,
        *,
        user_id: str,
        handle: Callable[[list[InboxEvent] | None], Awaitable[None]],
        on_invite: Callable[[Invite], Awaitable[None]],
        poll_seconds: float = 0.5,
        on_caught_up: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.user_id = user_id
        # GridBot._after_store: waits for the sender to settle the rooms, dispatches, retries.
        self.handle = handle
        self.on_invite = on_invite
        self.poll_seconds = poll_seconds
        # Told after each drain that left nothing pending (the bot is ready after the first).
        self.on_caught_up = on_caught_up
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self._wake.clear()
            try:
                await self.drain()
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                # Nothing is lost: an event whose handling rolled back is still pending.
                log.warning("database unavailable (%s); waiting for it", describe(exc))
                if not await self.db.wait_available(stopping):
                    return
                continue
            if self.on_caught_up is not None:
                self.on_caught_up()
            waiters = {
                asyncio.create_task(self._wake.wait()),
                asyncio.create_task(stopping.wait()),
            }
            _, left = await asyncio.wait(
                waiters, timeout=self.poll_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            for task in left:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def drain(self) -> int:
        """Hand on every pending event, oldest first; how many."""
        after = 0
        done = 0
        while True:
            async with self.db.transaction() as session:
                batch = await inbox.pending(session, limit=_BATCH, after_seq=after)
            if not batch:
                return done
            for event in batch:
                if (invite := invite_of(self.user_id, event)) is not None:
                    await self.on_invite(invite)
            await self.handle(batch)
            after = batch[-1].seq
            done += len(batch)
            if len(batch) < _BATCH:
                return done

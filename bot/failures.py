"""A message the homeserver refused for good: whoever caused it hears why, in words.

The sender marks such a message failed with the homeserver's answer ("CODE: message") and
calls :meth:`SendFailures.__call__`. What the code means is ``storage.outbox.failure_cause``
(one place); the words are ``_labels.j2`` ``send_cause``. Who is told:

- a message a person's command caused (its cause is their event): that person, in the room
  where they sent it, as a reply listing every room it did not reach and why (a short pause
  gathers the failures of one command into one answer). When the answer itself could not be
  put in that room (the bot was removed from it), there is nowhere to say it: it is logged;
- a notice's messages: the notice's issuer, by its progress check (handlers/notices/jobs.py),
  with the same words; ``/状态`` shows each enterprise not reached with its cause;
- scheduled jobs' messages: nobody caused them; they are logged.
"""

from __future__ import annotations

import asyncio
import logging

from bot import outgoing
from bot.context import Services
from bot.outgoing import Outgoing
from storage import inbox, outbox, rooms
from storage.db import Database, Session
from storage.directory import identify
from storage.models import OutboxMessage

log = logging.getLogger(__name__)

# Causes that mean the bot cannot post in that room at all: nothing can be said there.
ROOM_CLOSED = frozenset(
    {outbox.NOT_IN_ROOM, outbox.NO_PERMISSION, outbox.BANNED, outbox.FORBIDDEN, outbox.ROOM_GONE}
)
LIST_LIMIT = 30
CAUSE_PREFIX = "send-failed:"  # the cause of the answer: never told about in turn


class SendFailures:
    """The sender's ``on_failed``: gathers a command's failed messages, then tells its sender."""

    def __init__(self, db: Database, services: Services, *, gather: float = 2.0) -> None:
        self.db = db
        self.services = services
        self.gather = gather
        self._pending: list[int] = []
        self._task: asyncio.Task[None] | None = None

    def __call__(self, msg_id: int, error: str) -> None:
        log.info("message %d failed for good: %s (%s)", msg_id, error, outbox.failure_cause(error))
        self._pending.append(msg_id)
        if self._task is None:
            self._task = asyncio.create_task(self._later(), name="send-failures")

    async def _later(self) -> None:
        await asyncio.sleep(self.gather)
        await self.settle()

    async def settle(self) -> None:
        """Tell now what has been gathered (at the end of the pause; when stopping)."""
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        ids, self._pending = self._pending, []
        if not ids:
            return
        try:
            await self.tell(ids)
        except Exception:
            log.exception("could not tell anyone about failed messages %s", ids)

    async def tell(self, ids: list[int]) -> None:
        """Answer each person whose command caused some of these failed messages."""
        async with self.db.transaction() as session:
            for cause, failed in (await outbox.failed_by_cause(session, ids)).items():
                if cause is not None and cause.startswith("$"):
                    await self._tell_one(session, cause, failed)

    async def _tell_one(self, session: Session, cause: str, failed: list[OutboxMessage]) -> None:
        event = await inbox.get(session, cause)
        if event is None:
            return
        sayable = [
            m
            for m in failed
            if m.room_id != event.room_id or outbox.failure_cause(m.last_error) not in ROOM_CLOSED
        ]
        if not sayable:
            log.warning("cannot tell %s in %s why their answer failed", event.sender, event.room_id)
            return
        names = await rooms.named(session, sorted({m.room_id for m in sayable}))
        items = []
        for m in sayable[:LIST_LIMIT]:
            kind, name = names[m.room_id]
            items.append(
                {
                    "room_kind": kind,
                    "room_name": name,
                    "here": m.room_id == event.room_id,
                    "cause": outbox.failure_cause(m.last_error),
                    "code": outbox.error_code(m.last_error) or "",
                }
            )
        person = await identify(session, event.sender, self.services.admins)
        outgoing.queue(
            session,
            self.services.messages,
            Outgoing(
                event.room_id,
                "send_failed",
                {"failures": items, "more": max(0, len(sayable) - LIST_LIMIT)},
                mentions=[event.sender],
                reply_to=event.event_id,
            ),
            locale=person.language or self.services.config.language,
            cause=f"{CAUSE_PREFIX}{cause}",
        )

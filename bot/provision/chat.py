"""Provisioning progress in a chat room: one message ("建群 120/317") edited in place
(m.replace through the one send path), then a summary of what was done and what was not.

A state counts as shown only once its edit is committed: an edit that could not be queued (the
database busy while the run writes) is tried again, and the last edit, made after the edit loop
has stopped, is always the run's last state, so the message never stays at "建群 30/31". The
summary goes out once per request: a retried run (after a failure or a restart) edits it."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict

from bot.outgoing import Outgoing, content_of, queue
from bot.provision.apply import CHECK, CREATE, Summary
from messages import Messages
from storage import outbox
from storage.db import Database

EDIT_EVERY = 2.0  # seconds between edits of the progress message
SUMMARY = ":summary"  # the summary's txn id: the progress message's and this


class ChatProgress:
    """A provisioning Reporter that edits the message queued with ``txn_id``."""

    def __init__(self, db: Database, messages: Messages, txn_id: str, locale: str) -> None:
        self.db = db
        self.messages = messages
        self.txn_id = txn_id
        self.locale = locale
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.phase_now = "start"
        self._shown: tuple[str, int, int] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # Reporter
    def phase(self, name: str, total: int) -> None:
        self.totals[name], self.done[name] = total, 0

    def advance(self, name: str) -> None:
        self.done[name] = self.done.get(name, 0) + 1
        self.phase_now = name

    def waiting(self) -> None:
        pass

    def _state(self) -> tuple[str, int, int]:
        # Creating rooms is what people wait for; once every room is made, the check phase.
        created, to_create = self.done.get(CREATE, 0), self.totals.get(CREATE, 0)
        if to_create and created < to_create:
            return (CREATE, created, to_create)
        return (CHECK, self.done.get(CHECK, 0), self.totals.get(CHECK, 0))

    async def _edit(self, **values: object) -> None:
        async with self.db.transaction() as session:
            progress = await outbox.by_txn(session, self.txn_id)
            if progress is None:
                return
            queue(
                session,
                self.messages,
                Outgoing(
                    progress.room_id, "admin_provision_progress", dict(values), edit_of=progress
                ),
                locale=self.locale,
                cause=f"provision:{self.txn_id}",
            )

    async def show(self) -> None:
        state = self._state()
        if state != self._shown and state[2]:
            await self._edit(phase=state[0], done=state[1], total=state[2])
            self._shown = state  # only once the edit is queued: a failed one is tried again

    async def _loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=EDIT_EVERY)
                return
            with contextlib.suppress(Exception):
                await self.show()

    async def __aenter__(self) -> ChatProgress:
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._loop(self._stop), name="provision-progress")
        return self

    async def __aexit__(self, *exc: object) -> None:
        # The loop is told to stop, never cancelled: a task cancelled inside a database call
        # can leave SQLite's write lock held by a lost connection, and every write after it
        # (the summary, the lease, the sender) then fails "database is locked": the stall.
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None

    async def finish(self, summary: Summary) -> None:
        await self.show()
        values = asdict(summary)
        await self._summary(
            rooms=summary.rooms,
            created=len(summary.created),
            updated=len(summary.updated),
            invited=len(summary.invited),
            removed=len(summary.removed),
            failed=list(summary.failed),
            no_account=list(values["no_account"]),
            without_matrix_id=list(summary.without_matrix_id),
        )

    async def _summary(self, **values: object) -> None:
        """The summary as a reply to the progress message, once per request (its txn id is
        the progress message's plus ``SUMMARY``); a retried run edits it if it says otherwise."""
        async with self.db.transaction() as session:
            progress = await outbox.by_txn(session, self.txn_id)
            if progress is None:
                return
            txn = f"{self.txn_id}{SUMMARY}"
            posted = await outbox.by_txn(session, txn)
            message = Outgoing(
                progress.room_id,
                "admin_provision_done",
                dict(values),
                reply_to=progress if posted is None else None,
                edit_of=posted,
                txn_id=txn if posted is None else None,
            )
            if posted is not None:
                body = content_of(self.messages, message, self.locale)["body"]
                if body == await outbox.latest_body(session, posted):
                    return  # the retry says what the summary says already
            queue(session, self.messages, message, locale=self.locale, cause=f"provision:{txn}")

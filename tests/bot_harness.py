"""Run GridBot inside the test's event loop against the test Synapse, and stop or restart it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient
from sqlalchemy import func, select

from bot.app import GridBot
from bot.config import Config, parse_config
from bot.sandbox.homeserver import Synapse
from storage.db import Database
from storage.models import InboxEvent, OutboxMessage, ScheduledJob
from tests.matrix_helpers import Message, read_messages


@dataclass
class BotUnderTest:
    config: Config
    db: Database
    bot: GridBot | None = None
    task: asyncio.Task[None] | None = None
    runs: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return self.config.user_id

    async def start(self) -> GridBot:
        self.bot = GridBot(self.config, self.db)
        self.task = asyncio.create_task(self.bot.run(), name=f"gridbot-{self.runs}")
        self.runs += 1
        ready = asyncio.create_task(self.bot.ready.wait())
        done, _ = await asyncio.wait(
            {ready, self.task}, timeout=60, return_when=asyncio.FIRST_COMPLETED
        )
        if self.task in done:
            ready.cancel()
            self.task.result()  # raises the bot's error
            raise RuntimeError("the bot stopped before it was ready")
        if ready not in done:
            raise TimeoutError("the bot was not ready within 60 s")
        return self.bot

    async def stop(self) -> None:
        if self.bot and self.task:
            self.bot.stop()
            await asyncio.wait_for(self.task, timeout=60)
        self.bot = self.task = None

    async def kill(self) -> None:
        """Cancel the bot wherever it is, like a crash (no clean shutdown)."""
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.bot = self.task = None

    async def wait_idle(
        self,
        *,
        events: Iterable[str] = (),
        timeout: float = 30,  # noqa: ASYNC109 - a deadline across many polls
    ) -> None:
        """Wait until the bot has nothing left to do: every one of ``events`` (ids of messages
        the test sent) is in its inbox and handled, no inbox event is unhandled, no outbox
        message is pending, no job is due (time-machine's clock counts) and no send is running.

        Then "exactly once" and "nothing else" can be counted at once, instead of collecting
        for a guessed number of seconds. Pass the events a test waits on: the bot may not have
        synced them yet, and until then it looks idle."""
        wanted = set(events)
        deadline = time.monotonic() + timeout
        while True:
            busy = await self._busy(wanted)
            if not busy:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"the bot was not idle within {timeout} s: {'; '.join(busy)}")
            await asyncio.sleep(0.05)

    async def _busy(self, events: set[str]) -> list[str]:
        """What the bot still has to do, one phrase each; empty when it is idle."""
        now = datetime.now(UTC)
        count = select(func.count())
        async with self.db.transaction() as s:
            handled: set[str] = set()
            if events:
                handled = set(
                    await s.scalars(
                        select(InboxEvent.event_id).where(
                            InboxEvent.event_id.in_(events), InboxEvent.handled_at.is_not(None)
                        )
                    )
                )
            inbox = await s.scalar(
                count.select_from(InboxEvent).where(InboxEvent.handled_at.is_(None))
            )
            outbox = await s.scalar(
                count.select_from(OutboxMessage).where(OutboxMessage.status == "pending")
            )
            jobs = await s.scalar(
                count.select_from(ScheduledJob).where(
                    ScheduledJob.done_at.is_(None), ScheduledJob.due_at <= now
                )
            )
        # A live room worker may still be sending what it took from the outbox.
        sender = self.bot.sender if self.bot else None
        workers = sender.busy_rooms if sender is not None else 0
        left = {
            "of the test's events not handled yet": len(events - handled),
            "inbox events unhandled": inbox or 0,
            "outbox messages pending": outbox or 0,
            "jobs due": jobs or 0,
            "send workers running": workers,
        }
        return [f"{n} {what}" for what, n in left.items() if n]

    async def messages_when_idle(
        self,
        client: AsyncClient,
        room_id: str,
        *,
        events: Iterable[str] = (),
        timeout: float = 30,  # noqa: ASYNC109 - passed on to wait_idle
    ) -> list[Message]:
        """The bot's messages in room_id that client has not read yet, once the bot is idle
        (see ``wait_idle``): everything it will say about ``events`` and nothing more."""
        await self.wait_idle(events=events, timeout=timeout)
        return await read_messages(client, room_id, self.user_id)


BotFactory = Callable[..., Awaitable[BotUnderTest]]


@pytest.fixture
async def gridbot(
    synapse: Synapse, synapse_admin: tuple[str, str], tmp_path: Path
) -> AsyncIterator[BotFactory]:
    """``await gridbot(admins=[...])`` → a registered, rate-limit-exempt bot, not yet started
    (``server_admin=True``: also a homeserver admin)."""
    made: list[BotUnderTest] = []

    async def make(
        *, admins: list[str] | None = None, server_admin: bool = False, **overrides: Any
    ) -> BotUnderTest:
        localpart = f"gridbot-{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        user_id = await synapse.register(localpart, password, admin=server_admin)
        await synapse.exempt_from_ratelimit(user_id, synapse_admin[1])
        config = parse_config(
            {
                "homeserver": synapse.url,
                "user_id": user_id,
                "password": password,
                "database_url": f"sqlite+aiosqlite:///{tmp_path / (localpart + '.db')}",
                "admins": admins or [],
                "sync": {"timeout_ms": 5000},
                **overrides,
            }
        )
        db = Database(config.database_url)
        await db.upgrade()
        under_test = BotUnderTest(config=config, db=db)
        made.append(under_test)
        return under_test

    try:
        yield make
    finally:
        for b in made:
            await b.kill()
            await b.db.close()

"""Run GridBot inside the test's event loop against the test Synapse, and stop or restart it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.app import GridBot
from bot.config import Config, parse_config
from bot.homeserver import Synapse
from storage.db import Database


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

"""Run the real ``gridbot run`` process for fault tests: SIGKILL it, freeze it, read its log.

``ProcessBot`` is a :class:`tests.bot_harness.BotUnderTest` whose bot is a child process started
from a YAML config, so ``wait_idle`` and ``messages_when_idle`` count exactly as they do for an
in-process bot (from the database: inbox, outbox, due jobs). ``kill()`` is a real SIGKILL: no
``finally`` runs, no transaction is rolled back politely, nothing is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from bot.config import parse_config
from bot.sandbox.homeserver import Synapse
from storage.db import Database
from tests.bot_harness import BotUnderTest

ROOT = Path(__file__).resolve().parent.parent
READY = "GridBot ready"
START_TIMEOUT = 60.0


@dataclass
class ProcessBot(BotUnderTest):
    config_file: Path = Path()
    proc: asyncio.subprocess.Process | None = None
    # Every stderr line of every run, in order; ``run_lines[i]`` those of run i.
    lines: list[str] = field(default_factory=list)
    run_lines: list[list[str]] = field(default_factory=list)
    # The log line ``start`` waits for (a standby says it stands by instead).
    ready_line: str = READY
    _reader: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:  # type: ignore[override]
        """Start ``gridbot run`` and wait until it says it is ready (first sync handled)."""
        assert not self.alive, "already running"
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            "-c",
            str(self.config_file),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.runs += 1
        mine: list[str] = []
        self.run_lines.append(mine)
        ready = asyncio.Event()
        self._reader = asyncio.create_task(self._read(self.proc, mine, ready))
        waiter = asyncio.create_task(ready.wait())
        exited = asyncio.create_task(self.proc.wait())
        done, _ = await asyncio.wait(
            {waiter, exited}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        waiter.cancel()
        exited.cancel()
        if waiter not in done:
            tail = "\n".join(mine[-20:])
            if exited in done:
                raise RuntimeError(f"gridbot exited ({self.proc.returncode}) at start:\n{tail}")
            raise TimeoutError(f"gridbot not ready within {START_TIMEOUT:.0f} s:\n{tail}")

    async def _busy(self, events: set[str]) -> list[str]:
        if self.proc is not None and self.proc.returncode is not None:
            tail = "\n".join(self.lines[-30:])
            raise RuntimeError(f"gridbot exited ({self.proc.returncode}):\n{tail}")
        return await super()._busy(events)

    async def _read(
        self, proc: asyncio.subprocess.Process, mine: list[str], ready: asyncio.Event
    ) -> None:
        assert proc.stderr is not None
        # Also kept beside the config file, to read after a failed test.
        with self.config_file.with_suffix(".log").open("a", encoding="utf-8") as keep:
            async for raw in proc.stderr:
                line = raw.decode(errors="replace").rstrip("\n")
                mine.append(line)
                self.lines.append(line)
                keep.write(line + "\n")
                keep.flush()
                if self.ready_line in line:
                    ready.set()

    async def _ended(self, timeout: float) -> int:  # noqa: ASYNC109 - a deadline for wait()
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 10)
        self.proc = self._reader = None
        return code

    async def stop(self) -> int:  # type: ignore[override]
        """SIGTERM (as systemd stops it); its exit code."""
        if not self.alive:
            return self.proc.returncode if self.proc and self.proc.returncode is not None else 0
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return await self._ended(60)

    async def kill(self) -> None:
        """SIGKILL: a crash, wherever the process is (also when frozen)."""
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            await self._ended(30)

    def freeze(self) -> None:
        """SIGSTOP: the process stands still (its connections stay open) until ``thaw``."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)

    async def kill_when(
        self,
        check: Callable[[], Awaitable[Any]],
        what: str,
        timeout: float = 30,  # noqa: ASYNC109 - a deadline across many polls
    ) -> Any:
        """SIGKILL the bot at the first moment ``check()`` is true, and return what it said.

        The bot is frozen while ``check`` looks, so the state it saw is the state the bot dies
        in (it cannot move on between the look and the kill)."""
        deadline = time.monotonic() + timeout
        while True:
            self.freeze()
            try:
                got = await check()
            except BaseException:
                self.thaw()
                raise
            if got:
                await self.kill()  # SIGKILL works on a stopped process
                return got
            self.thaw()
            if not self.alive:
                raise RuntimeError(f"gridbot exited before {what}:\n" + "\n".join(self.lines[-20:]))
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout} s for {what}")
            await asyncio.sleep(0.005)


async def make_process_bot(
    synapse: Synapse,
    admin_token: str,
    tmp_path: Path,
    *,
    database_url: str | None = None,
    **settings: Any,
) -> ProcessBot:
    """A registered, rate-limit-exempt bot user and its config file; not started."""
    localpart = f"gridbot-{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    user_id = await synapse.register(localpart, password)
    await synapse.exempt_from_ratelimit(user_id, admin_token)
    raw = {
        "homeserver": synapse.url,
        "user_id": user_id,
        "password": password,
        "database_url": database_url or f"sqlite+aiosqlite:///{tmp_path / (localpart + '.db')}",
        "sync": {"timeout_ms": 5000},
        # Beside the test's files, also when the database is not a file (PostgreSQL).
        "encryption": {"store_path": str(tmp_path / f"{localpart}.crypto")},
        **settings,
    }
    config_file = tmp_path / f"{localpart}.yaml"
    config_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    db = Database(raw["database_url"])
    await db.upgrade()
    return ProcessBot(config=parse_config(raw), db=db, config_file=config_file)


async def limit_rate(
    synapse: Synapse, user_id: str, admin_token: str, per_second: float, burst: int
) -> None:
    """Hold a user to ``per_second`` messages (``0, 0``: no limit at all)."""
    await synapse._request(
        "POST",
        f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/override_ratelimit",
        json={"messages_per_second": per_second, "burst_count": burst},
        token=admin_token,
    )

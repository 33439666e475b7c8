"""The README run command: `gridbot sandbox` brings up a homeserver, the demo county, the bot."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from nio import AsyncClient, LoginResponse

from bot.roster.parse import parse_roster
from bot.sandbox import DEMO_ROSTER
from bot.sandbox.homeserver import free_port
from tests.matrix_helpers import create_room, send_text, wait_for_join, wait_for_message

DEMO = Path(str(DEMO_ROSTER))  # tests run from the checkout: a plain file
BOT = "@gridbot:localhost"

# Starts its own Synapse (through `gridbot sandbox`), not the session's.
pytestmark = pytest.mark.homeserver


async def _read_until(stream: asyncio.StreamReader, marker: str, limit: float) -> str:
    seen: list[str] = []
    async with asyncio.timeout(limit):
        while True:
            line = (await stream.readline()).decode(errors="replace")
            if not line:
                raise RuntimeError("sandbox exited early:\n" + "".join(seen))
            seen.append(line)
            if marker in line:
                return "".join(seen)


async def test_sandbox_serves_the_demo_county(tmp_path: Path) -> None:
    rows, errors = parse_roster(DEMO)
    assert not errors
    member = next(p for r in rows for p in r.l2_members if p.matrix_id)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "sandbox",
        "--data",
        str(tmp_path / "data"),
        "--port",
        str(port),
        "--password",
        "demo-pass",
        cwd=tmp_path,  # not the checkout: the demo roster ships with the package
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
    )
    assert proc.stdout is not None
    client = AsyncClient(f"http://127.0.0.1:{port}", member.matrix_id)
    try:
        banner = await _read_until(proc.stdout, "starting GridBot", limit=180)
        assert f"http://127.0.0.1:{port}" in banner and member.matrix_id in banner
        assert isinstance(await client.login("demo-pass"), LoginResponse)
        room = await create_room(client, invite=[BOT], is_direct=True)
        await wait_for_join(client, room, BOT, timeout=60)
        await send_text(client, room, "/我是谁")
        reply = await wait_for_message(
            client, room, lambda e: e.sender == BOT and "二级网格员" in e.body, timeout=60
        )
        assert member.name in reply.body
    finally:
        await client.close()
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), timeout=60)
    assert proc.returncode in (0, 130)

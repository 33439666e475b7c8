"""The real `gridbot run` process: one login kept across restarts, a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import yaml

from bot.sandbox.homeserver import Synapse
from storage.db import Database
from storage.models import BotSession
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import create_room, send_text, wait_for_join, wait_for_message

ROOT = Path(__file__).resolve().parent.parent


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        "run",
        "-c",
        str(config),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def _terminate(proc: asyncio.subprocess.Process) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    _out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def _stored_token(tmp_path: Path, user_id: str) -> str:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'gridbot.db'}")
    try:
        async with db.transaction() as session:
            row = await session.get(BotSession, user_id)
            assert row is not None
            return row.access_token
    finally:
        await db.close()


async def _devices(synapse: Synapse, admin_token: str, user_id: str) -> set[str]:
    status, body = await synapse._request(
        "GET", f"/_synapse/admin/v2/users/{user_id}/devices", token=admin_token
    )
    assert status == 200
    return {d["device_id"] for d in body["devices"]}


async def test_run_restores_its_session_and_stops_on_sigterm(
    synapse: Synapse,
    synapse_admin: tuple[str, str],
    make_user: MakeUser,
    nio_client: NioClientFactory,
    tmp_path: Path,
) -> None:
    admin_user, admin_pw = await make_user("office")
    bot_local = f"gridbot-{uuid.uuid4().hex[:8]}"
    bot_pw = uuid.uuid4().hex
    bot_id = await synapse.register(bot_local, bot_pw)
    config = tmp_path / "bot.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "homeserver": synapse.url,
                "user_id": bot_id,
                "password": bot_pw,
                "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gridbot.db'}",
                "admins": [admin_user],
                "sync": {"timeout_ms": 5000},
            }
        )
    )
    user = await nio_client(admin_user, admin_pw)

    proc = await _start(config)
    try:
        room = await create_room(user, invite=[bot_id], is_direct=True)
        await wait_for_join(user, room, bot_id, timeout=60)
        await wait_for_message(user, room, lambda e: e.sender == bot_id, timeout=30)
        await send_text(user, room, "/whoami")
        reply = await wait_for_message(user, room, lambda e: e.sender == bot_id, timeout=30)
        assert "系统管理员" in reply.body
    finally:
        code, err = await _terminate(proc)
    assert code == 0, err
    assert "Traceback" not in err and "GridBot stopped" in err

    devices_after_first_run = await _devices(synapse, synapse_admin[1], bot_id)
    assert "GRIDBOT" in devices_after_first_run
    token_after_first_run = await _stored_token(tmp_path, bot_id)

    # Restarted: it answers again, without a second login.
    proc = await _start(config)
    try:
        await send_text(user, room, "/帮助")
        reply = await wait_for_message(user, room, lambda e: e.sender == bot_id, timeout=60)
        assert "/whoami" in reply.body
    finally:
        code, err = await _terminate(proc)
    assert code == 0, err

    # (Registration through the admin API made a device of its own; the bot adds no other.)
    assert await _devices(synapse, synapse_admin[1], bot_id) == devices_after_first_run
    assert await _stored_token(tmp_path, bot_id) == token_after_first_run, "no second login"

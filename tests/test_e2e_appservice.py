"""Appservice mode on a real Synapse: the homeserver pushes, the bot never syncs.

One Synapse for the module, started with the bot's registration (written by the same code as
``gridbot appservice registration``) and Synapse's default message rate limit.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from sqlalchemy import func, select

from bot.sandbox.homeserver import Synapse
from storage.db import Database
from storage.models import InboxEvent
from tests.appservice_county import DEFAULT_LIMITS, AppserviceSetup, appservice_setup, run_county
from tests.bot_harness import BotUnderTest
from tests.fixtures_synapse import login_client
from tests.matrix_helpers import (
    Message,
    create_room,
    read_messages,
    send_text,
    wait_for_join,
    wait_for_message,
)
from tests.process_harness import ProcessBot

pytestmark = pytest.mark.homeserver


@pytest.fixture(scope="module")
async def as_synapse(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Synapse, AppserviceSetup]]:
    directory = tmp_path_factory.mktemp("appservice")
    setup = appservice_setup(directory)
    server = Synapse(
        directory / "synapse",
        relaxed_limits=False,
        limits=DEFAULT_LIMITS,
        extra={"app_service_config_files": [str(setup.registration_path)]},
    )
    await server.start()
    try:
        yield server, setup
    finally:
        await server.stop()


async def _bot(hs: Synapse, setup: AppserviceSetup, tmp_path: Path) -> BotUnderTest:
    db_url = f"sqlite+aiosqlite:///{tmp_path / f'as-{uuid.uuid4().hex[:6]}.db'}"
    config = setup.config(hs.url, db_url)
    db = Database(config.database_url)
    await db.upgrade()
    return BotUnderTest(config=config, db=db)


async def test_a_county_runs_on_pushed_transactions_without_rate_limits(
    as_synapse: tuple[Synapse, AppserviceSetup], tmp_path: Path
) -> None:
    hs, setup = as_synapse
    bot = await _bot(hs, setup, tmp_path)
    try:
        await run_county(hs, bot, tmp_path)
    finally:
        await bot.kill()
        await bot.db.close()


async def test_the_endpoint_refuses_strangers_and_stores_a_repeated_transaction_once(
    as_synapse: tuple[Synapse, AppserviceSetup], tmp_path: Path
) -> None:
    hs, setup = as_synapse
    bot = await _bot(hs, setup, tmp_path)
    await bot.start()
    try:
        url = f"{bot.config.appservice.url}/_matrix/app/v1/transactions/t-{uuid.uuid4().hex}"  # type: ignore[union-attr]
        event = {
            "event_id": f"$test-{uuid.uuid4().hex}",
            "room_id": "!nowhere:localhost",
            "sender": "@someone:localhost",
            "type": "m.room.message",
            "origin_server_ts": 1,
            "content": {"msgtype": "m.text", "body": "hello"},
        }
        body = {"events": [event]}
        token = bot.config.appservice.hs_token  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as http:
            async with http.put(url, json=body) as resp:
                assert resp.status == 401
                assert (await resp.json())["errcode"] == "M_UNAUTHORIZED"
            wrong = {"Authorization": "Bearer not-the-token"}
            async with http.put(url, json=body, headers=wrong) as resp:
                assert resp.status == 403
            async with http.get(f"{bot.config.appservice.url}/health") as resp:  # type: ignore[union-attr]
                assert (await resp.json())["role"] == "active"
        await bot.wait_idle()
        async with bot.db.transaction() as s:
            stored = await s.scalar(
                select(func.count())
                .select_from(InboxEvent)
                .where(InboxEvent.event_id == event["event_id"])
            )
        assert stored == 0  # nothing from a request without the homeserver's token

        good = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as http:
            for _ in range(2):  # the homeserver retries a transaction it got no answer to
                async with http.put(url, json=body, headers=good) as resp:
                    assert resp.status == 200 and await resp.json() == {}
            async with http.put(
                url.replace("/t-", "/bad-"), data=b"not json", headers=good
            ) as resp:
                assert resp.status == 400
        await bot.wait_idle(events=[event["event_id"]])
        async with bot.db.transaction() as s:
            rows = list(
                await s.scalars(select(InboxEvent).where(InboxEvent.event_id == event["event_id"]))
            )
        assert len(rows) == 1 and rows[0].handled_at is not None
    finally:
        await bot.kill()
        await bot.db.close()


async def test_a_standby_process_takes_over_when_the_active_one_dies(
    as_synapse: tuple[Synapse, AppserviceSetup], tmp_path: Path
) -> None:
    """Two ``gridbot run`` processes on one database and one port: the second stands by; the
    first is SIGKILLed; the second takes the lease and answers what came after, exactly once."""
    hs, setup = as_synapse
    # An admin: the bot joins on an admin's invite (a stranger's it declines).
    user_id = await hs.register(f"takeover-{uuid.uuid4().hex[:6]}", "pw-takeover")
    raw = {
        **setup.data,
        "admins": [user_id],
        "homeserver": hs.url,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}",
    }
    config_file = tmp_path / "bot.yaml"
    config_file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    db = Database(raw["database_url"])
    await db.upgrade()
    config = setup.config(hs.url, raw["database_url"], admins=[user_id])
    active = ProcessBot(config=config, db=db, config_file=config_file)
    standby = ProcessBot(
        config=config, db=db, config_file=tmp_path / "standby.yaml", ready_line="standing by"
    )
    standby.config_file.write_text(config_file.read_text("utf-8"), encoding="utf-8")
    client = await login_client(hs, user_id, "pw-takeover")
    try:
        await active.start()
        await standby.start()  # returns once it says it stands by
        dm = await create_room(client, invite=[config.user_id], is_direct=True)
        await wait_for_join(client, dm, config.user_id)
        first = await send_text(client, dm, "/whoami")
        await wait_for_message(
            client,
            dm,
            lambda m: (
                m.sender == config.user_id and "/whoami" not in m.body and reply_of(m) == first
            ),
            timeout=30,
        )

        # The homeserver reached the endpoint when the active process asked it to ping.
        assert any("homeserver reaches the appservice endpoint" in line for line in active.lines)
        await active.kill()
        killed = time.monotonic()
        second = await send_text(client, dm, "/whoami")
        answer = await wait_for_message(
            client, dm, lambda m: m.sender == config.user_id and reply_of(m) == second, timeout=60
        )
        took = time.monotonic() - killed
        print(f"standby answered {took:.1f} s after the active process was killed")
        assert any("holding the inbox lease" in line for line in standby.lines)
        assert answer.source["content"]["msgtype"] == "m.notice"
        await standby.wait_idle(events=[second])
        later = await read_messages(client, dm, config.user_id)
        assert [m for m in later if reply_of(m) in (first, second)] == []  # once each
    finally:
        await client.close()
        await active.kill()
        await standby.kill()
        await db.close()


def reply_of(message: Message) -> str | None:
    relates = message.source.get("content", {}).get("m.relates_to") or {}
    return (relates.get("m.in_reply_to") or {}).get("event_id")

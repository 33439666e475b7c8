"""Appservice mode on a real Synapse: the homeserver pushes, the bot never syncs.

One Synapse for the module, started with the bot's registration (written by the same code as
``gridbot appservice registration``) and Synapse's default message rate limit.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.sandbox.homeserver import Synapse
from storage.db import Database
from storage.models import InboxEvent
from tests.appservice_county import DEFAULT_LIMITS, AppserviceSetup, appservice_setup, run_county
from tests.bot_harness import BotUnderTest

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

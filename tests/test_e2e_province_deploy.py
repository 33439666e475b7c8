"""The province deployment of docs/deploy.md, run here: Synapse's main process, a generic worker
and an event persister on PostgreSQL and Redis behind the routing its docs ask for
(tests/synapse_workers.py), and GridBot in appservice mode on PostgreSQL. A county is
provisioned, a notice broadcast and acknowledged, a hazard reported (tests/appservice_county.py).

Skipped when PostgreSQL or Redis is away, unless GRIDBOT_REQUIRE_PG=1 (.ci/run starts both).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.db import Database
from tests.appservice_county import DEFAULT_LIMITS, AppserviceSetup, appservice_setup, run_county
from tests.bot_harness import BotUnderTest
from tests.fixtures_db import _pg_admin, fresh_pg_database
from tests.synapse_workers import SynapseWorkers

pytestmark = pytest.mark.homeserver


@pytest.fixture(scope="module")
async def province(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[SynapseWorkers, AppserviceSetup]]:
    directory = tmp_path_factory.mktemp("province")
    setup = appservice_setup(directory)
    hs = SynapseWorkers(
        directory / "synapse",
        relaxed_limits=False,
        extra={**DEFAULT_LIMITS, "app_service_config_files": [str(setup.registration_path)]},
    )
    reason = await hs.unavailable()
    if reason is not None:
        if os.environ.get("GRIDBOT_REQUIRE_PG") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    await hs.start()
    try:
        yield hs, setup
    finally:
        await hs.stop()


@pytest.fixture
async def bot_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for the bot (the province's scale-out backend)."""
    admin = await _pg_admin()
    try:
        async with fresh_pg_database(admin, "gridbot_province") as url:
            yield url
    finally:
        await admin.close()


async def test_a_county_runs_on_synapse_workers_with_the_bot_on_postgresql(
    province: tuple[SynapseWorkers, AppserviceSetup], bot_database: str, tmp_path: Path
) -> None:
    hs, setup = province
    config = setup.config(hs.url, bot_database)
    db = Database(config.database_url)
    await db.upgrade()
    bot = BotUnderTest(config=config, db=db)
    try:
        await run_county(hs, bot, tmp_path)
    finally:
        await bot.kill()
        await db.close()
    # The work was really spread: the worker served client requests, the persister wrote events.
    assert hs.routed["worker1"] > 0 and hs.routed["main"] > 0, hs.routed
    conn = await hs.pg_connect()
    try:
        writers = {
            r["instance_name"]
            for r in await conn.fetch("SELECT DISTINCT instance_name FROM events")
        }
    finally:
        await conn.close()
    assert writers == {"event_persister1"}, writers

"""Database fixtures: every storage test runs on SQLite and on the local PostgreSQL server.

PostgreSQL is at 127.0.0.1:5432 (trust auth) on this machine and in CI. If it cannot be reached
the PostgreSQL variants are skipped with the reason printed, unless GRIDBOT_REQUIRE_PG=1 (set by
.ci/run), in which case they fail.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from storage.db import Database

PG_HOST = os.environ.get("GRIDBOT_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("GRIDBOT_PG_PORT", "5432"))
PG_USER = os.environ.get("GRIDBOT_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("GRIDBOT_PG_DB", "test")


async def _pg_admin() -> asyncpg.Connection:
    return await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database=PG_ADMIN_DB, timeout=5
    )


@pytest.fixture(scope="session")
async def pg_database() -> AsyncIterator[str | None]:
    """A throw-away PostgreSQL database for this test session; None when the server is away."""
    try:
        admin = await _pg_admin()
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("GRIDBOT_REQUIRE_PG") == "1":
            raise
        yield None
        print(f"PostgreSQL at {PG_HOST}:{PG_PORT} unreachable: {exc}")
        return
    try:
        async with fresh_pg_database(admin, "gridbot_test") as url:
            yield url
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def fresh_pg_database(admin: asyncpg.Connection, prefix: str) -> AsyncIterator[str]:
    """A new, empty database's URL, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _reset_pg(url: str) -> None:
    db = Database(url)
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        await conn.exec_driver_sql("CREATE SCHEMA public")
    await db.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(
    request: pytest.FixtureRequest, tmp_path: Path, pg_database: str | None
) -> AsyncIterator[Database]:
    """A migrated, empty database: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'gridbot.db'}"
    else:
        url = pg_database
        if url is None:
            pytest.skip("PostgreSQL server at 127.0.0.1:5432 is not reachable")
        await _reset_pg(url)
    database = Database(url)
    await database.upgrade()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated SQLite database, for tests that are not about the storage backend."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'gridbot.db'}")
    await database.upgrade()
    try:
        yield database
    finally:
        await database.close()

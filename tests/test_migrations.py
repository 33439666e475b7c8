"""Migrations: a fresh database reaches the head revision and matches the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

import bot.app  # noqa: F401 - imports every handler, so every feature's models are mapped
from storage.db import Database
from storage.migrate import current_revision, head_revision
from storage.models import Base


def _diff(connection: Connection) -> list[object]:
    ctx = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(ctx, Base.metadata))


async def test_fresh_database_is_at_head_and_matches_the_models(db: Database) -> None:
    assert await current_revision(db.engine) == head_revision()
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(_diff)
    assert diff == [], "models and migrations disagree; add a migration"


async def test_upgrading_twice_changes_nothing(db: Database) -> None:
    await db.upgrade()
    assert await current_revision(db.engine) == head_revision()

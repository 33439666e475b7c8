"""The bot's stored login, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from storage import sessions
from storage.db import Database

BOT = "@gridbot:localhost"


async def test_two_first_logins_at_once_both_store_and_the_last_wins(db: Database) -> None:
    """The bot and `gridbot provision` starting together on a fresh database both log in for
    the first time; neither may fail, and the login stored is the one committed last."""
    first_wrote = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as session:
            await sessions.save_login(session, BOT, "DEVICE", "token-1")
            first_wrote.set()
            await asyncio.sleep(0.3)  # still uncommitted while the second one writes

    async def second() -> None:
        await first_wrote.wait()
        async with db.transaction() as session:
            assert await sessions.load(session, BOT) is None  # the first is not committed yet
            await sessions.save_login(session, BOT, "DEVICE", "token-2")

    await asyncio.gather(first(), second())
    async with db.transaction() as session:
        stored = await sessions.load(session, BOT)
    assert stored is not None
    assert (stored.device_id, stored.access_token) == ("DEVICE", "token-2")


async def test_a_new_login_replaces_the_stored_one(db: Database) -> None:
    async with db.transaction() as session:
        await sessions.save_login(session, BOT, "OLD", "token-1")
    async with db.transaction() as session:
        await sessions.save_login(session, BOT, "NEW", "token-2")
        await sessions.save_filter(session, BOT, "filter-7")
    async with db.transaction() as session:
        stored = await sessions.load(session, BOT)
    assert stored is not None
    assert (stored.device_id, stored.access_token, stored.filter_id) == (
        "NEW",
        "token-2",
        "filter-7",
    )

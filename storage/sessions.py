"""The bot's stored login (so the device id survives restarts) and sync position."""

from __future__ import annotations

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import upsert_insert
from storage.models import BotSession


async def load(session: AsyncSession, user_id: str) -> BotSession | None:
    return await session.get(BotSession, user_id)


async def save_login(
    session: AsyncSession, user_id: str, device_id: str, access_token: str
) -> None:
    # An upsert: the bot and `gridbot provision` may log in for the first time at once.
    insert = await upsert_insert(session, BotSession)
    stmt = insert.values(user_id=user_id, device_id=device_id, access_token=access_token)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id"],
            set_={
                "device_id": stmt.excluded.device_id,
                "access_token": stmt.excluded.access_token,
                "updated_at": func.now(),
            },
        )
    )


async def save_filter(session: AsyncSession, user_id: str, filter_id: str) -> None:
    row = await session.get(BotSession, user_id)
    if row is not None:
        row.filter_id = filter_id

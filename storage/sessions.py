"""The bot's stored login (so the device id survives restarts) and sync position."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import BotSession


async def load(session: AsyncSession, user_id: str) -> BotSession | None:
    return await session.get(BotSession, user_id)


async def save_login(
    session: AsyncSession, user_id: str, device_id: str, access_token: str
) -> None:
    row = await session.get(BotSession, user_id)
    if row is None:
        session.add(BotSession(user_id=user_id, device_id=device_id, access_token=access_token))
    else:
        row.device_id = device_id
        row.access_token = access_token


async def save_filter(session: AsyncSession, user_id: str, filter_id: str) -> None:
    row = await session.get(BotSession, user_id)
    if row is not None:
        row.filter_id = filter_id

"""The outbox: messages to send, each with a transaction id fixed before the first attempt."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OutboxMessage


def enqueue(
    session: AsyncSession,
    room_id: str,
    content: dict[str, Any],
    *,
    event_type: str = "m.room.message",
    cause: str | None = None,
    txn_id: str | None = None,
) -> OutboxMessage:
    msg = OutboxMessage(
        room_id=room_id,
        txn_id=txn_id or f"gridbot-{uuid.uuid4().hex}",
        event_type=event_type,
        content=content,
        cause=cause,
        attempts=0,
        status="pending",
    )
    session.add(msg)
    return msg


async def pending_rooms(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(OutboxMessage.room_id).where(OutboxMessage.status == "pending").distinct()
    )
    return list(rows)


async def next_for_room(session: AsyncSession, room_id: str) -> OutboxMessage | None:
    return await session.scalar(
        select(OutboxMessage)
        .where(OutboxMessage.room_id == room_id, OutboxMessage.status == "pending")
        .order_by(OutboxMessage.id)
        .limit(1)
    )


async def mark_sent(session: AsyncSession, msg_id: int, event_id: str) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == msg_id)
        .values(status="sent", event_id=event_id, sent_at=datetime.now(UTC))
    )


async def mark_attempt(session: AsyncSession, msg_id: int, error: str, *, give_up: bool) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == msg_id)
        .values(
            attempts=OutboxMessage.attempts + 1,
            last_error=error[:2000],
            status="failed" if give_up else "pending",
        )
    )


async def exists(session: AsyncSession, txn_id: str) -> bool:
    return (
        await session.scalar(select(OutboxMessage.id).where(OutboxMessage.txn_id == txn_id))
    ) is not None

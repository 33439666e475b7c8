"""The inbox: received events, stored with the sync token that covers them, handled once each."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import BotSession, InboxEvent


@dataclass(frozen=True)
class IncomingEvent:
    event_id: str
    room_id: str
    sender: str
    type: str
    origin_server_ts: int
    source: dict[str, Any]

    @classmethod
    def of(cls, source: dict[str, Any], room_id: str | None = None) -> IncomingEvent | None:
        """From an event's JSON (``room_id`` when the JSON lacks it, as in a sync's timeline);
        None without an event id or a room."""
        event_id = source.get("event_id")
        room = room_id or source.get("room_id")
        if not event_id or not isinstance(room, str):
            return None
        return cls(
            event_id=str(event_id),
            room_id=room,
            sender=str(source.get("sender", "")),
            type=str(source.get("type", "")),
            origin_server_ts=int(source.get("origin_server_ts", 0) or 0),
            source=source,
        )


async def known_event_ids(session: AsyncSession, event_ids: Iterable[str]) -> set[str]:
    ids = list(event_ids)
    if not ids:
        return set()
    rows = await session.scalars(select(InboxEvent.event_id).where(InboxEvent.event_id.in_(ids)))
    return set(rows)


async def store_batch(
    session: AsyncSession,
    user_id: str,
    events: Sequence[IncomingEvent],
    sync_token: str | None,
) -> list[InboxEvent]:
    """Insert new events and move the sync token (None: an appservice transaction, no token),
    in the caller's transaction.

    Events already in the inbox are skipped, so a repeated sync or an overlapping gap fill
    never creates a second copy. Returns the new events that need handling (not the bot's own).
    """
    known = await known_event_ids(session, (e.event_id for e in events))
    seq = (await session.scalar(select(func.max(InboxEvent.seq)))) or 0
    now = datetime.now(UTC)
    added: list[InboxEvent] = []
    seen: set[str] = set()
    for ev in events:
        if ev.event_id in known or ev.event_id in seen:
            continue
        seen.add(ev.event_id)
        seq += 1
        # The bot's own echoes are stored (gap filling stops at them) but need no handling:
        # marking them here saves one dispatcher transaction per message the bot sent.
        own = ev.sender == user_id
        row = InboxEvent(
            event_id=ev.event_id,
            seq=seq,
            room_id=ev.room_id,
            sender=ev.sender,
            type=ev.type,
            origin_server_ts=ev.origin_server_ts,
            source=ev.source,
            handled_at=now if own else None,
            outcome="own" if own else None,
        )
        session.add(row)
        if not own:
            added.append(row)
    if sync_token is not None:
        await session.execute(
            update(BotSession).where(BotSession.user_id == user_id).values(sync_token=sync_token)
        )
    return added


async def pending(session: AsyncSession, limit: int = 100, after_seq: int = 0) -> list[InboxEvent]:
    rows = await session.scalars(
        select(InboxEvent)
        .where(InboxEvent.handled_at.is_(None), InboxEvent.seq > after_seq)
        .order_by(InboxEvent.seq)
        .limit(limit)
    )
    return list(rows)


async def pending_by_id(session: AsyncSession, event_ids: Iterable[str]) -> list[InboxEvent]:
    """These events, those of them still unhandled, oldest first."""
    ids = list(event_ids)
    if not ids:
        return []
    rows = await session.scalars(
        select(InboxEvent)
        .where(InboxEvent.event_id.in_(ids), InboxEvent.handled_at.is_(None))
        .order_by(InboxEvent.seq)
    )
    return list(rows)


async def set_plaintext(session: AsyncSession, event_id: str, source: dict[str, Any]) -> None:
    """Keep the decrypted source of an event stored encrypted (it is handled from it)."""
    await session.execute(
        update(InboxEvent)
        .where(InboxEvent.event_id == event_id)
        .values(source=source, type=str(source.get("type") or ""))
    )


async def mark_handled(session: AsyncSession, event_id: str, outcome: str) -> bool:
    """Mark the event handled; False when it was handled already (nothing changed)."""
    result = await session.execute(
        update(InboxEvent)
        .where(InboxEvent.event_id == event_id, InboxEvent.handled_at.is_(None))
        .values(handled_at=datetime.now(UTC), outcome=outcome)
    )
    return bool(result.rowcount)


async def get(session: AsyncSession, event_id: str) -> InboxEvent | None:
    return await session.get(InboxEvent, event_id)

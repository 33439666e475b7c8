"""Transactions the homeserver pushed to the bot (appservice mode), each stored once."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AppserviceTransaction


async def seen(session: AsyncSession, txn_id: str) -> bool:
    found = await session.scalar(
        select(AppserviceTransaction.txn_id).where(AppserviceTransaction.txn_id == txn_id)
    )
    return found is not None


def record(session: AsyncSession, txn_id: str, events: int) -> None:
    """Remember the transaction, in the transaction that stores its events."""
    session.add(AppserviceTransaction(txn_id=txn_id, events=events))

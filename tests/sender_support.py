"""Run a real Sender until the outbox has nothing pending (for tests of the send path)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from bot.sender import Sender
from storage.db import Database
from storage.models import OutboxMessage
from storage.outbox import ANSWER_ROOMS, QUEUED_ROOMS


async def send_until_empty(sender: Sender, db: Database, limit: float = 10) -> None:
    """Start ``sender`` (woken by commits, as in the app) and stop it once nothing is pending."""
    db.after_commit.append(
        lambda info: sender.wake(info.get(QUEUED_ROOMS), answers=info.get(ANSWER_ROOMS))
    )
    task = asyncio.create_task(sender.run())
    try:
        async with asyncio.timeout(limit):
            while True:
                async with db.transaction() as s:
                    left = await s.scalar(
                        select(OutboxMessage.id).where(OutboxMessage.status == "pending").limit(1)
                    )
                if left is None:
                    return
                await asyncio.sleep(0.02)
    finally:
        await sender.stop()
        task.cancel()

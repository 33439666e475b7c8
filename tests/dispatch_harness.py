"""Drive the dispatcher without a homeserver: put events in the inbox, read what was queued.

For fast unit tests of routing, conversations and jobs; features still get their end-to-end
test on the real Synapse.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from sqlalchemy import select

from bot.app import event_hooks
from bot.commands import Router
from bot.config import Config, parse_config
from bot.context import Services
from bot.dispatcher import Dispatcher
from bot.scheduler import Scheduler
from messages import Messages
from storage import inbox, outbox
from storage.db import Database
from storage.inbox import IncomingEvent
from storage.models import BotSession, OutboxMessage

BOT = "@gridbot:localhost"
_ids = itertools.count(1)


async def deliver_pending(db: Database, *, fail: frozenset[str] = frozenset()) -> None:
    """What the sender does, without a homeserver: each pending message, oldest first, gets
    its relations resolved (its stored content becomes what would be sent) and an event id;
    messages to the ``fail`` rooms fail as if the bot had been removed from them."""
    async with db.transaction() as s:
        rows = await s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.status == outbox.PENDING)
            .order_by(OutboxMessage.id)
        )
        for row in list(rows):
            if row.room_id in fail:
                row.status, row.last_error = outbox.FAILED, "M_FORBIDDEN: not in room"
                continue
            prepared = await outbox.prepare(s, row)
            if prepared.upload is not None:
                await outbox.set_file_url(s, prepared.upload.file_id, f"mxc://test/{row.id}")
                prepared = await outbox.prepare(s, row)
            assert prepared.content is not None, f"message {row.id} waits for {prepared}"
            row.content = prepared.content
            row.status, row.event_id = outbox.SENT, f"$out{row.id}"
            row.sent_at = datetime.now(UTC)
            await s.flush()


def test_config(**overrides: Any) -> Config:
    return parse_config(
        {"homeserver": "http://127.0.0.1:1", "user_id": BOT, "password": "x", **overrides}
    )


class DispatchHarness:
    def __init__(self, db: Database, modules: list[ModuleType], config: Config | None = None):
        self.db = db
        router = Router()
        for m in modules:
            router.include(m)
        self.services = Services(config=config or test_config(), messages=Messages(), router=router)
        self.dispatcher = Dispatcher(
            self.services,
            db,
            bot_user_id=BOT,
            room_kind_hint=lambda _r: None,
        )
        self.dispatcher.hooks.extend(event_hooks(modules))  # as the app orders them
        self.scheduler = Scheduler(db, self.services)
        for m in modules:
            self.scheduler.include(m)
        self._seen = 0

    async def say(
        self, sender: str, body: str, room: str = "!room:localhost", **content: Any
    ) -> list[str]:
        """Deliver one message event and return the plain bodies the bot queued in answer."""
        n = next(_ids)
        source = {
            "event_id": f"$ev{n}",
            "sender": sender,
            "type": "m.room.message",
            "origin_server_ts": 1_700_000_000_000 + n,
            "content": {"msgtype": "m.text", "body": body, **content},
        }
        async with self.db.transaction() as s:
            if await s.get(BotSession, BOT) is None:
                s.add(BotSession(user_id=BOT, device_id="D", access_token="t"))
            await inbox.store_batch(
                s,
                BOT,
                [
                    IncomingEvent(
                        source["event_id"],
                        room,
                        sender,
                        "m.room.message",
                        source["origin_server_ts"],
                        source,
                    )
                ],
                f"token{n}",
            )
        await self.dispatcher.drain()
        return await self.new_messages()

    async def new_messages(self) -> list[str]:
        async with self.db.transaction() as s:
            rows = list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        fresh = rows[self._seen :]
        self._seen = len(rows)
        return [r.content["body"] for r in fresh]

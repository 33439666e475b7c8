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
        self._last = 0
        self.taps: list[str] = []
        self.last_message = 0

    async def say(
        self, sender: str, body: str, room: str = "!room:localhost", **content: Any
    ) -> list[str]:
        """Deliver one message event and return the plain bodies the bot queued in answer."""
        return await self.deliver(
            sender, "m.room.message", {"msgtype": "m.text", "body": body, **content}, room
        )

    async def tap(
        self, sender: str, event_id: str, key: str, room: str = "!room:localhost"
    ) -> list[str]:
        """React with ``key`` to ``event_id``, as tapping a reaction on a phone does."""
        relates = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        return await self.deliver(sender, "m.reaction", {"m.relates_to": relates}, room)

    async def edit(
        self, sender: str, event_id: str, body: str, room: str = "!room:localhost"
    ) -> list[str]:
        """Edit ``event_id`` (m.replace) to say ``body``."""
        new = {"msgtype": "m.text", "body": body}
        content = {
            "msgtype": "m.text",
            "body": f"* {body}",
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        return await self.deliver(sender, "m.room.message", content, room)

    @property
    def last_event_id(self) -> str:
        """The event id of the last event delivered."""
        return f"$ev{self._last}"

    async def deliver(
        self, sender: str, event_type: str, content: dict[str, Any], room: str = "!room:localhost"
    ) -> list[str]:
        """Deliver one event; the plain bodies of the messages the bot queued in answer."""
        n = self._last = next(_ids)
        source = {
            "event_id": f"$ev{n}",
            "sender": sender,
            "type": event_type,
            "origin_server_ts": 1_700_000_000_000 + n,
            "content": content,
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
                        event_type,
                        source["origin_server_ts"],
                        source,
                    )
                ],
                f"token{n}",
            )
        await self.dispatcher.drain()
        return await self.new_messages()

    async def new_messages(self) -> list[str]:
        """Bodies of the messages queued since last asked; the reactions the bot seeded meanwhile
        are kept in ``taps`` and the last message's row id in ``last_message``."""
        async with self.db.transaction() as s:
            rows = list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        fresh = rows[self._seen :]
        self._seen = len(rows)
        self.taps = [
            r.content["m.relates_to"]["key"] for r in fresh if r.event_type == "m.reaction"
        ]
        messages = [r for r in fresh if r.event_type == "m.room.message"]
        if messages:
            self.last_message = messages[-1].id
        return [r.content["body"] for r in messages]

    async def mark_all_sent(self) -> None:
        """Pretend the sender sent everything queued: event id ``$out<row id>``."""
        async with self.db.transaction() as s:
            for row in await s.scalars(
                select(OutboxMessage).where(OutboxMessage.event_id.is_(None))
            ):
                row.event_id, row.status = f"$out{row.id}", "sent"

    async def tap_last(self, sender: str, key: str, room: str = "!room:localhost") -> list[str]:
        """Tap ``key`` under the last message the bot queued (sent first, as on a phone)."""
        await self.mark_all_sent()
        return await self.tap(sender, f"$out{self.last_message}", key, room)

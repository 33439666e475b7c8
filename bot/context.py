"""What a handler gets: the sender, the room, the database session, and ways to answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from messages import Messages, Rendered
from storage import outbox
from storage.directory import Identity
from storage.models import InboxEvent, OutboxMessage

if TYPE_CHECKING:
    from bot.commands import Command, Router
    from bot.config import Config


@dataclass
class Services:
    """Long-lived parts shared by every handler (no module-level globals)."""

    config: Config
    messages: Messages
    router: Router

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(self.config.admins)


@dataclass
class CommandContext:
    services: Services
    session: AsyncSession
    event: InboxEvent
    identity: Identity
    room_kind: str
    locale: str
    command: Command | None = None
    invoked_as: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    sent: list[OutboxMessage] = field(default_factory=list)

    @property
    def room_id(self) -> str:
        return self.event.room_id

    @property
    def sender(self) -> str:
        return self.event.sender

    def render(self, template: str, /, **values: Any) -> Rendered:
        return self.services.messages.render(self.locale, template, **values)

    def reply(self, template: str, /, **values: Any) -> OutboxMessage:
        """Answer the triggering event with an m.notice reply, queued in this transaction."""
        content = self.render(template, **values).content("m.notice")
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": self.event.event_id}}
        content["m.mentions"] = {"user_ids": [self.sender]}
        return self._queue(self.room_id, content)

    def send(
        self,
        room_id: str,
        template: str,
        /,
        *,
        mentions: list[str] | None = None,
        locale: str | None = None,
        **values: Any,
    ) -> OutboxMessage:
        """Post a notice into any room, queued in this transaction.

        ``locale`` is for rooms read by others than the sender (default: the sender's).
        """
        rendered = self.services.messages.render(locale or self.locale, template, **values)
        content = rendered.content("m.notice")
        content["m.mentions"] = {"user_ids": mentions or []}
        return self._queue(room_id, content)

    def _queue(self, room_id: str, content: dict[str, Any]) -> OutboxMessage:
        msg = outbox.enqueue(self.session, room_id, content, cause=self.event.event_id)
        self.sent.append(msg)
        return msg

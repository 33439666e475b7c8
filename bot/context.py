"""What a handler gets: the sender, the room, the database session, and ways to answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import outgoing
from bot.outgoing import Outgoing, Speaks
from messages import Messages, Rendered
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
    # The bytes behind an mxc:// URI (the bot's client once logged in; tests give their own).
    # None outside a running bot: a handler that needs it says the file cannot be read now.
    download: Callable[[str], Awaitable[bytes]] | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(self.config.admins)


@dataclass
class CommandContext(Speaks):
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
    # The event answers go to when it is not the triggering one (a tap answers its question).
    reply_target: str | None = None
    # A conversation asked a new question in this event (bot.conversation seeds its taps).
    asked: bool = False

    @property
    def room_id(self) -> str:
        return self.event.room_id

    @property
    def sender(self) -> str:
        return self.event.sender

    def render(self, template: str, /, **values: Any) -> Rendered:
        return self.services.messages.render(self.locale, template, **values)

    def __post_init__(self) -> None:
        # The sender's own message rings nobody's phone for them (bot.outgoing.rung): they
        # know, and are answered by a notice.
        outgoing.rung(self.session).add(self.sender)

    def post(self, message: Outgoing) -> OutboxMessage:
        """Queue any message (see bot.outgoing) in this transaction."""
        msg = outgoing.queue(
            self.session,
            self.services.messages,
            message,
            locale=self.locale,
            cause=self.event.event_id,
        )
        self.sent.append(msg)
        return msg

    def reply(self, template: str, /, **values: Any) -> OutboxMessage:
        """Answer the triggering event with an m.notice reply, queued in this transaction."""
        return self.post(
            Outgoing(
                self.room_id,
                template,
                values,
                mentions=[self.sender],
                reply_to=self.reply_target or self.event.event_id,
            )
        )

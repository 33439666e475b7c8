"""Handle each inbox event once: ignore own/old/edited events, identify, check access, route.

Each event is handled in one database transaction together with the replies it queues and the
mark that it was handled, so a crash either loses nothing (the event is still pending and is
handled again) or repeats nothing (it is marked handled and its replies are in the outbox).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.commands import KNOWN, ArgError, Command, tr
from bot.context import CommandContext, Services
from bot.errors import UserError
from storage import inbox, rooms
from storage.db import Database
from storage.directory import Identity, identify
from storage.models import InboxEvent

log = logging.getLogger(__name__)

_BATCH = 100


class _AlreadyHandled(Exception):
    """The event was handled by an earlier run; its transaction is rolled back."""


# Returns the room kind the client can tell (e.g. "direct" for a 1:1 room), or None.
RoomKindHint = Callable[[str], str | None]
# An event hook sees every event before commands; returning True means it consumed the event.
EventHook = Callable[[CommandContext], Awaitable[bool]]


class Dispatcher:
    def __init__(
        self,
        services: Services,
        db: Database,
        *,
        bot_user_id: str,
        room_kind_hint: RoomKindHint,
    ) -> None:
        self.services = services
        self.db = db
        self.bot_user_id = bot_user_id
        self.room_kind_hint = room_kind_hint
        self.hooks: list[EventHook] = []

    async def drain(self) -> int:
        """Handle every pending inbox event, oldest first. Returns how many were handled."""
        done = 0
        while True:
            async with self.db.transaction() as session:
                batch = await inbox.pending(session, limit=_BATCH)
            for event in batch:
                await self.handle(event)
                done += 1
            if len(batch) < _BATCH:
                return done

    async def handle_new(self, events: list[InboxEvent]) -> None:
        """Handle events the sync loop has just stored (in order), without reading them back.

        Everything pending before them was handled by ``drain`` at start; each event is still
        claimed in the database, so nothing is handled twice.
        """
        for event in events:
            await self.handle(event)

    async def handle(self, event: InboxEvent) -> None:
        try:
            async with self.db.transaction() as session:
                ctx = await self._context(session, event)
                outcome = await self._route(ctx) if ctx else "ignored"
                # Claim the event last: if an earlier run handled it already, roll all back.
                if not await inbox.mark_handled(session, event.event_id, outcome):
                    raise _AlreadyHandled
            # Committed: the database tells the sender and the scheduler what was queued.
        except _AlreadyHandled:
            return
        except UserError as err:
            # Everything the event did is rolled back; the refusal is its whole outcome.
            await self._answer_alone(event, "refused", err.template, err.values, any_event=True)
        except Exception:
            log.exception("handling %s in %s failed", event.event_id, event.room_id)
            await self._answer_alone(event, "error", "internal_error", {}, any_event=False)

    async def _context(self, session: Any, event: InboxEvent) -> CommandContext | None:
        if event.sender == self.bot_user_id:
            return None
        room = await rooms.get(session, event.room_id)
        if (
            room is not None
            and room.joined_ts is not None
            and event.origin_server_ts < room.joined_ts
        ):
            return None  # from before the bot joined this room
        content = event.source.get("content") or {}
        relates = content.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace":
            return None  # an edit: re-running the command would do it twice
        ident = await identify(session, event.sender, self.services.admins)
        kind = room.kind if room is not None else "other"
        if kind == "other":
            kind = self.room_kind_hint(event.room_id) or kind
        return CommandContext(
            services=self.services,
            session=session,
            event=event,
            identity=ident,
            room_kind=kind,
            locale=self._locale(ident),
        )

    def _locale(self, ident: Identity) -> str:
        return ident.language or self.services.config.language

    async def _route(self, ctx: CommandContext) -> str:
        for hook in self.hooks:
            if await hook(ctx):
                return "handled"
        if ctx.event.type != "m.room.message":
            return "ignored"
        content = ctx.event.source.get("content") or {}
        if content.get("msgtype") != "m.text" or not isinstance(content.get("body"), str):
            return "ignored"
        inv = self.services.router.parse(content["body"])
        if inv is None:
            return "ignored"
        if inv.command is None:
            ctx.reply("unknown_command", name=inv.invoked_as)
            return "unknown"
        return await self._run(ctx, inv.command, inv.invoked_as, inv.arg_text)

    async def _run(self, ctx: CommandContext, cmd: Command, invoked_as: str, arg_text: str) -> str:
        ctx.command, ctx.invoked_as = cmd, invoked_as
        ident = ctx.identity
        if cmd.roles == KNOWN and not ident.known:
            ctx.reply("not_in_roster", name=invoked_as)
            return "denied"
        if not cmd.allowed_for(ident.role_kinds, ident.known):
            ctx.reply("not_allowed", command=cmd, usage=cmd.usage(ctx.locale))
            return "denied"
        if not cmd.allowed_in(ctx.room_kind):
            ctx.reply("wrong_room", command=cmd, rooms=sorted(cmd.rooms or ()))
            return "denied"
        try:
            ctx.args = cmd.parse_args(arg_text)
        except ArgError as err:
            ctx.reply(
                "usage",
                usage=cmd.usage(ctx.locale),
                reason=tr(err.reason, ctx.locale),
                summary=tr(cmd.summary, ctx.locale),
                name=cmd.name,
            )
            return "bad_args"
        await cmd.handler(ctx)
        return "handled"

    async def _answer_alone(
        self,
        event: InboxEvent,
        outcome: str,
        template: str,
        values: dict[str, Any],
        *,
        any_event: bool,
    ) -> None:
        """Mark an event whose handling was rolled back as handled (so it cannot loop) and tell
        the sender why, in a transaction of its own. An internal error is told only for text
        messages (e.g. nobody waits for an answer to a reaction); a UserError always."""
        async with self.db.transaction() as session:
            current = await session.get(InboxEvent, event.event_id)
            if current is None or current.handled_at is not None:
                return
            await inbox.mark_handled(session, event.event_id, outcome)
            content = current.source.get("content") or {}
            is_text = current.type == "m.room.message" and content.get("msgtype") == "m.text"
            if not (any_event or is_text):
                return
            ctx = await self._context(session, current)
            if ctx is not None:
                ctx.reply(template, **values)

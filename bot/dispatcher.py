"""Handle each inbox event once: ignore own/old/edited events, identify, check access, route.

Each event is handled in one database transaction together with the replies it queues and the
mark that it was handled, so a crash either loses nothing (the event is still pending and is
handled again) or repeats nothing (it is marked handled and its replies are in the outbox).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.commands import KNOWN, ArgError, Command, tr
from bot.context import CommandContext, Services
from bot.crypto import ENCRYPTED, BadFile, Crypto, NoKeyYet, Unreadable
from bot.errors import UserError
from bot.outgoing import Outgoing
from bot.relations import is_edit, related_id
from bot.words import typed_text
from storage import inbox, outbox, rooms
from storage.db import Database, is_unavailable
from storage.directory import Identity, identify
from storage.models import InboxEvent

log = logging.getLogger(__name__)

_BATCH = 100


class _AlreadyHandled(Exception):
    """The event was handled by an earlier run; its transaction is rolled back."""


# Returns the room kind the client can tell (e.g. "direct" for a 1:1 room), or None.
RoomKindHint = Callable[[str], str | None]
# An event hook sees every event before commands; returning True means it consumed the event.
# A hook with a ``settle(ctx)`` coroutine method gets it after every routed event, in the same
# transaction (a conversation seeds the taps of the question the event asked).
EventHook = Callable[[CommandContext], Awaitable[bool]]


class Dispatcher:
    def __init__(
        self,
        services: Services,
        db: Database,
        *,
        bot_user_id: str,
        room_kind_hint: RoomKindHint,
        crypto: Crypto | None = None,
        key_wait_seconds: float = 90.0,
    ) -> None:
        self.services = services
        self.db = db
        self.bot_user_id = bot_user_id
        self.room_kind_hint = room_kind_hint
        self.hooks: list[EventHook] = []
        self.crypto = crypto
        self.key_wait_seconds = key_wait_seconds
        # Encrypted events whose room key has not come: event id → when first tried
        # (monotonic). They stay pending in the inbox and block nothing else.
        self.waiting: dict[str, float] = {}

    async def drain(self) -> int:
        """Handle every pending inbox event, oldest first. Returns how many were handled."""
        done = 0
        after = 0
        while True:
            async with self.db.transaction() as session:
                batch = await inbox.pending(session, limit=_BATCH, after_seq=after)
            for event in batch:
                await self.handle(event)
                after = event.seq
                done += 1
            if len(batch) < _BATCH:
                return done

    async def retry_waiting(self) -> None:
        """Try again the encrypted events waiting for their room key (after every sync: a key
        may have come); those that waited longer than ``key_wait_seconds`` are answered."""
        if not self.waiting:
            return
        async with self.db.transaction() as session:
            events = await inbox.pending_by_id(session, list(self.waiting))
        still = {e.event_id for e in events}
        for event_id in list(self.waiting):
            if event_id not in still:
                self.waiting.pop(event_id, None)  # handled meanwhile (another run)
        for event in events:
            await self.handle(event)

    async def _readable(self, event: InboxEvent) -> bool:
        """Decrypt an event kept encrypted (its plaintext replaces the source, in memory now and
        in the inbox with the handling). False: not now (it waits for its key), or never (then
        it is marked handled and its sender asked to send it again)."""
        if event.type != ENCRYPTED or self.crypto is None or not self.crypto.on:
            await self._check_file(event)
            return True
        try:
            plain = self.crypto.decrypt(event.room_id, event.source)
        except NoKeyYet:
            now = time.monotonic()
            first = self.waiting.setdefault(event.event_id, now)
            if first == now:
                log.info("no room key yet for %s in %s: waiting", event.event_id, event.room_id)
                await self.crypto.request_key(event.room_id, event.source)
            if now - first < self.key_wait_seconds:
                return False
            log.warning("room key for %s never came: asking to resend", event.event_id)
        except Unreadable as exc:
            log.warning("cannot decrypt %s in %s: %s", event.event_id, event.room_id, exc)
        else:
            self.waiting.pop(event.event_id, None)
            event.source, event.type = plain, str(plain.get("type") or "")
            await self._check_file(event)
            return True
        self.waiting.pop(event.event_id, None)
        await self._answer_alone(event, "undecryptable", "undecryptable", {}, any_event=True)
        return False

    async def handle_new(self, events: list[InboxEvent]) -> None:
        """Handle events the sync loop has just stored (in order), without reading them back.

        Everything pending before them was handled by ``drain`` at start; each event is still
        claimed in the database, so nothing is handled twice.
        """
        for event in events:
            await self.handle(event)

    async def _check_file(self, event: InboxEvent) -> None:
        """A file sent in an encrypted room (``content.file``, no ``url``) is fetched, checked
        against its sha256 hash and decrypted before anyone keeps it; one that fails is taken
        out of the content (the step refuses it, as a file without a usable url)."""
        content = event.source.get("content") or {}
        file = content.get("file")
        if self.crypto is None or not isinstance(file, dict) or content.get("url"):
            return
        try:
            await self.crypto.fetch_file(file)
        except BadFile as exc:
            log.warning("encrypted file of %s refused: %s", event.event_id, exc)
            bad = {k: v for k, v in content.items() if k != "file"}
            event.source = {**event.source, "content": bad}

    async def handle(self, event: InboxEvent) -> None:
        encrypted = event.type == ENCRYPTED or "file" in (event.source.get("content") or {})
        if not await self._readable(event):
            return
        try:
            async with self.db.transaction() as session:
                if encrypted:
                    await inbox.set_plaintext(session, event.event_id, event.source)
                ctx = await self._context(session, event)
                outcome = await self._route(ctx) if ctx else "ignored"
                if ctx is not None:
                    for hook in self.hooks:
                        if settle := getattr(hook, "settle", None):
                            await settle(ctx)
                # Claim the event last: if an earlier run handled it already, roll all back.
                if not await inbox.mark_handled(session, event.event_id, outcome):
                    raise _AlreadyHandled
            # Committed: the database tells the sender and the scheduler what was queued.
        except _AlreadyHandled:
            return
        except UserError as err:
            # Everything the event did is rolled back; the refusal is its whole outcome.
            await self._answer_alone(event, "refused", err.template, err.values, any_event=True)
        except Exception as exc:
            if is_unavailable(exc):
                # Not the event's fault: it was rolled back and stays pending; the caller waits
                # for the database and handles it (once) when it is back.
                raise
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
        if (size := _text_bytes(ctx)) > (limit := self.services.config.limits.text_bytes):
            # Refused before any hook or command sees it: nothing is recorded from it.
            ctx.reply(
                "text_too_long",
                size_kb=-(-size // 1024),
                limit_kb=limit // 1024,
                limit_chars=limit // 3,
            )
            return "too_long"
        for hook in self.hooks:
            if await hook(ctx):
                return "handled"
        if ctx.event.type != "m.room.message":
            return "ignored"
        content = ctx.event.source.get("content") or {}
        if is_edit(content):
            return await self._edit_not_read(ctx, related_id(content))
        if content.get("msgtype") != "m.text" or not isinstance(content.get("body"), str):
            return "ignored"
        inv = self.services.router.parse(typed_text(content["body"]))
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

    async def _edit_not_read(self, ctx: CommandContext, edited: str | None) -> str:
        """An edit the conversations did not take: re-running the command would do it twice,
        so edits are not read. Whoever edited a command or an answer is told so once per
        edited message; an edit of ordinary talk is nobody's business."""
        if edited is None:
            return "ignored"
        original = await inbox.get(ctx.session, edited)
        if (
            original is None
            or original.sender != ctx.sender
            or original.outcome in (None, "ignored")
        ):
            return "ignored"
        txn_id = f"edit-not-read-{hashlib.sha256(edited.encode()).hexdigest()[:32]}"
        if await outbox.exists(ctx.session, txn_id):
            return "ignored"
        ctx.post(
            Outgoing(
                ctx.room_id,
                "edit_not_read",
                mentions=[ctx.sender],
                reply_to=ctx.event.event_id,
                txn_id=txn_id,
            )
        )
        return "edit"

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


def _text_bytes(ctx: CommandContext) -> int:
    """UTF-8 size of the text a person sent (a message's body, or an edit's new body)."""
    if ctx.event.type != "m.room.message":
        return 0
    content = ctx.event.source.get("content") or {}
    bodies = [content.get("body")]
    new = content.get("m.new_content")
    if isinstance(new, dict):
        bodies.append(new.get("body"))
    return max((len(b.encode()) for b in bodies if isinstance(b, str)), default=0)

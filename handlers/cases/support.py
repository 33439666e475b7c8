"""What hazards, requests and accidents share: visibility, actors, and posting into case threads.

A case lives in a thread: the first message the bot posts about it in a room is the thread
root there, and every later post about it in that room goes into that thread. The root's
Matrix event id is known only once the sender has sent it; until then posts go unthreaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import conversation, outgoing
from bot.context import CommandContext, Services
from bot.conversation import Conversation, Incoming
from bot.outgoing import Attachment, Outgoing
from bot.scheduler import JobContext
from bot.words import choose
from storage import cases, rooms
from storage.cases import CaseRow
from storage.directory import Action, Contact, Standing, enterprises_in, reach, standing
from storage.models import Enterprise, OutboxMessage

C = TypeVar("C", bound=CaseRow)

IMAGE_TYPES = frozenset({"m.image"})


# --- who stands where --------------------------------------------------------------------------


async def visible_case(
    ctx: CommandContext, code: str, kind: str, model: type[C]
) -> tuple[C, Enterprise, Standing] | None:
    """The case ``code``, its enterprise and what the sender is to it; None (after answering
    not_found or out_of_scope) when there is no such case or the sender may not see it."""
    row = await cases.get_case(ctx.session, code)
    if not isinstance(row, model):
        refuse(ctx.reply, "not_found", code, kind)
        return None
    ent = await ctx.session.get(Enterprise, row.enterprise_id)
    assert ent is not None
    st = await standing(ctx.session, ctx.identity, ent)
    if not st.sees:
        refuse(ctx.reply, "out_of_scope", code, kind)
        return None
    return row, ent, st


async def enterprise_or_ask(
    ctx: CommandContext, conv: Conversation, kind: str, template: str
) -> Enterprise | None:
    """The enterprise a new report is for (this room's, or the sender's only one). When that is
    unclear, start ``conv`` at its "enterprise" step with the choices and return None."""
    options = await reportable(ctx)
    if not options:
        refuse(ctx.reply, "no_enterprise", "", kind)
        return None
    ent = await enterprise_here(ctx, options)
    if ent is None:
        data: dict[str, Any] = {"options": [[e.id, e.name] for e in options]}
        await conversation.start(ctx, conv, "enterprise", data)
        progress = conv.progress("enterprise")
        ctx.reply(template, step="enterprise", again=False, progress=progress, **data)
    return ent


async def reportable(ctx: CommandContext) -> list[Enterprise]:
    """The enterprises the sender may report for (RULES[REPORT]), as a pick list shows them."""
    return await enterprises_in(ctx.session, reach(ctx.identity, Action.REPORT), by_name=True)


async def enterprise_here(ctx: CommandContext, options: list[Enterprise]) -> Enterprise | None:
    """The enterprise a report is about when it goes without saying: the room's, or the only one."""
    info = await rooms.get(ctx.session, ctx.room_id)
    if info is not None and info.kind == "enterprise_room" and info.enterprise_id is not None:
        for ent in options:
            if ent.id == info.enterprise_id:
                return ent
    return options[0] if len(options) == 1 else None


def pick_option(options: list[list[Any]], text: str) -> list[Any] | None:
    """The [id, name] picked by number ("2", "２") or by (part of) its name, as everywhere."""
    index = choose([o[1] for o in options], text).one
    return options[index] if index is not None else None


# --- small parsing helpers ---------------------------------------------------------------------


def photo_of(msg: Incoming, sender: str) -> dict[str, Any] | None:
    """An image message as stored on a case (mxc url, name, type); None if it is no image."""
    media = msg.media
    if media is None:
        return None
    info = media.get("info") or {}
    mimetype = str(info.get("mimetype") or "")
    if media.get("msgtype") not in IMAGE_TYPES and not mimetype.startswith("image/"):
        return None
    return {
        "url": media["url"],
        "name": media.get("name") or "photo",
        "info": {k: info[k] for k in ("mimetype", "size", "w", "h") if k in info},
        "event_id": msg.event_id,
        "by": sender,
        "at": datetime.now(UTC).isoformat(),
    }


def related_event_ids(ctx: CommandContext) -> list[str]:
    """The events this message answers: its thread root and the event it replies to."""
    rel = (ctx.event.source.get("content") or {}).get("m.relates_to") or {}
    ids = []
    if rel.get("rel_type") == "m.thread" and rel.get("event_id"):
        ids.append(rel["event_id"])
    reply = (rel.get("m.in_reply_to") or {}).get("event_id")
    if reply:
        ids.append(reply)
    return ids


def now_local(services: Services) -> datetime:
    return datetime.now(services.config.tz)


# --- posting into case threads -----------------------------------------------------------------


@dataclass
class Poster:
    """Posts messages about cases from a command or a job, threading them per room."""

    services: Services
    session: AsyncSession
    sent: list[OutboxMessage]
    cause: str | None

    @classmethod
    def of(cls, ctx: CommandContext | JobContext) -> Poster:
        if isinstance(ctx, JobContext):
            return cls(ctx.services, ctx.session, ctx.sent, f"job:{ctx.job.key}")
        return cls(ctx.services, ctx.session, ctx.sent, ctx.event.event_id)

    async def post(
        self,
        code: str,
        room_id: str,
        template: str,
        /,
        *,
        mentions: list[Contact] | tuple[Contact, ...] = (),
        reply_to: str | None = None,
        rings: bool = False,
        attachment: Attachment | None = None,
        **values: Any,
    ) -> OutboxMessage:
        """Post into room_id: in the case's thread there if it has one, else as its root.
        The sender threads it under the root once the root is sent (see bot.outgoing)."""
        root = await cases.root_message(self.session, code, room_id)
        message = Outgoing(
            room_id,
            template,
            {"code": code, "mentions": list(mentions), "tz": self.services.config.tz, **values},
            mentions=[c.user_id for c in mentions if c.user_id],
            rings=rings,
            thread_root=root,
            reply_to=reply_to if root is not None else None,
            attachment=attachment,
        )
        msg = outgoing.queue(
            self.session,
            self.services.messages,
            message,
            locale=self.services.config.language,
            cause=self.cause,
        )
        await self.session.flush()
        cases.add_post(self.session, msg, code, is_root=root is None)
        self.sent.append(msg)
        return msg

    async def photos(
        self, code: str, room_id: str, photos: list[dict[str, Any]], stage: str
    ) -> None:
        """Show a case's photos in its thread in room_id (as images the bot posts)."""
        for i, photo in enumerate(photos, 1):
            await self.post(
                code,
                room_id,
                "case_photo",
                attachment=Attachment.from_media({**photo, "msgtype": "m.image"}),
                stage=stage,
                index=i,
                total=len(photos),
            )


async def home_room(session: AsyncSession, code: str) -> str | None:
    """The room where a case was first posted (its enterprise room when there is one)."""
    return await session.scalar(
        select(cases.CasePost.room_id)
        .where(cases.CasePost.code == code, cases.CasePost.is_root.is_(True))
        .order_by(cases.CasePost.outbox_id)
        .limit(1)
    )


async def in_case_thread(ctx: CommandContext, code: str) -> bool:
    """Whether the triggering message sits in (or replies into) this case's thread here."""
    related = related_event_ids(ctx)
    if not related:
        return False
    return await cases.code_for_event(ctx.session, related) == code


# --- actors and refusals --------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who does something to a case, from where (system jobs have no room)."""

    user_id: str
    name: str
    room_id: str | None = None
    event_id: str | None = None
    # True when the triggering message sits in the case's thread in room_id.
    in_thread: bool = False

    @classmethod
    def system(cls) -> Actor:
        return cls(cases.SYSTEM, cases.SYSTEM)


async def actor_of(ctx: CommandContext, code: str | None = None) -> Actor:
    return Actor(
        user_id=ctx.sender,
        name=ctx.identity.display_name,
        room_id=ctx.room_id,
        event_id=ctx.event.event_id,
        in_thread=bool(code) and await in_case_thread(ctx, code or ""),
    )


class Refusal(Exception):
    """A step someone may not take now; ``reason`` picks the sentence in template case_error."""

    def __init__(self, reason: str, **values: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.values = values


def reply_target(actor: Actor, room_id: str) -> str | None:
    """Reply to the actor's message when it was sent in this room's case thread."""
    return actor.event_id if actor.in_thread and actor.room_id == room_id else None


def refuse(reply: Any, reason: str, code: str, kind: str, **values: Any) -> None:
    """Answer with template case_error (``reply`` is ctx.reply or step.reply)."""
    reply("case_error", reason=reason, code=code, kind=kind, v=values)

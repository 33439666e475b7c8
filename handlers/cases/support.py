"""What hazards, requests and accidents share: who stands where, and posting into case threads.

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

from bot import conversation
from bot.context import CommandContext, Services
from bot.conversation import Conversation, Incoming
from bot.scheduler import JobContext
from storage import cases, outbox, rooms
from storage import grid_contacts as gc
from storage.cases import CaseRow
from storage.directory import ENTERPRISE_STAFF, Identity
from storage.grid_contacts import Contact, room_of
from storage.models import Enterprise, Grid, OutboxMessage, RoleKind

C = TypeVar("C", bound=CaseRow)

L1_OFFICE_KINDS = frozenset({RoleKind.L1_OFFICE_DIRECTOR, RoleKind.L1_OFFICE_MEMBER})
IMAGE_TYPES = frozenset({"m.image"})


# --- who stands where --------------------------------------------------------------------------


@dataclass(frozen=True)
class Standing:
    """What the sender is to one enterprise."""

    ent_staff: bool = False
    serves: bool = False
    l2_chief: bool = False
    l2_office: bool = False
    l1_chief: bool = False
    l1_office: bool = False
    admin: bool = False

    @property
    def sees(self) -> bool:
        return any(
            (
                self.ent_staff,
                self.serves,
                self.l2_chief,
                self.l2_office,
                self.l1_chief,
                self.l1_office,
                self.admin,
            )
        )

    @property
    def l2_handler(self) -> bool:
        """May act for the level-2 grid: a member serving the enterprise, its office or chief."""
        return self.serves or self.l2_chief or self.l2_office

    @property
    def chief(self) -> bool:
        return self.l2_chief or self.l1_chief


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


async def standing(session: AsyncSession, ident: Identity, ent: Enterprise) -> Standing:
    grid = await session.get(Grid, ent.grid_id)
    l1_id = grid.parent_id if grid else None

    def has(kinds: frozenset[str] | set[str], grid_id: int | None = None) -> bool:
        for r in ident.roles:
            if r.kind not in kinds:
                continue
            if grid_id is None and r.enterprise is not None and r.enterprise.id == ent.id:
                return True
            if grid_id is not None and r.grid is not None and r.grid.id == grid_id:
                return True
        return False

    return Standing(
        ent_staff=has(ENTERPRISE_STAFF),
        serves=any(e.id == ent.id for e in ident.served),
        l2_chief=has({RoleKind.L2_CHIEF}, ent.grid_id),
        l2_office=has({RoleKind.L2_OFFICE_MEMBER}, ent.grid_id),
        l1_chief=l1_id is not None and has({RoleKind.L1_CHIEF}, l1_id),
        l1_office=l1_id is not None and has(L1_OFFICE_KINDS, l1_id),
        admin=ident.is_admin,
    )


async def visible_enterprises(session: AsyncSession, ident: Identity) -> set[int] | None:
    """Ids of the enterprises whose cases the sender may see; None = all (admins)."""
    if ident.is_admin:
        return None
    own = {r.enterprise.id for r in ident.roles if r.enterprise and r.kind in ENTERPRISE_STAFF}
    own |= {e.id for e in ident.served}
    l2 = {
        r.grid.id
        for r in ident.roles
        if r.grid and r.kind in (RoleKind.L2_CHIEF, RoleKind.L2_OFFICE_MEMBER)
    }
    l1 = {
        r.grid.id
        for r in ident.roles
        if r.grid and r.kind in ({RoleKind.L1_CHIEF} | L1_OFFICE_KINDS)
    }
    return await cases.visible_enterprise_ids(session, own=own, l2_grids=l2, l1_grids=l1)


async def reportable_enterprises(session: AsyncSession, ident: Identity) -> list[Enterprise]:
    """Enterprises the sender may report for: their own, those they serve, their grids'."""
    ids = {r.enterprise.id for r in ident.roles if r.enterprise and r.kind in ENTERPRISE_STAFF}
    ids |= {e.id for e in ident.served}
    l2 = {
        r.grid.id
        for r in ident.roles
        if r.grid and r.kind in (RoleKind.L2_CHIEF, RoleKind.L2_OFFICE_MEMBER)
    }
    q = select(Enterprise).where(Enterprise.active.is_(True))
    if l2:
        q = q.where(Enterprise.id.in_(ids) | Enterprise.grid_id.in_(l2))
    else:
        q = q.where(Enterprise.id.in_(ids or {-1}))
    return list(await session.scalars(q.order_by(Enterprise.name)))


async def enterprise_or_ask(
    ctx: CommandContext, conv: Conversation, kind: str, template: str
) -> Enterprise | None:
    """The enterprise a new report is for (this room's, or the sender's only one). When that is
    unclear, start ``conv`` at its "enterprise" step with the choices and return None."""
    options = await reportable_enterprises(ctx.session, ctx.identity)
    if not options:
        refuse(ctx.reply, "no_enterprise", "", kind)
        return None
    ent = await enterprise_here(ctx, options)
    if ent is None:
        data: dict[str, Any] = {"options": [[e.id, e.name] for e in options]}
        await conversation.start(ctx, conv, "enterprise", data)
        ctx.reply(template, step="enterprise", again=False, **data)
    return ent


async def enterprise_here(ctx: CommandContext, options: list[Enterprise]) -> Enterprise | None:
    """The enterprise a report is about when it goes without saying: the room's, or the only one."""
    info = await rooms.get(ctx.session, ctx.room_id)
    if info is not None and info.kind == "enterprise_room" and info.enterprise_id is not None:
        for ent in options:
            if ent.id == info.enterprise_id:
                return ent
    return options[0] if len(options) == 1 else None


def pick_option(options: list[list[Any]], text: str) -> list[Any] | None:
    t = text.strip().rstrip(".、。")
    if t.isdigit() and 1 <= int(t) <= len(options):
        return options[int(t) - 1]
    return next((o for o in options if o[1] == t), None)


# --- small parsing helpers ---------------------------------------------------------------------

DONE_WORDS = frozenset({"完成", "好了", "完毕", "没有", "无", "跳过", "done", "skip", "none"})


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
        msgtype: str = "m.notice",
        extra: dict[str, Any] | None = None,
        **values: Any,
    ) -> OutboxMessage:
        """Post into room_id: in the case's thread there if it has one, else as its root."""
        rendered = self.services.messages.render(
            self.services.config.language,
            template,
            code=code,
            mentions=list(mentions),
            tz=self.services.config.tz,
            **values,
        )
        content = rendered.content(msgtype)
        content.update(extra or {})
        content["m.mentions"] = {"user_ids": sorted({c.user_id for c in mentions if c.user_id})}
        root = await cases.root_post(self.session, code, room_id)
        root_event = await cases.post_event_id(self.session, root) if root else None
        if root_event:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": root_event,
                "is_falling_back": reply_to is None,
                "m.in_reply_to": {"event_id": reply_to or root_event},
            }
        elif reply_to and root is not None:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
        msg = outbox.enqueue(self.session, room_id, content, cause=self.cause)
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
                msgtype="m.image",
                extra={
                    "url": photo["url"],
                    "info": photo.get("info") or {},
                    "filename": photo["name"],
                },
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


async def root_ready(session: AsyncSession, code: str, room_id: str) -> bool:
    root = await cases.root_post(session, code, room_id)
    return root is not None and await cases.post_event_id(session, root) is not None


# --- actors, refusals and the people around an enterprise --------------------------------------


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


@dataclass
class Around:
    """The people and rooms around one enterprise, right now."""

    enterprise: Enterprise
    l1_grid_id: int | None
    staff: list[Contact]
    members: list[Contact]
    l2_chiefs: list[Contact]
    l2_office: list[Contact]
    l1_chiefs: list[Contact]
    l1_office: list[Contact]
    ent_room: str | None
    l2_room: str | None
    l1_room: str | None


async def around(session: AsyncSession, enterprise_id: int) -> Around:
    ent = await session.get(Enterprise, enterprise_id)
    assert ent is not None
    l1 = await gc.l1_grid_of(session, ent)
    return Around(
        enterprise=ent,
        l1_grid_id=l1,
        staff=await gc.enterprise_staff(session, ent.id),
        members=await gc.serving_members(session, ent.id),
        l2_chiefs=await gc.l2_chiefs(session, ent.grid_id),
        l2_office=await gc.l2_office(session, ent.grid_id),
        l1_chiefs=await gc.l1_chiefs(session, l1),
        l1_office=await gc.l1_office(session, l1),
        ent_room=await room_of(session, "enterprise_room", enterprise_id=ent.id),
        l2_room=await room_of(session, "l2_room", grid_id=ent.grid_id),
        l1_room=await room_of(session, "l1_room", grid_id=l1) if l1 else None,
    )


def reply_target(actor: Actor, room_id: str) -> str | None:
    """Reply to the actor's message when it was sent in this room's case thread."""
    return actor.event_id if actor.in_thread and actor.room_id == room_id else None


def refuse(reply: Any, reason: str, code: str, kind: str, **values: Any) -> None:
    """Answer with template case_error (``reply`` is ctx.reply or step.reply)."""
    reply("case_error", reason=reason, code=code, kind=kind, v=values)

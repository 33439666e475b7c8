"""A case's threads in its rooms: the one way the bot posts about a case.

A case lives in a thread: the first message the bot posts about it in a room is the thread root
there, and every later post about it in that room goes into that thread. The root may be queued
in the same transaction: the sender threads a post under it once the root is sent (see
bot.outgoing). A reply to any of these posts, or a message in such a thread, is about the case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.context import CommandContext
from bot.outgoing import Attachment, Outgoing
from bot.relations import answered
from bot.scheduler import JobContext
from storage import cases
from storage.cases import CaseRow
from storage.directory import L1_ROOM, L2_ROOM, Contact, EnterpriseCircle, circle_of, unite
from storage.models import OutboxMessage

if TYPE_CHECKING:
    from handlers.cases.actors import Actor


def related_event_ids(ctx: CommandContext) -> list[str]:
    """The events a message answers: its thread root and the event it replies to."""
    return answered(ctx.event.source.get("content") or {})


async def case_answered(ctx: CommandContext) -> str | None:
    """The case whose thread the message sits in, or one of whose posts it replies to."""
    return await cases.code_for_event(ctx.session, related_event_ids(ctx))


@dataclass(frozen=True)
class Audience:
    """A room to tell about a case and whom to mention there. A post ``rings`` (m.text) when
    it asks those people to act; otherwise it is an m.notice, for the record."""

    room: str | None
    people: Sequence[Contact] = ()
    rings: bool = False


def upper_levels(ar: EnterpriseCircle) -> dict[str, Audience]:
    """Whom an alert rings above an enterprise (a major hazard, an accident), by room kind: the
    level-2 room (the members serving it and the level-2 chief) and the level-1 room (the
    level-1 chief and office)."""
    return {
        L2_ROOM: Audience(ar.l2_room, unite(ar.members, ar.l2_chiefs), rings=True),
        L1_ROOM: Audience(ar.l1_room, unite(ar.l1_chiefs, ar.l1_office), rings=True),
    }


class CaseThreads:
    """Posts about cases into each room's thread of the case, for one command or job, and
    keeps the cases' ledger in the same transaction. The rules get one of these; they pass its
    ``session`` and ``config`` on to storage and to the deadline watches."""

    def __init__(self, ctx: CommandContext | JobContext) -> None:
        self._ctx = ctx
        self.session = ctx.session
        self.config = ctx.services.config

    # --- the ledger ------------------------------------------------------------------------------

    async def new_code(self, kind: str, now: datetime) -> str:
        return await cases.next_code(self.session, kind, now.astimezone(self.config.tz).year)

    async def open(
        self, case: CaseRow, actor: Actor, action: str, state: str, note: str
    ) -> EnterpriseCircle:
        """Add a new case with the first line of its ledger; returns who and which rooms are
        around its enterprise."""
        self.session.add(case)
        self.record(actor, case.code, action, None, state, note)
        return await circle_of(self.session, case.enterprise_id)

    def record(
        self,
        actor: Actor,
        code: str,
        action: str,
        from_state: str | None,
        to_state: str,
        note: str = "",
    ) -> None:
        """One audit row: what ``actor`` did to the case, from which room."""
        cases.record(
            self.session,
            code,
            action,
            from_state,
            to_state,
            actor=actor.user_id,
            actor_name=actor.name,
            room_id=actor.room_id,
            note=note,
        )

    async def circle(self, case: CaseRow) -> EnterpriseCircle:
        return await circle_of(self.session, case.enterprise_id)

    async def home(self, code: str, ar: EnterpriseCircle, actor: Actor | None = None) -> str | None:
        """Where the case was first posted; before that, its enterprise's room, or the room the
        actor is in."""
        return (
            await cases.home_room(self.session, code)
            or ar.ent_room
            or (actor.room_id if actor else None)
        )

    # --- posting ---------------------------------------------------------------------------------

    async def post(
        self,
        code: str,
        room_id: str,
        template: str,
        /,
        *,
        mentions: Sequence[Contact] = (),
        rings: bool = False,
        reply_to: str | None = None,
        attachment: Attachment | None = None,
        **values: Any,
    ) -> OutboxMessage:
        """Post into room_id: in the case's thread there if it has one, else as its root (in the
        grid's language: others than the sender read it)."""
        root = await cases.root_message(self.session, code, room_id)
        message = Outgoing(
            room_id,
            template,
            {"code": code, "mentions": list(mentions), "tz": self.config.tz, **values},
            mentions=[c.user_id for c in mentions if c.user_id],
            locale=self.config.language,
            rings=rings,
            thread_root=root,
            reply_to=reply_to if root is not None else None,
            attachment=attachment,
        )
        msg = self._ctx.post(message)
        await cases.add_post(self.session, msg, code, is_root=root is None)
        return msg

    async def photos(
        self, code: str, room_id: str, photos: Sequence[dict[str, Any]], stage: str
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

    async def evidence(
        self,
        code: str,
        room_id: str,
        photos: Sequence[dict[str, Any]],
        files: Sequence[dict[str, Any]],
        stage: str,
    ) -> None:
        """Show a case's photos, then its voice notes and documents, in its thread in room_id:
        each a file event (m.image, m.audio, m.file) reusing the sender's mxc URI."""
        await self.photos(code, room_id, photos, stage)
        for i, item in enumerate(files, 1):
            await self.post(
                code,
                room_id,
                "evidence_caption",
                attachment=Attachment.from_media(item),
                stage=stage,
                index=i,
                total=len(files),
                item=item,
            )

    async def tell(
        self,
        code: str,
        audiences: Iterable[Audience],
        template: str,
        /,
        *,
        answering: Actor | None = None,
        photos: Sequence[dict[str, Any]] = (),
        files: Sequence[dict[str, Any]] = (),
        stage: str = "",
        **values: Any,
    ) -> None:
        """Post into each audience's room once (rooms that do not exist are passed over),
        mentioning its people, with ``photos`` and ``files`` (voice notes, documents) after it
        in the thread. Where the message of the actor being ``answering`` sits in that room's
        case thread, the post replies to it."""
        done: set[str] = set()
        for audience in audiences:
            room = audience.room
            if room is None or room in done:
                continue
            done.add(room)
            await self.post(
                code,
                room,
                template,
                mentions=audience.people,
                rings=audience.rings,
                reply_to=answering.reply_target(room) if answering else None,
                **values,
            )
            await self.evidence(code, room, photos, files, stage)

    async def step_taken(
        self,
        code: str,
        ar: EnterpriseCircle,
        actor: Actor,
        template: str,
        /,
        *,
        home: Sequence[Contact] = (),
        rings: bool = False,
        also: Iterable[Audience] = (),
        **values: Any,
    ) -> None:
        """Tell of a step ``actor`` took on a case: in its home thread, mentioning ``home``
        (ringing them when they must act next), then in the rooms ``also``. Where the actor
        wrote in a room's case thread, the post there answers them."""
        room = await self.home(code, ar, actor)
        await self.tell(
            code,
            [Audience(room, home, rings), *also],
            template,
            answering=actor,
            ent=ar.enterprise,
            actor=actor.name,
            **values,
        )

    async def alert_upper_levels(
        self,
        code: str,
        ar: EnterpriseCircle,
        template: str,
        /,
        *,
        photos: Sequence[dict[str, Any]],
        stage: str,
        files: Sequence[dict[str, Any]] = (),
        **values: Any,
    ) -> list[str]:
        """Ring every level above the enterprise at once (:func:`upper_levels`), with the
        photos, voice notes and documents. Returns the kinds of room that do not exist, for the
        reporter to phone."""
        levels = upper_levels(ar)
        await self.tell(
            code, levels.values(), template, photos=photos, files=files, stage=stage, **values
        )
        return [kind for kind, audience in levels.items() if audience.room is None]

"""Notices down the grid: the notice, one target per enterprise, the messages that carried it.

A notice (``N-2026-0001``) keeps a snapshot of who issued it, to whom (the filter and the
enterprises it resolved to) and by when it must be acknowledged. Each enterprise is a
:class:`NoticeTarget` with its room, delivery state, first acknowledgement and feedback. Every
outgoing message that carries the notice (the post, its attachments, the copy in a level-2
room, reminders) is a :class:`NoticeDelivery` that points at its outbox row. The outbox row is
the one record of what was sent: its status says whether a message went out or was given up on,
and its event id (indexed) leads a reaction or a reply back to the target. Nothing is copied.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage import codes, outbox
from storage.models import Base, OutboxMessage, UTCDateTime

# Notice kinds: the four of /broadcast and /notice, then the three of /remind.
REQUIREMENT = "requirement"  # 部署要求
ACCIDENT_CASE = "accident_case"  # 典型事故案例
INSPECTION_BULLETIN = "inspection_bulletin"  # 检查通报
SAFETY_REMINDER = "safety_reminder"  # 安全提醒
HOLIDAY = "holiday"  # 节假日提醒
WEATHER = "weather"  # 恶劣天气预警
SPECIAL_PERIOD = "special_period"  # 特殊时段提醒
NOTICE_KINDS = (REQUIREMENT, ACCIDENT_CASE, INSPECTION_BULLETIN, SAFETY_REMINDER)
REMIND_KINDS = (HOLIDAY, WEATHER, SPECIAL_PERIOD)

# Delivery states of a message (its outbox row's status), and of a target (its post's state, or
# NO_ROOM when it has no room to post in).
PENDING, SENT, FAILED, NO_ROOM = outbox.PENDING, outbox.SENT, outbox.FAILED, "no_room"

# How an enterprise acknowledged.
BY_REACTION, BY_COMMAND, BY_REPLY, BY_FEEDBACK = "reaction", "command", "reply", "feedback"

# Parts of a notice that travel as messages. PART_TEXT: the full text as a file, after a post
# that carries only its beginning (a text too long for one Matrix event).
PART_POST, PART_ATTACHMENT, PART_L2_COPY, PART_REMINDER, PART_TEXT = (
    "post",
    "attachment",
    "l2_copy",
    "reminder",
    "text",
)
# What an enterprise must have received to have the notice: the post, and its full text.
CARRIERS = (PART_POST, PART_TEXT)

_CODE = re.compile(r"^N-?(\d{4})-?(\d{1,6})$", re.IGNORECASE)


def format_code(year: int, seq: int) -> str:
    return codes.format_code("N", year, seq)


def parse_code(text: str) -> str | None:
    """``N-2026-0001`` from what people type (``n-2026-1``, ``N20260001``…); None if no code."""
    m = _CODE.match(codes.typed(text))
    return format_code(int(m[1]), int(m[2])) if m else None


class Notice(Base):
    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    # broadcast | notice | remind | calendar: the command (or the config calendar) behind it.
    origin: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    # [{"msgtype", "url", "name", "info"}]: files and images sent with the command.
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Matrix id of the issuer; "" for the configured calendar.
    issuer: Mapped[str] = mapped_column(String(255), index=True)
    issuer_name: Mapped[str] = mapped_column(String(100))
    # The room the notice was issued from: progress, failures and the summary go there.
    issuer_room: Mapped[str | None] = mapped_column(String(255))
    locale: Mapped[str] = mapped_column(String(8))
    # Snapshot: issuer role and unit, the filter as typed and as understood.
    scope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    target_count: Mapped[int] = mapped_column(Integer)
    # Highest progress step (percent) already reported to the issuer.
    progress_reported: Mapped[int] = mapped_column(Integer, default=0)
    # When every post was either sent or given up on (None while the fan-out runs).
    delivery_done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    targets: Mapped[list[NoticeTarget]] = relationship(
        back_populates="notice", order_by="NoticeTarget.id"
    )


class NoticeTarget(Base):
    """One enterprise that must acknowledge a notice."""

    __tablename__ = "notice_targets"
    __table_args__ = (
        UniqueConstraint("notice_id", "enterprise_id", name="uq_notice_targets_enterprise"),
        Index("ix_notice_targets_enterprise", "enterprise_id", "acked_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), index=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    # Snapshots, so the record stays true after renames and grid changes.
    enterprise_name: Mapped[str] = mapped_column(String(200))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    # None: the enterprise had no room, nothing was posted (its delivery state is NO_ROOM).
    room_id: Mapped[str | None] = mapped_column(String(255))
    acked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acked_by: Mapped[str | None] = mapped_column(String(255))
    acked_by_name: Mapped[str | None] = mapped_column(String(100))
    ack_method: Mapped[str | None] = mapped_column(String(16))
    ack_event_id: Mapped[str | None] = mapped_column(String(255))

    notice: Mapped[Notice] = relationship(back_populates="targets")
    feedback: Mapped[list[NoticeFeedback]] = relationship(order_by="NoticeFeedback.id")

    def on_time(self, deadline: datetime) -> bool:
        return self.acked_at is not None and self.acked_at <= deadline


class NoticeDelivery(Base):
    """One message carrying (part of) a notice, linked to its outbox row (which says whether it
    was sent, and with which event id)."""

    __tablename__ = "notice_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), index=True)
    # None for the copy in a level-2 room: reacting there acknowledges nothing.
    target_id: Mapped[int | None] = mapped_column(ForeignKey("notice_targets.id"))
    room_id: Mapped[str] = mapped_column(String(255))
    part: Mapped[str] = mapped_column(String(16))
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), unique=True)


class NoticeFeedback(Base):
    """An enterprise's account of how it carried a notice out (贯彻落实情况)."""

    __tablename__ = "notice_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("notice_targets.id"), index=True)
    person: Mapped[str] = mapped_column(String(255))
    person_name: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    event_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- queries ------------------------------------------------------------------------------------


async def allocate_code(session: AsyncSession, year: int) -> str:
    """The next ``N-<year>-NNNN`` (storage/codes.py: safe under concurrent transactions)."""
    return await codes.next_code(session, "N", year)


async def by_code(session: AsyncSession, code: str) -> Notice | None:
    return await session.scalar(select(Notice).where(Notice.code == code))


async def targets_of(session: AsyncSession, notice_id: int) -> list[NoticeTarget]:
    rows = await session.scalars(
        select(NoticeTarget).where(NoticeTarget.notice_id == notice_id).order_by(NoticeTarget.id)
    )
    return list(rows)


async def target_for(
    session: AsyncSession, notice_id: int, enterprise_id: int
) -> NoticeTarget | None:
    return await session.scalar(
        select(NoticeTarget).where(
            NoticeTarget.notice_id == notice_id, NoticeTarget.enterprise_id == enterprise_id
        )
    )


# A message queued for a notice: (its outbox row, the target it is for or None, the part).
Queued = tuple[OutboxMessage, NoticeTarget | None, str]


async def add_deliveries(session: AsyncSession, notice_id: int, queued: list[Queued]) -> None:
    """Link each message queued for the notice to its outbox row, in the same transaction."""
    await session.flush()  # the outbox rows' (and targets') ids
    session.add_all(
        NoticeDelivery(
            notice_id=notice_id,
            target_id=target.id if target is not None else None,
            room_id=message.room_id,
            part=part,
            outbox_id=message.id,
        )
        for message, target, part in queued
    )


@dataclass(frozen=True)
class Carried:
    """What a Matrix event id carries: a part of a notice, maybe for one target."""

    notice_id: int
    target_id: int | None
    part: str


async def carried_by(session: AsyncSession, event_id: str) -> Carried | None:
    """The notice part behind an event the bot sent: the outbox row that has this event id
    (ix_outbox_event_id), and the delivery that points at it. Known as soon as it is sent."""
    row = (
        await session.execute(
            select(NoticeDelivery.notice_id, NoticeDelivery.target_id, NoticeDelivery.part)
            .join(OutboxMessage, OutboxMessage.id == NoticeDelivery.outbox_id)
            .where(OutboxMessage.event_id == event_id)
            .limit(1)
        )
    ).first()
    return Carried(row[0], row[1], row[2]) if row else None


async def record_ack(
    session: AsyncSession,
    target_id: int,
    *,
    at: datetime,
    user_id: str,
    name: str,
    method: str,
    event_id: str,
) -> bool:
    """Store the first acknowledgement; False when the target was acknowledged already.

    A conditional UPDATE, so two acknowledgements racing in parallel transactions cannot both
    claim to be the first.
    """
    result = await session.execute(
        update(NoticeTarget)
        .where(NoticeTarget.id == target_id, NoticeTarget.acked_at.is_(None))
        .values(
            acked_at=at,
            acked_by=user_id,
            acked_by_name=name,
            ack_method=method,
            ack_event_id=event_id,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def open_targets_for(
    session: AsyncSession, enterprise_ids: list[int], limit: int = 20
) -> list[tuple[Notice, NoticeTarget]]:
    """Unacknowledged targets of these enterprises, newest notice first; not those the notice
    never reached (nobody is asked to acknowledge what they never got)."""
    if not enterprise_ids:
        return []
    rows = await session.execute(
        select(Notice, NoticeTarget)
        .join(NoticeTarget, NoticeTarget.notice_id == Notice.id)
        .where(NoticeTarget.enterprise_id.in_(enterprise_ids), NoticeTarget.acked_at.is_(None))
        .where(~undelivered())
        .order_by(Notice.created_at.desc(), Notice.id.desc())
        .limit(limit)
    )
    return [(n, t) for n, t in rows]


async def feedback_counts(session: AsyncSession, target_ids: list[int]) -> dict[int, int]:
    if not target_ids:
        return {}
    rows = await session.execute(
        select(NoticeFeedback.target_id, func.count())
        .where(NoticeFeedback.target_id.in_(target_ids))
        .group_by(NoticeFeedback.target_id)
    )
    return {tid: int(n) for tid, n in rows}


# --- delivery, read from the outbox ---------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """Where a message stands, as the sender left its outbox row; for a target, where its post
    stands (NO_ROOM: it had no room, nothing was posted)."""

    state: str  # PENDING | SENT | FAILED | NO_ROOM
    error: str | None = None  # why the sender gave up (FAILED only): "CODE: message"

    @property
    def undelivered(self) -> bool:
        return self.state in (FAILED, NO_ROOM)

    @property
    def cause(self) -> str | None:
        """Why it did not arrive, in one word (``outbox.failure_cause``; NO_ROOM: no room)."""
        if self.state == NO_ROOM:
            return NO_ROOM
        return outbox.failure_cause(self.error) if self.state == FAILED else None

    @property
    def code(self) -> str | None:
        """The homeserver's error code (FAILED only)."""
        return outbox.error_code(self.error) if self.state == FAILED else None

    @property
    def reachable(self) -> bool:
        """Posted, or being posted: a reminder can follow it into the room."""
        return self.state in (PENDING, SENT)


NOT_POSTED = Delivery(NO_ROOM)


def _delivery(status: str | None, error: str | None) -> Delivery:
    if status is None:
        return NOT_POSTED
    return Delivery(status, error if status == FAILED else None)


_WORST = {FAILED: 0, PENDING: 1, SENT: 2}


async def post_deliveries(session: AsyncSession, notice_id: int) -> dict[int, Delivery]:
    """Every target of the notice, by id: where its post stands (with its full text, when that
    went as a file: the notice has arrived only when both have, and failed when either did)."""
    rows = await session.execute(
        select(NoticeTarget.id, OutboxMessage.status, OutboxMessage.last_error)
        .outerjoin(
            NoticeDelivery,
            and_(NoticeDelivery.target_id == NoticeTarget.id, NoticeDelivery.part.in_(CARRIERS)),
        )
        .outerjoin(OutboxMessage, OutboxMessage.id == NoticeDelivery.outbox_id)
        .where(NoticeTarget.notice_id == notice_id)
        .order_by(NoticeDelivery.id)
    )
    found: dict[int, Delivery] = {}
    for target_id, status, error in rows:
        d = _delivery(status, error)
        known = found.get(target_id)
        if known is None or _WORST.get(d.state, 3) < _WORST.get(known.state, 3):
            found[target_id] = d
    return found


def undelivered() -> ColumnElement[bool]:
    """SQL, for a query over NoticeTarget: the notice never reached the enterprise (it had no
    room, or its post or full text was given up on). Such a target is not asked to
    acknowledge: /ack, reminders, escalations and its own /notices leave it out."""
    failed = (
        select(NoticeDelivery.id)
        .join(OutboxMessage, OutboxMessage.id == NoticeDelivery.outbox_id)
        .where(
            NoticeDelivery.target_id == NoticeTarget.id,
            NoticeDelivery.part.in_(CARRIERS),
            OutboxMessage.status == FAILED,
        )
        .exists()
    )
    return or_(NoticeTarget.room_id.is_(None), failed)


@dataclass(frozen=True)
class FanOutMessage:
    """One message the notice was published with, and where it stands."""

    delivery_id: int
    part: str  # PART_POST, PART_ATTACHMENT or PART_L2_COPY
    room_id: str
    enterprise: str | None  # None for a level-2 copy
    delivery: Delivery


async def fan_out(session: AsyncSession, notice_id: int) -> list[FanOutMessage]:
    """The messages the notice was published with (posts, attachments, level-2 copies; not the
    reminders that follow), in the order they were queued."""
    rows = await session.execute(
        select(
            NoticeDelivery.id,
            NoticeDelivery.part,
            NoticeDelivery.room_id,
            NoticeTarget.enterprise_name,
            OutboxMessage.status,
            OutboxMessage.last_error,
        )
        .join(OutboxMessage, OutboxMessage.id == NoticeDelivery.outbox_id)
        .outerjoin(NoticeTarget, NoticeTarget.id == NoticeDelivery.target_id)
        .where(NoticeDelivery.notice_id == notice_id, NoticeDelivery.part != PART_REMINDER)
        .order_by(NoticeDelivery.id)
    )
    return [
        FanOutMessage(did, part, room, name, _delivery(status, error))
        for did, part, room, name, status, error in rows
    ]


@dataclass(frozen=True)
class Counts:
    targets: int
    delivered: int
    undeliverable: int
    acked: int
    on_time: int
    late: int
    silent: int
    with_feedback: int

    @property
    def on_time_rate(self) -> float:
        return 100.0 * self.on_time / self.targets if self.targets else 0.0


def count(
    targets: list[NoticeTarget],
    deadline: datetime,
    feedback: dict[int, int],
    deliveries: dict[int, Delivery],
) -> Counts:
    """The figures of /status and the deadline summary (``deliveries``: post_deliveries)."""
    acked = [t for t in targets if t.acked_at is not None]
    on_time = sum(1 for t in acked if t.on_time(deadline))
    states = [deliveries.get(t.id, NOT_POSTED) for t in targets]
    return Counts(
        targets=len(targets),
        delivered=sum(1 for d in states if d.state == SENT),
        undeliverable=sum(1 for d in states if d.undelivered),
        acked=len(acked),
        on_time=on_time,
        late=len(acked) - on_time,
        silent=len(targets) - len(acked),
        with_feedback=sum(1 for t in targets if feedback.get(t.id)),
    )


# --- lists ---------------------------------------------------------------------------------------


def _seen_by(visible: set[int] | None, issuer: str) -> ColumnElement[bool]:
    """Targets someone may see: those in ``visible`` (None: all), and all of what they issued."""
    if visible is None:
        return true()
    issued = select(Notice.id).where(Notice.issuer == issuer)
    return or_(NoticeTarget.enterprise_id.in_(visible), NoticeTarget.notice_id.in_(issued))


async def latest(
    session: AsyncSession,
    *,
    visible: set[int] | None,
    issuer: str,
    limit: int,
    own: Collection[int] = (),
) -> list[Notice]:
    """The latest notices someone may see: every one (``visible`` None), else those they
    issued and those sent to an enterprise in ``visible``. A notice that never reached one of
    their ``own`` enterprises is not theirs to see as sent to it."""
    q = select(Notice).order_by(Notice.created_at.desc(), Notice.id.desc()).limit(limit)
    if visible is not None:
        reached = select(NoticeTarget.notice_id).where(
            NoticeTarget.enterprise_id.in_(visible),
            or_(NoticeTarget.enterprise_id.not_in(list(own)), ~undelivered()),
        )
        q = q.where(or_(Notice.issuer == issuer, Notice.id.in_(reached)))
    return list(await session.scalars(q))


async def acknowledgement_totals(
    session: AsyncSession, notice_ids: list[int], *, visible: set[int] | None, issuer: str
) -> dict[int, tuple[int, int]]:
    """(targets, acknowledged) per notice, over the targets someone may see (see ``latest``)."""
    if not notice_ids:
        return {}
    rows = await session.execute(
        select(NoticeTarget.notice_id, func.count(), func.count(NoticeTarget.acked_at))
        .where(NoticeTarget.notice_id.in_(notice_ids), _seen_by(visible, issuer))
        .group_by(NoticeTarget.notice_id)
    )
    return {nid: (int(total), int(acked)) for nid, total, acked in rows}


async def acknowledged_by(
    session: AsyncSession, notice_ids: list[int], enterprise_ids: list[int]
) -> dict[int, bool]:
    """For each of these notices that reached any of these enterprises: have they all
    acknowledged? (One that never reached them is not theirs to acknowledge.)"""
    if not notice_ids or not enterprise_ids:
        return {}
    rows = await session.execute(
        select(NoticeTarget.notice_id, NoticeTarget.acked_at).where(
            NoticeTarget.notice_id.in_(notice_ids),
            NoticeTarget.enterprise_id.in_(enterprise_ids),
            ~undelivered(),
        )
    )
    states: dict[int, bool] = {}
    for nid, acked_at in rows:
        states[nid] = states.get(nid, True) and acked_at is not None
    return states

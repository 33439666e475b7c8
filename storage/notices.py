"""Notices down the grid: the notice, one target per enterprise, the messages that carried it.

A notice (``N-2026-0001``) keeps a snapshot of who issued it, to whom (the filter and the
enterprises it resolved to) and by when it must be acknowledged. Each enterprise is a
:class:`NoticeTarget` with its room, delivery state, first acknowledgement and feedback. Every
outgoing message that carries the notice (the post, its attachments, the copy in a level-2
room, reminders) is a :class:`NoticeDelivery` that points at its outbox row, so a reaction or a
reply to any of them can be traced back to the target once the sender knows the event id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage import codes
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

# Delivery states of a target (its main post) and of each delivery row.
PENDING, SENT, FAILED, NO_ROOM = "pending", "sent", "failed", "no_room"

# How an enterprise acknowledged.
BY_REACTION, BY_COMMAND, BY_REPLY, BY_FEEDBACK = "reaction", "command", "reply", "feedback"

# Parts of a notice that travel as messages.
PART_POST, PART_ATTACHMENT, PART_L2_COPY, PART_REMINDER = (
    "post",
    "attachment",
    "l2_copy",
    "reminder",
)

_CODE = re.compile(r"^N-?(\d{4})-?(\d{1,6})$", re.IGNORECASE)


def format_code(year: int, seq: int) -> str:
    return codes.format_code("N", year, seq)


def parse_code(text: str) -> str | None:
    """``N-2026-0001`` from what people type (``n-2026-1``, ``N20260001``…); None if no code."""
    m = _CODE.match(text.strip())
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
    room_id: Mapped[str | None] = mapped_column(String(255))
    delivery: Mapped[str] = mapped_column(String(16), default=PENDING)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    delivery_error: Mapped[str | None] = mapped_column(Text)
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
    """One message carrying (part of) a notice, linked to its outbox row."""

    __tablename__ = "notice_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("notices.id"), index=True)
    # None for the copy in a level-2 room: reacting there acknowledges nothing.
    target_id: Mapped[int | None] = mapped_column(ForeignKey("notice_targets.id"))
    room_id: Mapped[str] = mapped_column(String(255))
    part: Mapped[str] = mapped_column(String(16))
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), unique=True)
    # Copied from the outbox once sent, so a reaction finds its target by index.
    event_id: Mapped[str | None] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)


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


@dataclass(frozen=True)
class Carried:
    """What a Matrix event id carries: a part of a notice, maybe for one target."""

    notice_id: int
    target_id: int | None
    part: str


async def carried_by(session: AsyncSession, event_id: str) -> Carried | None:
    """The notice part behind a sent event, by our copy of the event id or else the outbox."""
    row = (
        await session.execute(
            select(NoticeDelivery.notice_id, NoticeDelivery.target_id, NoticeDelivery.part).where(
                NoticeDelivery.event_id == event_id
            )
        )
    ).first()
    if row is None:
        # Sent but not yet copied over (the delivery check runs every few seconds): look among
        # the deliveries still missing an event id, joined to the outbox by its primary key.
        row = (
            await session.execute(
                select(NoticeDelivery.notice_id, NoticeDelivery.target_id, NoticeDelivery.part)
                .join(OutboxMessage, OutboxMessage.id == NoticeDelivery.outbox_id)
                .where(NoticeDelivery.event_id.is_(None), OutboxMessage.event_id == event_id)
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
    """Unacknowledged targets of these enterprises, newest notice first."""
    if not enterprise_ids:
        return []
    rows = await session.execute(
        select(Notice, NoticeTarget)
        .join(NoticeTarget, NoticeTarget.notice_id == Notice.id)
        .where(NoticeTarget.enterprise_id.in_(enterprise_ids), NoticeTarget.acked_at.is_(None))
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


async def pending_deliveries(
    session: AsyncSession, notice_id: int
) -> list[tuple[NoticeDelivery, OutboxMessage]]:
    rows = await session.execute(
        select(NoticeDelivery, OutboxMessage)
        .join(OutboxMessage, OutboxMessage.id == NoticeDelivery.outbox_id)
        .where(NoticeDelivery.notice_id == notice_id, NoticeDelivery.status == PENDING)
        .order_by(NoticeDelivery.id)
    )
    return [(d, o) for d, o in rows]


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


async def live_delivery(session: AsyncSession, notice_id: int) -> dict[int, str]:
    """Delivery state per target, read from the outbox for posts the delivery check has not
    looked at yet (so /status is current between checks). Read-only."""
    rows = await session.execute(
        select(NoticeDelivery.target_id, OutboxMessage.status)
        .join(OutboxMessage, OutboxMessage.id == NoticeDelivery.outbox_id)
        .where(
            NoticeDelivery.notice_id == notice_id,
            NoticeDelivery.part == PART_POST,
            NoticeDelivery.status == PENDING,
        )
    )
    states = {"sent": SENT, "failed": FAILED}
    return {tid: states[st] for tid, st in rows if tid is not None and st in states}


def count(
    targets: list[NoticeTarget],
    deadline: datetime,
    feedback: dict[int, int],
    delivery: dict[int, str] | None = None,
) -> Counts:
    def state(t: NoticeTarget) -> str:
        return (delivery or {}).get(t.id, t.delivery)

    acked = [t for t in targets if t.acked_at is not None]
    on_time = sum(1 for t in acked if t.on_time(deadline))
    return Counts(
        targets=len(targets),
        delivered=sum(1 for t in targets if state(t) == SENT),
        undeliverable=sum(1 for t in targets if state(t) in (FAILED, NO_ROOM)),
        acked=len(acked),
        on_time=on_time,
        late=len(acked) - on_time,
        silent=len(targets) - len(acked),
        with_feedback=sum(1 for t in targets if feedback.get(t.id)),
    )

"""Cases that flow up the grid: hazards (H-), requests (E-) and accidents (A-), with their audit.

Every state change of a case is one ``CaseEvent`` row: who, when, from which room, from → to,
and a note. Those rows are append-only (the mapper refuses updates and deletes), so the trail
stays what it was. Case codes are a per-year sequence allocated in the database
(storage/codes.py), safe under concurrent reporters on SQLite and PostgreSQL.

``CasePost`` remembers every message the bot posted about a case, per room; the first one in a
room is the thread root there, and a reply to any of them is a reply to the case.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    event,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage import codes
from storage.models import Base, Enterprise, OutboxMessage, UTCDateTime

HAZARD, REQUEST, ACCIDENT = "hazard", "request", "accident"
PREFIX = {HAZARD: "H", REQUEST: "E", ACCIDENT: "A"}
KIND_OF_PREFIX = {v: k for k, v in PREFIX.items()}
CODE_RE = re.compile(r"^([HEA])-(\d{4})-(\d{1,6})$", re.IGNORECASE)

# Hazard lifecycle. Open = still to be fixed (a deadline applies).
H_REPORTED, H_CONFIRMED, H_RECTIFYING = "reported", "confirmed", "rectifying"
H_SUBMITTED, H_VERIFIED, H_CLOSED = "submitted", "verified", "closed"
HAZARD_OPEN = (H_REPORTED, H_CONFIRMED, H_RECTIFYING)
GENERAL, MAJOR = "general", "major"

# Request lifecycle and the levels it climbs.
R_OPEN, R_TAKEN, R_RESOLVED = "open", "taken", "resolved"
LEVELS = ("member", "level2", "level1")

A_REPORTED = "reported"
SYSTEM = "system"  # the actor of automatic transitions (deadlines passing)


def parse_code(text: str) -> str | None:
    """'h-2026-1' → 'H-2026-0001'; None if the text is no case code."""
    m = CODE_RE.match(codes.typed(text))
    if not m:
        return None
    return f"{m[1].upper()}-{m[2]}-{int(m[3]):04d}"


def kind_of(code: str) -> str:
    return KIND_OF_PREFIX[code[0]]


class Hazard(Base):
    """A hazard ledger entry (隐患台账): what, where, grade, measures, deadline, photos, checks."""

    __tablename__ = "hazards"
    __table_args__ = (
        Index("ix_hazards_open_deadline", "status", "deadline_at"),
        Index("ix_hazards_enterprise", "enterprise_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    status: Mapped[str] = mapped_column(String(16))
    grade: Mapped[str] = mapped_column(String(8))
    category: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(Text)
    interim_measures: Mapped[str] = mapped_column(Text, default="")
    plan: Mapped[str] = mapped_column(Text, default="")
    responsible: Mapped[str] = mapped_column(String(200), default="")
    deadline: Mapped[date] = mapped_column(Date)
    # The end of the deadline day in the grid's time zone (stored in UTC).
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    photos: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    fix_photos: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Voice notes and documents (bot.evidence items, msgtype m.audio or m.file) sent with the
    # report and with the rectification; photos stay in photos / fix_photos.
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    fix_files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    fix_note: Mapped[str] = mapped_column(Text, default="")
    rework_count: Mapped[int] = mapped_column(Integer, default=0)
    supervised: Mapped[bool] = mapped_column(Boolean, default=False)
    supervised_by: Mapped[str | None] = mapped_column(String(100))
    overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reported_by: Mapped[str] = mapped_column(String(255))
    reporter_name: Mapped[str] = mapped_column(String(100))
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    confirmed_by: Mapped[str | None] = mapped_column(String(100))
    verified_by: Mapped[str | None] = mapped_column(String(100))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CaseRequest(Base):
    """A problem an enterprise raised (问题诉求), climbing member → level 2 → level 1."""

    __tablename__ = "case_requests"
    __table_args__ = (
        Index("ix_case_requests_open_deadline", "status", "deadline_at"),
        Index("ix_case_requests_enterprise", "enterprise_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    text: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    level: Mapped[str] = mapped_column(String(16))
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime())
    raised_by: Mapped[str] = mapped_column(String(255))
    raiser_name: Mapped[str] = mapped_column(String(100))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime())
    taken_by: Mapped[str | None] = mapped_column(String(100))
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_by: Mapped[str | None] = mapped_column(String(100))
    resolution: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    escalations: Mapped[int] = mapped_column(Integer, default=0)

    @property
    def state(self) -> str:
        return f"{self.status}/{self.level}"


class Accident(Base):
    """A production-safety accident report (生产安全事故快报) and its follow-ups (续报)."""

    __tablename__ = "accidents"
    __table_args__ = (Index("ix_accidents_enterprise", "enterprise_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    status: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    place: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(100))
    dead: Mapped[int] = mapped_column(Integer, default=0)
    injured: Mapped[int] = mapped_column(Integer, default=0)
    missing: Mapped[int] = mapped_column(Integer, default=0)
    vehicles: Mapped[str] = mapped_column(Text, default="")
    account: Mapped[str] = mapped_column(Text, default="")
    photos: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Voice notes and documents sent with the report (msgtype m.audio or m.file).
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    updates: Mapped[int] = mapped_column(Integer, default=0)
    reported_by: Mapped[str] = mapped_column(String(255))
    reporter_name: Mapped[str] = mapped_column(String(100))
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CaseEvent(Base):
    """One step in a case's life. Append-only: never updated, never deleted."""

    __tablename__ = "case_events"
    __table_args__ = (Index("ix_case_events_code", "code", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(255))
    actor_name: Mapped[str] = mapped_column(String(100))
    room_id: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    note: Mapped[str] = mapped_column(Text, default="")


class AppendOnlyError(RuntimeError):
    pass


@event.listens_for(CaseEvent, "before_update")
@event.listens_for(CaseEvent, "before_delete")
def _refuse_change(_mapper: Any, _conn: Any, target: CaseEvent) -> None:
    raise AppendOnlyError(f"case event {target.id} of {target.code} is append-only")


class CasePost(Base):
    """A message the bot posted about a case; the first in each room is that room's thread root."""

    __tablename__ = "case_posts"
    __table_args__ = (Index("ix_case_posts_code_room", "code", "room_id"),)

    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(20))
    room_id: Mapped[str] = mapped_column(String(255))
    is_root: Mapped[bool] = mapped_column(Boolean, default=False)
    # Its Matrix event id is the outbox row's (OutboxMessage.event_id), once sent.


# --- codes -------------------------------------------------------------------------------------


async def next_code(session: AsyncSession, kind: str, year: int) -> str:
    """The next code of ``kind`` for ``year`` (H-2026-0001), in the caller's transaction."""
    return await codes.next_code(session, PREFIX[kind], year)


# --- audit -------------------------------------------------------------------------------------


def record(
    session: AsyncSession,
    code: str,
    action: str,
    from_state: str | None,
    to_state: str,
    *,
    actor: str,
    actor_name: str,
    room_id: str | None,
    note: str = "",
    at: datetime | None = None,
) -> CaseEvent:
    row = CaseEvent(
        kind=kind_of(code),
        code=code,
        action=action,
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        actor_name=actor_name,
        room_id=room_id,
        at=at or datetime.now(UTC),
        note=note,
    )
    session.add(row)
    return row


async def history(session: AsyncSession, code: str) -> list[CaseEvent]:
    rows = await session.scalars(
        select(CaseEvent).where(CaseEvent.code == code).order_by(CaseEvent.id)
    )
    return list(rows)


# --- lookups -----------------------------------------------------------------------------------

CaseRow = Hazard | CaseRequest | Accident
MODEL: dict[str, type[Hazard] | type[CaseRequest] | type[Accident]] = {
    HAZARD: Hazard,
    REQUEST: CaseRequest,
    ACCIDENT: Accident,
}


async def get_case(session: AsyncSession, code: str) -> CaseRow | None:
    model = MODEL[kind_of(code)]
    return await session.scalar(select(model).where(model.code == code))


async def enterprise_of(session: AsyncSession, case: CaseRow) -> Enterprise:
    ent = await session.get(Enterprise, case.enterprise_id)
    assert ent is not None  # enterprises are deactivated, never deleted
    return ent


async def overdue_hazards(
    session: AsyncSession, now: datetime, enterprise_ids: set[int] | None
) -> list[Hazard]:
    q = select(Hazard).where(Hazard.status.in_(HAZARD_OPEN), Hazard.deadline_at <= now)
    if enterprise_ids is not None:
        q = q.where(Hazard.enterprise_id.in_(enterprise_ids or {-1}))
    return list(await session.scalars(q.order_by(Hazard.deadline_at, Hazard.id)))


async def overdue_requests(
    session: AsyncSession, now: datetime, enterprise_ids: set[int] | None
) -> list[CaseRequest]:
    q = select(CaseRequest).where(CaseRequest.status == R_OPEN, CaseRequest.deadline_at <= now)
    if enterprise_ids is not None:
        q = q.where(CaseRequest.enterprise_id.in_(enterprise_ids or {-1}))
    return list(await session.scalars(q.order_by(CaseRequest.deadline_at, CaseRequest.id)))


# --- posts and threads -------------------------------------------------------------------------


async def add_post(
    session: AsyncSession, msg: OutboxMessage, code: str, *, is_root: bool
) -> CasePost:
    """Remember a queued message as a post about the case (flushing it to learn its id)."""
    await session.flush()
    post = CasePost(outbox_id=msg.id, code=code, room_id=msg.room_id, is_root=is_root)
    session.add(post)
    return post


async def root_message(session: AsyncSession, code: str, room_id: str) -> OutboxMessage | None:
    """The queued message that is (or will be once sent) the case's thread root in a room."""
    return await session.scalar(
        select(OutboxMessage)
        .join(CasePost, CasePost.outbox_id == OutboxMessage.id)
        .where(CasePost.code == code, CasePost.room_id == room_id, CasePost.is_root.is_(True))
    )


async def home_room(session: AsyncSession, code: str) -> str | None:
    """The room where a case was first posted (its enterprise room when there is one)."""
    return await session.scalar(
        select(CasePost.room_id)
        .where(CasePost.code == code, CasePost.is_root.is_(True))
        .order_by(CasePost.outbox_id)
        .limit(1)
    )


async def code_for_event(session: AsyncSession, event_ids: list[str]) -> str | None:
    """The case a Matrix event of the bot's belongs to (for replies and thread messages)."""
    ids = [e for e in event_ids if e]
    if not ids:
        return None
    return await session.scalar(
        select(CasePost.code)
        .join(OutboxMessage, OutboxMessage.id == CasePost.outbox_id)
        .where(OutboxMessage.event_id.in_(ids))
        .limit(1)
    )

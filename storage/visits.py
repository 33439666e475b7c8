"""Visits, safety meetings and trainings: the records the plan's duties leave behind.

A visit (走访) is one level-2 member on site at one enterprise on one day; a meeting
(安全生产工作会议) is held by a level-2 chief for a level-2 grid; a training (培训) is
recorded by the level-1 office. Each gets a human id per year (V-2026-0001, M-2026-0001,
T-2026-0001) that other features (hazards, escalations) can quote.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column, relationship

from storage import codes
from storage.models import (
    Assignment,
    Base,
    Enterprise,
    Grid,
    InboxEvent,
    Person,
    Role,
    RoomInfo,
    UserPreference,
    UTCDateTime,
)

VISIT_PREFIX = "V"
MEETING_PREFIX = "M"
TRAINING_PREFIX = "T"

# Where a visit was made, measured against the enterprise's coordinates (see ``siting``).
ON_SITE = "onsite"  # 现场: shared within the radius
AWAY = "away"  # 异地: shared farther than the radius
NOT_LOCATED = "unlocated"  # 未定位: nothing shared, or the enterprise has no coordinates
# The default of config ``visits.onsite_radius_m``.
ONSITE_RADIUS_M = 500.0


@dataclass(frozen=True)
class Siting:
    """How a visit is marked: ``kind`` (ON_SITE, AWAY, NOT_LOCATED) and the distance to the
    enterprise when known; ``shared`` tells a NOT_LOCATED visit whose point was shared (the
    enterprise has no coordinates) from one where none was."""

    kind: str
    distance_m: float | None = None
    shared: bool = False
    accuracy_m: float | None = None


def siting(
    distance_m: float | None,
    radius_m: float,
    *,
    shared: bool | None = None,
    accuracy_m: float | None = None,
) -> Siting:
    """The one rule: on site when the shared point lies within ``radius_m`` of the enterprise
    (the boundary counts as on site), away beyond it, not located when there is no distance."""
    if distance_m is None:
        return Siting(NOT_LOCATED, None, bool(shared), accuracy_m)
    kind = ON_SITE if distance_m <= radius_m else AWAY
    return Siting(kind, distance_m, True, accuracy_m)


class Visit(Base):
    """One on-site visit by a level-2 member to an enterprise they serve."""

    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_person_date", "person_id", "visit_date"),
        Index("ix_visits_enterprise_date", "enterprise_id", "visit_date"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    visit_date: Mapped[date] = mapped_column(Date)
    checked: Mapped[str] = mapped_column(Text)
    # None: no problems found.
    problems: Mapped[str | None] = mapped_column(Text)
    # mxc:// urls of the photos, in the order sent.
    photos: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Voice notes and documents, in the order sent: {msgtype (m.audio or m.file), url (mxc://),
    # name, info {mimetype, size, duration}} (bot.evidence).
    files: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # Where it was recorded, and the member's confirming message there.
    room_id: Mapped[str] = mapped_column(String(255))
    event_id: Mapped[str | None] = mapped_column(String(255))
    # The enterprise room the record was posted to, and that outbox row (its event id once sent).
    posted_room_id: Mapped[str | None] = mapped_column(String(255))
    posted_outbox_id: Mapped[int | None] = mapped_column(Integer)
    # The location the member shared (m.location; WGS-84 degrees, the phone's accuracy in
    # metres) and its distance to the enterprise's coordinates: None when nothing was shared,
    # or (distance only) when the enterprise had no coordinates.
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    distance_m: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    person: Mapped[Person] = relationship()
    enterprise: Mapped[Enterprise] = relationship()

    def siting(self, radius_m: float) -> Siting:
        return siting(
            self.distance_m,
            radius_m,
            shared=self.latitude is not None,
            accuracy_m=self.accuracy_m,
        )


class Meeting(Base):
    """A level-2 grid's quarterly safety meeting, recorded by its chief."""

    __tablename__ = "meetings"
    __table_args__ = (Index("ix_meetings_grid_date", "grid_id", "meeting_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    meeting_date: Mapped[date] = mapped_column(Date)
    attendees: Mapped[str] = mapped_column(Text)
    topics: Mapped[str] = mapped_column(Text)
    decisions: Mapped[str] = mapped_column(Text)
    # {"url": mxc, "name": file name, "mimetype": ...} of the minutes file, if one was sent.
    minutes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    room_id: Mapped[str] = mapped_column(String(255))
    event_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    grid: Mapped[Grid] = relationship()
    person: Mapped[Person] = relationship()


class Training(Base):
    """A training session recorded by the level-1 office (or an admin)."""

    __tablename__ = "trainings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    # The level-1 grid of the recorder; None when an admin without a grid role recorded it.
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    recorded_by: Mapped[str] = mapped_column(String(255))
    training_date: Mapped[date] = mapped_column(Date, index=True)
    topic: Mapped[str] = mapped_column(Text)
    attendees_text: Mapped[str] = mapped_column(Text)
    room_id: Mapped[str] = mapped_column(String(255))
    event_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())

    attendees: Mapped[list[TrainingAttendee]] = relationship(
        back_populates="training", order_by="TrainingAttendee.id"
    )


class TrainingAttendee(Base):
    """One name given as attending; person_id when it matched one roster person."""

    __tablename__ = "training_attendees"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    training_id: Mapped[int] = mapped_column(ForeignKey("trainings.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    person_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), index=True)

    training: Mapped[Training] = relationship(back_populates="attendees")


# --- ids -----------------------------------------------------------------------------------


async def next_code(session: AsyncSession, prefix: str, year: int) -> str:
    """Allocate the next id of ``prefix`` in ``year`` (e.g. V-2026-0007) in this transaction."""
    return await codes.next_code(session, prefix, year)


# --- roster lookups the visit flow needs ------------------------------------------------------


async def assignment_on(
    session: AsyncSession, person_id: int, enterprise_id: int, day: date
) -> Assignment | None:
    """The member's assignment to the enterprise that covers ``day``, if any."""
    return await session.scalar(
        select(Assignment)
        .where(
            Assignment.person_id == person_id,
            Assignment.enterprise_id == enterprise_id,
            Assignment.since <= day,
            or_(Assignment.until.is_(None), Assignment.until >= day),
        )
        .limit(1)
    )


async def current_since(session: AsyncSession, person_id: int, enterprise_id: int) -> date | None:
    """Since when the member has (currently) served the enterprise."""
    return await session.scalar(
        select(func.min(Assignment.since)).where(
            Assignment.person_id == person_id,
            Assignment.enterprise_id == enterprise_id,
            Assignment.until.is_(None),
        )
    )


async def direct_room_with(session: AsyncSession, user_id: str) -> str | None:
    """A direct chat (RoomInfo kind "direct") in which ``user_id`` has spoken to the bot.

    RoomInfo does not record who the other member of a direct room is; the inbox does, for
    anyone who ever sent something there (their join counts), so the latest such room is used.
    """
    return await session.scalar(
        select(RoomInfo.room_id)
        .join(InboxEvent, InboxEvent.room_id == RoomInfo.room_id)
        .where(
            RoomInfo.kind == "direct",
            RoomInfo.left.is_(False),
            InboxEvent.sender == user_id,
        )
        .order_by(InboxEvent.seq.desc())
        .limit(1)
    )


async def language_of(session: AsyncSession, user_id: str) -> str | None:
    pref = await session.get(UserPreference, user_id)
    return pref.language if pref else None


# --- records ---------------------------------------------------------------------------------


async def get_visit(session: AsyncSession, code: str) -> Visit | None:
    """A visit by its id (V-2026-0001), e.g. for /hazard V-2026-0001."""
    return await session.scalar(select(Visit).where(Visit.code == codes.typed(code).upper()))


async def meeting_grids_in(session: AsyncSession, first: date, last: date) -> set[int]:
    """Level-2 grids with a meeting recorded between ``first`` and ``last`` (inclusive)."""
    rows = await session.scalars(
        select(Meeting.grid_id)
        .where(Meeting.meeting_date >= first, Meeting.meeting_date <= last)
        .distinct()
    )
    return set(rows)


async def match_people(
    session: AsyncSession, names: list[str], scope_grid_ids: set[int] | None
) -> dict[str, int | None]:
    """Roster person id per name: one active person of that name, preferring the scope's grids.

    A name shared by several people inside the scope (or outside it, with none inside) stays
    unmatched rather than guessed.
    """
    found: dict[str, int | None] = dict.fromkeys(names)
    if not names:
        return found
    people = list(
        await session.scalars(select(Person).where(Person.name.in_(names), Person.active.is_(True)))
    )
    in_scope: set[int] = set()
    if scope_grid_ids:
        ids = [p.id for p in people]
        role_rows = await session.scalars(
            select(Role.person_id)
            .outerjoin(Enterprise, Enterprise.id == Role.enterprise_id)
            .where(
                Role.person_id.in_(ids),
                Role.until.is_(None),
                or_(Role.grid_id.in_(scope_grid_ids), Enterprise.grid_id.in_(scope_grid_ids)),
            )
        )
        in_scope = set(role_rows)
    for name in names:
        same = [p for p in people if p.name == name]
        scoped = [p for p in same if p.id in in_scope]
        pick = scoped if scoped else same
        found[name] = pick[0].id if len(pick) == 1 else None
    return found

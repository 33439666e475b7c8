"""Staff changes of an enterprise (人员变动) as stored: the current enterprise staff, the change
rows, and the roster writes of a confirmed change.

What a declaration may say and whether it goes ahead are the rules of handlers/staff/
declaration.py; this module reads and writes. The items of a change (``StaffChange.items``)
are {"action": LEAVE, "person_id", "name", "kinds"} and {"action": JOIN, "kind", "name",
"phone", "matrix_id"} (plus "person_id" once applied); roster imports read them too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Assignment, Enterprise, Person, Role, RoleKind, StaffChange

LEAVE = "leave"
JOIN = "join"
ENT_KINDS = (RoleKind.ENT_CHIEF, RoleKind.ENT_MEMBER)
PENDING = "pending"


@dataclass(frozen=True)
class Staffer:
    """One current role of a person at the enterprise (a person may hold both kinds)."""

    person_id: int
    name: str
    phone: str | None
    matrix_id: str | None
    kind: str


async def enterprise_staff(session: AsyncSession, enterprise_id: int) -> list[Staffer]:
    rows = await session.execute(
        select(Role, Person)
        .join(Person, Person.id == Role.person_id)
        .where(
            Role.enterprise_id == enterprise_id,
            Role.until.is_(None),
            Role.kind.in_(ENT_KINDS),
            Person.active.is_(True),
        )
        .order_by(Role.kind, Person.name)
    )
    return [Staffer(p.id, p.name, p.phone, p.matrix_id, r.kind) for r, p in rows.all()]


def add(
    session: AsyncSession,
    enterprise_id: int,
    items: list[dict[str, Any]],
    *,
    room_id: str,
    requested_by: str,
    event_id: str,
) -> StaffChange:
    """A new pending change (its id, and so its code, comes with the next flush)."""
    change = StaffChange(
        enterprise_id=enterprise_id,
        room_id=room_id,
        requested_by=requested_by,
        request_event_id=event_id,
        items=items,
        status=PENDING,
    )
    session.add(change)
    return change


async def get(session: AsyncSession, change_id: int) -> StaffChange | None:
    return await session.get(StaffChange, change_id)


def decide(change: StaffChange, status: str, by: str) -> None:
    change.status = status
    change.decided_by = by
    change.decided_at = datetime.now(UTC)


async def pending(
    session: AsyncSession, enterprise_ids: Iterable[int]
) -> list[tuple[StaffChange, Enterprise]]:
    """The pending changes of these enterprises, oldest first."""
    rows = await session.execute(
        select(StaffChange, Enterprise)
        .join(Enterprise, Enterprise.id == StaffChange.enterprise_id)
        .where(StaffChange.status == PENDING, StaffChange.enterprise_id.in_(sorted(enterprise_ids)))
        .order_by(StaffChange.id)
    )
    return [(c, e) for c, e in rows.all()]


async def apply(
    session: AsyncSession, enterprise_id: int, items: list[dict[str, Any]], today: date
) -> None:
    """Write checked items into the roster, dated ``today`` (roles end / begin). Each join
    item gets the "person_id" it was given, so roster imports can tell whether their file
    already has the change."""
    leavers: list[int] = []
    for item in items:
        if item["action"] != LEAVE:
            continue
        roles = await session.scalars(
            select(Role).where(
                Role.person_id == item["person_id"],
                Role.enterprise_id == enterprise_id,
                Role.until.is_(None),
                Role.kind.in_(ENT_KINDS),
            )
        )
        for role in roles:
            role.until = today
        leavers.append(item["person_id"])
    for item in items:
        if item["action"] == JOIN:
            person = await _person_for(session, item)
            person.active, person.deactivated_on = True, None
            await session.flush()
            item["person_id"] = person.id
            session.add(
                Role(
                    person_id=person.id, kind=item["kind"], enterprise_id=enterprise_id, since=today
                )
            )
    await session.flush()
    for person_id in leavers:
        await _deactivate_if_idle(session, person_id, today)


async def _person_for(session: AsyncSession, item: dict[str, Any]) -> Person:
    if item["matrix_id"]:
        person = await session.scalar(select(Person).where(Person.matrix_id == item["matrix_id"]))
        if person is not None:
            if item["phone"] and not person.phone:
                person.phone = item["phone"]
            return person
    if item["phone"]:
        same = list(
            await session.scalars(
                select(Person).where(Person.phone == item["phone"], Person.name == item["name"])
            )
        )
        if len(same) == 1 and (not item["matrix_id"] or same[0].matrix_id is None):
            if item["matrix_id"]:
                same[0].matrix_id = item["matrix_id"]
            return same[0]
    person = Person(
        name=item["name"], phone=item["phone"], matrix_id=item["matrix_id"], active=True
    )
    session.add(person)
    return person


async def _deactivate_if_idle(session: AsyncSession, person_id: int, today: date) -> None:
    """Someone with no current role or assignment left is out of the roster (kept, dated)."""
    role = await session.scalar(
        select(Role.id).where(Role.person_id == person_id, Role.until.is_(None)).limit(1)
    )
    served = await session.scalar(
        select(Assignment.id)
        .where(Assignment.person_id == person_id, Assignment.until.is_(None))
        .limit(1)
    )
    if role is None and served is None:
        person = await session.get(Person, person_id)
        if person is not None and person.active:
            person.active, person.deactivated_on = False, today

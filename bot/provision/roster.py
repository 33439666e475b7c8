"""The active roster as plain, immutable data: everything the room plan is computed from."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import AdminUnit, Assignment, Enterprise, Grid, Person, Role


@dataclass(frozen=True)
class UnitRow:
    id: int
    kind: str
    name: str
    parent_id: int | None


@dataclass(frozen=True)
class GridRow:
    id: int
    unit_id: int
    level: int
    domain: str
    name: str
    parent_id: int | None


@dataclass(frozen=True)
class EnterpriseRow:
    id: int
    unit_id: int
    grid_id: int
    name: str
    type: str


@dataclass(frozen=True)
class PersonRow:
    id: int
    name: str
    matrix_id: str | None
    phone: str | None


@dataclass(frozen=True)
class RoleRow:
    person_id: int
    kind: str
    grid_id: int | None
    enterprise_id: int | None


@dataclass(frozen=True)
class AssignmentRow:
    person_id: int
    enterprise_id: int


@dataclass
class Roster:
    """Active units, grids, enterprises and people; current roles and assignments only."""

    units: dict[int, UnitRow] = field(default_factory=dict)
    grids: dict[int, GridRow] = field(default_factory=dict)
    enterprises: dict[int, EnterpriseRow] = field(default_factory=dict)
    people: dict[int, PersonRow] = field(default_factory=dict)
    roles: list[RoleRow] = field(default_factory=list)
    assignments: list[AssignmentRow] = field(default_factory=list)


async def load_roster(session: AsyncSession) -> Roster:
    roster = Roster()
    for u in await session.scalars(select(AdminUnit).where(AdminUnit.active.is_(True))):
        roster.units[u.id] = UnitRow(u.id, u.kind, u.name, u.parent_id)
    for g in await session.scalars(select(Grid).where(Grid.active.is_(True))):
        if g.unit_id in roster.units:
            roster.grids[g.id] = GridRow(g.id, g.unit_id, g.level, g.domain, g.name, g.parent_id)
    for e in await session.scalars(select(Enterprise).where(Enterprise.active.is_(True))):
        if e.grid_id in roster.grids:
            roster.enterprises[e.id] = EnterpriseRow(e.id, e.unit_id, e.grid_id, e.name, e.type)
    for p in await session.scalars(select(Person).where(Person.active.is_(True))):
        roster.people[p.id] = PersonRow(p.id, p.name, p.matrix_id, p.phone)
    for r in await session.scalars(select(Role).where(Role.until.is_(None)).order_by(Role.id)):
        in_scope = r.grid_id in roster.grids if r.grid_id else r.enterprise_id in roster.enterprises
        if r.person_id in roster.people and in_scope:
            roster.roles.append(RoleRow(r.person_id, r.kind, r.grid_id, r.enterprise_id))
    for a in await session.scalars(
        select(Assignment).where(Assignment.until.is_(None)).order_by(Assignment.id)
    ):
        if a.person_id in roster.people and a.enterprise_id in roster.enterprises:
            roster.assignments.append(AssignmentRow(a.person_id, a.enterprise_id))
    return roster

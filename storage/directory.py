"""Read-side lookups of the roster: who a Matrix user is in the grid, right now."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from storage.models import (
    AdminUnit,
    Assignment,
    Enterprise,
    Grid,
    Person,
    Role,
    RoleKind,
    UserPreference,
)

# Role groups used by command access rules. "l1_member" is derived: every level-2 chief is a
# member of the level-1 grid (DOMAIN.md), and "admin" comes from the configuration.
ADMIN = "admin"
L1_MEMBER = "l1_member"
L1_STAFF = frozenset(
    {ADMIN, RoleKind.L1_CHIEF, RoleKind.L1_OFFICE_DIRECTOR, RoleKind.L1_OFFICE_MEMBER}
)
L2_STAFF = frozenset({RoleKind.L2_CHIEF, RoleKind.L2_OFFICE_MEMBER, RoleKind.L2_MEMBER})
ENTERPRISE_STAFF = frozenset({RoleKind.ENT_CHIEF, RoleKind.ENT_MEMBER})


@dataclass(frozen=True)
class RoleView:
    kind: str
    grid: Grid | None
    enterprise: Enterprise | None
    unit: AdminUnit | None
    since: date


@dataclass
class Identity:
    """A sender as the dispatcher sees them: roster person (if any), roles, admin flag."""

    user_id: str
    person: Person | None = None
    is_admin: bool = False
    roles: list[RoleView] = field(default_factory=list)
    served: list[Enterprise] = field(default_factory=list)
    language: str | None = None

    @property
    def in_roster(self) -> bool:
        return self.person is not None

    @property
    def known(self) -> bool:
        """In the roster or a configured admin: someone the bot works for."""
        return self.in_roster or self.is_admin

    @property
    def role_kinds(self) -> frozenset[str]:
        kinds = {r.kind for r in self.roles}
        if RoleKind.L2_CHIEF in kinds:
            kinds.add(L1_MEMBER)
        if self.is_admin:
            kinds.add(ADMIN)
        return frozenset(kinds)

    @property
    def display_name(self) -> str:
        return self.person.name if self.person else self.user_id


async def identify(session: AsyncSession, user_id: str, admins: frozenset[str]) -> Identity:
    """Load the current roles and served enterprises of ``user_id``."""
    ident = Identity(user_id=user_id, is_admin=user_id in admins)
    pref = await session.get(UserPreference, user_id)
    ident.language = pref.language if pref else None
    person = await session.scalar(
        select(Person).where(Person.matrix_id == user_id, Person.active.is_(True))
    )
    if person is None:
        return ident
    ident.person = person
    roles = await session.scalars(
        select(Role)
        .where(Role.person_id == person.id, Role.until.is_(None))
        # Joined loads: one round trip instead of one per relationship (this runs per command).
        .options(
            joinedload(Role.grid).joinedload(Grid.unit),
            joinedload(Role.grid).joinedload(Grid.parent),
            joinedload(Role.enterprise).joinedload(Enterprise.unit),
        )
        .order_by(Role.kind, Role.id)
    )
    for role in roles:
        unit = role.grid.unit if role.grid else role.enterprise.unit if role.enterprise else None
        ident.roles.append(RoleView(role.kind, role.grid, role.enterprise, unit, role.since))
    served = await session.scalars(
        select(Enterprise)
        .join(Assignment, Assignment.enterprise_id == Enterprise.id)
        .where(
            Assignment.person_id == person.id,
            Assignment.until.is_(None),
            Enterprise.active.is_(True),
        )
        .order_by(Enterprise.name)
    )
    ident.served = list(served)
    return ident


async def active_matrix_ids(session: AsyncSession) -> set[str]:
    """Matrix ids of everyone active in the roster (whose invites the bot accepts)."""
    rows = await session.scalars(
        select(Person.matrix_id).where(Person.active.is_(True), Person.matrix_id.is_not(None))
    )
    return {r for r in rows if r}


async def set_language(session: AsyncSession, user_id: str, language: str) -> None:
    pref = await session.get(UserPreference, user_id)
    if pref is None:
        session.add(UserPreference(user_id=user_id, language=language))
    else:
        pref.language = language

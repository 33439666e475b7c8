"""Who to tell and where: the current people around an enterprise, and the grid's rooms."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Assignment, Enterprise, Grid, Person, Role, RoleKind, RoomInfo


@dataclass(frozen=True)
class Contact:
    name: str
    user_id: str | None


def _contacts(people: list[Person]) -> list[Contact]:
    seen: set[int] = set()
    out: list[Contact] = []
    for p in people:
        if p.id not in seen:
            seen.add(p.id)
            out.append(Contact(p.name, p.matrix_id))
    return out


async def serving_members(session: AsyncSession, enterprise_id: int) -> list[Contact]:
    """The level-2 members currently assigned to the enterprise."""
    people = await session.scalars(
        select(Person)
        .join(Assignment, Assignment.person_id == Person.id)
        .where(
            Assignment.enterprise_id == enterprise_id,
            Assignment.until.is_(None),
            Person.active.is_(True),
        )
        .order_by(Person.id)
    )
    return _contacts(list(people))


async def role_holders(
    session: AsyncSession,
    kinds: set[str],
    *,
    grid_id: int | None = None,
    enterprise_id: int | None = None,
) -> list[Contact]:
    """Current holders of any of ``kinds`` in one grid or one enterprise."""
    q = (
        select(Person)
        .join(Role, Role.person_id == Person.id)
        .where(Role.kind.in_(kinds), Role.until.is_(None), Person.active.is_(True))
    )
    if grid_id is not None:
        q = q.where(Role.grid_id == grid_id)
    if enterprise_id is not None:
        q = q.where(Role.enterprise_id == enterprise_id)
    return _contacts(list(await session.scalars(q.order_by(Role.kind, Person.id))))


async def enterprise_staff(session: AsyncSession, enterprise_id: int) -> list[Contact]:
    return await role_holders(
        session, {RoleKind.ENT_CHIEF, RoleKind.ENT_MEMBER}, enterprise_id=enterprise_id
    )


async def l2_chiefs(session: AsyncSession, grid_id: int) -> list[Contact]:
    return await role_holders(session, {RoleKind.L2_CHIEF}, grid_id=grid_id)


async def l2_office(session: AsyncSession, grid_id: int) -> list[Contact]:
    return await role_holders(session, {RoleKind.L2_OFFICE_MEMBER}, grid_id=grid_id)


async def l1_chiefs(session: AsyncSession, l1_grid_id: int | None) -> list[Contact]:
    if l1_grid_id is None:
        return []
    return await role_holders(session, {RoleKind.L1_CHIEF}, grid_id=l1_grid_id)


async def l1_office(session: AsyncSession, l1_grid_id: int | None) -> list[Contact]:
    if l1_grid_id is None:
        return []
    return await role_holders(
        session,
        {RoleKind.L1_OFFICE_DIRECTOR, RoleKind.L1_OFFICE_MEMBER},
        grid_id=l1_grid_id,
    )


async def l1_grid_of(session: AsyncSession, enterprise: Enterprise) -> int | None:
    grid = await session.get(Grid, enterprise.grid_id)
    return grid.parent_id if grid else None


async def room_of(
    session: AsyncSession,
    kind: str,
    *,
    enterprise_id: int | None = None,
    grid_id: int | None = None,
) -> str | None:
    """The room (RoomInfo) of this kind for an enterprise or grid that the bot is still in."""
    q = select(RoomInfo.room_id).where(RoomInfo.kind == kind, RoomInfo.left.is_(False))
    if enterprise_id is not None:
        q = q.where(RoomInfo.enterprise_id == enterprise_id)
    if grid_id is not None:
        q = q.where(RoomInfo.grid_id == grid_id)
    return await session.scalar(q.order_by(RoomInfo.room_id).limit(1))

"""Roster and room look-ups a notice needs: rooms per enterprise and grid, and whom to mention."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.commands import ADMIN_ROOM, ENTERPRISE_ROOM, L2_ROOM
from storage.directory import ENTERPRISE_STAFF, Identity
from storage.models import Assignment, Grid, Person, Role, RoleKind, RoomInfo


@dataclass(frozen=True)
class Mention:
    user_id: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"user_id": self.user_id, "name": self.name}


def is_staff_of(ident: Identity, enterprise_id: int) -> bool:
    """The enterprise's own chief or member: the only people whose acknowledgement counts."""
    return any(
        r.kind in ENTERPRISE_STAFF and r.enterprise is not None and r.enterprise.id == enterprise_id
        for r in ident.roles
    )


def staff_enterprise_ids(ident: Identity) -> list[int]:
    return sorted(
        {r.enterprise.id for r in ident.roles if r.kind in ENTERPRISE_STAFF and r.enterprise}
    )


async def _rooms(
    session: AsyncSession, kind: str, column: str, ids: Iterable[int]
) -> dict[int, str]:
    ids = list(set(ids))
    if not ids:
        return {}
    col = getattr(RoomInfo, column)
    rows = await session.execute(
        select(col, RoomInfo.room_id)
        .where(RoomInfo.kind == kind, col.in_(ids), RoomInfo.left.is_(False))
        # The most recently joined room wins when an enterprise was given a new room.
        .order_by(RoomInfo.joined_ts.desc().nulls_last(), RoomInfo.room_id)
    )
    found: dict[int, str] = {}
    for key, room_id in rows:
        found.setdefault(key, room_id)
    return found


async def enterprise_rooms(session: AsyncSession, enterprise_ids: Iterable[int]) -> dict[int, str]:
    return await _rooms(session, ENTERPRISE_ROOM, "enterprise_id", enterprise_ids)


async def l2_rooms(session: AsyncSession, grid_ids: Iterable[int]) -> dict[int, str]:
    return await _rooms(session, L2_ROOM, "grid_id", grid_ids)


async def admin_rooms(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(RoomInfo.room_id).where(RoomInfo.kind == ADMIN_ROOM, RoomInfo.left.is_(False))
    )
    return sorted(rows)


async def grid_names(session: AsyncSession, grid_ids: Iterable[int]) -> dict[int, str]:
    ids = list(set(grid_ids))
    if not ids:
        return {}
    rows = await session.execute(select(Grid.id, Grid.name).where(Grid.id.in_(ids)))
    return {gid: name for gid, name in rows}


async def _people_by(
    session: AsyncSession, key_col: Any, person_col: Any, where: list[Any]
) -> dict[int, list[Mention]]:
    rows = await session.execute(
        select(key_col, Person.matrix_id, Person.name)
        .join(Person, Person.id == person_col)
        .where(*where, Person.active.is_(True), Person.matrix_id.is_not(None))
        .order_by(Person.name)
    )
    out: dict[int, list[Mention]] = defaultdict(list)
    for key, mxid, name in rows:
        m = Mention(mxid, name)
        if m not in out[key]:
            out[key].append(m)
    return out


async def enterprise_contacts(
    session: AsyncSession, enterprise_ids: Iterable[int]
) -> dict[int, list[Mention]]:
    """Whom to mention for an enterprise: its chief(s), else its members."""
    ids = list(set(enterprise_ids))
    if not ids:
        return {}
    chiefs = await _people_by(
        session,
        Role.enterprise_id,
        Role.person_id,
        [Role.enterprise_id.in_(ids), Role.kind == RoleKind.ENT_CHIEF, Role.until.is_(None)],
    )
    missing = [i for i in ids if not chiefs.get(i)]
    if missing:
        members = await _people_by(
            session,
            Role.enterprise_id,
            Role.person_id,
            [
                Role.enterprise_id.in_(missing),
                Role.kind == RoleKind.ENT_MEMBER,
                Role.until.is_(None),
            ],
        )
        chiefs.update(members)
    return chiefs


async def serving_members(
    session: AsyncSession, enterprise_ids: Iterable[int]
) -> dict[int, list[Mention]]:
    """The level-2 members currently assigned to each enterprise."""
    ids = list(set(enterprise_ids))
    if not ids:
        return {}
    return await _people_by(
        session,
        Assignment.enterprise_id,
        Assignment.person_id,
        [Assignment.enterprise_id.in_(ids), Assignment.until.is_(None)],
    )


async def l2_chiefs(session: AsyncSession, grid_ids: Iterable[int]) -> dict[int, list[Mention]]:
    ids = list(set(grid_ids))
    if not ids:
        return {}
    return await _people_by(
        session,
        Role.grid_id,
        Role.person_id,
        [Role.grid_id.in_(ids), Role.kind == RoleKind.L2_CHIEF, Role.until.is_(None)],
    )

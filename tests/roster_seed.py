"""A tiny grid written straight into the database, for tests that are not about roster import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.models import (
    AdminUnit,
    Assignment,
    Enterprise,
    EnterpriseType,
    Grid,
    Person,
    Role,
    RoleKind,
    RoomInfo,
    UnitKind,
)

SINCE = date(2026, 1, 1)


@dataclass
class SeedPeople:
    l1_chief: str
    l2_chief: str
    member: str
    ent_chief: str


async def seed_small_grid(db: Database, people: SeedPeople) -> None:
    """芦溪县: one level-1 grid, the 道路货运 level-2 grid, two freight enterprises."""
    async with db.transaction() as s:
        county = AdminUnit(kind=UnitKind.COUNTY, name="芦溪县", active=True)
        s.add(county)
        await s.flush()
        l1 = Grid(unit_id=county.id, level=1, domain="", name="芦溪县一级网格", active=True)
        s.add(l1)
        await s.flush()
        l2 = Grid(
            unit_id=county.id,
            level=2,
            domain="道路货运",
            name="芦溪县二级网格·道路货运",
            parent_id=l1.id,
            active=True,
        )
        s.add(l2)
        await s.flush()
        ganxi = Enterprise(
            unit_id=county.id,
            grid_id=l2.id,
            name="赣西物流有限公司",
            type=EnterpriseType.FREIGHT,
            active=True,
        )
        luxi = Enterprise(
            unit_id=county.id,
            grid_id=l2.id,
            name="芦溪通达货运公司",
            type=EnterpriseType.FREIGHT,
            active=True,
        )
        s.add_all([ganxi, luxi])
        persons = {
            "l1_chief": Person(name="王建国", phone="13800000001", matrix_id=people.l1_chief),
            "l2_chief": Person(name="李卫东", phone="13800000002", matrix_id=people.l2_chief),
            "member": Person(name="张敏", phone="13800000003", matrix_id=people.member),
            "ent_chief": Person(name="刘强", phone="13800000004", matrix_id=people.ent_chief),
        }
        for p in persons.values():
            p.active = True
        s.add_all(persons.values())
        await s.flush()
        s.add_all(
            [
                Role(
                    person_id=persons["l1_chief"].id,
                    kind=RoleKind.L1_CHIEF,
                    grid_id=l1.id,
                    since=SINCE,
                ),
                Role(
                    person_id=persons["l2_chief"].id,
                    kind=RoleKind.L2_CHIEF,
                    grid_id=l2.id,
                    since=SINCE,
                ),
                Role(
                    person_id=persons["member"].id,
                    kind=RoleKind.L2_MEMBER,
                    grid_id=l2.id,
                    since=SINCE,
                ),
                Role(
                    person_id=persons["ent_chief"].id,
                    kind=RoleKind.ENT_CHIEF,
                    enterprise_id=ganxi.id,
                    since=SINCE,
                ),
                Assignment(person_id=persons["member"].id, enterprise_id=ganxi.id, since=SINCE),
                Assignment(person_id=persons["member"].id, enterprise_id=luxi.id, since=SINCE),
            ]
        )


async def set_room(
    db: Database,
    room_id: str,
    kind: str,
    *,
    enterprise_id: int | None = None,
    grid_id: int | None = None,
) -> None:
    """Say what a room is for, as provisioning would (the bot may or may not be in it yet)."""
    for attempt in range(3):
        try:
            async with db.transaction() as s:
                info = await s.get(RoomInfo, room_id)
                if info is None:
                    info = RoomInfo(room_id=room_id, left=False)
                    s.add(info)
                info.kind = kind
                info.enterprise_id = enterprise_id
                info.grid_id = grid_id
            return
        except IntegrityError:
            # The running bot recorded its join in the same moment: update its row instead.
            if attempt == 2:
                raise

"""A county grid for the hazard, request and accident tests, written straight into the database.

芦溪县: the level-1 grid (chief 王建国, office director 周芳); the 道路货运 level-2 grid (chief
李卫东, office member 孙丽, member 张敏 serving 赣西物流, member 赵磊 serving 芦溪通达); the
enterprises' chiefs 刘强 (赣西物流) and 陈亮 (芦溪通达), and 何军, a member of 赣西物流.
Rooms are added with :func:`add_room` (real rooms in end-to-end tests, fake ids in unit tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select

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
    UnitKind,
)

SINCE = date(2026, 1, 1)
GANXI = "赣西物流有限公司"
TONGDA = "芦溪通达货运公司"

# key → (name, role kind, "l1" / "l2" or an enterprise name)
PEOPLE = {
    "l1chief": ("王建国", RoleKind.L1_CHIEF, "l1"),
    "l1office": ("周芳", RoleKind.L1_OFFICE_DIRECTOR, "l1"),
    "l2chief": ("李卫东", RoleKind.L2_CHIEF, "l2"),
    "l2office": ("孙丽", RoleKind.L2_OFFICE_MEMBER, "l2"),
    "member": ("张敏", RoleKind.L2_MEMBER, "l2"),
    "member_b": ("赵磊", RoleKind.L2_MEMBER, "l2"),
    "entchief": ("刘强", RoleKind.ENT_CHIEF, GANXI),
    "entmember": ("何军", RoleKind.ENT_MEMBER, GANXI),
    "entchief_b": ("陈亮", RoleKind.ENT_CHIEF, TONGDA),
}
SERVES = {"member": GANXI, "member_b": TONGDA}


@dataclass
class CaseGrid:
    grids: dict[str, int] = field(default_factory=dict)
    enterprises: dict[str, int] = field(default_factory=dict)
    mxids: dict[str, str] = field(default_factory=dict)

    @property
    def ganxi(self) -> int:
        return self.enterprises[GANXI]

    @property
    def tongda(self) -> int:
        return self.enterprises[TONGDA]


def fake_mxids() -> dict[str, str]:
    return {k: f"@{k}:localhost" for k in PEOPLE}


async def seed_case_grid(db: Database, mxids: dict[str, str]) -> CaseGrid:
    grid = CaseGrid(mxids=dict(mxids))
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
        grid.grids = {"l1": l1.id, "l2": l2.id}
        for name in (GANXI, TONGDA):
            ent = Enterprise(
                unit_id=county.id,
                grid_id=l2.id,
                name=name,
                type=EnterpriseType.FREIGHT,
                active=True,
            )
            s.add(ent)
            await s.flush()
            grid.enterprises[name] = ent.id
        for i, (key, (name, kind, where)) in enumerate(PEOPLE.items()):
            person = Person(name=name, phone=f"1380000{i:04d}", matrix_id=mxids[key], active=True)
            s.add(person)
            await s.flush()
            role = Role(person_id=person.id, kind=kind, since=SINCE)
            if where in grid.grids:
                role.grid_id = grid.grids[where]
            else:
                role.enterprise_id = grid.enterprises[where]
            s.add(role)
            if key in SERVES:
                s.add(
                    Assignment(
                        person_id=person.id,
                        enterprise_id=grid.enterprises[SERVES[key]],
                        since=SINCE,
                    )
                )
    return grid


async def make_chief_office_director(db: Database, grid: CaseGrid) -> None:
    """The level-2 chief 李卫东 becomes the level-1 office director as well (周芳 stays in the
    office as a member): one person in two rooms' alerts, rung once per event."""
    async with db.transaction() as s:
        people = {p.matrix_id: p for p in await s.scalars(select(Person))}
        chief, director = people[grid.mxids["l2chief"]], people[grid.mxids["l1office"]]
        role = await s.scalar(select(Role).where(Role.person_id == director.id))
        assert role is not None
        role.kind = RoleKind.L1_OFFICE_MEMBER
        s.add(
            Role(
                person_id=chief.id,
                kind=RoleKind.L1_OFFICE_DIRECTOR,
                grid_id=grid.grids["l1"],
                since=SINCE,
            )
        )

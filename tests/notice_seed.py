"""A grid for notice tests: two counties, three level-2 grids, five enterprises, their people.

芦溪县: level-1 grid; 道路货运 grid with 赣西物流 (A), 芦溪通达货运 (B), 萍乡顺达运输 (C);
道路客运 grid with 芦溪汽车站 (D). 湘东区: level-1 grid and a 港航 grid with 湘东港务 (E).
Member ``member_f`` serves A and B, ``member_f2`` serves C, ``member_p`` serves D.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

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

# Roster people (key → display name); each test maps keys to Matrix ids.
PEOPLE = {
    "l1_chief": "王建国",
    "l1_office": "周丽",
    "l2_chief_f": "李卫东",
    "member_f": "张敏",
    "member_f2": "陈刚",
    "l2_chief_p": "赵磊",
    "member_p": "孙芳",
    "chief_a": "刘强",
    "member_a": "何静",
    "chief_b": "吴勇",
    "chief_c": "郑华",
    "chief_d": "钱进",
    "chief_e": "冯涛",
}
ENTERPRISES = {
    "A": ("赣西物流有限公司", EnterpriseType.FREIGHT, "freight"),
    "B": ("芦溪通达货运公司", EnterpriseType.FREIGHT, "freight"),
    "C": ("萍乡顺达运输公司", EnterpriseType.FREIGHT, "freight"),
    "D": ("芦溪汽车站", EnterpriseType.PASSENGER, "passenger"),
    "E": ("湘东港务公司", EnterpriseType.PORT, "port"),
}


@dataclass
class NoticeGrid:
    enterprises: dict[str, int] = field(default_factory=dict)
    grids: dict[str, int] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)


async def seed_notice_grid(db: Database, mxids: dict[str, str]) -> NoticeGrid:
    """Write the grid; ``mxids`` maps keys of PEOPLE to Matrix ids (missing keys: no account)."""
    out = NoticeGrid()
    async with db.transaction() as s:
        luxi = AdminUnit(kind=UnitKind.COUNTY, name="芦溪县", active=True)
        xiangdong = AdminUnit(kind=UnitKind.COUNTY, name="湘东区", active=True)
        s.add_all([luxi, xiangdong])
        await s.flush()
        l1 = Grid(unit_id=luxi.id, level=1, domain="", name="芦溪县一级网格", active=True)
        xd_l1 = Grid(unit_id=xiangdong.id, level=1, domain="", name="湘东区一级网格", active=True)
        s.add_all([l1, xd_l1])
        await s.flush()
        grids = {
            "freight": Grid(
                unit_id=luxi.id,
                level=2,
                domain="道路货运",
                name="芦溪县二级网格·道路货运",
                parent_id=l1.id,
                active=True,
            ),
            "passenger": Grid(
                unit_id=luxi.id,
                level=2,
                domain="道路客运",
                name="芦溪县二级网格·道路客运",
                parent_id=l1.id,
                active=True,
            ),
            "port": Grid(
                unit_id=xiangdong.id,
                level=2,
                domain="港航",
                name="湘东区二级网格·港航",
                parent_id=xd_l1.id,
                active=True,
            ),
        }
        s.add_all(grids.values())
        await s.flush()
        out.grids = {"l1": l1.id, "xd_l1": xd_l1.id, **{k: g.id for k, g in grids.items()}}
        ents = {}
        for key, (name, etype, grid) in ENTERPRISES.items():
            unit = xiangdong if grid == "port" else luxi
            ents[key] = Enterprise(
                unit_id=unit.id, grid_id=grids[grid].id, name=name, type=etype, active=True
            )
        s.add_all(ents.values())
        await s.flush()
        out.enterprises = {k: e.id for k, e in ents.items()}
        out.names = {k: e.name for k, e in ents.items()}
        people = {
            k: Person(name=n, phone=f"1380000{i:04d}", matrix_id=mxids.get(k), active=True)
            for i, (k, n) in enumerate(PEOPLE.items())
        }
        s.add_all(people.values())
        await s.flush()

        def role(key: str, kind: RoleKind, *, grid: int | None = None, ent: str = "") -> Role:
            return Role(
                person_id=people[key].id,
                kind=kind,
                grid_id=grid,
                enterprise_id=ents[ent].id if ent else None,
                since=SINCE,
            )

        def serve(key: str, ent: str) -> Assignment:
            return Assignment(person_id=people[key].id, enterprise_id=ents[ent].id, since=SINCE)

        s.add_all(
            [
                role("l1_chief", RoleKind.L1_CHIEF, grid=l1.id),
                role("l1_office", RoleKind.L1_OFFICE_MEMBER, grid=l1.id),
                role("l2_chief_f", RoleKind.L2_CHIEF, grid=grids["freight"].id),
                role("member_f", RoleKind.L2_MEMBER, grid=grids["freight"].id),
                role("member_f2", RoleKind.L2_MEMBER, grid=grids["freight"].id),
                role("l2_chief_p", RoleKind.L2_CHIEF, grid=grids["passenger"].id),
                role("member_p", RoleKind.L2_MEMBER, grid=grids["passenger"].id),
                role("chief_a", RoleKind.ENT_CHIEF, ent="A"),
                role("member_a", RoleKind.ENT_MEMBER, ent="A"),
                role("chief_b", RoleKind.ENT_CHIEF, ent="B"),
                role("chief_c", RoleKind.ENT_CHIEF, ent="C"),
                role("chief_d", RoleKind.ENT_CHIEF, ent="D"),
                role("chief_e", RoleKind.ENT_CHIEF, ent="E"),
                serve("member_f", "A"),
                serve("member_f", "B"),
                serve("member_f2", "C"),
                serve("member_p", "D"),
            ]
        )
    return out

"""A county grid for the visit, meeting and training tests, written straight into the database.

芦溪县: the level-1 grid with its chief and office director; two level-2 grids (道路货运 with
chief 李卫东 and member 张敏 serving three enterprises, one only since 2026-11-10; 道路客运 with
chief 陈红 and member 赵磊 serving the bus station); an enterprise chief.
Room rows are added by tests.
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
LATE_SINCE = date(2026, 11, 10)

# key → (name, role kind, grid key or enterprise name)
PEOPLE = {
    "l1chief": ("王建国", RoleKind.L1_CHIEF, "l1"),
    "office": ("周芳", RoleKind.L1_OFFICE_DIRECTOR, "l1"),
    "l2chief": ("李卫东", RoleKind.L2_CHIEF, "freight"),
    "l2chief_p": ("陈红", RoleKind.L2_CHIEF, "passenger"),
    "member": ("张敏", RoleKind.L2_MEMBER, "freight"),
    "member_p": ("赵磊", RoleKind.L2_MEMBER, "passenger"),
    "entchief": ("刘强", RoleKind.ENT_CHIEF, "赣西物流有限公司"),
}
GANXI = "赣西物流有限公司"
TONGDA = "芦溪通达货运公司"
HAZMAT = "赣西危险品运输公司"
STATION = "芦溪汽车站"


@dataclass
class VisitGrid:
    county: int = 0
    grids: dict[str, int] = field(default_factory=dict)
    enterprises: dict[str, int] = field(default_factory=dict)
    people: dict[str, int] = field(default_factory=dict)
    mxids: dict[str, str] = field(default_factory=dict)


def fake_mxids() -> dict[str, str]:
    return {k: f"@{k}:localhost" for k in PEOPLE}


async def seed_visit_grid(db: Database, mxids: dict[str, str]) -> VisitGrid:
    out = VisitGrid(mxids=dict(mxids))
    async with db.transaction() as s:
        county = AdminUnit(kind=UnitKind.COUNTY, name="芦溪县", active=True)
        s.add(county)
        await s.flush()
        out.county = county.id
        l1 = Grid(unit_id=county.id, level=1, domain="", name="芦溪县一级网格", active=True)
        s.add(l1)
        await s.flush()
        grids = {"l1": l1}
        for key, domain in (("freight", "道路货运"), ("passenger", "道路客运")):
            g = Grid(
                unit_id=county.id,
                level=2,
                domain=domain,
                name=f"芦溪县二级网格·{domain}",
                parent_id=l1.id,
                active=True,
            )
            s.add(g)
            grids[key] = g
        await s.flush()
        ents = {
            GANXI: Enterprise(grid_id=grids["freight"].id, type=EnterpriseType.FREIGHT),
            TONGDA: Enterprise(grid_id=grids["freight"].id, type=EnterpriseType.FREIGHT),
            HAZMAT: Enterprise(grid_id=grids["freight"].id, type=EnterpriseType.FREIGHT),
            STATION: Enterprise(grid_id=grids["passenger"].id, type=EnterpriseType.PASSENGER),
        }
        for name, e in ents.items():
            e.name, e.unit_id, e.active = name, county.id, True
        s.add_all(ents.values())
        persons = {
            k: Person(name=name, phone=f"1390000000{i}", matrix_id=mxids.get(k), active=True)
            for i, (k, (name, _kind, _where)) in enumerate(PEOPLE.items())
        }
        s.add_all(persons.values())
        await s.flush()
        for k, (_name, kind, where) in PEOPLE.items():
            if where in grids:
                s.add(
                    Role(person_id=persons[k].id, kind=kind, grid_id=grids[where].id, since=SINCE)
                )
            else:
                s.add(
                    Role(
                        person_id=persons[k].id,
                        kind=kind,
                        enterprise_id=ents[where].id,
                        since=SINCE,
                    )
                )
        for k, ent, since in (
            ("member", GANXI, SINCE),
            ("member", TONGDA, SINCE),
            ("member", HAZMAT, LATE_SINCE),
            ("member_p", STATION, SINCE),
        ):
            s.add(Assignment(person_id=persons[k].id, enterprise_id=ents[ent].id, since=since))
        out.grids = {k: g.id for k, g in grids.items()}
        out.enterprises = {k: e.id for k, e in ents.items()}
        out.people = {k: p.id for k, p in persons.items()}
    return out

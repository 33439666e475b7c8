"""Coverage check (摸清底数，不留盲区): every enterprise and grid has the people it needs.

Only current rows count: active units, grids, enterprises and people, and roles or
assignments with no ``until``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Select, func, select

from storage.db import Database
from storage.models import (
    AdminUnit,
    Assignment,
    Enterprise,
    Grid,
    Person,
    Role,
    RoleKind,
    UnitKind,
)


class GapKind(StrEnum):
    GRID_NO_CHIEF = "grid_no_chief"
    ENTERPRISE_NO_CHIEF = "enterprise_no_chief"
    ENTERPRISE_NO_L2_CHIEF = "enterprise_no_l2_chief"
    ENTERPRISE_NO_MEMBER = "enterprise_no_member"
    MEMBER_NO_ENTERPRISE = "member_no_enterprise"


GAP_LABELS: dict[GapKind, str] = {
    GapKind.GRID_NO_CHIEF: "网格没有网格长 / grid without chief",
    GapKind.ENTERPRISE_NO_CHIEF: "企业没有负责人 / enterprise without chief",
    GapKind.ENTERPRISE_NO_L2_CHIEF: "企业没有二级网格长 / enterprise without level-2 chief",
    GapKind.ENTERPRISE_NO_MEMBER: "企业没有二级网格员 / enterprise without level-2 member",
    GapKind.MEMBER_NO_ENTERPRISE: "二级网格员没有联系企业 / level-2 member serving no enterprise",
}
_GAP_ORDER = {k: i for i, k in enumerate(GapKind)}


@dataclass(frozen=True)
class Gap:
    kind: GapKind
    unit: str  # the county or special body
    subject: str  # the grid, enterprise or person concerned
    description: str  # one line in Chinese with English

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class CoverageSummary:
    # Every active unit: province, city, county and province-level body, as an import counts
    # (and adds) them; units_by_kind splits them by UnitKind value.
    units: int
    level1_grids: int
    level2_grids: int
    enterprises: int
    level2_members: int
    # Active enterprises with coordinates (经度/纬度): only their visits can be told on site.
    located: int = 0
    units_by_kind: dict[str, int] = field(default_factory=dict)


@dataclass
class _State:
    units: dict[int, str]
    grids: dict[int, Grid]
    enterprises: list[Enterprise]
    # (role kind, grid or enterprise id) -> holders, for current roles of active people.
    holders: dict[tuple[str, int], set[int]]
    member_roles: list[tuple[int, int]]  # (person id, grid id) of current L2_MEMBER roles
    served: dict[int, set[int]]  # enterprise id -> active people assigned now
    names: dict[int, str]


async def _load(db: Database) -> _State:
    async with db.transaction() as s:
        units = {u.id: u.name for u in (await s.scalars(select(AdminUnit))).all()}
        grids = {g.id: g for g in (await s.scalars(select(Grid).where(Grid.active))).all()}
        ents = list((await s.scalars(select(Enterprise).where(Enterprise.active))).all())
        roles = (
            await s.execute(
                select(Role.kind, Role.grid_id, Role.enterprise_id, Role.person_id)
                .join(Person, Person.id == Role.person_id)
                .where(Role.until.is_(None), Person.active)
            )
        ).all()
        assigned = (
            await s.execute(
                select(Assignment.enterprise_id, Assignment.person_id)
                .join(Person, Person.id == Assignment.person_id)
                .where(Assignment.until.is_(None), Person.active)
            )
        ).all()
        names: dict[int, str] = {
            pid: name
            for pid, name in (await s.execute(select(Person.id, Person.name).where(Person.active)))
        }
    holders: dict[tuple[str, int], set[int]] = defaultdict(set)
    member_roles: list[tuple[int, int]] = []
    for kind, grid_id, ent_id, person_id in roles:
        target = grid_id if grid_id is not None else ent_id
        if target is not None:
            holders[(kind, target)].add(person_id)
        if kind == RoleKind.L2_MEMBER and grid_id in grids:
            member_roles.append((person_id, grid_id))
    served: dict[int, set[int]] = defaultdict(set)
    for ent_id, person_id in assigned:
        served[ent_id].add(person_id)
    return _State(units, grids, ents, holders, member_roles, served, names)


async def check_coverage(db: Database) -> list[Gap]:
    """Every gap in the current roster, ordered by unit and kind."""
    st = await _load(db)
    gaps: list[Gap] = []
    for grid in st.grids.values():
        chief = RoleKind.L1_CHIEF if grid.level == 1 else RoleKind.L2_CHIEF
        if not st.holders.get((chief, grid.id)):
            gaps.append(
                Gap(
                    GapKind.GRID_NO_CHIEF,
                    st.units[grid.unit_id],
                    grid.name,
                    f"{grid.name} 没有网格长 / grid has no chief",
                )
            )
    for ent in st.enterprises:
        gaps.extend(_enterprise_gaps(ent, st))
    gaps.extend(_idle_members(st))
    gaps.sort(key=lambda g: (g.unit, _GAP_ORDER[g.kind], g.subject))
    return gaps


def _enterprise_gaps(ent: Enterprise, st: _State) -> list[Gap]:
    unit = st.units[ent.unit_id]
    label = f"{unit}/{ent.name}"
    gaps: list[Gap] = []
    if not st.holders.get((RoleKind.ENT_CHIEF, ent.id)):
        gaps.append(
            Gap(
                GapKind.ENTERPRISE_NO_CHIEF,
                unit,
                label,
                f"{label} 没有企业负责人（三级网格长） / enterprise has no chief",
            )
        )
    grid = st.grids.get(ent.grid_id)
    if grid is None:
        why = "所在二级网格已停用 / its level-2 grid is inactive"
    elif not st.holders.get((RoleKind.L2_CHIEF, grid.id)):
        why = f"{grid.name} 没有网格长 / its level-2 grid has no chief"
    else:
        why = ""
    if why:
        gaps.append(
            Gap(
                GapKind.ENTERPRISE_NO_L2_CHIEF,
                unit,
                label,
                f"{label} 没有二级网格长：{why}",
            )
        )
    if not st.served.get(ent.id):
        gaps.append(
            Gap(
                GapKind.ENTERPRISE_NO_MEMBER,
                unit,
                label,
                f"{label} 没有二级网格员联系 / no level-2 member serves this enterprise",
            )
        )
    return gaps


def _idle_members(st: _State) -> list[Gap]:
    # A member serves a grid's enterprises; one who serves none there is a gap in that grid.
    serving: set[tuple[int, int]] = set()
    for ent in st.enterprises:
        for person_id in st.served.get(ent.id, ()):
            serving.add((person_id, ent.grid_id))
    gaps: list[Gap] = []
    for person_id, grid_id in sorted(set(st.member_roles)):
        if (person_id, grid_id) in serving:
            continue
        grid = st.grids[grid_id]
        name = st.names.get(person_id, f"#{person_id}")
        gaps.append(
            Gap(
                GapKind.MEMBER_NO_ENTERPRISE,
                st.units[grid.unit_id],
                name,
                f"{grid.name} 的二级网格员{name}没有联系任何在册企业"
                " / level-2 member serves no active enterprise",
            )
        )
    return gaps


async def coverage_summary(db: Database) -> CoverageSummary:
    """Counts of what is active now, for the check's closing line."""
    async with db.transaction() as s:

        async def count(stmt: Select[Any]) -> int:
            return int((await s.scalar(stmt)) or 0)

        by_level = select(Grid.level, func.count()).where(Grid.active).group_by(Grid.level)
        level_counts: dict[int, int] = {lvl: n for lvl, n in await s.execute(by_level)}
        by_kind = (
            select(AdminUnit.kind, func.count()).where(AdminUnit.active).group_by(AdminUnit.kind)
        )
        kind_counts: dict[str, int] = {kind: n for kind, n in await s.execute(by_kind)}
        enterprises = await count(
            select(func.count()).select_from(Enterprise).where(Enterprise.active)
        )
        located = await count(
            select(func.count())
            .select_from(Enterprise)
            .where(Enterprise.active, Enterprise.latitude.is_not(None))
        )
        members = await count(
            select(func.count(func.distinct(Role.person_id)))
            .join(Person, Person.id == Role.person_id)
            .where(Role.until.is_(None), Role.kind == RoleKind.L2_MEMBER.value, Person.active)
        )
    return CoverageSummary(
        units=sum(kind_counts.values()),
        level1_grids=level_counts.get(1, 0),
        level2_grids=level_counts.get(2, 0),
        enterprises=enterprises,
        level2_members=members,
        located=located,
        units_by_kind={k.value: kind_counts[k.value] for k in UnitKind if k.value in kind_counts},
    )

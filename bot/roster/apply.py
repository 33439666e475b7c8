"""Diff a validated roster against the database and apply it in one transaction.

The file is the truth for the units (counties, special bodies) it names, and only for them:
what is missing there is deactivated with a date, never deleted; other units are untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Limits
from bot.roster.layout import (
    ASSIGNMENT_LABEL,
    level1_grid_name,
    level2_grid_name,
)
from bot.roster.parse import (
    PersonRef,
    RosterRow,
    RowError,
    near_key,
    normalized_name,
    read_roster,
)
from storage.db import Database
from storage.directory import role_label
from storage.models import (
    AdminUnit,
    Assignment,
    Enterprise,
    Grid,
    Person,
    Role,
    RoleKind,
    StaffChange,
    UnitKind,
)
from storage.staff_changes import LEAVE

# Keeps IN (...) lists well under every driver's bound-parameter limit.
CHUNK = 500
# Coordinates closer than this (degrees, about 1 cm) are the same point: floats read back
# from a database need not compare equal digit for digit.
SAME_POINT = 1e-7


class ChangeKind(StrEnum):
    UNIT = "unit"
    GRID = "grid"
    ENTERPRISE = "enterprise"
    PERSON = "person"
    ROLE = "role"
    ASSIGNMENT = "assignment"


KIND_LABELS: dict[str, str] = {
    ChangeKind.UNIT: "单位",
    ChangeKind.GRID: "网格",
    ChangeKind.ENTERPRISE: "企业",
    ChangeKind.PERSON: "人员",
    ChangeKind.ROLE: "职务",
    ChangeKind.ASSIGNMENT: "网格员分工",
}
_KIND_ORDER = {k: i for i, k in enumerate(ChangeKind)}
UNIT_KIND_LABELS = {
    UnitKind.PROVINCE: "省",
    UnitKind.CITY: "设区市",
    UnitKind.COUNTY: "县",
    UnitKind.SPECIAL: "省直",
}
REACTIVATED = "（重新启用 / reactivated）"


@dataclass(frozen=True)
class Change:
    """One line of the diff; ``field``/``old``/``new`` only for changes."""

    kind: str
    label: str
    field: str | None = None
    old: str | None = None
    new: str | None = None

    def __str__(self) -> str:
        if self.field is None:
            return self.label
        return f"{self.label}：{self.field} {self.old or '（空）'} → {self.new or '（空）'}"


@dataclass
class Changes:
    added: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    deactivated: list[Change] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.added) + len(self.changed) + len(self.deactivated)

    def sort(self) -> None:
        for group in (self.added, self.changed, self.deactivated):
            group.sort(key=lambda c: _KIND_ORDER[ChangeKind(c.kind)])


@dataclass
class ImportResult:
    """What an import found and did. ``applied`` means committed: no errors and not a dry run."""

    errors: list[RowError] = field(default_factory=list)
    changes: Changes = field(default_factory=Changes)
    applied: bool = False
    warnings: list[str] = field(default_factory=list)
    rows: int = 0
    # The units (counties / special bodies) the file covers: the scope of deactivation.
    units: list[str] = field(default_factory=list)


class _Abort(Exception):
    """Raised inside the transaction to roll it back (errors found, or a dry run)."""


async def import_roster(
    db: Database,
    path: Path,
    *,
    dry_run: bool = False,
    today: date | None = None,
    file_wins: bool = False,
    limits: Limits | None = None,
) -> ImportResult:
    """Validate ``path`` (within ``limits``, the config's ``limits:``), diff it against the
    active roster and apply it unless ``dry_run``.

    A staff change confirmed in chat (/staff) that the file does not have yet is an error, so an
    old file never silently undoes it; ``file_wins`` lets the file undo it (with a warning)."""
    parsed = read_roster(path, limits)
    result = ImportResult(errors=parsed.errors, warnings=parsed.warnings, rows=len(parsed.rows))
    if parsed.errors:
        return result
    plan = _Importer(parsed.rows, today or date.today(), file_wins=file_wins, dry_run=dry_run)
    result.units = [u.name for u in plan.units.values()]
    try:
        # A dry run does the same work and rolls back, so it reports exactly what would happen.
        async with db.transaction() as session:
            await plan.run(session)
            if plan.errors or dry_run:
                raise _Abort
    except _Abort:
        pass
    else:
        result.applied = True
    plan.changes.sort()
    result.warnings.extend(plan.warnings)
    result.errors = sorted(plan.errors, key=lambda e: e.row)
    result.changes = Changes() if plan.errors else plan.changes
    return result


# --- the roster as the file wants it -------------------------------------------------------


@dataclass
class _GridSpec:
    domain: str
    chief: PersonRef | None
    office: tuple[PersonRef, ...]
    members: dict[PersonRef, None] = field(default_factory=dict)  # ordered set


@dataclass
class _UnitSpec:
    kind: UnitKind
    name: str
    province: str | None
    city: str | None
    chief: PersonRef | None
    director: PersonRef | None
    office: tuple[PersonRef, ...]
    grids: dict[str, _GridSpec] = field(default_factory=dict)
    enterprises: dict[str, RosterRow] = field(default_factory=dict)


def _build_units(rows: Sequence[RosterRow]) -> dict[tuple[str, str], _UnitSpec]:
    units: dict[tuple[str, str], _UnitSpec] = {}
    for row in rows:
        unit = units.get(row.unit_key)
        if unit is None:
            unit = units[row.unit_key] = _UnitSpec(
                row.unit_kind,
                row.county,
                row.province,
                row.city,
                row.l1_chief,
                row.l1_office_director,
                row.l1_office_members,
            )
        grid = unit.grids.get(row.domain)
        if grid is None:
            grid = unit.grids[row.domain] = _GridSpec(
                row.domain, row.l2_chief, row.l2_office_members
            )
        grid.members.update(dict.fromkeys(row.l2_members))
        unit.enterprises[row.enterprise] = row
    return units


def _first_rows(rows: Sequence[RosterRow]) -> dict[PersonRef, int]:
    first: dict[PersonRef, int] = {}
    for row in rows:
        for _, ref in row.people():
            first.setdefault(ref, row.row)
    return first


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def _names(people: Iterable[Person]) -> str:
    return "、".join(sorted(p.name for p in people))


# Role slot: (kind, grid id, enterprise id); assignment slot: enterprise id.
_Slot = tuple[str, int | None, int | None]


class _Importer:
    """One import: loads the scope's current state with a few queries, then syncs level by level."""

    def __init__(
        self, rows: Sequence[RosterRow], today: date, *, file_wins: bool, dry_run: bool = False
    ) -> None:
        self.rows = rows
        self.today = today
        self.file_wins = file_wins
        self.dry_run = dry_run
        # Dry run: the last id handed out per table (see _id).
        self.last_id: dict[type[Any], int] = {}
        # Stored names that differ from their normalized_name(), by what they normalize to:
        # such a unit, grid or enterprise is the file's one, renamed to its spelling.
        self.loose_units: dict[tuple[str, str], AdminUnit] = {}
        self.loose_grids: dict[tuple[int, int, str], Grid] = {}
        self.loose_enterprises: dict[tuple[int, str], Enterprise] = {}
        self.gone_enterprises: list[Enterprise] = []
        self.warnings: list[str] = []
        self.units = _build_units(rows)
        self.first_row = _first_rows(rows)
        self.changes = Changes()
        self.errors: list[RowError] = []
        self.session: AsyncSession
        self.unit_by_key: dict[tuple[str, str], AdminUnit] = {}
        self.unit_by_id: dict[int, AdminUnit] = {}
        self.grids: dict[tuple[int, int, str], Grid] = {}
        self.grid_by_id: dict[int, Grid] = {}
        self.enterprises: dict[tuple[int, str], Enterprise] = {}
        self.ent_by_id: dict[int, Enterprise] = {}
        self.roles: list[Role] = []
        self.assignments: list[Assignment] = []
        self.people: dict[int, Person] = {}
        self.person_of: dict[PersonRef, Person] = {}
        # People who lost a role or assignment here: deactivated if they hold nothing else.
        self.released: set[int] = set()
        self.new_enterprises: list[dict[str, Any]] = []
        self.new_roles: list[dict[str, Any]] = []
        self.new_assignments: list[dict[str, Any]] = []

    def _add(self, kind: ChangeKind, label: str) -> None:
        self.changes.added.append(Change(kind, label))

    def _changed(self, kind: ChangeKind, label: str, what: str, old: Any, new: Any) -> None:
        self.changes.changed.append(
            Change(kind, label, what, None if old is None else str(old), str(new))
        )

    def _deactivated(self, kind: ChangeKind, label: str) -> None:
        self.changes.deactivated.append(Change(kind, label))

    def _id(self, model: type[Any]) -> dict[str, int]:
        """A new row's id in a dry run, past the largest in use: its insert, rolled back, then
        draws nothing from PostgreSQL's sequences (which a rollback does not give back). In a
        real import the database assigns it."""
        if not self.dry_run:
            return {}
        self.last_id[model] += 1
        return {"id": self.last_id[model]}

    async def run(self, session: AsyncSession) -> None:
        self.session = session
        if self.dry_run:
            for model in (AdminUnit, Grid, Enterprise, Person, Role, Assignment):
                self.last_id[model] = int(await session.scalar(select(func.max(model.id))) or 0)
        await self._load()
        await self._sync_units()
        await self._sync_grids()
        await self._sync_enterprises()
        await self._sync_people()
        if self.errors:
            return
        await self._sync_roles()
        if self.errors:
            return
        await self._sync_assignments()
        await self._deactivate_people()

    # --- loading --------------------------------------------------------------------------

    async def _load(self) -> None:
        s = self.session
        for unit in (await s.scalars(select(AdminUnit))).all():
            self.unit_by_key[(unit.kind, unit.name)] = unit
            self.unit_by_id[unit.id] = unit
            if (name := normalized_name(unit.name)) != unit.name:
                self.loose_units.setdefault((unit.kind, name), unit)
        scope = [u.id for k in self.units if (u := self._unit(*k)) is not None]
        if not scope:
            return
        for grid in (await s.scalars(select(Grid).where(Grid.unit_id.in_(scope)))).all():
            self._remember_grid(grid)
            if (domain := normalized_name(grid.domain)) != grid.domain:
                self.loose_grids.setdefault((grid.unit_id, grid.level, domain), grid)
        ents = await s.scalars(select(Enterprise).where(Enterprise.unit_id.in_(scope)))
        for ent in ents.all():
            self._remember_enterprise(ent)
            if (name := normalized_name(ent.name)) != ent.name:
                self.loose_enterprises.setdefault((ent.unit_id, name), ent)
        scope_grids = select(Grid.id).where(Grid.unit_id.in_(scope))
        scope_ents = select(Enterprise.id).where(Enterprise.unit_id.in_(scope))
        self.roles = list(
            (
                await s.scalars(
                    select(Role).where(
                        Role.until.is_(None),
                        or_(Role.grid_id.in_(scope_grids), Role.enterprise_id.in_(scope_ents)),
                    )
                )
            ).all()
        )
        self.assignments = list(
            (
                await s.scalars(
                    select(Assignment).where(
                        Assignment.until.is_(None), Assignment.enterprise_id.in_(scope_ents)
                    )
                )
            ).all()
        )
        holders = sorted(
            {r.person_id for r in self.roles} | {a.person_id for a in self.assignments}
        )
        await self._load_people(Person.id, holders)

    async def _load_people(self, column: Any, values: Sequence[Any]) -> None:
        for chunk in _chunks(values):
            for person in (
                await self.session.scalars(select(Person).where(column.in_(chunk)))
            ).all():
                self.people[person.id] = person

    def _remember_grid(self, grid: Grid) -> None:
        self.grids[(grid.unit_id, grid.level, grid.domain)] = grid
        self.grid_by_id[grid.id] = grid

    def _remember_enterprise(self, ent: Enterprise) -> None:
        self.enterprises[(ent.unit_id, ent.name)] = ent
        self.ent_by_id[ent.id] = ent

    def _unit(self, kind: str, name: str) -> AdminUnit | None:
        """The stored unit the file's (kind, name) means: by name, else one whose stored name
        normalizes to it (renamed to the file's spelling, and reported)."""
        unit = self.unit_by_key.get((kind, name))
        if unit is None and (unit := self.loose_units.pop((kind, name), None)) is not None:
            label = f"{name}（{UNIT_KIND_LABELS[UnitKind(kind)]}）"
            self._changed(ChangeKind.UNIT, label, "名称", unit.name, name)
            del self.unit_by_key[(unit.kind, unit.name)]
            unit.name = name
            self.unit_by_key[(kind, name)] = unit
        return unit

    # --- units ----------------------------------------------------------------------------

    async def _sync_units(self) -> None:
        # Level by level, so each parent has an id before its children point at it.
        for spec in self.units.values():
            if spec.province:
                self._ensure_unit(UnitKind.PROVINCE, spec.province, None)
        await self.session.flush()
        for spec in self.units.values():
            if spec.city:
                self._ensure_unit(UnitKind.CITY, spec.city, self._parent(spec.province, None))
        await self.session.flush()
        for spec in self.units.values():
            self._ensure_unit(spec.kind, spec.name, self._parent(spec.province, spec.city))
        await self.session.flush()
        for unit in self.unit_by_key.values():
            self.unit_by_id[unit.id] = unit

    def _parent(self, province: str | None, city: str | None) -> AdminUnit | None:
        if city:
            return self.unit_by_key[(UnitKind.CITY, city)]
        if province:
            return self.unit_by_key[(UnitKind.PROVINCE, province)]
        return None

    def _ensure_unit(self, kind: UnitKind, name: str, parent: AdminUnit | None) -> None:
        label = f"{name}（{UNIT_KIND_LABELS[kind]}）"
        unit = self._unit(kind, name)
        if unit is None:
            unit = AdminUnit(
                kind=kind.value,
                name=name,
                parent_id=parent.id if parent else None,
                **self._id(AdminUnit),
            )
            unit.active = True
            self.session.add(unit)
            self.unit_by_key[(kind, name)] = unit
            self._add(ChangeKind.UNIT, label)
            return
        if not unit.active:
            unit.active, unit.deactivated_on = True, None
            self._add(ChangeKind.UNIT, label + REACTIVATED)
        # A blank province / city never detaches a unit from the parent it already has.
        if parent is not None and unit.parent_id != parent.id:
            old = self.unit_by_id.get(unit.parent_id) if unit.parent_id else None
            self._changed(ChangeKind.UNIT, label, "上级", old and old.name, parent.name)
            unit.parent_id = parent.id

    # --- grids ----------------------------------------------------------------------------

    async def _sync_grids(self) -> None:
        for spec in self.units.values():
            unit = self.unit_by_key[(spec.kind, spec.name)]
            self._ensure_grid(unit, 1, "", level1_grid_name(spec.name), None)
        await self.session.flush()
        wanted: set[tuple[int, int, str]] = set()
        for spec in self.units.values():
            unit = self.unit_by_key[(spec.kind, spec.name)]
            l1 = self.grids[(unit.id, 1, "")]
            wanted.add((unit.id, 1, ""))
            for domain in spec.grids:
                wanted.add((unit.id, 2, domain))
                self._ensure_grid(unit, 2, domain, level2_grid_name(spec.name, domain), l1)
        for key, grid in self.grids.items():
            if key not in wanted and grid.active:
                grid.active, grid.deactivated_on = False, self.today
                self._deactivated(ChangeKind.GRID, grid.name)
        await self.session.flush()
        for grid in self.grids.values():
            self.grid_by_id[grid.id] = grid

    def _ensure_grid(
        self, unit: AdminUnit, level: int, domain: str, name: str, parent: Grid | None
    ) -> None:
        grid = self.grids.get((unit.id, level, domain))
        if grid is None and (grid := self.loose_grids.pop((unit.id, level, domain), None)):
            # Its domain differs only as normalized_name() irons out: the same grid (the
            # change of its name is reported below).
            del self.grids[(unit.id, level, grid.domain)]
            grid.domain = domain
            self.grids[(unit.id, level, domain)] = grid
        parent_id = parent.id if parent else None
        if grid is None:
            grid = Grid(
                unit_id=unit.id,
                level=level,
                domain=domain,
                name=name,
                parent_id=parent_id,
                **self._id(Grid),
            )
            grid.active = True
            self.session.add(grid)
            self.grids[(unit.id, level, domain)] = grid
            self._add(ChangeKind.GRID, name)
            return
        if not grid.active:
            grid.active, grid.deactivated_on = True, None
            self._add(ChangeKind.GRID, name + REACTIVATED)
        if grid.name != name:
            self._changed(ChangeKind.GRID, name, "名称", grid.name, name)
            grid.name = name
        if grid.parent_id != parent_id:
            grid.parent_id = parent_id

    # --- enterprises ----------------------------------------------------------------------

    async def _sync_enterprises(self) -> None:
        wanted: set[tuple[int, str]] = set()
        for spec in self.units.values():
            unit = self.unit_by_key[(spec.kind, spec.name)]
            for row in spec.enterprises.values():
                wanted.add((unit.id, row.enterprise))
                self._ensure_enterprise(unit, row)
        for key, ent in self.enterprises.items():
            if key not in wanted and ent.active:
                ent.active, ent.deactivated_on = False, self.today
                self._deactivated(ChangeKind.ENTERPRISE, self._ent_label(ent))
                self.gone_enterprises.append(ent)
        self._warn_renamed_enterprises()
        await self.session.flush()
        if self.new_enterprises:
            # Bulk insert, then read back by the unique (unit, name) key for the new ids.
            await self.session.execute(insert(Enterprise), self.new_enterprises)
            units = sorted({e["unit_id"] for e in self.new_enterprises})
            stmt = select(Enterprise).where(Enterprise.unit_id.in_(units))
            for ent in (await self.session.scalars(stmt)).all():
                self._remember_enterprise(ent)

    def _ent_label(self, ent: Enterprise) -> str:
        return f"{self.unit_by_id[ent.unit_id].name}/{ent.name}"

    def _warn_renamed_enterprises(self) -> None:
        """A new enterprise nearly named as one this import deactivates (near_key) is
        probably that one renamed: its history stays with the old one, so say so."""
        gone: dict[tuple[int, str], Enterprise] = {}
        for ent in self.gone_enterprises:
            gone.setdefault((ent.unit_id, near_key(ent.name)), ent)
        for new in self.new_enterprises:
            old = gone.get((new["unit_id"], near_key(new["name"])))
            if old is not None:
                self.warnings.append(
                    f"{self.unit_by_id[old.unit_id].name}：新增的企业「{new['name']}」与停用的"
                    f"「{old.name}」几乎相同。如是同一家改名，它的记录留在停用的「{old.name}」下"
                    f" / the new enterprise {new['name']!r} is nearly named as the deactivated"
                    f" {old.name!r}; if it was renamed, its history stays with the old one"
                )

    def _ensure_enterprise(self, unit: AdminUnit, row: RosterRow) -> None:
        grid = self.grids[(unit.id, 2, row.domain)]
        ent = self.enterprises.get((unit.id, row.enterprise))
        label = f"{unit.name}/{row.enterprise}"
        if ent is None and (ent := self.loose_enterprises.pop((unit.id, row.enterprise), None)):
            # Stored with a name that differs only as normalized_name() irons out ("ＡＢＣ运输",
            # a trailing zero-width space): the same enterprise, renamed to the file's spelling.
            self._changed(ChangeKind.ENTERPRISE, label, "名称", ent.name, row.enterprise)
            del self.enterprises[(unit.id, ent.name)]
            ent.name = row.enterprise
            self.enterprises[(unit.id, ent.name)] = ent
        if ent is None:
            self.new_enterprises.append(
                {
                    **self._id(Enterprise),
                    "unit_id": unit.id,
                    "grid_id": grid.id,
                    "name": row.enterprise,
                    "type": row.type.value,
                    "created_on": self.today,
                    "active": True,
                    "longitude": row.longitude,
                    "latitude": row.latitude,
                }
            )
            self._add(ChangeKind.ENTERPRISE, f"{label}（{row.type.value}，{row.domain}）")
            return
        # The (unit, name) key is unique, so a returning enterprise reuses its old row.
        if not ent.active:
            ent.active, ent.deactivated_on = True, None
            self._add(ChangeKind.ENTERPRISE, label + REACTIVATED)
        if ent.type != row.type.value:
            self._changed(ChangeKind.ENTERPRISE, label, "企业类型", ent.type, row.type.value)
            ent.type = row.type.value
        if ent.grid_id != grid.id:
            old = self.grid_by_id.get(ent.grid_id)
            self._changed(ChangeKind.ENTERPRISE, label, "业务领域", old and old.domain, row.domain)
            ent.grid_id = grid.id
        # Coordinates: a blank never erases known ones (like a person's phone).
        if row.longitude is not None and row.latitude is not None:
            known = (ent.longitude, ent.latitude)
            wanted = (row.longitude, row.latitude)
            if not _same_point(known, wanted):
                self._changed(
                    ChangeKind.ENTERPRISE,
                    label,
                    "经纬度",
                    _point_label(*known),
                    _point_label(*wanted),
                )
                ent.longitude, ent.latitude = wanted

    # --- people ---------------------------------------------------------------------------

    async def _sync_people(self) -> None:
        refs = list(self.first_row)
        await self._load_people(
            Person.matrix_id, sorted({r.matrix_id for r in refs if r.matrix_id})
        )
        await self._load_people(Person.phone, sorted({r.phone for r in refs if r.phone}))
        by_mxid = {p.matrix_id: p for p in self.people.values() if p.matrix_id}
        by_phone: dict[str, list[Person]] = {}
        for p in self.people.values():
            if p.phone:
                by_phone.setdefault(p.phone, []).append(p)
        adopted: set[int] = set()
        seen: dict[int, PersonRef] = {}
        new: list[PersonRef] = []
        # Matrix ids first: they are the firmer identity, and phone-only mentions may join them.
        for ref in sorted(refs, key=lambda r: r.matrix_id is None):
            person = self._match(ref, by_mxid, by_phone, adopted)
            if person is None:
                new.append(ref)
                self._add(ChangeKind.PERSON, _person_label(ref))
                continue
            if person.id in seen:
                # Two entries of the file met one database person (by Matrix id and by phone).
                other = seen[person.id]
                if other.name != ref.name:
                    self.errors.append(
                        RowError(
                            self.first_row[ref],
                            f"{ref}与第{self.first_row[other]}行的{other}在数据库中是同一人"
                            f"（{person.name}），但姓名不同 / matches the same person in the "
                            "database as another entry with a different name",
                        )
                    )
                    continue
            else:
                self._update_person(person, ref)
                seen[person.id] = ref
            self.person_of[ref] = person
        await self.session.flush()
        await self._insert_people(new)

    async def _insert_people(self, new: list[PersonRef]) -> None:
        """Insert in bulk, then read the ids back by identity (SQLite cannot batch RETURNING).

        A new person's Matrix id is unique; a new phone-only person's phone matched nobody
        before the insert, so (phone, no Matrix id) finds exactly the row just written.
        """
        if not new:
            return
        await self.session.execute(
            insert(Person),
            [
                {
                    **self._id(Person),
                    "name": r.name,
                    "phone": r.phone,
                    "matrix_id": r.matrix_id,
                    "active": True,
                }
                for r in new
            ],
        )
        by_mxid = {r.matrix_id: r for r in new if r.matrix_id}
        by_phone = {r.phone: r for r in new if not r.matrix_id and r.phone}
        found: list[Person] = []
        for chunk in _chunks(sorted(by_mxid)):
            found += (
                await self.session.scalars(select(Person).where(Person.matrix_id.in_(chunk)))
            ).all()
        for chunk in _chunks(sorted(by_phone)):
            # No "matrix_id IS NULL" in SQL: PostgreSQL's stale statistics right after the
            # bulk insert turn it into a slow plan. Filter here instead.
            stmt = select(Person).where(Person.phone.in_(chunk))
            found += [p for p in (await self.session.scalars(stmt)).all() if not p.matrix_id]
        for person in found:
            ref = (
                by_mxid.get(person.matrix_id)
                if person.matrix_id
                else by_phone.get(person.phone or "")
            )
            if ref is not None:
                self.person_of[ref] = person
                self.people[person.id] = person

    def _match(
        self,
        ref: PersonRef,
        by_mxid: dict[str, Person],
        by_phone: dict[str, list[Person]],
        adopted: set[int],
    ) -> Person | None:
        if ref.matrix_id:
            if (person := by_mxid.get(ref.matrix_id)) is not None:
                return person
            # Someone first listed by phone (same name) may now bring a Matrix id: same person.
            free = [
                p
                for p in by_phone.get(ref.phone or "", [])
                if not p.matrix_id and p.name == ref.name and p.id not in adopted
            ]
            person = self._pick(ref, free)
            if person is not None:
                adopted.add(person.id)
            return person
        return self._pick(ref, by_phone.get(ref.phone or "", []))

    def _pick(self, ref: PersonRef, candidates: list[Person]) -> Person | None:
        if len(candidates) > 1:
            candidates = [p for p in candidates if p.name == ref.name] or candidates
        if len(candidates) > 1:
            candidates = [p for p in candidates if p.active] or candidates
        if len(candidates) > 1:
            self.errors.append(
                RowError(
                    self.first_row[ref],
                    f"{ref}：数据库中有多人使用电话 {ref.phone}，请写明 Matrix 账号"
                    " / several people in the database have this phone; give the Matrix id",
                )
            )
            return None
        return candidates[0] if candidates else None

    def _update_person(self, person: Person, ref: PersonRef) -> None:
        label = person.name
        if not person.active:
            person.active, person.deactivated_on = True, None
            self._add(ChangeKind.PERSON, _person_label(ref) + REACTIVATED)
        if person.name != ref.name:
            self._changed(ChangeKind.PERSON, label, "姓名", person.name, ref.name)
            person.name = ref.name
        # A blank never erases a known phone or Matrix id.
        if ref.phone and person.phone != ref.phone:
            self._changed(ChangeKind.PERSON, ref.name, "电话", person.phone, ref.phone)
            person.phone = ref.phone
        if ref.matrix_id and person.matrix_id != ref.matrix_id:
            self._changed(
                ChangeKind.PERSON, ref.name, "Matrix 账号", person.matrix_id, ref.matrix_id
            )
            person.matrix_id = ref.matrix_id

    # --- roles and assignments ------------------------------------------------------------

    def _wanted_roles(self) -> dict[_Slot, list[int]]:
        wanted: dict[_Slot, list[int]] = {}

        def put(kind: RoleKind, grid: int | None, ent: int | None, refs: Iterable[Any]) -> None:
            ids = [self.person_of[r].id for r in refs if r is not None]
            if ids:
                wanted[(kind.value, grid, ent)] = list(dict.fromkeys(ids))

        for spec in self.units.values():
            unit = self.unit_by_key[(spec.kind, spec.name)]
            l1 = self.grids[(unit.id, 1, "")].id
            put(RoleKind.L1_CHIEF, l1, None, [spec.chief])
            put(RoleKind.L1_OFFICE_DIRECTOR, l1, None, [spec.director])
            put(RoleKind.L1_OFFICE_MEMBER, l1, None, spec.office)
            for g in spec.grids.values():
                l2 = self.grids[(unit.id, 2, g.domain)].id
                put(RoleKind.L2_CHIEF, l2, None, [g.chief])
                put(RoleKind.L2_OFFICE_MEMBER, l2, None, g.office)
                put(RoleKind.L2_MEMBER, l2, None, g.members)
            for row in spec.enterprises.values():
                ent = self.enterprises[(unit.id, row.enterprise)].id
                put(RoleKind.ENT_CHIEF, None, ent, [row.ent_chief])
                put(RoleKind.ENT_MEMBER, None, ent, row.ent_members)
        return wanted

    async def _check_chat_changes(self, wanted: dict[_Slot, list[int]]) -> None:
        """Staff changes confirmed in chat since the file last agreed with them: one the file
        has now is settled; one it would undo is an error (a warning with ``file_wins``)."""
        in_file: dict[int, int] = {}  # enterprise id -> its row in the file
        for spec in self.units.values():
            unit = self.unit_by_key[(spec.kind, spec.name)]
            for row in spec.enterprises.values():
                in_file[self.enterprises[(unit.id, row.enterprise)].id] = row.row
        pending: list[StaffChange] = []
        for chunk in _chunks(sorted(self.ent_by_id)):  # the enterprises of the file's units
            pending += (
                await self.session.scalars(
                    select(StaffChange)
                    .where(
                        StaffChange.status == "confirmed",
                        StaffChange.reconciled_on.is_(None),
                        StaffChange.enterprise_id.in_(chunk),
                    )
                    .order_by(StaffChange.id)
                )
            ).all()
        for change in pending:
            ent_id = change.enterprise_id
            if ent_id not in in_file:
                change.reconciled_on = self.today  # the file closes the enterprise: moot
                continue
            undone = [
                text
                for item in change.items
                if (text := await self._undone(item, ent_id, wanted)) is not None
            ]
            ent = self._ent_label(self.ent_by_id[ent_id])
            if undone and not self.file_wins:
                self.errors.append(
                    RowError(
                        in_file[ent_id],
                        f"{ent}：群里确认的人员变动 S-{change.id}（{change.effective_on}）"
                        f"还没有写进本文件：{'；'.join(undone)}。请先把变动写进文件再导入，"
                        "或加 --file-wins 以文件为准 / a staff change confirmed in chat is "
                        "not in this file: add it, or pass --file-wins to let the file undo it",
                    )
                )
                continue
            if undone:
                self.warnings.append(
                    f"{ent}：按文件撤销了群里确认的人员变动 S-{change.id}：{'；'.join(undone)}"
                    " / the file undoes a staff change confirmed in chat"
                )
            change.reconciled_on = self.today

    async def _undone(
        self, item: dict[str, Any], ent_id: int, wanted: dict[_Slot, list[int]]
    ) -> str | None:
        """What of one staff-change item the file would undo, in words; None if it agrees."""
        if item.get("action") == LEAVE:
            pid = item["person_id"]
            kinds = [k for k in item.get("kinds", []) if pid in wanted.get((k, None, ent_id), [])]
            if kinds:
                roles = "、".join(role_label(k) for k in kinds)
                return f"{item['name']} 已离开（{roles}），文件里仍有"
            return None
        person_id = item.get("person_id") or await self._person_id(item)
        slot = (item["kind"], None, ent_id)
        if person_id is not None and person_id in wanted.get(slot, []):
            return None
        return f"{item['name']} 已加入任{role_label(item['kind'])}，文件里没有"

    async def _person_id(self, item: dict[str, Any]) -> int | None:
        """The person a join confirmed before person ids were kept: by Matrix id, or phone and
        name."""
        if item.get("matrix_id"):
            where = Person.matrix_id == item["matrix_id"]
        else:
            where = (Person.phone == item.get("phone")) & (Person.name == item["name"])
        return await self.session.scalar(select(Person.id).where(where).limit(1))

    def _slot_label(self, slot: _Slot) -> tuple[str, str]:
        kind, grid, ent = slot
        target = self.grid_by_id[grid].name if grid else self._ent_label(self.ent_by_id[ent or 0])
        return target, role_label(kind)

    async def _sync_roles(self) -> None:
        current: dict[_Slot, list[Role]] = {}
        for role in self.roles:
            current.setdefault((role.kind, role.grid_id, role.enterprise_id), []).append(role)
        wanted = self._wanted_roles()
        await self._check_chat_changes(wanted)
        if self.errors:
            return
        for slot in sorted(set(current) | set(wanted), key=_slot_order):
            held = current.get(slot, [])
            target, what = self._slot_label(slot)
            self._diff_slot(ChangeKind.ROLE, target, what, held, wanted.get(slot, []), slot)
        await self.session.flush()
        await self._insert(Role, self.new_roles)

    async def _sync_assignments(self) -> None:
        current: dict[int, list[Assignment]] = {}
        for a in self.assignments:
            current.setdefault(a.enterprise_id, []).append(a)
        wanted: dict[int, list[int]] = {}
        for spec in self.units.values():
            unit = self.unit_by_key[(spec.kind, spec.name)]
            for row in spec.enterprises.values():
                ids = list(dict.fromkeys(self.person_of[r].id for r in row.l2_members))
                if ids:
                    wanted[self.enterprises[(unit.id, row.enterprise)].id] = ids
        for ent_id in sorted(set(current) | set(wanted)):
            target = self._ent_label(self.ent_by_id[ent_id])
            held = current.get(ent_id, [])
            self._diff_slot(
                ChangeKind.ASSIGNMENT,
                target,
                ASSIGNMENT_LABEL,
                held,
                wanted.get(ent_id, []),
                ent_id,
            )
        await self.session.flush()
        await self._insert(Assignment, self.new_assignments)

    def _diff_slot(
        self,
        kind: ChangeKind,
        target: str,
        what: str,
        held: Sequence[Role | Assignment],
        wanted: Sequence[int],
        slot: _Slot | int,
    ) -> None:
        """Close what is held but not wanted, open what is wanted but not held, and report it."""
        held_ids = {h.person_id for h in held}
        for h in held:
            if h.person_id not in wanted:
                h.until = self.today
                self.released.add(h.person_id)
        for pid in wanted:
            if pid not in held_ids:
                self._open(slot, pid)
        if held_ids == set(wanted):
            return
        old = _names(self.people[i] for i in held_ids)
        new = _names(self.people[i] for i in wanted)
        if not held_ids:
            self._add(kind, f"{target}·{what}：{new}")
        elif not wanted:
            self._deactivated(kind, f"{target}·{what}：{old}")
        else:
            self._changed(kind, target, what, old, new)

    def _open(self, slot: _Slot | int, person_id: int) -> None:
        if isinstance(slot, int):
            self.new_assignments.append(
                {
                    **self._id(Assignment),
                    "person_id": person_id,
                    "enterprise_id": slot,
                    "since": self.today,
                }
            )
            return
        kind, grid, ent = slot
        self.new_roles.append(
            {
                **self._id(Role),
                "person_id": person_id,
                "kind": kind,
                "grid_id": grid,
                "enterprise_id": ent,
                "since": self.today,
            }
        )

    async def _insert(
        self, model: type[Role] | type[Assignment], rows: list[dict[str, Any]]
    ) -> None:
        # Plain executemany: no ids are needed back, and SQLite cannot batch ORM inserts.
        if rows:
            await self.session.execute(insert(model), rows)

    async def _deactivate_people(self) -> None:
        """Whoever lost a role here and holds nothing anywhere any more is deactivated."""
        in_file = {p.id for p in self.person_of.values()}
        candidates = sorted(self.released - in_file)
        busy: set[int] = set()
        for chunk in _chunks(candidates):
            for model in (Role, Assignment):
                rows = await self.session.scalars(
                    select(model.person_id).where(model.until.is_(None), model.person_id.in_(chunk))
                )
                busy.update(rows.all())
        for pid in candidates:
            person = self.people[pid]
            if pid not in busy and person.active:
                person.active, person.deactivated_on = False, self.today
                self._deactivated(ChangeKind.PERSON, f"{person.name}（停用日期 {self.today}）")
        await self.session.flush()


_ROLE_ORDER = {k.value: i for i, k in enumerate(RoleKind)}


def _slot_order(slot: _Slot) -> tuple[int, int, int, int]:
    # Grid roles (level 1, then level 2) before enterprise roles, each in creation order.
    kind, grid, ent = slot
    return (0 if grid else 1, grid or 0, ent or 0, _ROLE_ORDER.get(kind, 99))


def _person_label(ref: PersonRef) -> str:
    extra = "，".join(x for x in (ref.phone, ref.matrix_id) if x)
    return f"{ref.name}（{extra}）"


def _same_point(a: tuple[float | None, float | None], b: tuple[float, float]) -> bool:
    return all(x is not None and abs(x - y) < SAME_POINT for x, y in zip(a, b, strict=True))


def _point_label(longitude: float | None, latitude: float | None) -> str | None:
    """经度, 纬度 as written in the roster; None (shown as 空) when unknown."""
    if longitude is None or latitude is None:
        return None
    return f"{longitude}, {latitude}"


async def import_in_session(
    session: AsyncSession,
    path: Path,
    *,
    dry_run: bool,
    today: date | None = None,
    file_wins: bool = False,
    limits: Limits | None = None,
) -> ImportResult:
    """:func:`import_roster` inside the caller's transaction (the admin room's import records
    its audit and answer with it). A dry run works in a savepoint of its own session on the
    same connection and rolls it back, leaving the caller's objects alone. A real import that
    finds errors returns them with ``applied`` False: the caller must roll back."""
    parsed = read_roster(path, limits)
    result = ImportResult(errors=parsed.errors, warnings=parsed.warnings, rows=len(parsed.rows))
    if parsed.errors:
        return result
    plan = _Importer(parsed.rows, today or date.today(), file_wins=file_wins, dry_run=dry_run)
    result.units = [u.name for u in plan.units.values()]
    if dry_run:
        conn = await session.connection()
        nested = await conn.begin_nested()
        try:
            async with AsyncSession(
                bind=conn, join_transaction_mode="conditional_savepoint"
            ) as scratch:
                await plan.run(scratch)
                await scratch.flush()
        finally:
            await nested.rollback()
    else:
        await plan.run(session)
        result.applied = not plan.errors
    plan.changes.sort()
    result.warnings.extend(plan.warnings)
    result.errors = sorted(plan.errors, key=lambda e: e.row)
    result.changes = Changes() if plan.errors else plan.changes
    return result

"""The rooms and spaces the roster calls for, as pure data (no database, no homeserver).

Layout (parents listed before their children)::

    province space ─ city space ─ county space ─┬ level-1 room
                                                ├ grid space (per level-2 grid) ─┬ level-2 room
                                                │                                └ enterprise rooms
                                                └ admin room (in every top-level space)

Power levels: the bot is highest (100, or creator power in v12 rooms); chiefs 50 (moderators);
office directors and level-2 members serving an enterprise 25; other grid staff and enterprise
chiefs 10; enterprise members 0. Nobody but the bot may change names, topics, power levels,
join rules or the space tree (see bot/provision/state.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from bot.provision.roster import EnterpriseRow, GridRow, Roster, UnitRow
from storage.models import RoleKind, UnitKind

# RoomInfo.kind values (bot/commands.py has the room kinds commands care about).
PROVINCE_SPACE = "province_space"
CITY_SPACE = "city_space"
COUNTY_SPACE = "county_space"
GRID_SPACE = "grid_space"
L1_ROOM = "l1_room"
L2_ROOM = "l2_room"
ENTERPRISE_ROOM = "enterprise_room"
ADMIN_ROOM = "admin_room"
SPACE_KINDS = frozenset({PROVINCE_SPACE, CITY_SPACE, COUNTY_SPACE, GRID_SPACE})

CHIEF = 50
DEPUTY = 25
STAFF = 10
MEMBER = 0

# m.space.child "order": level-1 room first, then grids, enterprises, the admin room last.
_ORDER = {
    CITY_SPACE: "20",
    COUNTY_SPACE: "30",
    L1_ROOM: "10",
    GRID_SPACE: "20",
    L2_ROOM: "10",
    ENTERPRISE_ROOM: "30",
    ADMIN_ROOM: "90",
}
_GRID_OWNERS = frozenset({UnitKind.COUNTY, UnitKind.SPECIAL})


class Texts(Protocol):
    """Room names and topics (from templates, see bot/provision/texts.py)."""

    def name(self, kind: str, **values: object) -> str: ...

    def topic(self, kind: str, **values: object) -> str: ...


@dataclass(frozen=True)
class RoomSpec:
    key: str
    kind: str
    name: str | None  # None: not managed (a retired room keeps what it had)
    topic: str | None
    parents: tuple[str, ...] = ()  # keys; the first is the canonical parent
    members: dict[str, int] = field(default_factory=dict)  # Matrix id -> power level
    unit_id: int | None = None
    grid_id: int | None = None
    enterprise_id: int | None = None
    retired: bool = False

    @property
    def is_space(self) -> bool:
        return self.kind in SPACE_KINDS

    @property
    def order(self) -> str:
        return _ORDER.get(self.kind, "50")


@dataclass
class Plan:
    rooms: dict[str, RoomSpec] = field(default_factory=dict)  # parents before children
    names: dict[str, str] = field(default_factory=dict)  # Matrix id -> name, for the summary
    without_matrix_id: list[str] = field(default_factory=list)  # "name (phone)"

    def children(self, key: str) -> list[str]:
        return [k for k, spec in self.rooms.items() if key in spec.parents]

    def depth(self, key: str) -> int:
        spec = self.rooms[key]
        return 1 + max((self.depth(p) for p in spec.parents), default=-1)

    def users(self) -> set[str]:
        return {u for spec in self.rooms.values() for u in spec.members}

    def fingerprint(self) -> str:
        """Changes exactly when some room's name, topic, place or members would change."""
        data = [
            (k, s.kind, s.name, s.topic, s.parents, sorted(s.members.items()))
            for k, s in self.rooms.items()
        ]
        raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()


def room_key(kind: str, ident: int | None = None) -> str:
    """Stable key of a room: what it mirrors, by database id (e.g. "enterprise_room:12")."""
    return kind if ident is None else f"{kind}:{ident}"


def _merge(into: dict[str, int], users: Iterable[tuple[str, int]]) -> None:
    for user, power in users:
        into[user] = max(power, into.get(user, power))


class _Planner:
    def __init__(
        self,
        roster: Roster,
        admins: Iterable[str],
        bot_user_id: str,
        texts: Texts,
        room_admins: Iterable[str] = (),
    ):
        self.r = roster
        self.admins = [a for a in dict.fromkeys(admins) if a != bot_user_id]
        # Admins named in chat (storage.admins): members of the admin room only, whatever
        # their county (the room is shared); the spaces are moderated by bot.yaml's admins.
        self.room_admins = [
            a for a in dict.fromkeys(room_admins) if a != bot_user_id and a not in self.admins
        ]
        self.bot = bot_user_id
        self.texts = texts
        self.plan = Plan()
        self.mxid = {p.id: p.matrix_id for p in roster.people.values()}
        self.name_of = {p.id: p.name for p in roster.people.values()}
        # Indexed once: a province has tens of thousands of roles.
        self._roles: dict[tuple[str, int | None, int | None], list[int]] = {}
        for r in roster.roles:
            self._roles.setdefault((r.kind, r.grid_id, r.enterprise_id), []).append(r.person_id)
        self._served: dict[int, list[int]] = {}
        for a in roster.assignments:
            self._served.setdefault(a.enterprise_id, []).append(a.person_id)

    # --- who holds what ---------------------------------------------------------------------

    def holders(self, kind: str, *, grid: int | None = None, ent: int | None = None) -> list[int]:
        return self._roles.get((kind, grid, ent), [])

    def served_by(self, ent: int) -> list[int]:
        return self._served.get(ent, [])

    def users(self, people: Iterable[int], power: int) -> list[tuple[str, int]]:
        out = []
        for pid in people:
            mxid = self.mxid.get(pid)
            if mxid and mxid != self.bot:
                out.append((mxid, power))
        return out

    def names(self, people: Iterable[int]) -> list[str]:
        return list(dict.fromkeys(self.name_of[p] for p in people))

    # --- the tree ---------------------------------------------------------------------------

    def build(self) -> Plan:
        owners = [u for u in self.r.units.values() if u.kind in _GRID_OWNERS]
        owners.sort(key=lambda u: (u.kind, u.name, u.id))
        spaced = self._upper_units(owners)
        for unit in spaced:
            self._upper_space(unit, spaced)
        for unit in owners:
            self._county_space(unit, spaced)
        tops = [k for k, s in self.plan.rooms.items() if not s.parents]
        self._add(
            ADMIN_ROOM,
            room_key(ADMIN_ROOM),
            self.texts.name(ADMIN_ROOM),
            self.texts.topic(ADMIN_ROOM),
            tuple(tops),
            [(a, CHIEF) for a in [*self.admins, *self.room_admins]],
        )
        for unit in owners:
            self._county_rooms(unit)
        self._fill_spaces()
        self._collect_people()
        # Parents first, whatever order the units came in.
        ordered = sorted(self.plan.rooms, key=self.plan.depth)
        self.plan.rooms = {k: self.plan.rooms[k] for k in ordered}
        return self.plan

    def _upper_units(self, owners: list[UnitRow]) -> list[UnitRow]:
        """Province and city units with a county below: they get a space (top-down order)."""
        found: dict[int, UnitRow] = {}
        for unit in owners:
            parent = self.r.units.get(unit.parent_id or -1)
            while parent is not None and parent.id not in found:
                if parent.kind in (UnitKind.PROVINCE, UnitKind.CITY):
                    found[parent.id] = parent
                parent = self.r.units.get(parent.parent_id or -1)
        return sorted(found.values(), key=lambda u: (u.kind != UnitKind.PROVINCE, u.name, u.id))

    def _space_parent(self, unit: UnitRow, spaced: list[UnitRow]) -> tuple[str, ...]:
        ids = {u.id for u in spaced}
        parent = self.r.units.get(unit.parent_id or -1)
        while parent is not None and parent.id not in ids:
            parent = self.r.units.get(parent.parent_id or -1)
        if parent is None:
            return ()
        kind = PROVINCE_SPACE if parent.kind == UnitKind.PROVINCE else CITY_SPACE
        return (room_key(kind, parent.id),)

    def _upper_space(self, unit: UnitRow, spaced: list[UnitRow]) -> None:
        kind = PROVINCE_SPACE if unit.kind == UnitKind.PROVINCE else CITY_SPACE
        self._add(
            kind,
            room_key(kind, unit.id),
            self.texts.name(kind, unit=unit.name),
            self.texts.topic(kind, unit=unit.name),
            self._space_parent(unit, spaced),
            [],
            unit_id=unit.id,
        )

    def _county_space(self, unit: UnitRow, spaced: list[UnitRow]) -> None:
        self._add(
            COUNTY_SPACE,
            room_key(COUNTY_SPACE, unit.id),
            self.texts.name(COUNTY_SPACE, unit=unit.name),
            self.texts.topic(COUNTY_SPACE, unit=unit.name),
            self._space_parent(unit, spaced),
            [],
            unit_id=unit.id,
        )

    def _county_rooms(self, unit: UnitRow) -> None:
        grids = [g for g in self.r.grids.values() if g.unit_id == unit.id]
        level1 = sorted((g for g in grids if g.level == 1), key=lambda g: g.id)
        level2 = sorted((g for g in grids if g.level == 2), key=lambda g: (g.domain, g.id))
        county = room_key(COUNTY_SPACE, unit.id)
        for g1 in level1:
            self._l1_room(unit, g1, level2, county)
        for g2 in level2:
            self._grid_rooms(unit, g2, county)
        for ent in sorted(self.r.enterprises.values(), key=lambda e: (e.name, e.id)):
            if ent.unit_id == unit.id or self.r.grids[ent.grid_id].unit_id == unit.id:
                self._enterprise_room(unit, ent, county)

    def _l1_room(self, unit: UnitRow, g1: GridRow, level2: list[GridRow], county: str) -> None:
        chiefs = self.holders(RoleKind.L1_CHIEF, grid=g1.id)
        directors = self.holders(RoleKind.L1_OFFICE_DIRECTOR, grid=g1.id)
        office = self.holders(RoleKind.L1_OFFICE_MEMBER, grid=g1.id)
        l2_chiefs = [p for g in level2 for p in self.holders(RoleKind.L2_CHIEF, grid=g.id)]
        members: dict[str, int] = {}
        _merge(members, self.users(l2_chiefs, STAFF))
        _merge(members, self.users(office, STAFF))
        _merge(members, self.users(directors, DEPUTY))
        _merge(members, self.users(chiefs, CHIEF))
        self._add(
            L1_ROOM,
            room_key(L1_ROOM, g1.id),
            self.texts.name(L1_ROOM, unit=unit.name, grid=g1.name),
            self.texts.topic(
                L1_ROOM,
                unit=unit.name,
                chiefs=self.names(chiefs),
                directors=self.names(directors),
                office=self.names(office),
                l2_chiefs=self.names(l2_chiefs),
            ),
            (county,),
            members.items(),
            unit_id=unit.id,
            grid_id=g1.id,
        )

    def _grid_rooms(self, unit: UnitRow, g2: GridRow, county: str) -> None:
        chiefs = self.holders(RoleKind.L2_CHIEF, grid=g2.id)
        office = self.holders(RoleKind.L2_OFFICE_MEMBER, grid=g2.id)
        staff = self.holders(RoleKind.L2_MEMBER, grid=g2.id)
        space = room_key(GRID_SPACE, g2.id)
        values = {"unit": unit.name, "domain": g2.domain, "grid": g2.name}
        self._add(
            GRID_SPACE,
            space,
            self.texts.name(GRID_SPACE, **values),
            self.texts.topic(GRID_SPACE, **values, chiefs=self.names(chiefs)),
            (county,),
            [],
            unit_id=unit.id,
            grid_id=g2.id,
        )
        members: dict[str, int] = {}
        _merge(members, self.users(staff, STAFF))
        _merge(members, self.users(office, STAFF))
        _merge(members, self.users(chiefs, CHIEF))
        self._add(
            L2_ROOM,
            room_key(L2_ROOM, g2.id),
            self.texts.name(L2_ROOM, **values),
            self.texts.topic(
                L2_ROOM,
                **values,
                chiefs=self.names(chiefs),
                office=self.names(office),
                members=self.names(staff),
            ),
            (space,),
            members.items(),
            unit_id=unit.id,
            grid_id=g2.id,
        )

    def _enterprise_room(self, unit: UnitRow, ent: EnterpriseRow, county: str) -> None:
        grid = self.r.grids[ent.grid_id]
        parent = room_key(GRID_SPACE, grid.id) if grid.level == 2 else county
        chiefs = self.holders(RoleKind.ENT_CHIEF, ent=ent.id)
        staff = self.holders(RoleKind.ENT_MEMBER, ent=ent.id)
        served = self.served_by(ent.id)
        l2_chiefs = self.holders(RoleKind.L2_CHIEF, grid=grid.id) if grid.level == 2 else []
        members: dict[str, int] = {}
        _merge(members, self.users(staff, MEMBER))
        _merge(members, self.users(chiefs, STAFF))
        _merge(members, self.users(served, DEPUTY))
        _merge(members, self.users(l2_chiefs, CHIEF))
        self._add(
            ENTERPRISE_ROOM,
            room_key(ENTERPRISE_ROOM, ent.id),
            self.texts.name(ENTERPRISE_ROOM, unit=unit.name, enterprise=ent.name, type=ent.type),
            self.texts.topic(
                ENTERPRISE_ROOM,
                unit=unit.name,
                enterprise=ent.name,
                type=ent.type,
                domain=grid.domain,
                chiefs=self.names(chiefs),
                served_by=self.names(served),
                l2_chiefs=self.names(l2_chiefs),
            ),
            (parent,),
            members.items(),
            unit_id=unit.id,
            grid_id=grid.id,
            enterprise_id=ent.id,
        )

    def _fill_spaces(self) -> None:
        """Spaces hold everyone in the rooms below them (so clients show the tree); the grid
        chief and the level-1 chief moderate theirs, admins moderate every space."""
        rooms = self.plan.rooms
        children: dict[str, list[str]] = {}
        for key, spec in rooms.items():
            for parent in spec.parents:
                children.setdefault(parent, []).append(key)
        for key in sorted(rooms, key=self.plan.depth, reverse=True):
            spec = rooms[key]
            if not spec.is_space:
                continue
            members: dict[str, int] = {}
            for child in children.get(key, []):
                child_spec = rooms[child]
                if child_spec.kind == ADMIN_ROOM:
                    continue
                if spec.kind in (PROVINCE_SPACE, CITY_SPACE) and child_spec.kind == COUNTY_SPACE:
                    # Only the level-1 leadership of each county is shown the upper tree.
                    _merge(members, ((u, MEMBER) for u in self._l1_leaders(child_spec)))
                else:
                    _merge(members, ((u, MEMBER) for u in child_spec.members))
            if spec.kind == GRID_SPACE and spec.grid_id is not None:
                chiefs = self.holders(RoleKind.L2_CHIEF, grid=spec.grid_id)
                _merge(members, self.users(chiefs, CHIEF))
            if spec.kind == COUNTY_SPACE:
                for g in self.r.grids.values():
                    if g.unit_id == spec.unit_id and g.level == 1:
                        chiefs = self.holders(RoleKind.L1_CHIEF, grid=g.id)
                        _merge(members, self.users(chiefs, CHIEF))
            _merge(members, ((a, CHIEF) for a in self.admins))
            rooms[key] = RoomSpec(**{**spec.__dict__, "members": members})

    def _l1_leaders(self, county: RoomSpec) -> list[str]:
        out: list[str] = []
        for g in self.r.grids.values():
            if g.unit_id != county.unit_id or g.level != 1:
                continue
            for kind in (RoleKind.L1_CHIEF, RoleKind.L1_OFFICE_DIRECTOR, RoleKind.L1_OFFICE_MEMBER):
                out.extend(u for u, _ in self.users(self.holders(kind, grid=g.id), MEMBER))
        return out

    def _collect_people(self) -> None:
        in_rooms: set[int] = set()
        for r in self.r.roles:
            in_rooms.add(r.person_id)
        for a in self.r.assignments:
            in_rooms.add(a.person_id)
        for pid in sorted(in_rooms):
            person = self.r.people[pid]
            if person.matrix_id:
                self.plan.names[person.matrix_id] = person.name
            else:
                self.plan.without_matrix_id.append(
                    f"{person.name}（{person.phone}）" if person.phone else person.name
                )

    def _add(
        self,
        kind: str,
        key: str,
        name: str,
        topic: str,
        parents: tuple[str, ...],
        members: Iterable[tuple[str, int]],
        **ids: int | None,
    ) -> None:
        merged: dict[str, int] = {}
        _merge(merged, members)
        self.plan.rooms[key] = RoomSpec(
            key=key, kind=kind, name=name, topic=topic, parents=parents, members=merged, **ids
        )


def build_plan(
    roster: Roster,
    *,
    admins: Iterable[str],
    bot_user_id: str,
    texts: Texts,
    room_admins: Iterable[str] = (),
) -> Plan:
    """The desired rooms for ``roster``: pure, deterministic for the same input. ``admins``
    (bot.yaml's) are in the admin room and moderate every space; ``room_admins`` (named in
    chat) are in the admin room."""
    return _Planner(roster, admins, bot_user_id, texts, room_admins).build()

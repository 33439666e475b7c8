"""The grid directory: the one place that answers "who is this", "what may they see and act
on", "which room is whose" and "who holds a role", from the roster as it is right now.

- **Who**: :func:`identify` loads a sender's current roles and served enterprises.
- **What they may do**: :data:`RULES` says, per :class:`Action`, how far each role kind reaches
  (:class:`Extent`: everything, its level-1 grid, its level-2 grid, its own enterprise, the
  enterprises one serves). :func:`reach` turns an identity into a :class:`Reach` (no SQL);
  :func:`enterprises_in`, :func:`enterprise_ids_in` and :func:`level2_grids_in` query it, and
  :func:`may` / :func:`capacity` answer for one enterprise.
- **Whose room**: :func:`room_of` / :func:`rooms_of` with one tie-break (:data:`ROOM_ORDER`).
- **Who holds a role**: :func:`holders`, :func:`holders_by_grid`, :func:`serving_members`, …,
  and :func:`circle_of` for everyone and every room around one enterprise. People come back as
  :class:`Contact`, each person once per list.

Storage imports nothing from ``bot`` or ``handlers``; handlers ask here instead of querying.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, false, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload

from storage.admins import admin_scope, level1_grids_of
from storage.models import (
    AdminUnit,
    Assignment,
    Enterprise,
    Grid,
    Person,
    Role,
    RoleKind,
    RoomInfo,
    UserPreference,
)

# --- role groups -------------------------------------------------------------------------------

# Role kinds as command access rules and the table below use them. "l1_member" is derived: every
# level-2 chief is a member of the level-1 grid (DOMAIN.md); "admin" comes from the configuration.
ADMIN = "admin"
L1_MEMBER = "l1_member"
L1_ROLES = frozenset({RoleKind.L1_CHIEF, RoleKind.L1_OFFICE_DIRECTOR, RoleKind.L1_OFFICE_MEMBER})
L1_OFFICE = frozenset({RoleKind.L1_OFFICE_DIRECTOR, RoleKind.L1_OFFICE_MEMBER})
L1_STAFF = frozenset({ADMIN, *L1_ROLES})
L2_LEADS = frozenset({RoleKind.L2_CHIEF, RoleKind.L2_OFFICE_MEMBER})
L2_STAFF = frozenset({*L2_LEADS, RoleKind.L2_MEMBER})
ENTERPRISE_STAFF = frozenset({RoleKind.ENT_CHIEF, RoleKind.ENT_MEMBER})
# Everyone with a role anywhere in the grid, and admins (who may report and follow up cases).
GRID_STAFF = ENTERPRISE_STAFF | L2_STAFF | L1_STAFF

# Room kinds of RoomInfo that belong to a grid or an enterprise.
ENTERPRISE_ROOM = "enterprise_room"
L2_ROOM = "l2_room"
L1_ROOM = "l1_room"
ADMIN_ROOM = "admin_room"

# --- role labels -------------------------------------------------------------------------------

# The one name of each role kind, per locale: /whoami, /help, the roster import's messages, the
# sandbox and the README all show these (templates through the ``role_label`` global).
ROLE_LABELS: dict[str, dict[str, str]] = {
    ADMIN: {"zh_CN": "系统管理员", "en": "system admin"},
    RoleKind.L1_CHIEF: {"zh_CN": "一级网格长", "en": "level-1 grid chief"},
    RoleKind.L1_OFFICE_DIRECTOR: {"zh_CN": "一级网格办公室主任", "en": "level-1 office director"},
    RoleKind.L1_OFFICE_MEMBER: {"zh_CN": "一级网格办公室成员", "en": "level-1 office member"},
    L1_MEMBER: {"zh_CN": "一级网格成员", "en": "level-1 grid member"},
    RoleKind.L2_CHIEF: {"zh_CN": "二级网格长", "en": "level-2 grid chief"},
    RoleKind.L2_OFFICE_MEMBER: {"zh_CN": "二级网格办公室成员", "en": "level-2 office member"},
    RoleKind.L2_MEMBER: {"zh_CN": "二级网格员", "en": "level-2 grid member"},
    RoleKind.ENT_CHIEF: {"zh_CN": "企业负责人", "en": "enterprise chief (level 3)"},
    RoleKind.ENT_MEMBER: {"zh_CN": "企业网格员", "en": "enterprise grid member (level 3)"},
}


def role_label(kind: str, locale: str = "zh_CN") -> str:
    labels = ROLE_LABELS.get(kind)
    if labels is None:
        return kind
    return labels.get(locale) or labels["zh_CN"]


# --- who: the identity of a sender -------------------------------------------------------------


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
    # An admin named in chat for some counties only: their level-1 grids and units (None:
    # every one, as bot.yaml's admins and province-wide admins).
    admin_grids: frozenset[int] | None = None
    admin_units: frozenset[int] | None = None
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
    """Load the current roles and served enterprises of ``user_id``. Admins are bot.yaml's
    ``admins`` (every unit) and those named in chat (storage.admins: every unit or some)."""
    ident = Identity(user_id=user_id, is_admin=user_id in admins)
    if not ident.is_admin:
        named, units = await admin_scope(session, user_id)
        if named:
            ident.is_admin = True
            if units is not None:
                ident.admin_units = units
                ident.admin_grids = await level1_grids_of(session, units)
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


def own_enterprises(ident: Identity) -> list[Enterprise]:
    """The enterprises the sender is chief or member of (whose acknowledgements they give)."""
    found: dict[int, Enterprise] = {}
    for r in ident.roles:
        if r.kind in ENTERPRISE_STAFF and r.enterprise is not None:
            found.setdefault(r.enterprise.id, r.enterprise)
    return list(found.values())


def own_enterprise_ids(ident: Identity) -> list[int]:
    return sorted(e.id for e in own_enterprises(ident))


def is_staff_of(ident: Identity, enterprise_id: int) -> bool:
    """The enterprise's own chief or member: the only people whose acknowledgement counts."""
    return any(e.id == enterprise_id for e in own_enterprises(ident))


def serves(ident: Identity, enterprise_id: int) -> bool:
    return any(e.id == enterprise_id for e in ident.served)


def held_grids(ident: Identity, kinds: Iterable[str]) -> list[Grid]:
    """The grids in which the sender holds one of ``kinds``, by name (each once)."""
    wanted = set(kinds)
    grids = {r.grid.id: r.grid for r in ident.roles if r.kind in wanted and r.grid is not None}
    return sorted(grids.values(), key=lambda g: (g.name, g.id))


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


# --- what they may do: the reach table ---------------------------------------------------------


class Action(enum.StrEnum):
    """Kinds of action whose reach (which enterprises) depends on the actor's roles."""

    SEE = "see"  # read an enterprise's records: cases, notices, /notices, /history, /overdue
    REPORT = "report"  # report a hazard, accident or request for it
    BROADCAST = "broadcast"  # /broadcast
    NOTICE = "notice"  # /notice
    REMIND = "remind"  # /remind: whoever may broadcast or notice, as far as either reaches
    OVERSEE = "oversee"  # read a notice's acknowledgements (/status)
    VISIT = "visit"  # the enterprises one must (and may) visit: /visit
    COVERAGE = "coverage"  # the visit coverage table of /visits (members see their own list)
    DECLARE_STAFF = "declare_staff"  # declare a staff change of the enterprise (/staff)
    DECIDE_STAFF = "decide_staff"  # confirm or reject it (/staff-confirm, /staff-reject)
    REVIEW = "review"  # the work reports and assessment of /report (a member: their own)
    ADMINISTER = "administer"  # the admin room: roster import/export, /coverage, /admin


class Extent(enum.StrEnum):
    """How far one role reaches, seen from the role's own place in the grid."""

    EVERYTHING = "everything"
    L1_GRID = "l1_grid"  # the enterprises of every level-2 grid under its level-1 grid
    L2_GRID = "l2_grid"  # the enterprises of its level-2 grid
    OWN = "own"  # the enterprise itself (its chief and members)
    SERVED = "served"  # the enterprises the person serves (1:N assignments)


_ALL = Extent.EVERYTHING
_L1 = {kind: Extent.L1_GRID for kind in sorted(L1_ROLES)}
_ENT = {kind: Extent.OWN for kind in sorted(ENTERPRISE_STAFF)}
_MEMBER = {RoleKind.L2_MEMBER: Extent.SERVED}

# Where each role kind stands by itself: its own place in the grid. A role is "at" an
# enterprise (in that :class:`Capacity`) when this extent covers it.
NATURAL_EXTENT: dict[str, Extent] = {
    ADMIN: _ALL,
    **_L1,
    RoleKind.L2_CHIEF: Extent.L2_GRID,
    RoleKind.L2_OFFICE_MEMBER: Extent.L2_GRID,
    **_MEMBER,
    **_ENT,
}

# The rule, written once (README "Who reaches which enterprises" is generated from it). A role
# kind missing from a row grants nothing for that action. Order matters only for display and
# for the role a notice's issuer speaks in (the first one held).
RULES: dict[Action, dict[str, Extent]] = {
    # Every role sees the records of the enterprises it stands at.
    Action.SEE: dict(NATURAL_EXTENT),
    Action.REPORT: {
        RoleKind.L2_CHIEF: Extent.L2_GRID,
        RoleKind.L2_OFFICE_MEMBER: Extent.L2_GRID,
        **_MEMBER,
        **_ENT,
    },
    Action.BROADCAST: {ADMIN: _ALL, **_L1},
    Action.NOTICE: {RoleKind.L2_CHIEF: Extent.L2_GRID, **_MEMBER},
    Action.REMIND: {ADMIN: _ALL, **_L1, RoleKind.L2_CHIEF: Extent.L2_GRID, **_MEMBER},
    Action.OVERSEE: {
        ADMIN: _ALL,
        **_L1,
        RoleKind.L2_CHIEF: Extent.L2_GRID,
        RoleKind.L2_OFFICE_MEMBER: Extent.L2_GRID,
        **_MEMBER,
    },
    Action.VISIT: dict(_MEMBER),
    Action.COVERAGE: {
        ADMIN: _ALL,
        **_L1,
        RoleKind.L2_CHIEF: Extent.L2_GRID,
        RoleKind.L2_OFFICE_MEMBER: Extent.L2_GRID,
    },
    Action.DECLARE_STAFF: dict(_ENT),
    Action.DECIDE_STAFF: {**_MEMBER, RoleKind.L2_CHIEF: Extent.L2_GRID},
    Action.REVIEW: {
        ADMIN: _ALL,
        **_L1,
        RoleKind.L2_CHIEF: Extent.L2_GRID,
        RoleKind.L2_OFFICE_MEMBER: Extent.L2_GRID,
        **_MEMBER,
    },
    # Admins only; a county admin administers their county (storage.admins).
    Action.ADMINISTER: {ADMIN: _ALL},
}

# What each action is, for the README's generated table.
ACTION_DOCS: dict[Action, str] = {
    Action.SEE: "read an enterprise's cases and notices (`/history`, `/overdue`, `/notices`, "
    "case steps)",
    Action.REPORT: "report a hazard, accident or request for it (`/hazard`, `/accident`)",
    Action.BROADCAST: "`/broadcast` targets",
    Action.NOTICE: "`/notice` targets",
    Action.REMIND: "`/remind` targets",
    Action.OVERSEE: "read a notice's acknowledgements (`/status`)",
    Action.VISIT: "the enterprises to visit (`/visit`)",
    Action.COVERAGE: "the coverage table of `/visits` (others see their own visits)",
    Action.DECLARE_STAFF: "declare a staff change (`/staff`)",
    Action.DECIDE_STAFF: "confirm or reject it (`/staff-confirm`, `/staff-reject`)",
    Action.REVIEW: "the work reports, indicators and assessment of `/report` (a member: their own)",
    Action.ADMINISTER: "the admin room: `/roster import`, `/roster export`, `/coverage`, "
    "`/admin`, `/health` (a county admin: their county)",
}


def roles_for(action: Action) -> frozenset[str]:
    """The role kinds that reach anything at all for ``action`` (for command access rules)."""
    return frozenset(RULES[action])


@dataclass(frozen=True)
class Place:
    """Where an enterprise sits in the grid: what a reach is checked against."""

    enterprise_id: int
    grid_id: int
    l1_grid_id: int | None


@dataclass(frozen=True)
class Reach:
    """Which enterprises someone reaches: all, or those of some grids plus some by id."""

    everything: bool = False
    l1_grids: frozenset[int] = frozenset()
    l2_grids: frozenset[int] = frozenset()
    enterprises: frozenset[int] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.everything or self.l1_grids or self.l2_grids or self.enterprises)

    def covers(self, place: Place) -> bool:
        return (
            self.everything
            or place.enterprise_id in self.enterprises
            or place.grid_id in self.l2_grids
            or (place.l1_grid_id is not None and place.l1_grid_id in self.l1_grids)
        )

    def __or__(self, other: Reach) -> Reach:
        return Reach(
            self.everything or other.everything,
            self.l1_grids | other.l1_grids,
            self.l2_grids | other.l2_grids,
            self.enterprises | other.enterprises,
        )


def _l1_grid_of(grid: Grid) -> int | None:
    return grid.id if grid.level == 1 else grid.parent_id


def _reach(ident: Identity, rule: Mapping[str, Extent]) -> Reach:
    everything = ident.is_admin and rule.get(ADMIN) is Extent.EVERYTHING
    l1: set[int] = set()
    if everything and ident.admin_grids is not None:
        # A county admin reaches "everything" of their counties only.
        everything = False
        l1.update(ident.admin_grids)
    l2: set[int] = set()
    ents: set[int] = set()
    # Each role anchors its extent at its own grid or enterprise; the derived level-1
    # membership of a level-2 chief anchors at the level-2 grid (whose parent is the level 1).
    anchors = [(r.kind, r.grid, r.enterprise) for r in ident.roles]
    anchors += [(L1_MEMBER, r.grid, None) for r in ident.roles if r.kind == RoleKind.L2_CHIEF]
    for kind, grid, enterprise in anchors:
        extent = rule.get(kind)
        if extent is None:
            continue
        if extent is Extent.EVERYTHING:
            everything = True
        elif extent is Extent.L1_GRID and grid is not None:
            l1_id = _l1_grid_of(grid)
            if l1_id is not None:
                l1.add(l1_id)
        elif extent is Extent.L2_GRID:
            if grid is not None and grid.level == 2:
                l2.add(grid.id)
            elif enterprise is not None:
                l2.add(enterprise.grid_id)
        elif extent is Extent.OWN and enterprise is not None:
            ents.add(enterprise.id)
        elif extent is Extent.SERVED:
            ents.update(e.id for e in ident.served)
    return Reach(everything, frozenset(l1), frozenset(l2), frozenset(ents))


def reach(ident: Identity, action: Action) -> Reach:
    """The enterprises ``ident`` reaches for ``action``, by :data:`RULES` (no SQL)."""
    return _reach(ident, RULES[action])


def may(ident: Identity, action: Action, place: Place) -> bool:
    """Whether ``ident`` may take ``action`` on the enterprise at ``place``."""
    return reach(ident, action).covers(place)


def at_hand(ident: Identity, action: Action) -> list[Enterprise]:
    """The enterprises the sender serves or belongs to (loaded with the identity) that
    ``action`` reaches: a pick list without a query (served ones first, by name)."""
    r = reach(ident, action)
    found = {e.id: e for e in [*ident.served, *own_enterprises(ident)] if e.id in r.enterprises}
    return list(found.values())


async def place_of(session: AsyncSession, enterprise: Enterprise | int) -> Place:
    ent = enterprise
    if not isinstance(ent, Enterprise):
        ent = await session.get(Enterprise, ent)
        assert ent is not None
    grid = await session.get(Grid, ent.grid_id)
    return Place(ent.id, ent.grid_id, grid.parent_id if grid else None)


@dataclass(frozen=True)
class Capacity:
    """In what capacity someone stands to one enterprise: the role kinds they hold at it (its
    staff, a member serving it, its level-2 chief or office, its level-1 chief or office, an
    admin) and the actions :data:`RULES` allows them on it. Case steps check these."""

    place: Place
    kinds: frozenset[str]
    actions: frozenset[Action]

    def may(self, action: Action) -> bool:
        return action in self.actions

    @property
    def sees(self) -> bool:
        return self.may(Action.SEE)

    @property
    def ent_staff(self) -> bool:
        return bool(self.kinds & ENTERPRISE_STAFF)

    @property
    def serves(self) -> bool:
        return RoleKind.L2_MEMBER in self.kinds

    @property
    def l2_chief(self) -> bool:
        return RoleKind.L2_CHIEF in self.kinds

    @property
    def l2_office(self) -> bool:
        return RoleKind.L2_OFFICE_MEMBER in self.kinds

    @property
    def l1_chief(self) -> bool:
        return RoleKind.L1_CHIEF in self.kinds

    @property
    def l1_office(self) -> bool:
        return bool(self.kinds & L1_OFFICE)

    @property
    def admin(self) -> bool:
        return ADMIN in self.kinds

    @property
    def l2_handler(self) -> bool:
        """May act for the level-2 grid: a member serving the enterprise, its office or chief."""
        return self.serves or self.l2_chief or self.l2_office

    @property
    def chief(self) -> bool:
        return self.l2_chief or self.l1_chief


def capacity_at(ident: Identity, place: Place) -> Capacity:
    kinds = {k for k, ext in NATURAL_EXTENT.items() if _reach(ident, {k: ext}).covers(place)}
    actions = {a for a in Action if may(ident, a, place)}
    return Capacity(place, frozenset(kinds), frozenset(actions))


async def capacity(
    session: AsyncSession, ident: Identity, enterprise: Enterprise | int
) -> Capacity:
    return capacity_at(ident, await place_of(session, enterprise))


def _reach_filter(r: Reach) -> ColumnElement[bool]:
    """Rows of Enterprise (joined with its Grid) inside a reach that is not everything."""
    conds: list[ColumnElement[bool]] = []
    if r.l1_grids:
        conds.append(Grid.parent_id.in_(sorted(r.l1_grids)))
    if r.l2_grids:
        conds.append(Enterprise.grid_id.in_(sorted(r.l2_grids)))
    if r.enterprises:
        conds.append(Enterprise.id.in_(sorted(r.enterprises)))
    return or_(*conds) if conds else false()


def reach_clause(r: Reach) -> ColumnElement[bool]:
    """The WHERE clause of a reach that is not everything, over Enterprise joined with its Grid
    (for queries that aggregate over enterprises, e.g. storage/reports.py)."""
    return _reach_filter(r)


async def enterprises_in(
    session: AsyncSession, r: Reach, *, by_name: bool = False
) -> list[Enterprise]:
    """The active enterprises of a reach (with unit and grid loaded), by county and grid, or
    by name (as pick lists show them)."""
    if r.empty:
        return []
    q = (
        select(Enterprise)
        .join(Grid, Grid.id == Enterprise.grid_id)
        .where(Enterprise.active.is_(True))
        .options(selectinload(Enterprise.unit), selectinload(Enterprise.grid))
    )
    if not r.everything:
        q = q.where(_reach_filter(r))
    if by_name:
        q = q.order_by(Enterprise.name, Enterprise.id)
    else:
        q = q.order_by(Enterprise.unit_id, Enterprise.grid_id, Enterprise.name)
    return list(await session.scalars(q))


async def enterprise_ids_in(session: AsyncSession, r: Reach) -> set[int] | None:
    """Ids of the enterprises of a reach, deactivated ones included (their records stay
    readable); None = every enterprise."""
    if r.everything:
        return None
    ids = set(r.enterprises)
    if r.l1_grids or r.l2_grids:
        rows = await session.scalars(
            select(Enterprise.id)
            .join(Grid, Grid.id == Enterprise.grid_id)
            .where(_reach_filter(Reach(l1_grids=r.l1_grids, l2_grids=r.l2_grids)))
        )
        ids.update(rows)
    return ids


async def level2_grids_in(session: AsyncSession, r: Reach) -> list[Grid]:
    """The active level-2 grids a reach covers as a whole (all, or by level-1 / level-2 grid)."""
    q = select(Grid).where(Grid.level == 2, Grid.active.is_(True))
    if not r.everything:
        conds: list[ColumnElement[bool]] = []
        if r.l1_grids:
            conds.append(Grid.parent_id.in_(sorted(r.l1_grids)))
        if r.l2_grids:
            conds.append(Grid.id.in_(sorted(r.l2_grids)))
        if not conds:
            return []
        q = q.where(or_(*conds))
    return list(await session.scalars(q.order_by(Grid.name, Grid.id)))


async def grid_names(session: AsyncSession, grid_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(set(grid_ids))
    if not ids:
        return {}
    rows = await session.execute(select(Grid.id, Grid.name).where(Grid.id.in_(ids)))
    return {gid: name for gid, name in rows}


async def enterprise_names(session: AsyncSession, enterprise_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(set(enterprise_ids))
    if not ids:
        return {}
    rows = await session.execute(
        select(Enterprise.id, Enterprise.name).where(Enterprise.id.in_(ids))
    )
    return {eid: name for eid, name in rows}


# --- whose room --------------------------------------------------------------------------------

# THE tie-break when several rooms of one kind belong to the same grid or enterprise (say an
# enterprise was given a new room): among the rooms the bot has not left, the one it joined
# most recently; rooms it never joined come last; the room id keeps the order stable.
ROOM_ORDER = (RoomInfo.joined_ts.desc().nulls_last(), RoomInfo.room_id)


async def rooms_of(session: AsyncSession, kind: str, keys: Iterable[int]) -> dict[int, str]:
    """The room of ``kind`` of each key: enterprise ids for enterprise rooms, grid ids for
    level-1 / level-2 rooms. Keys without such a room are missing from the result."""
    ids = sorted(set(keys))
    if not ids:
        return {}
    col = RoomInfo.enterprise_id if kind == ENTERPRISE_ROOM else RoomInfo.grid_id
    rows = await session.execute(
        select(col, RoomInfo.room_id)
        .where(RoomInfo.kind == kind, col.in_(ids), RoomInfo.left.is_(False))
        .order_by(*ROOM_ORDER)
    )
    found: dict[int, str] = {}
    for key, room_id in rows:
        found.setdefault(key, room_id)
    return found


async def room_of(session: AsyncSession, kind: str, key: int | None) -> str | None:
    """The room of ``kind`` of one enterprise (enterprise rooms) or grid (the others)."""
    if key is None:
        return None
    return (await rooms_of(session, kind, [key])).get(key)


async def admin_rooms(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(RoomInfo.room_id)
        .where(RoomInfo.kind == ADMIN_ROOM, RoomInfo.left.is_(False))
        .order_by(*ROOM_ORDER)
    )
    return list(rows)


# --- who holds a role --------------------------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """A person to name or mention (``user_id`` None: no Matrix account known)."""

    name: str
    user_id: str | None
    person_id: int | None = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "name": self.name}


def _key(c: Contact) -> object:
    return c.person_id if c.person_id is not None else (c.user_id, c.name)


def unite(*groups: Iterable[Contact]) -> list[Contact]:
    """The people of several lists, each once (where they first appear): someone who is both a
    level-2 chief and office director is mentioned and named once."""
    seen: set[object] = set()
    out: list[Contact] = []
    for group in groups:
        for c in group:
            if _key(c) not in seen:
                seen.add(_key(c))
                out.append(c)
    return out


def _contact(p: Person) -> Contact:
    return Contact(p.name, p.matrix_id, p.id)


async def _holders_by_kind(
    session: AsyncSession,
    kinds: Iterable[str],
    key_col: Any,
    keys: Iterable[int],
    *,
    with_account: bool,
) -> dict[tuple[int, str], list[Contact]]:
    """Current, active holders of ``kinds`` per (grid or enterprise id, kind), by name."""
    ids, wanted = sorted(set(keys)), sorted(set(kinds))
    if not ids or not wanted:
        return {}
    q = (
        select(key_col, Role.kind, Person)
        .join(Role, Role.person_id == Person.id)
        .where(
            Role.kind.in_(wanted),
            Role.until.is_(None),
            key_col.in_(ids),
            Person.active.is_(True),
        )
        .order_by(Role.kind, Person.name, Person.id)
    )
    if with_account:
        q = q.where(Person.matrix_id.is_not(None))
    out: dict[tuple[int, str], list[Contact]] = defaultdict(list)
    for key, kind, person in await session.execute(q):
        out[(key, kind)] = unite(out[(key, kind)], [_contact(person)])
    return dict(out)


async def _holders_by(
    session: AsyncSession,
    kinds: Iterable[str],
    key_col: Any,
    keys: Iterable[int],
    *,
    with_account: bool,
) -> dict[int, list[Contact]]:
    by_kind = await _holders_by_kind(session, kinds, key_col, keys, with_account=with_account)
    out: dict[int, list[Contact]] = {}
    for (key, _kind), people in sorted(by_kind.items(), key=lambda kv: kv[0][1]):
        out[key] = unite(out.get(key, []), people)
    return out


async def holders_by_grid(
    session: AsyncSession,
    kinds: Iterable[str],
    grid_ids: Iterable[int],
    *,
    with_account: bool = False,
) -> dict[int, list[Contact]]:
    """Current, active holders of any of ``kinds`` in each grid (by kind, then name)."""
    return await _holders_by(session, kinds, Role.grid_id, grid_ids, with_account=with_account)


async def holders_by_enterprise(
    session: AsyncSession,
    kinds: Iterable[str],
    enterprise_ids: Iterable[int],
    *,
    with_account: bool = False,
) -> dict[int, list[Contact]]:
    return await _holders_by(
        session, kinds, Role.enterprise_id, enterprise_ids, with_account=with_account
    )


async def holders(
    session: AsyncSession,
    kinds: Iterable[str],
    *,
    grid_id: int | None = None,
    enterprise_id: int | None = None,
    with_account: bool = False,
) -> list[Contact]:
    """Current, active holders of any of ``kinds`` in one grid or one enterprise."""
    if enterprise_id is not None:
        found = await holders_by_enterprise(
            session, kinds, [enterprise_id], with_account=with_account
        )
        return found.get(enterprise_id, [])
    if grid_id is not None:
        by_grid = await holders_by_grid(session, kinds, [grid_id], with_account=with_account)
        return by_grid.get(grid_id, [])
    return []


async def serving_members_by_enterprise(
    session: AsyncSession, enterprise_ids: Iterable[int], *, with_account: bool = False
) -> dict[int, list[Contact]]:
    """The level-2 members currently assigned to each enterprise (by name)."""
    ids = sorted(set(enterprise_ids))
    if not ids:
        return {}
    q = (
        select(Assignment.enterprise_id, Person)
        .join(Person, Person.id == Assignment.person_id)
        .where(
            Assignment.enterprise_id.in_(ids),
            Assignment.until.is_(None),
            Person.active.is_(True),
        )
        .order_by(Person.name, Person.id)
    )
    if with_account:
        q = q.where(Person.matrix_id.is_not(None))
    out: dict[int, list[Contact]] = {}
    for key, person in await session.execute(q):
        out[key] = unite(out.get(key, []), [_contact(person)])
    return out


async def serving_members(session: AsyncSession, enterprise_id: int) -> list[Contact]:
    return (await serving_members_by_enterprise(session, [enterprise_id])).get(enterprise_id, [])


async def enterprise_contacts(
    session: AsyncSession, enterprise_ids: Iterable[int]
) -> dict[int, list[Contact]]:
    """Whom to mention for each enterprise: its chief(s) with a Matrix id, else its members."""
    ids = sorted(set(enterprise_ids))
    found = await holders_by_enterprise(session, {RoleKind.ENT_CHIEF}, ids, with_account=True)
    missing = [i for i in ids if not found.get(i)]
    if missing:
        found.update(
            await holders_by_enterprise(session, {RoleKind.ENT_MEMBER}, missing, with_account=True)
        )
    return found


async def people_who_may(session: AsyncSession, action: Action, place: Place) -> list[Contact]:
    """Everyone in the roster whom :data:`RULES` allows ``action`` at ``place`` (admins, who
    are configuration rather than roster, excepted), in the order of the rule."""
    groups: list[list[Contact]] = []
    for kind, extent in RULES[action].items():
        if extent is Extent.SERVED:
            groups.append(await serving_members(session, place.enterprise_id))
        elif extent is Extent.OWN:
            groups.append(await holders(session, {kind}, enterprise_id=place.enterprise_id))
        elif extent is Extent.L2_GRID:
            groups.append(await holders(session, {kind}, grid_id=place.grid_id))
        elif extent is Extent.L1_GRID:
            groups.append(await holders(session, {kind}, grid_id=place.l1_grid_id))
    return unite(*groups)


@dataclass(frozen=True)
class EnterpriseCircle:
    """Everyone and every room around one enterprise, right now: whom a case or a notice about
    it concerns, and where to tell them."""

    enterprise: Enterprise
    place: Place
    staff: list[Contact]  # its chief and members
    members: list[Contact]  # the level-2 members serving it
    l2_chiefs: list[Contact]
    l2_office: list[Contact]
    l1_chiefs: list[Contact]
    l1_office: list[Contact]
    ent_room: str | None
    l2_room: str | None
    l1_room: str | None


async def circle_of(session: AsyncSession, enterprise_id: int) -> EnterpriseCircle:
    ent = await session.get(Enterprise, enterprise_id)
    assert ent is not None
    place = await place_of(session, ent)
    l2, l1 = place.grid_id, place.l1_grid_id
    grids = [l2] if l1 is None else [l2, l1]
    kinds = {RoleKind.L2_CHIEF, RoleKind.L2_OFFICE_MEMBER, *L1_ROLES}
    found = await _holders_by_kind(session, kinds, Role.grid_id, grids, with_account=False)

    def at(grid_id: int | None, *wanted: str) -> list[Contact]:
        if grid_id is None:
            return []
        return unite(*(found.get((grid_id, k), []) for k in wanted))

    return EnterpriseCircle(
        enterprise=ent,
        place=place,
        staff=await holders(session, ENTERPRISE_STAFF, enterprise_id=ent.id),
        members=await serving_members(session, ent.id),
        l2_chiefs=at(l2, RoleKind.L2_CHIEF),
        l2_office=at(l2, RoleKind.L2_OFFICE_MEMBER),
        l1_chiefs=at(l1, RoleKind.L1_CHIEF),
        l1_office=at(l1, *sorted(L1_OFFICE)),
        ent_room=await room_of(session, ENTERPRISE_ROOM, ent.id),
        l2_room=await room_of(session, L2_ROOM, l2),
        l1_room=await room_of(session, L1_ROOM, l1),
    )

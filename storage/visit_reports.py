"""Monthly visit compliance: who had to visit which enterprise, and how often they did.

The duty is per (member, enterprise) pair: every level-2 member visits every enterprise they
serve at least once a month. A pair counts for a month when the assignment overlaps it, so a
member who took an enterprise over mid-month still owes that month's visit, and history stays
true after people or enterprises leave the roster. A month is given by its first and last
day (bot.dates.month_bounds).

Each visit counted is also marked where it was made (storage.visits.siting: 现场 on site, 异地
away, 未定位 not located) against the on-site radius the caller passes (config
``visits.onsite_radius_m``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Assignment, Enterprise, Grid, Person
from storage.visits import AWAY, NOT_LOCATED, ON_SITE, ONSITE_RADIUS_M, Siting, Visit, siting


@dataclass(frozen=True)
class VisitMark:
    """One visit of a pair in the month: its id, day and where it was made."""

    code: str
    day: date
    siting: Siting


@dataclass
class Sitings:
    """How many visits were on site, away and not located, and the farthest away (metres)."""

    onsite: int = 0
    away: int = 0
    unlocated: int = 0
    farthest: float | None = None

    def add(self, mark: Siting) -> None:
        if mark.kind == ON_SITE:
            self.onsite += 1
        elif mark.kind == AWAY:
            self.away += 1
            if mark.distance_m is not None:
                self.farthest = max(self.farthest or 0.0, mark.distance_m)
        elif mark.kind == NOT_LOCATED:
            self.unlocated += 1


def tally(marks: Iterable[Siting]) -> Sitings:
    out = Sitings()
    for mark in marks:
        out.add(mark)
    return out


@dataclass
class Pair:
    person_id: int
    person_name: str
    matrix_id: str | None
    enterprise_id: int
    enterprise_name: str
    grid_id: int
    until: date | None
    visits: int = 0
    last: date | None = None
    # The month's visits, in date order, each marked on site / away / not located.
    marks: list[VisitMark] = field(default_factory=list)

    @property
    def visited(self) -> bool:
        return self.visits > 0

    @property
    def sitings(self) -> Sitings:
        return tally(m.siting for m in self.marks)


@dataclass
class MemberRow:
    person_id: int
    name: str
    matrix_id: str | None
    pairs: list[Pair] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.pairs)

    @property
    def visited(self) -> int:
        return sum(1 for p in self.pairs if p.visited)

    @property
    def visits(self) -> int:
        return sum(p.visits for p in self.pairs)

    @property
    def missing(self) -> list[Pair]:
        return [p for p in self.pairs if not p.visited]

    @property
    def sitings(self) -> Sitings:
        return tally(m.siting for p in self.pairs for m in p.marks)


@dataclass
class GridCoverage:
    grid_id: int
    name: str
    members: list[MemberRow]
    # Active enterprises of the grid that no member serves in the month (blind spots).
    unserved: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(m.total for m in self.members)

    @property
    def visited(self) -> int:
        return sum(m.visited for m in self.members)


def rate(visited: int, total: int) -> int | None:
    """Coverage in whole percent; None when nothing was due (say so, not "100% (0/0)")."""
    return round(100 * visited / total) if total else None


async def pairs_for_month(
    session: AsyncSession,
    month: tuple[date, date],
    *,
    grid_ids: Iterable[int] | None = None,
    person_id: int | None = None,
    upto: date | None = None,
    radius_m: float = ONSITE_RADIUS_M,
) -> list[Pair]:
    """Every (member, enterprise) pair due in the month (its first and last day), with visits
    counted up to ``upto``, each marked against ``radius_m``."""
    first, last = month
    end = min(last, upto) if upto else last
    q = (
        select(Assignment, Person, Enterprise)
        .join(Person, Person.id == Assignment.person_id)
        .join(Enterprise, Enterprise.id == Assignment.enterprise_id)
        .where(
            Assignment.since <= end,
            or_(Assignment.until.is_(None), Assignment.until >= first),
            or_(Enterprise.active.is_(True), Enterprise.deactivated_on >= first),
            or_(Person.active.is_(True), Person.deactivated_on >= first),
        )
    )
    if grid_ids is not None:
        q = q.where(Enterprise.grid_id.in_(list(grid_ids)))
    if person_id is not None:
        q = q.where(Assignment.person_id == person_id)
    pairs: dict[tuple[int, int], Pair] = {}
    for a, p, e in await session.execute(q):
        key = (p.id, e.id)
        known = pairs.get(key)
        if known is None:
            pairs[key] = Pair(p.id, p.name, p.matrix_id, e.id, e.name, e.grid_id, a.until)
        elif known.until is not None and (a.until is None or a.until > known.until):
            known.until = a.until
    if not pairs:
        return []
    visits = await session.execute(
        select(
            Visit.person_id,
            Visit.enterprise_id,
            Visit.code,
            Visit.visit_date,
            Visit.latitude,
            Visit.accuracy_m,
            Visit.distance_m,
        )
        .where(
            Visit.visit_date >= first,
            Visit.visit_date <= end,
            Visit.person_id.in_({k[0] for k in pairs}),
        )
        .order_by(Visit.visit_date, Visit.id)
    )
    for pid, eid, code, day, latitude, accuracy, distance in visits:
        pair = pairs.get((pid, eid))
        if pair is None:
            continue
        mark = siting(distance, radius_m, shared=latitude is not None, accuracy_m=accuracy)
        pair.marks.append(VisitMark(code, day, mark))
        pair.visits, pair.last = pair.visits + 1, day
    return sorted(pairs.values(), key=lambda x: (x.person_name, x.person_id, x.enterprise_name))


def by_member(pairs: Iterable[Pair]) -> list[MemberRow]:
    rows: dict[int, MemberRow] = {}
    for p in pairs:
        row = rows.setdefault(p.person_id, MemberRow(p.person_id, p.person_name, p.matrix_id))
        row.pairs.append(p)
    return list(rows.values())


async def level1_grids(session: AsyncSession) -> list[Grid]:
    """Active level-1 grids (counties), by name."""
    q = select(Grid).where(Grid.level == 1, Grid.active.is_(True))
    return list(await session.scalars(q.order_by(Grid.name, Grid.id)))


async def level2_grids(
    session: AsyncSession, *, parent_ids: Iterable[int] | None = None
) -> list[Grid]:
    """Active level-2 grids, all of them or those under the given level-1 grids."""
    q = select(Grid).where(Grid.level == 2, Grid.active.is_(True))
    if parent_ids is not None:
        q = q.where(Grid.parent_id.in_(list(parent_ids)))
    return list(await session.scalars(q.order_by(Grid.name, Grid.id)))


async def coverage(
    session: AsyncSession,
    month: tuple[date, date],
    grids: list[Grid],
    *,
    upto: date | None = None,
    radius_m: float = ONSITE_RADIUS_M,
) -> list[GridCoverage]:
    """Per grid: the member × enterprise pairs of the month, and enterprises nobody serves."""
    if not grids:
        return []
    ids = [g.id for g in grids]
    pairs = await pairs_for_month(session, month, grid_ids=ids, upto=upto, radius_m=radius_m)
    first, last = month
    served = {p.enterprise_id for p in pairs}
    enterprises = await session.execute(
        select(Enterprise.id, Enterprise.name, Enterprise.grid_id)
        .where(
            Enterprise.grid_id.in_(ids),
            or_(Enterprise.created_on.is_(None), Enterprise.created_on <= last),
            or_(Enterprise.active.is_(True), Enterprise.deactivated_on >= first),
        )
        .order_by(Enterprise.name)
    )
    unserved: dict[int, list[str]] = {}
    for eid, name, gid in enterprises:
        if eid not in served:
            unserved.setdefault(gid, []).append(name)
    return [
        GridCoverage(
            g.id,
            g.name,
            by_member(p for p in pairs if p.grid_id == g.id),
            unserved.get(g.id, []),
        )
        for g in grids
    ]

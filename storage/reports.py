"""The grid's work over a period, aggregated in SQL: the numbers behind /report (issue 16).

Every function here answers one question for a set of enterprises (a directory ``Reach``)
over a :class:`Window` and groups the answer by a unit (:class:`By`: county, level-2 grid,
enterprise or member). The database does the counting: each query returns one row per unit
(or per unit and month), never the records themselves, except for the short lists a report
names (misses, gaps, major hazards, accidents) and the people of the training check.

Records are counted when they happened inside the window (a visit's day, a notice's issue, a
hazard's report, a request's raising, an accident's occurrence); their states are counted as
they were at the window's cut-off (the end of the period, or now for the period in progress),
from the timestamps and the append-only case audit, so a past report stays what it was.

A member's share of what happened at an enterprise (notices, hazards, requests) goes to the
member(s) assigned to it at the moment of the record; visits are the member's own.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Select,
    and_,
    case,
    cast,
    distinct,
    false,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.cases import (
    GENERAL,
    MAJOR,
    Accident,
    CaseEvent,
    CaseRequest,
    Hazard,
)
from storage.directory import Reach, reach_clause
from storage.models import (
    AdminUnit,
    Assignment,
    Enterprise,
    Grid,
    Person,
    Role,
    RoleKind,
    StaffChange,
    UTCDateTime,
)
from storage.notices import Notice, NoticeFeedback, NoticeTarget
from storage.visits import Meeting, Training, TrainingAttendee, Visit

# Level-2 roles that must be trained before they start and every year (先培训、后上岗).
TRAINED_ROLES = (RoleKind.L2_CHIEF, RoleKind.L2_OFFICE_MEMBER, RoleKind.L2_MEMBER)


class By(enum.StrEnum):
    """What one row of a report is."""

    TOTAL = "total"  # one row for the whole scope (key None)
    COUNTY = "county"  # a level-1 grid (a county or a province-level body)
    DOMAIN = "domain"  # a level-2 grid
    ENTERPRISE = "enterprise"
    MEMBER = "member"  # a person: a level-2 member (or, for meetings, the chief)


@dataclass(frozen=True)
class Window:
    """A period in local calendar days and the UTC instants that bound it.

    ``start``/``end``: local midnight of ``first`` and of the day after ``last``; ``cutoff``:
    the instant states are read at (``end``, or now for a period in progress) and ``cut_day``
    its local day. ``months`` and ``quarters`` are the calendar months / quarters of the
    period, each as (first day, last day counted, start instant, end instant).
    """

    first: date
    last: date
    start: datetime
    end: datetime
    cutoff: datetime
    cut_day: date
    months: tuple[tuple[date, date, datetime, datetime], ...] = ()
    quarters: tuple[tuple[date, date], ...] = ()  # quarters ended by cut_day


@dataclass(frozen=True)
class Scope:
    """Which enterprises (a directory reach) and, for a member's own report, whose visits."""

    reach: Reach
    person_id: int | None = None


Key = int | None


# --- helpers ---------------------------------------------------------------------------------


async def _dialect(session: AsyncSession) -> str:
    return (await session.connection()).dialect.name


def _hours(dialect: str, start: Any, end: Any) -> ColumnElement[Any]:
    """Hours from ``start`` to ``end`` (two timestamp expressions), as a float."""
    if dialect == "postgresql":
        return func.extract("epoch", end - start) / 3600.0
    return (func.julianday(end) - func.julianday(start)) * 24.0


def _n(value: Any) -> int:
    return int(value or 0)


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def _count_if(cond: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.sum(case((cond, 1), else_=0))


# The one key of By.TOTAL. A cast, not a bare NULL: PostgreSQL refuses a constant in GROUP BY.
_NO_KEY: Any = cast(null(), Integer)


def _enterprise_key(by: By) -> ColumnElement[Any]:
    """The unit column for queries over Enterprise joined with its Grid (MEMBER: Assignment)."""
    if by is By.TOTAL:
        return _NO_KEY
    if by is By.COUNTY:
        return Grid.parent_id
    if by is By.DOMAIN:
        return Enterprise.grid_id
    if by is By.ENTERPRISE:
        return Enterprise.id
    # "+ 0": grouping by the bare column lets SQLite walk all assignments in person order (to
    # spare a sort) and look every record up from there, several times slower than starting
    # from the period's records; PostgreSQL plans the same either way.
    return Assignment.person_id + literal_column("0")


def _scope_where(scope: Scope) -> ColumnElement[bool]:
    return true() if scope.reach.everything else reach_clause(scope.reach)


def _over_enterprises(
    q: Select[Any], enterprise_col: Any, scope: Scope, by: By, at: Any | None = None
) -> Select[Any]:
    """Join a query over records of enterprises with Enterprise, Grid and (MEMBER) the
    assignment that covered the record's moment ``at``; restrict it to the scope."""
    q = q.join(Enterprise, Enterprise.id == enterprise_col).join(
        Grid, Grid.id == Enterprise.grid_id
    )
    if by is By.MEMBER or scope.person_id is not None:
        cond = [Assignment.enterprise_id == Enterprise.id]
        if at is not None:
            cond += [
                Assignment.since <= at,
                or_(Assignment.until.is_(None), Assignment.until >= at),
            ]
        q = q.join(Assignment, and_(*cond))
        if scope.person_id is not None:
            q = q.where(Assignment.person_id == scope.person_id)
    return q.where(_scope_where(scope))


def _grid_where(scope: Scope) -> ColumnElement[bool]:
    """Level-2 grids (the Grid table) a reach covers as a whole or in part."""
    r = scope.reach
    if r.everything:
        return true()
    conds: list[ColumnElement[bool]] = []
    if r.l1_grids:
        conds.append(Grid.parent_id.in_(sorted(r.l1_grids)))
    if r.l2_grids:
        conds.append(Grid.id.in_(sorted(r.l2_grids)))
    if r.enterprises:
        conds.append(
            Grid.id.in_(select(Enterprise.grid_id).where(Enterprise.id.in_(sorted(r.enterprises))))
        )
    return or_(*conds) if conds else false()


def _l1_where(scope: Scope, col: Any) -> ColumnElement[bool]:
    """Level-1 grid ids (``col``) inside the scope: its counties, or the counties of its grids."""
    r = scope.reach
    if r.everything:
        return true()
    ids = set(r.l1_grids)
    parents = select(Grid.parent_id).where(_grid_where(Scope(Reach(l2_grids=r.l2_grids))))
    conds: list[ColumnElement[bool]] = []
    if ids:
        conds.append(col.in_(sorted(ids)))
    if r.l2_grids:
        conds.append(col.in_(parents))
    return or_(*conds) if conds else false()


def _months_cte(window: Window, name: str = "months") -> Any:
    """The window's months as a CTE (m, first, last, start, end), portable to both backends."""
    rows = [
        select(
            literal(i, Integer).label("m"),
            literal(first, Date).label("first"),
            literal(last, Date).label("last"),
            literal(start, UTCDateTime()).label("start"),
            literal(end, UTCDateTime()).label("end"),
        )
        for i, (first, last, start, end) in enumerate(window.months)
    ]
    return (union_all(*rows) if len(rows) > 1 else rows[0]).cte(name)


def _quarters_cte(window: Window) -> Any:
    rows = [
        select(
            literal(i, Integer).label("q"),
            literal(first, Date).label("first"),
            literal(last, Date).label("last"),
        )
        for i, (first, last) in enumerate(window.quarters)
    ]
    return (union_all(*rows) if len(rows) > 1 else rows[0]).cte("quarters")


async def prepare(session: AsyncSession) -> None:
    """Give this transaction room to aggregate: PostgreSQL's default 4 MB of work memory makes
    a province's year spill its hash tables to disk. ``SET LOCAL`` ends with the transaction."""
    if await _dialect(session) == "postgresql":
        await session.execute(text("SET LOCAL work_mem = '64MB'"))


# --- units -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    key: Key
    name: str
    # The county (for grids, enterprises, members) and the city (for counties), for grouping.
    parent: str = ""
    kind: str = ""
    group: Key = None  # an enterprise's level-2 grid


async def counties(session: AsyncSession, scope: Scope) -> list[Unit]:
    """The level-1 grids in scope (active), named by their county, with their city."""
    City = aliased(AdminUnit)
    q = (
        select(Grid.id, AdminUnit.name, City.name)
        .join(AdminUnit, AdminUnit.id == Grid.unit_id)
        .outerjoin(City, City.id == AdminUnit.parent_id)
        .where(Grid.level == 1, Grid.active.is_(True), _l1_where(scope, Grid.id))
        .order_by(AdminUnit.name, Grid.id)
    )
    return [Unit(gid, name, city or "") for gid, name, city in await session.execute(q)]


async def domains(session: AsyncSession, scope: Scope) -> list[Unit]:
    """The active level-2 grids in scope, named by domain, with their county."""
    q = (
        select(Grid.id, Grid.domain, Grid.name, AdminUnit.name)
        .join(AdminUnit, AdminUnit.id == Grid.unit_id)
        .where(Grid.level == 2, Grid.active.is_(True), _grid_where(scope))
        .order_by(AdminUnit.name, Grid.name, Grid.id)
    )
    return [
        Unit(gid, domain or name, county) for gid, domain, name, county in await session.execute(q)
    ]


async def enterprises(session: AsyncSession, scope: Scope, window: Window) -> list[Unit]:
    """The enterprises in scope that were in the grid at some time in the window."""
    q = (
        select(Enterprise.id, Enterprise.name, Grid.domain, Enterprise.type, Enterprise.grid_id)
        .join(Grid, Grid.id == Enterprise.grid_id)
        .where(
            _scope_where(scope),
            or_(Enterprise.created_on.is_(None), Enterprise.created_on <= window.cut_day),
            or_(Enterprise.active.is_(True), Enterprise.deactivated_on >= window.first),
        )
        .order_by(Enterprise.name, Enterprise.id)
    )
    if scope.person_id is not None:
        q = q.where(
            Enterprise.id.in_(
                select(Assignment.enterprise_id).where(
                    Assignment.person_id == scope.person_id,
                    Assignment.since <= window.cut_day,
                    or_(Assignment.until.is_(None), Assignment.until >= window.first),
                )
            )
        )
    return [
        Unit(eid, name, domain, etype, gid)
        for eid, name, domain, etype, gid in await session.execute(q)
    ]


@dataclass(frozen=True)
class GridPerson:
    person_id: int
    name: str
    matrix_id: str | None
    kind: str
    grid_id: int
    grid: str  # the level-2 grid's domain
    l1_grid_id: int | None
    since: date  # start of the role held at the cut-off (the earliest, if held twice)


async def grid_people(
    session: AsyncSession, scope: Scope, first: date, last: date, kinds: Iterable[str]
) -> list[GridPerson]:
    """People holding one of ``kinds`` in a level-2 grid in scope at any time from ``first``
    to ``last`` (one row per person, kind and grid), by county, grid, kind and name."""
    q = (
        select(
            Person.id,
            Person.name,
            Person.matrix_id,
            Role.kind,
            Grid.id,
            Grid.domain,
            Grid.parent_id,
            func.min(Role.since),
        )
        .join(Role, Role.person_id == Person.id)
        .join(Grid, Grid.id == Role.grid_id)
        .where(
            Role.kind.in_(sorted(kinds)),
            Role.since <= last,
            or_(Role.until.is_(None), Role.until >= first),
            Grid.level == 2,
            _grid_where(scope),
        )
        .group_by(
            Person.id,
            Person.name,
            Person.matrix_id,
            Role.kind,
            Grid.id,
            Grid.domain,
            Grid.parent_id,
        )
        .order_by(Grid.parent_id, Grid.domain, Role.kind, Person.name, Person.id)
    )
    if scope.person_id is not None:
        q = q.where(Person.id == scope.person_id)
    return [GridPerson(*row) for row in await session.execute(q)]


# --- coverage ------------------------------------------------------------------------------


@dataclass
class Coverage:
    enterprises: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    with_chief: int = 0  # an enterprise chief (三级网格长)
    with_l2_chief: int = 0  # its level-2 grid has a chief
    with_member: int = 0  # a level-2 member serves it
    complete: int = 0  # all three: no blind spot
    staff_changes: int = 0  # staff changes confirmed in the window


@dataclass(frozen=True)
class Gap:
    key: Key
    enterprise: str
    grid: str
    no_chief: bool
    no_l2_chief: bool
    no_member: bool


def _coverage_flags(day: date) -> tuple[Any, Any, Any, list[tuple[Any, Any]]]:
    """Flags over Enterprise: it has an enterprise chief, its grid a level-2 chief, a member
    serves it, each on ``day``; and the outer joins that give them (distinct id lists joined
    once, hashed by the database: an EXISTS per enterprise and flag was many times slower)."""
    R, P, A = aliased(Role), aliased(Person), aliased(Assignment)

    def holders(kind: str, col: Any, name: str) -> Any:
        return (
            select(col.label("id"))
            .join(P, P.id == R.person_id)
            .where(
                R.kind == kind,
                R.since <= day,
                or_(R.until.is_(None), R.until >= day),
                or_(P.active.is_(True), P.deactivated_on > day),
            )
            .distinct()
            .subquery(name)
        )

    chiefs = holders(RoleKind.ENT_CHIEF, R.enterprise_id, "chiefs")
    l2_chiefs = holders(RoleKind.L2_CHIEF, R.grid_id, "l2_chiefs")
    members = (
        select(A.enterprise_id.label("id"))
        .where(A.since <= day, or_(A.until.is_(None), A.until >= day))
        .distinct()
        .subquery("served")
    )
    joins = [
        (chiefs, chiefs.c.id == Enterprise.id),
        (l2_chiefs, l2_chiefs.c.id == Enterprise.grid_id),
        (members, members.c.id == Enterprise.id),
    ]
    return chiefs.c.id.is_not(None), l2_chiefs.c.id.is_not(None), members.c.id.is_not(None), joins


def _present_on(day: date) -> ColumnElement[bool]:
    """An enterprise in the grid on ``day``: created by then, not deactivated by then."""
    return and_(
        or_(Enterprise.created_on.is_(None), Enterprise.created_on <= day),
        or_(Enterprise.active.is_(True), Enterprise.deactivated_on > day),
    )


async def coverage(
    session: AsyncSession, scope: Scope, window: Window, by: By
) -> dict[Key, Coverage]:
    """The grid as it stood on the cut-off day: enterprises by type and whether each has an
    enterprise chief, a level-2 chief over its grid and a level-2 member serving it."""
    day = window.cut_day
    chief, l2_chief, member, joins = _coverage_flags(day)
    key = _enterprise_key(by)
    q = (
        select(
            key,
            Enterprise.type,
            func.count(),
            _count_if(chief),
            _count_if(l2_chief),
            _count_if(member),
            _count_if(and_(chief, l2_chief, member)),
        )
        .select_from(Enterprise)
        .join(Grid, Grid.id == Enterprise.grid_id)
        .where(_present_on(day), _scope_where(scope))
        .group_by(key, Enterprise.type)
    )
    for table, on in joins:
        q = q.outerjoin(table, on)
    if by is By.MEMBER or scope.person_id is not None:
        q = q.join(
            Assignment,
            and_(
                Assignment.enterprise_id == Enterprise.id,
                Assignment.since <= day,
                or_(Assignment.until.is_(None), Assignment.until >= day),
            ),
        )
        if scope.person_id is not None:
            q = q.where(Assignment.person_id == scope.person_id)
    out: dict[Key, Coverage] = defaultdict(Coverage)
    for k, etype, n, c, lc, m, full in await session.execute(q):
        row = out[k]
        row.enterprises += _n(n)
        row.by_type[etype] = row.by_type.get(etype, 0) + _n(n)
        row.with_chief += _n(c)
        row.with_l2_chief += _n(lc)
        row.with_member += _n(m)
        row.complete += _n(full)
    if by is not By.MEMBER:
        changes = _over_enterprises(
            select(key, func.count()).select_from(StaffChange),
            StaffChange.enterprise_id,
            scope,
            by,
        ).where(
            StaffChange.status == "confirmed",
            StaffChange.decided_at >= window.start,
            StaffChange.decided_at < window.cutoff,
        )
        for k, n in await session.execute(changes.group_by(key)):
            out[k].staff_changes = _n(n)
    return dict(out)


async def coverage_gaps(
    session: AsyncSession, scope: Scope, window: Window, by: By, *, limit: int = 2000
) -> list[Gap]:
    """The enterprises that lacked a chief, a level-2 chief or a member on the cut-off day."""
    day = window.cut_day
    chief, l2_chief, member, joins = _coverage_flags(day)
    key = _enterprise_key(by) if by is not By.MEMBER else Enterprise.grid_id
    q = (
        select(key, Enterprise.name, Grid.domain, chief, l2_chief, member)
        .select_from(Enterprise)
        .join(Grid, Grid.id == Enterprise.grid_id)
    )
    for table, on in joins:
        q = q.outerjoin(table, on)
    q = (
        q.where(_present_on(day), _scope_where(scope), ~and_(chief, l2_chief, member))
        .order_by(Grid.parent_id, Grid.domain, Enterprise.name)
        .limit(limit)
    )
    return [
        Gap(k, name, domain, not c, not lc, not m)
        for k, name, domain, c, lc, m in await session.execute(q)
    ]


# --- visits ---------------------------------------------------------------------------------


@dataclass
class VisitCount:
    due: int = 0  # (member, enterprise, month) triples due
    visited: int = 0  # of those, visited at least once in their month
    visits: int = 0  # visits made by the due pairs


@dataclass(frozen=True)
class Miss:
    month: int  # index into window.months
    member: str
    enterprise: str
    grid: str


def _pairs(scope: Scope, window: Window, by: By, months: Any) -> Any:
    """(member, enterprise, month) triples due in the window, like /visits counts them: the
    assignment overlaps the month (up to the cut-off day), person and enterprise active then."""
    key = _enterprise_key(by) if by is not By.MEMBER else Assignment.person_id
    q = (
        select(
            Assignment.person_id.label("person_id"),
            Assignment.enterprise_id.label("enterprise_id"),
            months.c.m.label("m"),
            key.label("k"),
        )
        .distinct()
        .select_from(Assignment)
        .join(
            months,
            and_(
                Assignment.since <= months.c.last,
                or_(Assignment.until.is_(None), Assignment.until >= months.c.first),
            ),
        )
        .join(Enterprise, Enterprise.id == Assignment.enterprise_id)
        .join(Grid, Grid.id == Enterprise.grid_id)
        .join(Person, Person.id == Assignment.person_id)
        .where(
            or_(Enterprise.active.is_(True), Enterprise.deactivated_on >= months.c.first),
            or_(Person.active.is_(True), Person.deactivated_on >= months.c.first),
            _scope_where(scope),
        )
    )
    if scope.person_id is not None:
        q = q.where(Assignment.person_id == scope.person_id)
    return q.subquery("pairs")


def _visits_by_month(scope: Scope, window: Window, months: Any) -> Any:
    """Visits per (member, enterprise, month) in the window: joined to the pairs by equality
    (a range join of every pair with its visits costs far more)."""
    q = (
        select(
            Visit.person_id.label("person_id"),
            Visit.enterprise_id.label("enterprise_id"),
            months.c.m.label("m"),
            func.count(Visit.id).label("n"),
        )
        .select_from(Visit)
        .join(months, and_(Visit.visit_date >= months.c.first, Visit.visit_date <= months.c.last))
        .join(Enterprise, Enterprise.id == Visit.enterprise_id)
        .join(Grid, Grid.id == Enterprise.grid_id)
        .where(
            Visit.visit_date >= window.months[0][0],
            Visit.visit_date <= window.cut_day,
            _scope_where(scope),
        )
        .group_by(Visit.person_id, Visit.enterprise_id, months.c.m)
    )
    if scope.person_id is not None:
        q = q.where(Visit.person_id == scope.person_id)
    return q.subquery("visited_months")


def _visited_pairs(scope: Scope, window: Window, by: By) -> Any:
    months = _months_cte(window)
    pairs = _pairs(scope, window, by, months)
    made = _visits_by_month(scope, window, months)
    return (
        select(
            pairs.c.k,
            pairs.c.m,
            pairs.c.person_id,
            pairs.c.enterprise_id,
            func.coalesce(made.c.n, 0).label("n"),
        )
        .select_from(pairs)
        .outerjoin(
            made,
            and_(
                made.c.person_id == pairs.c.person_id,
                made.c.enterprise_id == pairs.c.enterprise_id,
                made.c.m == pairs.c.m,
            ),
        )
        .subquery("visited")
    )


async def visits(
    session: AsyncSession, scope: Scope, window: Window, by: By
) -> dict[tuple[Key, int], VisitCount]:
    """Per unit and month (index into ``window.months``): pairs due, visited, visits."""
    if not window.months:
        return {}
    v = _visited_pairs(scope, window, by)
    q = select(
        v.c.k, v.c.m, func.count(), _count_if(v.c.n > 0), func.coalesce(func.sum(v.c.n), 0)
    ).group_by(v.c.k, v.c.m)
    return {
        (k, int(m)): VisitCount(_n(due), _n(done), _n(n))
        for k, m, due, done, n in await session.execute(q)
    }


async def visit_misses(
    session: AsyncSession, scope: Scope, window: Window, *, limit: int = 5000
) -> list[Miss]:
    """The (member, enterprise, month) triples due and not visited, by month, member, name."""
    if not window.months:
        return []
    v = _visited_pairs(scope, window, By.ENTERPRISE)
    q = (
        select(v.c.m, Person.name, Enterprise.name, Grid.domain)
        .join(Person, Person.id == v.c.person_id)
        .join(Enterprise, Enterprise.id == v.c.enterprise_id)
        .join(Grid, Grid.id == Enterprise.grid_id)
        .where(v.c.n == 0)
        .order_by(v.c.m, Grid.domain, Person.name, Enterprise.name)
        .limit(limit)
    )
    return [Miss(int(m), p, e, g) for m, p, e, g in await session.execute(q)]


async def visits_made(
    session: AsyncSession, scope: Scope, window: Window, by: By
) -> dict[Key, int]:
    """All visits recorded in the window (whatever the assignment), per unit."""
    key = _enterprise_key(by) if by is not By.MEMBER else Visit.person_id
    q = (
        select(key, func.count(Visit.id))
        .select_from(Visit)
        .join(Enterprise, Enterprise.id == Visit.enterprise_id)
        .join(Grid, Grid.id == Enterprise.grid_id)
        .where(
            Visit.visit_date >= window.first,
            Visit.visit_date <= window.cut_day,
            _scope_where(scope),
        )
        .group_by(key)
    )
    if scope.person_id is not None:
        q = q.where(Visit.person_id == scope.person_id)
    return {k: _n(n) for k, n in await session.execute(q)}


# --- meetings -------------------------------------------------------------------------------


@dataclass
class MeetingCount:
    due: int = 0  # (level-2 grid, quarter) pairs of the quarters ended in the window
    held: int = 0  # of those, with at least one meeting in the quarter
    meetings: int = 0  # meetings recorded in the window


async def meetings(
    session: AsyncSession, scope: Scope, window: Window, by: By
) -> dict[Key, MeetingCount]:
    """Quarterly safety meetings per unit (COUNTY, DOMAIN, or MEMBER = the grid's chief at the
    quarter's end)."""
    out: dict[Key, MeetingCount] = defaultdict(MeetingCount)
    if by is By.ENTERPRISE:
        return {}
    key: Any = {By.TOTAL: _NO_KEY, By.COUNTY: Grid.parent_id, By.DOMAIN: Grid.id}.get(
        by, Role.person_id
    )
    if window.quarters:
        quarters = _quarters_cte(window)
        gq = (
            select(key.label("k"), Grid.id.label("grid_id"), quarters.c.first, quarters.c.last)
            .select_from(Grid)
            .join(quarters, true())
            .where(
                Grid.level == 2,
                or_(Grid.active.is_(True), Grid.deactivated_on >= quarters.c.first),
                _grid_where(scope),
            )
        )
        if by is By.MEMBER:
            gq = gq.join(
                Role,
                and_(
                    Role.grid_id == Grid.id,
                    Role.kind == RoleKind.L2_CHIEF,
                    Role.since <= quarters.c.last,
                    or_(Role.until.is_(None), Role.until >= quarters.c.last),
                ),
            )
            if scope.person_id is not None:
                gq = gq.where(Role.person_id == scope.person_id)
        g = gq.distinct().subquery()
        held = (
            select(g.c.k, g.c.grid_id, g.c.first, func.count(Meeting.id).label("n"))
            .select_from(g)
            .outerjoin(
                Meeting,
                and_(
                    Meeting.grid_id == g.c.grid_id,
                    Meeting.meeting_date >= g.c.first,
                    Meeting.meeting_date <= g.c.last,
                ),
            )
            .group_by(g.c.k, g.c.grid_id, g.c.first)
            .subquery()
        )
        q = select(held.c.k, func.count(), _count_if(held.c.n > 0)).group_by(held.c.k)
        for k, due, done in await session.execute(q):
            out[k].due, out[k].held = _n(due), _n(done)
    mk: Any = {By.TOTAL: _NO_KEY, By.COUNTY: Grid.parent_id, By.DOMAIN: Grid.id}.get(
        by, Meeting.person_id
    )
    q2 = (
        select(mk, func.count(Meeting.id))
        .select_from(Meeting)
        .join(Grid, Grid.id == Meeting.grid_id)
        .where(
            Meeting.meeting_date >= window.first,
            Meeting.meeting_date <= window.cut_day,
            _grid_where(scope),
        )
        .group_by(mk)
    )
    if scope.person_id is not None:
        q2 = q2.where(Meeting.person_id == scope.person_id)
    for k, n in await session.execute(q2):
        out[k].meetings = _n(n)
    return dict(out)


# --- training -------------------------------------------------------------------------------


async def trainings_held(session: AsyncSession, scope: Scope, window: Window) -> dict[Key, int]:
    """Trainings recorded in the window per county (level-1 grid of the recorder; None for an
    admin without a grid role, counted only when the scope is everything)."""
    q = (
        select(Training.grid_id, func.count(Training.id))
        .where(
            Training.training_date >= window.first,
            Training.training_date <= window.cut_day,
            _l1_where(scope, Training.grid_id),
        )
        .group_by(Training.grid_id)
    )
    return {k: _n(n) for k, n in await session.execute(q)}


@dataclass(frozen=True)
class TrainingStatus:
    person: GridPerson
    first_training: date | None  # the first training attended, ever (up to the cut-off)
    this_year: int  # trainings attended in the cut-off day's calendar year, up to it
    in_window: int  # trainings attended in the window

    @property
    def trained_before_post(self) -> bool:
        return self.first_training is not None and self.first_training <= self.person.since

    @property
    def trained_this_year(self) -> bool:
        return self.this_year > 0


async def training_status(
    session: AsyncSession, scope: Scope, window: Window, *, current_only: bool = True
) -> list[TrainingStatus]:
    """Everyone holding a level-2 role in scope (at the cut-off day when ``current_only``)
    with their first training and their trainings this year."""
    day = window.cut_day
    year_start = date(day.year, 1, 1)
    attended = (
        select(
            TrainingAttendee.person_id.label("pid"),
            func.min(Training.training_date).label("first"),
            _count_if(Training.training_date >= year_start).label("year"),
            _count_if(Training.training_date >= window.first).label("win"),
        )
        .join(Training, Training.id == TrainingAttendee.training_id)
        .where(TrainingAttendee.person_id.is_not(None), Training.training_date <= day)
        .group_by(TrainingAttendee.person_id)
        .subquery()
    )
    people = await grid_people(
        session, scope, day if current_only else window.first, day, TRAINED_ROLES
    )
    if not people:
        return []
    ids = sorted({p.person_id for p in people})
    rows = {
        pid: (first, _n(year), _n(win))
        for pid, first, year, win in await session.execute(
            select(attended.c.pid, attended.c.first, attended.c.year, attended.c.win).where(
                attended.c.pid.in_(ids)
            )
        )
    }
    return [
        TrainingStatus(p, *(rows.get(p.person_id) or (None, 0, 0)))
        for p in people
        if p.kind in TRAINED_ROLES
    ]


# --- notices --------------------------------------------------------------------------------


@dataclass
class NoticeCount:
    notices: int = 0  # notices with at least one target in the unit
    targets: int = 0  # enterprise × notice pairs that had to acknowledge
    acked: int = 0  # acknowledged by the cut-off
    on_time: int = 0  # acknowledged by the notice's deadline
    feedback: int = 0  # with at least one feedback (贯彻落实情况) by the cut-off


async def notices(
    session: AsyncSession, scope: Scope, window: Window, by: By, ids: set[int] | None = None
) -> dict[Key, NoticeCount]:
    """Notices issued in the window: acknowledgement and feedback per unit (a member's: the
    enterprises they served when the notice was issued). Counties and grids are counted per
    (unit, notice), which also gives each unit's distinct notices, and ``ids`` collects the
    notices of them all."""
    key = _enterprise_key(by)
    acked = and_(NoticeTarget.acked_at.is_not(None), NoticeTarget.acked_at < window.cutoff)
    # The notices of a unit (distinct) only for the total; units of a partition get theirs
    # from notice_counts, an enterprise's are its targets, a member's are not shown.
    many = by is By.TOTAL

    def over(q: Select[Any]) -> Select[Any]:
        q = q.join(Notice, Notice.id == NoticeTarget.notice_id)
        q = _over_enterprises(q, NoticeTarget.enterprise_id, scope, by, Notice.created_at)
        return q.where(Notice.created_at >= window.start, Notice.created_at < window.end)

    counts = (
        func.count(NoticeTarget.id),
        _count_if(acked),
        _count_if(and_(acked, NoticeTarget.acked_at <= Notice.deadline)),
    )
    out: dict[Key, NoticeCount] = {}
    if by in (By.COUNTY, By.DOMAIN):
        # Counties' and grids' targets are many: one pass, feedback joined in (hashed).
        fed = (
            select(NoticeFeedback.target_id)
            .where(NoticeFeedback.created_at < window.cutoff)
            .distinct()
            .subquery("fed")
        )
        q = over(
            select(key, NoticeTarget.notice_id, *counts, func.count(fed.c.target_id))
            .select_from(NoticeTarget)
            .outerjoin(fed, fed.c.target_id == NoticeTarget.id)
        )
        rows = await session.execute(q.group_by(key, NoticeTarget.notice_id))
        for k, notice_id, b, c, d, e in rows:
            row = out.setdefault(k, NoticeCount())
            row.notices += 1
            row.targets, row.acked, row.on_time = row.targets + b, row.acked + c, row.on_time + d
            row.feedback += e
            if ids is not None:
                ids.add(notice_id)
        return out
    first = func.count(distinct(NoticeTarget.notice_id)) if many else counts[0]
    q = over(select(key, first, *counts).select_from(NoticeTarget))
    out = {
        k: NoticeCount(_n(a), _n(b), _n(c), _n(d))
        for k, a, b, c, d in await session.execute(q.group_by(key))
    }
    # Feedback counted apart, from the (few) feedback rows: a left join of every target with
    # them costs more than the rest of the query.
    fed = over(
        select(key, func.count(distinct(NoticeFeedback.target_id)))
        .select_from(NoticeFeedback)
        .join(NoticeTarget, NoticeTarget.id == NoticeFeedback.target_id)
    ).where(NoticeFeedback.created_at < window.cutoff)
    for k, n in await session.execute(fed.group_by(key)):
        out.setdefault(k, NoticeCount()).feedback = _n(n)
    return out


async def notice_counts(
    session: AsyncSession, scope: Scope, window: Window, by: By
) -> tuple[dict[Key, int], int]:
    """Notices issued in the window with at least one target in each unit, and in the whole
    scope: from the distinct (unit, notice) pairs (a few hundred rows for a county)."""
    key = _enterprise_key(by)
    q = (
        select(key, NoticeTarget.notice_id)
        .distinct()
        .select_from(NoticeTarget)
        .join(Notice, Notice.id == NoticeTarget.notice_id)
    )
    q = _over_enterprises(q, NoticeTarget.enterprise_id, scope, by, Notice.created_at)
    q = q.where(Notice.created_at >= window.start, Notice.created_at < window.end)
    per: dict[Key, int] = defaultdict(int)
    every: set[int] = set()
    for k, notice_id in await session.execute(q):
        per[k] += 1
        every.add(notice_id)
    return dict(per), len(every)


# --- hazards --------------------------------------------------------------------------------


@dataclass
class HazardCount:
    found: int = 0
    general: int = 0
    major: int = 0
    supervised: int = 0  # 挂牌督办
    due: int = 0  # deadline passed by the cut-off, or rectified
    rectified: int = 0  # re-check passed by the cut-off
    on_time: int = 0  # rectified and never flagged overdue
    overdue: int = 0  # flagged overdue by the cut-off (an `overdue` audit step)
    overdue_open: int = 0  # past the deadline and not rectified at the cut-off
    checked: int = 0  # re-checked at least once
    reworked: int = 0  # failed a re-check at least once (返工)
    closed: int = 0  # closed out (销号) by the cut-off
    close_hours: float = 0.0  # summed hours from report to close-out, of the closed ones


def _hazard_events(window: Window) -> Any:
    """Per hazard reported in the window: overdue flags, re-checks and failed re-checks in its
    audit up to the cut-off."""
    codes = select(Hazard.code).where(
        Hazard.reported_at >= window.start, Hazard.reported_at < window.end
    )
    return (
        select(
            CaseEvent.code.label("code"),
            _count_if(CaseEvent.action == "overdue").label("overdue"),
            _count_if(CaseEvent.action.in_(("verify_pass", "verify_fail"))).label("checks"),
            _count_if(CaseEvent.action == "verify_fail").label("fails"),
        )
        .where(
            CaseEvent.kind == "hazard",
            CaseEvent.at < window.cutoff,
            CaseEvent.code.in_(codes),
        )
        .group_by(CaseEvent.code)
        .subquery("hazard_events")
    )


async def hazards(
    session: AsyncSession, scope: Scope, window: Window, by: By
) -> dict[Key, HazardCount]:
    """Hazards reported in the window, per unit (a member's: the enterprises they served when
    it was reported)."""
    dialect = await _dialect(session)
    ev = _hazard_events(window)
    cut = window.cutoff
    rectified = and_(Hazard.verified_at.is_not(None), Hazard.verified_at < cut)
    closed = and_(Hazard.closed_at.is_not(None), Hazard.closed_at < cut)
    overdue = func.coalesce(ev.c.overdue, 0) > 0
    key = _enterprise_key(by)
    q = select(
        key,
        func.count(Hazard.id),
        _count_if(Hazard.grade == GENERAL),
        _count_if(Hazard.grade == MAJOR),
        _count_if(Hazard.supervised.is_(True)),
        _count_if(or_(Hazard.deadline_at < cut, rectified)),
        _count_if(rectified),
        _count_if(and_(rectified, ~overdue)),
        _count_if(overdue),
        _count_if(and_(Hazard.deadline_at < cut, ~rectified)),
        _count_if(func.coalesce(ev.c.checks, 0) > 0),
        _count_if(func.coalesce(ev.c.fails, 0) > 0),
        _count_if(closed),
        func.coalesce(
            func.sum(case((closed, _hours(dialect, Hazard.reported_at, Hazard.closed_at)))), 0
        ),
    ).select_from(Hazard)
    q = _over_enterprises(q, Hazard.enterprise_id, scope, by, Hazard.reported_at)
    q = q.outerjoin(ev, ev.c.code == Hazard.code).where(
        Hazard.reported_at >= window.start, Hazard.reported_at < window.end
    )
    out = {}
    for k, *vals in await session.execute(q.group_by(key)):
        *ints, hours = vals
        out[k] = HazardCount(*(_n(v) for v in ints), close_hours=round(_f(hours) or 0.0, 3))
    return out


async def hazard_categories(
    session: AsyncSession, scope: Scope, window: Window
) -> list[tuple[str, str, int]]:
    """(category, grade, count) of the hazards reported in the window, most frequent first."""
    q = (
        select(Hazard.category, Hazard.grade, func.count(Hazard.id))
        .select_from(Hazard)
        .join(Enterprise, Enterprise.id == Hazard.enterprise_id)
        .join(Grid, Grid.id == Enterprise.grid_id)
        .where(
            Hazard.reported_at >= window.start,
            Hazard.reported_at < window.end,
            _scope_where(scope),
        )
        .group_by(Hazard.category, Hazard.grade)
        .order_by(func.count(Hazard.id).desc(), Hazard.category, Hazard.grade)
    )
    return [(c, g, _n(n)) for c, g, n in await session.execute(q)]


@dataclass(frozen=True)
class HazardCase:
    code: str
    enterprise: str
    grid: str
    grade: str
    supervised: bool
    category: str
    status: str
    reported_at: datetime
    deadline: date
    overdue: bool
    rework: int
    closed_at: datetime | None


async def notable_hazards(
    session: AsyncSession, scope: Scope, window: Window, *, limit: int = 500
) -> list[HazardCase]:
    """The major (重大) and supervised (挂牌督办) hazards reported in the window."""
    ev = _hazard_events(window)
    q = (
        select(
            Hazard.code,
            Enterprise.name,
            Grid.domain,
            Hazard.grade,
            Hazard.supervised,
            Hazard.category,
            Hazard.status,
            Hazard.reported_at,
            Hazard.deadline,
            func.coalesce(ev.c.overdue, 0) > 0,
            func.coalesce(ev.c.fails, 0),
            Hazard.closed_at,
        )
        .select_from(Hazard)
        .join(Enterprise, Enterprise.id == Hazard.enterprise_id)
        .join(Grid, Grid.id == Enterprise.grid_id)
        .outerjoin(ev, ev.c.code == Hazard.code)
        .where(
            Hazard.reported_at >= window.start,
            Hazard.reported_at < window.end,
            or_(Hazard.grade == MAJOR, Hazard.supervised.is_(True)),
            _scope_where(scope),
        )
        .order_by(Hazard.reported_at, Hazard.code)
        .limit(limit)
    )
    out = []
    for row in await session.execute(q):
        *head, overdue, rework, closed_at = row
        closed = closed_at if closed_at is not None and closed_at < window.cutoff else None
        out.append(HazardCase(*head, bool(overdue), _n(rework), closed))
    return out


# --- requests -------------------------------------------------------------------------------


@dataclass
class RequestCount:
    raised: int = 0
    taken: int = 0  # taken (or resolved straight away) by the cut-off
    resolved: int = 0
    escalated: int = 0  # passed up at least once (by hand or by its deadline)
    response_median_h: float | None = None  # raised → taken, hours
    handling_median_h: float | None = None  # raised → resolved, hours


async def _medians(session: AsyncSession, q: Any) -> dict[Key, float]:
    """Median of ``h`` per ``k`` for a subquery (k, h), in SQL (window functions)."""
    d = q.subquery()
    ranked = select(
        d.c.k,
        d.c.h,
        func.row_number().over(partition_by=d.c.k, order_by=d.c.h).label("rn"),
        func.count().over(partition_by=d.c.k).label("cnt"),
    ).subquery()
    mid = select(ranked.c.k, func.avg(ranked.c.h)).where(
        ranked.c.rn * 2 >= ranked.c.cnt, ranked.c.rn * 2 <= ranked.c.cnt + 2
    )
    return {k: round(float(v), 3) for k, v in await session.execute(mid.group_by(ranked.c.k))}


async def requests(
    session: AsyncSession, scope: Scope, window: Window, by: By
) -> dict[Key, RequestCount]:
    """Requests raised in the window per unit, with median response and handling hours."""
    dialect = await _dialect(session)
    cut = window.cutoff
    first_answer = func.coalesce(CaseRequest.taken_at, CaseRequest.resolved_at)
    taken = and_(first_answer.is_not(None), first_answer < cut)
    resolved = and_(CaseRequest.resolved_at.is_not(None), CaseRequest.resolved_at < cut)
    key = _enterprise_key(by)
    in_window = and_(CaseRequest.raised_at >= window.start, CaseRequest.raised_at < window.end)

    def over(q: Select[Any]) -> Select[Any]:
        q = _over_enterprises(
            q.select_from(CaseRequest), CaseRequest.enterprise_id, scope, by, CaseRequest.raised_at
        )
        return q.where(in_window)

    q = over(
        select(
            key,
            func.count(CaseRequest.id),
            _count_if(taken),
            _count_if(resolved),
            _count_if(CaseRequest.escalations > 0),
        )
    ).group_by(key)
    out = {
        k: RequestCount(_n(a), _n(b), _n(c), _n(d)) for k, a, b, c, d in await session.execute(q)
    }
    if not out:
        return out
    response = await _medians(
        session,
        over(
            select(key.label("k"), _hours(dialect, CaseRequest.raised_at, first_answer).label("h"))
        ).where(taken),
    )
    handling = await _medians(
        session,
        over(
            select(
                key.label("k"),
                _hours(dialect, CaseRequest.raised_at, CaseRequest.resolved_at).label("h"),
            )
        ).where(resolved),
    )
    for k, row in out.items():
        row.response_median_h = response.get(k)
        row.handling_median_h = handling.get(k)
    return out


async def request_medians_total(
    session: AsyncSession, scope: Scope, window: Window
) -> tuple[float | None, float | None]:
    """The scope's median response and handling hours (medians do not add up by unit)."""
    out = await requests(session, scope, window, By.TOTAL)
    row = out.get(None)
    return (row.response_median_h, row.handling_median_h) if row else (None, None)


# --- accidents ------------------------------------------------------------------------------


@dataclass
class AccidentCount:
    accidents: int = 0
    dead: int = 0
    injured: int = 0
    missing: int = 0
    delay_total_min: float = 0.0  # occurrence → first report, summed
    delay_max_min: float = 0.0


@dataclass(frozen=True)
class AccidentCase:
    code: str
    enterprise: str
    grid: str
    type: str
    occurred_at: datetime
    reported_at: datetime
    delay_min: float
    dead: int
    injured: int
    missing: int


async def accidents(
    session: AsyncSession, scope: Scope, window: Window, by: By
) -> dict[Key, AccidentCount]:
    dialect = await _dialect(session)
    delay = _hours(dialect, Accident.occurred_at, Accident.reported_at) * 60.0
    key = _enterprise_key(by)
    q = select(
        key,
        func.count(Accident.id),
        func.coalesce(func.sum(Accident.dead), 0),
        func.coalesce(func.sum(Accident.injured), 0),
        func.coalesce(func.sum(Accident.missing), 0),
        func.coalesce(func.sum(delay), 0),
        func.coalesce(func.max(delay), 0),
    ).select_from(Accident)
    q = _over_enterprises(q, Accident.enterprise_id, scope, by, Accident.occurred_at).where(
        Accident.occurred_at >= window.start, Accident.occurred_at < window.end
    )
    return {
        k: AccidentCount(_n(a), _n(b), _n(c), _n(d), round(_f(e) or 0.0, 2), round(_f(f) or 0.0, 2))
        for k, a, b, c, d, e, f in await session.execute(q.group_by(key))
    }


async def accident_list(
    session: AsyncSession, scope: Scope, window: Window, *, limit: int = 500
) -> list[AccidentCase]:
    dialect = await _dialect(session)
    delay = _hours(dialect, Accident.occurred_at, Accident.reported_at) * 60.0
    q = (
        select(
            Accident.code,
            Enterprise.name,
            Grid.domain,
            Accident.type,
            Accident.occurred_at,
            Accident.reported_at,
            delay,
            Accident.dead,
            Accident.injured,
            Accident.missing,
        )
        .select_from(Accident)
        .join(Enterprise, Enterprise.id == Accident.enterprise_id)
        .join(Grid, Grid.id == Enterprise.grid_id)
        .where(
            Accident.occurred_at >= window.start,
            Accident.occurred_at < window.end,
            _scope_where(scope),
        )
        .order_by(Accident.occurred_at, Accident.code)
        .limit(limit)
    )
    return [
        AccidentCase(c, e, g, t, o, r, round(float(d), 2), _n(a), _n(b), _n(m))
        for c, e, g, t, o, r, d, a, b, m in await session.execute(q)
    ]


# --- monthly trend --------------------------------------------------------------------------


async def hazard_trend(
    session: AsyncSession, scope: Scope, window: Window
) -> dict[int, tuple[int, int]]:
    """Per month of the window: hazards found, and hazards closed out (whenever found)."""
    if not window.months:
        return {}
    months = _months_cte(window, "trend_months")

    def per_month(col: Any) -> Select[Any]:
        return (
            select(months.c.m, func.count(Hazard.id))
            .select_from(months)
            .join(Hazard, and_(col >= months.c.start, col < months.c.end))
            .join(Enterprise, Enterprise.id == Hazard.enterprise_id)
            .join(Grid, Grid.id == Enterprise.grid_id)
            .where(_scope_where(scope), col < window.cutoff)
            .group_by(months.c.m)
        )

    found = dict((int(m), _n(n)) for m, n in await session.execute(per_month(Hazard.reported_at)))
    closed = dict((int(m), _n(n)) for m, n in await session.execute(per_month(Hazard.closed_at)))
    return {i: (found.get(i, 0), closed.get(i, 0)) for i in range(len(window.months))}


# --- one person's records, behind their score card ------------------------------------------


@dataclass
class PersonRecords:
    visits: list[tuple[str, date, str]] = field(default_factory=list)  # code, day, enterprise
    misses: list[Miss] = field(default_factory=list)
    notices: list[tuple[str, str, datetime | None, bool, bool]] = field(default_factory=list)
    hazards: list[tuple[str, str, str, str, bool, bool]] = field(default_factory=list)
    requests: list[tuple[str, str, str, int]] = field(default_factory=list)
    trainings: list[tuple[str, date, str]] = field(default_factory=list)
    meetings: list[tuple[str, date, str]] = field(default_factory=list)


async def person_records(
    session: AsyncSession, person_id: int, scope: Scope, window: Window
) -> PersonRecords:
    """Everything behind one person's score card in the window, each record by its id."""
    own = Scope(scope.reach, person_id)
    out = PersonRecords()
    rows = await session.execute(
        select(Visit.code, Visit.visit_date, Enterprise.name)
        .join(Enterprise, Enterprise.id == Visit.enterprise_id)
        .where(
            Visit.person_id == person_id,
            Visit.visit_date >= window.first,
            Visit.visit_date <= window.cut_day,
        )
        .order_by(Visit.visit_date, Visit.code)
    )
    out.visits = [(c, d, e) for c, d, e in rows]
    out.misses = await visit_misses(session, own, window)
    served = and_(
        Assignment.person_id == person_id,
        Assignment.enterprise_id == Enterprise.id,
    )

    def at(col: Any) -> ColumnElement[bool]:
        return and_(
            served,
            Assignment.since <= col,
            or_(Assignment.until.is_(None), Assignment.until >= col),
        )

    fed = (
        select(NoticeFeedback.target_id)
        .where(NoticeFeedback.created_at < window.cutoff)
        .group_by(NoticeFeedback.target_id)
        .subquery()
    )
    rows = await session.execute(
        select(
            Notice.code,
            Enterprise.name,
            NoticeTarget.acked_at,
            and_(
                NoticeTarget.acked_at.is_not(None),
                NoticeTarget.acked_at <= Notice.deadline,
                NoticeTarget.acked_at < window.cutoff,
            ),
            fed.c.target_id.is_not(None),
        )
        .select_from(NoticeTarget)
        .join(Notice, Notice.id == NoticeTarget.notice_id)
        .join(Enterprise, Enterprise.id == NoticeTarget.enterprise_id)
        .join(Assignment, at(Notice.created_at))
        .outerjoin(fed, fed.c.target_id == NoticeTarget.id)
        .where(Notice.created_at >= window.start, Notice.created_at < window.end)
        .order_by(Notice.created_at, Notice.code, Enterprise.name)
    )
    out.notices = [
        (c, e, a if a is not None and a < window.cutoff else None, bool(t), bool(f))
        for c, e, a, t, f in rows
    ]
    ev = _hazard_events(window)
    rows = await session.execute(
        select(
            Hazard.code,
            Enterprise.name,
            Hazard.grade,
            Hazard.status,
            and_(Hazard.verified_at.is_not(None), Hazard.verified_at < window.cutoff),
            func.coalesce(ev.c.overdue, 0) > 0,
        )
        .select_from(Hazard)
        .join(Enterprise, Enterprise.id == Hazard.enterprise_id)
        .join(Assignment, at(Hazard.reported_at))
        .outerjoin(ev, ev.c.code == Hazard.code)
        .where(Hazard.reported_at >= window.start, Hazard.reported_at < window.end)
        .order_by(Hazard.reported_at, Hazard.code)
    )
    out.hazards = [(c, e, g, s, bool(r), bool(o)) for c, e, g, s, r, o in rows]
    rows = await session.execute(
        select(CaseRequest.code, Enterprise.name, CaseRequest.status, CaseRequest.escalations)
        .select_from(CaseRequest)
        .join(Enterprise, Enterprise.id == CaseRequest.enterprise_id)
        .join(Assignment, at(CaseRequest.raised_at))
        .where(CaseRequest.raised_at >= window.start, CaseRequest.raised_at < window.end)
        .order_by(CaseRequest.raised_at, CaseRequest.code)
    )
    out.requests = [(c, e, s, _n(n)) for c, e, s, n in rows]
    rows = await session.execute(
        select(Training.code, Training.training_date, Training.topic)
        .join(TrainingAttendee, TrainingAttendee.training_id == Training.id)
        .where(
            TrainingAttendee.person_id == person_id,
            Training.training_date >= date(window.cut_day.year, 1, 1),
            Training.training_date <= window.cut_day,
        )
        .order_by(Training.training_date, Training.code)
    )
    out.trainings = [(c, d, t) for c, d, t in rows]
    rows = await session.execute(
        select(Meeting.code, Meeting.meeting_date, Grid.domain)
        .join(Grid, Grid.id == Meeting.grid_id)
        .where(
            Meeting.person_id == person_id,
            Meeting.meeting_date >= window.first,
            Meeting.meeting_date <= window.cut_day,
        )
        .order_by(Meeting.meeting_date, Meeting.code)
    )
    out.meetings = [(c, d, g) for c, d, g in rows]
    return out


# --- scope lookups for the command ----------------------------------------------------------


async def find_counties(session: AsyncSession, name: str) -> list[Unit]:
    """Active level-1 grids whose county (or special body) name contains ``name``; an exact
    name wins."""
    q = (
        select(Grid.id, AdminUnit.name)
        .join(AdminUnit, AdminUnit.id == Grid.unit_id)
        .where(Grid.level == 1, Grid.active.is_(True), AdminUnit.name.contains(name))
        .order_by(AdminUnit.name)
    )
    found = [Unit(gid, n) for gid, n in await session.execute(q)]
    exact = [u for u in found if u.name == name]
    return exact or found


async def find_city(session: AsyncSession, name: str) -> list[Unit]:
    """Level-1 grids of the counties of the cities (or provinces) whose name contains ``name``."""
    City = aliased(AdminUnit)
    Prov = aliased(AdminUnit)
    q = (
        select(Grid.id, AdminUnit.name)
        .join(AdminUnit, AdminUnit.id == Grid.unit_id)
        .outerjoin(City, City.id == AdminUnit.parent_id)
        .outerjoin(Prov, Prov.id == City.parent_id)
        .where(
            Grid.level == 1,
            Grid.active.is_(True),
            or_(City.name.contains(name), Prov.name.contains(name)),
        )
        .order_by(AdminUnit.name)
    )
    return [Unit(gid, n) for gid, n in await session.execute(q)]


async def find_domains(session: AsyncSession, scope: Scope, words: Sequence[str]) -> list[Unit]:
    """Active level-2 grids in scope whose domain contains one of ``words``."""
    if not words:
        return []
    q = (
        select(Grid.id, Grid.domain, AdminUnit.name)
        .join(AdminUnit, AdminUnit.id == Grid.unit_id)
        .where(
            Grid.level == 2,
            Grid.active.is_(True),
            _grid_where(scope),
            or_(*(Grid.domain.contains(w) for w in words)),
        )
        .order_by(AdminUnit.name, Grid.domain)
    )
    return [Unit(gid, d, c) for gid, d, c in await session.execute(q)]


async def find_members(
    session: AsyncSession, scope: Scope, name: str, window: Window
) -> list[GridPerson]:
    """Level-2 chiefs and members in scope named ``name`` (exactly)."""
    found = await grid_people(session, scope, window.first, window.cut_day, TRAINED_ROLES)
    return [p for p in found if p.name == name]

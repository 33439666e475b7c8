"""Build a :class:`Report` from the database: which units, their counts, the score cards.

All counting is storage/reports.py's (SQL, one row per unit); here the pieces are put
together per unit, the rates and scores are computed, and the short lists are attached.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.config import Config
from handlers.reports.model import (
    COUNTIES,
    COUNTY,
    GRID,
    GRIDS,
    MEMBER,
    MonthPoint,
    Part,
    Report,
    Row,
    ScoreCard,
    rank,
    score,
    unit_parts,
)
from handlers.reports.period import Period, window
from storage import reports as db
from storage.db import Session
from storage.directory import Reach
from storage.models import RoleKind
from storage.reports import By, GridPerson, Key, Scope, Unit, Window

# Lists longer than this are cut (the workbook says so); a county has far fewer.
LIST_LIMIT = 5000


@dataclass(frozen=True)
class Target:
    """What a report is about: its level (what the rows are), the scope and its name."""

    level: str
    scope: Scope
    name: str
    person: GridPerson | None = None

    @property
    def by(self) -> By:
        return {
            COUNTIES: By.COUNTY,
            COUNTY: By.DOMAIN,
            GRIDS: By.DOMAIN,
            GRID: By.MEMBER,
            MEMBER: By.ENTERPRISE,
        }[self.level]


async def build(
    session: Session,
    config: Config,
    target: Target,
    period: Period,
    now: datetime,
    *,
    draft: bool = False,
) -> Report:
    tz = config.tz
    win = window(period, tz, now)
    trend_win = window(period, tz, now, trend_months=6 if period.kind != "year" else 0)
    scope, by = target.scope, target.by
    await db.prepare(session)
    units = await _units(session, target, win)
    rows = {u.key: Row(u.key, u.name, u.parent) for u in units}

    def row(key: Key) -> Row:
        found = rows.get(key)
        if found is None:  # records of a unit gone since (a grid deactivated…): kept apart
            found = rows[key] = Row(key, "?")
        return found

    total = Row(None, target.name)
    per_month: dict[int, db.VisitCount] = {}
    # Notices per enterprise, counted once: the enterprise table and, rolled up, the grids'.
    ents: list[Unit] = []
    by_ent: dict[Key, db.NoticeCount] = {}
    if target.level in (COUNTY, MEMBER):
        ents = await db.enterprises(session, scope, win)
        by_ent = await db.notices(session, scope, win, By.ENTERPRISE)
    rolled = _roll_up(by_ent, ents) if target.level == COUNTY else None
    notice_ids: set[int] = set()
    await _fill(session, scope, win, by, row, per_month, notices=rolled, notice_ids=notice_ids)
    if by in PARTITIONS:  # every record belongs to one row: the total is their sum
        for r in list(rows.values()):
            _add_all(total, r)
        # … but for what does not add up: distinct notices and medians.
        if by is By.COUNTY:  # counted per (county, notice) already
            total.notices.notices = len(notice_ids)
        else:
            per_unit, total.notices.notices = await db.notice_counts(session, scope, win, by)
            for key, n in per_unit.items():
                row(key).notices.notices = n
        medians = await db.requests(session, scope, win, By.TOTAL)
        if None in medians:
            total.requests.response_median_h = medians[None].response_median_h
            total.requests.handling_median_h = medians[None].handling_median_h
    else:  # members share enterprises: the total is counted by itself (visits do add up)
        await _fill(session, scope, win, By.TOTAL, lambda _key: total, None, visits=False)
        for r in list(rows.values()):
            _add_visits(total, r)
    if target.level == COUNTIES:
        held = await db.trainings_held(session, scope, win)
        for key, n in held.items():
            if key in rows:
                rows[key].trainings = n
        total.trainings = sum(held.values())
    else:
        total.trainings = sum((await db.trainings_held(session, scope, win)).values())
    training = await db.training_status(session, scope, win)
    for status in training:
        key = _person_key(status.person, by)
        for r in ([rows[key]] if key in rows else []) + [total]:
            r.people += 1
            r.untrained += not status.trained_this_year
            r.post_before_training += not status.trained_before_post

    report = Report(
        period=period,
        window=win,
        level=target.level,
        scope_name=target.name,
        generated_at=now,
        rows=[r for r in rows.values() if r.name != "?"],
        total=total,
        current=now < win.end,
        draft=draft,
        person=target.person,
    )
    report.training = training
    await _trend(session, report, scope, trend_win, per_month if trend_win == win else None)
    report.gaps = await db.coverage_gaps(session, scope, win, By.DOMAIN, limit=LIST_LIMIT)
    if target.level != COUNTIES:
        labels = [f"{first:%Y-%m}" for first, *_ in win.months]
        report.misses = [
            (labels[m.month], m)
            for m in await db.visit_misses(session, scope, win, limit=LIST_LIMIT)
        ]
    report.categories = await db.hazard_categories(session, scope, win)
    report.notable = await db.notable_hazards(session, scope, win)
    report.accident_cases = await db.accident_list(session, scope, win)
    if target.level == GRID:
        ents = await db.enterprises(session, scope, win)
        by_ent = await db.notices(session, scope, win, By.ENTERPRISE)
    if ents:
        names = {u.key: u.name for u in ents}
        report.notices_by_enterprise = sorted(
            ((names.get(k, "?"), n) for k, n in by_ent.items()), key=lambda x: x[0]
        )
    if target.level == COUNTY:
        report.cards, report.notices_by_member = await _assess(
            session, config, scope, win, training, grid_rows=rows
        )
    elif target.level == GRID:
        grid = next(iter(scope.reach.l2_grids), None)
        report.cards, report.notices_by_member = await _assess(
            session, config, scope, win, training, grid_rows={grid: total}, member_rows=rows
        )
    elif target.level == MEMBER and target.person is not None:
        # One person's card, ranked among the people of their county.
        me = target.person
        county = Scope(Reach(l1_grids=frozenset({me.l1_grid_id or 0})))
        status = await db.training_status(session, county, win)
        cards, _ = await _assess(session, config, county, win, status)
        report.cards = [c for c in cards if c.person.person_id == me.person_id]
        report.records = await db.person_records(session, me.person_id, scope, win)
    if report.ranked:
        for r in report.rows:
            r.score = score(unit_parts(r, config.assessment.county))
        rank(report.rows)
        report.rows.sort(key=lambda r: (r.rank is None, r.rank or 0, r.name))
    return report


async def _units(session: Session, target: Target, win: Window) -> list[Unit]:
    scope = target.scope
    if target.level == COUNTIES:
        return await db.counties(session, scope)
    if target.level == COUNTY:
        return await db.domains(session, scope)
    if target.level == GRIDS:
        return [
            Unit(u.key, f"{u.parent}·{u.name}", u.parent) for u in await db.domains(session, scope)
        ]
    if target.level == GRID:
        people = await db.grid_people(session, scope, win.first, win.cut_day, [RoleKind.L2_MEMBER])
        seen: dict[Key, Unit] = {}
        for p in people:
            seen.setdefault(p.person_id, Unit(p.person_id, p.name, p.grid))
        return list(seen.values())
    return await db.enterprises(session, scope, win)


async def _fill(
    session: Session,
    scope: Scope,
    win: Window,
    by: By,
    row: Any,
    per_month: dict[int, db.VisitCount] | None = None,
    *,
    visits: bool = True,
    notices: dict[Key, db.NoticeCount] | None = None,
    notice_ids: set[int] | None = None,
) -> None:
    """Every count of every unit (``row(key)`` finds a unit's Row); the visits of each month
    summed over the units into ``per_month``."""
    for key, cov in (await db.coverage(session, scope, win, by)).items():
        row(key).coverage = cov
    if visits:
        for (key, m), v in (await db.visits(session, scope, win, by)).items():
            r = row(key)
            r.visits.due += v.due
            r.visits.visited += v.visited
            r.visits.visits += v.visits
            if per_month is not None:
                month = per_month.setdefault(m, db.VisitCount())
                month.due, month.visited = month.due + v.due, month.visited + v.visited
        for key, n in (await db.visits_made(session, scope, win, by)).items():
            row(key).visits_made = n
    if by is not By.ENTERPRISE:
        for key, mc in (await db.meetings(session, scope, win, by)).items():
            row(key).meetings = mc
    for key, n in (notices or await db.notices(session, scope, win, by, notice_ids)).items():
        row(key).notices = n
    for key, h in (await db.hazards(session, scope, win, by)).items():
        row(key).hazards = h
    for key, q in (await db.requests(session, scope, win, by)).items():
        row(key).requests = q
    for key, a in (await db.accidents(session, scope, win, by)).items():
        row(key).accidents = a


def _roll_up(by_ent: dict[Key, db.NoticeCount], ents: list[Unit]) -> dict[Key, db.NoticeCount]:
    """Enterprises' notice counts added up per level-2 grid (distinct notices come apart)."""
    grid = {u.key: u.group for u in ents}
    out: dict[Key, db.NoticeCount] = defaultdict(db.NoticeCount)
    for key, n in by_ent.items():
        o = out[grid.get(key)]
        o.targets, o.acked = o.targets + n.targets, o.acked + n.acked
        o.on_time, o.feedback = o.on_time + n.on_time, o.feedback + n.feedback
    return dict(out)


# Units that split the records between them: each record is in exactly one.
PARTITIONS = frozenset({By.COUNTY, By.DOMAIN, By.ENTERPRISE})


def _add_visits(into: Row, r: Row) -> None:
    into.visits.due += r.visits.due
    into.visits.visited += r.visits.visited
    into.visits.visits += r.visits.visits
    into.visits_made += r.visits_made


def _add_all(into: Row, r: Row) -> None:
    """Add a unit's additive counts into the total."""
    _add_visits(into, r)
    c, rc = into.coverage, r.coverage
    for name in ("enterprises", "with_chief", "with_l2_chief", "with_member", "complete"):
        setattr(c, name, getattr(c, name) + getattr(rc, name))
    c.staff_changes += rc.staff_changes
    for kind, n in rc.by_type.items():
        c.by_type[kind] = c.by_type.get(kind, 0) + n
    for part in ("meetings", "notices", "hazards", "requests", "accidents"):
        a, b = getattr(into, part), getattr(r, part)
        for name, value in vars(b).items():
            if name == "delay_max_min":
                a.delay_max_min = max(a.delay_max_min, value)
            elif isinstance(value, int | float) and not name.endswith("median_h"):
                setattr(a, name, getattr(a, name) + value)


def _person_key(p: GridPerson, by: By) -> Key:
    if by is By.COUNTY:
        return p.l1_grid_id
    if by is By.DOMAIN:
        return p.grid_id
    if by is By.MEMBER:
        return p.person_id
    return None


async def _trend(
    session: Session,
    report: Report,
    scope: Scope,
    win: Window,
    per_month: dict[int, db.VisitCount] | None,
) -> None:
    """Per month: visit coverage (from the rows' counts when the months are the report's) and
    hazards found and closed."""
    if per_month is None:
        per_month = {}
        for (_key, m), v in (await db.visits(session, scope, win, By.TOTAL)).items():
            per_month[m] = v
    hazards = await db.hazard_trend(session, scope, win)
    points = []
    for i, (first, *_rest) in enumerate(win.months):
        v = per_month.get(i)
        found, closed = hazards.get(i, (0, 0))
        due, visited = (v.due, v.visited) if v else (0, 0)
        points.append(MonthPoint(f"{first:%Y-%m}", due, visited, found, closed))
    report.trend = points


async def _assess(
    session: Session,
    config: Config,
    scope: Scope,
    win: Window,
    status: list[db.TrainingStatus],
    *,
    grid_rows: dict[Key, Row] | None = None,
    member_rows: dict[Key, Row] | None = None,
) -> tuple[list[ScoreCard], list[tuple[str, db.NoticeCount]]]:
    """Score cards of the level-2 members and chiefs in scope (年度考核), ranked per county,
    and the members' notice figures. Counts the report has already (its grids' rows, its
    members' rows) are used, not counted again."""
    weights = config.assessment
    people = await db.grid_people(
        session, scope, win.cut_day, win.cut_day, [RoleKind.L2_MEMBER, RoleKind.L2_CHIEF]
    )
    if not people:
        return [], []
    trained = {s.person.person_id: s.trained_this_year for s in status}
    if member_rows is not None:
        mv = {k: r.visits for k, r in member_rows.items()}
        mn = {k: r.notices for k, r in member_rows.items()}
        mh = {k: r.hazards for k, r in member_rows.items()}
        mr = {k: r.requests for k, r in member_rows.items()}
    else:
        member = Scope(scope.reach, scope.person_id)
        mv = _sum_months(await db.visits(session, member, win, By.MEMBER))
        mn = await db.notices(session, member, win, By.MEMBER)
        mh = await db.hazards(session, member, win, By.MEMBER)
        mr = await db.requests(session, member, win, By.MEMBER)
    chief_grids: dict[int, list[int]] = defaultdict(list)
    for p in people:
        if p.kind == RoleKind.L2_CHIEF:
            chief_grids[p.person_id].append(p.grid_id)
    known = dict(grid_rows or {})
    meetings: dict[Key, Any] = {}
    if chief_grids:
        wanted = {g for gs in chief_grids.values() for g in gs}
        missing = frozenset(wanted - set(known))
        if missing:
            await _fill(
                session,
                Scope(Reach(l2_grids=missing)),
                win,
                By.DOMAIN,
                lambda k: known.setdefault(k, Row(k, "")),
            )
        meetings = await db.meetings(session, Scope(scope.reach), win, By.MEMBER)
    counties = {u.key: u.name for u in await db.counties(session, Scope(scope.reach))}
    cards: list[ScoreCard] = []
    seen: set[tuple[int, str]] = set()
    for p in people:
        role = "chief" if p.kind == RoleKind.L2_CHIEF else "member"
        if (p.person_id, role) in seen:
            continue
        seen.add((p.person_id, role))
        train = (1 if trained.get(p.person_id) else 0, 1)
        if role == "member":
            v, n = mv.get(p.person_id), mn.get(p.person_id)
            h, r = mh.get(p.person_id), mr.get(p.person_id)
            rates = {
                "visits": (v.visited, v.due) if v else (0, 0),
                "notices": (n.on_time, n.targets) if n else (0, 0),
                "hazards": (h.on_time, h.due) if h else (0, 0),
                "requests": (r.resolved, r.raised) if r else (0, 0),
                "training": train,
            }
            w = weights.member
        else:
            g = Row(None, "")
            for gid in chief_grids[p.person_id]:
                _add(g, known.get(gid))
            m = meetings.get(p.person_id)
            rates = {
                "meetings": (m.held, m.due) if m else (0, 0),
                "visits": (g.visits.visited, g.visits.due),
                "notices": (g.notices.on_time, g.notices.targets),
                "hazards": (g.hazards.on_time, g.hazards.due),
                "requests": (g.requests.resolved, g.requests.raised),
                "training": train,
            }
            w = weights.chief
        parts = [Part(k, w.get(k, 0), *rates[k]) for k in rates if w.get(k, 0) > 0]
        card = ScoreCard(p, role, counties.get(p.l1_grid_id, ""), parts)
        card.score = score(parts)
        cards.append(card)
    by_group: dict[tuple[str, str], list[ScoreCard]] = defaultdict(list)
    for c in cards:
        by_group[(c.county, c.role)].append(c)
    for (_county, role), group in by_group.items():
        rank(group)
        if role == "member":
            best = sorted(
                (c for c in group if c.score is not None),
                key=lambda c: (-(c.score or 0), c.person.name),
            )
            for c in best[: weights.excellent]:
                c.candidate = (c.score or 0) >= weights.excellent_min_score
    cards.sort(key=lambda c: (c.county, c.role != "chief", c.rank or 10**6, c.person.name))
    members = {p.person_id: p.name for p in people if p.kind == RoleKind.L2_MEMBER}
    by_member = sorted(
        ((name, mn[pid]) for pid, name in members.items() if pid in mn), key=lambda x: x[0]
    )
    return cards, by_member


def _sum_months(visits: dict[tuple[Key, int], db.VisitCount]) -> dict[Key, db.VisitCount]:
    out: dict[Key, db.VisitCount] = defaultdict(db.VisitCount)
    for (key, _m), v in visits.items():
        o = out[key]
        o.due, o.visited, o.visits = o.due + v.due, o.visited + v.visited, o.visits + v.visits
    return out


def _add(into: Row, other: Row | None) -> None:
    """Add a grid's counts into ``into`` (a chief of two grids is scored on both)."""
    if other is None:
        return
    for part in ("visits", "notices", "hazards", "requests"):
        a, b = getattr(into, part), getattr(other, part)
        for name in ("due", "visited", "targets", "on_time", "raised", "resolved"):
            if hasattr(a, name):
                setattr(a, name, getattr(a, name) + getattr(b, name))

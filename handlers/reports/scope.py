"""What a /report asks for, read from its words, and the scope it may have.

Words (any order): the kind (``月`` ``季`` ``年`` / month quarter year), the period
(``2026-11`` ``2026Q3`` ``2026`` ``上月`` …), a scope — ``县:芦溪县`` (or ``county 芦溪县``, or
a bare name ending in 县/区), ``市:萍乡市`` (``city``), ``领域:货运`` (``domain``, or a bare
domain word 客运 货运 港口 航运 渡口 工程), ``网格员:张敏`` (``member 张敏``) — and
``--format chat,xlsx,html`` (``--格式``).

The scope must lie inside what the sender reaches for :data:`Action.REVIEW` (the grid
directory's one rule): admins every county, level-1 staff their county, a level-2 chief or
office member their grid, a member only themselves. Without a scope the report is of
everything they reach: several counties side by side, one county by its level-2 grids, one
grid by its members, or a member's own enterprises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.config import NOTICE_DOMAINS
from bot.errors import UserError
from handlers.reports.build import Target
from handlers.reports.files import FORMAT_WORDS
from handlers.reports.model import COUNTIES, COUNTY, GRID, GRIDS, MEMBER
from handlers.reports.period import KIND_WORDS
from storage import reports as db
from storage.db import Session
from storage.directory import Reach
from storage.models import Person
from storage.reports import Scope, Window

_KEYED = re.compile(r"^([^:：=]+)[:：=](.+)$")
_COUNTY_KEYS = {"county", "县", "区", "县区"}
_CITY_KEYS = {"city", "市"}
_DOMAIN_KEYS = {"domain", "领域", "网格"}
_MEMBER_KEYS = {"member", "网格员", "人员", "person"}
_FORMAT_KEYS = {"--format", "--格式", "-f", "--fmt"}


class ReportError(UserError):
    """A /report refusal: template ``report_error`` with a reason key."""

    def __init__(self, key: str, word: str = "", **values: object) -> None:
        super().__init__("report_error", key=key, word=word, **values)
        self.key = key


@dataclass
class Ask:
    kind: str | None = None
    period: str | None = None
    county: str | None = None
    city: str | None = None
    domains: list[str] = field(default_factory=list)
    member: str | None = None
    formats: frozenset[str] | None = None


def _formats(text: str) -> frozenset[str]:
    found = set()
    for w in re.split(r"[,，、]", text):
        if not w.strip():
            continue
        fmt = FORMAT_WORDS.get(w.strip().lower())
        if fmt is None:
            raise ReportError("bad_format", w.strip())
        found.add(fmt)
    return frozenset(found)


def read(text: str) -> Ask:
    """The parts of a /report command line (raises ReportError on a word it cannot place)."""
    ask = Ask()
    words = text.split()
    i = 0

    def take(key: str) -> str:
        nonlocal i
        if i + 1 >= len(words):
            raise ReportError("missing_value", key)
        i += 1
        return words[i]

    while i < len(words):
        w = words[i]
        low = w.lower()
        keyed = _KEYED.match(w)
        if low.startswith("--") and "=" in low:
            key, _, value = w.partition("=")
            if key.lower() not in _FORMAT_KEYS:
                raise ReportError("unknown", w)
            ask.formats = _formats(value)
        elif low in _FORMAT_KEYS:
            ask.formats = _formats(take(w))
        elif low in KIND_WORDS:
            ask.kind = KIND_WORDS[low]
        elif low in _COUNTY_KEYS:
            ask.county = take(w)
        elif low in _CITY_KEYS:
            ask.city = take(w)
        elif low in _DOMAIN_KEYS:
            ask.domains.append(take(w))
        elif low in _MEMBER_KEYS:
            ask.member = take(w)
        elif keyed and keyed[1].lower() in _COUNTY_KEYS:
            ask.county = keyed[2]
        elif keyed and keyed[1].lower() in _CITY_KEYS:
            ask.city = keyed[2]
        elif keyed and keyed[1].lower() in _DOMAIN_KEYS:
            ask.domains += [d for d in re.split(r"[,，、]", keyed[2]) if d]
        elif keyed and keyed[1].lower() in _MEMBER_KEYS:
            ask.member = keyed[2]
        elif w in NOTICE_DOMAINS:
            ask.domains.append(w)
        elif re.match(r"^[\dqQ上本今去第]", w) or low in ("this", "last"):
            if ask.period is not None:
                raise ReportError("unknown", w)
            ask.period = w
        elif w.endswith(("县", "区")):
            ask.county = w
        elif w.endswith("市"):
            ask.city = w
        else:
            raise ReportError("unknown", w)
        i += 1
    return ask


def _whole_grids(reach: Reach) -> Reach:
    """The part of a reach that covers whole grids (a member's served enterprises do not
    open their grid's figures)."""
    return Reach(reach.everything, reach.l1_grids, reach.l2_grids)


async def resolve(
    session: Session, reach: Reach, person: Person | None, ask: Ask, win: Window
) -> Target:
    """The report's target: level, scope and name. Refuses what lies outside ``reach``."""
    if reach.empty:
        raise ReportError("no_reach")
    grids = _whole_grids(reach)
    if ask.member:
        return await _member(session, reach, grids, person, ask, win)
    if ask.domains:
        return await _domains(session, grids, ask)
    if ask.county or ask.city:
        return await _counties(session, reach, ask)
    return await _default(session, reach, person, win)


async def _member(
    session: Session, reach: Reach, grids: Reach, person: Person | None, ask: Ask, win: Window
) -> Target:
    name = ask.member or ""
    if grids.empty:  # a member: only themselves
        if person is None or person.name != name:
            raise ReportError("member_not_allowed", name)
        found = await db.find_members(session, Scope(Reach(everything=True), person.id), name, win)
    else:
        found = await db.find_members(session, Scope(grids), name, win)
    if ask.county:
        counties = {u.key for u in await db.find_counties(session, ask.county)}
        found = [p for p in found if p.l1_grid_id in counties]
    ids = sorted({p.person_id for p in found})
    if not ids:
        raise ReportError("member_unknown", name)
    if len(ids) > 1:
        names = {u.key: u.name for u in await db.counties(session, Scope(Reach(everything=True)))}
        raise ReportError(
            "member_ambiguous",
            name,
            choices=sorted({f"{names.get(p.l1_grid_id, '')}·{p.grid}" for p in found}),
        )
    return await member_target(session, found[0].person_id, win, found)


async def member_target(
    session: Session, person_id: int, win: Window, rows: list[db.GridPerson] | None = None
) -> Target:
    """One person's report: the enterprises they served in the window (and the grids they
    chief, for their meetings)."""
    own = Scope(Reach(everything=True), person_id)
    rows = rows or await db.grid_people(session, own, win.first, win.cut_day, db.TRAINED_ROLES)
    served = frozenset(u.key for u in await db.enterprises(session, own, win) if u.key)
    chiefed = frozenset(p.grid_id for p in rows if p.kind == "l2_chief")
    main = next((p for p in rows if p.kind == "l2_member"), rows[0] if rows else None)
    name = main.name if main else str(person_id)
    return Target(MEMBER, Scope(Reach(l2_grids=chiefed, enterprises=served), person_id), name, main)


async def _domains(session: Session, grids: Reach, ask: Ask) -> Target:
    if grids.empty:
        raise ReportError("domain_not_allowed", "、".join(ask.domains))
    found = await db.find_domains(session, Scope(grids), ask.domains)
    if ask.county:
        counties = {u.name for u in await db.find_counties(session, ask.county)}
        found = [u for u in found if u.parent in counties]
    if not found:
        raise ReportError("domain_unknown", "、".join(ask.domains))
    scope = Scope(Reach(l2_grids=frozenset(u.key for u in found if u.key)))
    if len(found) == 1:
        return Target(GRID, scope, f"{found[0].parent}·{found[0].name}")
    counties = sorted({u.parent for u in found})
    if len(counties) == 1:
        return Target(COUNTY, scope, f"{counties[0]}·{'、'.join(u.name for u in found)}")
    return Target(GRIDS, scope, "、".join(ask.domains))


async def _counties(session: Session, reach: Reach, ask: Ask) -> Target:
    if ask.city:
        found = await db.find_city(session, ask.city)
        name = ask.city
    else:
        found = await db.find_counties(session, ask.county or "")
        name = found[0].name if len(found) == 1 else ask.county or ""
    if not found:
        raise ReportError("county_unknown", ask.city or ask.county or "")
    allowed = [u for u in found if reach.everything or u.key in reach.l1_grids]
    if len(allowed) < len(found):
        raise ReportError("county_not_allowed", name)
    scope = Scope(Reach(l1_grids=frozenset(u.key for u in allowed if u.key)))
    return Target(COUNTY if len(allowed) == 1 else COUNTIES, scope, name)


async def _default(session: Session, reach: Reach, person: Person | None, win: Window) -> Target:
    if reach.everything or reach.l1_grids:
        scope = Scope(
            Reach(everything=True) if reach.everything else Reach(l1_grids=reach.l1_grids)
        )
        counties = await db.counties(session, scope)
        if len(counties) == 1:
            one = Scope(Reach(l1_grids=frozenset({counties[0].key or 0})))
            return Target(COUNTY, one, counties[0].name)
        cities = sorted({u.parent for u in counties if u.parent})
        name = cities[0] if len(cities) == 1 and not reach.everything else "、".join(cities)
        return Target(COUNTIES, scope, name or "全部")
    if reach.l2_grids:
        scope = Scope(Reach(l2_grids=reach.l2_grids))
        units = await db.domains(session, scope)
        if len(units) == 1:
            return Target(GRID, scope, f"{units[0].parent}·{units[0].name}")
        return Target(GRIDS, scope, "、".join(f"{u.parent}·{u.name}" for u in units))
    if person is None:
        raise ReportError("no_reach")
    return await member_target(session, person.id, win)

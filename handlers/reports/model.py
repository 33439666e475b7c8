"""What a report says: its units, each unit's indicators, and the score cards.

:data:`INDICATORS` is the one definition of every indicator (README "Indicators" describes
the same keys in words): how it is computed from the counts storage/reports.py returns, how
it is shown, and its names in both locales. The chat summary, the workbook, the chart and
the annual work report all read values through it. Rates are ``None`` when nothing was due
(shown as "—", never "100% (0/0)").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from handlers.reports.period import Period
from storage.reports import (
    AccidentCase,
    AccidentCount,
    Coverage,
    Gap,
    GridPerson,
    HazardCase,
    HazardCount,
    Key,
    MeetingCount,
    Miss,
    NoticeCount,
    PersonRecords,
    RequestCount,
    TrainingStatus,
    VisitCount,
    Window,
)

# Report levels: what the rows are.
COUNTIES = "counties"  # counties side by side, ranked (city / province scope)
COUNTY = "county"  # the level-2 grids of one county
GRIDS = "grids"  # several level-2 grids (one domain across counties), ranked
GRID = "grid"  # the members of one level-2 grid
MEMBER = "member"  # one member's enterprises, their score card and records

Number = int | float | None


@dataclass
class Row:
    """One unit of a report (or the total) with the counts behind its indicators."""

    key: Key
    name: str
    parent: str = ""
    coverage: Coverage = field(default_factory=Coverage)
    visits: VisitCount = field(default_factory=VisitCount)
    visits_made: int = 0
    meetings: MeetingCount = field(default_factory=MeetingCount)
    trainings: int | None = None  # trainings held (counties and the total only)
    people: int = 0  # level-2 chiefs, office members and members in post at the cut-off
    untrained: int = 0  # of those, not trained this year
    post_before_training: int = 0  # of those, in post before their first training
    notices: NoticeCount = field(default_factory=NoticeCount)
    hazards: HazardCount = field(default_factory=HazardCount)
    requests: RequestCount = field(default_factory=RequestCount)
    accidents: AccidentCount = field(default_factory=AccidentCount)
    score: float | None = None
    rank: int | None = None

    def value(self, key: str) -> Number:
        return BY_KEY[key].value(self)


def ratio(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass(frozen=True)
class Indicator:
    key: str
    section: str
    zh: str
    en: str
    fmt: str  # int, pct, hours, days, minutes, score
    get: Callable[[Row], Any]  # a number, or (numerator, denominator) for a rate
    # The README's definition is the reference; this is the short form for tooltips.
    doc: str = ""

    def value(self, row: Row) -> Number:
        got = self.get(row)
        if isinstance(got, tuple):
            return ratio(*got)
        return got

    def parts(self, row: Row) -> tuple[int, int] | None:
        got = self.get(row)
        return got if isinstance(got, tuple) else None

    def label(self, locale: str) -> str:
        return self.en if locale == "en" else self.zh


def _avg(total: float, n: int, scale: float = 1.0) -> float | None:
    return total / n / scale if n else None


def _casualties(r: Row) -> int:
    a = r.accidents
    return a.dead + a.injured + a.missing


I = Indicator  # noqa: E741 - a table reads better with a short name
INDICATORS: tuple[Indicator, ...] = (
    # 网格覆盖 coverage, on the cut-off day
    I("enterprises", "coverage", "企业数", "enterprises", "int", lambda r: r.coverage.enterprises),
    I(
        "grid_complete_rate",
        "coverage",
        "网格齐全率",
        "grid complete",
        "pct",
        lambda r: (r.coverage.complete, r.coverage.enterprises),
    ),
    I(
        "grid_gaps",
        "coverage",
        "网格缺口",
        "grid gaps",
        "int",
        lambda r: r.coverage.enterprises - r.coverage.complete,
    ),
    I(
        "staff_changes",
        "coverage",
        "人员变动",
        "staff changes",
        "int",
        lambda r: r.coverage.staff_changes,
    ),
    # 走访 visits
    I(
        "visit_rate",
        "visits",
        "走访覆盖率",
        "visit coverage",
        "pct",
        lambda r: (r.visits.visited, r.visits.due),
    ),
    I("visits", "visits", "走访次数", "visits", "int", lambda r: r.visits_made),
    I(
        "visit_misses",
        "visits",
        "漏访（人·企·月）",
        "missed visits",
        "int",
        lambda r: r.visits.due - r.visits.visited,
    ),
    # 会议 meetings
    I(
        "meeting_rate",
        "meetings",
        "季度会议召开率",
        "quarterly meetings held",
        "pct",
        lambda r: (r.meetings.held, r.meetings.due),
    ),
    I("meetings", "meetings", "会议次数", "meetings", "int", lambda r: r.meetings.meetings),
    # 培训 training
    I("trainings", "training", "培训次数", "trainings", "int", lambda r: r.trainings),
    I(
        "trained_rate",
        "training",
        "本年培训率",
        "trained this year",
        "pct",
        lambda r: (r.people - r.untrained, r.people),
    ),
    I("untrained", "training", "本年未培训", "not trained this year", "int", lambda r: r.untrained),
    I(
        "post_before_training",
        "training",
        "先上岗后培训",
        "in post before training",
        "int",
        lambda r: r.post_before_training,
    ),
    # 通知 notices
    I("notices", "notices", "通知数", "notices", "int", lambda r: r.notices.notices),
    I("notice_targets", "notices", "应确认", "to acknowledge", "int", lambda r: r.notices.targets),
    I(
        "ack_rate",
        "notices",
        "确认率",
        "acknowledged",
        "pct",
        lambda r: (r.notices.acked, r.notices.targets),
    ),
    I(
        "ack_on_time_rate",
        "notices",
        "按时确认率",
        "acknowledged on time",
        "pct",
        lambda r: (r.notices.on_time, r.notices.targets),
    ),
    I(
        "feedback_rate",
        "notices",
        "反馈率",
        "feedback",
        "pct",
        lambda r: (r.notices.feedback, r.notices.targets),
    ),
    # 隐患 hazards
    I("hazards", "hazards", "隐患数", "hazards", "int", lambda r: r.hazards.found),
    I("hazards_major", "hazards", "重大隐患", "major", "int", lambda r: r.hazards.major),
    I(
        "hazards_supervised",
        "hazards",
        "挂牌督办",
        "supervised",
        "int",
        lambda r: r.hazards.supervised,
    ),
    I(
        "hazard_on_time_rate",
        "hazards",
        "按期整改率",
        "rectified on time",
        "pct",
        lambda r: (r.hazards.on_time, r.hazards.due),
    ),
    I(
        "hazard_rework_rate",
        "hazards",
        "返工率",
        "rework rate",
        "pct",
        lambda r: (r.hazards.reworked, r.hazards.checked),
    ),
    I("hazards_overdue", "hazards", "逾期", "overdue", "int", lambda r: r.hazards.overdue),
    I(
        "hazards_overdue_open",
        "hazards",
        "逾期未整改",
        "overdue, not rectified",
        "int",
        lambda r: r.hazards.overdue_open,
    ),
    I("hazards_closed", "hazards", "已销号", "closed", "int", lambda r: r.hazards.closed),
    I(
        "hazard_close_days",
        "hazards",
        "平均销号天数",
        "days to close (avg)",
        "days",
        lambda r: _avg(r.hazards.close_hours, r.hazards.closed, 24.0),
    ),
    # 问题诉求 requests
    I("requests", "requests", "诉求数", "requests", "int", lambda r: r.requests.raised),
    I("requests_taken", "requests", "已受理", "taken", "int", lambda r: r.requests.taken),
    I("requests_resolved", "requests", "已办结", "resolved", "int", lambda r: r.requests.resolved),
    I(
        "request_resolve_rate",
        "requests",
        "办结率",
        "resolved rate",
        "pct",
        lambda r: (r.requests.resolved, r.requests.raised),
    ),
    I(
        "requests_escalated",
        "requests",
        "逐级上报",
        "escalated",
        "int",
        lambda r: r.requests.escalated,
    ),
    I(
        "request_response_h",
        "requests",
        "响应时长中位数（小时）",
        "median response (h)",
        "hours",
        lambda r: r.requests.response_median_h,
    ),
    I(
        "request_handling_h",
        "requests",
        "办结时长中位数（小时）",
        "median handling (h)",
        "hours",
        lambda r: r.requests.handling_median_h,
    ),
    # 事故 accidents
    I("accidents", "accidents", "事故数", "accidents", "int", lambda r: r.accidents.accidents),
    I("accident_casualties", "accidents", "伤亡（人）", "casualties", "int", _casualties),
    I(
        "accident_delay_min",
        "accidents",
        "平均报告时延（分钟）",
        "report delay (avg min)",
        "minutes",
        lambda r: _avg(r.accidents.delay_total_min, r.accidents.accidents),
    ),
)
BY_KEY = {i.key: i for i in INDICATORS}
SECTIONS = ("coverage", "visits", "meetings", "training", "notices", "hazards", "requests")
SECTIONS += ("accidents",)
SECTION_NAMES = {
    "coverage": ("网格覆盖", "Coverage"),
    "visits": ("走访", "Visits"),
    "meetings": ("会议", "Meetings"),
    "training": ("培训", "Training"),
    "notices": ("通知", "Notices"),
    "hazards": ("隐患", "Hazards"),
    "requests": ("问题诉求", "Requests"),
    "accidents": ("事故", "Accidents"),
    "assessment": ("年度考核", "Assessment"),
}
# The columns of the chat summary (a short table).
SUMMARY = (
    "visit_rate",
    "meeting_rate",
    "ack_on_time_rate",
    "hazards",
    "hazard_on_time_rate",
    "hazards_overdue_open",
    "request_resolve_rate",
    "accidents",
)


def section_name(section: str, locale: str) -> str:
    zh, en = SECTION_NAMES[section]
    return en if locale == "en" else zh


def show(value: Number, fmt: str, *, empty: str = "—") -> str:
    """A value as the chat summary and the HTML show it."""
    if value is None:
        return empty
    if fmt == "pct":
        return f"{math.floor(100 * value + 0.5)}%"  # half up: 5/8 is 63%
    if fmt in ("hours", "days", "minutes"):
        return f"{value:.1f}"
    if fmt == "score":
        return f"{value:.1f}"
    return str(int(value))


# --- the assessment (年度考核) -----------------------------------------------------------------

PART_NAMES = {
    "visits": ("走访覆盖", "visit coverage"),
    "notices": ("通知按时确认", "notices on time"),
    "hazards": ("隐患按期整改", "hazards on time"),
    "requests": ("诉求办结", "requests resolved"),
    "training": ("年度培训", "trained this year"),
    "meetings": ("季度会议", "quarterly meetings"),
}


def part_name(part: str, locale: str) -> str:
    zh, en = PART_NAMES[part]
    return en if locale == "en" else zh


@dataclass(frozen=True)
class Part:
    name: str
    weight: float
    num: int
    den: int

    @property
    def rate(self) -> float | None:
        return ratio(self.num, self.den)


@dataclass
class ScoreCard:
    person: GridPerson
    role: str  # "member" or "chief"
    county: str
    parts: list[Part]
    score: float | None = None
    rank: int | None = None  # within the county, among the same role
    candidate: bool = False  # 优秀网格员 candidate

    def points(self, part: Part) -> float | None:
        """The part's share of the score (out of 100)."""
        weights = sum(p.weight for p in self.parts if p.rate is not None)
        if part.rate is None or not weights:
            return None
        return 100 * part.weight * part.rate / weights


def score(parts: list[Part]) -> float | None:
    """100 × the weighted mean of the rates; parts with nothing due are left out."""
    counted = [(p.weight, p.rate) for p in parts if p.rate is not None and p.weight > 0]
    total = sum(w for w, _ in counted)
    if not total:
        return None
    return 100 * sum(w * r for w, r in counted) / total


def rank(cards: list[Any], attr: str = "score") -> None:
    """Set ``rank`` 1, 2, … by descending score (equal scores share a rank; no score: none)."""
    scored = sorted((c for c in cards if getattr(c, attr) is not None), key=lambda c: -c.score)
    last: float | None = None
    place = 0
    for i, card in enumerate(scored, 1):
        if last is None or round(card.score, 6) != round(last, 6):
            place, last = i, card.score
        card.rank = place


def unit_parts(row: Row, weights: dict[str, float]) -> list[Part]:
    """A unit's rates as score parts (counties side by side are ranked on these)."""
    rates = {
        "meetings": (row.meetings.held, row.meetings.due),
        "visits": (row.visits.visited, row.visits.due),
        "notices": (row.notices.on_time, row.notices.targets),
        "hazards": (row.hazards.on_time, row.hazards.due),
        "requests": (row.requests.resolved, row.requests.raised),
        "training": (row.people - row.untrained, row.people),
    }
    return [Part(k, w, *rates[k]) for k, w in weights.items() if k in rates]


# --- the report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class MonthPoint:
    label: str  # 2026-11
    due: int
    visited: int
    found: int
    closed: int

    @property
    def visit_rate(self) -> float | None:
        return ratio(self.visited, self.due)


@dataclass
class Report:
    period: Period
    window: Window
    level: str
    scope_name: str
    generated_at: datetime
    rows: list[Row]
    total: Row
    current: bool  # the period is still running (counted up to the cut-off)
    draft: bool = False
    trend: list[MonthPoint] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    misses: list[tuple[str, Miss]] = field(default_factory=list)  # (month label, miss)
    categories: list[tuple[str, str, int]] = field(default_factory=list)
    notable: list[HazardCase] = field(default_factory=list)
    accident_cases: list[AccidentCase] = field(default_factory=list)
    training: list[TrainingStatus] = field(default_factory=list)
    notices_by_enterprise: list[tuple[str, NoticeCount]] = field(default_factory=list)
    notices_by_member: list[tuple[str, NoticeCount]] = field(default_factory=list)
    cards: list[ScoreCard] = field(default_factory=list)
    person: GridPerson | None = None
    records: PersonRecords | None = None

    @property
    def ranked(self) -> bool:
        return self.level in (COUNTIES, GRIDS)

    @property
    def cut_day(self) -> date:
        return self.window.cut_day

    @property
    def candidates(self) -> list[ScoreCard]:
        return [c for c in self.cards if c.candidate]

    @property
    def by_type(self) -> dict[str, int]:
        return self.total.coverage.by_type

    def file_stem(self) -> str:
        kind = {"month": "月报", "quarter": "季报", "year": "年报"}[self.period.kind]
        if self.level == MEMBER:
            kind = "考核"
        name = self.scope_name.replace("/", "-").replace(" ", "")
        return f"{name}-{self.period.label}-{kind}"

"""Report periods: a month, a quarter or a year, as people type them, and its time window.

``月 2026-11``, ``季 2026Q3``, ``年 2026``; the kind may be left out when the period says it
(``2026-11`` is a month, ``2026Q3`` a quarter, ``2026`` a year), and the period may be left
out: it is then the period in progress, counted up to today (``上月`` / ``上季`` / ``去年``
name the last complete one). A future period is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.dates import month_bounds
from storage.reports import Window

MONTH, QUARTER, YEAR = "month", "quarter", "year"
KIND_WORDS: dict[str, str] = {
    **dict.fromkeys(("month", "monthly", "m", "月", "月报", "月度"), MONTH),
    **dict.fromkeys(("quarter", "quarterly", "q", "季", "季度", "季报"), QUARTER),
    **dict.fromkeys(("year", "annual", "yearly", "y", "年", "年度", "年报"), YEAR),
}
_THIS = {"本月": MONTH, "本季": QUARTER, "本季度": QUARTER, "今年": YEAR, "本年": YEAR, "this": ""}
_LAST = {"上月": MONTH, "上个月": MONTH, "上季": QUARTER, "上季度": QUARTER, "去年": YEAR}
_LAST.update({"上年": YEAR, "last": ""})

_YM = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*月?$")
_M = re.compile(r"^(\d{1,2})\s*月(份)?$")
_YQ = re.compile(r"^(\d{4})\s*(?:[-/ ]?\s*[qQ]|年\s*第?)\s*([1-4])\s*(?:季度?)?$")
_Q = re.compile(r"^(?:[qQ]|第)\s*([1-4])\s*(?:季度?)?$")
_Y = re.compile(r"^(\d{4})\s*年?$")


class PeriodError(ValueError):
    """An unreadable or future period; ``key`` names the reason for the template."""

    def __init__(self, key: str, text: str = "") -> None:
        super().__init__(f"{key}: {text}")
        self.key = key
        self.text = text


@dataclass(frozen=True)
class Period:
    kind: str
    year: int
    number: int  # the month (1-12) or quarter (1-4); 0 for a year

    @property
    def first(self) -> date:
        if self.kind == MONTH:
            return date(self.year, self.number, 1)
        if self.kind == QUARTER:
            return date(self.year, 3 * self.number - 2, 1)
        return date(self.year, 1, 1)

    @property
    def last(self) -> date:
        if self.kind == MONTH:
            return month_bounds(self.year, self.number)[1]
        if self.kind == QUARTER:
            return month_bounds(self.year, 3 * self.number)[1]
        return date(self.year, 12, 31)

    @property
    def label(self) -> str:
        """2026-11, 2026Q3, 2026: also the files' names."""
        if self.kind == MONTH:
            return f"{self.year}-{self.number:02d}"
        if self.kind == QUARTER:
            return f"{self.year}Q{self.number}"
        return str(self.year)

    def previous(self) -> Period:
        if self.kind == MONTH:
            y, m = (self.year - 1, 12) if self.number == 1 else (self.year, self.number - 1)
            return Period(MONTH, y, m)
        if self.kind == QUARTER:
            y, q = (self.year - 1, 4) if self.number == 1 else (self.year, self.number - 1)
            return Period(QUARTER, y, q)
        return Period(YEAR, self.year - 1, 0)

    def months(self) -> list[tuple[int, int]]:
        y, m = self.first.year, self.first.month
        out = []
        while date(y, m, 1) <= self.last:
            out.append((y, m))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        return out


def containing(kind: str, day: date) -> Period:
    if kind == MONTH:
        return Period(MONTH, day.year, day.month)
    if kind == QUARTER:
        return Period(QUARTER, day.year, (day.month - 1) // 3 + 1)
    return Period(YEAR, day.year, 0)


def parse(kind: str | None, text: str | None, today: date) -> Period:
    """The period of ``kind`` (None: from the text, else a month) named by ``text`` (None:
    the one in progress). Raises PeriodError."""
    t = (text or "").strip().lower()
    if not t or t in _THIS:
        found = containing(kind or _THIS.get(t) or MONTH, today)
    elif t in _LAST:
        found = containing(kind or _LAST[t] or MONTH, today).previous()
    elif m := _YQ.match(t):
        found = Period(QUARTER, int(m[1]), int(m[2]))
    elif m := _Q.match(t):
        q, y = int(m[1]), today.year
        if date(y, 3 * q - 2, 1) > today:
            y -= 1
        found = Period(QUARTER, y, q)
    elif m := _YM.match(t):
        if not 1 <= int(m[2]) <= 12:
            raise PeriodError("unreadable", text or "")
        found = Period(MONTH, int(m[1]), int(m[2]))
    elif m := _M.match(t):
        mon, y = int(m[1]), today.year
        if not 1 <= mon <= 12:
            raise PeriodError("unreadable", text or "")
        if mon > today.month:
            y -= 1
        found = Period(MONTH, y, mon)
    elif m := _Y.match(t):
        found = Period(YEAR, int(m[1]), 0)
    else:
        raise PeriodError("unreadable", text or "")
    if kind is not None and found.kind != kind:
        raise PeriodError("mismatch", text or "")
    if found.first > today:
        raise PeriodError("future", text or "")
    return found


def _instant(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tz).astimezone(UTC)


def window(period: Period, tz: ZoneInfo, now: datetime, *, trend_months: int = 0) -> Window:
    """The period's time window at ``now``: a period still running is counted up to now.

    ``trend_months`` > 0 extends the window's months back so that at least that many are
    listed (a month report's chart shows the half-year before it); the rest of the window
    stays the period's."""
    today = now.astimezone(tz).date()
    first, last = period.first, period.last
    end = _instant(last + timedelta(days=1), tz)
    cut_day = min(last, today)
    cutoff = min(end, now.astimezone(UTC))
    months = period.months()
    while len(months) < trend_months:
        y, m = months[0]
        months.insert(0, (y - 1, 12) if m == 1 else (y, m - 1))
    spans = []
    for y, m in months:
        m_first, m_last = month_bounds(y, m)
        if m_first > cut_day:
            break
        spans.append(
            (
                m_first,
                min(m_last, cut_day),
                _instant(m_first, tz),
                _instant(m_last + timedelta(days=1), tz),
            )
        )
    quarters = []
    q = containing(QUARTER, first)
    while q.first <= last:
        if q.last <= cut_day and q.last <= last:
            quarters.append((q.first, q.last))
        q = Period(QUARTER, q.year + (q.number == 4), q.number % 4 + 1)
    return Window(
        first=first,
        last=last,
        start=_instant(first, tz),
        end=end,
        cutoff=cutoff,
        cut_day=cut_day,
        months=tuple(spans),
        quarters=tuple(quarters),
    )

"""Dates as people type them (今天, 昨天, 11月20日, 2026-11-20), months, and working days.

Explicit Chinese and ISO forms are parsed here (dateparser does not read 11月20日); relative
phrases (3天前, 上周五, last friday) go to dateparser. Working days follow the official
calendar with 调休 via chinese_calendar.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import chinese_calendar
import dateparser

log = logging.getLogger(__name__)

Prefer = Literal["past", "future"]

_WORDS = {
    "今天": 0, "今日": 0, "today": 0,
    "昨天": -1, "昨日": -1, "yesterday": -1,
    "前天": -2,
    "明天": 1, "明日": 1, "tomorrow": 1,
    "后天": 2,
}  # fmt: skip
_YMD = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?$")
_MD = re.compile(r"^(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?$")
_YM = re.compile(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*月?$")
_M = re.compile(r"^(\d{1,2})\s*月(份)?$")


def now(tz: ZoneInfo) -> datetime:
    """The current time in the grid's time zone (tests move it with time-machine)."""
    return datetime.now(tz)


def today(tz: ZoneInfo) -> date:
    return now(tz).date()


def parse_day(text: str, today: date, prefer: Prefer = "past") -> date | None:
    """A calendar day from user text, or None when it cannot be read.

    Without a year, 11月20日 is the nearest such day in the preferred direction.
    """
    t = text.strip().lower()
    if not t:
        return None
    if t in _WORDS:
        return today + timedelta(days=_WORDS[t])
    if m := _YMD.match(t):
        return _safe_date(int(m[1]), int(m[2]), int(m[3]))
    if m := _MD.match(t):
        d = _safe_date(today.year, int(m[1]), int(m[2]))
        if d is None:
            return None
        if prefer == "past" and d > today:
            d = _safe_date(today.year - 1, d.month, d.day)
        elif prefer == "future" and d < today:
            d = _safe_date(today.year + 1, d.month, d.day)
        return d
    parsed = dateparser.parse(
        text,
        languages=["zh", "en"],
        settings={
            "PREFER_DATES_FROM": prefer,
            "RELATIVE_BASE": datetime.combine(today, time(12, 0)),
            "RETURN_AS_TIMEZONE_AWARE": False,
        },
    )
    return parsed.date() if parsed else None


def parse_month(text: str, today: date) -> tuple[int, int] | None:
    """(year, month) from 2026-11, 2026年11月, 11月, 本月, 上月; None when unreadable."""
    t = text.strip().lower()
    if t in ("本月", "这个月", "this month"):
        return today.year, today.month
    if t in ("上月", "上个月", "last month"):
        first = today.replace(day=1) - timedelta(days=1)
        return first.year, first.month
    if m := _YM.match(t):
        y, mo = int(m[1]), int(m[2])
    elif m := _M.match(t):
        y, mo = today.year, int(m[1])
        if mo > today.month:
            y -= 1
    else:
        return None
    return (y, mo) if 1 <= mo <= 12 else None


def _safe_date(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def is_workday(day: date) -> bool:
    """Official working day (调休 included); plain Monday–Friday past the library's calendar."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        log.warning("no official calendar for %s; counting Monday–Friday", day.year)
        return day.weekday() < 5


def add_working_hours(start: datetime, hours: int) -> datetime:
    """``start`` plus ``hours`` counted on working days only (24 h per working day).

    Deadlines "within N working hours" pause over weekends and holidays, as grid case systems
    count them; a start on a holiday begins counting at the next working day's midnight.
    """
    remaining = timedelta(hours=hours)
    current = start
    while True:
        day_end = datetime.combine(current.date() + timedelta(days=1), time(0), current.tzinfo)
        if is_workday(current.date()):
            available = day_end - current
            if remaining <= available:
                return current + remaining
            remaining -= available
        current = day_end


def month_bounds(year: int, month: int) -> tuple[date, date]:
    """First and last day of the month."""
    first = date(year, month, 1)
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return first, nxt - timedelta(days=1)


def quarter_of(day: date) -> tuple[int, int]:
    return day.year, (day.month - 1) // 3 + 1

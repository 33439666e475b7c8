"""Reading what people type when reporting an accident: when it happened, and casualties."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from bot.dates import parse_day
from bot.words import NONE, normalize

# A report may be a few minutes "ahead" of the bot's clock (phones drift).
FUTURE_SLACK = timedelta(minutes=10)

_NOW_WORDS = frozenset({"刚才", "刚刚", "现在", "now", "just now"})
_AGO = re.compile(r"^(\d{1,4})\s*(分钟|分|小时|个小时|min|mins|minutes|h|hours?)\s*(前|ago)?$")
_CLOCK = re.compile(r"^(\d{1,2})\s*[:：点时]\s*(\d{1,2})?\s*分?$")
_DAY_CLOCK = re.compile(r"^(.+?)\s*(\d{1,2}\s*[:：点时]\s*(?:\d{1,2})?\s*分?)$")


def parse_when(text: str, now: datetime) -> datetime | None:
    """An accident time from '14:30', '今天 9点', '昨天 23:10', '11月20日 8:05', '30分钟前',
    '刚才'; in now's time zone. None when unreadable or in the future."""
    t = " ".join(normalize(text).split())
    if not t:
        return None
    if t in _NOW_WORDS:
        return now
    if m := _AGO.match(t):
        n = int(m[1])
        minutes = n if m[2] in ("分钟", "分", "min", "mins", "minutes") else n * 60
        return now - timedelta(minutes=minutes)
    when: datetime | None = None
    if m := _CLOCK.match(t):
        clock = _clock(m)
        if clock is None:
            return None
        when = datetime.combine(now.date(), clock, now.tzinfo)
        if when > now + FUTURE_SLACK:
            when -= timedelta(days=1)  # "23:10" said just after midnight means yesterday
    elif m := _DAY_CLOCK.match(t):
        day = parse_day(m[1], now.date(), prefer="past")
        c = _CLOCK.match(m[2].strip())
        clock = _clock(c) if c else None
        if day is None or clock is None:
            return None
        when = datetime.combine(day, clock, now.tzinfo)
    if when is None or when > now + FUTURE_SLACK:
        return None
    return when


def _clock(m: re.Match[str]) -> time | None:
    h, mi = int(m[1]), int(m[2] or 0)
    return time(h, mi) if h < 24 and mi < 60 else None


# Label before number (死亡0) is tried first, number before label (2人受伤) second, so that
# "死亡0 受伤2" never reads the 0 as the injured count.
_LABEL_FIRST = {
    "dead": re.compile(r"(?:死亡|死)\s*(\d+)"),
    "injured": re.compile(r"(?:受伤|伤)\s*(\d+)"),
    "missing": re.compile(r"失踪\s*(\d+)"),
}
_NUMBER_FIRST = {
    "dead": re.compile(r"(\d+)\s*人?\s*(?:死亡|死)"),
    "injured": re.compile(r"(\d+)\s*人?\s*(?:受伤|伤)"),
    "missing": re.compile(r"(\d+)\s*人?\s*失踪"),
}
_NONE = NONE | {"无伤亡", "0"}


def parse_casualties(text: str) -> tuple[int, int, int] | None:
    """(dead, injured, missing) from '0 2 0', '0/2/0', '死亡0 受伤2 失踪0', '伤2人', '无'."""
    t = normalize(text)
    if t in _NONE:
        return 0, 0, 0
    found: dict[str, int] = {}
    for patterns in (_LABEL_FIRST, _NUMBER_FIRST):
        for key, pattern in patterns.items():
            m = pattern.search(t)
            if m and key not in found:
                found[key] = int(m[1])
        if found:
            break
    if found:
        return found.get("dead", 0), found.get("injured", 0), found.get("missing", 0)
    numbers = re.findall(r"\d+", t)
    if len(numbers) == 3 and re.fullmatch(r"[\d\s/,，、]+", t):
        dead, injured, missing = (int(n) for n in numbers)
        return dead, injured, missing
    return None

"""Reading short answers typed on a phone: 确认 / 取消 / 无 / 完成 / 跳过, numbered choices, names.

Shared by the visit, meeting and training conversations. Answers are compared after trimming
whitespace and trailing punctuation and lower-casing, so "确认。" and "OK" both count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from bot.dates import parse_day

YES = frozenset(
    {"确认", "确定", "是", "是的", "对", "好", "好的", "提交", "保存", "y", "yes", "ok"}
)
NO = frozenset({"取消", "否", "不", "放弃", "算了", "n", "no", "cancel"})
NONE = frozenset(
    {"无", "没有", "没", "无问题", "没有问题", "未发现问题", "正常", "none", "no", "nothing", "-"}
)
DONE = frozenset({"完成", "好了", "结束", "就这些", "没有了", "done", "finish", "ok", "好"})
SKIP = frozenset({"跳过", "无", "没有", "不用", "skip", "none", "no", "-"})
# Words that accept the default date (today).
DEFAULT_DAY = frozenset({"默认", "今天", "ok", "好", "-", "today"})

# Phrases in a one-line visit that mean no problem was found.
NO_PROBLEM_PHRASES = (
    "无问题",
    "没有问题",
    "没发现问题",
    "未发现问题",
    "无隐患",
    "未发现隐患",
    "没有隐患",
    "无异常",
    "未见异常",
    "一切正常",
    "no problem",
    "no issue",
)

_TRAILING = "。.!！~～ "
_NAME_SPLIT = re.compile(r"[\s,，、;；/]+")


def norm(text: str) -> str:
    return text.strip().strip(_TRAILING).strip().lower()


def is_in(text: str, words: frozenset[str]) -> bool:
    return norm(text) in words


def says_no_problem(text: str) -> bool:
    low = text.lower()
    return any(p in low for p in NO_PROBLEM_PHRASES)


@dataclass(frozen=True)
class Choice:
    """Result of matching an answer against a numbered list: the picks (list indexes)."""

    picks: tuple[int, ...]

    @property
    def one(self) -> int | None:
        return self.picks[0] if len(self.picks) == 1 else None


def choose(names: Sequence[str], answer: str) -> Choice:
    """Match "2" (1-based) or part of a name; an exact name wins over partial matches."""
    a = norm(answer)
    if not a:
        return Choice(())
    if a.isdigit():
        n = int(a)
        return Choice((n - 1,)) if 1 <= n <= len(names) else Choice(())
    exact = tuple(i for i, n in enumerate(names) if n.lower() == a)
    if exact:
        return Choice(exact[:1])
    return Choice(tuple(i for i, n in enumerate(names) if a in n.lower()))


def split_names(text: str) -> list[str]:
    """Names separated by 、 ， , ; spaces or new lines, without duplicates, in order."""
    seen: dict[str, None] = {}
    for part in _NAME_SPLIT.split(text):
        part = part.strip(_TRAILING)
        if part:
            seen.setdefault(part, None)
    return list(seen)


def future_day(text: str, today: date) -> tuple[date | None, str | None]:
    """A deadline, today or later: (day, None) or (day or None, error key).

    Error keys: "unreadable", "past". A month-day without a year that passed recently this year
    (3月1日 typed on 3月5日) is taken as a slip into the past, not as next year's 3月1日.
    """
    day = parse_day(text, today, prefer="future")
    if day is None:
        return None, "unreadable"
    behind = parse_day(text, today, prefer="past")
    if behind is not None and today - timedelta(days=62) <= behind < today and behind != day:
        return behind, "past"
    if day < today:
        return day, "past"
    return day, None


def past_day(text: str, today: date) -> tuple[date | None, str | None]:
    """A day that must not be in the future: (day, None) or (day or None, error key).

    Error keys: "unreadable", "future". A month-day without a year that is still ahead this
    year (e.g. 11月20日 typed on 11月19日) is taken as a slip for the future, not as last year.
    """
    if is_in(text, DEFAULT_DAY):
        return today, None
    day = parse_day(text, today, prefer="past")
    if day is None:
        return None, "unreadable"
    ahead = parse_day(text, today, prefer="future")
    if ahead is not None and today < ahead <= today + timedelta(days=62) and ahead != day:
        return ahead, "future"
    if day > today:
        return day, "future"
    return day, None

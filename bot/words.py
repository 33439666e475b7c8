"""The one vocabulary of what people type on a phone: 确认 / 取消 / 无 / 完成 / 跳过, numbered
choices, grades, dates, names, phone numbers.

Every conversation and command that reads a short answer goes through :func:`normalize`, so
"完成。", "确认！", "ＯＫ", "２" and a pasted "完成\u200b" mean the same everywhere. Word sets are
compared with normalized text, so they hold lower-case, half-width words without punctuation.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TypeVar

from bot.dates import parse_day

K = TypeVar("K")

# Zero-width characters that phones and copy-paste leave in text (ZWSP, ZWNJ, ZWJ, WJ, BOM).
ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff"
_DROP_ZERO_WIDTH = str.maketrans("", "", ZERO_WIDTH)
# Trailing punctuation people add to a one-word answer. NFKC already turned ！～，… into !~,...;
# 。 and 、 have no half-width form.
TRAILING = "。.!~,、…！～， \t\r\n"


# Control characters no person means to send (NUL, which PostgreSQL cannot store in text, and
# the rest of C0/C1 but tab and newline).
_CONTROLS = dict.fromkeys(
    c for c in (*range(0x00, 0x20), *range(0x7F, 0xA0)) if c not in (0x09, 0x0A, 0x0D)
)


def typed_text(text: str) -> str:
    """What a person sent, without control characters: the text every step and command reads."""
    return text.translate(_CONTROLS)


def visible(text: str) -> str:
    """The text without zero-width characters, otherwise as typed (for free text)."""
    return text.translate(_DROP_ZERO_WIDTH)


def clean(text: str) -> str:
    """NFKC (full-width → half-width) without zero-width characters; case and punctuation kept."""
    return visible(unicodedata.normalize("NFKC", text))


def normalize(text: str) -> str:
    """An answer as compared with the word sets: clean, trimmed, no trailing punctuation,
    lower-case. "  ＯＫ！" → "ok", "完成。" → "完成", "２" → "2"."""
    return clean(text).strip().rstrip(TRAILING).strip().lower()


# --- word sets ---------------------------------------------------------------------------------

YES = frozenset({"是", "是的", "对", "好", "好的", "y", "yes", "ok"})
NO = frozenset({"否", "不", "n", "no"})
# A confirmation step (save a record, send a notice): yes-words and what "do it" means there.
CONFIRM = YES | {"确认", "确定", "提交", "保存", "发送", "发出", "confirm"}
CANCEL = NO | {"取消", "放弃", "算了", "不发", "cancel"}
# "Nothing to report" as the answer to a question (problems found, measures taken).
NONE = frozenset(
    {"无", "没有", "没", "无问题", "没有问题", "未发现问题", "正常", "none", "no", "nothing", "-"}
)
DONE = frozenset({"完成", "完毕", "好了", "结束", "就这些", "没有了", "done", "finish", "ok", "好"})
SKIP = frozenset({"跳过", "无", "没有", "不用", "skip", "none", "no", "-"})
# What ends a photo step: done sending, or none to send.
FINISHED = DONE | SKIP
# Words that accept the default date (today).
DEFAULT_DAY = frozenset({"默认", "今天", "ok", "好", "-", "today"})

# Hazard grades as typed (in the report conversation and in "/隐患 H-… 确认 重大").
GENERAL_GRADE = frozenset({"一般", "一般隐患", "general"})
MAJOR_GRADE = frozenset({"重大", "重大隐患", "重大事故隐患", "major"})

# A reply that acknowledges a notice contains one of these (已收到！, 收到，马上落实) …
RECEIVED = ("收到", "已阅", "知悉")
# … or is one of these English words.
RECEIVED_EN = frozenset({"ok", "okay", "received", "ack", "acknowledged", "roger", "got it"})
_NOT_RECEIVED = re.compile(r"(没有|没|未|不|尚未)\s*(收到|知悉)")

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

_NAME_SPLIT = re.compile(r"[\s,，、;；/]+")


def is_in(text: str, words: frozenset[str]) -> bool:
    return normalize(text) in words


def confirmed(text: str) -> bool | None:
    """The answer to a confirmation: True (CONFIRM), False (CANCEL) or None (neither)."""
    word = normalize(text)
    if word in CONFIRM:
        return True
    if word in CANCEL:
        return False
    return None


def which(text: str, options: Mapping[K, frozenset[str]], *, numbered: bool = False) -> K | None:
    """The option whose words contain the answer; with ``numbered`` also its 1-based position
    (as listed in the question: "1 一般隐患 2 重大事故隐患")."""
    word = normalize(text)
    if numbered and word.isdigit():
        keys = list(options)
        n = int(word)
        return keys[n - 1] if 1 <= n <= len(keys) else None
    return next((key for key, words in options.items() if word in words), None)


def says_no_problem(text: str) -> bool:
    low = normalize(text)
    return any(p in low for p in NO_PROBLEM_PHRASES)


def says_received(text: str, max_len: int = 200) -> bool:
    """Does a reply to a notice acknowledge it? (收到, 已收到！, 已阅, ok; not 没收到)."""
    t = normalize(text)
    if not t or len(t) > max_len or _NOT_RECEIVED.search(t):
        return False
    return any(w in t for w in RECEIVED) or t in RECEIVED_EN


# --- numbered choices and names ------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """Result of matching an answer against a numbered list: the picks (list indexes)."""

    picks: tuple[int, ...]

    @property
    def one(self) -> int | None:
        return self.picks[0] if len(self.picks) == 1 else None


def choose(names: Sequence[str], answer: str) -> Choice:
    """Match "2" / "２" (1-based) or part of a name; an exact name wins over partial matches."""
    a = normalize(answer)
    if not a:
        return Choice(())
    if a.isdigit():
        n = int(a)
        return Choice((n - 1,)) if 1 <= n <= len(names) else Choice(())
    keys = [normalize(n) for n in names]
    exact = tuple(i for i, n in enumerate(keys) if n == a)
    if exact:
        return Choice(exact[:1])
    return Choice(tuple(i for i, n in enumerate(keys) if a in n))


def split_names(text: str) -> list[str]:
    """Names separated by 、 ， , ; spaces or new lines, without duplicates, in order."""
    seen: dict[str, None] = {}
    for part in _NAME_SPLIT.split(clean(text)):
        part = part.strip(TRAILING)
        if part:
            seen.setdefault(part, None)
    return list(seen)


# --- phone numbers -------------------------------------------------------------------------------

_PHONE_CHARS = re.compile(r"^\+?[\d\s\-()]+$")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{9,11}$")


def looks_like_phone(text: str) -> bool:
    """Digits with the usual separators ("138 0000 0000", "(0799)1234567"): meant as a phone."""
    return bool(_PHONE_CHARS.match(clean(text)))


def phone_digits(text: str) -> str:
    """A phone as stored: digits only, without +86 / 0086 (may still be malformed)."""
    digits = re.sub(r"[\s\-()]", "", clean(text))
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix):
            digits = digits[len(prefix) :]
    return digits


def phone_number(text: str) -> str | None:
    """The stored form of an 11-digit mobile or a landline with area code; None otherwise."""
    digits = phone_digits(text)
    return digits if _MOBILE.match(digits) or _LANDLINE.match(digits) else None


# --- dates ---------------------------------------------------------------------------------------


def future_day(text: str, today: date) -> tuple[date | None, str | None]:
    """A deadline, today or later: (day, None) or (day or None, error key).

    Error keys: "unreadable", "past". A month-day without a year that passed recently this year
    (3月1日 typed on 3月5日) is taken as a slip into the past, not as next year's 3月1日.
    """
    text = normalize(text)
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
    text = normalize(text)
    if text in DEFAULT_DAY:
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

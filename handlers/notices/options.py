"""The option line of /broadcast, /notice and /remind, and the filter it applies.

The first line holds options: a kind (部署要求…), filters (domains 客运/货运…, enterprise
types, counties, enterprise names, bare or as ``县:芦溪县``), and ``--within 24h``. The filter
narrows the enterprises the issuer reaches (storage.directory: RULES[BROADCAST / NOTICE /
REMIND]) to those the notice goes to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bot.commands import Text
from bot.config import NOTICE_DOMAINS
from storage import notices as N
from storage.models import Enterprise, EnterpriseType

# Domain keyword → the enterprise type it means (DOMAIN.md: the six kinds in scope).
DOMAIN_TYPES: dict[str, EnterpriseType] = dict(
    zip(
        NOTICE_DOMAINS,
        (
            EnterpriseType.PASSENGER,
            EnterpriseType.FREIGHT,
            EnterpriseType.PORT,
            EnterpriseType.SHIPPING,
            EnterpriseType.FERRY,
            EnterpriseType.CONSTRUCTION,
        ),
        strict=True,
    )
)
_DOMAIN_WORDS = {
    **{d: d for d in NOTICE_DOMAINS},
    "passenger": "客运",
    "freight": "货运",
    "port": "港口",
    "shipping": "航运",
    "ferry": "渡口",
    "construction": "工程",
}
_TYPE_WORDS = {t.value: t.value for t in EnterpriseType}

NOTICE_KIND_WORDS = {
    "部署要求": N.REQUIREMENT,
    "要求": N.REQUIREMENT,
    "requirement": N.REQUIREMENT,
    "典型事故案例": N.ACCIDENT_CASE,
    "事故案例": N.ACCIDENT_CASE,
    "案例": N.ACCIDENT_CASE,
    "accident": N.ACCIDENT_CASE,
    "case": N.ACCIDENT_CASE,
    "检查通报": N.INSPECTION_BULLETIN,
    "通报": N.INSPECTION_BULLETIN,
    "inspection": N.INSPECTION_BULLETIN,
    "bulletin": N.INSPECTION_BULLETIN,
    "安全提醒": N.SAFETY_REMINDER,
    "reminder": N.SAFETY_REMINDER,
    "safety": N.SAFETY_REMINDER,
}
REMIND_KIND_WORDS = {
    "节假日": N.HOLIDAY,
    "节日": N.HOLIDAY,
    "假期": N.HOLIDAY,
    "holiday": N.HOLIDAY,
    "天气预警": N.WEATHER,
    "恶劣天气": N.WEATHER,
    "天气": N.WEATHER,
    "预警": N.WEATHER,
    "weather": N.WEATHER,
    "特殊时段": N.SPECIAL_PERIOD,
    "特殊时期": N.SPECIAL_PERIOD,
    "重要时段": N.SPECIAL_PERIOD,
    "special": N.SPECIAL_PERIOD,
}

_KEYS = {
    "领域": "domains",
    "domain": "domains",
    "类型": "types",
    "type": "types",
    "县": "counties",
    "区县": "counties",
    "县区": "counties",
    "county": "counties",
    "企业": "names",
    "enterprise": "names",
}
_WITHIN_FLAGS = ("--within", "--期限", "--时限")
_DURATION = re.compile(r"^(\d{1,4})\s*(h|hr|hrs|hours?|小时|个小时|d|days?|天|日)?$", re.IGNORECASE)
_LIST_SEP = re.compile(r"[,，、;；]+")
_KEYED = re.compile(r"^([^:：=]+)[:：=](.*)$")
MAX_WITHIN_HOURS = 24 * 60


class OptionError(ValueError):
    """A bad option; ``reason`` is shown to the issuer, who may simply send the command again."""

    def __init__(self, reason: Text) -> None:
        super().__init__(reason.get("en", ""))
        self.reason = reason


@dataclass
class Filter:
    domains: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    counties: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    # Bare words that are neither a kind nor a domain: a county or an enterprise name.
    words: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {
            "domains": self.domains,
            "types": self.types,
            "counties": self.counties,
            "names": self.names,
            "words": self.words,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Filter:
        return cls(**{k: list(d.get(k) or []) for k in cls().as_dict()})

    @property
    def empty(self) -> bool:
        return not any(self.as_dict().values())


@dataclass
class Options:
    kind: str | None = None
    within_hours: int | None = None
    filter: Filter = field(default_factory=Filter)


def parse_duration(text: str) -> int:
    """Hours from ``24h``, ``24``, ``3d``, ``3天``, ``48小时``."""
    m = _DURATION.match(text.strip())
    if not m:
        raise OptionError(
            {
                "zh_CN": f"时限「{text}」无法识别，请写成 24h、48小时 或 3天",
                "en": f"cannot read the time limit {text!r}; write 24h, 48h or 3d",
            }
        )
    n = int(m[1])
    unit = (m[2] or "h").lower()
    hours = n * 24 if unit.startswith("d") or unit in ("天", "日") else n
    if not 1 <= hours <= MAX_WITHIN_HOURS:
        raise OptionError(
            {
                "zh_CN": f"时限须在 1 小时到 {MAX_WITHIN_HOURS // 24} 天之间",
                "en": f"the time limit must be between 1 hour and {MAX_WITHIN_HOURS // 24} days",
            }
        )
    return hours


def parse_options(line: str, kind_words: dict[str, str]) -> Options:
    """Read the command's first line (everything after the command word)."""
    opts = Options()
    tokens = line.split()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        low = token.lower()
        flag = next((f for f in _WITHIN_FLAGS if low == f or low.startswith(f + "=")), None)
        if flag:
            value = (
                token[len(flag) + 1 :] if "=" in token else (tokens[i] if i < len(tokens) else "")
            )
            if "=" not in token:
                i += 1
            opts.within_hours = parse_duration(value)
            continue
        if low.startswith("--"):
            raise OptionError(
                {"zh_CN": f"未知选项 {token}（可用 --within 24h）", "en": f"unknown option {token}"}
            )
        keyed = _KEYED.match(token)
        if keyed and keyed[1].lower() in _KEYS:
            bucket = _KEYS[keyed[1].lower()]
            for piece in _pieces(keyed[2]):
                _add(opts.filter, bucket, piece)
            continue
        for piece in _pieces(token):
            _classify(opts, piece, kind_words)
    return opts


def _pieces(text: str) -> list[str]:
    return [p.strip() for p in _LIST_SEP.split(text) if p.strip()]


def _add(flt: Filter, bucket: str, value: str) -> None:
    if bucket == "domains":
        domain = _DOMAIN_WORDS.get(value.lower())
        if domain is None:
            raise OptionError(
                {
                    "zh_CN": f"未知领域「{value}」，可选：{'、'.join(NOTICE_DOMAINS)}",
                    "en": f"unknown domain {value!r}; choose from {', '.join(NOTICE_DOMAINS)}",
                }
            )
        value = domain
    elif bucket == "types" and value not in _TYPE_WORDS:
        domain = _DOMAIN_WORDS.get(value.lower())
        if domain is None:
            raise OptionError(
                {
                    "zh_CN": f"未知企业类型「{value}」，可选：{'、'.join(_TYPE_WORDS)}",
                    "en": f"unknown enterprise type {value!r}",
                }
            )
        value = DOMAIN_TYPES[domain].value
    target: list[str] = getattr(flt, bucket)
    if value not in target:
        target.append(value)


def _classify(opts: Options, word: str, kind_words: dict[str, str]) -> None:
    low = word.lower()
    if low in kind_words:
        kind = kind_words[low]
        if opts.kind is not None and opts.kind != kind:
            raise OptionError(
                {"zh_CN": f"类型写了两次：{word}", "en": f"the kind is given twice: {word}"}
            )
        opts.kind = kind
    elif low in _DOMAIN_WORDS:
        _add(opts.filter, "domains", low)
    elif word in _TYPE_WORDS:
        _add(opts.filter, "types", word)
    elif word not in opts.filter.words:
        opts.filter.words.append(word)


# --- filter --------------------------------------------------------------------------------------


def _domain_match(e: Enterprise, domains: Iterable[str]) -> bool:
    types = {DOMAIN_TYPES[d].value for d in domains}
    if e.type in types:
        return True
    # An enterprise of a type outside the six: fall back to its level-2 grid's domain text.
    known = {t.value for t in EnterpriseType}
    grid_domain = e.grid.domain if e.grid else ""
    return e.type not in known and any(d in grid_domain for d in domains)


def _county_match(e: Enterprise, names: Iterable[str]) -> bool:
    unit = e.unit.name if e.unit else ""
    return any(unit == n or unit.startswith(n) for n in names)


def _pick_names(pool: list[Enterprise], names: list[str]) -> tuple[list[Enterprise], list[str]]:
    """Exact name, else the one enterprise whose name contains the word: (found, missing)."""
    found: list[Enterprise] = []
    missing: list[str] = []
    for name in names:
        exact = [e for e in pool if e.name == name]
        hits = exact or [e for e in pool if name in e.name]
        if len(hits) == 1:
            found.append(hits[0])
        elif len(hits) > 1:
            listed = "、".join(e.name for e in hits[:5])
            raise OptionError(
                {
                    "zh_CN": f"「{name}」对应多家企业：{listed}，请写全称",
                    "en": f"{name!r} matches several enterprises: {listed}; give the full name",
                }
            )
        else:
            missing.append(name)
    return found, missing


@dataclass
class Resolution:
    enterprises: list[Enterprise]
    # The filter with bare words sorted into counties and enterprise names.
    filter: Filter


def resolve(pool: list[Enterprise], flt: Filter) -> Resolution:
    """The enterprises of ``pool`` (the issuer's reach, with unit and grid loaded) that pass
    ``flt``; unknown words raise OptionError."""
    flt = Filter.from_dict(flt.as_dict())
    units = {e.unit.name for e in pool if e.unit}
    for word in flt.words:
        if any(u == word or u.startswith(word) for u in units) and len(word) >= 2:
            flt.counties.append(word)
        else:
            flt.names.append(word)
    flt.words = []
    chosen = pool
    if flt.domains or flt.types:
        chosen = [
            e
            for e in chosen
            if e.type in flt.types or (flt.domains and _domain_match(e, flt.domains))
        ]
    if flt.counties:
        chosen = [e for e in chosen if _county_match(e, flt.counties)]
    if flt.names:
        named, missing = _pick_names(chosen, flt.names)
        if missing:
            raise OptionError(
                {
                    "zh_CN": f"在你的范围内找不到：{'、'.join(missing)}",
                    "en": f"not found in your scope: {', '.join(missing)}",
                }
            )
        seen: set[int] = set()
        chosen = [e for e in named if not (e.id in seen or seen.add(e.id))]
    return Resolution(chosen, flt)

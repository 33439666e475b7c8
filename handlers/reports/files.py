"""A report's files (workbook, chart, work report) and the chat summary's values, shared by
/report, the scheduled reports and ``gridbot report``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from bot.outgoing import Attachment
from handlers.reports import charts, document, xlsx
from handlers.reports.model import (
    BY_KEY,
    GRID,
    MEMBER,
    SUMMARY,
    Report,
    part_name,
    show,
)
from messages import Messages

CHAT, XLSX, HTML, PNG = "chat", "xlsx", "html", "png"
FORMATS = (CHAT, XLSX, HTML)
FORMAT_WORDS = {
    **dict.fromkeys(("chat", "聊天", "摘要", "text"), CHAT),
    **dict.fromkeys(("xlsx", "excel", "表格", "xls"), XLSX),
    **dict.fromkeys(("html", "网页", "报告", "document"), HTML),
}
MIME = {
    XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    HTML: "text/html",
    PNG: "image/png",
}
# Rows of the chat summary; a longer report names its best and worst (the workbook has all).
CHAT_ROWS = 12


def default_formats(kind: str) -> frozenset[str]:
    """The summary and the workbook; a year's report adds the annual work report (HTML)."""
    return frozenset({CHAT, XLSX, HTML} if kind == "year" else {CHAT, XLSX})


def title(report: Report, locale: str) -> str:
    p = report.period
    scope = report.scope_name
    if locale == "en":
        what = {"month": "Monthly", "quarter": "Quarterly", "year": "Annual"}[p.kind]
        if report.level == MEMBER:
            return f"{scope}: assessment {p.label}"
        return f"{scope} grid work: {what.lower()} report {p.label}"
    if report.level == MEMBER:
        return f"{scope} {p.label} 年度考核与工作记录"
    if p.kind == "year":
        return f"{scope}{p.year}年度交通运输安全生产网格化服务管理工作情况"
    if p.kind == "quarter":
        return f"{scope}{p.year}年第{p.number}季度网格工作季报"
    return f"{scope}{p.year}年{p.number}月网格工作月报"


@dataclass
class Rendered:
    summary: dict[str, Any]
    files: list[Attachment]


async def render(
    report: Report, formats: frozenset[str], locale: str, messages: Messages
) -> Rendered:
    """The chat values and the files (the chart always; the workbook and the work report as
    asked). The drawing and the writing run in a worker thread, off the event loop."""
    return await asyncio.to_thread(_render, report, formats, locale, messages)


def _render(report: Report, formats: frozenset[str], locale: str, messages: Messages) -> Rendered:
    name = title(report, locale)
    stem = report.file_stem()
    picture = charts.png(report, locale, name)
    files = [Attachment(f"{stem}.png", MIME[PNG], data=picture, msgtype="m.image")]
    if XLSX in formats:
        files.append(
            Attachment(f"{stem}.xlsx", MIME[XLSX], data=xlsx.workbook(report, locale, name))
        )
    if HTML in formats:
        page = document.html(report, messages, locale, name, picture)
        files.append(Attachment(f"{stem}.html", MIME[HTML], data=page.encode("utf-8")))
    return Rendered(summary_values(report, locale, name), files)


def _rows(report: Report) -> tuple[list[Any], bool]:
    rows = report.rows
    if len(rows) <= CHAT_ROWS:
        return list(rows), False
    head = rows[: CHAT_ROWS - 4]
    return [*head, None, *rows[-3:]], True  # None: "…" between the best and the worst


def summary_values(report: Report, locale: str, name: str) -> dict[str, Any]:
    """What the chat summary template needs: a short table and the points to act on."""
    columns = [BY_KEY[k] for k in SUMMARY]
    rows, cut = _rows(report)

    def cells(row: Any) -> list[str]:
        return [show(c.value(row), c.fmt) for c in columns]

    total = report.total
    untrained = [s.person.name for s in report.training if not s.trained_this_year]
    before = [s.person.name for s in report.training if not s.trained_before_post]
    card = next(
        (
            c
            for c in report.cards
            if report.person and c.person.person_id == report.person.person_id
        ),
        None,
    )
    return {
        "title": name,
        "scope": report.scope_name,
        "period": report.period.label,
        "kind": report.period.kind,
        "level": report.level,
        "ranked": report.ranked,
        "current": report.current,
        "cut_day": report.cut_day,
        "draft": report.draft,
        "columns": [c.label(locale) for c in columns],
        "rows": [
            None
            if r is None
            else {
                "name": r.name,
                "rank": r.rank,
                "score": show(r.score, "score"),
                "cells": cells(r),
            }
            for r in rows
        ],
        "cut": cut,
        "unit_count": len(report.rows),
        "total": {"name": total.name, "cells": cells(total)},
        "facts": {k: show(i.value(total), i.fmt) for k, i in BY_KEY.items()},
        "raw": {k: i.value(total) for k, i in BY_KEY.items()},
        "counts": {
            "visits_due": total.visits.due,
            "visits_done": total.visits.visited,
            "gaps": [g.enterprise for g in report.gaps[:10]],
            "gap_count": len(report.gaps),
            "miss_count": len(report.misses),
            "untrained": untrained[:20],
            "untrained_count": len(untrained),
            "before_post": before[:20],
            "before_post_count": len(before),
        },
        "candidates": [
            {"name": c.person.name, "grid": c.person.grid, "score": show(c.score, "score")}
            for c in report.candidates
        ],
        "leaders": [
            {"name": c.person.name, "score": show(c.score, "score"), "rank": c.rank}
            for c in report.cards
            if c.role == "member" and c.rank is not None and c.rank <= 3
        ]
        if report.level in (GRID, "county")
        else [],
        "card": _card(card, locale) if card else None,
        "records": _records(report) if report.records is not None else None,
    }


def _card(card: Any, locale: str) -> dict[str, Any]:
    return {
        "role": card.role,
        "score": show(card.score, "score"),
        "rank": card.rank,
        "candidate": card.candidate,
        "parts": [
            {
                "name": part_name(p.name, locale),
                "rate": show(p.rate, "pct"),
                "num": p.num,
                "den": p.den,
                "weight": f"{p.weight:g}",
                "points": show(card.points(p), "score"),
            }
            for p in card.parts
        ],
    }


# Records listed in chat per kind (the workbook lists all).
RECORD_ROWS = 15


def _records(report: Report) -> dict[str, Any]:
    rec = report.records
    assert rec is not None

    def cap(items: list[Any]) -> dict[str, Any]:
        return {"items": items[:RECORD_ROWS], "more": max(0, len(items) - RECORD_ROWS)}

    return {
        "visits": cap([{"code": c, "day": d, "enterprise": e} for c, d, e in rec.visits]),
        "misses": cap([{"month": m, "enterprise": x.enterprise} for m, x in report.misses]),
        "notices": cap(
            [
                {"code": c, "enterprise": e, "acked": a is not None, "on_time": t, "feedback": f}
                for c, e, a, t, f in rec.notices
            ]
        ),
        "hazards": cap(
            [
                {"code": c, "enterprise": e, "major": g == "major", "rectified": r, "overdue": o}
                for c, e, g, _s, r, o in rec.hazards
            ]
        ),
        "requests": cap(
            [{"code": c, "enterprise": e, "status": s, "up": n} for c, e, s, n in rec.requests]
        ),
        "trainings": cap([{"code": c, "day": d, "topic": t} for c, d, t in rec.trainings]),
        "meetings": cap([{"code": c, "day": d, "grid": g} for c, d, g in rec.meetings]),
    }

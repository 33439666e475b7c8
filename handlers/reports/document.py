"""The work report as one HTML file that prints on A4 (年度工作情况 for a year): rendered
from ``messages/<locale>/documents/report.j2`` with the chart embedded, so the file stands
alone. This module turns a Report into plain values; the template words them."""

from __future__ import annotations

import base64
from typing import Any

from handlers.reports.model import (
    INDICATORS,
    SECTIONS,
    Report,
    Row,
    part_name,
    section_name,
    show,
)
from messages import Messages
from storage.directory import role_label

# Rows of the long lists the document prints (the workbook has them all).
LIST_ROWS = 60


def _cells(row: Row, section: str) -> list[str]:
    return [show(i.value(row), i.fmt) for i in INDICATORS if i.section == section]


def values(report: Report, locale: str, title: str, chart: bytes | None) -> dict[str, Any]:
    tz = report.generated_at.tzinfo
    total = report.total
    shown = {i.key: show(i.value(total), i.fmt) for i in INDICATORS}
    raw = {i.key: i.value(total) for i in INDICATORS}
    sections = [
        {
            "key": s,
            "name": section_name(s, locale),
            "headers": [i.label(locale) for i in INDICATORS if i.section == s],
            "rows": [
                {"name": r.name, "rank": r.rank, "cells": _cells(r, s)}
                for r in [*report.rows, total]
            ],
        }
        for s in SECTIONS
    ]
    untrained = [s.person for s in report.training if not s.trained_this_year]
    before = [s.person for s in report.training if not s.trained_before_post]
    return {
        "title": title,
        "scope": report.scope_name,
        "period": report.period,
        "first": report.window.first,
        "last": report.window.last,
        "cut_day": report.cut_day,
        "current": report.current,
        "draft": report.draft,
        "level": report.level,
        "ranked": report.ranked,
        "generated": report.generated_at.astimezone(tz) if tz else report.generated_at,
        "chart": "data:image/png;base64," + base64.b64encode(chart).decode() if chart else "",
        "v": shown,
        "raw": raw,
        "total": total,
        "units": [
            {"name": r.name, "rank": r.rank, "score": show(r.score, "score")} for r in report.rows
        ],
        "sections": sections,
        "by_type": sorted(report.by_type.items(), key=lambda kv: (-kv[1], kv[0])),
        "gaps": report.gaps[:LIST_ROWS],
        "gap_count": len(report.gaps),
        "misses": report.misses[:LIST_ROWS],
        "miss_count": len(report.misses),
        "untrained": [{"name": p.name, "grid": p.grid, "role": role_label(p.kind, locale)}
                      for p in untrained][:LIST_ROWS],
        "before_post": [{"name": p.name, "grid": p.grid, "role": role_label(p.kind, locale)}
                        for p in before][:LIST_ROWS],
        "categories": report.categories[:10],
        "notable": report.notable[:LIST_ROWS],
        "accidents": report.accident_cases[:LIST_ROWS],
        "cards": [
            {
                "county": c.county,
                "grid": c.person.grid,
                "name": c.person.name,
                "role": c.role,
                "parts": [
                    {"name": part_name(p.name, locale), "rate": show(p.rate, "pct"),
                     "num": p.num, "den": p.den}
                    for p in c.parts
                ],
                "score": show(c.score, "score"),
                "rank": c.rank,
                "candidate": c.candidate,
            }
            for c in report.cards
        ],
        "candidates": [
            {"name": c.person.name, "grid": c.person.grid, "score": show(c.score, "score")}
            for c in report.candidates
        ],
        "trend": report.trend,
        "tz": tz,
    }  # fmt: skip


def html(report: Report, messages: Messages, locale: str, title: str, chart: bytes | None) -> str:
    return messages.document(locale, "report", **values(report, locale, title, chart))

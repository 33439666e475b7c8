"""The report as an Excel workbook (XlsxWriter), with native Excel charts.

Sheet one ("概况" / "Summary") has a row per unit and a total row; every total is also a
defined name ``total_<indicator key>`` (e.g. ``total_visit_rate``), so a reader (or a test)
finds a figure without counting rows. Rates are numbers formatted as percentages; a rate
with nothing due is left empty. Further sheets: the months (with the charts), coverage and
its gaps, missed visits, training, notices per enterprise and per member, hazards, accidents,
the assessment and, for one person, the records behind their score.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import xlsxwriter
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from handlers.reports.model import (
    INDICATORS,
    Report,
    part_name,
    ratio,
    section_name,
)

_ZH_EN = {
    "summary": ("概况", "Summary"),
    "months": ("按月", "Months"),
    "coverage": ("网格覆盖", "Coverage"),
    "misses": ("漏访", "Missed visits"),
    "training": ("培训", "Training"),
    "notices": ("通知", "Notices"),
    "hazards": ("隐患", "Hazards"),
    "accidents": ("事故", "Accidents"),
    "assessment": ("年度考核", "Assessment"),
    "records": ("考核依据", "Records"),
    "unit": ("单位", "Unit"),
    "total": ("合计", "Total"),
    "rank": ("排名", "Rank"),
    "score": ("综合得分", "Score"),
    "month": ("月份", "Month"),
    "due": ("应走访", "Due"),
    "visited": ("已走访", "Visited"),
    "visit_rate": ("走访覆盖率", "Visit coverage"),
    "found": ("发现隐患", "Hazards found"),
    "closed": ("销号", "Closed"),
    "type": ("企业类型", "Type"),
    "count": ("数量", "Count"),
    "enterprise": ("企业", "Enterprise"),
    "grid": ("二级网格", "Level-2 grid"),
    "missing": ("缺少", "Missing"),
    "no_chief": ("企业负责人", "enterprise chief"),
    "no_l2_chief": ("二级网格长", "level-2 chief"),
    "no_member": ("二级网格员", "level-2 member"),
    "member": ("网格员", "Member"),
    "name": ("姓名", "Name"),
    "role": ("角色", "Role"),
    "since": ("上岗日期", "In post since"),
    "first_training": ("首次培训", "First training"),
    "this_year": ("本年培训次数", "Trainings this year"),
    "before_post": ("先培训后上岗", "Trained before post"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "targets": ("应确认", "To acknowledge"),
    "acked": ("已确认", "Acknowledged"),
    "on_time": ("按时确认", "On time"),
    "feedback": ("反馈", "Feedback"),
    "on_time_rate": ("按时确认率", "On-time rate"),
    "category": ("类别", "Category"),
    "grade": ("等级", "Grade"),
    "general": ("一般", "general"),
    "major": ("重大", "major"),
    "code": ("编号", "Id"),
    "status": ("状态", "Status"),
    "reported": ("上报时间", "Reported"),
    "deadline": ("整改期限", "Deadline"),
    "supervised": ("挂牌督办", "Supervised"),
    "overdue": ("逾期", "Overdue"),
    "rework": ("返工次数", "Reworks"),
    "closed_at": ("销号时间", "Closed"),
    "rectified": ("已整改", "Rectified"),
    "escalations": ("逐级上报次数", "Escalations"),
    "occurred": ("发生时间", "Occurred"),
    "delay": ("报告时延（分钟）", "Report delay (min)"),
    "dead": ("死亡", "Dead"),
    "injured": ("受伤", "Injured"),
    "missing_people": ("失踪", "Missing"),
    "county": ("县（区）", "County"),
    "candidate": ("优秀网格员候选", "Excellent candidate"),
    "chief": ("二级网格长", "level-2 chief"),
    "l2_member": ("二级网格员", "level-2 member"),
    "day": ("日期", "Date"),
    "what": ("内容", "What"),
    "chart_visits": ("走访覆盖率（按月）", "Visit coverage per month"),
    "chart_hazards": ("隐患发现与销号（按月）", "Hazards found and closed per month"),
    "chart_units": ("各单位综合得分", "Units compared (score)"),
    "period": ("统计期间", "Period"),
    "cutoff": ("截至", "Counted up to"),
    "generated": ("生成时间", "Generated"),
    "truncated": ("（仅列出前 {n} 条）", "(first {n} only)"),
}


def _t(key: str, locale: str) -> str:
    zh, en = _ZH_EN[key]
    return en if locale == "en" else zh


class _Book:
    def __init__(self, wb: Workbook, locale: str) -> None:
        self.wb, self.locale = wb, locale
        self.title = wb.add_format({"bold": True, "font_size": 14})
        self.head = wb.add_format(
            {"bold": True, "bg_color": "#DDEBF7", "border": 1, "text_wrap": True, "valign": "top"}
        )
        self.cell = wb.add_format({"border": 1})
        self.pct = wb.add_format({"border": 1, "num_format": "0.0%"})
        self.dec = wb.add_format({"border": 1, "num_format": "0.0"})
        self.day = wb.add_format({"border": 1, "num_format": "yyyy-mm-dd"})
        self.time = wb.add_format({"border": 1, "num_format": "yyyy-mm-dd hh:mm"})
        self.bold = wb.add_format({"border": 1, "bold": True})
        self.bold_pct = wb.add_format({"border": 1, "bold": True, "num_format": "0.0%"})
        self.bold_dec = wb.add_format({"border": 1, "bold": True, "num_format": "0.0"})

    def t(self, key: str) -> str:
        return _t(key, self.locale)

    def sheet(self, key: str) -> Worksheet:
        return self.wb.add_worksheet(self.t(key))

    def write(self, ws: Worksheet, r: int, c: int, value: Any, fmt: str = "", bold: bool = False):
        if value is None:
            ws.write_blank(r, c, None, self.bold if bold else self.cell)
        elif isinstance(value, datetime):
            ws.write_datetime(r, c, value.replace(tzinfo=None), self.time)
        elif isinstance(value, date):
            ws.write_datetime(r, c, datetime(value.year, value.month, value.day), self.day)
        elif fmt == "pct":
            ws.write_number(r, c, value, self.bold_pct if bold else self.pct)
        elif fmt in ("hours", "days", "minutes", "score"):
            ws.write_number(r, c, value, self.bold_dec if bold else self.dec)
        elif isinstance(value, bool):
            ws.write_string(r, c, self.t("yes" if value else "no"), self.cell)
        elif isinstance(value, int | float):
            ws.write_number(r, c, value, self.bold if bold else self.cell)
        else:
            ws.write_string(r, c, str(value), self.bold if bold else self.cell)

    def table(
        self,
        ws: Worksheet,
        top: int,
        headers: Sequence[str],
        rows: Sequence[Sequence[Any]],
        fmts: Sequence[str] = (),
    ) -> int:
        """Headers (keys of _ZH_EN or text) and rows from ``top``; the next free row."""
        for c, h in enumerate(headers):
            ws.write_string(top, c, _t(h, self.locale) if h in _ZH_EN else h, self.head)
        for i, values in enumerate(rows, 1):
            for c, v in enumerate(values):
                self.write(ws, top + i, c, v, fmts[c] if c < len(fmts) else "")
        return top + len(rows) + 2


def _local(dt: datetime | None, report: Report) -> datetime | None:
    if dt is None:
        return None
    tz = report.generated_at.tzinfo
    return dt.astimezone(tz) if tz else dt


def workbook(report: Report, locale: str, title: str) -> bytes:
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"in_memory": True})
    wb.set_properties({"title": title, "author": "GridBot 网格通"})
    b = _Book(wb, locale)
    _summary(b, report, title)
    _months(b, report)
    _coverage(b, report)
    if report.misses:
        _misses(b, report)
    if report.training:
        _training(b, report)
    _notices(b, report)
    _hazards(b, report)
    _accidents(b, report)
    if report.cards:
        _assessment(b, report)
    if report.records is not None:
        _records(b, report)
    wb.close()
    return buf.getvalue()


def _summary(b: _Book, report: Report, title: str) -> None:
    ws = b.sheet("summary")
    ws.write_string(0, 0, title, b.title)
    w = report.window
    ws.write_string(1, 0, f"{b.t('period')}: {w.first:%Y-%m-%d} – {w.last:%Y-%m-%d}")
    ws.write_string(2, 0, f"{b.t('cutoff')}: {w.cut_day:%Y-%m-%d}")
    ws.write_string(
        3, 0, f"{b.t('generated')}: {_local(report.generated_at, report):%Y-%m-%d %H:%M}"
    )
    top = 5
    lead = ["unit"] + (["rank", "score"] if report.ranked else [])
    headers = lead + [
        f"{section_name(i.section, b.locale)}·{i.label(b.locale)}" for i in INDICATORS
    ]
    ws.set_row(top, 48)
    for c, h in enumerate(headers):
        ws.write_string(top, c, _t(h, b.locale) if h in _ZH_EN else h, b.head)
    rows = [*report.rows, report.total]
    for i, row in enumerate(rows, 1):
        r = top + i
        bold = row is report.total
        b.write(ws, r, 0, b.t("total") + f"（{row.name}）" if bold else row.name, bold=bold)
        c = 1
        if report.ranked:
            b.write(ws, r, 1, row.rank)
            b.write(ws, r, 2, row.score, "score")
            c = 3
        for j, ind in enumerate(INDICATORS):
            b.write(ws, r, c + j, ind.value(row), ind.fmt, bold=bold)
            if bold:
                col = xlsxwriter.utility.xl_col_to_name(c + j)
                b.wb.define_name(f"total_{ind.key}", f"='{ws.name}'!${col}${r + 1}")
    ws.set_column(0, 0, 28)
    ws.set_column(1, len(headers), 11)
    ws.freeze_panes(top + 1, 1)
    if report.ranked and len(report.rows) > 1:
        chart = b.wb.add_chart({"type": "bar"})
        n = len(report.rows)
        chart.add_series(
            {
                "name": b.t("score"),
                "categories": [ws.name, top + 1, 0, top + n, 0],
                "values": [ws.name, top + 1, 2, top + n, 2],
                "fill": {"color": "#2F75B5"},
            }
        )
        chart.set_title({"name": b.t("chart_units")})
        chart.set_y_axis({"reverse": True})
        chart.set_legend({"none": True})
        chart.set_size({"width": 640, "height": max(240, 22 * n + 80)})
        ws.insert_chart(top + len(rows) + 3, 0, chart)


def _months(b: _Book, report: Report) -> None:
    ws = b.sheet("months")
    rows = [[p.label, p.due, p.visited, p.visit_rate, p.found, p.closed] for p in report.trend]
    b.table(
        ws,
        0,
        ["month", "due", "visited", "visit_rate", "found", "closed"],
        rows,
        ["", "", "", "pct", "", ""],
    )
    ws.set_column(0, 5, 12)
    n = len(rows)
    if not n:
        return
    line = b.wb.add_chart({"type": "line"})
    line.add_series(
        {
            "name": b.t("visit_rate"),
            "categories": [ws.name, 1, 0, n, 0],
            "values": [ws.name, 1, 3, n, 3],
            "marker": {"type": "circle"},
            "data_labels": {"value": True, "num_format": "0%"},
        }
    )
    line.set_title({"name": b.t("chart_visits")})
    line.set_y_axis({"min": 0, "max": 1, "num_format": "0%"})
    line.set_legend({"none": True})
    ws.insert_chart(1, 7, line)
    col = b.wb.add_chart({"type": "column"})
    for c, key, color in ((4, "found", "#C00000"), (5, "closed", "#70AD47")):
        col.add_series(
            {
                "name": b.t(key),
                "categories": [ws.name, 1, 0, n, 0],
                "values": [ws.name, 1, c, n, c],
                "fill": {"color": color},
            }
        )
    col.set_title({"name": b.t("chart_hazards")})
    ws.insert_chart(17, 7, col)


def _coverage(b: _Book, report: Report) -> None:
    ws = b.sheet("coverage")
    types = sorted(report.by_type.items(), key=lambda kv: (-kv[1], kv[0]))
    top = b.table(ws, 0, ["type", "count"], types)
    gaps = [
        [
            g.grid,
            g.enterprise,
            "、".join(
                b.t(k) for k, v in (("no_chief", g.no_chief), ("no_l2_chief", g.no_l2_chief)) if v
            )
            + ("、" if (g.no_chief or g.no_l2_chief) and g.no_member else "")
            + (b.t("no_member") if g.no_member else ""),
        ]
        for g in report.gaps
    ]
    b.table(ws, top, ["grid", "enterprise", "missing"], gaps)
    ws.set_column(0, 0, 22)
    ws.set_column(1, 2, 30)


def _misses(b: _Book, report: Report) -> None:
    ws = b.sheet("misses")
    rows = [[label, m.grid, m.member, m.enterprise] for label, m in report.misses]
    b.table(ws, 0, ["month", "grid", "member", "enterprise"], rows)
    ws.set_column(0, 2, 14)
    ws.set_column(3, 3, 30)


def _training(b: _Book, report: Report) -> None:
    ws = b.sheet("training")
    rows = [
        [
            s.person.grid,
            s.person.name,
            _role(b, s.person.kind),
            s.person.since,
            s.first_training,
            s.this_year,
            s.trained_before_post,
        ]
        for s in report.training
    ]
    b.table(
        ws, 0, ["grid", "name", "role", "since", "first_training", "this_year", "before_post"], rows
    )
    ws.set_column(0, 6, 14)


def _role(b: _Book, kind: str) -> str:
    from storage.directory import role_label

    return role_label(kind, b.locale)


def _notice_rows(items: list[tuple[str, Any]]) -> list[list[Any]]:
    return [
        [name, n.targets, n.acked, n.on_time, n.feedback, ratio(n.on_time, n.targets)]
        for name, n in items
    ]


def _notices(b: _Book, report: Report) -> None:
    ws = b.sheet("notices")
    headers = ["targets", "acked", "on_time", "feedback", "on_time_rate"]
    fmts = ["", "", "", "", "", "pct"]
    top = 0
    if report.notices_by_enterprise:
        top = b.table(
            ws, top, ["enterprise", *headers], _notice_rows(report.notices_by_enterprise), fmts
        )
    if report.notices_by_member:
        top = b.table(ws, top, ["member", *headers], _notice_rows(report.notices_by_member), fmts)
    units = [(r.name, r.notices) for r in report.rows]
    b.table(ws, top, ["unit", *headers], _notice_rows(units), fmts)
    ws.set_column(0, 0, 30)
    ws.set_column(1, 5, 12)


def _hazards(b: _Book, report: Report) -> None:
    ws = b.sheet("hazards")
    cats = [[c, b.t(g) if g in ("general", "major") else g, n] for c, g, n in report.categories]
    top = b.table(ws, 0, ["category", "grade", "count"], cats)
    rows = [
        [
            h.code,
            h.enterprise,
            h.grid,
            b.t(h.grade) if h.grade in ("general", "major") else h.grade,
            h.supervised,
            h.category,
            h.status,
            _local(h.reported_at, report),
            h.deadline,
            h.overdue,
            h.rework,
            _local(h.closed_at, report),
        ]
        for h in report.notable
    ]
    b.table(
        ws,
        top,
        _HAZARD_COLUMNS,
        rows,
    )
    ws.set_column(0, 0, 14)
    ws.set_column(1, 1, 28)
    ws.set_column(2, 11, 14)


def _accidents(b: _Book, report: Report) -> None:
    ws = b.sheet("accidents")
    rows = [
        [
            a.code,
            a.enterprise,
            a.grid,
            a.type,
            _local(a.occurred_at, report),
            _local(a.reported_at, report),
            a.delay_min,
            a.dead,
            a.injured,
            a.missing,
        ]
        for a in report.accident_cases
    ]
    b.table(
        ws,
        0,
        _ACCIDENT_COLUMNS,
        rows,
        ["", "", "", "", "", "", "minutes"],
    )
    ws.set_column(0, 9, 16)


def _assessment(b: _Book, report: Report) -> None:
    ws = b.sheet("assessment")
    parts = sorted({p.name for c in report.cards for p in c.parts}, key=_PART_ORDER.index)
    headers = ["county", "grid", "name", "role"]
    headers += [part_name(p, b.locale) for p in parts] + ["score", "rank", "candidate"]
    rows = []
    for c in report.cards:
        by = {p.name: p for p in c.parts}
        rows.append(
            [
                c.county,
                c.person.grid,
                c.person.name,
                b.t("chief" if c.role == "chief" else "l2_member"),
            ]
            + [by[p].rate if p in by else None for p in parts]
            + [c.score, c.rank, c.candidate]
        )
    fmts = ["", "", "", ""] + ["pct"] * len(parts) + ["score", "", ""]
    b.table(ws, 0, headers, rows, fmts)
    ws.set_column(0, 3, 14)
    ws.set_column(4, 4 + len(parts) + 3, 12)


_HAZARD_COLUMNS = (
    "code enterprise grid grade supervised category status reported deadline overdue rework "
    "closed_at"
).split()
_ACCIDENT_COLUMNS = (
    "code enterprise grid category occurred reported delay dead injured missing_people"
).split()
_PART_ORDER = ["meetings", "visits", "notices", "hazards", "requests", "training"]


def _records(b: _Book, report: Report) -> None:
    rec = report.records
    assert rec is not None
    ws = b.sheet("records")
    top = b.table(ws, 0, ["code", "day", "enterprise"], [list(v) for v in rec.visits])
    top = b.table(
        ws,
        top,
        ["month", "grid", "member", "enterprise"],
        [[lb, m.grid, m.member, m.enterprise] for lb, m in report.misses],
    )
    notices = [[c, e, _local(a, report), t, f] for c, e, a, t, f in rec.notices]
    top = b.table(ws, top, ["code", "enterprise", "acked", "on_time", "feedback"], notices)
    hazards = [[c, e, g, s, r, o] for c, e, g, s, r, o in rec.hazards]
    top = b.table(
        ws, top, ["code", "enterprise", "grade", "status", "rectified", "overdue"], hazards
    )
    top = b.table(
        ws, top, ["code", "enterprise", "status", "escalations"], [list(r) for r in rec.requests]
    )
    top = b.table(ws, top, ["code", "day", "what"], [list(t) for t in rec.trainings])
    b.table(ws, top, ["code", "day", "grid"], [list(m) for m in rec.meetings])
    ws.set_column(0, 5, 18)

"""Reports (/report, 报表) on a year whose every figure is worked out by hand (report_seed.py).

The storage test runs on SQLite and PostgreSQL; the chat, the workbook (named cells read back
with openpyxl), the HTML and the chart are checked through the real dispatcher; the scheduled
reports and training lists on a controlled clock.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import time_machine
from sqlalchemy import select

import handlers.reports.command
import handlers.reports.jobs
from handlers.reports.build import Target, build
from handlers.reports.jobs import first_working_day
from handlers.reports.model import BY_KEY, COUNTY, INDICATORS
from handlers.reports.period import Period, PeriodError, parse, window
from handlers.reports.scope import Ask, ReportError, read
from storage.db import Database
from storage.directory import Reach
from storage.models import OutboxFile, OutboxMessage, ScheduledJob
from storage.reports import Scope
from tests.dispatch_harness import DispatchHarness
from tests.dispatch_harness import test_config as make_config
from tests.report_seed import SHUNDA, TONGDA, XUANFENG, seed_report_grid
from tests.roster_seed import set_room

TZ = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parent.parent
AFTER_2026 = datetime(2027, 1, 10, 12, tzinfo=TZ)
L1_ROOM, DM = "!l1:localhost", "!dm:localhost"
MODULES = [handlers.reports.command, handlers.reports.jobs]


def values(row: object) -> dict[str, object]:
    return {i.key: i.value(row) for i in INDICATORS}  # type: ignore[arg-type]


# --- periods and words (pure) -----------------------------------------------------------------


def test_periods_are_read_as_people_type_them() -> None:
    today = datetime(2026, 11, 20).date()
    assert parse(None, None, today) == Period("month", 2026, 11)  # the month so far
    assert parse("year", None, today) == Period("year", 2026, 0)
    assert parse(None, "上月", today) == Period("month", 2026, 10)
    assert parse("quarter", "上季", today) == Period("quarter", 2026, 3)
    assert parse(None, "去年", today) == Period("year", 2025, 0)
    assert parse(None, "2026Q3", today) == Period("quarter", 2026, 3)
    assert parse(None, "2026年第2季度", today) == Period("quarter", 2026, 2)
    assert parse(None, "2026年11月", today) == Period("month", 2026, 11)
    assert parse(None, "12月", today) == Period("month", 2025, 12)  # not ahead: last year's
    assert parse("year", "2026", today).last.isoformat() == "2026-12-31"
    for kind, text, key in (
        (None, "2027", "future"),
        ("month", "2026", "mismatch"),
        (None, "13月", "unreadable"),
    ):
        with pytest.raises(PeriodError) as err:
            parse(kind, text, today)
        assert err.value.key == key
    # A period in progress is counted up to now; its ended quarters only are due.
    w = window(Period("year", 2026, 0), TZ, datetime(2026, 11, 20, 10, tzinfo=TZ))
    assert w.cut_day.isoformat() == "2026-11-20" and len(w.months) == 11
    assert [q[0].month for q in w.quarters] == [1, 4, 7]


def test_report_words() -> None:
    ask = read("年 2026 县:芦溪县 --format xlsx,html")
    assert (ask.kind, ask.period, ask.county, ask.formats) == (
        "year",
        "2026",
        "芦溪县",
        frozenset({"xlsx", "html"}),
    )
    assert read("月 货运 客运").domains == ["货运", "客运"]
    assert read("year member 张敏").member == "张敏"
    assert read("季 上季 萍乡市").city == "萍乡市"
    assert read("") == Ask()
    for text, key in (
        ("年 hello", "unknown"),
        ("--format pdf", "bad_format"),
        ("网格员", "missing_value"),
    ):
        with pytest.raises(ReportError) as err:
            read(text)
        assert err.value.key == key


# --- the numbers, on both backends ---------------------------------------------------------------


async def test_the_year_in_numbers_on_both_backends(db: Database) -> None:
    g = await seed_report_grid(db)
    config = make_config()
    year = Period("year", 2026, 0)
    county = Target(COUNTY, Scope(Reach(l1_grids=frozenset({g.grids["L1"]}))), "芦溪县")
    async with db.transaction() as s:
        report = await build(s, config, county, year, AFTER_2026)
    total = values(report.total)
    assert total == {
        "enterprises": 4,  # E was deactivated mid-year: not in the grid at the year's end
        "grid_complete_rate": 3 / 4,  # C has no enterprise chief
        "grid_gaps": 1,
        "staff_changes": 0,
        "visit_rate": 46 / 55,
        "visits": 47,
        "visit_misses": 9,
        "meeting_rate": 5 / 8,
        "meetings": 5,
        "trainings": 1,
        "trained_rate": 3 / 5,
        "untrained": 2,
        "post_before_training": 3,
        "notices": 2,  # N3 had no targets
        "notice_targets": 8,
        "ack_rate": 6 / 8,
        "ack_on_time_rate": 5 / 8,
        "feedback_rate": 2 / 8,
        "hazards": 5,
        "hazards_major": 1,
        "hazards_supervised": 1,
        "hazard_on_time_rate": 2 / 4,  # H4's deadline is in 2027
        "hazard_rework_rate": 1 / 3,  # H3 failed a re-check, then passed
        "hazards_overdue": 2,
        "hazards_overdue_open": 1,
        "hazards_closed": 3,
        "hazard_close_days": 22.0,  # (10 + 32 + 24) / 3
        "requests": 4,
        "requests_taken": 3,
        "requests_resolved": 2,
        "request_resolve_rate": 2 / 4,
        "requests_escalated": 2,
        "request_response_h": 4.0,  # median of 2, 4, 24
        "request_handling_h": 36.0,  # median of 24, 48
        "accidents": 2,
        "accident_casualties": 3,
        "accident_delay_min": 60.0,
    }
    rows = {r.name: values(r) for r in report.rows}
    assert rows["道路货运"]["visit_rate"] == 29 / 37 and rows["道路客运"]["visit_rate"] == 17 / 18
    assert rows["道路客运"]["visits"] == 17 and rows["道路货运"]["hazard_on_time_rate"] == 2 / 3
    assert [(p, m.member, m.enterprise) for p, m in report.misses][:2] == [
        ("2026-06", "孙芳", XUANFENG),
        ("2026-07", "赵磊", SHUNDA),
    ]
    assert ("2026-11", "张敏", TONGDA) in [(p, m.member, m.enterprise) for p, m in report.misses]
    assert [(x.enterprise, x.no_chief) for x in report.gaps] == [(SHUNDA, True)]
    assert [p.label for p in report.trend][:2] == ["2026-01", "2026-02"]
    assert [(p.found, p.closed) for p in report.trend][2:6] == [(1, 1), (1, 0), (0, 1), (1, 1)]
    cards = {(c.person.name, c.role): c for c in report.cards}
    zhang = cards[("张敏", "member")]
    assert [(p.name, p.num, p.den) for p in zhang.parts] == [
        ("visits", 22, 23),
        ("notices", 2, 3),  # B's notice of 11-20 is 赵磊's: he serves B since 11-15
        ("hazards", 1, 2),
        ("requests", 2, 2),
        ("training", 1, 1),
    ]
    assert round(zhang.score or 0, 2) == 81.59 and zhang.rank == 1
    assert round(cards[("孙芳", "member")].score or 0, 2) == 61.11
    assert cards[("赵磊", "member")].score == 50.0 and cards[("赵磊", "member")].rank == 3
    assert round(cards[("李卫东", "chief")].score or 0, 2) == 73.84
    assert round(cards[("陈红", "chief")].score or 0, 2) == 43.89
    assert not report.candidates  # nobody reaches 90
    # Counties side by side, ranked: 湘东区 did everything due.
    city = Target("counties", Scope(Reach(everything=True)), "萍乡市")
    async with db.transaction() as s:
        ranked = await build(s, config, city, year, AFTER_2026)
    assert [(r.name, r.rank, round(r.score or 0, 2)) for r in ranked.rows] == [
        ("湘东区", 1, 100.0),
        ("芦溪县", 2, 64.97),
    ]
    # November: 张敏 handed B over on the 15th; both owe its visit that month.
    async with db.transaction() as s:
        chief = Target("grid", Scope(Reach(l2_grids=frozenset({g.grids["F"]}))), "道路货运")
        nov = await build(s, config, chief, Period("month", 2026, 11), AFTER_2026)
    members = {r.name: (r.visits.visited, r.visits.due) for r in nov.rows}
    assert members == {"张敏": (1, 2), "赵磊": (0, 2)}


# --- in chat, with the files ---------------------------------------------------------------


async def _harness(db: Database, **config: object) -> tuple[DispatchHarness, object]:
    g = await seed_report_grid(db)
    await set_room(db, L1_ROOM, "l1_room", grid_id=g.grids["L1"])
    await set_room(db, DM, "direct")
    harness = DispatchHarness(db, MODULES, make_config(admins=["@admin:localhost"], **config))
    return harness, g


async def _files(db: Database, after: int = 0) -> dict[str, bytes]:
    async with db.transaction() as s:
        rows = await s.scalars(select(OutboxFile).where(OutboxFile.id > after))
        return {f.name: f.data for f in rows}


async def test_year_report_in_chat_with_workbook_html_and_chart(sqlite_db: Database) -> None:
    h, _g = await _harness(sqlite_db, assessment={"excellent_min_score": 80})
    with time_machine.travel(AFTER_2026, tick=False):
        out = await h.say("@l1office:localhost", "/报表 年 2026", room=L1_ROOM)
    summary, *attachments = out
    assert summary.startswith("芦溪县2026年度交通运输安全生产网格化服务管理工作情况\n")
    assert "道路客运：94% | 50% | 67% | 2 | 0% | 1 | 0% | 1" in summary
    assert "道路货运：78% | 75% | 60% | 3 | 67% | 0 | 67% | 1" in summary
    assert "合计：84% | 63% | 63% | 5 | 50% | 1 | 50% | 2" in summary
    assert "· 走访：应走访 55 人·企·月，已走访 46（84%），走访 47 次，漏访 9" in summary
    assert "· 网格：企业 4 家，齐全率 75%，缺口 1 家：萍乡顺达运输公司" in summary
    assert "本年未培训 2 人：陈红、赵磊；先上岗后培训 3 人：陈红、孙芳、李卫东" in summary
    assert "按期整改率 50%，返工率 33%，逾期 2（未整改 1），平均销号 22.0 天" in summary
    assert "响应中位 4.0 小时，办结中位 36.0 小时" in summary
    assert "· 事故：2 起，伤亡 3 人，平均报告时延 60.0 分钟" in summary
    assert "优秀网格员候选：张敏（道路货运，81.6 分）" in summary
    stem = "芦溪县-2026-年报"
    assert attachments == [f"{stem}.png", f"{stem}.xlsx", f"{stem}.html"]
    async with sqlite_db.transaction() as s:
        reply = await s.scalar(select(OutboxMessage).order_by(OutboxMessage.id).limit(1))
    assert reply is not None and reply.content["msgtype"] == "m.notice"
    html = reply.content["formatted_body"]
    assert "<table>" in html and "<td>94%</td>" in html and "<b>84%</b>" in html

    files = await _files(sqlite_db)
    assert files[f"{stem}.png"].startswith(b"\x89PNG")
    book = openpyxl.load_workbook(io.BytesIO(files[f"{stem}.xlsx"]))

    def named(name: str) -> object:
        (sheet, ref), *_ = book.defined_names[name].destinations
        return book[sheet][ref.replace("$", "")].value

    assert named("total_visit_rate") == pytest.approx(46 / 55)
    assert named("total_visits") == 47 and named("total_hazards") == 5
    assert named("total_ack_on_time_rate") == pytest.approx(5 / 8)
    assert named("total_request_handling_h") == pytest.approx(36.0)
    assert named("total_hazard_close_days") == pytest.approx(22.0)
    assert named("total_enterprises") == 4 and named("total_notices") == 2
    summary_sheet = book["概况"]
    by_unit = {r[0]: r for r in summary_sheet.iter_rows(min_row=7, values_only=True)}
    visit_col = 1 + [i.key for i in INDICATORS].index("visit_rate")
    assert by_unit["道路客运"][visit_col] == pytest.approx(17 / 18)
    assessment = {r[2]: r for r in book["年度考核"].iter_rows(min_row=2, values_only=True)}
    assert assessment["张敏"][-3] == pytest.approx(81.594, abs=0.01)
    assert assessment["张敏"][-1] == "是"  # a candidate
    with zipfile.ZipFile(io.BytesIO(files[f"{stem}.xlsx"])) as z:
        assert sum(n.startswith("xl/charts/chart") for n in z.namelist()) == 2  # native charts
    page = files[f"{stem}.html"].decode()
    assert "@page { size: A4" in page and "data:image/png;base64," in page
    assert "走访覆盖率 84%（应走访 55 人·企·月，已走访 46）" in page
    assert "按期整改率 50%" in page and "H-2026-0002" in page
    assert "优秀网格员候选（★）：张敏（道路货运，81.6 分）" in page


async def test_scope_follows_the_grid_rights(sqlite_db: Database) -> None:
    h, _g = await _harness(sqlite_db)
    with time_machine.travel(AFTER_2026, tick=False):
        # A member: their own card and the records behind it, nothing else.
        mine, *_ = await h.say("@zhang:localhost", "/报表 年 2026 --format chat", room=DM)
        assert mine.startswith("张敏 2026 年度考核与工作记录\n二级网格员考核得分 81.6，排名第 1：")
        assert "走访覆盖 96%（22/23，权重 40，得 38.3 分）" in mine
        assert "漏访：2026-11 芦溪通达货运公司" in mine
        assert "H-2026-0002 芦溪通达货运公司（重大） 逾期整改" in mine
        assert "E-2026-0002 芦溪通达货运公司 已办结（上报 1 次）" in mine
        assert "培训：T-2026-0001（2026-03-01 网格员业务培训）" in mine
        (refused,) = await h.say("@zhang:localhost", "/报表 年 网格员 赵磊", room=DM)
        assert refused.startswith("网格员只能查看自己的考核")
        (refused,) = await h.say("@zhang:localhost", "/报表 年 领域:货运", room=DM)
        assert refused.startswith("网格员只能查看自己的报表")
        # A level-2 chief: their grid (by member: see the quarterly report below), not the
        # county.
        (refused,) = await h.say("@chief_f:localhost", "/报表 年 县:芦溪县", room=DM)
        assert refused.startswith("「芦溪县」不在你的范围内")
        (refused,) = await h.say("@l1office:localhost", "/报表 年 县:湘东区", room=L1_ROOM)
        assert refused.startswith("「湘东区」不在你的范围内")
        # Admins see the counties side by side, ranked.
        city, *_ = await h.say("@admin:localhost", "/报表 年 2026 --format chat", room=DM)
        assert "1. 湘东区（100.0 分）：100% | 100% | 100% | 0 | — | 0 | — | 0" in city
        assert "2. 芦溪县（65.0 分）：84% | 63% | 63% | 5 | 50% | 1 | 50% | 2" in city
        (nope,) = await h.say("@ent_a:localhost", "/报表", room=DM)
        assert "无权" in nope
        (future,) = await h.say("@l1office:localhost", "/报表 年 2028", room=L1_ROOM)
        assert future.startswith("期间还没到：2028")


async def test_monthly_report_and_training_lists_on_schedule(sqlite_db: Database) -> None:
    h, g = await _harness(sqlite_db)
    await set_room(sqlite_db, "!l1x:localhost", "l1_room", grid_id=g.grids["XL1"])  # type: ignore[attr-defined]
    # 2026-11-27 (Friday): plan; the December report of November is due on Tue 12-01 09:00.
    with time_machine.travel(datetime(2026, 11, 27, 10, tzinfo=TZ), tick=False) as clock:
        await h.scheduler.tick()
        async with sqlite_db.transaction() as s:
            keys = set(await s.scalars(select(ScheduledJob.key)))
        assert {"report-monthly:2026-11", "report-annual:2026", "training-annual:2027"} <= keys
        assert "training-newcomers:2026-11-30" in keys
        # Down over the 1st: the report comes when the bot is back, once, and says so.
        clock.move_to(datetime(2026, 12, 1, 15, 0, tzinfo=TZ))
        await h.scheduler.tick()
        out = await h.new_messages()
        await h.scheduler.tick()
        assert await h.new_messages() == []
    async with sqlite_db.transaction() as s:
        rows = list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
    luxi = [r for r in rows if r.room_id == L1_ROOM and "newcomers" not in (r.cause or "")]
    summary = luxi[0].content["body"]
    assert summary.startswith("【自动报表】芦溪县2026年11月网格工作月报\n")
    assert "合计：40% | — | 67% | 0 | — | 0 | — | 0" in summary  # 2 of 5 visits made
    assert "（本报表原定 2026-12-01 09:00 发送，因系统停机延迟发送。）" in summary
    assert [r.content["body"] for r in luxi[1:3]] == [
        "芦溪县-2026-11-月报.png",
        "芦溪县-2026-11-月报.xlsx",
    ]
    # A report that is ready rings the level-1 office, named in its text (bot.rings).
    assert luxi[0].content["msgtype"] == "m.text" and "查阅" in summary.split("\n")[1]
    assert luxi[0].content["m.mentions"]["user_ids"], "the office is mentioned"
    assert all(
        r.content["msgtype"] == "m.file" or "image" in r.content["msgtype"] for r in luxi[1:3]
    ), "its files follow quietly"
    assert any(b.startswith("【自动报表】湘东区2026年11月网格工作月报") for b in out)


async def test_training_lists_ring_the_level1_office(sqlite_db: Database) -> None:
    reports_off = {"monthly": False, "quarterly": False, "annual_draft": ""}
    h, _g = await _harness(sqlite_db, timing={"reports": reports_off})
    with time_machine.travel(datetime(2026, 10, 30, 10, tzinfo=TZ), tick=False) as clock:
        await h.scheduler.tick()
        clock.move_to(datetime(2026, 11, 2, 9, 0, 30, tzinfo=TZ))  # Monday; training_by - 30
        await h.scheduler.tick()
    async with sqlite_db.transaction() as s:
        rows = list(await s.scalars(select(OutboxMessage).where(OutboxMessage.room_id == L1_ROOM)))
    bodies = {r.content["body"].split("（")[0]: r for r in rows}
    due = bodies["年度培训提醒"]
    assert "2026 年还没有参加培训，请在 2026-11-30 前组织培训" in due.content["body"]
    assert "· 陈红（道路客运·二级网格长）" in due.content["body"]
    assert "· 赵磊（道路货运·二级网格员）" in due.content["body"]
    assert due.content["msgtype"] == "m.text"
    assert due.content["m.mentions"]["user_ids"] == ["@l1office:localhost"]
    never = bodies["先培训、后上岗"].content["body"]
    assert "仍未培训（再次提醒）：\n· 陈红（道路客运·二级网格长，2026-01-01 上岗）" in never
    assert "赵磊" not in never  # trained in 2025, before the post


def test_every_indicator_is_defined_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [k for k in BY_KEY if f"`{k}`" not in readme]
    assert missing == []


def test_gridbot_report_writes_the_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.cli import main

    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"

    async def seed() -> None:
        db = Database(url)
        await db.upgrade()
        await seed_report_grid(db)
        await db.close()

    asyncio.run(seed())
    out = tmp_path / "out"
    with time_machine.travel(AFTER_2026, tick=False):
        args = "report 年 2026 县:芦溪县 --format xlsx --database".split()
        code = main([*args, url, "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("芦溪县2026年度交通运输安全生产网格化服务管理工作情况\n")
    assert "合计：84% | 63% | 63% | 5 | 50% | 1 | 50% | 2" in printed
    names = sorted(p.name for p in out.iterdir())
    assert names == ["芦溪县-2026-年报.png", "芦溪县-2026-年报.xlsx"]
    assert main(["report", "年", "2026", "县:乌有县", "--database", url]) == 2
    assert "没有找到县（区、市）「乌有县」" in capsys.readouterr().out


async def test_quarterly_report_on_the_first_working_day_after_the_quarter(
    sqlite_db: Database,
) -> None:
    only_quarterly = {"monthly": False, "annual_draft": "", "training_by": ""}
    h, g = await _harness(sqlite_db, timing={"reports": only_quarterly})
    l2 = "!l2f:localhost"
    await set_room(sqlite_db, l2, "l2_room", grid_id=g.grids["F"])  # type: ignore[attr-defined]
    # National Day (10-01 … 10-07) is a holiday: the third quarter's report waits for 10-08.
    assert first_working_day(2026, 10).isoformat() == "2026-10-08"
    with time_machine.travel(datetime(2026, 9, 28, 10, tzinfo=TZ), tick=False) as clock:
        await h.scheduler.tick()
        clock.move_to(datetime(2026, 10, 8, 9, 0, 30, tzinfo=TZ))
        await h.scheduler.tick()
    async with sqlite_db.transaction() as s:
        rows = list(await s.scalars(select(OutboxMessage).where(OutboxMessage.room_id == l2)))
    body = rows[0].content["body"]
    assert body.startswith("【自动报表】芦溪县·道路货运2026年第3季度网格工作季报\n")
    # Q3 in the freight grid: 张敏 visited A and B each month, 赵磊 never visited C.
    assert "张敏：100% | — |" in body and "赵磊：0% | — |" in body
    assert "· 会议：季度会议召开率 0%，共 0 次" in body  # no meeting in the third quarter
    assert [r.content["body"] for r in rows[1:]] == [
        "芦溪县·道路货运-2026Q3-季报.png",
        "芦溪县·道路货运-2026Q3-季报.xlsx",
    ]

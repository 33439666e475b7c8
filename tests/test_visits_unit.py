"""Visits, meetings, trainings and their reminders through the real dispatcher and database.

Fast (no homeserver): messages go into the inbox as the syncer would store them and the replies
are read from the outbox. The end-to-end proof on Synapse is tests/test_visits_e2e.py.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select

import handlers.basics.cancel
import handlers.visits.listing
import handlers.visits.meetings
import handlers.visits.reminders
import handlers.visits.visit
from bot.dates import month_bounds
from bot.words import choose, past_day, says_no_problem, split_names
from storage.db import Database
from storage.models import Assignment, Enterprise, OutboxMessage, Person, Role, ScheduledJob
from storage.visit_reports import coverage, level2_grids, pairs_for_month
from storage.visits import Meeting, Training, Visit, get_visit, next_code
from tests.dispatch_harness import DispatchHarness
from tests.dispatch_harness import test_config as make_config
from tests.roster_seed import set_room
from tests.visits_seed import (
    GANXI,
    HAZMAT,
    STATION,
    TONGDA,
    VisitGrid,
    fake_mxids,
    seed_visit_grid,
)

TZ = ZoneInfo("Asia/Shanghai")
MODULES = [
    handlers.visits.visit,
    handlers.visits.listing,
    handlers.visits.meetings,
    handlers.visits.reminders,
    handlers.basics.cancel,
]
DM = "!room:localhost"
MEMBER = "@member:localhost"
CHIEF = "@l2chief:localhost"
OFFICE = "@office:localhost"
ADMIN = "@admin:localhost"


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)  # type: ignore[misc]


async def setup(db: Database, **config: Any) -> tuple[DispatchHarness, VisitGrid]:
    grid = await seed_visit_grid(db, fake_mxids())
    await set_room(db, DM, "direct")
    return DispatchHarness(db, MODULES, make_config(**config)), grid


class Outbox:
    """Rows the bot queued since the last look (room, mentions and HTML included)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.last = 0

    async def new(self) -> list[OutboxMessage]:
        async with self.db.transaction() as s:
            rows = list(
                await s.scalars(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.id > self.last, OutboxMessage.event_type == "m.room.message"
                    )
                    .order_by(OutboxMessage.id)
                )
            )
        if rows:
            self.last = rows[-1].id
        return rows


def image(n: int) -> dict[str, Any]:
    return {
        "msgtype": "m.image",
        "url": f"mxc://localhost/photo{n}",
        "info": {"mimetype": "image/png"},
    }


def location(geo_uri: str) -> dict[str, Any]:
    """The content Element sends for "share my current location" (m.location)."""
    return {"msgtype": "m.location", "geo_uri": geo_uri}


def mentions(row: OutboxMessage) -> list[str]:
    return row.content["m.mentions"]["user_ids"]


# --- answers ---------------------------------------------------------------------------------


def test_short_answers_are_read_like_people_type_them() -> None:
    names = [TONGDA, HAZMAT, GANXI]
    assert choose(names, "2").one == 1
    assert choose(names, "4").picks == ()
    assert choose(names, "通达").one == 0
    assert choose(names, "赣西").picks == (1, 2)
    assert choose(names, GANXI + "。").one == 2
    assert choose(names, "xyz").picks == ()
    assert split_names("张敏、赵磊，陈红 王五\n张敏") == ["张敏", "赵磊", "陈红", "王五"]
    assert says_no_problem("检查了车辆动态监控，无问题") and not says_no_problem("台账不全")
    today = date(2026, 11, 19)
    assert past_day("今天", today) == (today, None)
    assert past_day("昨天", today) == (date(2026, 11, 18), None)
    assert past_day("11月18日", today) == (date(2026, 11, 18), None)
    assert past_day("11月20日", today)[1] == "future"  # a slip for tomorrow, not last year
    assert past_day("2026-11-21", today)[1] == "future"
    assert past_day("12月30日", date(2027, 1, 5)) == (date(2026, 12, 30), None)
    assert past_day("abc", today) == (None, "unreadable")


# --- /visit ----------------------------------------------------------------------------------


async def test_visit_conversation_reasks_bad_answers_then_saves(sqlite_db: Database) -> None:
    h, g = await setup(sqlite_db)
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        out = await h.say(MEMBER, "/visit")
        assert f"1. {TONGDA}\n2. {HAZMAT}\n3. {GANXI}" in out[0]
        out = await h.say(MEMBER, "赣西")
        assert "「赣西」对应多家企业" in out[0] and f"2. {HAZMAT}" in out[0]
        assert TONGDA not in out[0]
        out = await h.say(MEMBER, "xyz")
        assert "没有找到名称含「xyz」的企业" in out[0] and f"1. {TONGDA}" in out[0]
        assert (await h.say(MEMBER, "p.png", **image(0)))[0].startswith("请用文字回答")
        out = await h.say(MEMBER, "危险品")
        assert f"企业：{HAZMAT}" in out[0] and "走访日期" in out[0]
        assert "日期不能是将来" in (await h.say(MEMBER, "明天"))[0]
        assert "日期不能是将来" in (await h.say(MEMBER, "11月21日"))[0]
        out = await h.say(MEMBER, "11月5日")
        assert "你从 2026-11-10 起才负责该企业" in out[0]
        assert "没看懂日期「abc」" in (await h.say(MEMBER, "abc"))[0]
        out = await h.say(MEMBER, "昨天")
        assert out == [f"{HAZMAT}，2026-11-19。这次检查了什么？请简要描述。"]
        assert "发现了什么问题" in (await h.say(MEMBER, "检查了危险品车辆动态监控"))[0]
        assert "请共享你现在的位置" in (await h.say(MEMBER, "两辆车GPS离线"))[0]
        assert "附件/➕ → 位置" in (await h.say(MEMBER, "在现场"))[0]
        assert "请发送现场照片" in (await h.say(MEMBER, "跳过"))[0]
        assert "发完回复「完成」" in (await h.say(MEMBER, "还有吗"))[0]
        assert await h.say(MEMBER, "1.png", **image(1)) == [
            "已收到 1 张照片。继续发送，或回复「完成」。"
        ]
        assert (await h.say(MEMBER, "2.png", **image(2)))[0].startswith("已收到 2 张照片")
        pdf = {
            "msgtype": "m.file",
            "url": "mxc://localhost/doc",
            "info": {"mimetype": "application/pdf"},
        }
        # A PDF is kept as evidence beside the photos (bot.evidence); a video is not.
        assert (await h.say(MEMBER, "a.pdf", **pdf))[0].startswith("已收到 2 张照片、1 个文件")
        video = {"msgtype": "m.video", "url": "mxc://localhost/v", "info": {}}
        assert "这个文件没有收下" in (await h.say(MEMBER, "v.mp4", **video))[0]
        out = await h.say(MEMBER, "完成")
        assert "发现问题：两辆车GPS离线" in out[0] and "照片：2 张" in out[0]
        assert "语音和文件：文件 a.pdf" in out[0]
        out = await h.say(MEMBER, "嗯")
        assert out[0].startswith("请回复「确认」保存") and "请核对走访记录" in out[0]
        out = await h.say(MEMBER, "确认")
        assert len(out) == 1
        assert "已保存走访记录 V-2026-0001" in out[0]
        assert "/hazard V-2026-0001" in out[0] and "/escalate V-2026-0001" in out[0]
        assert "该企业暂无企业群，记录未发布" in out[0]
        assert await h.say(MEMBER, "随便说说") == []  # the conversation is over
    async with sqlite_db.transaction() as s:
        v = await get_visit(s, "v-2026-0001")
        assert v is not None
        assert v.person_id == g.people["member"] and v.enterprise_id == g.enterprises[HAZMAT]
        assert v.visit_date == date(2026, 11, 19)
        assert v.checked == "检查了危险品车辆动态监控" and v.problems == "两辆车GPS离线"
        assert v.photos == ["mxc://localhost/photo1", "mxc://localhost/photo2"]
        assert [(f["msgtype"], f["url"], f["name"]) for f in v.files] == [
            ("m.file", "mxc://localhost/doc", "a.pdf")
        ]
        assert v.room_id == DM and v.event_id and v.posted_room_id is None


async def test_one_line_visit_and_the_enterprise_room_post(sqlite_db: Database) -> None:
    h, g = await setup(sqlite_db)
    await set_room(
        sqlite_db, "!ent:localhost", "enterprise_room", enterprise_id=g.enterprises[GANXI]
    )
    box = Outbox(sqlite_db)
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        out = await h.say(MEMBER, "/走访 赣西物流 检查了车辆动态监控，无问题")
        assert out[0].startswith("请核对走访记录")
        assert "日期：2026-11-20" in out[0] and "发现问题：无" in out[0]
        assert await h.say(MEMBER, "1.png", **image(1)) == [
            "已附加，共 1 张照片。回复「确认」保存，「取消」放弃。"
        ]
        await box.new()
        await h.say(MEMBER, "确认")
        posted, saved = await box.new()
        assert posted.room_id == "!ent:localhost" and saved.room_id == DM
        assert posted.content["body"].startswith("走访记录 V-2026-0001\n网格员：张敏")
        assert '<img src="mxc://localhost/photo1"' in posted.content["formatted_body"]
        assert "已发布到企业群" in saved.content["body"] and "/hazard" not in saved.content["body"]

        # Problems not stated: the one question left is asked; 取消 at the end saves nothing.
        assert "发现了什么问题" in (await h.say(MEMBER, "/visit 通达 查了台账"))[0]
        assert "发现问题：台账不全" in (await h.say(MEMBER, "台账不全"))[0]
        assert await h.say(MEMBER, "取消") == ["已取消「走访登记」，未保存任何内容。"]

        # An ambiguous name in the one-line form is asked again; the rest is kept.
        assert "对应多家企业" in (await h.say(MEMBER, "/visit 赣西 查了消防器材，一切正常"))[0]
        out = await h.say(MEMBER, "2")
        assert f"企业：{HAZMAT}" in out[0] and "检查内容：查了消防器材，一切正常" in out[0]
        await h.say(MEMBER, "/cancel")
    with time_machine.travel(at(2026, 11, 5, 10, 0), tick=False):
        out = await h.say(MEMBER, "/visit 危险品 查了，无问题")
        assert "你从 2026-11-10 起才负责该企业" in out[0] and "走访日期" in out[0]
    async with sqlite_db.transaction() as s:
        rows = list(await s.scalars(select(Visit)))
        assert [(v.code, v.problems, v.posted_room_id) for v in rows] == [
            ("V-2026-0001", None, "!ent:localhost")
        ]
        assert rows[0].posted_outbox_id == posted.id


async def test_answers_are_read_alike_whatever_the_keyboard_did(sqlite_db: Database) -> None:
    """Full-width digits and letters, trailing punctuation and zero-width characters: the
    visit reads "２", "完成。", "ＯＫ" as the hazard report and every other conversation does."""
    h, _ = await setup(sqlite_db)
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        for done, yes in (
            ("完成。", "确认！"),
            ("完成\u200b", "ＯＫ"),
            ("ＤＯＮＥ", "\ufeff好的。"),
        ):
            await h.say(MEMBER, "/visit")
            assert f"企业：{HAZMAT}" in (await h.say(MEMBER, "２"))[0]
            assert "这次检查了什么" in (await h.say(MEMBER, "今天。"))[0]
            await h.say(MEMBER, "查了台账")
            assert "请共享你现在的位置" in (await h.say(MEMBER, "无。"))[0]
            assert "请发送现场照片" in (await h.say(MEMBER, "跳过。"))[0]
            await h.say(MEMBER, "1.png", **image(1))
            out = await h.say(MEMBER, done)
            assert out[0].startswith("请核对走访记录") and "照片：1 张" in out[0], done
            assert "发现问题：无" in out[0]
            assert "已保存走访记录" in (await h.say(MEMBER, yes))[0], yes
        # The meeting reads them too: "跳过。" for the minutes, "确认！" to save.
        await h.say(CHIEF, "/会议")
        for answer in ("今天", "全体网格员", "冬季安全", "无"):
            await h.say(CHIEF, answer)
        assert "请核对会议记录" in (await h.say(CHIEF, "跳过。"))[0]
        assert (await h.say(CHIEF, "确认！"))[0].startswith("已保存会议记录")
    async with sqlite_db.transaction() as s:
        assert len(list(await s.scalars(select(Visit)))) == 3


async def test_visit_in_the_enterprise_room_and_who_may_log(sqlite_db: Database) -> None:
    h, g = await setup(sqlite_db)
    ent = "!ent:localhost"
    await set_room(sqlite_db, ent, "enterprise_room", enterprise_id=g.enterprises[GANXI])
    await set_room(sqlite_db, "!other:localhost", "other")
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        out = await h.say(MEMBER, "/visit", room=ent)
        assert f"企业：{GANXI}" in out[0]  # the room's enterprise is preset
        for answer in ("今天", "查了<script>台账</script>", "无", "跳过"):
            await h.say(MEMBER, answer, room=ent)
        bad = {"msgtype": "m.image", "url": "javascript:alert(1)", "info": {}}
        assert "地址无效" in (await h.say(MEMBER, "x.png", room=ent, **bad))[0]
        await h.say(MEMBER, "跳过", room=ent)
        box = Outbox(sqlite_db)
        await box.new()
        out = await h.say(MEMBER, "是", room=ent)
        assert len(out) == 1 and "本记录在企业群中可见" in out[0]
        assert "查了<script>台账</script>" in out[0]  # plain text is kept as typed
        (row,) = await box.new()
        assert "&lt;script&gt;" in row.content["formatted_body"]
        assert "<script>" not in row.content["formatted_body"]
        assert "不能在此房间使用" in (await h.say(MEMBER, "/visit", room="!other:localhost"))[0]
        assert "你无权使用 /visit" in (await h.say("@entchief:localhost", "/visit", room=ent))[0]
        assert "你无权使用 /visit" in (await h.say(CHIEF, "/visit"))[0]


async def test_visit_conversation_survives_restart_cancel_and_idle(sqlite_db: Database) -> None:
    h, _g = await setup(sqlite_db)
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False) as clock:
        await h.say(MEMBER, "/visit")
        await h.say(MEMBER, "1")
        restarted = DispatchHarness(sqlite_db, MODULES)
        await restarted.new_messages()
        out = await restarted.say(MEMBER, "今天")
        assert out == [f"{TONGDA}，2026-11-20。这次检查了什么？请简要描述。"]
        # Another user in the same room is not inside the member's conversation.
        assert await restarted.say(CHIEF, "检查了") == []
        assert await restarted.say(MEMBER, "/取消") == ["已取消「走访登记」，未保存任何内容。"]
        await restarted.say(MEMBER, "/visit")
        clock.shift(timedelta(minutes=31))
        await restarted.scheduler.tick()
        out = await restarted.new_messages()
        assert out == ["「走访登记」长时间没有回复，已自动结束，未保存。需要时请重新开始。"]
        assert await restarted.say(MEMBER, "1") == []


async def test_visit_ids_are_unique_per_year_under_concurrency(db: Database) -> None:
    async def one(year: int) -> str:
        async with db.transaction() as s:
            return await next_code(s, "V", year)

    codes = await asyncio.gather(*(one(2026) for _ in range(8)))
    assert sorted(codes) == [f"V-2026-{n:04d}" for n in range(1, 9)]
    assert await one(2027) == "V-2027-0001"
    assert await one(2026) == "V-2026-0009"


# --- /visits ---------------------------------------------------------------------------------


async def _add_visits(db: Database, g: VisitGrid, *visits: tuple[str, str, date]) -> None:
    async with db.transaction() as s:
        for n, (who, ent, day) in enumerate(visits, 1):
            s.add(
                Visit(
                    code=f"V-TEST-{n:04d}",
                    person_id=g.people[who],
                    enterprise_id=g.enterprises[ent],
                    visit_date=day,
                    checked="查了",
                    photos=[],
                    room_id=DM,
                )
            )


async def test_visits_report_numbers_per_role(db: Database) -> None:
    h, g = await setup(db, admins=[ADMIN])
    await _add_visits(
        db,
        g,
        ("member", GANXI, date(2026, 11, 3)),
        ("member", GANXI, date(2026, 11, 18)),
        ("member", TONGDA, date(2026, 10, 30)),
    )
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        out = await h.say(MEMBER, "/走访情况")
        assert "覆盖率 33%（1/3）" in out[0] and "本月还剩 10 天" in out[0]
        assert f"✓ {GANXI} ×2（最近 2026-11-18）" in out[0]
        assert f"✗ {TONGDA}" in out[0] and f"✗ {HAZMAT}" in out[0]
        out = await h.say(MEMBER, "/visits 2026-10")
        # October: the hazmat company was not yet assigned.
        assert "覆盖率 50%（1/2）" in out[0] and HAZMAT not in out[0]
        assert "月份还没到" in (await h.say(MEMBER, "/visits 2026-12"))[0]
        assert "看不懂月份" in (await h.say(MEMBER, "/visits abc"))[0]

        box = Outbox(db)
        await box.new()
        out = await h.say(CHIEF, "/visits")
        assert "【芦溪县二级网格·道路货运】覆盖率 33%（1/3）" in out[0]
        assert "张敏 ▇▇▇░░░░░░░ 1/3（2 次）" in out[0] and STATION not in out[0]
        (row,) = await box.new()
        html = row.content["formatted_body"]
        assert "<table>" in html and f"<td>{GANXI}</td><td>2</td>" in html
        for who in (OFFICE, "@l1chief:localhost", ADMIN):
            out = await h.say(who, "/visits")
            assert "总覆盖率 25%（1/4 个网格员-企业对）" in out[0], who
            assert "赵磊 ░░░░░░░░░░ 0/1（0 次）" in out[0]
        out = await h.say("@member_p:localhost", "/visits")
        assert "覆盖率 0%（0/1）" in out[0] and f"✗ {STATION}" in out[0]
        assert "你无权使用 /visits" in (await h.say("@entchief:localhost", "/visits"))[0]
        assert {r.content["msgtype"] for r in await box.new()} == {"m.notice"}  # answers


async def test_a_month_with_nothing_to_visit_says_so(db: Database) -> None:
    """Before any assignment there was nothing to visit: no "100% (0/0)"."""
    h, _g = await setup(db)
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        (out,) = await h.say(MEMBER, "/visits 2025-12")
        assert "这个月你没有需要走访的企业" in out and "覆盖率" not in out
        (out,) = await h.say(OFFICE, "/visits 2025-12")
        assert "你的范围内没有走访任务" in out
        assert "【芦溪县二级网格·道路货运】没有走访任务" in out
        assert "无网格员负责：芦溪汽车站" in out  # nobody served it then
        assert "%" not in out and "0/0" not in out
    en = DispatchHarness(db, MODULES, make_config(language="en"))
    await en.new_messages()  # the answers above
    with time_machine.travel(at(2026, 11, 20, 10, 0), tick=False):
        (out,) = await en.say(MEMBER, "/visits 2025-12")
        assert "You had no enterprise to visit that month" in out and "Coverage" not in out
        (out,) = await en.say(OFFICE, "/visits 2025-12")
        assert "Nothing to visit in your scope" in out and "nothing to visit" in out
        assert "%" not in out and "0/0" not in out


async def test_month_pairs_follow_the_roster_history(db: Database) -> None:
    g = await seed_visit_grid(db, fake_mxids())
    async with db.transaction() as s:
        # 张敏 hands 通达 over on 11-15; the bus station closes on 11-10; a new one has nobody.
        a = await s.scalar(
            select(Assignment).where(Assignment.enterprise_id == g.enterprises[TONGDA])
        )
        assert a is not None
        a.until = date(2026, 11, 15)
        station = await s.get(Enterprise, g.enterprises[STATION])
        assert station is not None
        station.active, station.deactivated_on = False, date(2026, 11, 10)
        s.add(
            Enterprise(
                unit_id=g.county,
                grid_id=g.grids["freight"],
                name="新开物流公司",
                type="道路货运企业",
                active=True,
            )
        )
    async with db.transaction() as s:
        nov = await pairs_for_month(s, month_bounds(2026, 11))
        dec = await pairs_for_month(s, month_bounds(2026, 12))
        assert {(p.person_name, p.enterprise_name) for p in nov} == {
            ("张敏", GANXI),
            ("张敏", TONGDA),
            ("张敏", HAZMAT),
            ("赵磊", STATION),
        }
        assert {p.enterprise_name for p in dec} == {GANXI, HAZMAT}
        table = await coverage(s, month_bounds(2026, 12), await level2_grids(s))
        freight = next(t for t in table if t.grid_id == g.grids["freight"])
        assert set(freight.unserved) == {TONGDA, "新开物流公司"}


# --- /meeting and /training -----------------------------------------------------------------


async def test_meeting_and_training_are_recorded(sqlite_db: Database) -> None:
    h, g = await setup(sqlite_db, admins=[ADMIN])
    async with sqlite_db.transaction() as s:
        # A namesake of 张敏 elsewhere, and two 刘伟 in the county: only the first is matched.
        other = Person(name="张敏", active=True)
        twin1, twin2 = Person(name="刘伟", active=True), Person(name="刘伟", active=True)
        s.add_all([other, twin1, twin2])
        await s.flush()
        for twin in (twin1, twin2):
            s.add(
                Role(
                    person_id=twin.id,
                    kind="l2_member",
                    grid_id=g.grids["passenger"],
                    since=date(2026, 1, 1),
                )
            )
    with time_machine.travel(at(2026, 12, 3, 10, 0), tick=False):
        assert "你无权使用 /meeting" in (await h.say(MEMBER, "/meeting"))[0]
        assert "会议日期" in (await h.say(CHIEF, "/会议"))[0]
        assert "日期不能是将来" in (await h.say(CHIEF, "12月4日"))[0]
        for answer in ("12月2日", "李卫东、张敏", "四季度安全形势", "开展冬季专项检查"):
            await h.say(CHIEF, answer)
        assert "请发送会议纪要文件" in (await h.say(CHIEF, "有的"))[0]
        minutes = {"msgtype": "m.file", "url": "mxc://localhost/min", "info": {}}
        out = await h.say(CHIEF, "纪要.docx", **minutes)
        assert "计入 2026 年第 4 季度" in out[0] and "会议纪要：纪要.docx" in out[0]
        assert (await h.say(CHIEF, "确认"))[0].startswith("已保存会议记录 M-2026-0001")

        assert "你无权使用 /training" in (await h.say(CHIEF, "/training"))[0]
        await h.say(OFFICE, "/培训")
        await h.say(OFFICE, "2026-11-28")
        await h.say(OFFICE, "网格员岗前培训")
        assert "请至少写一个参加人姓名" in (await h.say(OFFICE, "，"))[0]
        out = await h.say(OFFICE, "张敏、赵磊，刘伟 王五")
        assert "参加人员（名册中 2 人）：张敏、赵磊" in out[0]
        assert "未能对应名册：刘伟、王五" in out[0]
        assert "T-2026-0001" in (await h.say(OFFICE, "确认"))[0]
        await h.say(ADMIN, "/training")
        for answer in ("今天", "年度培训", "赵磊", "确认"):
            out = await h.say(ADMIN, answer)
        assert "T-2026-0002" in out[0]
    async with sqlite_db.transaction() as s:
        meeting = await s.scalar(select(Meeting))
        assert meeting is not None and meeting.grid_id == g.grids["freight"]
        assert meeting.meeting_date == date(2026, 12, 2)
        assert meeting.minutes == {
            "url": "mxc://localhost/min",
            "name": "纪要.docx",
            "mimetype": None,
        }
        trainings = list(await s.scalars(select(Training).order_by(Training.id)))
        assert [t.grid_id for t in trainings] == [g.grids["l1"], None]
        first = trainings[0]
        await s.refresh(first, ["attendees"])
        assert [(a.name, a.person_id) for a in first.attendees] == [
            ("张敏", g.people["member"]),
            ("赵磊", g.people["member_p"]),
            ("刘伟", None),
            ("王五", None),
        ]


# --- reminders and summaries -----------------------------------------------------------------


async def _rooms(db: Database, g: VisitGrid, *, passenger_room: bool) -> None:
    await set_room(db, "!l2:localhost", "l2_room", grid_id=g.grids["freight"])
    await set_room(db, "!l1:localhost", "l1_room", grid_id=g.grids["l1"])
    if passenger_room:
        await set_room(db, "!l2p:localhost", "l2_room", grid_id=g.grids["passenger"])


async def _keys(db: Database) -> dict[str, str | None]:
    async with db.transaction() as s:
        return {j.key: j.outcome for j in await s.scalars(select(ScheduledJob))}


async def test_planner_plans_future_occurrences_only(sqlite_db: Database) -> None:
    h, _g = await setup(sqlite_db)
    with time_machine.travel(at(2026, 11, 28, 10, 0), tick=False):
        await h.scheduler.tick()
        await h.scheduler.tick()
    assert set(await _keys(sqlite_db)) == {
        "visit-gaps:2026-11",
        "visit-reminder:2026-12-20",
        "visit-reminder:2026-12-25",
        "visit-gaps:2026-12",
        "meeting-reminder:2026-Q4:12-15",
        "meeting-gaps:2026-Q4",
    }
    assert await h.new_messages() == []  # a fresh install sends no past reminders


async def test_reminders_and_month_end_summaries(sqlite_db: Database) -> None:
    h, g = await setup(sqlite_db)
    await _rooms(sqlite_db, g, passenger_room=False)
    # 赵磊's grid has no level-2 room: his reminder goes to his direct chat with the bot.
    await set_room(sqlite_db, "!dmp:localhost", "direct")
    await h.say("@member_p:localhost", "你好", room="!dmp:localhost")
    box = Outbox(sqlite_db)
    with time_machine.travel(at(2026, 11, 19, 10, 0), tick=False) as clock:
        await h.scheduler.tick()
        await h.say(MEMBER, "/visit 赣西物流 查了监控，无问题")
        await h.say(MEMBER, "确认")
        await box.new()
        clock.move_to(at(2026, 11, 20, 9, 0, 30))
        await h.scheduler.tick()
        dm, l2 = sorted(await box.new(), key=lambda r: r.room_id)
        assert l2.room_id == "!l2:localhost" and mentions(l2) == [MEMBER]
        assert l2.content["msgtype"] == dm.content["msgtype"] == "m.text"  # it rings
        assert f"张敏：{TONGDA}、{HAZMAT}" in l2.content["body"] and GANXI not in l2.content["body"]
        assert "还剩 10 天" in l2.content["body"] and "延迟" not in l2.content["body"]
        assert 'href="https://matrix.to/#/@member:localhost"' in l2.content["formatted_body"]
        assert dm.room_id == "!dmp:localhost" and mentions(dm) == ["@member_p:localhost"]
        assert f"赵磊：{STATION}" in dm.content["body"] and "张敏" not in dm.content["body"]
        await h.scheduler.tick()
        assert await box.new() == []

        # Month end: the 25th's reminder was missed and is stale (the month is over).
        clock.move_to(at(2026, 12, 1, 9, 1))
        await h.scheduler.tick()
        rows = await box.new()
        assert [(r.room_id, mentions(r)) for r in rows] == [
            ("!l2:localhost", [CHIEF]),
            ("!l1:localhost", [OFFICE]),
        ]
        assert {r.content["msgtype"] for r in rows} == {"m.text"}  # gaps: they must act
        chief, office = (r.content["body"] for r in rows)
        assert chief.startswith("2026-11 走访情况汇总（芦溪县二级网格·道路货运），请 李卫东 关注")
        assert "覆盖率 33%（1/3）" in chief and f"未走访：{TONGDA}、{HAZMAT}" in chief
        assert "总覆盖率 25%（1/4）" in office and f"未走访：{STATION}" in office
    assert (await _keys(sqlite_db))["visit-reminder:2026-11-25"] == "late"


async def test_a_reminder_missed_while_down_comes_once_and_says_late(sqlite_db: Database) -> None:
    h, g = await setup(sqlite_db)
    await _rooms(sqlite_db, g, passenger_room=True)
    box = Outbox(sqlite_db)
    with time_machine.travel(at(2026, 11, 19, 10, 0), tick=False) as clock:
        await h.scheduler.tick()
        # Down from the 19th to the 26th: the 20th's and the 25th's reminders are both due.
        clock.move_to(at(2026, 11, 26, 10, 0))
        restarted = DispatchHarness(sqlite_db, MODULES)
        await restarted.scheduler.tick()
        rows = await box.new()
        assert sorted(r.room_id for r in rows) == ["!l2:localhost", "!l2p:localhost"]
        for r in rows:
            assert "（本提醒原定 2026-11-25 09:00 发送，因系统停机延迟发送。）" in r.content["body"]
            assert "还剩 4 天" in r.content["body"]
        await restarted.scheduler.tick()
        again = DispatchHarness(sqlite_db, MODULES)
        await again.scheduler.tick()
        assert await box.new() == []


async def test_a_summary_with_nothing_left_to_do_is_quiet(sqlite_db: Database) -> None:
    """Every visit of November made: the month-end summaries ask nobody to act, so they are
    notices that mention nobody (a ringing message is for what asks people to act)."""
    h, g = await setup(sqlite_db)
    await _rooms(sqlite_db, g, passenger_room=True)
    await _add_visits(
        sqlite_db,
        g,
        ("member", GANXI, date(2026, 11, 3)),
        ("member", TONGDA, date(2026, 11, 9)),
        ("member", HAZMAT, date(2026, 11, 11)),
        ("member_p", STATION, date(2026, 11, 12)),
    )
    box = Outbox(sqlite_db)
    with time_machine.travel(at(2026, 11, 19, 10, 0), tick=False) as clock:
        await h.scheduler.tick()
        clock.move_to(at(2026, 12, 1, 9, 1))
        await h.scheduler.tick()
        rows = await box.new()
    assert sorted(r.room_id for r in rows) == ["!l1:localhost", "!l2:localhost", "!l2p:localhost"]
    for r in rows:
        assert r.content["msgtype"] == "m.notice" and mentions(r) == [], r.content["body"]
        assert "走访已全部完成" in r.content["body"]


async def test_meeting_reminder_and_quarter_summary(sqlite_db: Database) -> None:
    h, g = await setup(sqlite_db)
    await _rooms(sqlite_db, g, passenger_room=True)
    box = Outbox(sqlite_db)
    async with sqlite_db.transaction() as s:
        # The passenger chief met in Q3: that does not count for Q4.
        s.add(
            Meeting(
                code="M-2026-0099",
                grid_id=g.grids["passenger"],
                person_id=g.people["l2chief_p"],
                meeting_date=date(2026, 9, 30),
                attendees="全体",
                topics="三季度",
                decisions="无",
                room_id=DM,
            )
        )
    with time_machine.travel(at(2026, 12, 2, 10, 0), tick=False) as clock:
        await h.scheduler.tick()
        for answer in ("/meeting", "今天", "全体网格员", "冬季安全", "无", "跳过", "确认"):
            await h.say(CHIEF, answer)
        await box.new()
        clock.move_to(at(2026, 12, 15, 9, 0, 30))
        await h.scheduler.tick()
        (row,) = await box.new()
        assert row.room_id == "!l2p:localhost" and mentions(row) == ["@l2chief_p:localhost"]
        assert row.content["msgtype"] == "m.text"
        assert "陈红，2026 年第 4 季度还没有登记安全生产工作会议" in row.content["body"]
        assert "2026-12-31 前召开（还剩 16 天）" in row.content["body"]

        clock.move_to(at(2027, 1, 1, 9, 1))
        await h.scheduler.tick()
        rows = [r for r in await box.new() if "安全生产工作会议情况" in r.content["body"]]
        (summary,) = rows
        assert summary.room_id == "!l1:localhost" and mentions(summary) == ["@l1chief:localhost"]
        assert summary.content["msgtype"] == "m.text"
        body = summary.content["body"]
        assert "2 个二级网格中有 1 个未登记会议" in body
        assert "芦溪县二级网格·道路客运（网格长：陈红）" in body and "道路货运" not in body


async def test_every_message_has_an_english_version(sqlite_db: Database) -> None:
    """The same flows with English as the bot's language: each English template renders."""
    h, g = await setup(sqlite_db, language="en")
    await _rooms(sqlite_db, g, passenger_room=True)
    await set_room(
        sqlite_db, "!ent:localhost", "enterprise_room", enterprise_id=g.enterprises[GANXI]
    )
    box = Outbox(sqlite_db)
    with time_machine.travel(at(2026, 11, 19, 10, 0), tick=False) as clock:
        await h.scheduler.tick()
        assert "Which enterprise did you visit?" in (await h.say(MEMBER, "/visit"))[0]
        assert "matches several enterprises" in (await h.say(MEMBER, "赣西"))[0]
        assert f"Enterprise: {GANXI}\nDate of the visit?" in (await h.say(MEMBER, "3"))[0]
        out = await h.say(MEMBER, "tomorrow")
        assert "The date cannot be in the future" in out[0]
        assert "What did you check?" in (await h.say(MEMBER, "today"))[0]
        assert "What problems did you find?" in (await h.say(MEMBER, "vehicle monitoring"))[0]
        assert "Share where you are now" in (await h.say(MEMBER, "one GPS offline"))[0]
        assert 'or reply "skip"' in (await h.say(MEMBER, "here"))[0]
        out = await h.say(MEMBER, "Location", **location("geo:27.63,113.85"))
        assert out[0].startswith("Location received: not located (a location was shared, but")
        assert "Send photos from the site" in out[0]
        out = await h.say(MEMBER, "Location", **location("geo:27.63,113.85;u=20"))
        assert out == [
            "Location received: not located (a location was shared, but the enterprise has no "
            'coordinates to compare with). Send more photos, or reply "done".'
        ]
        assert (await h.say(MEMBER, "1.png", **image(1)))[
            0
        ] == 'Got 1 photo. Send more, or reply "done".'
        assert "Please check the visit record" in (await h.say(MEMBER, "done"))[0]
        await box.new()
        await h.say(MEMBER, "yes")
        posted, saved = await box.new()
        assert posted.content["body"].startswith("Visit record V-2026-0001")
        assert "/escalate V-2026-0001" in saved.content["body"]
        assert "Coverage 33% (1/3)" in (await h.say(MEMBER, "/visits"))[0]
        assert "member-enterprise pairs" in (await h.say(OFFICE, "/visits"))[0]
        assert "Date of the meeting?" in (await h.say(CHIEF, "/meeting"))[0]
        for answer in ("today", "all members", "winter safety", "none"):
            out = await h.say(CHIEF, answer)
        assert "Send the minutes" in out[0]
        assert "Please check the meeting record" in (await h.say(CHIEF, "skip"))[0]
        assert "Meeting M-2026-0001 saved" in (await h.say(CHIEF, "yes"))[0]
        assert "Date of the training?" in (await h.say(OFFICE, "/training"))[0]
        for answer in ("today", "induction", "张敏 王五"):
            out = await h.say(OFFICE, answer)
        assert "Not matched to the roster: 王五" in out[0]
        assert "Training T-2026-0001 saved" in (await h.say(OFFICE, "yes"))[0]
        await box.new()
        clock.move_to(at(2026, 11, 20, 9, 0, 30))
        await h.scheduler.tick()
        bodies = [r.content["body"] for r in await box.new()]
        assert bodies and all(b.startswith("Visit reminder") for b in bodies)
        clock.move_to(at(2026, 12, 15, 9, 0, 30))
        await h.scheduler.tick()
        bodies = [r.content["body"] for r in await box.new()]
        assert any(b.startswith("Visits in 2026-11, summary for") for b in bodies)
        assert any(b.startswith("Meeting reminder (芦溪县二级网格·道路客运)") for b in bodies)
        assert any("sent late: the bot was down" in b for b in bodies)  # the month summary
        clock.move_to(at(2027, 1, 1, 9, 1))
        await h.scheduler.tick()
        bodies = [r.content["body"] for r in await box.new()]
        assert any("1 of 2 level-2 grids recorded no meeting" in b for b in bodies)

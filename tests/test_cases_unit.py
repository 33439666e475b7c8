"""Hazards, requests and accidents through the real dispatcher, scheduler and database (no
homeserver): every step, who may take it, the audit trail, deadlines and threads."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

import handlers.basics.cancel
import handlers.cases.accidents
import handlers.cases.hazards
import handlers.cases.history
import handlers.cases.jobs
import handlers.cases.requests
import handlers.cases.thread_replies
from bot import conversation
from bot.words import future_day
from handlers.cases.accident_parsing import parse_casualties, parse_when
from handlers.cases.hazards import parse_action
from messages import Messages
from storage import cases
from storage.cases import AppendOnlyError, CaseEvent, CaseRequest
from storage.db import Database
from storage.directory import Contact
from storage.hazard_categories import CATEGORIES, OTHER, categories_for, standard_for
from storage.models import InboxEvent, OutboxMessage
from tests.case_seed import CaseGrid, fake_mxids, seed_case_grid
from tests.dispatch_harness import DispatchHarness, deliver_pending
from tests.roster_seed import set_room

TZ = ZoneInfo("Asia/Shanghai")
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)  # a working day
ENT_A, ENT_B, L2, L1 = "!ganxi:localhost", "!tongda:localhost", "!l2:localhost", "!l1:localhost"
DM = "!dm:localhost"
MODULES = [
    handlers.basics.cancel,
    handlers.cases.hazards,
    handlers.cases.requests,
    handlers.cases.accidents,
    handlers.cases.history,
    handlers.cases.jobs,
    handlers.cases.thread_replies,
]
P = fake_mxids()


class CaseHarness(DispatchHarness):
    """The dispatch harness with the case reply hook, and a pretend sender for thread roots."""

    def __init__(self, db: Database) -> None:
        super().__init__(db, MODULES)

    async def say(self, sender: str, body: str, room: str = ENT_A, **content: Any) -> list[str]:
        return await super().say(sender, body, room, **content)

    async def in_thread(self, sender: str, body: str, room: str, root: str) -> list[str]:
        rel = {"rel_type": "m.thread", "event_id": root, "is_falling_back": True}
        return await self.say(sender, body, room, **{"m.relates_to": rel})

    async def photo(self, sender: str, room: str = ENT_A, name: str = "p.png") -> list[str]:
        return await self.say(
            sender,
            name,
            room,
            msgtype="m.image",
            url=f"mxc://localhost/{name}",
            info={"mimetype": "image/png", "size": 68},
        )

    async def tick(self) -> list[str]:
        """Run due jobs; returns the bodies they queued."""
        await self.scheduler.tick()
        return await self.new_messages()

    async def send_all(self) -> None:
        """What the sender would do: resolve threads and replies, give each an event id."""
        await deliver_pending(self.db)

    async def rows(self, room: str | None = None) -> list[OutboxMessage]:
        """The bot's posts about cases (not its answers in conversations), oldest first, as
        the sender sent them (threads and replies resolved)."""
        await self.send_all()
        async with self.db.transaction() as s:
            q = (
                select(OutboxMessage)
                .join(cases.CasePost, cases.CasePost.outbox_id == OutboxMessage.id)
                .order_by(OutboxMessage.id)
            )
            if room:
                q = q.where(OutboxMessage.room_id == room)
            return list(await s.scalars(q))

    async def root_event(self, code: str, room: str) -> str:
        await self.send_all()
        async with self.db.transaction() as s:
            root = await cases.root_message(s, code, room)
            assert root is not None, f"{code} has no post in {room}"
            event_id = root.event_id
        assert event_id
        return event_id

    async def case(self, code: str) -> Any:
        async with self.db.transaction() as s:
            return await cases.get_case(s, code)

    async def trail(self, code: str) -> list[tuple[str, str | None, str]]:
        async with self.db.transaction() as s:
            return [(e.action, e.from_state, e.to_state) for e in await cases.history(s, code)]


def mentions(msg: OutboxMessage) -> set[str]:
    return set(msg.content["m.mentions"]["user_ids"])


def thread_of(msg: OutboxMessage) -> str | None:
    rel = msg.content.get("m.relates_to") or {}
    return rel.get("event_id") if rel.get("rel_type") == "m.thread" else None


async def world(db: Database, rooms: tuple[str, ...] = ("a", "b", "l2", "l1")) -> CaseHarness:
    grid = await seed_case_grid(db, P)
    await add_rooms(db, grid, rooms)
    return CaseHarness(db)


async def add_rooms(db: Database, grid: CaseGrid, which: tuple[str, ...]) -> None:
    spec = {
        "a": (ENT_A, "enterprise_room", {"enterprise_id": grid.ganxi}),
        "b": (ENT_B, "enterprise_room", {"enterprise_id": grid.tongda}),
        "l2": (L2, "l2_room", {"grid_id": grid.grids["l2"]}),
        "l1": (L1, "l1_room", {"grid_id": grid.grids["l1"]}),
    }
    for key in which:
        room, kind, ids = spec[key]
        await set_room(db, room, kind, **ids)


async def report_hazard(
    h: CaseHarness,
    who: str = P["entchief"],
    room: str = ENT_A,
    grade: str = "一般",
    deadline: str = "3月10日",
    photos: int = 1,
) -> list[str]:
    """Walk the /隐患 conversation; returns the bot's answer to the last step."""
    assert "1/9" in (await h.say(who, "/隐患", room))[0]
    assert "2/9" in (await h.say(who, "3号仓库消防通道堆放货物", room))[0]
    assert "3/9" in (await h.say(who, "3号仓库东侧", room))[0]
    assert "4/9" in (await h.say(who, "3", room))[0]
    assert "5/9" in (await h.say(who, grade, room))[0]
    for i in range(photos):
        assert f"已收到 {i + 1} 张照片" in (await h.photo(who, room, f"before{i}.png"))[0]
    assert "6/9" in (await h.say(who, "完成", room))[0]
    assert "7/9" in (await h.say(who, "设置警戒线，专人看守", room))[0]
    assert "8/9" in (await h.say(who, "清理通道内货物，划定禁停线", room))[0]
    assert "9/9" in (await h.say(who, "刘强 13800000004", room))[0]
    return await h.say(who, deadline, room)


# --- a hazard's whole life ----------------------------------------------------------------------


async def test_general_hazard_lifecycle_with_rework(db: Database) -> None:
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(db)
        await report_hazard(h)
        code = "H-2026-0001"
        root_msg = (await h.rows(ENT_A))[0]
        assert root_msg.content["body"].startswith("【一般隐患】H-2026-0001 赣西物流有限公司")
        assert "驾驶员长期“三超一疲劳”未纠正处理" in root_msg.content["body"]
        assert mentions(root_msg) == {P["member"]}
        assert not await h.rows(L2) and not await h.rows(L1), "a general hazard stays below"
        hz = await h.case(code)
        assert hz.status == "reported" and hz.deadline == date(2026, 3, 10)
        assert [p["url"] for p in hz.photos] == ["mxc://localhost/before0.png"]

        # The photo is queued with the report; the sender threads it under the root, no job.
        root = await h.root_event(code, ENT_A)
        photo = (await h.rows(ENT_A))[-1]
        assert photo.content["msgtype"] == "m.image"
        assert photo.content["url"] == "mxc://localhost/before0.png"
        assert thread_of(photo) == root and "现场照片 1/1" in photo.content["body"]
        await h.new_messages()

        # Only the member may confirm; the enterprise may not.
        out = await h.in_thread(P["entchief"], "确认", ENT_A, root)
        assert out == [
            "你不能对 H-2026-0001 执行“确认”：仅限服务该企业的二级网格员、二级网格办公室或网格长。"
        ]
        out = await h.in_thread(P["member"], "确认", ENT_A, root)
        assert len(out) == 1 and "H-2026-0001 确认：已上报待确认 → 整改中（张敏）" in out[0]
        confirm = (await h.rows(ENT_A))[-1]
        assert thread_of(confirm) == root
        assert confirm.content["m.relates_to"]["m.in_reply_to"]["event_id"] != root
        assert mentions(confirm) == {P["entchief"], P["entmember"]}
        # Ordinary chat in the thread is left alone.
        assert await h.in_thread(P["member"], "确认一下明天去现场", ENT_A, root) == []

        # The member cannot submit; the enterprise submits with photos.
        out = await h.in_thread(P["member"], "整改完成", ENT_A, root)
        assert "仅限该企业的负责人或网格员" in out[0]
        out = await h.in_thread(P["entchief"], "整改完成 已清理通道", ENT_A, root)
        assert "请发送 H-2026-0001 整改后的照片" in out[0]
        out = await h.say(P["entchief"], "完成")
        assert "至少一张整改后照片" in out[0]
        await h.photo(P["entchief"], name="after1.png")
        out = await h.say(P["entchief"], "完成")
        assert any("H-2026-0001 提交整改：整改中 → 已提交待复查（刘强）" in o for o in out)
        assert any("已提交整改：H-2026-0001" in o for o in out), "typed outside the thread"

        # Re-check fails: back to rectification with a new deadline, counting a rework.
        out = await h.say(P["member"], "/隐患 H-2026-0001 复查不通过 3月12日 仍有少量货物堆放")
        assert any("第 1 次返工，整改期限：2026-03-12" in o for o in out)
        hz = await h.case(code)
        assert (hz.status, hz.rework_count, hz.deadline) == ("rectifying", 1, date(2026, 3, 12))

        await h.say(P["entmember"], "/hazard H-2026-0001 submit")
        await h.photo(P["entmember"], name="after2.png")
        await h.say(P["entmember"], "done")
        out = await h.in_thread(P["member"], "复查通过", ENT_A, root)
        assert "H-2026-0001 复查通过并销号：已提交待复查 → 已销号（张敏）" in out[0]
        assert "隐患已销号（返工 1 次）" in out[0]
        hz = await h.case(code)
        assert hz.status == "closed" and len(hz.fix_photos) == 2 and hz.verified_by == "张敏"

        assert await h.trail(code) == [
            ("report", None, "reported"),
            ("confirm", "reported", "confirmed"),
            ("start", "confirmed", "rectifying"),
            ("submit", "rectifying", "submitted"),
            ("verify_fail", "submitted", "rectifying"),
            ("submit", "rectifying", "submitted"),
            ("verify_pass", "submitted", "verified"),
            ("close", "verified", "closed"),
        ]
        out = await h.say(P["entchief"], "/历史 H-2026-0001")
        assert "返工 1 次" in out[0] and "8. " in out[0] and "复查不通过（返工）" in out[0]
        assert "（企业群）" in out[0]


async def test_steps_refused_out_of_turn_and_out_of_scope(sqlite_db: Database) -> None:
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(sqlite_db)
        await report_hazard(h)
        # Submitting before the member confirmed is refused with the reason.
        out = await h.say(P["entchief"], "/隐患 H-2026-0001 整改完成")
        assert out == ["H-2026-0001 尚未经二级网格员确认，确认后才能提交整改。"]
        # Enterprise B and its member see nothing of A's hazard, and cannot act on it.
        for who in (P["entchief_b"], P["member_b"]):
            out = await h.say(who, "/历史 H-2026-0001", ENT_B)
            assert out == ["H-2026-0001 不在你的范围内，无法查看或办理。"]
            out = await h.say(who, "/隐患 H-2026-0001 确认", ENT_B)
            assert out == ["H-2026-0001 不在你的范围内，无法查看或办理。"]
        # The level-2 office and the level-1 office see it; an unknown id is said so.
        assert "H-2026-0001 隐患" in (await h.say(P["l2office"], "/历史 H-2026-0001", L2))[0]
        assert "H-2026-0001 隐患" in (await h.say(P["l1office"], "/历史 h-2026-1", L1))[0]
        assert (await h.say(P["member"], "/历史 H-2026-0099"))[
            0
        ] == "找不到 H-2026-0099，请核对编号。"
        # Bad inputs re-ask instead of failing.
        out = await h.say(P["member"], "/隐患 H-2026-0001 确认 下下下周")
        assert "没看懂“下下下周”" in out[0]
        out = await h.say(P["member"], "/隐患 H-2026-0001 销号")
        assert "仅限二级或一级网格长" in out[0]
        out = await h.say(P["l2chief"], "/隐患 H-2026-0001 销号", L2)
        assert out == ["H-2026-0001 当前为“已上报待确认”，不能“销号”。"]
        assert await h.trail("H-2026-0001") == [("report", None, "reported")]


async def test_a_refused_step_is_rolled_back_and_answered_once(sqlite_db: Database) -> None:
    """A rule refuses by raising CaseError, a UserError: the dispatcher rolls back all the
    event had done and answers with the refusal alone."""
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        h = await world(sqlite_db)
        await report_hazard(h)
        await h.say(P["member"], "/隐患 H-2026-0001 确认")
        # The member starts another report and leaves it idle.
        assert "1/9" in (await h.say(P["member"], "/隐患"))[0]
        clock.shift(timedelta(hours=1))
        # Back, the member tries to submit the rectification, which only the enterprise may.
        # The event first closed the idle conversation (and queued a word about it): undone.
        out = await h.say(P["member"], "/隐患 H-2026-0001 整改完成")
        assert out == ["你不能对 H-2026-0001 执行“提交整改”：仅限该企业的负责人或网格员。"]
        async with sqlite_db.transaction() as s:
            idle = await conversation.current(s, ENT_A, P["member"])
            assert idle is not None and idle.name == "hazard"
            outcomes = list(await s.scalars(select(InboxEvent.outcome)))
        assert outcomes.count("refused") == 1
        assert (await h.case("H-2026-0001")).status == "rectifying"
        assert [a for a, _, _ in await h.trail("H-2026-0001")] == ["report", "confirm", "start"]


async def test_posts_that_ask_to_act_ring_and_the_rest_are_notices(sqlite_db: Database) -> None:
    """m.text (rings) for whoever must act next, mentioning exactly them; m.notice for answers
    to one's own command and for the record."""
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(sqlite_db)
        await report_hazard(h, grade="重大", photos=0)
        posted = (await h.rows(ENT_A))[0]
        assert posted.content["msgtype"] == "m.text" and mentions(posted) == {P["member"]}
        alerts = [*(await h.rows(L2)), *(await h.rows(L1))]
        assert [m.content["msgtype"] for m in alerts] == ["m.text", "m.text"]
        await h.new_messages()
        await h.say(P["member"], "/隐患 H-2026-0001 确认", L2)
        confirm = [m for m in await h.rows(ENT_A) if "确认" in m.content["body"]][-1]
        assert confirm.content["msgtype"] == "m.text"
        assert mentions(confirm) == {P["entchief"], P["entmember"]}
        # The upper rooms follow a major hazard's steps for the record; the member's own
        # command is answered with a notice.
        for room in (L2, L1):
            assert (await h.rows(room))[-1].content["msgtype"] == "m.notice"
        async with sqlite_db.transaction() as s:
            ack = await s.scalar(select(OutboxMessage).order_by(OutboxMessage.id.desc()))
            assert ack is not None and ack.content["msgtype"] == "m.notice"
            assert ack.content["body"].startswith("已确认：H-2026-0001")
        await h.say(P["l2chief"], "/隐患 H-2026-0001 督办", L2)
        assert (await h.rows(ENT_A))[-1].content["msgtype"] == "m.notice"

        await h.say(P["entchief"], "/上报 门口缺少警示标志")
        (alert,) = [m for m in await h.rows(L2) if m.content["body"].startswith("📨 问题诉求")]
        assert alert.content["msgtype"] == "m.text" and mentions(alert) == {P["member"]}
        posted = (await h.rows(ENT_A))[-1]
        assert posted.content["msgtype"] == "m.notice", "rung once, in the member's room"


async def test_report_conversation_re_asks_and_picks_the_enterprise(sqlite_db: Database) -> None:
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(sqlite_db)
        # The level-2 chief in a direct chat picks one of the grid's enterprises.
        out = await h.say(P["l2chief"], "/hazard", DM)
        assert "1. 芦溪通达货运公司" in out[0] and "2. 赣西物流有限公司" in out[0]
        assert "没有找到这个序号" in (await h.say(P["l2chief"], "9", DM))[0]
        assert "开始登记芦溪通达货运公司的隐患" in (await h.say(P["l2chief"], "1", DM))[0]
        await h.say(P["l2chief"], "车辆动态监控终端被遮挡", DM)
        await h.say(P["l2chief"], "停车场", DM)
        out = await h.say(P["l2chief"], "其他 监控平台", DM)
        assert "4/9" in out[0]
        assert "请回复 1 或 2" in (await h.say(P["l2chief"], "很严重", DM))[0]
        await h.say(P["l2chief"], "2", DM)
        assert "请发送图片" in (await h.say(P["l2chief"], "稍后补", DM))[0]
        await h.say(P["l2chief"], "完成", DM)
        for answer in ("无", "恢复终端并追责", "陈亮"):
            await h.say(P["l2chief"], answer, DM)
        assert "整改期限不能早于今天" in (await h.say(P["l2chief"], "2026-03-01", DM))[0]
        # Yesterday's month-day is a slip, not next year's deadline.
        assert "整改期限不能早于今天" in (await h.say(P["l2chief"], "3月1日", DM))[0]
        out = await h.say(P["l2chief"], "明天", DM)
        assert any("已登记重大事故隐患 H-2026-0001（芦溪通达货运公司）" in o for o in out)
        hz = await h.case("H-2026-0001")
        assert hz.category == "其他：监控平台" and hz.grade == "major"
        assert hz.deadline == date(2026, 3, 3) and hz.photos == []


async def test_photo_steps_and_choices_read_answers_as_a_visit_does(sqlite_db: Database) -> None:
    """ "完成。" ends every photo step (report, submission, accident) as it ends a visit's;
    full-width numbers pick; zero-width characters are ignored."""
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(sqlite_db)
        who = P["entchief"]
        await h.say(who, "/隐患")
        await h.say(who, "3号仓库消防通道堆放货物")
        await h.say(who, "3号仓库东侧")
        assert "4/9" in (await h.say(who, "３"))[0]
        assert "5/9" in (await h.say(who, "１\u200b"))[0]
        await h.photo(who, name="before.png")
        assert "6/9" in (await h.say(who, "完成。"))[0]
        for answer in ("设置警戒线", "清理通道", "刘强 13800000004"):
            await h.say(who, answer)
        await h.say(who, "３月１０日。")
        hz = await h.case("H-2026-0001")
        assert (hz.grade, hz.deadline, len(hz.photos)) == ("general", date(2026, 3, 10), 1)

        await h.say(P["member"], "/隐患 H-2026-0001 确认 一般隐患。")
        assert "整改后的照片" in (await h.say(who, "/隐患 H-2026-0001 整改完成"))[0]
        await h.photo(who, name="after.png")
        out = await h.say(who, "完成！")
        assert any("已提交待复查" in o for o in out), out
        assert (await h.case("H-2026-0001")).status == "submitted"

        await h.say(P["entmember"], "/事故")
        for answer in ("４０分钟前", "G60 K1020", "１", "０ ２ ０", "无", "追尾"):
            await h.say(P["entmember"], answer)
        await h.photo(P["entmember"])
        await h.say(P["entmember"], "完成\u200b。")
        acc = await h.case("A-2026-0001")
        assert (acc.dead, acc.injured, acc.missing, len(acc.photos)) == (0, 2, 0, 1)


def test_a_deadline_typed_just_after_it_passed_is_refused_not_moved_to_next_year() -> None:
    today = date(2026, 3, 5)
    assert future_day("3月1日", today) == (date(2026, 3, 1), "past")
    assert future_day("1月10日", today) == (date(2026, 1, 10), "past")
    assert future_day("昨天", today) == (date(2026, 3, 4), "past")
    assert future_day("3月8日", today) == (date(2026, 3, 8), None)
    assert future_day("明天", today) == (date(2026, 3, 6), None)
    assert future_day("今天", today) == (today, None)
    # Months away, it is next year's: a deadline typed in late November for February.
    assert future_day("2月1日", date(2026, 11, 28)) == (date(2027, 2, 1), None)
    assert future_day("尽快", today) == (None, "unreadable")


def test_categories_follow_the_domain_standards() -> None:
    assert standard_for("道路货运企业") == "道路运输企业"
    assert standard_for("港口码头") == "港口危险货物作业"
    assert standard_for("渡口") == standard_for("航运企业") == "内河船舶"
    assert standard_for("在建交通工程") == "公路水运工程施工"
    assert standard_for("养护单位", "公路养护") == "公路运营"
    assert categories_for("未知", "") == (OTHER,)
    for options in CATEGORIES.values():
        assert options[-1] == OTHER and len(set(options)) == len(options)


def test_action_words_need_a_break_after_them() -> None:
    assert parse_action("确认") == ("confirm", "")
    assert parse_action("确认 重大 12月1日") == ("confirm", "重大 12月1日")
    assert parse_action("确认一下") is None
    assert parse_action("复查不通过，消防通道仍堵塞") == ("verify_fail", "消防通道仍堵塞")
    assert parse_action("复查 不通过 原因") == ("verify_fail", "原因")
    assert parse_action("verify  pass") == ("verify_pass", "")
    assert parse_action("挂牌督办") == ("supervise", "")
    assert parse_action("整改完成：已清理") == ("submit", "已清理")
    # Answers typed as anywhere else: trailing ！, a pasted zero-width space.
    assert parse_action("确认！") == ("confirm", "")
    assert parse_action("复查通过\u200b。") == ("verify_pass", "")


def test_accident_time_and_casualties_as_typed() -> None:
    now = datetime(2026, 3, 2, 0, 20, tzinfo=TZ)
    assert parse_when("14:30", now) == datetime(2026, 3, 1, 14, 30, tzinfo=TZ)
    assert parse_when("昨天 23:10", now) == datetime(2026, 3, 1, 23, 10, tzinfo=TZ)
    assert parse_when("3月1日 8点", now) == datetime(2026, 3, 1, 8, 0, tzinfo=TZ)
    assert parse_when("30分钟前", now) == now - timedelta(minutes=30)
    assert parse_when("刚才", now) == now
    assert parse_when("明天 9:00", now) is None and parse_when("25:00", now) is None
    assert parse_casualties("0 2 0") == (0, 2, 0)
    assert parse_casualties("死亡0 受伤2 失踪1") == (0, 2, 1)
    assert parse_casualties("1人死亡，3人受伤") == (1, 3, 0)
    assert parse_casualties("无") == (0, 0, 0)
    assert parse_casualties("有人受伤") is None and parse_casualties("1 2") is None


# --- major hazards ------------------------------------------------------------------------------


async def test_major_hazard_goes_up_at_once_and_chiefs_supervise_and_close(
    sqlite_db: Database,
) -> None:
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(sqlite_db)
        out = await report_hazard(h, who=P["member"], room=DM, grade="重大", photos=2)
        assert any("已登记重大事故隐患 H-2026-0001（赣西物流有限公司）" in o for o in out)
        assert any("后续进展在赣西物流有限公司企业群" in o for o in out)
        # The alert, then its photos in its thread (threaded by the sender at send time).
        l2_alert, *l2_photos = await h.rows(L2)
        l1_alert, *l1_photos = await h.rows(L1)
        assert len(l2_photos) == len(l1_photos) == 2
        assert "⚠ 重大事故隐患 H-2026-0001" in l2_alert.content["body"]
        # The member reported it: named, not rung by their own report.
        assert mentions(l2_alert) == {P["l2chief"]} and "@张敏" in l2_alert.content["body"]
        assert mentions(l1_alert) == {P["l1chief"], P["l1office"]}
        assert "https://matrix.to/#/@l1chief:localhost" in l1_alert.content["formatted_body"]
        for room in (ENT_A, L2, L1):
            images = [m for m in await h.rows(room) if m.content["msgtype"] == "m.image"]
            assert len(images) == 2 and all(thread_of(m) for m in images), room
        await h.new_messages()

        # A member cannot put it under supervision; the level-1 chief can, once.
        assert "仅限二级或一级网格长" in (await h.say(P["member"], "/隐患 H-2026-0001 督办"))[0]
        root_l1 = await h.root_event("H-2026-0001", L1)
        out = await h.in_thread(P["l1chief"], "督办", L1, root_l1)
        assert any("H-2026-0001 挂牌督办" in o for o in out)
        out = await h.say(P["l2chief"], "/隐患 H-2026-0001 挂牌督办", L2)
        assert out == ["H-2026-0001 已由王建国挂牌督办。"]

        await h.say(P["member"], "/隐患 H-2026-0001 确认", DM)
        await h.say(P["entchief"], "/隐患 H-2026-0001 整改完成")
        await h.photo(P["entchief"])
        await h.say(P["entchief"], "完成")
        out = await h.say(P["member"], "/隐患 H-2026-0001 复查通过", DM)
        assert (await h.case("H-2026-0001")).status == "verified"
        # Every step of a major hazard shows in the upper rooms too.
        l2_bodies = [m.content["body"] for m in await h.rows(L2)]
        assert any("H-2026-0001 确认" in b for b in l2_bodies)
        assert any("H-2026-0001 复查通过" in b and "@李卫东" in b for b in l2_bodies)
        assert "仅限二级或一级网格长" in (await h.say(P["member"], "/隐患 H-2026-0001 销号"))[0]
        await h.say(P["l2chief"], "/隐患 H-2026-0001 销号", L2)
        assert (await h.case("H-2026-0001")).status == "closed"
        assert [a for a, _, _ in await h.trail("H-2026-0001")] == [
            "report",
            "supervise",
            "confirm",
            "start",
            "submit",
            "verify_pass",
            "close",
        ]


async def test_upgrade_on_confirmation_alerts_and_missing_rooms_are_reported(
    sqlite_db: Database,
) -> None:
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(sqlite_db, rooms=("a", "l2"))
        await report_hazard(h, grade="一般", photos=0)
        assert not await h.rows(L2)
        out = await h.say(P["member"], "/隐患 H-2026-0001 确认 重大 3月5日", L2)
        hz = await h.case("H-2026-0001")
        assert hz.grade == "major" and hz.deadline == date(2026, 3, 5)
        alert = (await h.rows(L2))[0]
        assert "（经确认升级）" in alert.content["body"]
        # No level-1 room: a major report tells the reporter to phone it in.
        out = await report_hazard(h, grade="重大", photos=0)
        assert out[-1] == (
            "已登记重大事故隐患 H-2026-0002（赣西物流有限公司），整改期限 2026-03-10。\n"
            "注意：尚未建立一级网格群，未能在群内通知，请电话报告。"
        )


# --- overdue ------------------------------------------------------------------------------------


async def test_overdue_hazard_reminded_then_escalated_and_listed_in_scope(
    sqlite_db: Database,
) -> None:
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        h = await world(sqlite_db)
        await report_hazard(h, deadline="3月3日", photos=0)
        await h.say(P["member"], "/隐患 H-2026-0001 确认")
        await h.send_all()
        await h.new_messages()
        assert (await h.say(P["member"], "/逾期"))[0] == "你的范围内没有逾期的隐患或问题诉求。"

        clock.move_to(datetime(2026, 3, 4, 0, 1, tzinfo=TZ))  # the deadline day has ended
        await h.tick()
        reminder = (await h.rows(ENT_A))[-1]
        assert "⏰ H-2026-0001 已逾期未完成整改（期限 2026-03-03" in reminder.content["body"]
        assert mentions(reminder) == {P["entchief"], P["entmember"], P["member"]}
        assert thread_of(reminder)
        assert (await h.case("H-2026-0001")).overdue_at is not None
        assert not await h.rows(L2), "the chief hears of it only later"

        await h.new_messages()
        out = await h.say(P["member"], "/逾期")
        assert "逾期隐患（1 条）" in out[0] and "H-2026-0001 赣西物流有限公司" in out[0]
        assert "逾期隐患" not in (await h.say(P["entchief_b"], "/逾期", ENT_B))[0]
        assert "H-2026-0001" in (await h.say(P["l1chief"], "/逾期", L1))[0]

        clock.move_to(datetime(2026, 3, 5, 0, 2, tzinfo=TZ))  # 24 working hours later
        await h.tick()
        (chief,) = await h.rows(L2)
        assert "⏰ 逾期隐患报告：H-2026-0001" in chief.content["body"]
        assert mentions(chief) == {P["l2chief"]}
        assert "第 2 次提醒" in (await h.rows(ENT_A))[-1].content["body"]
        assert not await h.rows(L1), "a general hazard does not go to level 1"

        # Once submitted, no more reminders.
        await h.say(P["entchief"], "/隐患 H-2026-0001 整改完成")
        await h.photo(P["entchief"])
        await h.say(P["entchief"], "完成")
        await h.new_messages()
        clock.move_to(datetime(2026, 3, 7, 0, 2, tzinfo=TZ))
        assert await h.tick() == []
        assert [a for a, _, _ in await h.trail("H-2026-0001")][-3:] == [
            "overdue",
            "overdue_escalate",
            "submit",
        ]
        # A failed re-check past the deadline starts a new round: reminded at once.
        await h.say(P["member"], "/隐患 H-2026-0001 复查不通过 仍有货物堆放")
        out = await h.tick()
        assert len(out) == 1 and "⏰ H-2026-0001 已逾期 3 天未完成整改" in out[0]
        clock.move_to(datetime(2026, 3, 10, 0, 5, tzinfo=TZ))  # 24 working hours on (weekend)
        out = await h.tick()
        assert any("逾期隐患报告：H-2026-0001" in o for o in out)


# --- requests -----------------------------------------------------------------------------------


async def test_request_nobody_takes_goes_up_by_itself(db: Database) -> None:
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        h = await world(db)
        out = await h.say(P["entchief"], "/上报 门口路段缺少限速和警示标志，需协调设置")
        assert out[0].startswith("【问题诉求】E-2026-0001 赣西物流有限公司")
        assert "时限 2026-03-03 09:00" in out[0]
        (alert,) = await h.rows(L2)
        assert mentions(alert) == {P["member"]}
        await h.send_all()

        clock.move_to(datetime(2026, 3, 3, 9, 1, tzinfo=TZ))
        await h.tick()
        req = await h.case("E-2026-0001")
        assert (req.level, req.status, req.escalations) == ("level2", "open", 1)
        told = (await h.rows(ENT_A))[-1]
        assert "超时无人受理，自动上报" in told.content["body"]
        assert "现由二级网格办公室/网格长受理，时限 2026-03-05 09:01" in told.content["body"]
        assert mentions(told) == {P["entchief"]} and thread_of(told)
        l2_alert = (await h.rows(L2))[-1]
        assert mentions(l2_alert) == {P["l2chief"], P["l2office"]}
        assert thread_of(l2_alert), "the level-2 room keeps the request in one thread"

        # At level 2 the member may no longer take it; the office may.
        out = await h.say(P["member"], "/受理 E-2026-0001", L2)
        assert "仅限二级网格办公室或网格长" in out[0]
        await h.say(P["l2office"], "/受理 E-2026-0001", L2)
        clock.move_to(datetime(2026, 3, 9, 9, 0, tzinfo=TZ))
        await h.new_messages()
        assert await h.tick() == [], "a taken request does not go up"
        await h.say(P["l2chief"], "/解决 E-2026-0001 已协调交警设置限速、警示标志", L2)
        req = await h.case("E-2026-0001")
        assert req.status == "resolved" and req.resolved_by == "李卫东"
        assert "处理结果：已协调交警设置限速、警示标志" in (await h.rows(ENT_A))[-1].content["body"]
        assert await h.trail("E-2026-0001") == [
            ("raise", None, "open/member"),
            ("auto_escalate", "open/member", "open/level2"),
            ("take", "open/level2", "taken/level2"),
            ("resolve", "taken/level2", "resolved/level2"),
        ]


async def test_request_passed_up_by_hand_and_level1_reminded_at_the_top(
    sqlite_db: Database,
) -> None:
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        h = await world(sqlite_db)
        assert "请描述要反映的问题" in (await h.say(P["entmember"], "/上报"))[0]
        await h.say(P["entmember"], "园区道路照明不足，夜间装卸有风险")
        await h.send_all()
        root = await h.root_event("E-2026-0001", ENT_A)
        # The member passes it up by replying in its thread; the chief passes it to level 1.
        await h.in_thread(P["member"], "上报 需协调路灯建设", ENT_A, root)
        out = await h.say(P["l2chief"], "/上报 E-2026-0001 涉及市政，请一级网格协调", L2)
        assert out and "已转交上一级" in out[-1]
        (l1_alert,) = await h.rows(L1)
        assert "（下级转交）" in l1_alert.content["body"]
        assert mentions(l1_alert) == {P["l1chief"], P["l1office"]}
        out = await h.say(P["l2chief"], "/上报 E-2026-0001", L2)
        assert "仅限一级网格长或办公室" in out[0]
        # Nobody at level 1 takes it in 72 working hours: level 1 is reminded, once.
        clock.move_to(datetime(2026, 3, 5, 9, 5, tzinfo=TZ))
        await h.tick()
        reminder = (await h.rows(L1))[-1]
        assert "已过一级网格受理时限" in reminder.content["body"]
        assert "一级网格受理时限已过" in (await h.rows(ENT_A))[-1].content["body"]
        await h.new_messages()
        clock.move_to(datetime(2026, 3, 20, 9, 0, tzinfo=TZ))
        assert await h.tick() == []
        out = await h.say(P["l1office"], "/逾期", L1)
        assert "E-2026-0001 赣西物流有限公司：园区道路照明不足" in out[0]
        out = await h.say(P["l1chief"], "/上报 E-2026-0001", L1)
        assert out[0].startswith("你无权使用 /escalate。")
        await h.say(P["l1chief"], "/解决 E-2026-0001 已列入年度路灯计划", L1)
        assert (await h.case("E-2026-0001")).status == "resolved"


# --- accidents ----------------------------------------------------------------------------------


async def test_accident_relayed_to_every_level_with_minutes_and_followed_up(
    sqlite_db: Database,
) -> None:
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(sqlite_db)
        assert "1/7" in (await h.say(P["entmember"], "/事故"))[0]
        assert "不能晚于现在" in (await h.say(P["entmember"], "明天 8:00"))[0]
        await h.say(P["entmember"], "40分钟前")
        await h.say(P["entmember"], "G60 沪昆高速芦溪段 K1020")
        assert "请回复下列序号之一" in (await h.say(P["entmember"], "追尾"))[0]
        await h.say(P["entmember"], "1")
        assert "没看懂" in (await h.say(P["entmember"], "有人受伤"))[0]
        await h.say(P["entmember"], "死亡0 受伤2 失踪0")
        await h.say(P["entmember"], "赣J12345 重型半挂牵引车")
        await h.say(P["entmember"], "雨天追尾前车，驾驶员和押运员受伤送医")
        await h.photo(P["entmember"])
        await h.say(P["entmember"], "完成")
        acc = await h.case("A-2026-0001")
        assert (acc.dead, acc.injured, acc.missing, acc.type) == (0, 2, 0, "道路交通事故")
        assert acc.occurred_at == (MONDAY_9 - timedelta(minutes=40)).astimezone(UTC)
        # The alerts ring (m.text: they ask people to act); the photos follow in their threads.
        (l2_alert,) = [m for m in await h.rows(L2) if m.content["msgtype"] == "m.text"]
        (l1_alert,) = [m for m in await h.rows(L1) if m.content["msgtype"] == "m.text"]
        for alert in (l2_alert, l1_alert):
            assert "🚨 事故快报 A-2026-0001" in alert.content["body"]
            assert "（距今 40 分钟）" in alert.content["body"]
            assert "受伤 2 人" in alert.content["body"]
        # The member was rung in the enterprise room: here named, not rung twice.
        assert mentions(l2_alert) == {P["l2chief"]} and "@张敏" in l2_alert.content["body"]
        assert mentions(l1_alert) == {P["l1chief"], P["l1office"]}

        root_l2 = await h.root_event("A-2026-0001", L2)
        out = await h.in_thread(
            P["l2chief"], "续报 两名伤者无生命危险，道路已恢复通行", L2, root_l2
        )
        assert "A-2026-0001 续报（第 1 次" in out[0]
        for room in (ENT_A, L2, L1):
            last = [m for m in await h.rows(room) if m.content["msgtype"] == "m.notice"][-1]
            assert "道路已恢复通行" in last.content["body"] and thread_of(last), room
        out = await h.say(P["entchief_b"], "/事故 A-2026-0001 续报 测试", ENT_B)
        assert out == ["A-2026-0001 不在你的范围内，无法查看或办理。"]
        assert await h.trail("A-2026-0001") == [
            ("report", None, "reported"),
            ("update", "reported", "reported"),
        ]


# --- storage ------------------------------------------------------------------------------------


async def test_codes_are_a_per_year_sequence_even_under_concurrency(db: Database) -> None:
    async def one(kind: str, year: int) -> str:
        async with db.transaction() as s:
            return await cases.next_code(s, kind, year)

    codes = await asyncio.gather(*(one(cases.HAZARD, 2026) for _ in range(12)))
    assert sorted(codes) == [f"H-2026-{i:04d}" for i in range(1, 13)]
    assert await one(cases.REQUEST, 2026) == "E-2026-0001"
    assert await one(cases.HAZARD, 2027) == "H-2027-0001"
    assert cases.parse_code("h-2026-7") == "H-2026-0007" and cases.parse_code("X-1") is None


async def test_audit_rows_are_append_only(db: Database) -> None:
    async with db.transaction() as s:
        cases.record(
            s,
            "H-2026-0001",
            "report",
            None,
            "reported",
            actor="@a:x",
            actor_name="甲",
            room_id=None,
        )
    with pytest.raises(AppendOnlyError):
        async with db.transaction() as s:
            row = await s.scalar(select(CaseEvent))
            assert row is not None
            row.note = "改写"
    with pytest.raises(AppendOnlyError):
        async with db.transaction() as s:
            await s.delete(await s.scalar(select(CaseEvent)))
    async with db.transaction() as s:
        assert (await s.scalar(select(CaseEvent))).note == ""


async def test_overdue_queries_respect_scope(db: Database) -> None:
    grid = await seed_case_grid(db, P)
    async with db.transaction() as s:
        s.add(
            CaseRequest(
                code="E-2026-0001",
                enterprise_id=grid.ganxi,
                text="测试",
                status="open",
                level="member",
                deadline_at=datetime.now(UTC),
                raised_by="@x:y",
                raiser_name="甲",
                raised_at=datetime.now(UTC),
                escalations=0,
            )
        )
    async with db.transaction() as s:
        overdue = await cases.overdue_requests(s, datetime.now(UTC) + timedelta(seconds=1), None)
        assert [r.code for r in overdue] == ["E-2026-0001"]
        assert await cases.overdue_requests(s, datetime.now(UTC), {grid.tongda}) == []
        assert await cases.overdue_hazards(s, datetime.now(UTC), set()) == []


# --- templates ----------------------------------------------------------------------------------


def _samples() -> dict[str, list[dict[str, Any]]]:
    now = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    ent = SimpleNamespace(name="赣西物流有限公司")
    people = [Contact("张敏", "@member:localhost"), Contact("无账号", None)]
    voice = {"msgtype": "m.audio", "url": "mxc://x/v", "name": "Voice message"}
    voice["info"] = {"mimetype": "audio/ogg", "size": 38912, "duration": 42000}
    doc = {"msgtype": "m.file", "url": "mxc://x/d", "name": "<b>x方案.pdf", "info": {"size": 99}}
    hz = SimpleNamespace(
        code="H-2026-0001",
        grade="major",
        status="rectifying",
        category="其他",
        description="<b>x",
        location="仓库",
        interim_measures="无",
        plan="清理",
        responsible="刘强",
        deadline=date(2026, 3, 10),
        deadline_at=now,
        enterprise_id=1,
        reported_at=now,
        reporter_name="刘强",
        photos=[{}],
        fix_photos=[],
        files=[voice, doc],
        fix_files=[doc],
        rework_count=1,
        supervised=True,
        supervised_by="王建国",
        verified_by="张敏",
        verified_at=now,
    )
    req = SimpleNamespace(
        code="E-2026-0001",
        text="缺少标志",
        enterprise_id=1,
        level="level2",
        status="open",
        state="open/level2",
        deadline_at=now,
        raiser_name="刘强",
        escalations=1,
        resolution="已解决",
        resolved_by="李卫东",
    )
    acc = SimpleNamespace(
        code="A-2026-0001",
        occurred_at=now,
        place="G60",
        type="道路交通事故",
        dead=0,
        injured=2,
        missing=0,
        vehicles="赣J12345",
        account="追尾",
        photos=[],
        files=[voice],
        updates=1,
        status="reported",
    )
    base = {"code": "H-2026-0001", "mentions": people, "tz": TZ}
    events = [
        SimpleNamespace(
            at=now,
            actor="system",
            actor_name="system",
            room_id="!r",
            action=a,
            from_state=f,
            to_state="open/level2",
            note="n",
        )
        for a, f in (("raise", None), ("auto_escalate", "open/member"))
    ]
    # Every declared step, with the progress its conversation gives it.
    hazard_conv, accident_conv = (
        handlers.cases.hazards.report_conv,
        handlers.cases.accidents.report_conv,
    )
    steps = [(a.name, hazard_conv.progress(a.name)) for a in hazard_conv.steps]
    acc_steps = [(a.name, accident_conv.progress(a.name)) for a in accident_conv.steps]
    reasons = (
        "need_code wrong_kind bad_code not_found out_of_scope unknown_action not_allowed "
        "bad_state bad_confirm deadline_past not_confirmed need_photos need_reason "
        "already_supervised need_resolution top_level no_enterprise raise_where "
        "need_update_text other"
    ).split()
    v = {"text": "x", "action": "confirm", "who": "chief", "status": "reported", "token": "y"}
    v |= {"day": date(2026, 1, 1), "by": "王建国"}
    ask = {"options": [[1, "甲"]], "enterprise": "甲", "categories": ["a"], "past": True}
    hazard_actions = ("confirm", "submit", "verify_fail", "verify_pass", "close", "supervise")
    request_actions = ("raise", "take", "resolve", "escalate", "auto_escalate", "overdue")
    return {
        "hazard_ask": [
            {"step": s, "progress": p, "again": g, **ask} for s, p in steps for g in (True, False)
        ],
        "accident_ask": [
            {"step": s, "progress": p, "again": g, "types": ["x"], **ask}
            for s, p in acc_steps
            for g in (True, False)
        ],
        "hazard_posted": [{**base, "h": hz, "ent": ent}],
        "hazard_major_alert": [
            {**base, "h": hz, "ent": ent, "why": w} for w in ("report", "upgrade")
        ],
        "hazard_reported": [
            {"case": hz, "enterprise": "甲", "missing": ["l1_room"], "elsewhere": True}
        ],
        "hazard_update": [
            {
                **base,
                "h": hz,
                "ent": ent,
                "action": a,
                "from_state": "submitted",
                "actor": "张敏",
                "note": "n",
            }
            for a in (*hazard_actions, "close_auto")
        ],
        "hazard_submit_ask": [{"code": "H-2026-0001", "again": g} for g in (True, False)],
        "hazard_overdue": [{**base, "h": hz, "ent": ent, "n": 1, "late": True, "days": 2}],
        "hazard_overdue_chief": [{**base, "h": hz, "ent": ent, "late": True, "days": 2}],
        "case_photo": [{**base, "stage": s, "index": 1, "total": 2} for s in ("report", "fix-0")],
        "case_evidence_received": [
            {"photos": p, "files": f, "refused": r}
            for p, f in ((2, []), (0, [voice, doc]), (1, [doc]))
            for r in (None, "not_mxc", "unsupported")
        ],
        "evidence_caption": [
            {"code": "H-2026-0001", "stage": s, "index": 1, "total": 2, "item": item}
            for s in ("report", "accident", "fix-0", "visit")
            for item in (voice, doc)
        ],
        "case_ack": [
            {"code": "E-2026-0001", "kind": "request", "action": "take", "status": "taken/level2"}
        ],
        "case_error": [
            {"reason": r, "code": "H-2026-0001", "kind": k, "v": v}
            for r in reasons
            for k in ("hazard", "accident")
        ],
        "case_history": [
            {
                "kind": k,
                "case": c,
                "ent": ent,
                "events": events,
                "room_kinds": {"!r": "l2_room"},
                "tz": TZ,
            }
            for k, c in (("hazard", hz), ("request", req), ("accident", acc))
        ],
        "case_overdue": [
            {
                "hazards": [hz],
                "requests": [req],
                "more_hazards": 1,
                "more_requests": 2,
                "names": {1: "x"},
                "now": now,
                "tz": TZ,
            },
            {
                "hazards": [],
                "requests": [],
                "more_hazards": 0,
                "more_requests": 0,
                "names": {},
                "now": now,
                "tz": TZ,
            },
        ],
        "request_ask": [{"enterprise": "甲"}],
        "request_posted": [{**base, "r": req, "ent": ent}],
        "request_alert": [
            {**base, "r": req, "ent": ent, "action": a, "note": "n"} for a in request_actions
        ],
        "request_update": [
            {
                **base,
                "r": req,
                "ent": ent,
                "action": a,
                "from_state": "open/member",
                "actor": "孙丽",
                "note": "n",
            }
            for a in request_actions
        ],
        "request_raised": [{"r": req, "enterprise": "甲", "tz": TZ}],
        "request_overdue": [{**base, "r": req, "ent": ent, "late": True}],
        "accident_posted": [{**base, "a": acc, "ent": ent, "minutes": 5, "reporter": "何军"}],
        "accident_alert": [{**base, "a": acc, "ent": ent, "minutes": 5, "reporter": "何军"}],
        "accident_update": [
            {**base, "a": acc, "ent": ent, "minutes": 5, "text": "t", "actor": "x"}
        ],
        "accident_reported": [
            {"case": acc, "enterprise": "甲", "missing": ["l2_room"], "elsewhere": True}
        ],
    }


@pytest.mark.parametrize("locale", ["zh_CN", "en"])
def test_every_case_template_renders_every_branch(locale: str) -> None:
    messages = Messages()
    for name, variants in _samples().items():
        assert messages.has(locale, name), name
        for values in variants:
            out = messages.render(locale, name, **values)
            assert out.plain and out.html, (name, values)
            assert "<b>x" not in out.html, "user text is escaped in HTML"

"""Visits end to end on the real Synapse: a member logs a visit with a photo from a nio client,
the bot restarts in the middle, the record shows up in the enterprise room, /visits counts it,
and reminders and month-end summaries arrive on a controllable clock, once, late if missed; a
location shared from the client (a real m.location) marks a visit 异地 (away) or 现场 (on site)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from nio import AsyncClient

from bot.commands import DIRECT
from bot.dates import today
from storage.models import Enterprise
from tests.bot_harness import BotFactory, BotUnderTest
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import (
    Message,
    create_room,
    send_photo,
    send_text,
    wait_for_join,
    wait_for_message,
)
from tests.roster_seed import set_room
from tests.visits_seed import GANXI, HAZMAT, PEOPLE, TONGDA, VisitGrid, seed_visit_grid

TZ = ZoneInfo("Asia/Shanghai")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)  # type: ignore[misc]


def reply_to(event: Message) -> str | None:
    content: dict[str, Any] = event.source.get("content", {})
    return (content.get("m.relates_to") or {}).get("m.in_reply_to", {}).get("event_id")


def mentions(event: Message) -> list[str]:
    return (event.source.get("content", {}).get("m.mentions") or {}).get("user_ids", [])


def msgtype(event: Message) -> str:
    return str(event.source.get("content", {}).get("msgtype"))


async def ask(client: AsyncClient, room: str, bot: BotUnderTest, text: str) -> str:
    """Send text; return the body of the bot's reply to exactly that event."""
    event_id = await send_text(client, room, text)
    return await reply_body(client, room, bot, event_id)


async def reply_body(client: AsyncClient, room: str, bot: BotUnderTest, event_id: str) -> str:
    reply = await wait_for_message(
        client,
        room,
        lambda e: e.sender == bot.user_id and reply_to(e) == event_id,
        timeout=30,
    )
    return reply.body


async def county(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> tuple[BotUnderTest, dict[str, AsyncClient], VisitGrid]:
    """The seeded county with a Matrix account and a logged-in client for every person."""
    users = {key: await make_user(key.replace("_", "-")) for key in PEOPLE}
    bot = await gridbot()
    grid = await seed_visit_grid(bot.db, {k: uid for k, (uid, _pw) in users.items()})
    clients = {k: await nio_client(uid, pw) for k, (uid, pw) in users.items()}
    return bot, clients, grid


async def room_for(
    bot: BotUnderTest,
    owner: AsyncClient,
    kind: str,
    *,
    direct: bool = False,
    grid_id: int | None = None,
    enterprise_id: int | None = None,
) -> str:
    """A room made by ``owner`` with the bot in it, registered as provisioning would.

    The RoomInfo row is written before the bot is invited: written after the join, it would
    race the sync loop's own insert of the row.
    """
    if direct:
        room = await create_room(owner, invite=[bot.user_id], is_direct=True)
    else:
        room = await create_room(owner)
        await set_room(bot.db, room, kind, grid_id=grid_id, enterprise_id=enterprise_id)
        await owner.room_invite(room, bot.user_id)
    await wait_for_join(owner, room, bot.user_id)
    await wait_for_message(owner, room, lambda e: e.sender == bot.user_id)  # the welcome
    return room


async def test_visit_with_photo_across_a_restart_then_report(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    bot, c, g = await county(gridbot, make_user, nio_client)
    await bot.start()
    member = c["member"]
    dm = await room_for(bot, member, DIRECT, direct=True)
    ent = await room_for(bot, member, "enterprise_room", enterprise_id=g.enterprises[GANXI])
    l2 = await room_for(bot, c["l2chief"], "l2_room", grid_id=g.grids["freight"])
    day = today(TZ).isoformat()

    help_text = await ask(member, dm, bot, "/帮助")
    assert "/visit" in help_text and "/visits" in help_text and "/meeting" not in help_text

    assert f"1. {TONGDA}\n2. {HAZMAT}\n3. {GANXI}" in await ask(member, dm, bot, "/走访")
    body = await ask(member, dm, bot, "赣西")
    assert "「赣西」对应多家企业" in body and f"3. {GANXI}" in body
    assert f"企业：{GANXI}" in await ask(member, dm, bot, "物流")
    assert "日期不能是将来" in await ask(member, dm, bot, "明天")

    # A restart in the middle: the conversation continues at the same question.
    await bot.stop()
    await bot.start()
    assert await ask(member, dm, bot, "今天") == f"{GANXI}，{day}。这次检查了什么？请简要描述。"
    assert "发现了什么问题" in await ask(member, dm, bot, "检查了车辆动态监控")
    assert "请共享你现在的位置" in await ask(member, dm, bot, "一辆车GPS离线")
    assert "请发送现场照片" in await ask(member, dm, bot, "跳过")
    photo_event, mxc = await send_photo(member, dm)
    assert await reply_body(member, dm, bot, photo_event) == (
        "已收到 1 张照片。继续发送，或回复「完成」。"
    )
    summary = await ask(member, dm, bot, "完成")
    assert "发现问题：一辆车GPS离线" in summary and "照片：1 张" in summary
    saved = await ask(member, dm, bot, "确认")
    code = f"V-{day[:4]}-0001"
    assert f"已保存走访记录 {code}" in saved and f"/hazard {code}" in saved
    assert "已发布到企业群" in saved

    record = await wait_for_message(member, ent, lambda e: e.sender == bot.user_id)
    assert record.body.startswith(f"走访记录 {code}\n网格员：张敏\n企业：{GANXI}")
    assert f'<img src="{mxc}"' in record.source["content"]["formatted_body"]

    # What the visit found becomes an escalation, or the start of a hazard report, in one command.
    raised = await ask(member, dm, bot, f"/escalate {code}")
    assert raised.startswith(f"已提交问题诉求 E-{day[:4]}-0001（{GANXI}）")
    asked = await ask(member, dm, bot, f"/隐患 {code}")
    assert "在哪里" in asked or "位置" in asked
    assert (await ask(member, dm, bot, "/取消")).startswith("已取消")
    assert "不是你服务的企业" in await ask(c["l2chief"], l2, bot, f"/隐患 {code}")

    # /cancel ends a conversation at any step and saves nothing.
    assert "走访的是哪家企业" in await ask(member, dm, bot, "/visit")
    assert await ask(member, dm, bot, "/取消") == "已取消「走访登记」，未保存任何内容。"
    assert await ask(member, dm, bot, "/cancel") == "当前没有进行中的对话。"

    mine = await ask(member, dm, bot, "/走访情况")
    assert "覆盖率 33%（1/3）" in mine and f"✓ {GANXI} ×1（最近 {day}）" in mine
    table = await ask(c["l2chief"], l2, bot, "/visits")
    assert "张敏 ▇▇▇░░░░░░░ 1/3（1 次）" in table and f"✗ {TONGDA}" in table


async def test_reminders_and_summaries_on_a_controlled_clock(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    bot, c, g = await county(gridbot, make_user, nio_client)
    member, chief, office = c["member"], c["l2chief"], c["office"]
    with time_machine.travel(at(2026, 11, 19, 10, 0), tick=False) as clock:
        await bot.start()  # the start tick plans this month's and next month's duties
        dm = await room_for(bot, member, DIRECT, direct=True)
        l2 = await room_for(bot, chief, "l2_room", grid_id=g.grids["freight"])
        l1 = await room_for(bot, office, "l1_room", grid_id=g.grids["l1"])
        assert "请核对走访记录" in await ask(member, dm, bot, "/visit 赣西物流 查了监控，无问题")
        assert "V-2026-0001" in await ask(member, dm, bot, "确认")

        clock.move_to(at(2026, 11, 20, 9, 0, 30))
        assert bot.bot and bot.bot.scheduler
        await bot.bot.scheduler.tick()
        reminder = await wait_for_message(chief, l2, lambda e: e.sender == bot.user_id)
        assert reminder.body.startswith("走访提醒（芦溪县二级网格·道路货运）")
        assert f"张敏：{TONGDA}、{HAZMAT}" in reminder.body and GANXI not in reminder.body
        assert mentions(reminder) == [member.user_id] and "延迟" not in reminder.body
        assert msgtype(reminder) == "m.text"  # it asks the member to act: it rings

        # Down across the 25th 09:00: the reminder comes at start, once, and says it is late.
        await bot.stop()
        clock.move_to(at(2026, 11, 25, 11, 0))
        await bot.start()
        late = await wait_for_message(chief, l2, lambda e: e.sender == bot.user_id)
        assert "走访提醒" in late.body and "还剩 5 天" in late.body
        assert "（本提醒原定 2026-11-25 09:00 发送，因系统停机延迟发送。）" in late.body
        await bot.bot.scheduler.tick()
        await bot.stop()
        await bot.start()
        assert await bot.messages_when_idle(chief, l2) == []

        clock.move_to(at(2026, 12, 1, 9, 1))
        await bot.bot.scheduler.tick()
        gaps = await wait_for_message(chief, l2, lambda e: e.sender == bot.user_id)
        assert gaps.body.startswith(
            "2026-11 走访情况汇总（芦溪县二级网格·道路货运），请 李卫东 关注"
        )
        assert f"未走访：{TONGDA}、{HAZMAT}" in gaps.body and mentions(gaps) == [chief.user_id]
        # The level-1 room also hears of training due and gets the monthly report: skip those.
        up = await wait_for_message(
            office, l1, lambda e: e.sender == bot.user_id and "走访情况汇总" in e.body
        )
        assert "请 周芳 关注" in up.body and "总覆盖率 25%（1/4）" in up.body
        assert mentions(up) == [office.user_id]
        assert msgtype(gaps) == msgtype(up) == "m.text"

        clock.move_to(at(2026, 12, 15, 9, 0, 30))
        await bot.bot.scheduler.tick()
        meeting = await wait_for_message(chief, l2, lambda e: e.sender == bot.user_id)
        assert "李卫东，2026 年第 4 季度还没有登记安全生产工作会议" in meeting.body
        assert mentions(meeting) == [chief.user_id] and msgtype(meeting) == "m.text"

        clock.move_to(at(2027, 1, 1, 9, 1))
        await bot.bot.scheduler.tick()
        quarter = await wait_for_message(
            office, l1, lambda e: e.sender == bot.user_id and "会议情况" in e.body
        )
        assert "2 个二级网格中有 2 个未登记会议" in quarter.body
        assert mentions(quarter) == [c["l1chief"].user_id] and msgtype(quarter) == "m.text"
        await bot.stop()


async def share_location(client: AsyncClient, room: str, geo_uri: str) -> str:
    """What Element sends for "share my current location": an m.location with its geo: URI
    (and the extensible-events fields beside it); returns the event id."""
    content = {
        "msgtype": "m.location",
        "body": f"Location {geo_uri}",
        "geo_uri": geo_uri,
        "org.matrix.msc3488.location": {"uri": geo_uri, "description": None},
        "org.matrix.msc3488.asset": {"type": "m.self"},
        "org.matrix.msc1767.text": f"Location {geo_uri}",
    }
    resp = await client.room_send(room, "m.room.message", content)
    event_id = getattr(resp, "event_id", None)
    assert isinstance(event_id, str), resp
    return event_id


async def test_a_shared_location_marks_the_visit_away_or_on_site(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    uid, password = await make_user("member")  # only the member needs an account here
    bot = await gridbot()
    g = await seed_visit_grid(bot.db, {"member": uid})
    async with bot.db.transaction() as s:  # the roster's 经度/纬度 of 赣西物流
        ganxi = await s.get(Enterprise, g.enterprises[GANXI])
        assert ganxi is not None
        ganxi.latitude, ganxi.longitude = 27.63, 113.85
    member = await nio_client(uid, password)
    await bot.start()
    dm = await room_for(bot, member, DIRECT, direct=True)
    day = today(TZ).isoformat()

    await ask(member, dm, bot, "/走访")
    for answer in ("物流", "今天", "查了车辆动态监控"):
        await ask(member, dm, bot, answer)
    assert "请共享你现在的位置" in await ask(member, dm, bot, "无")
    # About 2 km north of the enterprise (0.018° of latitude): away.
    shared = await share_location(member, dm, "geo:27.648,113.85;u=20")
    assert (await reply_body(member, dm, bot, shared)).startswith(
        "已收到位置：异地（距企业 2.0 km，定位精度 ±20 m）。\n请发送现场照片"
    )
    assert "\n位置：异地（距企业 2.0 km" in await ask(member, dm, bot, "跳过")
    saved = await ask(member, dm, bot, "确认")
    assert f"已保存走访记录 V-{day[:4]}-0001" in saved and "\n位置：异地（距企业 2.0 km" in saved

    # The one-line form, the location shared at the summary, on the spot: on site.
    assert "位置：未定位" in await ask(member, dm, bot, "/visit 赣西物流 查了消防器材，无问题")
    shared = await share_location(member, dm, "geo:27.6302,113.8501")
    assert await reply_body(member, dm, bot, shared) == (
        "已收到位置：现场（距企业 24 m）。回复「确认」保存，「取消」放弃。"
    )
    assert "\n位置：现场（距企业 24 m）" in await ask(member, dm, bot, "确认")

    mine = await ask(member, dm, bot, "/走访情况")
    assert f"✓ {GANXI} ×2（最近 {day}）" in mine
    assert f"V-{day[:4]}-0001 {day} 异地 2.0 km" in mine
    assert f"V-{day[:4]}-0002 {day} 现场" in mine
    assert await bot.messages_when_idle(member, dm) == []  # one answer to each, nothing else
    await bot.stop()

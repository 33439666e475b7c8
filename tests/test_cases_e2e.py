"""Hazards, requests and accidents end to end on the real Synapse, with real nio clients: a
hazard's whole life with photos and a failed re-check, a major hazard reaching every level, a
request going up by itself when its deadline passes, an accident relayed to every level, and
one enterprise unable to see or touch another's cases."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import time_machine
from nio import AsyncClient, RoomMessagesResponse, RoomSendResponse

from storage import cases
from tests.bot_harness import BotFactory, BotUnderTest
from tests.case_seed import PEOPLE, CaseGrid, seed_case_grid
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import (
    Message,
    create_room,
    send_photo,
    send_text,
    send_voice,
    wait_for_join,
    wait_for_message,
)
from tests.roster_seed import set_room

TZ = ZoneInfo("Asia/Shanghai")

# room key → (owner, other members, kind, what it belongs to)
ROOMS = {
    "a": ("entchief", ("entmember", "member"), "enterprise_room", "ganxi"),
    "b": ("entchief_b", ("member_b",), "enterprise_room", "tongda"),
    "l2": ("l2chief", ("l2office", "member", "member_b"), "l2_room", "l2"),
    "l1": ("l1chief", ("l1office", "l2chief"), "l1_room", "l1"),
}


@dataclass
class World:
    bot: BotUnderTest
    c: dict[str, AsyncClient]
    grid: CaseGrid
    rooms: dict[str, str]

    def uid(self, key: str) -> str:
        return self.c[key].user_id


async def build(
    gridbot: BotFactory,
    make_user: MakeUser,
    nio_client: NioClientFactory,
    rooms: tuple[str, ...] = ("a", "b", "l2", "l1"),
) -> World:
    """The seeded county, a client per person, and the grid's rooms with the bot in them.

    Each room is registered (as provisioning would) before the bot is invited, so the bot
    knows what it is for from its first event."""
    users = {key: await make_user(key.replace("_", "-")) for key in PEOPLE}
    bot = await gridbot()
    grid = await seed_case_grid(bot.db, {k: uid for k, (uid, _pw) in users.items()})
    clients = {k: await nio_client(uid, pw) for k, (uid, pw) in users.items()}
    await bot.start()
    made: dict[str, str] = {}
    for key in rooms:
        owner, guests, kind, of = ROOMS[key]
        if kind == "enterprise_room":
            ids = {"enterprise_id": grid.ganxi if of == "ganxi" else grid.tongda}
        else:
            ids = {"grid_id": grid.grids[of]}
        room = await create_room(clients[owner], invite=[clients[g].user_id for g in guests])
        await set_room(bot.db, room, kind, **ids)
        for guest in guests:
            await clients[guest].join(room)
        await clients[owner].room_invite(room, bot.user_id)
        await wait_for_join(clients[owner], room, bot.user_id)
        for guest in guests:
            await wait_for_join(clients[owner], room, clients[guest].user_id)
        made[key] = room
    return World(bot, clients, grid, made)


async def direct_room(w: World, key: str) -> str:
    room = await create_room(w.c[key], invite=[w.bot.user_id], is_direct=True)
    await wait_for_join(w.c[key], room, w.bot.user_id)
    return room


# --- reading and writing like a person ----------------------------------------------------------


def reply_to(event: Message) -> str | None:
    rel = event.source.get("content", {}).get("m.relates_to") or {}
    return (rel.get("m.in_reply_to") or {}).get("event_id")


def thread_of(source: dict[str, Any]) -> str | None:
    rel = source.get("content", {}).get("m.relates_to") or {}
    return rel.get("event_id") if rel.get("rel_type") == "m.thread" else None


def mentions(event: Message) -> set[str]:
    return set((event.source.get("content", {}).get("m.mentions") or {}).get("user_ids", []))


async def ask(client: AsyncClient, room: str, bot: BotUnderTest, text: str) -> str:
    """Send text; return the body of the bot's reply to exactly that event."""
    event_id = await send_text(client, room, text)
    return (await answer_to(client, room, bot, event_id)).body


async def answer_to(client: AsyncClient, room: str, bot: BotUnderTest, event_id: str) -> Message:
    return await wait_for_message(
        client, room, lambda e: e.sender == bot.user_id and reply_to(e) == event_id, timeout=30
    )


async def bot_said(client: AsyncClient, room: str, bot: BotUnderTest, *needles: str) -> Message:
    """The next message of the bot in room that contains every needle."""
    return await wait_for_message(
        client,
        room,
        lambda e: e.sender == bot.user_id and all(n in e.body for n in needles),
        timeout=30,
    )


async def in_thread(client: AsyncClient, room: str, root: str, body: str) -> str:
    content = {
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": {
            "rel_type": "m.thread",
            "event_id": root,
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": root},
        },
    }
    resp = await client.room_send(room, "m.room.message", content)
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def bot_images(
    client: AsyncClient, room: str, bot: BotUnderTest, count: int, msgtype: str = "m.image"
) -> list[dict[str, Any]]:
    """Every image (or other file event of ``msgtype``) the bot has posted in room, read once
    ``count`` are there and the bot is idle (so one too many shows); event sources, oldest
    first."""

    async def images() -> list[dict[str, Any]]:
        resp = await client.room_messages(room, limit=100)
        assert isinstance(resp, RoomMessagesResponse), resp
        return [
            e.source
            for e in reversed(resp.chunk)
            if e.sender == bot.user_id and e.source.get("content", {}).get("msgtype") == msgtype
        ]

    # A photo job may wait for its thread root and retry a little later: no job is due
    # meanwhile, so the bot looks idle before the photos are out.
    deadline = time.monotonic() + 30
    while len(await images()) < count:
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await bot.wait_idle()
    return await images()


async def report_hazard(
    w: World,
    who: str,
    room: str,
    grade: str,
    photos: int,
    what: str = "3号仓库消防通道堆放货物",
    voice: int = 0,
) -> list[str]:
    """Walk the /隐患 conversation from a client, with ``photos`` photos and (``voice`` > 0) a
    voice note of that many seconds; returns the uploaded photos' mxc urls, then the voice
    note's."""
    bot, client = w.bot, w.c[who]
    assert "1/9" in await ask(client, room, bot, "/隐患")
    assert "2/9" in await ask(client, room, bot, what)
    assert "3/9" in await ask(client, room, bot, "3号仓库东侧")
    assert "4/9" in await ask(client, room, bot, "1")
    assert "5/9" in await ask(client, room, bot, grade)
    urls = []
    for i in range(photos):
        event_id, url = await send_photo(client, room, f"before{i}.png")
        assert f"已收到 {i + 1} 张照片" in (await answer_to(client, room, bot, event_id)).body
        urls.append(url)
    if voice:
        event_id, url, _content = await send_voice(client, room, voice)
        assert "1 段语音" in (await answer_to(client, room, bot, event_id)).body
        urls.append(url)
    assert "6/9" in await ask(client, room, bot, "完成")
    assert "7/9" in await ask(client, room, bot, "设置警戒线，专人看守")
    assert "8/9" in await ask(client, room, bot, "清理通道内货物")
    assert "9/9" in await ask(client, room, bot, "刘强 13800000004")
    # Yesterday's month-day is refused as past, not read as next year's.
    yesterday = datetime.now(TZ).date() - timedelta(days=1)
    past = await ask(client, room, bot, f"{yesterday.month}月{yesterday.day}日")
    assert "整改期限不能早于今天" in past
    await send_text(client, room, "明天")
    return urls


def year() -> int:
    return datetime.now(TZ).year


# --- the proofs ---------------------------------------------------------------------------------


async def test_hazard_whole_life_with_photos_and_a_failed_recheck(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    w = await build(gridbot, make_user, nio_client, rooms=("a",))
    bot, ent, boss, member = w.bot, w.rooms["a"], w.c["entchief"], w.c["member"]
    code = f"H-{year()}-0001"

    before = await report_hazard(w, "entchief", ent, "一般", photos=2)
    root = await bot_said(member, ent, bot, f"【一般隐患】{code} 赣西物流有限公司")
    assert mentions(root) == {w.uid("member")}
    assert "照片：2 张" in root.body
    # The photos go into the hazard's thread once its root is out.
    await bot.bot.scheduler.tick()
    images = await bot_images(member, ent, bot, 2)
    assert [i["content"]["url"] for i in images] == before
    assert all(thread_of(i) == root.event_id for i in images)

    # Buttons by reply: the member confirms in the thread, the enterprise reports it fixed.
    event_id = await in_thread(member, ent, root.event_id, "确认")
    confirmed = await answer_to(member, ent, bot, event_id)
    assert f"{code} 确认：已上报待确认 → 整改中（张敏）" in confirmed.body
    assert thread_of(confirmed.source) == root.event_id
    assert mentions(confirmed) == {w.uid("entchief"), w.uid("entmember")}

    event_id = await in_thread(boss, ent, root.event_id, "整改完成 已清理通道")
    assert "整改后的照片" in (await answer_to(boss, ent, bot, event_id)).body
    _photo, after1 = await send_photo(boss, ent, "after1.png")
    await send_text(boss, ent, "完成")
    submitted = await bot_said(member, ent, bot, f"{code} 提交整改：整改中 → 已提交待复查")
    assert w.uid("member") in mentions(submitted) and thread_of(submitted.source) == root.event_id

    # The re-check fails: back to rectification, one rework counted.
    await send_text(member, ent, f"/隐患 {code} 复查不通过 仍有少量货物堆放")
    failed = await bot_said(boss, ent, bot, f"{code} 复查不通过（返工）", "第 1 次返工")
    assert "仍有少量货物堆放" in failed.body and thread_of(failed.source) == root.event_id

    event_id = await in_thread(boss, ent, root.event_id, "整改完成")
    await answer_to(boss, ent, bot, event_id)
    _photo, after2 = await send_photo(boss, ent, "after2.png")
    await send_text(boss, ent, "完成")
    await bot_said(member, ent, bot, f"{code} 提交整改")
    event_id = await in_thread(member, ent, root.event_id, "复查通过")
    closed = await answer_to(member, ent, bot, event_id)
    assert "复查通过并销号" in closed.body and "隐患已销号（返工 1 次）" in closed.body

    async with bot.db.transaction() as s:
        hazard = await cases.get_case(s, code)
        assert hazard is not None
        assert (hazard.status, hazard.rework_count) == ("closed", 1)
        assert [p["url"] for p in hazard.photos] == before
        assert [p["url"] for p in hazard.fix_photos] == [after1, after2]
    trail = await ask(member, ent, bot, f"/历史 {code}")
    for step in ("1. ", "上报", "确认", "提交整改", "复查不通过（返工）", "8. ", "销号"):
        assert step in trail, step
    assert "整改前 2 张，整改后 2 张" in trail


async def test_major_hazard_notifies_every_level_at_once(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    w = await build(gridbot, make_user, nio_client)
    bot, c = w.bot, w.c
    code = f"H-{year()}-0001"
    dm = await direct_room(w, "member")
    await report_hazard(w, "member", dm, "重大", photos=1, what="危化品车辆停放区无防火隔离")
    ack = await bot_said(c["member"], dm, bot, f"已登记重大事故隐患 {code}")
    assert "后续进展在赣西物流有限公司企业群" in ack.body

    # The member reported it: named everywhere, rung nowhere by their own report (the
    # enterprise room's post, with nobody left to ring, is a notice).
    expected = {
        ("entchief", "a"): set(),
        ("l2chief", "l2"): {w.uid("l2chief")},
        ("member", "l2"): {w.uid("l2chief")},
        ("l1chief", "l1"): {w.uid("l1chief"), w.uid("l1office")},
        ("l1office", "l1"): {w.uid("l1chief"), w.uid("l1office")},
    }
    seen: dict[tuple[str, str], Message] = {}
    for (who, room), people in expected.items():
        msg = await bot_said(c[who], w.rooms[room], bot, code, "危化品车辆停放区无防火隔离")
        assert mentions(msg) == people, (who, room)
        seen[(who, room)] = msg
    assert "⚠ 重大事故隐患" in seen[("l1chief", "l1")].body
    assert "【重大事故隐患】" in seen[("entchief", "a")].body

    # The level-1 chief puts it under supervision from the level-1 room's thread.
    l1_root = seen[("l1chief", "l1")].event_id
    event_id = await in_thread(c["l1chief"], w.rooms["l1"], l1_root, "挂牌督办")
    supervised = await answer_to(c["l1chief"], w.rooms["l1"], bot, event_id)
    assert f"{code} 挂牌督办" in supervised.body
    await bot_said(c["entchief"], w.rooms["a"], bot, f"{code} 挂牌督办", "请从严从快整改")
    # A second supervision is refused, saying who did it.
    body = await ask(c["l2chief"], w.rooms["l2"], bot, f"/隐患 {code} 督办")
    assert body == f"{code} 已由王建国挂牌督办。"


async def test_a_voice_note_is_kept_with_a_hazard_and_relayed_to_the_level_2_room(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    """A member's OGG voice note (m.audio, info.duration) sent during a major hazard's report:
    kept on the hazard, relayed to the level-2 room's thread as m.audio with the same mxc URI,
    and listed with its duration by /历史."""
    w = await build(gridbot, make_user, nio_client, rooms=("a", "l2"))
    bot, ent, l2, chief = w.bot, w.rooms["a"], w.rooms["l2"], w.c["l2chief"]
    code = f"H-{year()}-0001"
    what = "危化品车辆停放区无防火隔离"
    (voice_url,) = await report_hazard(w, "entchief", ent, "重大", photos=0, what=what, voice=3)
    alert = await bot_said(chief, l2, bot, f"⚠ 重大事故隐患 {code}", "另有 1 段语音")
    (audio,) = await bot_images(chief, l2, bot, 1, msgtype="m.audio")
    content = audio["content"]
    assert content["url"] == voice_url and thread_of(audio) == alert.event_id
    assert (content["info"]["mimetype"], content["info"]["duration"]) == ("audio/ogg", 3000)
    assert content["body"].startswith(f"{code} 现场证据 1/1：语音 0:03 · ")

    async with bot.db.transaction() as s:
        hazard = await cases.get_case(s, code)
        assert hazard is not None and hazard.photos == []
        assert [(f["msgtype"], f["url"]) for f in hazard.files] == [("m.audio", voice_url)]
        assert hazard.files[0]["info"]["duration"] == 3000
    trail = await ask(chief, l2, bot, f"/历史 {code}")
    assert "语音和文件（上报）：语音 0:03 · " in trail


async def test_request_escalates_by_itself_when_nobody_takes_it(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    w = await build(gridbot, make_user, nio_client, rooms=("a", "l2"))
    bot, c = w.bot, w.c
    ent, l2 = w.rooms["a"], w.rooms["l2"]
    monday = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)
    with time_machine.travel(monday, tick=False) as clock:
        await send_text(c["entchief"], ent, "/上报 门口路段缺少限速和警示标志，需协调设置")
        root = await bot_said(c["entchief"], ent, bot, "【问题诉求】E-2026-0001")
        assert "时限 2026-03-03 09:00" in root.body
        alert = await bot_said(c["member"], l2, bot, "问题诉求 E-2026-0001")
        assert mentions(alert) == {w.uid("member")}

        clock.move_to(datetime(2026, 3, 3, 9, 1, tzinfo=TZ))  # 24 working hours on
        await bot.bot.scheduler.tick()
        told = await bot_said(c["entchief"], ent, bot, "E-2026-0001 超时无人受理，自动上报")
        assert "现由二级网格办公室/网格长受理，时限 2026-03-05 09:01" in told.body
        assert mentions(told) == {w.uid("entchief")} and thread_of(told.source) == root.event_id
        up = await bot_said(c["l2chief"], l2, bot, "E-2026-0001", "下级超时无人受理，自动上报")
        assert mentions(up) == {w.uid("l2chief"), w.uid("l2office")}

        body = await ask(c["member"], l2, bot, "/受理 E-2026-0001")
        assert "仅限二级网格办公室或网格长" in body
        body = await ask(c["l2office"], l2, bot, "/受理 E-2026-0001")
        assert body.startswith("已受理：E-2026-0001")
        taken = await bot_said(c["entchief"], ent, bot, "E-2026-0001 受理")
        assert "孙丽" in taken.body and mentions(taken) == {w.uid("entchief")}

        async with bot.db.transaction() as s:
            trail = [(e.action, e.actor) for e in await cases.history(s, "E-2026-0001")]
        assert trail == [
            ("raise", w.uid("entchief")),
            ("auto_escalate", cases.SYSTEM),
            ("take", w.uid("l2office")),
        ]


async def test_accident_is_relayed_to_every_level(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    w = await build(gridbot, make_user, nio_client, rooms=("a", "l2", "l1"))
    bot, c = w.bot, w.c
    ent = w.rooms["a"]
    reporter = c["entmember"]
    code = f"A-{year()}-0001"
    assert "1/7" in await ask(reporter, ent, bot, "/事故")
    for answer, nxt in (
        ("30分钟前", "2/7"),
        ("G60 沪昆高速芦溪段 K1020", "3/7"),
        ("1", "4/7"),
        ("0 2 0", "5/7"),
        ("赣J12345 重型半挂牵引车", "6/7"),
        ("雨天追尾前车，驾驶员和押运员受伤送医", "7/7"),
    ):
        assert nxt in await ask(reporter, ent, bot, answer)
    await send_photo(reporter, ent, "scene.png")
    await send_text(reporter, ent, "完成")

    # The member is rung in the enterprise room, so only named in the level-2 room.
    expected = {
        ("member", "l2"): {w.uid("l2chief")},
        ("l2chief", "l2"): {w.uid("l2chief")},
        ("l1chief", "l1"): {w.uid("l1chief"), w.uid("l1office")},
        ("l1office", "l1"): {w.uid("l1chief"), w.uid("l1office")},
    }
    for (who, room), people in expected.items():
        msg = await bot_said(c[who], w.rooms[room], bot, f"🚨 事故快报 {code}", "（距今 30 分钟）")
        assert "死亡 0 人，受伤 2 人，失踪 0 人" in msg.body and "赣J12345" in msg.body
        assert mentions(msg) == people, (who, room)
    root = await bot_said(c["member"], ent, bot, f"🚨 事故快报 {code} 赣西物流有限公司")

    # A follow-up in the enterprise thread reaches the upper rooms' threads too.
    event_id = await in_thread(c["member"], ent, root.event_id, "续报 两名伤者无生命危险")
    assert f"{code} 续报（第 1 次" in (await answer_to(c["member"], ent, bot, event_id)).body
    for who, room in (("l1office", "l1"), ("l2chief", "l2")):
        update = await bot_said(c[who], w.rooms[room], bot, f"{code} 续报", "两名伤者无生命危险")
        assert thread_of(update.source), (who, room)


async def test_an_enterprise_cannot_read_or_act_on_another_enterprises_cases(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    w = await build(gridbot, make_user, nio_client, rooms=("a", "b"))
    bot, c = w.bot, w.c
    a, b = w.rooms["a"], w.rooms["b"]
    code = f"H-{year()}-0001"
    await report_hazard(w, "entchief_b", b, "一般", photos=0, what="充电区电线私拉乱接")
    await bot_said(c["member_b"], b, bot, f"【一般隐患】{code} 芦溪通达货运公司")
    await send_text(c["entchief_b"], b, "/上报 停车场积水严重")
    await bot_said(c["entchief_b"], b, bot, f"【问题诉求】E-{year()}-0001")

    refused = f"{code} 不在你的范围内，无法查看或办理。"
    assert await ask(c["entchief"], a, bot, f"/历史 {code}") == refused
    assert await ask(c["entchief"], a, bot, f"/隐患 {code} 整改完成") == refused
    assert await ask(c["entmember"], a, bot, f"/隐患 {code}") == refused
    assert await ask(c["member"], a, bot, f"/隐患 {code} 确认") == refused
    request = f"E-{year()}-0001"
    assert await ask(c["entchief"], a, bot, f"/历史 {request}") == (
        f"{request} 不在你的范围内，无法查看或办理。"
    )
    assert await ask(c["member"], a, bot, f"/受理 {request}") == (
        f"{request} 不在你的范围内，无法查看或办理。"
    )
    # Its own member sees and acts on it.
    assert f"{code} 隐患 · 芦溪通达货运公司" in await ask(c["member_b"], b, bot, f"/历史 {code}")
    body = await ask(c["member_b"], b, bot, f"/隐患 {code} 确认")
    assert body.startswith(f"已确认：{code}")
    async with bot.db.transaction() as s:
        assert [e.action for e in await cases.history(s, code)] == ["report", "confirm", "start"]

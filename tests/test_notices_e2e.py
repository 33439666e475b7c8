"""Notices end to end on the real Synapse, with real nio clients for every person.

Proves: acknowledgement by reaction, reply and command (an outsider's is not counted, a
redaction erases nothing); reminders and escalation driven by a controlled clock; /status
numbers; a bot killed in the middle of a broadcast delivers every notice exactly once after a
restart; an unreachable room is reported to the issuer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine
from nio import AsyncClient, RoomSendResponse
from sqlalchemy import func, select

from storage import notices as N
from storage.models import Enterprise, EnterpriseType, Grid, OutboxMessage, RoomInfo
from tests.bot_harness import BotFactory, BotUnderTest
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import (
    Message,
    create_room,
    read_messages,
    send_photo,
    send_text,
    wait_for_join,
    wait_for_message,
)
from tests.notice_seed import NoticeGrid, seed_notice_grid
from tests.roster_seed import set_room


def from_bot(bot: BotUnderTest, *words: str) -> Callable[[Message], bool]:
    return lambda e: e.sender == bot.user_id and all(w in e.body for w in words)


def mentions(event: Message) -> list[str]:
    return list((event.source.get("content") or {}).get("m.mentions", {}).get("user_ids", []))


PASSWORDS: dict[str, str] = {}


async def people(
    keys: list[str], make_user: MakeUser, nio_client: NioClientFactory
) -> dict[str, AsyncClient]:
    clients = {}
    for key in keys:
        user_id, password = await make_user(key.replace("_", "-"))
        PASSWORDS[user_id] = password
        clients[key] = await nio_client(user_id, password)
    return clients


async def room_of(
    creator: AsyncClient,
    bot: BotUnderTest,
    members: list[AsyncClient],
    name: str,
    *,
    direct: bool = False,
    with_bot: bool = True,
) -> str:
    invite = ([bot.user_id] if with_bot else []) + [m.user_id for m in members]
    room = await create_room(creator, invite=invite, is_direct=direct, name=name)
    for m in members:
        await m.join(room)
    if with_bot:
        await wait_for_join(creator, room, bot.user_id)
    for m in members:
        await wait_for_join(creator, room, m.user_id)
    return room


async def register(
    bot: BotUnderTest,
    room: str,
    kind: str,
    *,
    enterprise_id: int | None = None,
    grid_id: int | None = None,
    joined: bool = True,
) -> None:
    """Fill in what the room is for, as provisioning would. Waits until the bot has stored its
    own join first: it creates the row then, and two writers creating it at once would clash."""

    async def has_joined() -> bool:
        async with bot.db.transaction() as s:
            info = await s.get(RoomInfo, room)
            return info is not None and info.joined_ts is not None

    if joined:
        await poll(has_joined, f"the bot to record its join of {room}")
    await set_room(bot.db, room, kind, enterprise_id=enterprise_id, grid_id=grid_id)


async def react(client: AsyncClient, room: str, event_id: str, key: str) -> str:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
    resp = await client.room_send(room, "m.reaction", content)
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def reply(client: AsyncClient, room: str, event_id: str, body: str) -> str:
    content = {
        "msgtype": "m.text",
        "body": body,
        "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
    }
    resp = await client.room_send(room, "m.room.message", content)
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def ask(client: AsyncClient, room: str, bot: BotUnderTest, text: str, *words: str) -> Message:
    await send_text(client, room, text)
    return await wait_for_message(client, room, from_bot(bot, *words), timeout=30)


async def wait_for_each(
    client: AsyncClient, room: str, wanted: dict[str, Callable[[Message], bool]]
) -> dict[str, Message]:
    """One message for each predicate, in whatever order they arrive."""
    found: dict[str, Message] = {}
    while len(found) < len(wanted):
        left = {k: p for k, p in wanted.items() if k not in found}

        def any_left(e: Message, left: dict[str, Callable[[Message], bool]] = left) -> bool:
            return any(p(e) for p in left.values())

        event = await wait_for_message(client, room, any_left, timeout=60)
        found[next(k for k, p in left.items() if p(event))] = event
    return found


async def poll(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while True:
        got = await check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        await asyncio.sleep(0.05)


async def _freight_rooms(bot: BotUnderTest, c: dict[str, AsyncClient], grid: NoticeGrid) -> dict:
    """Enterprise rooms for A, B, C (the chief, the member, the grid member in each), the
    freight level-2 room, and direct chats for the issuers."""
    rooms = {
        "A": await room_of(c["chief_a"], bot, [c["member_a"], c["member_f"]], "赣西物流 企业群"),
        "B": await room_of(c["chief_b"], bot, [c["member_f"]], "芦溪通达 企业群"),
        "C": await room_of(c["chief_c"], bot, [c["member_f2"]], "萍乡顺达 企业群"),
        "l2": await room_of(
            c["l2_chief_f"], bot, [c["member_f"], c["member_f2"]], "道路货运 二级网格群"
        ),
    }
    for key in "ABC":
        await register(bot, rooms[key], "enterprise_room", enterprise_id=grid.enterprises[key])
    await register(bot, rooms["l2"], "l2_room", grid_id=grid.grids["freight"])
    for key in ("l1_chief", "l2_chief_f"):
        rooms[key] = await room_of(c[key], bot, [], "", direct=True)
    return rooms


FREIGHT_PEOPLE = [
    "l1_chief",
    "l2_chief_f",
    "member_f",
    "member_f2",
    "chief_a",
    "member_a",
    "chief_b",
    "chief_c",
]


async def test_acks_by_reaction_reply_and_command_and_status(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    c = await people(FREIGHT_PEOPLE, make_user, nio_client)
    bot = await gridbot()
    grid = await seed_notice_grid(bot.db, {k: v.user_id for k, v in c.items()})
    await bot.start()
    rooms = await _freight_rooms(bot, c, grid)
    chief, dm = c["l1_chief"], rooms["l1_chief"]

    prompt = await ask(
        chief,
        dm,
        bot,
        "/群发 货运 --within 24h\n关于做好冬季运输安全的通知\n各企业：请落实。",
        "请确认",
    )
    assert "发送对象：3 家企业" in prompt.body
    await send_photo(chief, dm, "现场.png")
    await wait_for_message(chief, dm, from_bot(bot, "已添加附件 1"))
    sent = await ask(chief, dm, bot, "确认", "已发出")
    code = "N-2026-0001"
    assert sent.body.startswith(f"已发出 {code}（部署要求）：3 家企业，其中 3 个企业群正在发送")

    posts = {}
    for key, person in (("A", "chief_a"), ("B", "chief_b"), ("C", "chief_c")):
        posts[key] = await wait_for_message(
            c[person], rooms[key], from_bot(bot, f"【部署要求】{code}")
        )
        assert posts[key].source["content"]["msgtype"] == "m.text"
        assert "各企业：请落实。" in posts[key].body
    copy = await wait_for_message(c["l2_chief_f"], rooms["l2"], from_bot(bot, "【知悉·部署要求】"))
    assert "已发往本网格 3 家企业" in copy.body

    # The grid member's ✅ in A's room does not count; A's chief's 👍 does.
    await react(c["member_f"], rooms["A"], posts["A"].event_id, "✅")
    thumbs = await react(c["chief_a"], rooms["A"], posts["A"].event_id, "👍")
    recorded = await wait_for_message(c["chief_a"], rooms["A"], from_bot(bot, "✅ 已记录"))
    assert recorded.body.startswith("✅ 已记录：赣西物流有限公司") and "（刘强）" in recorded.body
    await c["chief_a"].room_redact(rooms["A"], thumbs, reason="点错了")
    # B's chief replies 收到 to the notice; someone else's 收到 in B's room is refused.
    await reply(c["member_f"], rooms["B"], posts["B"].event_id, "收到")
    refused = await wait_for_message(c["chief_b"], rooms["B"], from_bot(bot, "只有"))
    assert "你的确认未记录" in refused.body
    # B's chief is half-way through reporting a hazard: her reply to the notice still counts,
    # and the hazard report takes her next message.
    await ask(c["chief_b"], rooms["B"], bot, "/隐患", "1/9 隐患是什么")
    await reply(c["chief_b"], rooms["B"], posts["B"].event_id, "收到，马上落实")
    await wait_for_message(c["chief_b"], rooms["B"], from_bot(bot, "✅ 已记录：芦溪通达货运公司"))
    await ask(c["chief_b"], rooms["B"], bot, "仓库消防通道被货物堵塞", "2/9 隐患在哪里")
    await ask(c["chief_b"], rooms["B"], bot, "/取消", "已取消")
    denied = await ask(c["member_f2"], rooms["C"], bot, f"/收到 {code}", "你无权使用")
    assert "/ack" in denied.body

    status = await ask(chief, dm, bot, f"/状态 {code}", "确认情况")
    assert "已确认 2（按时 2，逾期 0），未确认 1" in status.body
    assert "按时确认率：66.7%" in status.body
    assert "1. 萍乡顺达运输公司 — ⏳ 未确认" in status.body
    assert "赣西物流有限公司 — ✅" in status.body and "刘强（表情）" in status.body  # not redacted
    assert "<table>" in status.source["content"]["formatted_body"]

    await ask(c["chief_c"], rooms["C"], bot, f"/收到 {code}", "✅ 已记录：萍乡顺达运输公司")
    await ask(c["chief_a"], rooms["A"], bot, f"/反馈 {code} 已组织学习", "已记录 赣西物流有限公司")
    status = await ask(chief, dm, bot, f"/status {code}", "确认情况")
    assert "已确认 3（按时 3，逾期 0），未确认 0；已反馈 1" in status.body
    assert "按时确认率：100.0%" in status.body
    async with bot.db.transaction() as s:
        a = await N.target_for(s, 1, grid.enterprises["A"])
    assert a is not None and a.acked_by == c["chief_a"].user_id and a.ack_method == N.BY_REACTION


async def test_reminders_and_escalation_follow_the_clock(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    c = await people(FREIGHT_PEOPLE, make_user, nio_client)
    bot = await gridbot()
    grid = await seed_notice_grid(bot.db, {k: v.user_id for k, v in c.items()})
    await bot.start()
    rooms = await _freight_rooms(bot, c, grid)
    issuer, dm = c["l2_chief_f"], rooms["l2_chief_f"]
    assert bot.bot is not None and bot.bot.scheduler is not None
    tick = bot.bot.scheduler.tick

    # A frame in the past: acks are stamped min(server time, bot clock) = the frozen clock.
    f0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=10)
    with time_machine.travel(f0, tick=False) as clock:
        await ask(issuer, dm, bot, "/通知 安全提醒 --within 24h\n雨雪天气请减速慢行", "请确认")
        await ask(issuer, dm, bot, "确认", "已发出 N-2026-0001")
        posts = {
            k: await wait_for_message(c[p], rooms[k], from_bot(bot, "【安全提醒】N-2026-0001"))
            for k, p in (("A", "chief_a"), ("B", "chief_b"), ("C", "chief_c"))
        }
        await react(c["member_a"], rooms["A"], posts["A"].event_id, "✅")
        await wait_for_message(c["chief_a"], rooms["A"], from_bot(bot, "✅ 已记录"))

        clock.shift(timedelta(hours=12, minutes=1))
        await tick()
        notes = {}
        for key, person in (("B", "chief_b"), ("C", "chief_c")):
            notes[key] = await wait_for_message(c[person], rooms[key], from_bot(bot, "提醒："))
            assert mentions(notes[key]) == [c[person].user_id]
            assert notes[key].source["content"]["msgtype"] == "m.text"
        async with bot.db.transaction() as s:
            reminded = set(
                await s.scalars(
                    select(N.NoticeDelivery.room_id).where(N.NoticeDelivery.part == N.PART_REMINDER)
                )
            )
        assert reminded == {rooms["B"], rooms["C"]}  # A acknowledged: no reminder there

        clock.shift(timedelta(hours=12))  # past the deadline
        await tick()
        summary = await wait_for_message(issuer, dm, from_bot(bot, "已到确认时限"))
        assert mentions(summary) == [issuer.user_id]
        assert "按时确认 1 家，按时确认率 33.3%" in summary.body
        member = await wait_for_message(c["member_f"], rooms["l2"], from_bot(bot, "【催办】"))
        assert sorted(mentions(member)) == sorted([c["member_f"].user_id, c["member_f2"].user_id])
        assert "芦溪通达货运公司 — 责任网格员：@" in member.body
        # B answers late, by replying to the reminder it got.
        await reply(c["chief_b"], rooms["B"], notes["B"].event_id, "已收到")
        await wait_for_message(c["chief_b"], rooms["B"], from_bot(bot, "✅ 已记录"))

        clock.shift(timedelta(hours=24))
        await tick()
        up = await wait_for_message(issuer, rooms["l2"], from_bot(bot, "【上报网格长】"))
        assert mentions(up) == [issuer.user_id]
        assert "萍乡顺达运输公司" in up.body and "芦溪通达货运公司" not in up.body

        status = await ask(issuer, dm, bot, "/状态 N-2026-0001", "确认情况")
    assert "已确认 2（按时 1，逾期 1），未确认 1" in status.body
    assert "按时确认率：33.3%" in status.body


async def test_killed_mid_broadcast_delivers_each_notice_exactly_once(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    c = await people(["l1_chief", "chief_a"], make_user, nio_client)
    bot = await gridbot(timing={"notices": {"progress_min_rooms": 5}})
    grid = await seed_notice_grid(bot.db, {k: v.user_id for k, v in c.items()})
    many = [f"货运企业{i:02d}" for i in range(1, 13)]
    async with bot.db.transaction() as s:
        freight = await s.get(Grid, grid.grids["freight"])
        assert freight is not None
        s.add_all(
            Enterprise(
                unit_id=freight.unit_id, grid_id=freight.id, name=n, type=EnterpriseType.FREIGHT
            )
            for n in many
        )
    await bot.start()
    owner = c["chief_a"]  # makes the rooms; watches them
    async with bot.db.transaction() as s:
        ids = dict((await s.execute(select(Enterprise.name, Enterprise.id))).all())
    rooms = {}
    for name in many:
        rooms[name] = await room_of(owner, bot, [], name)
        await register(bot, rooms[name], "enterprise_room", enterprise_id=ids[name])
    # One enterprise's room was made without the bot: it cannot be reached.
    lost = await room_of(owner, bot, [], "赣西物流 企业群", with_bot=False)
    await register(bot, lost, "enterprise_room", enterprise_id=grid.enterprises["A"], joined=False)
    chief = c["l1_chief"]
    dm = await room_of(chief, bot, [], "", direct=True)
    await ask(
        chief,
        dm,
        bot,
        "/群发 企业:" + ",".join([*many, "赣西物流有限公司"]) + "\n春运安全",
        "请确认",
    )

    # Slow the bot's sends, then "crash" it: sends whose request reached the server but whose
    # answer is lost with the process, sends never made, and sends finished and recorded.
    assert bot.bot is not None and bot.bot.client is not None
    real_send = bot.bot.client.room_send
    gate = asyncio.Semaphore(2)
    crashed = asyncio.Event()
    reached: list[str] = []

    async def flaky_send(room_id: str, *args: Any, **kwargs: Any) -> Any:
        async with gate:
            if crashed.is_set():
                raise asyncio.CancelledError
            await asyncio.sleep(0.3)
            resp = await real_send(room_id, *args, **kwargs)
            reached.append(room_id)
        await asyncio.sleep(0.6)  # the answer is on its way back…
        if crashed.is_set():
            raise asyncio.CancelledError  # …and is lost with the process
        return resp

    bot.bot.client.room_send = flaky_send  # type: ignore[method-assign]
    await send_text(chief, dm, "确认")

    async def posts(status: str) -> int:
        async with bot.db.transaction() as s:
            return int(
                await s.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .join(N.NoticeDelivery, N.NoticeDelivery.outbox_id == OutboxMessage.id)
                    .where(OutboxMessage.status == status, N.NoticeDelivery.part == N.PART_POST)
                )
                or 0
            )

    await poll(lambda: _at_least(posts("sent"), 2), "two posts sent")
    crashed.set()
    await bot.kill()
    marked, pending = await posts("sent"), await posts("pending")
    reached_posts = len([r for r in reached if r in rooms.values()])
    assert marked >= 2 and pending > 0, (marked, pending)
    assert reached_posts > marked, "some sends reached the server but were not recorded"

    await bot.start()
    await poll(lambda: _at_least(posts("sent"), len(many)), "every reachable room sent", 60)
    # The failure is reported when it is seen, the 100 % when the last room is done: any order.
    news = await wait_for_each(
        chief, dm, {"done": from_bot(bot, "发送进度 100%"), "lost": from_bot(bot, "有房间无法送达")}
    )
    assert f"已送达 {len(many)}/{len(many) + 1} 个企业群，1 个无法送达" in news["done"].body
    assert "· 企业群：赣西物流有限公司" in news["lost"].body
    assert mentions(news["lost"]) == [chief.user_id]

    # Count what each room really holds once nothing is left to send.
    await bot.wait_idle()
    counts = {}
    for name in many:
        got = await read_messages(owner, rooms[name], bot.user_id)
        counts[name] = sum(1 for e in got if from_bot(bot, "N-2026-0001")(e))
    assert counts == dict.fromkeys(many, 1)
    # The issuer was told "sent" once, too (a fresh device sees the whole chat).
    auditor = await nio_client(chief.user_id, PASSWORDS[chief.user_id])
    said = await read_messages(auditor, dm, bot.user_id)
    assert len([e for e in said if e.body.startswith("已发出 N-2026-0001")]) == 1


async def _at_least(value: Any, n: int) -> bool:
    return (await value) >= n

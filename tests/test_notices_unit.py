"""Notices through the real dispatcher, scheduler and database, without a homeserver.

The sender is simulated: ``deliver`` marks queued outbox rows sent (with an event id) or failed,
as bot/sender.py would.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest
import time_machine
from sqlalchemy import func, select

import handlers.basics.cancel
import handlers.cases.hazards
import handlers.notices.acknowledge
import handlers.notices.issue
import handlers.notices.jobs
import handlers.notices.status
from handlers.notices import options as S
from handlers.notices.jobs import calendar_key
from storage import inbox
from storage import notices as N
from storage.db import Database
from storage.directory import Action, enterprises_in, identify, reach
from storage.inbox import IncomingEvent
from storage.models import BotSession, ConversationState, OutboxMessage, ScheduledJob
from storage.outbox import QUEUED_ROOMS
from tests.dispatch_harness import BOT, DispatchHarness, deliver_pending
from tests.dispatch_harness import test_config as harness_config
from tests.notice_seed import PEOPLE, NoticeGrid, seed_notice_grid
from tests.roster_seed import set_room

MODULES = [
    handlers.notices.issue,
    handlers.notices.acknowledge,
    handlers.notices.status,
    handlers.notices.jobs,
    handlers.basics.cancel,
]
U = {k: f"@{k.replace('_', '-')}:localhost" for k in PEOPLE}
ADMIN = "@admin:localhost"
STRANGER = "@stranger:localhost"
T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
_ids = itertools.count(1)


def dm(key: str) -> str:
    return f"!dm-{key}:localhost"


def ent_room(key: str) -> str:
    return f"!ent-{key}:localhost"


L2_FREIGHT = "!l2-freight:localhost"
ADMIN_ROOM = "!admin:localhost"


class NoticeHarness(DispatchHarness):
    def __init__(self, db: Database, *, extra: tuple[ModuleType, ...] = (), **config: Any) -> None:
        super().__init__(db, [*MODULES, *extra], harness_config(admins=[ADMIN], **config))
        self._last_id = 0

    async def event(
        self,
        sender: str,
        room: str,
        content: dict[str, Any],
        *,
        type_: str = "m.room.message",
        ts: int | None = None,
    ) -> str:
        n = next(_ids)
        event_id = f"$u{n}"
        source = {
            "event_id": event_id,
            "sender": sender,
            "type": type_,
            # The server's clock is the (possibly frozen) test clock.
            "origin_server_ts": ts if ts is not None else int(datetime.now(UTC).timestamp() * 1000),
            "content": content,
        }
        async with self.db.transaction() as s:
            if await s.get(BotSession, BOT) is None:
                s.add(BotSession(user_id=BOT, device_id="D", access_token="t"))
            await inbox.store_batch(
                s,
                BOT,
                [IncomingEvent(event_id, room, sender, type_, source["origin_server_ts"], source)],
                f"token{n}",
            )
        await self.dispatcher.drain()
        return event_id

    async def text(self, sender: str, room: str, body: str, **content: Any) -> list[OutboxMessage]:
        await self.event(sender, room, {"msgtype": "m.text", "body": body, **content})
        return await self.fresh()

    async def react(self, sender: str, room: str, event_id: str, key: str = "✅") -> str:
        content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": event_id, "key": key}}
        return await self.event(sender, room, content, type_="m.reaction")

    async def fresh(self) -> list[OutboxMessage]:
        async with self.db.transaction() as s:
            rows = list(
                await s.scalars(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.id > self._last_id,
                        OutboxMessage.event_type == "m.room.message",
                    )
                    .order_by(OutboxMessage.id)
                )
            )
        if rows:
            self._last_id = rows[-1].id
        self._seen += len(rows)
        return rows


def bodies(rows: list[OutboxMessage]) -> list[str]:
    return [r.content["body"] for r in rows]


async def deliver(db: Database, *, fail: frozenset[str] = frozenset()) -> None:
    """What the sender would do: every pending message sent, or failed in the ``fail`` rooms."""
    await deliver_pending(db, fail=fail)


async def event_of(db: Database, code: str, enterprise: str, part: str = N.PART_POST) -> str:
    """The event id of a notice's message in an enterprise's room (after ``deliver``)."""
    async with db.transaction() as s:
        row = await s.scalar(
            select(OutboxMessage.event_id)
            .join(N.NoticeDelivery, N.NoticeDelivery.outbox_id == OutboxMessage.id)
            .join(N.NoticeTarget, N.NoticeTarget.id == N.NoticeDelivery.target_id)
            .join(N.Notice, N.Notice.id == N.NoticeDelivery.notice_id)
            .where(
                N.Notice.code == code,
                N.NoticeTarget.enterprise_name == enterprise,
                N.NoticeDelivery.part == part,
            )
            .order_by(OutboxMessage.id.desc())
        )
    assert row, f"no sent {part} of {code} for {enterprise}"
    return row


async def targets(db: Database, code: str) -> dict[str, N.NoticeTarget]:
    async with db.transaction() as s:
        notice = await N.by_code(s, code)
        assert notice is not None
        return {t.enterprise_name: t for t in await N.targets_of(s, notice.id)}


async def setup(
    db: Database, *, extra: tuple[ModuleType, ...] = (), **config: Any
) -> tuple[NoticeHarness, NoticeGrid]:
    grid = await seed_notice_grid(db, U)
    for key in (*PEOPLE, "admin"):
        await set_room(db, dm(key), "direct")
    for key in ("A", "B", "D", "E"):  # C has no room yet
        await set_room(db, ent_room(key), "enterprise_room", enterprise_id=grid.enterprises[key])
    await set_room(db, L2_FREIGHT, "l2_room", grid_id=grid.grids["freight"])
    await set_room(db, ADMIN_ROOM, "admin_room")
    return NoticeHarness(db, extra=extra, **config), grid


DEFAULT_BROADCAST = "/群发 货运 --within 24h\n关于做好冬季运输安全的通知\n各企业：请落实。"


async def broadcast(h: NoticeHarness, text: str = DEFAULT_BROADCAST, *, image: bool = False) -> str:
    """Issue and confirm a broadcast as the level-1 chief; returns the notice code."""
    await h.text(U["l1_chief"], dm("l1_chief"), text)
    if image:
        content = {"msgtype": "m.image", "body": "图.png", "url": "mxc://localhost/img", "info": {}}
        await h.event(U["l1_chief"], dm("l1_chief"), content)
    out = await h.text(U["l1_chief"], dm("l1_chief"), "确认")
    sent = [b for b in bodies(out) if b.startswith("已发出")]
    assert sent, bodies(out)
    return sent[0].split()[1].split("（")[0]


# --- ids, options and scope ----------------------------------------------------------------------


async def test_codes_are_sequential_per_year_and_unique_under_concurrency(db: Database) -> None:
    async def one(year: int) -> str:
        async with db.transaction() as s:
            return await N.allocate_code(s, year)

    codes = await asyncio.gather(*(one(2026) for _ in range(12)))
    assert sorted(codes) == [f"N-2026-{i:04d}" for i in range(1, 13)]
    assert await one(2027) == "N-2027-0001"
    assert await one(2026) == "N-2026-0013"
    assert N.parse_code("n-2026-13") == "N-2026-0013"
    assert N.parse_code("N20260013") == "N-2026-0013"
    assert N.parse_code("2026-13") is None


def test_options_read_kind_filters_and_time_limit() -> None:
    o = S.parse_options("检查通报 货运、港口 --within 48小时 县:芦溪县", S.NOTICE_KIND_WORDS)
    assert o.kind == N.INSPECTION_BULLETIN and o.within_hours == 48
    assert o.filter.domains == ["货运", "港口"] and o.filter.counties == ["芦溪县"]
    o = S.parse_options("--within=3d 企业:赣西物流有限公司,芦溪汽车站 道路货运企业", {})
    assert o.within_hours == 72 and o.kind is None
    assert o.filter.names == ["赣西物流有限公司", "芦溪汽车站"]
    assert o.filter.types == ["道路货运企业"]
    o = S.parse_options("天气预警 渡口 湘东区", S.REMIND_KIND_WORDS)
    assert o.kind == N.WEATHER and o.filter.domains == ["渡口"] and o.filter.words == ["湘东区"]
    for bad in ("--within 0h", "--within soon", "--within 999d", "领域:铁路", "--frobnicate"):
        with pytest.raises(S.OptionError):
            S.parse_options(bad, S.NOTICE_KIND_WORDS)
    with pytest.raises(S.OptionError):
        S.parse_options("部署要求 检查通报", S.NOTICE_KIND_WORDS)


async def test_scope_and_filters_pick_the_right_enterprises(db: Database) -> None:
    grid = await seed_notice_grid(db, U)
    names = grid.names

    async def pick(user: str, scope: str, line: str = "") -> list[str]:
        async with db.transaction() as s:
            ident = await identify(s, user, frozenset({ADMIN}))
            action = Action.BROADCAST if scope == "broadcast" else Action.NOTICE
            pool = await enterprises_in(s, reach(ident, action))
            flt = S.parse_options(line, S.NOTICE_KIND_WORDS).filter
            return sorted(e.name for e in S.resolve(pool, flt).enterprises)

    luxi = sorted(names[k] for k in "ABCD")
    assert await pick(U["l1_chief"], "broadcast") == luxi
    assert await pick(U["l1_office"], "broadcast", "货运") == sorted(names[k] for k in "ABC")
    assert await pick(ADMIN, "broadcast") == sorted(names.values())
    assert await pick(ADMIN, "broadcast", "湘东区") == [names["E"]]
    assert await pick(ADMIN, "broadcast", "县:芦溪 客运") == [names["D"]]
    assert await pick(ADMIN, "broadcast", "港口码头") == [names["E"]]
    assert await pick(U["l2_chief_f"], "notice") == sorted(names[k] for k in "ABC")
    assert await pick(U["member_f"], "notice") == sorted(names[k] for k in "AB")
    assert await pick(U["member_f"], "notice", "企业:通达") == [names["B"]]
    assert await pick(U["member_f"], "notice", "客运") == []
    assert await pick(U["member_f"], "broadcast") == []  # a member has no broadcast scope
    with pytest.raises(S.OptionError, match="not found"):
        await pick(U["member_f"], "notice", "萍乡顺达运输公司")  # C is not served by member_f
    with pytest.raises(S.OptionError, match="several"):
        await pick(ADMIN, "broadcast", "企业:公司")


# --- putting a notice together -------------------------------------------------------------------


async def test_broadcast_asks_confirms_and_writes_everything_at_once(db: Database) -> None:
    h, grid = await setup(db)
    chief, room = U["l1_chief"], dm("l1_chief")
    out = bodies(await h.text(chief, room, "/群发 货运 --within 48h"))
    assert out == [
        "将发往 3 家企业。请发送「群发通知」的正文（可多行）；"
        "也可先发送文件或图片作为附件。发送 /取消 放弃。"
    ]
    image = {"msgtype": "m.image", "body": "现场.jpg", "url": "mxc://localhost/abc", "info": {}}
    await h.event(chief, room, image)
    assert bodies(await h.fresh()) == ["已添加附件 1：现场.jpg。请发送正文。"]
    # A "file" whose url is no mxc:// upload would be posted verbatim into every room: refused.
    bad = {**image, "url": "javascript:alert(1)"}
    await h.event(chief, room, bad)
    refused = bodies(await h.fresh())
    assert refused == ["这个附件的地址无效（只收 mxc:// 上传的文件），没有收下，请重新发送。"]
    out = bodies(await h.text(chief, room, "关于做好冬季运输安全的通知\n各企业：<b>务必</b>落实。"))
    prompt = out[0]
    assert "发送对象：3 家企业" in prompt and "1 家尚无企业群、无法送达：萍乡顺达运输公司" in prompt
    assert (
        "另抄送二级网格群 1 个" in prompt and "确认时限：2 天" in prompt and "附件：1 个" in prompt
    )
    assert bodies(await h.text(chief, room, "好像不对")) == [
        "没有看懂。请回复「确认」发出，或回复「取消」放弃；也可以发送文件或图片作为附件。"
    ]
    async with db.transaction() as s:
        assert (await s.scalar(select(N.Notice))) is None  # nothing is written before 确认

    out = await h.text(chief, room, "确认")
    sent = [r for r in out if r.room_id == room]
    assert len(sent) == 1 and sent[0].content["body"].startswith("已发出 N-2026-0001（部署要求）")
    assert "1 家尚无企业群、无法送达：萍乡顺达运输公司，请线下通知" in sent[0].content["body"]
    by_room: dict[str, list[OutboxMessage]] = {}
    for r in out:
        by_room.setdefault(r.room_id, []).append(r)
    post, attachment = by_room[ent_room("A")]
    assert post.content["msgtype"] == "m.text"  # m.notice would be muted by push rules
    assert "【部署要求】N-2026-0001" in post.content["body"]
    assert "各企业：<b>务必</b>落实。" in post.content["body"]
    assert "&lt;b&gt;务必&lt;/b&gt;" in post.content["formatted_body"]
    assert (
        "/收到 N-2026-0001" in post.content["body"]
        and "致：赣西物流有限公司" in post.content["body"]
    )
    assert attachment.content["url"] == "mxc://localhost/abc"
    assert len(by_room[ent_room("B")]) == 2 and len(by_room[L2_FREIGHT]) == 2
    assert "已发往本网格 3 家企业" in by_room[L2_FREIGHT][0].content["body"]
    assert ent_room("D") not in by_room

    async with db.transaction() as s:
        notice = await N.by_code(s, "N-2026-0001")
        assert notice is not None and notice.target_count == 3
        assert notice.deadline - notice.created_at == timedelta(hours=48)
        ts = {t.enterprise_name: t for t in await N.targets_of(s, notice.id)}
        states = await N.post_deliveries(s, notice.id)
        assert states[ts[grid.names["C"]].id].state == N.NO_ROOM
        assert states[ts[grid.names["A"]].id].state == N.PENDING
        deliveries = list(await s.scalars(select(N.NoticeDelivery)))
        assert sorted(d.part for d in deliveries) == sorted(
            [N.PART_POST, N.PART_ATTACHMENT] * 2 + [N.PART_L2_COPY] * 2
        )
        jobs = sorted(j.key for j in await s.scalars(select(ScheduledJob)))
    assert jobs == sorted(
        [
            "notice:N-2026-0001:remind:0",
            "notice:N-2026-0001:remind:1",
            "notice:N-2026-0001:summary",
            "notice:N-2026-0001:escalate-member",
            "notice:N-2026-0001:escalate-chief",
            "notice:N-2026-0001:progress:0",
        ]
    )
    # The conversation is over: 确认 again does nothing.
    assert await h.text(chief, room, "确认") == []


async def test_a_broadcast_goes_out_on_its_commit_with_no_job_due(db: Database) -> None:
    """Nothing waits for a job: the commit of 确认 tells the sender (Database.after_commit, as
    the app wires it) every room it queued the notice for, and no job is due at that moment."""
    h, _grid = await setup(db)
    heard: list[set[str]] = []
    with time_machine.travel(T0, tick=False):
        await h.text(U["l1_chief"], dm("l1_chief"), DEFAULT_BROADCAST)
        db.after_commit.append(lambda info: heard.append(set(info.get(QUEUED_ROOMS) or ())))
        out = await h.text(U["l1_chief"], dm("l1_chief"), "确认")
        async with db.transaction() as s:
            due = list(
                await s.scalars(
                    select(ScheduledJob.key).where(
                        ScheduledJob.done_at.is_(None), ScheduledJob.due_at <= datetime.now(UTC)
                    )
                )
            )
    posts = {r.room_id for r in out if r.content["body"].startswith("【部署要求】")}
    assert posts == {ent_room("A"), ent_room("B")}
    assert heard == [posts | {L2_FREIGHT, dm("l1_chief")}]  # one commit: the 确认 event's
    assert due == []


async def test_wrong_input_is_explained_and_can_be_retried(sqlite_db: Database) -> None:
    h, _ = await setup(sqlite_db)
    out = bodies(await h.text(U["l1_chief"], dm("l1_chief"), "/群发 铁路\n正文"))
    assert out[0].startswith("在你的范围内找不到：铁路。\n格式：第一行 /群发 类型 范围")
    out = bodies(await h.text(U["member_f"], dm("member_f"), "/提醒 货运\n正文"))
    assert out[0].startswith("请写明提醒类型：节假日、天气预警 或 特殊时段")
    out = bodies(await h.text(U["member_f"], dm("member_f"), "/群发\n正文"))
    assert out[0].startswith("你无权使用 /broadcast")
    out = bodies(await h.text(U["chief_a"], ent_room("A"), "/通知\n正文"))
    assert out[0].startswith("你无权使用 /notice")
    out = bodies(await h.text(U["l1_chief"], ent_room("A"), "/群发\n正文"))
    assert out[0].startswith("/broadcast 不能在此房间使用")
    # 取消 (plain word) ends the conversation without writing anything.
    await h.text(U["member_f"], dm("member_f"), "/通知 安全提醒\n注意防滑")
    assert bodies(await h.text(U["member_f"], dm("member_f"), "取消")) == [
        "已取消「发布通知」，未保存任何内容。"
    ]
    async with sqlite_db.transaction() as s:
        assert (await s.scalar(select(N.Notice))) is None
    # "确认！" with a zero-width space is read as 确认, as in every conversation (bot.words).
    await h.text(U["member_f"], dm("member_f"), "/通知 安全提醒\n注意防滑")
    out = bodies(await h.text(U["member_f"], dm("member_f"), "确认！\u200b"))
    assert any(b.startswith("已发出 N-2026-0001") for b in out), out


# --- acknowledgements ----------------------------------------------------------------------------


async def test_acks_by_reaction_reply_and_command_count_only_the_enterprise(
    db: Database,
) -> None:
    h, grid = await setup(db)
    code = await broadcast(h, image=True)
    await deliver(db)
    a_post = await event_of(db, code, grid.names["A"])
    b_post = await event_of(db, code, grid.names["B"])

    # The grid member's ✅ in A's room is not A's acknowledgement, and nothing is said.
    await h.react(U["member_f"], ent_room("A"), a_post)
    assert await h.fresh() == []
    assert (await targets(db, code))[grid.names["A"]].acked_at is None
    # A's member reacts 👍🏽 to the attachment (the event id is found via the outbox).
    a_file = await event_of(db, code, grid.names["A"], N.PART_ATTACHMENT)
    await h.react(U["member_a"], ent_room("A"), a_file, "👍🏽")
    out = await h.fresh()
    assert len(out) == 1 and out[0].content["body"].startswith("✅ 已记录：赣西物流有限公司")
    assert out[0].reply_to_event == a_file  # the sender makes it a reply when it sends it
    # A second ✅ (by the chief) changes nothing; redacting the first erases nothing.
    await h.react(U["chief_a"], ent_room("A"), a_post)
    await h.event(U["member_a"], ent_room("A"), {"redacts": "$x"}, type_="m.room.redaction")
    assert await h.fresh() == []
    a = (await targets(db, code))[grid.names["A"]]
    assert (a.acked_by, a.acked_by_name, a.ack_method) == (U["member_a"], "何静", N.BY_REACTION)

    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": b_post}}}
    # "没收到附件" is no acknowledgement; A's chief cannot acknowledge for B.
    assert await h.text(U["chief_b"], ent_room("B"), "没收到附件", **reply) == []
    out = bodies(await h.text(U["chief_a"], ent_room("B"), "收到", **reply))
    assert out == [
        "只有芦溪通达货运公司的负责人或网格员确认才计入（N-2026-0001），你的确认未记录。"
    ]
    out = bodies(
        await h.text(U["chief_b"], ent_room("B"), "> <@bot> 【部署要求】\n\n收到！", **reply)
    )
    assert out[0].startswith("✅ 已记录：芦溪通达货运公司")
    assert (await targets(db, code))[grid.names["B"]].ack_method == N.BY_REPLY

    # Commands: /收到 again says who already did; outsiders and other enterprises are refused.
    out = bodies(await h.text(U["chief_a"], ent_room("A"), f"/收到 {code}"))
    assert out[0].startswith("赣西物流有限公司 已于") and "由 何静 确认收到" in out[0]
    out = bodies(await h.text(U["chief_d"], dm("chief_d"), f"/ack {code}"))
    assert out == ["N-2026-0001 不是发给你所在企业的，无需确认。"]
    out = bodies(await h.text(STRANGER, ent_room("A"), f"/ack {code}"))
    assert out[0].startswith("你无权使用 /ack")
    out = bodies(await h.text(U["chief_c"], dm("chief_c"), "/收到 N-2026-0099"))
    assert out == ["没有编号为 N-2026-0099 的通知，请核对编号后重新发送。"]
    # C has no room: the notice never reached it, so nothing is open for it to acknowledge;
    # told offline, its chief acknowledges from a direct chat with the number.
    out = bodies(await h.text(U["chief_c"], dm("chief_c"), "/收到"))
    assert out == ["目前没有待确认的通知。"]
    out = bodies(await h.text(U["chief_c"], dm("chief_c"), f"/收到 {code}"))
    assert out[0].startswith("✅ 已记录：萍乡顺达运输公司")
    assert (await targets(db, code))[grid.names["C"]].ack_method == N.BY_COMMAND

    # A reaction on the level-2 copy records nothing.
    async with db.transaction() as s:
        copy = await s.scalar(
            select(N.NoticeDelivery.outbox_id).where(N.NoticeDelivery.part == N.PART_L2_COPY)
        )
    await h.react(U["l2_chief_f"], L2_FREIGHT, f"$out{copy}")
    assert await h.fresh() == []


async def test_a_reaction_finds_its_notice_by_the_outbox_event_id_with_no_job_run(
    db: Database,
) -> None:
    """The event id the sender put on the outbox row is all a ✅ needs: no job has run."""
    h, grid = await setup(db)
    code = await broadcast(h)
    await deliver(db)  # what the sender does; the scheduler never ticks in this test
    a_post = await event_of(db, code, grid.names["A"])
    async with db.transaction() as s:
        ran = await s.scalar(
            select(func.count()).select_from(ScheduledJob).where(ScheduledJob.done_at.is_not(None))
        )
    assert ran == 0
    await h.react(U["chief_a"], ent_room("A"), a_post)
    out = await h.fresh()
    assert len(out) == 1 and out[0].content["body"].startswith("✅ 已记录：赣西物流有限公司")
    a = (await targets(db, code))[grid.names["A"]]
    assert (a.acked_by, a.ack_method) == (U["chief_a"], N.BY_REACTION)


async def test_a_reply_to_a_notice_acknowledges_it_even_during_a_conversation(
    sqlite_db: Database,
) -> None:
    """B's chief is half-way through reporting a hazard when the notice arrives; her "收到" in
    reply to it acknowledges the notice, and the hazard report goes on where it was."""
    h, grid = await setup(sqlite_db, extra=(handlers.cases.hazards,))
    asked = bodies(await h.text(U["chief_b"], ent_room("B"), "/隐患"))
    code = await broadcast(h)
    await deliver(sqlite_db)
    b_post = await event_of(sqlite_db, code, grid.names["B"])

    reply = {"m.relates_to": {"m.in_reply_to": {"event_id": b_post}}}
    out = bodies(await h.text(U["chief_b"], ent_room("B"), "收到", **reply))
    assert out[0].startswith("✅ 已记录：芦溪通达货运公司")
    assert (await targets(sqlite_db, code))[grid.names["B"]].ack_method == N.BY_REPLY
    # The conversation still waits for the hazard's description, and takes it next.
    out = bodies(await h.text(U["chief_b"], ent_room("B"), "仓库消防通道被货物堵塞"))
    assert out and out != asked and "收到" not in out[0]
    async with sqlite_db.transaction() as s:
        row = await s.scalar(select(ConversationState))
    assert row is not None and row.name == "hazard"
    assert "仓库消防通道被货物堵塞" in str(row.data)


async def test_feedback_is_kept_and_counts_as_acknowledgement(sqlite_db: Database) -> None:
    h, grid = await setup(sqlite_db)
    code = await broadcast(h)
    await deliver(sqlite_db)
    out = bodies(
        await h.text(U["chief_b"], ent_room("B"), f"/反馈 {code} 已组织学习\n并完成车辆检查")
    )
    assert out == [
        "已记录 芦溪通达货运公司 对 N-2026-0001 的落实情况（第 1 条）。同时视为确认收到。"
    ]
    out = bodies(await h.text(U["chief_b"], ent_room("B"), f"/feedback {code} 补充：已整改"))
    assert out == ["已记录 芦溪通达货运公司 对 N-2026-0001 的落实情况（第 2 条）。"]
    out = bodies(await h.text(U["chief_b"], ent_room("B"), "/反馈 编号 内容"))
    assert "通知编号应形如 N-2026-0001" in out[0]
    async with sqlite_db.transaction() as s:
        rows = list(await s.scalars(select(N.NoticeFeedback).order_by(N.NoticeFeedback.id)))
    assert [r.text for r in rows] == ["已组织学习\n并完成车辆检查", "补充：已整改"]
    b = (await targets(sqlite_db, code))[grid.names["B"]]
    assert b.ack_method == N.BY_FEEDBACK


async def test_an_ack_sent_while_the_bot_was_down_counts_on_time(sqlite_db: Database) -> None:
    h, grid = await setup(sqlite_db)
    with time_machine.travel(T0, tick=False) as clock:
        code = await broadcast(h)  # due T0 + 24 h
        await deliver(sqlite_db)
        clock.shift(timedelta(hours=30))  # the bot was down; the acks were sent before
        sent_at = int((T0 + timedelta(hours=20)).timestamp() * 1000)
        late_at = int((T0 + timedelta(hours=29)).timestamp() * 1000)
        await h.event(
            U["chief_a"], ent_room("A"), {"msgtype": "m.text", "body": "/收到"}, ts=sent_at
        )
        await h.event(
            U["chief_b"], ent_room("B"), {"msgtype": "m.text", "body": "/收到"}, ts=late_at
        )
        ts = await targets(sqlite_db, code)
        assert ts[grid.names["A"]].acked_at == T0 + timedelta(hours=20)
        assert ts[grid.names["B"]].acked_at == T0 + timedelta(hours=29)
        await h.fresh()
        out = bodies(await h.text(U["l1_chief"], dm("l1_chief"), f"/状态 {code}"))
    assert "已确认 2（按时 1，逾期 1），未确认 1" in out[0] and "按时确认率：33.3%" in out[0]


# --- delivery, reminders, escalation -------------------------------------------------------------


async def test_delivery_progress_and_unreachable_rooms_are_reported(db: Database) -> None:
    h, grid = await setup(db, timing={"notices": {"progress_min_rooms": 2}})
    with time_machine.travel(T0, tick=False) as clock:
        code = await broadcast(h)
        await h.scheduler.tick()
        assert await h.fresh() == []  # nothing sent yet: no news
        # A is sent, B is not reachable (the bot was removed from the room).
        async with db.transaction() as s:
            for row in await s.scalars(select(OutboxMessage)):
                if row.room_id == ent_room("A"):
                    row.status, row.event_id = "sent", f"$out{row.id}"
        clock.shift(timedelta(seconds=3))
        await h.scheduler.tick()
        assert bodies(await h.fresh()) == ["N-2026-0001 发送进度 50%：已送达 1/2 个企业群。"]
        await deliver(db, fail=frozenset({ent_room("B")}))
        clock.shift(timedelta(seconds=3))
        await h.scheduler.tick()
        out = await h.fresh()
        assert [r.room_id for r in out] == [dm("l1_chief")] * 2
        assert (
            out[0].content["body"]
            == "N-2026-0001 发送进度 100%：已送达 1/2 个企业群，1 个无法送达。"
        )
        assert "· 企业群：芦溪通达货运公司" in out[1].content["body"]
        assert out[1].content["m.mentions"] == {"user_ids": [U["l1_chief"]]}
        clock.shift(timedelta(minutes=10))
        await h.scheduler.tick()
        assert await h.fresh() == []  # the fan-out is over: no more checks
    ts = await targets(db, code)
    async with db.transaction() as s:
        notice = await N.by_code(s, code)
        assert notice is not None and notice.delivery_done_at is not None
        # Read from the outbox rows, with the sender's error for the one it gave up on.
        states = await N.post_deliveries(s, notice.id)
    assert states[ts[grid.names["A"]].id] == N.Delivery(N.SENT)
    assert states[ts[grid.names["B"]].id] == N.Delivery(N.FAILED, "M_FORBIDDEN: not in room")


async def test_reminders_then_summary_then_member_then_chief(db: Database) -> None:
    h, grid = await setup(db)
    await set_room(db, ent_room("C"), "enterprise_room", enterprise_id=grid.enterprises["C"])
    with time_machine.travel(T0, tick=False) as clock:
        code = await broadcast(h)  # A, B, C; due T0 + 24 h; reminders at 12 h and 21.6 h
        await deliver(db)
        await h.text(U["chief_a"], ent_room("A"), "/收到")
        await h.scheduler.tick()
        await h.fresh()

        clock.shift(timedelta(hours=12, minutes=1))
        await h.scheduler.tick()
        out = await h.fresh()
        assert sorted(r.room_id for r in out) == [ent_room("B"), ent_room("C")]
        b = next(r for r in out if r.room_id == ent_room("B"))
        assert b.content["msgtype"] == "m.text"
        assert b.content["m.mentions"] == {"user_ids": [U["chief_b"]]}
        assert b.content["body"].startswith("@吴勇 提醒：芦溪通达货运公司 尚未确认收到 N-2026-0001")
        assert "还剩约 11 小时" in b.content["body"]
        assert f'href="https://matrix.to/#/{U["chief_b"]}"' in b.content["formatted_body"]
        await deliver(db)
        # A ✅ on the reminder counts like one on the notice.
        b_reminder = await event_of(db, code, grid.names["B"], N.PART_REMINDER)
        await h.react(U["chief_b"], ent_room("B"), b_reminder)
        await h.fresh()

        clock.shift(timedelta(hours=12))  # past the deadline
        await h.scheduler.tick()
        out = await h.fresh()
        by_room = {r.room_id: r for r in out}
        # The second reminder (due at 21.6 h) comes too late to be useful: it is skipped.
        assert ent_room("C") not in by_room
        summary = by_room[dm("l1_chief")].content
        assert summary["m.mentions"] == {"user_ids": [U["l1_chief"]]}
        assert "按时确认 2 家，按时确认率 66.7%" in summary["body"]
        assert "未确认 1 家：萍乡顺达运输公司" in summary["body"]
        member = by_room[L2_FREIGHT].content
        assert member["m.mentions"] == {"user_ids": [U["member_f2"]]}
        assert "· 萍乡顺达运输公司 — 责任网格员：@陈刚" in member["body"]
        assert "芦溪通达" not in member["body"]

        clock.shift(timedelta(hours=23))
        await h.scheduler.tick()
        assert await h.fresh() == []  # the chief's turn is 24 h after the deadline
        await h.text(U["chief_c"], ent_room("C"), "/收到")  # late, but before the chief is told
        await h.fresh()
        clock.shift(timedelta(hours=2))
        await h.scheduler.tick()
        assert await h.fresh() == []  # nobody is silent any more: the chief is not bothered
    ts = await targets(db, code)
    assert not ts[grid.names["C"]].on_time(T0 + timedelta(hours=24))
    assert ts[grid.names["B"]].on_time(T0 + timedelta(hours=24))


async def test_chief_hears_of_enterprises_still_silent(sqlite_db: Database) -> None:
    h, _grid = await setup(sqlite_db)
    with time_machine.travel(T0, tick=False) as clock:
        await h.text(U["l2_chief_f"], dm("l2_chief_f"), "/通知 典型事故案例 --within 2h\n案例通报")
        await h.text(U["l2_chief_f"], dm("l2_chief_f"), "确认")
        await deliver(sqlite_db)
        await h.fresh()
        clock.shift(timedelta(hours=26, minutes=1))  # the bot was down since the notice
        await h.scheduler.tick()
        out = await h.fresh()
        await h.scheduler.tick()
        assert await h.fresh() == []  # each job ran once
    chief = [r for r in out if "上报网格长" in r.content["body"]]
    assert len(chief) == 1 and chief[0].room_id == L2_FREIGHT
    assert chief[0].content["m.mentions"] == {"user_ids": [U["l2_chief_f"]]}
    body = chief[0].content["body"]
    assert "赣西物流有限公司" in body and "芦溪通达货运公司" in body
    # C has no room: the notice never reached it, so nobody is sent to chase its acknowledgement.
    assert "萍乡顺达运输公司" not in body
    assert "补发" not in body  # due 24 h after the deadline: on time
    # The member's turn was due at the deadline, a day ago: that message says it is late.
    member = [r for r in out if r.content["body"].startswith("【催办】")]
    assert len(member) == 1 and "（机器人停机后补发）" in member[0].content["body"]


async def test_remind_mentions_each_chief_and_calendar_sends_ahead(sqlite_db: Database) -> None:
    calendar = [
        {
            "date": "2026-12-30",
            "hour": 9,
            "kind": "holiday",
            "message": "元旦将至，请做好安全检查",
            "domains": ["客运"],
        }
    ]
    h, _grid = await setup(sqlite_db, timing={"notices": {"calendar": calendar}})
    await h.text(
        U["member_f"], dm("member_f"), "/提醒 天气预警 --within 12h\n明日有冰冻，请停运检修"
    )
    out = await h.text(U["member_f"], dm("member_f"), "确认")
    posts = {r.room_id: r for r in out if r.room_id.startswith("!ent-")}
    assert sorted(posts) == [ent_room("A"), ent_room("B")]
    assert posts[ent_room("A")].content["m.mentions"] == {"user_ids": [U["chief_a"]]}
    assert (
        posts[ent_room("A")]
        .content["body"]
        .startswith("【恶劣天气预警提醒】N-2026-0001\n@刘强 请注意查收")
    )

    with time_machine.travel(datetime(2026, 12, 29, 12, 0, tzinfo=UTC), tick=False) as clock:
        await h.scheduler.tick()
        async with sqlite_db.transaction() as s:
            job = await s.scalar(select(ScheduledJob).where(ScheduledJob.kind == "notice-calendar"))
        assert job is not None and job.due_at == datetime(2026, 12, 30, 1, 0, tzinfo=UTC)
        assert job.key == calendar_key(h.services.config.timing.notices.calendar[0])
        # An entry edited in the configuration replaces the pending job instead of adding one.
        edited = [{**calendar[0], "message": "元旦将至，请做好安全检查和值班"}]
        h2, _ = NoticeHarness(sqlite_db, timing={"notices": {"calendar": edited}}), None
        await h2.scheduler.tick()
        async with sqlite_db.transaction() as s:
            pending = list(
                await s.scalars(
                    select(ScheduledJob.key).where(
                        ScheduledJob.kind == "notice-calendar", ScheduledJob.done_at.is_(None)
                    )
                )
            )
        assert pending == [calendar_key(h2.services.config.timing.notices.calendar[0])]
        await h.scheduler.tick()  # the original configuration again: back to the first entry
        await h.fresh()
        clock.shift(timedelta(hours=13, minutes=1))
        await h.scheduler.tick()
        out = await h.fresh()
    post = next(r for r in out if r.room_id == ent_room("D"))
    assert post.content["m.mentions"] == {"user_ids": [U["chief_d"]]}
    assert "网格通（安全提醒日历）" in post.content["body"]
    assert "元旦将至，请做好安全检查" in post.content["body"]
    admin = next(r for r in out if r.room_id == ADMIN_ROOM)
    assert admin.content["body"].startswith("按安全提醒日历已发出 N-2026-0002【节假日安全提醒】")


# --- status and lists ----------------------------------------------------------------------------


async def test_status_table_and_lists_follow_scope(sqlite_db: Database, monkeypatch) -> None:
    h, _grid = await setup(sqlite_db)
    code = await broadcast(h)
    await deliver(sqlite_db)
    await h.text(U["chief_a"], ent_room("A"), "/收到")
    await h.text(U["chief_a"], ent_room("A"), f"/反馈 {code} 已落实")
    await h.fresh()

    status = (await h.text(U["l1_chief"], dm("l1_chief"), f"/status {code}"))[0].content
    body = status["body"]
    assert "发送 3 家：送达 2，无法送达 1；已确认 1（按时 1，逾期 0），未确认 2；已反馈 1" in body
    assert "按时确认率：33.3%" in body
    lines = [ln for ln in body.splitlines() if ln[:2] in ("1.", "2.", "3.")]
    assert lines[0] == "1. 萍乡顺达运输公司 — ⏳ 未确认（无企业群）"
    assert lines[1] == "2. 芦溪通达货运公司 — ⏳ 未确认"
    assert lines[2].startswith("3. 赣西物流有限公司 — ✅") and lines[2].endswith(
        "刘强（命令） · 已反馈 1 条"
    )
    assert (
        "<table>" in status["formatted_body"]
        and "<td>赣西物流有限公司</td>" in status["formatted_body"]
    )

    # A member sees the enterprises they serve only; another grid's member sees nothing.
    body = bodies(await h.text(U["member_f"], dm("member_f"), f"/状态 {code}"))[0]
    assert "仅列你职责范围内的企业" in body and "萍乡顺达" not in body and "发送 2 家" in body
    body = bodies(await h.text(U["member_p"], dm("member_p"), f"/状态 {code}"))[0]
    assert body.startswith("找不到 N-2026-0001，或它不在你的职责范围内")

    monkeypatch.setattr(handlers.notices.status, "PAGE_SIZE", 2)
    body = bodies(await h.text(U["l1_chief"], dm("l1_chief"), f"/状态 {code} 2"))[0]
    assert "3. 赣西物流有限公司" in body and "第 2/2 页" in body and "1. " not in body

    body = bodies(await h.text(U["l2_chief_f"], dm("l2_chief_f"), "/通知列表"))[0]
    assert "N-2026-0001【部署要求】关于做好冬季运输安全的通知" in body and "已确认 1/3" in body
    body = bodies(await h.text(U["chief_b"], ent_room("B"), "/notices"))[0]
    assert "本企业未确认" in body
    body = bodies(await h.text(U["chief_e"], ent_room("E"), "/notices"))[0]
    assert body == "你的范围内还没有通知。"

"""Sends that fail for good: the homeserver's error code, its cause in words, who is told; a
notice that never reached an enterprise is not asked of it; long notices; /status pages.

Without a homeserver: the dispatcher and scheduler run for real, the sender is simulated (each
queued message marked sent, or failed with the error Synapse gives).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import select

import handlers.contacts.cards
from bot.failures import SendFailures
from bot.outgoing import ENVELOPE_BYTES, MAX_EVENT_BYTES
from handlers.notices.publish import EXCERPT_CHARS
from messages import LOCALES, Messages
from storage import notices as N
from storage import outbox
from storage.db import Database
from storage.models import OutboxFile, OutboxMessage
from tests.test_notices_unit import (
    L2_FREIGHT,
    T0,
    U,
    bodies,
    broadcast,
    deliver,
    dm,
    ent_room,
    setup,
    targets,
)

# What Synapse 1.163 answers, word for word (synapse/event_auth.py, api/auth/base.py).
NOT_IN_ROOM = "M_FORBIDDEN: User @gridbot:localhost not in room !abc:localhost (None)"
NO_POWER = (
    "M_FORBIDDEN: You don't have permission to post that to the room. "
    "user_level (0) < send_level (50)"
)


@pytest.mark.parametrize(
    ("error", "code", "cause"),
    [
        ("M_TOO_LARGE: event too large", "M_TOO_LARGE", outbox.TOO_LARGE),
        (NOT_IN_ROOM, "M_FORBIDDEN", outbox.NOT_IN_ROOM),
        ("M_FORBIDDEN: User @gridbot:localhost not in room !abc:localhost", "M_FORBIDDEN",
         outbox.NOT_IN_ROOM),
        (NO_POWER, "M_FORBIDDEN", outbox.NO_PERMISSION),
        ("M_FORBIDDEN: You are banned from this room", "M_FORBIDDEN", outbox.BANNED),
        ("M_FORBIDDEN: Server ACL", "M_FORBIDDEN", outbox.FORBIDDEN),
        ("M_NOT_JOINED: @gridbot:localhost not in room !a:localhost.", "M_NOT_JOINED",
         outbox.NOT_IN_ROOM),
        ("M_INSUFFICIENT_POWER: user_level (0) < send_level (50)", "M_INSUFFICIENT_POWER",
         outbox.NO_PERMISSION),
        ("M_NOT_FOUND: Unknown room", "M_NOT_FOUND", outbox.ROOM_GONE),
        ("M_UNKNOWN: Internal server error", "M_UNKNOWN", outbox.SERVER_ERROR),
        ("M_BAD_JSON: Content not JSON", "M_BAD_JSON", outbox.REJECTED),
        ("GRIDBOT_PARENT_NOT_SENT: the reacted-to message was never sent",
         "GRIDBOT_PARENT_NOT_SENT", outbox.PARENT_FAILED),
        ("M_SOMETHING_NEW: what", "M_SOMETHING_NEW", outbox.OTHER),
        ("ClientConnectionError('reset')", None, outbox.NO_ANSWER),
        (None, None, outbox.OTHER),
    ],
)  # fmt: skip
def test_homeserver_error_codes_are_read_and_mapped_to_causes(
    error: str | None, code: str | None, cause: str
) -> None:
    assert outbox.error_code(error) == code
    assert outbox.failure_cause(error) == cause


@pytest.mark.parametrize("locale", LOCALES)
def test_every_cause_has_words_in_every_locale(locale: str) -> None:
    causes = [
        outbox.TOO_LARGE,
        outbox.NOT_IN_ROOM,
        outbox.NO_PERMISSION,
        outbox.BANNED,
        outbox.FORBIDDEN,
        outbox.ROOM_GONE,
        outbox.SERVER_ERROR,
        outbox.REJECTED,
        outbox.PARENT_FAILED,
        outbox.NO_ANSWER,
    ]
    failures = [
        {"room_kind": "enterprise_room", "room_name": "<甲>", "here": False, "cause": c, "code": ""}
        for c in causes
    ]
    out = Messages().render(locale, "send_failed", failures=failures, more=0)
    unknown = [{**failures[0], "cause": "no_such_cause"}]
    fallback = Messages().render(locale, "send_failed", failures=unknown, more=0).plain
    sep = "：" if locale == "zh_CN" else ": "
    words = [ln.split(sep, 1)[1] for ln in out.plain.splitlines() if ln.startswith("·")]
    assert len(set(words)) == len(causes) == 10, "each cause in words of its own"
    assert not set(words) & {ln.split(sep, 1)[1] for ln in fallback.splitlines() if ln[:1] == "·"}
    assert "&lt;甲&gt;" in out.html and "<甲>" in out.plain


async def test_status_shows_an_enterprise_not_reached_with_the_cause(sqlite_db: Database) -> None:
    db = sqlite_db
    h, grid = await setup(db)
    code = await broadcast(h)
    await deliver(db, fail=frozenset({ent_room("B")}))
    async with db.transaction() as s:  # as Synapse words it when the bot lacks power there
        for row in await s.scalars(
            select(OutboxMessage).where(OutboxMessage.room_id == ent_room("B"))
        ):
            row.last_error = NO_POWER
    body = bodies(await h.text(U["l1_chief"], dm("l1_chief"), f"/状态 {code}"))[0]
    assert "无法送达 2" in body  # B failed, C has no room
    assert (
        "芦溪通达货运公司 — ⏳ 未确认（无法送达：机器人在该群没有发言权限（权限等级不够）"
        "（M_FORBIDDEN））" in body
    )
    assert "萍乡顺达运输公司 — ⏳ 未确认（无企业群）" in body
    async with db.transaction() as s:
        notice = await N.by_code(s, code)
        assert notice is not None
        states = await N.post_deliveries(s, notice.id)
        failed = list(
            await s.scalars(select(OutboxMessage.id).where(outbox.failed_with("M_FORBIDDEN")))
        )
    b = (await targets(db, code))[grid.names["B"]]
    assert states[b.id].cause == outbox.NO_PERMISSION and states[b.id].code == "M_FORBIDDEN"
    assert len(failed) == 1  # B's post: the code is queryable


async def test_status_refuses_a_page_past_the_last(sqlite_db: Database) -> None:
    h, _grid = await setup(sqlite_db)
    code = await broadcast(h)
    out = bodies(await h.text(U["l1_chief"], dm("l1_chief"), f"/状态 {code} 2"))
    assert out == [f"{code} 的确认情况只有 1 页，没有第 2 页。发送 /状态 {code} 查看。"]
    out = bodies(await h.text(U["l1_chief"], dm("l1_chief"), f"/状态 {code} 1"))
    assert "确认情况" in out[0]


async def test_an_enterprise_the_notice_never_reached_is_not_asked_to_acknowledge(
    sqlite_db: Database,
) -> None:
    h, grid = await setup(sqlite_db, timing={"notices": {"progress_min_rooms": 2}})
    with time_machine.travel(T0, tick=False) as clock:
        code = await broadcast(h)
        await deliver(sqlite_db, fail=frozenset({ent_room("B")}))
        clock.shift(timedelta(seconds=3))
        await h.scheduler.tick()
        told = [b for b in bodies(await h.fresh()) if "有房间无法送达" in b]
        assert (
            told and "· 企业群：芦溪通达货运公司 — 机器人不在该群（已被移出或未被邀请）" in told[0]
        )
        assert "机器人不在群内或无权发言" not in told[0]  # the old guess is gone

        # B's chief: nothing open to acknowledge, and no notice in B's list.
        assert bodies(await h.text(U["chief_b"], dm("chief_b"), "/收到")) == [
            "目前没有待确认的通知。"
        ]
        assert bodies(await h.text(U["chief_b"], dm("chief_b"), "/通知列表")) == [
            "你的范围内还没有通知。"
        ]
        # A's chief still has it; the level-2 chief still sees B counted among the targets.
        assert "本企业未确认" in bodies(await h.text(U["chief_a"], dm("chief_a"), "/通知列表"))[0]
        assert (
            "已确认 0/3" in bodies(await h.text(U["l2_chief_f"], dm("l2_chief_f"), "/通知列表"))[0]
        )

        # Reminders and the escalation after the deadline chase A only.
        clock.shift(timedelta(hours=12, minutes=1))
        await h.scheduler.tick()
        reminders = [r for r in await h.fresh() if "尚未确认收到" in r.content["body"]]
        assert {r.room_id for r in reminders} == {ent_room("A")}
        clock.shift(timedelta(hours=12))
        await h.scheduler.tick()
        escalated = [r for r in await h.fresh() if r.content["body"].startswith("【催办】")]
    assert len(escalated) == 1 and escalated[0].room_id == L2_FREIGHT
    assert "赣西物流有限公司" in escalated[0].content["body"]
    assert grid.names["B"] not in escalated[0].content["body"]
    # Told offline, B may still acknowledge with the number.
    out = bodies(await h.text(U["chief_b"], dm("chief_b"), f"/收到 {code}"))
    assert out[0].startswith("✅ 已记录：芦溪通达货运公司")


def _event_bytes(content: dict) -> int:
    return len(json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode())


async def test_a_notice_too_long_for_one_event_goes_as_its_beginning_and_a_file(
    db: Database,
) -> None:
    # 26 KB, within the text limit, but "<", "&", quotes and line breaks grow in the HTML and
    # JSON forms: the post would be 78 KB, over Matrix's 64 KiB an event.
    text = "关于做好冬季运输安全的通知\n" + "".join(f'{i}. 车辆<检查>&"灯"\n' for i in range(1000))
    h, grid = await setup(db, limits={"text_bytes": 30_000})
    code = await broadcast(h, "/群发 货运 --within 24h\n" + text)
    async with db.transaction() as s:
        rows = list(await s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        files = list(await s.scalars(select(OutboxFile)))
        parts = {d.outbox_id: d.part for d in await s.scalars(select(N.NoticeDelivery))}
    posts = [r for r in rows if r.room_id == ent_room("A")]
    assert [parts[r.id] for r in posts] == [N.PART_POST, N.PART_TEXT]
    post, file = posts
    assert _event_bytes(post.content) < MAX_EVENT_BYTES - ENVELOPE_BYTES
    assert '1. 车辆<检查>&"灯"' in post.content["body"]
    assert "999. 车辆" not in post.content["body"]
    assert f"全文见回复本消息的文件 {code}.txt" in post.content["body"]
    assert len(post.content["body"]) < EXCERPT_CHARS + 1000
    assert post.content["msgtype"] == "m.text" and post.content["m.mentions"]["user_ids"]
    assert file.content["msgtype"] == "m.file" and file.content["filename"] == f"{code}.txt"
    assert file.reply_to_txn == post.txn_id
    assert len(files) == 1, "the same bytes for every room: uploaded once"
    assert files[0].data.decode("utf-8-sig") == text.strip()
    l2 = [parts[r.id] for r in rows if r.room_id == L2_FREIGHT]
    assert l2 == [N.PART_L2_COPY, N.PART_L2_COPY]

    # The post went out, the file could not: the enterprise does not have the notice.
    async with db.transaction() as s:
        failed_file = await s.get(OutboxMessage, file.id)
        assert failed_file is not None
        failed_file.status, failed_file.last_error = outbox.FAILED, "M_TOO_LARGE: too large"
    await deliver(db)
    async with db.transaction() as s:
        notice = await N.by_code(s, code)
        assert notice is not None
        states = await N.post_deliveries(s, notice.id)
    ts = await targets(db, code)
    assert states[ts[grid.names["A"]].id].cause == outbox.TOO_LARGE
    assert states[ts[grid.names["B"]].id].state == N.SENT
    body = bodies(await h.text(U["l1_chief"], dm("l1_chief"), f"/状态 {code}"))[0]
    assert "赣西物流有限公司 — ⏳ 未确认（无法送达：消息太大，服务器拒收（M_TOO_LARGE））" in body
    # A reaction on the file acknowledges like one on the post.
    await h.react(U["chief_b"], ent_room("B"), f"$out{_file_of(rows, ent_room('B'))}")
    assert (await targets(db, code))[grid.names["B"]].ack_method == N.BY_REACTION


def _file_of(rows: list[OutboxMessage], room: str) -> int:
    return next(r.id for r in rows if r.room_id == room and r.file_id is not None)


async def test_whoever_caused_a_failed_message_is_told_why(sqlite_db: Database) -> None:
    """/通讯录 sends a card to each enterprise room; the bot lacks power in one and was
    removed from another: the sender hears, in one answer, which rooms and why."""
    h, grid = await setup(sqlite_db, extra=(handlers.contacts.cards,))
    await h.text(U["l1_chief"], dm("l1_chief"), "/通讯录")
    await deliver(sqlite_db)
    async with sqlite_db.transaction() as s:
        cards = {
            r.room_id: r
            for r in await s.scalars(
                select(OutboxMessage).where(
                    OutboxMessage.room_id.in_([ent_room("A"), ent_room("B")])
                )
            )
        }
        cards[ent_room("A")].status, cards[ent_room("A")].last_error = outbox.FAILED, NO_POWER
        cards[ent_room("B")].status, cards[ent_room("B")].last_error = outbox.FAILED, NOT_IN_ROOM
        ids = [cards[ent_room("A")].id, cards[ent_room("B")].id]
    teller = SendFailures(sqlite_db, h.services, gather=0)
    for i in ids:
        teller(i, "")
    await teller.settle()
    out = await h.fresh()
    assert [r.room_id for r in out] == [dm("l1_chief")]
    body = out[0].content["body"]
    assert body.startswith("你这条消息引起的回复有 2 条没能发出：")
    assert (
        f"企业群「{grid.names['A']}」：机器人在该群没有发言权限（权限等级不够）（M_FORBIDDEN）"
        in body
    )
    assert (
        f"企业群「{grid.names['B']}」：机器人不在该群（已被移出或未被邀请）（M_FORBIDDEN）" in body
    )
    assert (out[0].reply_to_event or "").startswith("$u")  # an answer to the /通讯录
    # The answer's own failure is told to nobody (no loop), nor a notice's (its progress check).
    assert not (out[0].cause or "").startswith("$")

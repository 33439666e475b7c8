"""/staff end to end: an enterprise declares a staff change in its room, its level-2 member
confirms, the roster is updated with the date, and the room's membership follows."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import date
from pathlib import Path
from typing import Any

from nio import AsyncClient
from sqlalchemy import select

from bot import dates
from bot.roster.apply import import_roster
from bot.sandbox.homeserver import Synapse
from storage.models import (
    Enterprise,
    Person,
    ProvisionRequest,
    Role,
    RoleKind,
    RoomInfo,
    StaffChange,
)
from tests.bot_harness import BotFactory, BotUnderTest
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import Message, send_text, wait_for_message
from tests.provision_support import Reader, bot_token, import_rows, members, provision

D1 = date(2026, 1, 5)


def reply_to(event: Message) -> str | None:
    content: dict[str, Any] = event.source.get("content", {})
    return (content.get("m.relates_to") or {}).get("m.in_reply_to", {}).get("event_id")


async def ask(client: AsyncClient, room_id: str, bot: BotUnderTest, text: str) -> Message:
    event_id = await send_text(client, room_id, text)
    return await wait_for_message(
        client,
        room_id,
        lambda e: e.sender == bot.user_id and reply_to(e) == event_id,
        timeout=30,
    )


async def room_of(bot: BotUnderTest, kind: str, enterprise: str | None = None) -> str:
    async with bot.db.transaction() as s:
        query = select(RoomInfo.room_id).where(RoomInfo.kind == kind)
        if enterprise:
            query = query.join(Enterprise, Enterprise.id == RoomInfo.enterprise_id).where(
                Enterprise.name == enterprise
            )
        return str(await s.scalar(query))


async def test_staff_change_declared_confirmed_and_rooms_follow(
    gridbot: BotFactory,
    make_user: MakeUser,
    synapse: Synapse,
    nio_client: NioClientFactory,
    tmp_path: Path,
) -> None:
    u = {
        k: await make_user(k)
        for k in ("l1chief", "l2chief", "member", "other", "entchief", "entmember", "newcomer")
    }
    bot = await gridbot()
    rows = [
        {
            "province": "江西省",
            "city": "萍乡市",
            "county": "芦溪县",
            "l1_chief": f"王建国/13800000001/{u['l1chief'][0]}",
            "domain": "道路货运",
            "l2_chief": f"李卫东/13800000002/{u['l2chief'][0]}",
            "l2_members": [f"张敏/13800000003/{u['member'][0]}"],
            "enterprise": "赣西物流有限公司",
            "type": "货运",
            "ent_chief": f"刘强/13800000004/{u['entchief'][0]}",
            "ent_members": [f"陈红/13800000005/{u['entmember'][0]}"],
        },
        {
            "county": "芦溪县",
            "domain": "道路货运",
            "l2_members": [f"赵刚/13800000006/{u['other'][0]}"],
            "enterprise": "芦溪通达货运公司",
            "type": "货运",
            "ent_chief": "孙力/13800000007",
        },
    ]
    await import_rows(bot, tmp_path, rows, "staff", D1)
    assert (await provision(bot)).summary.ok
    await bot.start()

    c = {k: await nio_client(*v) for k, v in u.items()}
    ganxi = await room_of(bot, "enterprise_room", "赣西物流有限公司")
    l2_room = await room_of(bot, "l2_room")
    for key in ("entchief", "entmember", "member", "l2chief"):
        await c[key].join(ganxi)
    await c["other"].join(l2_room)
    await c["member"].join(l2_room)

    # The enterprise chief declares: 陈红 leaves, 周新 joins as an enterprise member.
    newcomer = u["newcomer"][0]
    reply = await ask(
        c["entchief"],
        ganxi,
        bot,
        f"/人员变动 离开 陈红；加入 企业网格员 周新 13900000009 {newcomer}",
    )
    assert "人员变动申请 S-" in reply.body and "离开：陈红" in reply.body
    assert "加入：周新" in reply.body and "张敏" in reply.body
    # It asks the deciders to act: it rings them, and only them.
    mentioned = reply.source["content"]["m.mentions"]["user_ids"]
    assert sorted(mentioned) == sorted([u["member"][0], u["l2chief"][0]])
    assert reply.source["content"]["msgtype"] == "m.text"
    code = re.search(r"S-\d+", reply.body).group(0)  # type: ignore[union-attr]

    # Bad input is explained, and nothing is stored for it.
    bad = await ask(c["entchief"], ganxi, bot, "/人员变动 离开 不存在的人")
    assert "本企业当前人员中没有「不存在的人」" in bad.body
    assert bad.source["content"]["msgtype"] == "m.notice"

    # Neither the enterprise itself nor a level-2 member of another enterprise may confirm.
    denied = await ask(c["entchief"], ganxi, bot, f"/确认变动 {code}")
    assert "你无权使用" in denied.body
    denied = await ask(c["other"], l2_room, bot, f"/确认变动 {code}")
    assert "只有服务该企业的网格员或二级网格长" in denied.body  # nobody named to an outsider
    async with bot.db.transaction() as s:
        change = await s.scalar(select(StaffChange))
        assert change is not None and change.status == "pending"

    # The member serving the enterprise confirms.
    today = dates.today(bot.config.tz)
    done = await ask(c["member"], ganxi, bot, f"/确认变动 {code}")
    assert f"已由 张敏 确认，自 {today} 起生效" in done.body
    again = await ask(c["member"], ganxi, bot, f"/staff confirm {code}")
    assert "已确认，不能再处理" in again.body

    async with bot.db.transaction() as s:
        change = await s.scalar(select(StaffChange))
        assert change is not None
        assert change.status == "confirmed" and change.effective_on == today
        assert change.decided_by == u["member"][0]
        chen = await s.scalar(select(Person).where(Person.name == "陈红"))
        assert chen is not None and not chen.active and chen.deactivated_on == today
        ended = await s.scalar(select(Role).where(Role.person_id == chen.id))
        assert ended is not None and ended.until == today
        zhou = await s.scalar(select(Person).where(Person.matrix_id == newcomer))
        assert zhou is not None and zhou.name == "周新" and zhou.phone == "13900000009"
        role = await s.scalar(select(Role).where(Role.person_id == zhou.id))
        assert role is not None and role.kind == RoleKind.ENT_MEMBER and role.since == today

    # Membership follows: the bot's worker invites 周新 and removes 陈红.
    reader = Reader(synapse, await bot_token(bot))
    deadline = time.monotonic() + 30
    while True:
        state = await reader.state(ganxi)
        if newcomer in members(state, "invite") and u["entmember"][0] not in members(state):
            break
        assert time.monotonic() < deadline, state.members
        await asyncio.sleep(0.3)
    assert state.members[u["entmember"][0]].sender == bot.user_id  # kicked by the bot
    assert "陈红" not in (state.topic or "")
    deadline = time.monotonic() + 60  # the whole county's run, on a loaded machine
    while True:  # the worker marks its request done once the whole run is over
        async with bot.db.transaction() as s:
            pending = await s.scalar(
                select(ProvisionRequest).where(ProvisionRequest.done_at.is_(None))
            )
        if pending is None:
            break
        assert time.monotonic() < deadline, "provision request still pending"
        await asyncio.sleep(0.2)

    # A rejected request changes nothing.
    reply = await ask(c["entchief"], ganxi, bot, "/人员变动 离开 刘强")
    code2 = re.search(r"S-\d+", reply.body).group(0)  # type: ignore[union-attr]
    rejected = await ask(c["l2chief"], ganxi, bot, f"/驳回变动 {code2} 负责人未变")
    assert "被 李卫东 驳回：负责人未变" in rejected.body
    async with bot.db.transaction() as s:
        liu = await s.scalar(select(Person).where(Person.name == "刘强"))
        assert liu is not None and liu.active

    # The roster office imports its old file again: refused, so the change made in chat stands.
    stale = await import_roster(bot.db, tmp_path / "staff.yaml", today=today)
    assert not stale.applied and len(stale.errors) == 1
    error = str(stale.errors[0])
    assert error.startswith("第1行") and code in error and "--file-wins" in error
    assert "周新 已加入任企业网格员，文件里没有" in error
    assert "陈红 已离开（企业网格员），文件里仍有" in error
    async with bot.db.transaction() as s:
        zhou = await s.scalar(select(Person).where(Person.matrix_id == newcomer))
        assert zhou is not None and zhou.active
        assert await s.scalar(select(Role).where(Role.person_id == zhou.id, Role.until.is_(None)))

    # Once the file has the change, it imports and settles it; from then on the file rules.
    rows[0]["ent_members"] = [f"周新/13900000009/{newcomer}"]
    await import_rows(bot, tmp_path, rows, "staff-updated", today)
    async with bot.db.transaction() as s:
        settled = await s.get(StaffChange, int(code[2:]))
        assert settled is not None and settled.reconciled_on == today
    rows[0]["ent_members"] = []
    await import_rows(bot, tmp_path, rows, "staff-later", today)
    async with bot.db.transaction() as s:
        zhou = await s.scalar(select(Person).where(Person.matrix_id == newcomer))
        assert zhou is not None and not zhou.active

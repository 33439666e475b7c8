"""Who is rung, read from the recipients' side on the real Synapse: after each event, once the
bot is idle, every person's ``GET /notifications`` (with their own token) shows which of the
bot's messages rang their phone. Each test asserts the exact set of people rung, once each, by
that event, and that nobody else was.

One bot and one county for the whole module, on a clock frozen at a Monday morning and moved
on by the tests (a request's deadline, a notice's reminders): each test starts from whatever
the clock says and only moves it forward. The level-2 chief 李卫东 is also the level-1 office
director, in both rooms, so alerts that go to both rooms name him twice and ring him once.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from nio import AsyncClient

from bot.config import parse_config
from bot.sandbox.homeserver import Synapse
from storage import cases
from storage.db import Database
from tests.bot_harness import BotUnderTest
from tests.case_seed import PEOPLE, make_chief_office_director, seed_case_grid
from tests.fixtures_synapse import MakeUser, login_client
from tests.matrix_helpers import (
    create_room,
    notifications,
    rings_phone,
    send_photo,
    send_text,
    wait_for_join,
)
from tests.roster_seed import set_room
from tests.test_cases_e2e import ask

TZ = ZoneInfo("Asia/Shanghai")
MONDAY_9 = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)  # a working day
# room → (owner, other members, kind, what it belongs to), as provisioning lays them out;
# 芦溪通达 has no room.
ROOMS = {
    "a": ("entchief", ("entmember", "member", "l2chief"), "enterprise_room", "ganxi"),
    "l2": ("l2chief", ("l2office", "member", "member_b"), "l2_room", "l2"),
    "l1": ("l1chief", ("l1office", "l2chief"), "l1_room", "l1"),
}


@dataclass
class County:
    bot: BotUnderTest
    c: dict[str, AsyncClient]
    rooms: dict[str, str]
    clock: time_machine.Coordinates
    seen: dict[str, set[str]] = field(default_factory=dict)

    def uid(self, key: str) -> str:
        return self.c[key].user_id

    async def rung(self, *events: str) -> dict[str, list[str]]:
        """Once the bot is idle (``events`` handled, nothing left to send), whom the bot's
        messages rang since the last look: person → the first line of each message."""
        await self.bot.wait_idle(events=events, timeout=60)
        rang: dict[str, list[str]] = {}
        for key, client in self.c.items():
            seen = self.seen.setdefault(key, set())
            for n in await notifications(client):
                event = n["event"]
                if event["event_id"] in seen:
                    continue
                seen.add(event["event_id"])
                if event["sender"] == self.bot.user_id and rings_phone(n):
                    body = event["content"].get("body", "")
                    rang.setdefault(key, []).append(body.splitlines()[0] if body else "")
        return rang

    async def tick(self) -> None:
        assert self.bot.bot is not None and self.bot.bot.scheduler is not None
        await self.bot.bot.scheduler.tick()


def once_each(rang: dict[str, list[str]], *needles: str) -> set[str]:
    """Who was rung, checking each was rung once, by a message that says ``needles``."""
    for key, lines in rang.items():
        assert len(lines) == 1, (key, lines)
        assert all(n in lines[0] for n in needles), (key, lines[0])
    return set(rang)


@pytest.fixture(scope="module")
async def county(
    synapse: Synapse,
    synapse_admin: tuple[str, str],
    make_user: MakeUser,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[County]:
    traveller = time_machine.travel(MONDAY_9, tick=False)
    clock = traveller.start()
    clients: dict[str, AsyncClient] = {}
    bot: BotUnderTest | None = None
    try:
        users = {key: await make_user(key.replace("_", "-")) for key in PEOPLE}
        clients = {k: await login_client(synapse, uid, pw) for k, (uid, pw) in users.items()}
        localpart, password = f"gridbot-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
        user_id = await synapse.register(localpart, password)
        await synapse.exempt_from_ratelimit(user_id, synapse_admin[1])
        db_path: Path = tmp_path_factory.mktemp("rings") / "gridbot.db"
        config = parse_config(
            {
                "homeserver": synapse.url,
                "user_id": user_id,
                "password": password,
                "database_url": f"sqlite+aiosqlite:///{db_path}",
                "sync": {"timeout_ms": 5000},
                # One reminder, and the chief told an hour after the deadline.
                "timing": {
                    "notices": {"remind_at_fractions": [0.5], "escalate_chief_after_hours": 1}
                },
            }
        )
        db = Database(config.database_url)
        await db.upgrade()
        bot = BotUnderTest(config=config, db=db)
        grid = await seed_case_grid(db, {k: uid for k, (uid, _pw) in users.items()})
        await make_chief_office_director(db, grid)
        await bot.start()
        rooms: dict[str, str] = {}
        for key, (owner, guests, kind, of) in ROOMS.items():
            ids = {"enterprise_id": grid.ganxi} if of == "ganxi" else {"grid_id": grid.grids[of]}
            room = await create_room(clients[owner], invite=[clients[g].user_id for g in guests])
            await set_room(db, room, kind, **ids)
            for guest in guests:
                await clients[guest].join(room)
            await clients[owner].room_invite(room, bot.user_id)
            await wait_for_join(clients[owner], room, bot.user_id)
            for guest in guests:
                await wait_for_join(clients[owner], room, clients[guest].user_id)
            rooms[key] = room
        county = County(bot, clients, rooms, clock)
        await county.rung()  # the invites
        yield county
    finally:
        if bot is not None:
            await bot.kill()
            await bot.db.close()
        for client in clients.values():
            await client.close()
        traveller.stop()


# --- the proofs ---------------------------------------------------------------------------------


async def test_a_staff_change_rings_whom_may_confirm_it(county: County) -> None:
    w = county
    await w.rung()
    event = await send_text(w.c["entchief"], w.rooms["a"], "/人员变动 离开 何军")
    rang = await w.rung(event)
    assert once_each(rang, "人员变动申请 S-1") == {"member", "l2chief"}


async def test_a_major_hazard_rings_each_level_once(county: County) -> None:
    w = county
    await w.rung()
    client, room, bot = w.c["entchief"], w.rooms["a"], w.bot
    for answer, step in (
        ("/隐患", "1/9"),
        ("危化品车辆停放区无防火隔离", "2/9"),
        ("停车场北侧", "3/9"),
        ("1", "4/9"),
        ("重大", "5/9"),
        ("完成", "6/9"),
        ("设置警戒线，专人看守", "7/9"),
        ("增设防火隔离带", "8/9"),
        ("刘强 13800000004", "9/9"),
    ):
        assert step in await ask(client, room, bot, answer)
    event = await send_text(client, room, "3月20日")
    rang = await w.rung(event)
    # The member (to confirm it), the level-2 chief, the level-1 chief and office: each once,
    # though the member is named in two rooms and the level-2 chief, the office director,
    # in two; the reporter and the rest of the grid are not rung.
    assert once_each(rang, "H-2026-0001") == {"member", "l2chief", "l1chief", "l1office"}


async def test_an_accident_rings_each_level_once(county: County) -> None:
    w = county
    await w.rung()
    client, room, bot = w.c["entmember"], w.rooms["a"], w.bot
    for answer, step in (
        ("/事故", "1/7"),
        ("30分钟前", "2/7"),
        ("G60 沪昆高速芦溪段 K1020", "3/7"),
        ("1", "4/7"),
        ("0 2 0", "5/7"),
        ("赣J12345 重型半挂牵引车", "6/7"),
        ("雨天追尾前车，驾驶员和押运员受伤送医", "7/7"),
    ):
        assert step in await ask(client, room, bot, answer)
    await send_photo(client, room, "scene.png")
    event = await send_text(client, room, "完成")
    rang = await w.rung(event)
    assert once_each(rang, "A-2026-0001") == {"member", "l2chief", "l1chief", "l1office"}


async def test_a_request_rings_its_member_then_level_2_when_it_goes_up_by_itself(
    county: County,
) -> None:
    w = county
    await w.rung()
    event = await send_text(w.c["entchief"], w.rooms["a"], "/上报 门口路段缺少限速和警示标志")
    rang = await w.rung(event)
    assert once_each(rang, "问题诉求 E-2026-0001") == {"member"}

    async with w.bot.db.transaction() as s:
        request = await cases.get_case(s, "E-2026-0001")
        assert isinstance(request, cases.CaseRequest)
        deadline = request.deadline_at
    w.clock.move_to(deadline + timedelta(minutes=1))
    await w.tick()
    rang = await w.rung()
    # The requester hears where it stands in a notice; level 2's chief and office are rung.
    assert once_each(rang, "问题诉求 E-2026-0001") == {"l2chief", "l2office"}


async def test_a_notice_rings_its_enterprise_then_the_reminder_then_escalation(
    county: County,
) -> None:
    w = county
    await w.rung()
    chief, l2 = w.c["l2chief"], w.rooms["l2"]
    assert "请确认" in await ask(chief, l2, w.bot, "/通知 安全提醒 --within 2h\n雨雪天气请减速慢行")
    event = await send_text(chief, l2, "确认")
    rang = await w.rung(event)
    code = "N-2026-0001"
    # 赣西物流's chief; 芦溪通达 has no room. The level-2 room's copy is a quiet notice.
    assert once_each(rang, code) == {"entchief"}

    w.clock.shift(timedelta(hours=1, minutes=1))  # half the window
    await w.tick()
    assert once_each(await w.rung(), "提醒", code) == {"entchief"}

    w.clock.shift(timedelta(hours=1))  # the deadline: the issuer's report and the members
    await w.tick()
    rang = await w.rung()
    # 芦溪通达 (served by member_b) never got the notice (no room): nobody chases it.
    assert once_each(rang, code) == {"l2chief", "member"}
    assert "【催办】" in rang["member"][0] and "已到确认时限" in rang["l2chief"][0]

    w.clock.shift(timedelta(hours=1))  # an hour later still silent: the level-2 chief
    await w.tick()
    assert once_each(await w.rung(), "【上报网格长】", code) == {"l2chief"}

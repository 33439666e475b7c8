"""True send failures and answers first, on a real Synapse.

1. A broadcast reaches an enterprise room where the bot may not speak (its power level is too
   low): the issuer is told that cause in words, /状态 shows that enterprise as not delivered,
   with the cause, and the enterprise is not asked to acknowledge.
2. On a Synapse with its default rate limits and no exemption for the bot, a fan-out is held
   by the limit; a person's command meanwhile is answered next, not after the fan-out.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nio import AsyncClient, RoomCreateResponse
from sqlalchemy import func, select

from bot.config import parse_config
from bot.sandbox.homeserver import Synapse
from storage.db import Database
from storage.models import Enterprise, EnterpriseType, Grid, OutboxMessage
from tests.bot_harness import BotFactory, BotUnderTest
from tests.fixtures_synapse import MakeUser, NioClientFactory, login_client
from tests.matrix_helpers import send_photo, send_text, wait_for_join, wait_for_message
from tests.notice_seed import seed_notice_grid
from tests.test_notices_e2e import ask, from_bot, people, register, room_of

# --- 1. a room where the bot may not speak --------------------------------------------------------


async def test_the_issuer_hears_the_true_cause_and_the_enterprise_is_not_asked(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    c = await people(["l1_chief", "chief_a", "chief_b"], make_user, nio_client)
    bot = await gridbot()
    grid = await seed_notice_grid(bot.db, {k: v.user_id for k, v in c.items()})
    await bot.start()
    room_a = await room_of(c["chief_a"], bot, [], "赣西物流 企业群")
    # B's chief made the room with everyone's power at 0 and speaking at 50: the bot may join
    # but not post (Synapse: "You don't have permission to post that to the room").
    resp = await c["chief_b"].room_create(
        invite=[bot.user_id],
        name="芦溪通达 企业群",
        power_level_override={"events_default": 50},  # the creator stays above all
    )
    assert isinstance(resp, RoomCreateResponse), resp
    room_b = resp.room_id
    await wait_for_join(c["chief_b"], room_b, bot.user_id)
    await register(bot, room_a, "enterprise_room", enterprise_id=grid.enterprises["A"])
    await register(bot, room_b, "enterprise_room", enterprise_id=grid.enterprises["B"])
    chief, dm = c["l1_chief"], await room_of(c["l1_chief"], bot, [], "", direct=True)
    dm_b = await room_of(c["chief_b"], bot, [], "", direct=True)

    await ask(chief, dm, bot, "/群发 货运 --within 24h\n关于做好冬季运输安全的通知", "请确认")
    sent = await ask(chief, dm, bot, "确认", "已发出")
    code = sent.body.split()[1].split("（")[0]
    post = await wait_for_message(c["chief_a"], room_a, from_bot(bot, code))
    assert "关于做好冬季运输安全的通知" in post.body

    lost = await wait_for_message(chief, dm, from_bot(bot, "有房间无法送达"), timeout=30)
    assert (
        "· 企业群：芦溪通达货运公司 — 机器人在该群没有发言权限（权限等级不够）（M_FORBIDDEN）"
        in lost.body
    )
    assert "这些企业没有收到通知，不会被要求确认" in lost.body

    status = await ask(chief, dm, bot, f"/状态 {code}", "确认情况")
    assert "送达 1，无法送达 2" in status.body
    assert (
        "芦溪通达货运公司 — ⏳ 未确认（无法送达：机器人在该群没有发言权限（权限等级不够）"
        "（M_FORBIDDEN））" in status.body
    )
    assert "萍乡顺达运输公司 — ⏳ 未确认（无企业群）" in status.body
    assert "无法送达：机器人在该群没有发言权限" in status.source["content"]["formatted_body"]

    # B's chief is not asked to acknowledge what never reached B.
    await ask(c["chief_b"], dm_b, bot, "/收到", "目前没有待确认的通知")
    await ask(c["chief_b"], dm_b, bot, "/通知列表", "你的范围内还没有通知")


# --- 2. answers first, under Synapse's default rate limits ----------------------------------------


@pytest.fixture
async def bot_on_default_limits(
    synapse_default_limits: Synapse, tmp_path: Path
) -> AsyncIterator[BotUnderTest]:
    """A bot on the default-limits Synapse. It is exempt while a test sets up its rooms (seven
    joins and welcomes would take a minute at the default rates); ``await
    bot.extra["hold"]()`` holds it to every default limit from then on (with a full burst:
    Synapse counts nothing an exempt user did)."""
    hs = synapse_default_limits
    admin_password = uuid.uuid4().hex
    admin = await hs.register(f"admin-{uuid.uuid4().hex[:8]}", admin_password, admin=True)
    admin_token = await hs.login(admin, admin_password)
    password = uuid.uuid4().hex
    user_id = await hs.register(f"gridbot-{uuid.uuid4().hex[:8]}", password)
    await hs.exempt_from_ratelimit(user_id, admin_token)
    config = parse_config(
        {
            "homeserver": hs.url,
            "user_id": user_id,
            "password": password,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'gridbot.db'}",
            "sync": {"timeout_ms": 5000},
        }
    )
    db = Database(config.database_url)
    await db.upgrade()
    under_test = BotUnderTest(config=config, db=db)

    async def hold() -> None:
        await hs.remove_ratelimit_override(user_id, admin_token)
        assert await hs.ratelimit_override(user_id, admin_token) == {}

    under_test.extra["hold"] = hold
    try:
        yield under_test
    finally:
        await under_test.kill()
        await db.close()


async def _client(hs: Synapse, key: str) -> tuple[AsyncClient, str]:
    password = uuid.uuid4().hex
    user_id = await hs.register(f"{key}-{uuid.uuid4().hex[:6]}", password)
    return await login_client(hs, user_id, password), user_id


async def _pending_fan_out(db: Database) -> int:
    async with db.transaction() as s:
        return int(
            await s.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == "pending", OutboxMessage.cause.like("notice:%"))
            )
            or 0
        )


@pytest.mark.homeserver
async def test_an_answer_is_not_held_behind_a_rate_limited_fan_out(
    synapse_default_limits: Synapse, bot_on_default_limits: BotUnderTest
) -> None:
    hs, bot = synapse_default_limits, bot_on_default_limits
    issuer, issuer_id = await _client(hs, "issuer")
    owner, owner_id = await _client(hs, "owner")
    try:
        grid = await seed_notice_grid(bot.db, {"l1_chief": issuer_id, "chief_a": owner_id})
        extra = [f"货运企业{i}" for i in range(3)]  # six freight enterprises in all
        async with bot.db.transaction() as s:
            freight = await s.get(Grid, grid.grids["freight"])
            assert freight is not None
            s.add_all(
                Enterprise(unit_id=freight.unit_id, grid_id=freight.id, name=n,
                           type=EnterpriseType.FREIGHT)
                for n in extra
            )  # fmt: skip
        async with bot.db.transaction() as s:
            ids = {n: i for n, i in await s.execute(select(Enterprise.name, Enterprise.id))}
        await bot.start()
        # Six enterprise rooms and a direct chat: seven joins, within the join burst (10).
        names = [grid.names["A"], grid.names["B"], grid.names["C"], *extra]
        rooms = {}
        for name in names:
            rooms[name] = await room_of(owner, bot, [], name)
            await register(bot, rooms[name], "enterprise_room", enterprise_id=ids[name])
        dm = await room_of(issuer, bot, [], "", direct=True)
        await bot.wait_idle()  # the welcomes are out
        await bot.extra["hold"]()  # from now on: Synapse's default limits, burst 10

        # Two files go with the notice: 6 rooms × 3 messages, beyond the burst of 10 messages
        # the bot's earlier answers have begun to use: most of the fan-out waits for the limit.
        await ask(issuer, dm, bot, "/群发 货运\n关于做好冬季运输安全的通知", "请确认")
        for n in (1, 2):
            await send_photo(issuer, dm, f"现场{n}.png")
            await wait_for_message(issuer, dm, from_bot(bot, f"已添加附件 {n}"), timeout=30)
        await ask(issuer, dm, bot, "确认", "已发出")
        held = await _pending_fan_out(bot.db)
        assert held >= 6, f"the fan-out should be held by the rate limit ({held} waiting)"

        started = time.monotonic()
        await send_text(issuer, dm, "/whoami")
        answer = await wait_for_message(issuer, dm, from_bot(bot), timeout=40)
        waited = time.monotonic() - started
        still = await _pending_fan_out(bot.db)
        # Synapse lets one message through every 5 s: the answer took the next one, while
        # the fan-out goes on behind it.
        assert issuer_id in answer.body and waited < 12, (waited, answer.body)
        assert still > held // 2, (held, still)  # far from done when the answer came
        print(f"fan-out held {held}, still {still} after the answer, which took {waited:.1f} s")
    finally:
        await bot.kill()
        await issuer.close()
        await owner.close()
        await asyncio.sleep(0)

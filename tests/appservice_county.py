"""A county run in appservice mode, for any homeserver deployment (one Synapse, or Synapse with
workers on PostgreSQL and Redis): the bot's registration is written before the homeserver
starts; then the demo county is provisioned with the appservice token, a level-1 chief
broadcasts from a direct chat (an invite that reaches the bot only as a pushed transaction), an
enterprise chief acknowledges, a member reports a hazard.

Nothing here syncs as the bot: every event it handles came through
``PUT /_matrix/app/v1/transactions``, and no send of it met a 429 although the homeserver
keeps Synapse's default message rate limit (the registration says ``rate_limited: false``).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import yaml
from nio import AsyncClient
from sqlalchemy import func, select

from bot.appservice.registration import registration
from bot.config import Config, parse_config
from bot.sandbox.homeserver import free_port
from storage.db import Database
from storage.models import AppserviceTransaction, Enterprise, OutboxMessage, RoomInfo
from tests.bot_harness import BotUnderTest
from tests.fixtures_synapse import login_client
from tests.matrix_helpers import (
    create_room,
    notifications,
    rings_phone,
    send_text,
    wait_for_join,
)
from tests.provision_support import demo_rows, import_rows, mxid_of, mxids, provision
from tests.test_cases_e2e import ask
from tests.test_notices_e2e import ask as ask_for
from tests.test_notices_e2e import from_bot, reply

PASSWORD = "appservice-county-pw"
BOT_LOCALPART = "gridbot"
D1 = date(2026, 11, 2)
# Synapse's default message limit (0.2/s, burst 10) for everyone but logins: the bot would be
# held back for minutes by it, were its registration not exempt.
DEFAULT_LIMITS: dict[str, Any] = {
    "rc_login": {
        "address": {"per_second": 1000, "burst_count": 1000},
        "account": {"per_second": 1000, "burst_count": 1000},
        "failed_attempts": {"per_second": 1000, "burst_count": 1000},
    }
}


class Homeserver(Protocol):
    url: str

    async def register(self, localpart: str, password: str, admin: bool = False) -> Any: ...


@dataclass
class AppserviceSetup:
    """The bot's settings and its registration file, made before the homeserver starts."""

    data: dict[str, Any]
    registration_path: Path

    def config(self, homeserver_url: str, database_url: str, **extra: Any) -> Config:
        return parse_config(
            {**self.data, "homeserver": homeserver_url, "database_url": database_url, **extra}
        )


def appservice_setup(directory: Path, server_name: str = "localhost") -> AppserviceSetup:
    port = free_port()
    data: dict[str, Any] = {
        "homeserver": "http://127.0.0.1:1",  # replaced once the homeserver is up
        "user_id": f"@{BOT_LOCALPART}:{server_name}",
        "appservice": {
            "id": "gridbot-test",
            "url": f"http://127.0.0.1:{port}",
            "as_token": secrets.token_urlsafe(24),
            "hs_token": secrets.token_urlsafe(24),
        },
    }
    path = directory / "gridbot-registration.yaml"
    path.write_text(yaml.safe_dump(registration(parse_config(data)), sort_keys=False), "utf-8")
    return AppserviceSetup(data, path)


async def enterprise_room(db: Database, name_part: str) -> str:
    async with db.transaction() as s:
        room = await s.scalar(
            select(RoomInfo.room_id)
            .join(Enterprise, Enterprise.id == RoomInfo.enterprise_id)
            .where(Enterprise.name.contains(name_part), RoomInfo.kind == "enterprise_room")
        )
    assert room, name_part
    return str(room)


async def run_county(hs: Homeserver, bot: BotUnderTest, tmp_path: Path) -> None:
    """Provision the demo county, broadcast, acknowledge, report a hazard; assert each step."""
    rows = demo_rows(secrets.token_hex(3))
    await import_rows(bot, tmp_path, rows, "demo", D1)
    for mxid in sorted(mxids(rows)):
        await hs.register(mxid[1:].split(":", 1)[0], PASSWORD)

    # --- provisioning with the appservice token ----------------------------------------------
    run = await provision(bot)
    assert not run.summary.failed, run.summary.failed
    assert len(run.summary.created) >= 30
    assert run.ops.rate_limited == 0

    await bot.start()
    clients: list[AsyncClient] = []
    try:
        liu = await login_client(hs, mxid_of(rows, "刘建国"), PASSWORD)  # type: ignore[arg-type]
        zhou = await login_client(hs, mxid_of(rows, "周宏伟"), PASSWORD)  # type: ignore[arg-type]
        yi = await login_client(hs, mxid_of(rows, "易小军"), PASSWORD)  # type: ignore[arg-type]
        clients += [liu, zhou, yi]

        # --- an invite that reaches the bot only as a pushed transaction ---------------------
        dm = await create_room(liu, invite=[bot.user_id], is_direct=True)
        await wait_for_join(liu, dm, bot.user_id)

        # The enterprise's people take up the provisioning's invites (a phone rings only for
        # rooms its owner has joined).
        ganxi = await enterprise_room(bot.db, "赣西物流")
        for client in (zhou, yi):
            await client.join(ganxi)

        # --- a broadcast from the level-1 chief -----------------------------------------------
        prompt = await ask_for(
            liu,
            dm,
            bot,
            "/群发 货运 --within 24h\n关于做好冬季运输安全的通知\n各企业：请落实。",
            "请确认",
        )
        assert "发送对象" in prompt.body
        sent = await ask_for(liu, dm, bot, "确认", "已发出")
        code = sent.body.split("已发出 ", 1)[1].split("（", 1)[0]

        post = await wait_for_message_from(zhou, ganxi, bot, f"【部署要求】{code}")
        assert post.source["content"]["msgtype"] == "m.text"

        # --- the enterprise chief acknowledges by replying 收到 -------------------------------
        await reply(zhou, ganxi, post.event_id, "收到")
        recorded = await wait_for_message_from(zhou, ganxi, bot, "✅ 已记录")
        assert "赣西物流" in recorded.body

        # --- the serving member reports a hazard ----------------------------------------------
        assert "1/9" in await ask(yi, ganxi, bot, "/隐患")
        for answer, step in (
            ("3号仓库消防通道堆放货物", "2/9"),
            ("3号仓库东侧", "3/9"),
            ("1", "4/9"),
            ("一般", "5/9"),
            ("完成", "6/9"),
            ("设置警戒线，专人看守", "7/9"),
            ("清理通道内货物", "8/9"),
            ("周宏伟 13807992011", "9/9"),
        ):
            assert step in await ask(yi, ganxi, bot, answer), answer
        await send_text(yi, ganxi, "明天")
        card = await wait_for_message_from(yi, ganxi, bot, "【一般隐患】H-")
        assert "3号仓库消防通道堆放货物" in card.body

        await bot.wait_idle(timeout=60)
        # The notice rang the enterprise chief's phone.
        rang = [
            n for n in await notifications(zhou)
            if n["event"]["sender"] == bot.user_id and rings_phone(n)
        ]  # fmt: skip
        assert any(f"【部署要求】{code}" in n["event"]["content"].get("body", "") for n in rang)
    finally:
        for client in clients:
            await client.close()

    # --- everything came by transactions, nothing was held back -------------------------------
    assert bot.bot is not None and bot.bot.client is not None
    assert not bot.bot.client.next_batch  # never synced
    async with bot.db.transaction() as s:
        txns = await s.scalar(select(func.count()).select_from(AppserviceTransaction))
        retried = await s.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.attempts > 1)
        )
        unsent = await s.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.status != "sent")
        )
    assert txns and txns > 0
    assert retried == 0 and unsent == 0


async def wait_for_message_from(client: AsyncClient, room: str, bot: BotUnderTest, *words: str):
    from tests.matrix_helpers import wait_for_message

    return await wait_for_message(client, room, from_bot(bot, *words), timeout=60)

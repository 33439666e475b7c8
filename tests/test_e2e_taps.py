"""Tap to answer and edited answers on the real Synapse, with a nio client as the member's
phone: a whole /走访 without typing a number (taps and a shared location), an edited answer
that replaces the one before, and a tap on an old question that only says so."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp
from nio import AsyncClient
from sqlalchemy import select

from bot.commands import DIRECT
from bot.dates import today
from storage.models import Enterprise
from storage.visits import Visit
from tests.bot_harness import BotFactory, BotUnderTest
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import send_text, wait_for_message
from tests.test_visits_e2e import TZ, reply_to, room_for, share_location
from tests.visits_seed import GANXI, seed_visit_grid


async def bot_reactions(client: AsyncClient, room: str, event_id: str, bot: str) -> list[str]:
    """The reaction keys ``bot`` put under ``event_id`` (the relations API, as a client reads)."""
    url = (
        f"{client.homeserver}/_matrix/client/v1/rooms/{quote(room)}/relations/"
        f"{quote(event_id)}/m.annotation/m.reaction?limit=50"
    )
    headers = {"Authorization": f"Bearer {client.access_token}"}
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        chunk = (await resp.json())["chunk"]
    return [e["content"]["m.relates_to"]["key"] for e in chunk if e["sender"] == bot][::-1]


async def tap(client: AsyncClient, room: str, event_id: str, key: str) -> str:
    relates = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
    resp = await client.room_send(room, "m.reaction", {"m.relates_to": relates})
    assert isinstance(getattr(resp, "event_id", None), str), resp
    return resp.event_id


async def edit(client: AsyncClient, room: str, event_id: str, body: str) -> str:
    new = {"msgtype": "m.text", "body": body}
    content = {
        **new,
        "body": f"* {body}",
        "m.new_content": new,
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }
    resp = await client.room_send(room, "m.room.message", content)
    assert isinstance(getattr(resp, "event_id", None), str), resp
    return resp.event_id


class Phone:
    """The member's phone in the direct chat: each bot answer is a reply to what it answers."""

    def __init__(self, client: AsyncClient, room: str, bot: BotUnderTest) -> None:
        self.client, self.room, self.bot = client, room, bot

    async def answer_to(self, event_id: str) -> tuple[str, str]:
        reply = await wait_for_message(
            self.client,
            self.room,
            lambda e: e.sender == self.bot.user_id and reply_to(e) == event_id,
            timeout=30,
        )
        return reply.event_id, reply.body

    async def say(self, text: str) -> tuple[str, str]:
        return await self.answer_to(await send_text(self.client, self.room, text))

    async def taps_under(self, question: str) -> list[str]:
        await self.bot.wait_idle()
        return await bot_reactions(self.client, self.room, question, self.bot.user_id)

    async def tap(self, question: str, key: str) -> tuple[str, str]:
        """Tap ``key`` under ``question``; the answer replies to the question."""
        await tap(self.client, self.room, question, key)
        return await self.answer_to(question)


async def test_a_whole_visit_by_taps_and_a_shared_location(
    gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    uid, password = await make_user("member")
    bot = await gridbot()
    g = await seed_visit_grid(bot.db, {"member": uid})
    async with bot.db.transaction() as s:
        ganxi = await s.get(Enterprise, g.enterprises[GANXI])
        assert ganxi is not None
        ganxi.latitude, ganxi.longitude = 27.63, 113.85
    client = await nio_client(uid, password)
    await bot.start()
    dm = await room_for(bot, client, DIRECT, direct=True)
    phone = Phone(client, dm, bot)

    question, body = await phone.say("/走访")
    assert f"3. {GANXI}" in body
    assert await phone.taps_under(question) == ["1️⃣", "2️⃣", "3️⃣"]
    question, body = await phone.tap(question, "3️⃣")
    assert f"企业：{GANXI}" in body and "日期" in body
    _q, body = await phone.say("今天")
    # An answer sent, then corrected by editing it: the edit replaces it.
    checked = await send_text(client, dm, "查了车辆")
    _q, asked = await phone.answer_to(checked)
    await edit(client, dm, checked, "查了车辆动态监控和消防器材")
    _q, again = await phone.answer_to(checked)  # the question after it, asked again
    assert again == asked and "发现了什么问题" in again
    question, body = await phone.say("无")
    assert "位置" in body
    assert await phone.taps_under(question) == ["⏭️"]
    shared = await share_location(client, dm, "geo:27.6302,113.8501;u=15")
    question, body = await phone.answer_to(shared)
    assert body.startswith("已收到位置：现场（距企业 24 m")
    assert await phone.taps_under(question) == ["✅"]
    question, body = await phone.tap(question, "✅")  # no photos: done
    assert "查了车辆动态监控和消防器材" in body and "位置：现场" in body
    assert await phone.taps_under(question) == ["✅", "❌"]
    _saved, body = await phone.tap(question, "✅")
    day = today(TZ).isoformat()
    assert f"已保存走访记录 V-{day[:4]}-0001" in body

    # The summary's ✅ again, now that the visit is saved: it only says so.
    _stale, body = await phone.tap(question, "❌")
    assert body.startswith("这个问题已经回答过或已结束")
    await bot.wait_idle()
    async with bot.db.transaction() as s:
        visit = await s.scalar(select(Visit))
    assert visit is not None and visit.checked == "查了车辆动态监控和消防器材"
    await bot.stop()

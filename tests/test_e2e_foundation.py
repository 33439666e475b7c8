"""End to end on the real Synapse: the bot answers per role, declines strangers, loses nothing."""

from __future__ import annotations

import asyncio
from typing import Any

from nio import AsyncClient, RoomGetStateEventResponse

from tests.bot_harness import BotFactory, BotUnderTest
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import (
    Message,
    create_room,
    send_text,
    wait_for_join,
    wait_for_message,
)
from tests.roster_seed import SeedPeople, seed_small_grid


def reply_to(event: Message) -> str | None:
    content: dict[str, Any] = event.source.get("content", {})
    return (content.get("m.relates_to") or {}).get("m.in_reply_to", {}).get("event_id")


def from_bot(bot: BotUnderTest, event_id: str | None = None):
    def match(e: Message) -> bool:
        return e.sender == bot.user_id and (event_id is None or reply_to(e) == event_id)

    return match


async def ask(client: AsyncClient, room_id: str, bot: BotUnderTest, text: str) -> Message:
    """Send a command and return the bot's reply to exactly that event."""
    event_id = await send_text(client, room_id, text)
    return await wait_for_message(client, room_id, from_bot(bot, event_id), timeout=30)


async def _grid(gridbot: BotFactory, make_user: MakeUser, nio_client: NioClientFactory):
    admin, admin_pw = await make_user("bureau-admin")
    users = {
        k: await make_user(k) for k in ("l1chief", "l2chief", "member", "entchief", "stranger")
    }
    bot = await gridbot(admins=[admin])
    await seed_small_grid(
        bot.db,
        SeedPeople(
            l1_chief=users["l1chief"][0],
            l2_chief=users["l2chief"][0],
            member=users["member"][0],
            ent_chief=users["entchief"][0],
        ),
    )
    clients = {k: await nio_client(*v) for k, v in users.items()}
    clients["admin"] = await nio_client(admin, admin_pw)
    return bot, clients


async def test_help_and_whoami_answer_each_role(gridbot, make_user, nio_client) -> None:
    bot, c = await _grid(gridbot, make_user, nio_client)
    await bot.start()
    member = c["member"]
    room = await create_room(
        member,
        invite=[bot.user_id, c["entchief"].user_id, c["stranger"].user_id, c["admin"].user_id],
        name="赣西物流 网格群",
    )
    await wait_for_join(member, room, bot.user_id)
    welcome = await wait_for_message(member, room, from_bot(bot))
    assert "网格通" in welcome.body
    for key in ("entchief", "stranger", "admin"):
        await c[key].join(room)
        await wait_for_join(member, room, c[key].user_id)

    reply = await ask(member, room, bot, "/whoami")
    assert reply.source["content"]["msgtype"] == "m.notice"
    assert "二级网格员" in reply.body and "芦溪县二级网格·道路货运" in reply.body
    assert "赣西物流有限公司" in reply.body and "芦溪通达货运公司" in reply.body
    assert "服务企业（2 家）" in reply.body

    reply = await ask(c["entchief"], room, bot, "/我是谁")
    assert "企业负责人：赣西物流有限公司" in reply.body
    assert "服务企业" not in reply.body

    reply = await ask(c["stranger"], room, bot, "/whoami")
    assert "不在网格名册中" in reply.body

    reply = await ask(c["admin"], room, bot, "/whoami")
    assert "系统管理员" in reply.body

    reply = await ask(member, room, bot, "/帮助")
    assert "/whoami" in reply.body and "/help" in reply.body and "/language" in reply.body
    assert "<code>/whoami</code>" in reply.source["content"]["formatted_body"]

    reply = await ask(c["stranger"], room, bot, "/help")
    assert "你不在网格名册中" in reply.body

    reply = await ask(member, room, bot, "/help 我是谁")
    assert reply.body.startswith("/whoami")
    assert "别名：/我是谁" in reply.body


async def test_level2_chief_is_also_level1_member(gridbot, make_user, nio_client) -> None:
    bot, c = await _grid(gridbot, make_user, nio_client)
    await bot.start()
    chief = c["l2chief"]
    room = await create_room(chief, invite=[bot.user_id], is_direct=True)
    await wait_for_join(chief, room, bot.user_id)
    reply = await ask(chief, room, bot, "/whoami")
    assert "二级网格长：芦溪县二级网格·道路货运" in reply.body
    assert "一级网格成员：芦溪县一级网格" in reply.body


async def test_bad_input_gets_usage_in_sender_language(gridbot, make_user, nio_client) -> None:
    bot, c = await _grid(gridbot, make_user, nio_client)
    await bot.start()
    member = c["member"]
    room = await create_room(member, invite=[bot.user_id], is_direct=True)
    await wait_for_join(member, room, bot.user_id)

    reply = await ask(member, room, bot, "/frobnicate now")
    assert "未知命令：/frobnicate" in reply.body and "/帮助" in reply.body

    reply = await ask(member, room, bot, "/language klingon")
    assert "不支持的语言：klingon" in reply.body and "用法：/language" in reply.body

    reply = await ask(member, room, bot, "/语言 English")
    assert "English" in reply.body
    reply = await ask(member, room, bot, "/whoami extra words")
    assert "unexpected: extra words" in reply.body and "Usage: /whoami" in reply.body
    reply = await ask(member, room, bot, "/nope")
    assert "Unknown command: /nope" in reply.body

    # The choice is stored: it survives a restart.
    await bot.stop()
    await bot.start()
    reply = await ask(member, room, bot, "/whoami")
    assert "level-2 grid member" in reply.body


async def test_stranger_invite_is_declined(gridbot, make_user, nio_client) -> None:
    bot, c = await _grid(gridbot, make_user, nio_client)
    await bot.start()
    stranger = c["stranger"]
    room = await create_room(stranger, invite=[bot.user_id])
    membership = None
    for _ in range(100):
        resp = await stranger.room_get_state_event(room, "m.room.member", bot.user_id)
        if isinstance(resp, RoomGetStateEventResponse):
            membership = resp.content.get("membership")
            if membership != "invite":
                break
        await asyncio.sleep(0.1)
    assert membership == "leave"

    # Someone in the roster is welcome.
    member = c["member"]
    room2 = await create_room(member, invite=[bot.user_id])
    await wait_for_join(member, room2, bot.user_id)


async def test_commands_sent_while_stopped_are_answered_exactly_once(
    gridbot, make_user, nio_client
) -> None:
    bot, c = await _grid(gridbot, make_user, nio_client)
    await bot.start()
    member = c["member"]
    room = await create_room(member, invite=[bot.user_id])
    await wait_for_join(member, room, bot.user_id)
    await wait_for_message(member, room, from_bot(bot))  # the welcome
    await bot.stop()

    # More than one sync returns (timeline limit 10): the bot must page back for the rest.
    sent = [await send_text(member, room, "/whoami") for _ in range(20)]
    chatter = [await send_text(member, room, f"闲聊 {i}") for i in range(5)]
    assert len(set(sent)) == 20 and chatter

    await bot.start()
    replies = await bot.messages_when_idle(member, room, events=sent + chatter)
    answered = [reply_to(r) for r in replies]
    assert sorted(answered) == sorted(sent), "each command answered exactly once"

    # A second restart answers nothing again.
    await bot.stop()
    await bot.start()
    assert await bot.messages_when_idle(member, room) == []


async def test_events_before_the_bot_joined_are_ignored(gridbot, make_user, nio_client) -> None:
    bot, c = await _grid(gridbot, make_user, nio_client)
    await bot.start()
    member = c["member"]
    room = await create_room(member)
    early = await send_text(member, room, "/whoami")
    await member.room_invite(room, bot.user_id)
    await wait_for_join(member, room, bot.user_id)
    await wait_for_message(member, room, from_bot(bot))  # the welcome
    late = await send_text(member, room, "/whoami")
    replies = await bot.messages_when_idle(member, room, events=[late])
    assert [reply_to(r) for r in replies] == [late]
    assert early != late


async def test_crash_after_storing_events_still_answers_once(
    gridbot, make_user, nio_client
) -> None:
    """Kill the bot without a clean stop; what it had received is handled after restart, once."""
    bot, c = await _grid(gridbot, make_user, nio_client)
    await bot.start()
    member = c["member"]
    room = await create_room(member, invite=[bot.user_id], is_direct=True)
    await wait_for_join(member, room, bot.user_id)
    await wait_for_message(member, room, from_bot(bot))
    sent = [await send_text(member, room, "/help") for _ in range(3)]
    await bot.kill()
    more = [await send_text(member, room, "/help") for _ in range(3)]
    await bot.start()
    replies = await bot.messages_when_idle(member, room, events=sent + more)
    assert sorted(reply_to(r) for r in replies) == sorted(sent + more)

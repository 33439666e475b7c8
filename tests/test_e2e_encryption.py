"""End-to-end encryption on the real Synapse, with members whose nio clients encrypt (as Element
does): an encrypted direct chat runs /走访 to the end with an encrypted photo that reaches the
enterprise room byte for byte; the bot reads old and new messages across a restart; a crash right
after a sync that brought room keys answers the messages they encrypt exactly once; a message
whose key never comes is answered with "please send it again"."""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    DownloadResponse,
    ForwardedRoomKeyEvent,
    LoginResponse,
    MegolmEvent,
    RoomCreateError,
    RoomGetEventResponse,
    RoomKeyEvent,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)
from nio.crypto import decrypt_attachment, encrypt_attachment
from sqlalchemy import select

from bot.app import Fatal
from bot.sandbox.homeserver import Synapse
from bot.syncer import SyncLoop
from storage.models import InboxEvent, OutboxMessage
from storage.visits import Visit
from tests.bot_harness import BotFactory, BotUnderTest
from tests.fixtures_synapse import MakeUser
from tests.matrix_helpers import (
    Message,
    png_1x1,
    send_text,
    sync_once,
    wait_for_join,
    wait_for_message,
)
from tests.notice_seed import seed_notice_grid
from tests.roster_seed import set_room
from tests.visits_seed import GANXI, fake_mxids, seed_visit_grid

MEGOLM = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}


@pytest.fixture
async def e2e_client(synapse: Synapse, tmp_path: Path) -> AsyncIterator[Any]:
    """Factory for logged-in nio clients with encryption on (a crypto store in tmp)."""
    made: list[AsyncClient] = []

    async def make(user_id: str, password: str) -> AsyncClient:
        store = tmp_path / f"store-{user_id[1:].split(':')[0]}"
        store.mkdir()
        client = AsyncClient(
            synapse.url,
            user_id,
            store_path=str(store),
            config=AsyncClientConfig(encryption_enabled=True, store_sync_tokens=False),
        )
        made.append(client)
        resp = await client.login(password, device_name="pytest-e2e")
        assert isinstance(resp, LoginResponse), resp
        await client.keys_upload()
        await sync_once(client)
        return client

    try:
        yield make
    finally:
        for c in made:
            await c.close()


def reply_to(event: Message) -> str | None:
    rel = event.source.get("content", {}).get("m.relates_to") or {}
    return (rel.get("m.in_reply_to") or {}).get("event_id")


async def ask(client: AsyncClient, room: str, bot: BotUnderTest, text: str) -> str:
    event_id = await send_text(client, room, text)
    return await answer(client, room, bot, event_id)


async def answer(client: AsyncClient, room: str, bot: BotUnderTest, event_id: str) -> str:
    got = await wait_for_message(
        client, room, lambda e: e.sender == bot.user_id and reply_to(e) == event_id, timeout=30
    )
    return got.body


async def encrypted_room(
    client: AsyncClient,
    bot: BotUnderTest,
    *,
    direct: bool,
    invite: bool = True,
    encrypted: bool = True,
) -> str:
    """A room as Element makes a new DM: createRoom with is_direct and m.room.encryption in
    initial_state; the client knows it (synced) before it sends."""
    resp = await client.room_create(
        invite=[bot.user_id] if (direct and invite) else [],
        is_direct=direct,
        initial_state=[MEGOLM] if encrypted else [],
    )
    assert not isinstance(resp, RoomCreateError), resp
    room = resp.room_id
    if not direct and invite:
        await client.room_invite(room, bot.user_id)
    if invite:
        await wait_for_join(client, room, bot.user_id)
        await wait_for_message(client, room, lambda e: e.sender == bot.user_id)  # the welcome
    else:
        await sync_once(client)
    return room


async def send_encrypted_photo(client: AsyncClient, room: str, data: bytes) -> str:
    """Upload the photo encrypted and send it as Element does in an encrypted room:
    ``content.file`` with url, key, iv and hashes, no top-level url."""
    ciphertext, keys = encrypt_attachment(data)
    up, _ = await client.upload(
        io.BytesIO(ciphertext),
        content_type="application/octet-stream",
        filename="site.png",
        filesize=len(ciphertext),
    )
    assert isinstance(up, UploadResponse), up
    content = {
        "msgtype": "m.image",
        "body": "site.png",
        "file": {**keys, "url": up.content_uri},
        "info": {"mimetype": "image/png", "size": len(data), "w": 1, "h": 1},
    }
    sent = await client.room_send(room, "m.room.message", content, ignore_unverified_devices=True)
    assert isinstance(sent, RoomSendResponse), sent
    return sent.event_id


async def fetch_decrypted(client: AsyncClient, file: dict[str, Any]) -> bytes:
    server, _, media_id = file["url"].removeprefix("mxc://").partition("/")
    resp = await client.download(server_name=server, media_id=media_id)
    assert isinstance(resp, DownloadResponse), resp
    return decrypt_attachment(resp.body, file["key"]["k"], file["hashes"]["sha256"], file["iv"])


async def member_and_bot(
    gridbot: BotFactory, make_user: MakeUser, e2e_client: Any, **overrides: Any
) -> tuple[BotUnderTest, AsyncClient, Any]:
    uid, pw = await make_user("e2e-member")
    bot = await gridbot(**overrides)
    grid = await seed_visit_grid(bot.db, {**fake_mxids(), "member": uid})
    member = await e2e_client(uid, pw)
    await bot.start()
    return bot, member, grid


async def test_encrypted_dm_visit_with_encrypted_photo(
    gridbot: BotFactory, make_user: MakeUser, e2e_client: Any
) -> None:
    bot, member, g = await member_and_bot(gridbot, make_user, e2e_client)
    dm = await encrypted_room(member, bot, direct=True)
    # The enterprise room is encrypted too: the photo is relayed with its key, as it came.
    ent_resp = await member.room_create(initial_state=[MEGOLM])
    ent = ent_resp.room_id  # type: ignore[union-attr]
    await set_room(bot.db, ent, "enterprise_room", enterprise_id=g.enterprises[GANXI])
    await member.room_invite(ent, bot.user_id)
    await wait_for_join(member, ent, bot.user_id)
    await wait_for_message(member, ent, lambda e: e.sender == bot.user_id)

    assert "/visit" in await ask(member, dm, bot, "/帮助")
    await ask(member, dm, bot, "/走访")
    assert GANXI in await ask(member, dm, bot, "物流")
    assert "这次检查了什么" in await ask(member, dm, bot, "今天")
    assert "发现了什么问题" in await ask(member, dm, bot, "检查了车辆动态监控")
    assert "请共享你现在的位置" in await ask(member, dm, bot, "一辆车GPS离线")
    assert "请发送现场照片" in await ask(member, dm, bot, "跳过")
    photo = png_1x1()
    photo_event = await send_encrypted_photo(member, dm, photo)
    assert "已收到" in await answer(member, dm, bot, photo_event)
    assert "一辆车GPS离线" in await ask(member, dm, bot, "完成")
    saved = await ask(member, dm, bot, "确认")
    assert "已保存走访记录" in saved and "已发布到企业群" in saved
    await bot.wait_idle()

    async with bot.db.transaction() as s:
        visit = (await s.scalars(select(Visit))).one()
        relayed = [
            m.content
            for m in await s.scalars(select(OutboxMessage).where(OutboxMessage.room_id == ent))
            if "file" in m.content
        ]
        stored = await s.get(InboxEvent, photo_event)
    # Kept with its key (url, key, iv, hashes), relayed as it came, byte for byte.
    assert visit.files and visit.files[0]["file"]["url"].startswith("mxc://")
    assert len(relayed) == 1 and "url" not in relayed[0]
    assert await fetch_decrypted(member, relayed[0]["file"]) == photo
    # The inbox holds what nio gave (decrypted during the sync, or decrypted when handled).
    assert stored is not None and stored.type == "m.room.message"


async def test_restart_reads_old_and_new_and_crash_after_keys_answers_once(
    gridbot: BotFactory,
    make_user: MakeUser,
    e2e_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot, member, _g = await member_and_bot(gridbot, make_user, e2e_client)
    dm = await encrypted_room(member, bot, direct=True)
    assert "/visit" in await ask(member, dm, bot, "/帮助")

    # Restart: a message sent while the bot is down (the session it already has) and one in
    # a new session after it is back are both read.
    await bot.stop()
    old = await send_text(member, dm, "/帮助")
    await bot.start()
    assert "/visit" in await answer(member, dm, bot, old)
    member.olm.outbound_group_sessions.pop(dm, None)  # type: ignore[union-attr]
    assert "/visit" in await ask(member, dm, bot, "/帮助")

    # Crash right after a sync that brought new room keys, before its events are stored.
    brought = asyncio.Event()
    original = SyncLoop.process

    async def process(self: SyncLoop, resp: SyncResponse) -> Any:
        if any(isinstance(e, RoomKeyEvent | ForwardedRoomKeyEvent) for e in resp.to_device_events):
            brought.set()
            await asyncio.Event().wait()  # never stored: the kill comes here
        return await original(self, resp)

    monkeypatch.setattr(SyncLoop, "process", process)
    member.olm.outbound_group_sessions.pop(dm, None)  # type: ignore[union-attr]
    sent = [await send_text(member, dm, "/帮助"), await send_text(member, dm, "/whoami")]
    await asyncio.wait_for(brought.wait(), timeout=30)
    await bot.kill()
    monkeypatch.setattr(SyncLoop, "process", original)
    await bot.start()
    got = await bot_messages(bot, member, dm, sent)
    assert sorted(reply_to(m) or "" for m in got) == sorted(sent)


async def bot_messages(
    bot: BotUnderTest, member: AsyncClient, room: str, events: list[str]
) -> list[Message]:
    await bot.wait_idle(events=events, timeout=40)
    found: list[Message] = []
    for _ in range(3):  # the replies may take a sync or two to decrypt on the member's side
        from tests.matrix_helpers import read_messages

        found += await read_messages(member, room, bot.user_id)
        if len(found) >= len(events):
            break
        await asyncio.sleep(0.5)
    return found


async def test_a_message_whose_key_never_comes_is_answered_please_resend(
    gridbot: BotFactory, make_user: MakeUser, e2e_client: Any
) -> None:
    bot, member, _g = await member_and_bot(
        gridbot,
        make_user,
        e2e_client,
        encryption={"key_wait_seconds": 2},
        sync={"timeout_ms": 1000},
    )
    dm = await encrypted_room(member, bot, direct=True)
    # A megolm session the member never shares with the bot's device.
    olm = member.olm
    assert olm is not None
    olm.create_outbound_group_session(dm)
    olm.outbound_group_sessions[dm].shared = True
    lost = await send_text(member, dm, "/帮助")
    olm.outbound_group_sessions.pop(dm)
    body = await answer(member, dm, bot, lost)
    assert "再发送一次" in body
    async with bot.db.transaction() as s:
        row = await s.get(InboxEvent, lost)
    assert row is not None and row.outcome == "undecryptable"
    # The next message, in a session shared as usual, is read.
    assert "/visit" in await ask(member, dm, bot, "/帮助")

    # Mixed rooms: a plain room, then encryption switched on in it mid-life; the bot carries on
    # (and answers encrypted from then on).
    plain = await encrypted_room(member, bot, direct=False, encrypted=False)
    assert "/visit" in await ask(member, plain, bot, "/帮助")
    await member.room_put_state(plain, "m.room.encryption", MEGOLM["content"])
    await sync_once(member)
    eid = await send_text(member, plain, "/帮助")
    got = await wait_for_message(
        member, plain, lambda e: e.sender == bot.user_id and reply_to(e) == eid, timeout=30
    )
    assert "/visit" in got.body and got.decrypted
    # Trust on first use: the roster member's device was verified by the bot when first seen.
    assert bot.bot is not None and bot.bot.client is not None and bot.bot.client.olm is not None
    device = bot.bot.client.device_store[member.user_id][member.device_id]
    assert bot.bot.client.olm.is_device_verified(device)


async def test_notice_into_encrypted_enterprise_rooms_is_read_and_acknowledged(
    gridbot: BotFactory, make_user: MakeUser, e2e_client: Any
) -> None:
    keys = ["l1_chief", "chief_a", "chief_b"]
    creds = {k: await make_user(k.replace("_", "-")) for k in keys}
    bot = await gridbot()
    grid = await seed_notice_grid(bot.db, {k: uid for k, (uid, _pw) in creds.items()})
    c = {k: await e2e_client(uid, pw) for k, (uid, pw) in creds.items()}
    await bot.start()
    rooms = {}
    for key, person in (("A", "chief_a"), ("B", "chief_b")):
        resp = await c[person].room_create(initial_state=[MEGOLM], name=f"{key} 企业群")
        room = resp.room_id  # type: ignore[union-attr]
        await set_room(bot.db, room, "enterprise_room", enterprise_id=grid.enterprises[key])
        await c[person].room_invite(room, bot.user_id)
        await wait_for_join(c[person], room, bot.user_id)
        rooms[key] = room
    dm = await encrypted_room(c["l1_chief"], bot, direct=True)
    prompt = await ask(
        c["l1_chief"], dm, bot, "/群发 货运 --within 24h\n关于冬季运输安全的通知\n各企业：请落实。"
    )
    assert "请确认" in prompt
    assert "已发出" in await ask(c["l1_chief"], dm, bot, "确认")
    for key, person in (("A", "chief_a"), ("B", "chief_b")):
        post = await wait_for_message(
            c[person], rooms[key], lambda e: e.sender == bot.user_id and "【部署要求】" in e.body
        )
        assert "各企业：请落实。" in post.body  # decrypted by the member's client
        content = {
            "m.relates_to": {"rel_type": "m.annotation", "event_id": post.event_id, "key": "👍"}
        }
        sent = await c[person].room_send(
            rooms[key], "m.reaction", content, ignore_unverified_devices=True
        )
        assert isinstance(sent, RoomSendResponse), sent
        recorded = await wait_for_message(
            c[person], rooms[key], lambda e: e.sender == bot.user_id and "✅ 已记录" in e.body
        )
        assert recorded.body.startswith("✅ 已记录")

    # A file the bot makes (a contact card) goes into each encrypted room encrypted: uploaded
    # once as ciphertext, sent as ``file`` with its key; the member decrypts it.
    await ask(c["l1_chief"], dm, bot, "/通讯录")
    await bot.wait_idle()
    async with bot.db.transaction() as s:
        cards = {
            m.room_id: m.event_id
            for m in await s.scalars(select(OutboxMessage))
            if m.content.get("msgtype") == "m.file"
        }
    for key, person in (("A", "chief_a"), ("B", "chief_b")):
        await sync_once(c[person])
        got = await c[person].room_get_event(rooms[key], cards[rooms[key]])
        assert isinstance(got, RoomGetEventResponse), got
        event = got.event
        if isinstance(event, MegolmEvent):
            event = c[person].decrypt_event(event)
        card = event.source["content"]
        assert "url" not in card and card["file"]["url"].startswith("mxc://")
        text = (await fetch_decrypted(c[person], card["file"])).decode("utf-8-sig")
        assert {"A": "刘强", "B": "吴勇"}[key] in text


async def test_a_lost_crypto_store_is_said_in_one_line(
    gridbot: BotFactory, make_user: MakeUser, e2e_client: Any
) -> None:
    bot, member, _g = await member_and_bot(gridbot, make_user, e2e_client)
    await bot.wait_idle()
    await bot.stop()
    shutil.rmtree(bot.config.crypto_store)
    with pytest.raises(Fatal, match=r"the store was lost.*Log in a new device"):
        await bot.start()
    bot.bot = bot.task = None
    # What the line says to do works: a new device name logs in a new device, with a new store.
    bot.config = bot.config.model_copy(update={"device_id": "GRIDBOT-2"})
    await bot.start()
    dm = await encrypted_room(member, bot, direct=True)
    assert "/visit" in await ask(member, dm, bot, "/帮助")


async def test_an_encrypted_photo_on_a_hazard_report_arrives_byte_for_byte(
    gridbot: BotFactory, make_user: MakeUser, e2e_client: Any
) -> None:
    from storage import cases
    from tests.case_seed import PEOPLE as CASE_PEOPLE
    from tests.case_seed import seed_case_grid

    uid, pw = await make_user("e2e-entchief")
    bot = await gridbot()
    mxids = {k: f"@{k.replace('_', '-')}-x:localhost" for k in CASE_PEOPLE}
    grid = await seed_case_grid(bot.db, {**mxids, "entchief": uid})
    chief = await e2e_client(uid, pw)
    await bot.start()
    resp = await chief.room_create(initial_state=[MEGOLM], name="赣西 企业群")
    ent = resp.room_id  # type: ignore[union-attr]
    await set_room(bot.db, ent, "enterprise_room", enterprise_id=grid.ganxi)
    await chief.room_invite(ent, bot.user_id)
    await wait_for_join(chief, ent, bot.user_id)
    await wait_for_message(chief, ent, lambda e: e.sender == bot.user_id)

    assert "1/9" in await ask(chief, ent, bot, "/隐患")
    assert "2/9" in await ask(chief, ent, bot, "3号仓库消防通道堆放货物")
    assert "3/9" in await ask(chief, ent, bot, "3号仓库东侧")
    assert "4/9" in await ask(chief, ent, bot, "1")
    assert "5/9" in await ask(chief, ent, bot, "一般")
    photo = png_1x1() + b"gridbot"  # bytes no other test sends
    event_id = await send_encrypted_photo(chief, ent, photo)
    assert "已收到 1 张照片" in await answer(chief, ent, bot, event_id)
    assert "6/9" in await ask(chief, ent, bot, "完成")
    assert "7/9" in await ask(chief, ent, bot, "设置警戒线")
    assert "8/9" in await ask(chief, ent, bot, "清理通道内货物")
    assert "9/9" in await ask(chief, ent, bot, "刘强 13800000004")
    last = await send_text(chief, ent, "明天")
    await bot.wait_idle(events=[last], timeout=40)

    async with bot.db.transaction() as s:
        hazards = [await cases.get_case(s, code) for code in await _case_codes(s)]
        posted = [
            m.event_id
            for m in await s.scalars(select(OutboxMessage).where(OutboxMessage.room_id == ent))
            if m.content.get("msgtype") == "m.image"
        ]
    (hazard,) = hazards
    assert hazard is not None and hazard.photos[0]["file"]["url"].startswith("mxc://")
    assert len(posted) == 1  # the photo in the hazard's thread
    await sync_once(chief)
    got = await chief.room_get_event(ent, posted[0])
    assert isinstance(got, RoomGetEventResponse), got
    event = got.event
    if isinstance(event, MegolmEvent):
        event = chief.decrypt_event(event)
    relayed = event.source["content"]["file"]
    assert await fetch_decrypted(chief, relayed) == photo
    assert await fetch_decrypted(chief, hazard.photos[0]["file"]) == photo


async def _case_codes(session: Any) -> list[str]:
    from storage.cases import Hazard

    return list(await session.scalars(select(Hazard.code)))

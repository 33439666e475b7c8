"""The admin room end to end on the real Synapse, with a matrix-nio client as the admin: the
bot starts with no roster (its admin room alone); a roster file is dry-run, confirmed by ✅ and
applied, and the bot provisions the whole grid itself from nothing (progress edited in place,
ending on its last state); a workbook with two bad rows comes back annotated; export → upload
unchanged is no change; /health names a room that refuses the bot's sends; an admin added in
chat is invited into the admin room and removed from it again; a county admin cannot act
beyond their county."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from typing import Any

import yaml
from nio import AsyncClient, RoomSendResponse, UploadResponse
from openpyxl import load_workbook
from sqlalchemy import select

from bot.outgoing import Outgoing, queue
from bot.sandbox.homeserver import Synapse
from handlers.admin import files
from messages import Messages
from storage.directory import admin_rooms
from storage.models import Enterprise
from tests.bot_harness import BotFactory
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import (
    create_room,
    send_text,
    sync_once,
    wait_for_invite,
    wait_for_join,
    wait_for_message,
)
from tests.provision_support import Reader, bot_token, demo_rows, mxids, provision
from tests.test_e2e_provision import PASSWORD, by_name, localpart

NEW = "芦溪县新开运输有限公司"


def _with_new_enterprise(rows: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    first = rows[0]
    return [
        *rows,
        {
            "county": first["county"],
            "domain": "道路货运",
            "l2_members": next(r["l2_members"] for r in rows if r.get("domain") == "道路货运"),
            "enterprise": NEW,
            "type": "货运",
            "ent_chief": f"新开甲/13807998001/@xinkaijia-{suffix}:localhost",
        },
    ]


async def _upload(client: AsyncClient, room: str, name: str, data: bytes, mime: str) -> str:
    up, _ = await client.upload(
        io.BytesIO(data), content_type=mime, filename=name, filesize=len(data)
    )
    assert isinstance(up, UploadResponse), up
    content = {
        "msgtype": "m.file",
        "body": name,
        "filename": name,
        "url": up.content_uri,
        "info": {"mimetype": mime, "size": len(data)},
    }
    sent = await client.room_send(room, "m.room.message", content)
    assert isinstance(sent, RoomSendResponse), sent
    return sent.event_id


async def _bot_file(client: AsyncClient, room: str, bot: str, suffix: str) -> bytes:
    """The newest file the bot sent to ``room`` whose name ends with ``suffix``."""
    resp = await client.room_messages(room, start="", limit=50, direction="b")
    for e in resp.chunk:
        content = e.source.get("content") or {}
        if (
            e.sender == bot
            and content.get("msgtype") == "m.file"
            and str(content.get("body", "")).endswith(suffix)
        ):
            return (await client.download(mxc=content["url"])).body
    raise AssertionError(f"no file *{suffix} from the bot in {room}")


def _said(bot: str, *words: str) -> Any:
    return lambda m: m.sender == bot and all(w in m.body for w in words)


async def test_admin_room_roster_round_trip_health_and_scope(
    gridbot: BotFactory,
    make_user: MakeUser,
    synapse: Synapse,
    nio_client: NioClientFactory,
) -> None:
    started = time.monotonic()
    admin_id, admin_pw = await make_user("bureau-admin")
    bot = await gridbot(admins=[admin_id])
    rows = demo_rows(uuid.uuid4().hex[:6])
    await asyncio.gather(*(synapse.register(localpart(m), PASSWORD) for m in sorted(mxids(rows))))
    print(f"setup {time.monotonic() - started:.1f} s")
    # From nothing: no roster yet, so provisioning makes the admin room alone; the whole grid
    # is made by the running bot after the roster is uploaded there and confirmed.
    first = await provision(bot)
    assert first.summary.ok and len(first.summary.created) == 1, first.summary
    reader = Reader(synapse, await bot_token(bot))
    async with bot.db.transaction() as s:
        (room,) = await admin_rooms(s)
    print(f"provisioned {time.monotonic() - started:.1f} s")
    await bot.start()
    admin = await nio_client(admin_id, admin_pw)
    await admin.join(room)
    await sync_once(admin)

    # --- upload the demo roster with one enterprise added; confirm by ✅ -------------------
    suffix = uuid.uuid4().hex[:6]
    grown = _with_new_enterprise(rows, suffix)
    await synapse.register(f"xinkaijia-{suffix}", PASSWORD)
    data = yaml.safe_dump({"rows": grown}, allow_unicode=True).encode()
    await _upload(admin, room, "名册.yaml", data, "application/yaml")
    diff = await wait_for_message(admin, room, _said(bot.user_id, "试运行"), timeout=30)
    assert "新增" in diff.body
    await admin.room_send(
        room,
        "m.reaction",
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": diff.event_id, "key": "✅"}},
    )
    await wait_for_message(admin, room, _said(bot.user_id, "已导入"), timeout=30)
    done = await wait_for_message(admin, room, _said(bot.user_id, "房间调整完成"), timeout=240)
    assert "未能完成" not in done.body, done.body
    # The progress message ends on the run's last state, not at "建群 30/31".
    edits = await _edits_of(admin, room, bot.user_id, "建群")
    assert edits and edits[-1].startswith("核对房间"), edits
    done_, total = edits[-1].split()[-1].split("/")
    assert done_ == total, edits
    async with bot.db.transaction() as s:
        assert await s.scalar(select(Enterprise.id).where(Enterprise.name == NEW))
    tree = by_name(await reader.hierarchy(await _province(bot)))
    new_room = next(r for name, r in tree.items() if NEW in name)
    state = await reader.state(new_room["room_id"])
    assert f"@xinkaijia-{suffix}:localhost" in state.members

    print(f"imported and provisioned {time.monotonic() - started:.1f} s")
    # --- export; upload it unchanged: no change; two bad rows come back marked -------------
    await send_text(admin, room, "/导出名册")
    await wait_for_message(admin, room, _said(bot.user_id, "已导出"), timeout=30)
    exported = await _bot_file(admin, room, bot.user_id, ".xlsx")
    await _upload(admin, room, "网格名册.xlsx", exported, files.XLSX_MIME)
    await wait_for_message(admin, room, _said(bot.user_id, "没有变化"), timeout=30)
    wb = load_workbook(io.BytesIO(exported))
    for r in (3, 5):
        wb.worksheets[0].cell(row=r, column=13).value = None  # 企业类型: required
    out = io.BytesIO()
    wb.save(out)
    async with bot.db.transaction() as s:
        from storage.admins import roster_fingerprint

        before = await roster_fingerprint(s)
    await _upload(admin, room, "坏名册.xlsx", out.getvalue(), files.XLSX_MIME)
    await wait_for_message(admin, room, _said(bot.user_id, "2 个错误"), timeout=30)
    marked = files.error_rows(await _bot_file(admin, room, bot.user_id, "-错误标注.xlsx"))
    assert sorted(marked) == [3, 5]
    async with bot.db.transaction() as s:
        assert await roster_fingerprint(s) == before

    print(f"files {time.monotonic() - started:.1f} s")
    # --- /health while one room refuses the bot's sends -----------------------------------
    refusing = await create_room(admin, invite=[bot.user_id])
    await wait_for_join(admin, refusing, bot.user_id)
    await admin.room_kick(refusing, bot.user_id)
    async with bot.db.transaction() as s:
        queue(s, Messages(), Outgoing(refusing, "admin_roster_usage"), locale="zh_CN", cause="t")
    await _until_failed(bot, refusing, timeout=90)
    await send_text(admin, room, "/运行状态")
    health = await wait_for_message(admin, room, _said(bot.user_id, "运行状态"), timeout=30)
    assert refusing in health.body and "M_FORBIDDEN" in health.body, health.body

    print(f"health {time.monotonic() - started:.1f} s")
    # --- a county admin cannot touch another county ----------------------------------------
    county_id, county_pw = await make_user("county-admin")
    county = await nio_client(county_id, county_pw)
    await sync_once(county)
    await send_text(admin, room, f"/管理员 add {county_id} 芦溪县")
    await wait_for_message(admin, room, _said(bot.user_id, "已添加"), timeout=30)
    # Added in chat, the admin is invited into the admin room by the bot itself.
    assert await wait_for_invite(county, timeout=30) == room
    await county.join(room)
    await sync_once(county)
    other = [dict(r, county="莲花县") for r in rows]
    data = yaml.safe_dump({"rows": other}, allow_unicode=True).encode()
    await _upload(county, room, "莲花县.yaml", data, "application/yaml")
    await wait_for_message(county, room, _said(bot.user_id, "只能管理本县"), timeout=30)
    await send_text(county, room, "/管理员 add @someone:localhost")
    await wait_for_message(county, room, _said(bot.user_id, "只能管理本县的管理员"), timeout=30)
    await send_text(admin, room, "/历史 管理")
    history = await wait_for_message(admin, room, _said(bot.user_id, "管理操作记录"), timeout=30)
    assert "import" in history.body and "admin_add" in history.body
    # Removed in chat, they are removed from the admin room; bot.yaml's admin stays.
    await send_text(admin, room, f"/管理员 remove {county_id}")
    await wait_for_message(admin, room, _said(bot.user_id, "已移除"), timeout=30)
    await _until_membership(reader, room, county_id, "leave", timeout=30)
    assert (await reader.state(room)).members[admin_id].membership == "join"
    assert time.monotonic() - started < 90


async def _until_membership(
    reader: Reader,
    room: str,
    user: str,
    membership: str,
    timeout: float = 30,  # noqa: ASYNC109
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        member = (await reader.state(room)).members.get(user)
        if member is not None and member.membership == membership:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{user} is not {membership} in {room}: {member}")
        await asyncio.sleep(0.3)


async def _edits_of(client: AsyncClient, room: str, bot: str, original: str) -> list[str]:
    """The texts the bot's message starting with ``original`` was edited to, oldest first."""
    resp = await client.room_messages(room, start="", limit=100, direction="b")
    events = [e.source for e in reversed(resp.chunk) if e.sender == bot]
    first = next(e for e in events if str(e["content"].get("body", "")).startswith(original))
    return [
        str(e["content"]["m.new_content"]["body"]).strip()
        for e in events
        if (e["content"].get("m.relates_to") or {}).get("event_id") == first["event_id"]
        and (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
    ]


async def _province(bot: Any) -> str:
    from storage.models import ProvisionedRoom, RoomInfo

    async with bot.db.transaction() as s:
        rows = (
            await s.execute(
                select(ProvisionedRoom.room_id)
                .join(RoomInfo, RoomInfo.room_id == ProvisionedRoom.room_id)
                .where(RoomInfo.kind == "province_space")
            )
        ).all()
    return str(rows[0][0])


async def _until_failed(bot: Any, room: str, timeout: float = 30) -> None:  # noqa: ASYNC109
    from storage.models import OutboxMessage

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with bot.db.transaction() as s:
            status = await s.scalar(
                select(OutboxMessage.status)
                .where(OutboxMessage.room_id == room)
                .order_by(OutboxMessage.id.desc())
                .limit(1)
            )
        if status == "failed":
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"the message to {room} did not fail")

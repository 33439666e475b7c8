"""Provisioning end to end on the real Synapse: the demo county becomes a tree of Spaces and rooms
with the roster's members and power levels; roster changes move people; re-runs change nothing;
a crash half-way is finished without duplicates; people without accounts are invited later."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from nio import JoinError, RoomPutStateError, RoomPutStateResponse
from sqlalchemy import select

from bot.provision import apply as provision_apply
from bot.provision import matrix as provision_matrix
from bot.provision.state import has_creator_power
from bot.sandbox.homeserver import Synapse
from storage.models import ProvisionedRoom, RoomInfo
from tests.bot_harness import BotFactory, BotUnderTest
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import send_text
from tests.provision_support import (
    Crash,
    CrashAfter,
    LoseAnswerAfter,
    Reader,
    bot_token,
    demo_rows,
    import_rows,
    members,
    mxid_of,
    mxids,
    provision,
)

D1, D2 = date(2026, 1, 5), date(2026, 3, 2)
PASSWORD = "provision-test-pw"
DEMO_ROOMS = 30  # province, city, county, admin, level-1, 5 grid spaces, 5 level-2, 15 enterprises


def localpart(mxid: str) -> str:
    return mxid[1:].split(":", 1)[0]


async def demo_bot(
    gridbot: BotFactory,
    make_user: MakeUser,
    synapse: Synapse,
    tmp_path: Path,
    *,
    without_account: tuple[str, ...] = (),
    server_admin: bool = False,
) -> tuple[BotUnderTest, list[dict[str, Any]], str]:
    """A bot with the demo county imported; everyone registered except ``without_account``."""
    admin, _ = await make_user("bureau-admin")
    bot = await gridbot(admins=[admin], server_admin=server_admin)
    rows = demo_rows(uuid.uuid4().hex[:6])
    await import_rows(bot, tmp_path, rows, "demo", D1)
    skip = {mxid_of(rows, name) for name in without_account}
    for mxid in sorted(mxids(rows) - skip):
        await synapse.register(localpart(mxid), PASSWORD)
    return bot, rows, admin


def by_name(rooms: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in rooms}


def admin_room_id(rooms: dict[str, dict[str, Any]]) -> str:
    return str(rooms["网格通·管理员群"]["room_id"])


def children(room: dict[str, Any]) -> set[str]:
    return {c["state_key"] for c in room["children_state"] if c.get("content")}


async def test_demo_county_becomes_a_tree_with_roster_members_and_powers(
    gridbot: BotFactory,
    make_user: MakeUser,
    synapse: Synapse,
    nio_client: NioClientFactory,
    tmp_path: Path,
) -> None:
    bot, rows, admin = await demo_bot(
        gridbot, make_user, synapse, tmp_path, without_account=("邱莉",)
    )
    first = await provision(bot)
    s = first.summary
    assert s.ok, s.failed
    assert len(s.created) == DEMO_ROOMS and s.rooms == DEMO_ROOMS
    # One createRoom per room; one m.space.child per room except the top space.
    assert first.ops.calls["create_room"] == DEMO_ROOMS
    assert first.ops.calls["put_state"] == DEMO_ROOMS - 1
    qiuli = mxid_of(rows, "邱莉")
    assert s.no_account == [f"邱莉（{qiuli}）"]
    # Not a server admin: the account listing is refused, so each person is looked up.
    assert first.ops.calls["list_accounts"] == 1
    assert first.ops.calls["profile"] == len(mxids(rows)) + 1  # and the bureau admin
    assert sorted(s.without_matrix_id) == ["易凤英（13807992004）", "马俊（13807992015）"]

    # --- the tree, read back through /hierarchy ----------------------------------------------
    reader = Reader(synapse, await bot_token(bot))
    async with bot.db.transaction() as session:
        kinds = {
            p.key: (p.room_id, info.kind)
            for p, info in (
                await session.execute(
                    select(ProvisionedRoom, RoomInfo).join(
                        RoomInfo, RoomInfo.room_id == ProvisionedRoom.room_id
                    )
                )
            ).all()
        }
    assert len(kinds) == DEMO_ROOMS
    province = next(rid for rid, kind in kinds.values() if kind == "province_space")
    tree = await reader.hierarchy(province)
    rooms = by_name(tree)
    assert len(tree) == DEMO_ROOMS
    prov, city, county = (
        rooms["江西省·交通运输安全生产网格"],
        rooms["萍乡市·交通运输安全生产网格"],
        rooms["芦溪县·交通运输安全生产网格"],
    )
    admin_room = rooms["网格通·管理员群"]
    assert prov["room_type"] == "m.space" and county["room_type"] == "m.space"
    # Invite only, no guests, in every room and space; strangers cannot walk in.
    assert {(r["join_rule"], r["guest_can_join"]) for r in tree} == {("invite", False)}
    stranger, stranger_pw = await make_user("stranger")
    walker = await nio_client(stranger, stranger_pw)
    assert isinstance(await walker.join(admin_room_id(rooms)), JoinError)
    assert children(prov) == {city["room_id"], admin_room["room_id"]}
    assert children(city) == {county["room_id"]}
    l1 = rooms["芦溪县·一级网格"]
    freight_space = rooms["芦溪县·道路货运网格"]
    freight = rooms["芦溪县·二级网格·道路货运"]
    assert children(county) == {
        l1["room_id"],
        *(
            rooms[f"芦溪县·{d}网格"]["room_id"]
            for d in ("道路客运", "道路货运", "港口航运", "渡口", "交通工程")
        ),
    }
    ganxi = rooms["芦溪县赣西物流有限公司·三级网格"]
    shunda = rooms["芦溪县顺达危险货物运输有限公司·三级网格"]
    hongyuan = rooms["芦溪县宏源货运有限公司·三级网格"]
    assert children(freight_space) == {
        freight["room_id"],
        ganxi["room_id"],
        shunda["room_id"],
        hongyuan["room_id"],
    }
    assert "邓国华" in freight["topic"] and "每季度" in freight["topic"]
    assert "周宏伟" in ganxi["topic"] and "易小军" in ganxi["topic"]
    assert "刘建国" in l1["topic"]

    # Parent links both ways, canonical, with via.
    ganxi_state = await reader.state(ganxi["room_id"])
    assert ganxi_state.parents == {
        freight_space["room_id"]: {"via": ["localhost"], "canonical": True}
    }

    # --- membership and power levels against the roster ------------------------------------
    who = {name: mxid_of(rows, name) for name in ("周宏伟", "吴丽华", "易小军", "邓国华", "林志明")}
    assert members(ganxi_state) == {
        bot.user_id,
        *(who[n] for n in ("周宏伟", "吴丽华", "易小军", "邓国华")),
    }
    pl = ganxi_state.power_levels or {}
    users = pl["users"]
    assert users == {who["邓国华"]: 50, who["易小军"]: 25, who["周宏伟"]: 10} | (
        {} if has_creator_power(ganxi_state.room_version) else {bot.user_id: 100}
    )
    assert pl["state_default"] == 50 and pl["events"]["m.room.power_levels"] == 100
    assert pl["events"]["m.room.name"] == 100 and pl["events"]["m.room.topic"] == 100
    assert pl["kick"] == 100 and pl["invite"] == 50 and pl["events_default"] == 0

    freight_state = await reader.state(freight["room_id"])
    assert members(freight_state) == {
        bot.user_id,
        *(mxid_of(rows, n) for n in ("邓国华", "刘芳", "易小军", "林志明")),
    }
    l1_state = await reader.state(l1["room_id"])
    l2_chiefs = {mxid_of(rows, n) for n in ("王志强", "邓国华", "胡卫东", "李红梅")}
    l1_people = {mxid_of(rows, n) for n in ("刘建国", "王志强", "陈晓燕", "黄磊")}
    assert members(l1_state) == {bot.user_id, *l2_chiefs, *l1_people}
    assert (l1_state.power_levels or {})["users"][mxid_of(rows, "刘建国")] == 50
    # 王志强 is both office director (25) and a level-2 chief (10): the higher one counts.
    assert (l1_state.power_levels or {})["users"][mxid_of(rows, "王志强")] == 25

    admin_state = await reader.state(admin_room["room_id"])
    assert members(admin_state) == {bot.user_id, admin}
    county_state = await reader.state(county["room_id"])
    assert admin in members(county_state) and who["吴丽华"] in members(county_state)
    assert qiuli not in members(county_state)
    assert (county_state.power_levels or {})["events_default"] == 100  # no chatting in spaces

    # Enterprise people may talk but not change the room.
    chief = await nio_client(who["周宏伟"], PASSWORD)
    await chief.join(ganxi["room_id"])
    await send_text(chief, ganxi["room_id"], "收到")
    resp = await chief.room_put_state(ganxi["room_id"], "m.room.topic", {"topic": "改一下"})
    assert isinstance(resp, RoomPutStateError)
    chief_l2 = await nio_client(who["邓国华"], PASSWORD)
    await chief_l2.join(ganxi["room_id"])
    resp = await chief_l2.room_put_state(ganxi["room_id"], "m.room.name", {"name": "x"})
    assert isinstance(resp, RoomPutStateError)  # the bot owns names: they come from the roster
    resp = await chief_l2.room_put_state(ganxi["room_id"], "m.room.avatar", {"url": "mxc://x/y"})
    assert isinstance(resp, RoomPutStateResponse)  # chiefs moderate (avatar, pins, redactions)

    # --- a second run changes nothing, with or without reading every room back --------------
    again = await provision(bot)
    assert again.ops.state_changes == 0, again.ops.calls
    assert again.ops.calls["get_state"] == 0  # the database knew nothing changed
    assert again.summary.unchanged == DEMO_ROOMS
    verified = await provision(bot, verify=True)
    assert verified.ops.state_changes == 0, verified.ops.calls
    assert verified.ops.calls["get_state"] == DEMO_ROOMS

    # --- the person without an account registers: the next run invites her ------------------
    assert again.summary.no_account == [f"邱莉（{qiuli}）"]
    await synapse.register(localpart(qiuli), PASSWORD)
    later = await provision(bot)
    assert later.summary.ok and later.summary.no_account == []
    invited_to = {room for room, user in later.summary.invited if user == qiuli}
    assert invited_to == {
        "芦溪县城乡公共交通有限公司·三级网格",
        "芦溪县·道路客运网格",
        "芦溪县·交通运输安全生产网格",
    }
    bus = rooms["芦溪县城乡公共交通有限公司·三级网格"]
    assert qiuli in members(await reader.state(bus["room_id"]), "invite")
    assert (await provision(bot)).ops.state_changes == 0


async def test_a_server_admin_bot_reads_accounts_in_one_listing(
    gridbot: BotFactory,
    make_user: MakeUser,
    synapse: Synapse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Made a homeserver admin, the bot learns who has an account from one admin-API listing
    instead of a profile lookup per person, with the same outcome: who has an account is
    invited, who has none is listed and invited by the run that finds the account."""
    bot, rows, admin = await demo_bot(
        gridbot, make_user, synapse, tmp_path, without_account=("邱莉",), server_admin=True
    )
    qiuli = mxid_of(rows, "邱莉")
    first = await provision(bot)
    assert first.summary.ok, first.summary.failed
    assert first.summary.no_account == [f"邱莉（{qiuli}）"]
    assert (first.ops.calls["list_accounts"], first.ops.calls["profile"]) == (1, 0)
    invited = {user for _, user in first.summary.invited}
    assert invited == (mxids(rows) | {admin}) - {qiuli}

    await synapse.register(localpart(qiuli), PASSWORD)
    later = await provision(bot)
    assert later.summary.ok and later.summary.no_account == []
    assert {user for _, user in later.summary.invited} == {qiuli}
    assert (later.ops.calls["list_accounts"], later.ops.calls["profile"]) == (1, 0)

    # On a homeserver with far more accounts than people to look up, a lookup each is cheaper.
    monkeypatch.setattr(provision_matrix, "ACCOUNT_PAGE", 5)
    moved = f"@qiuli-new-{uuid.uuid4().hex[:6]}:localhost"  # 邱莉 gets a new, unregistered id
    changed = yaml.safe_load(yaml.safe_dump(rows, allow_unicode=True).replace(qiuli, moved))
    await import_rows(bot, tmp_path, changed, "moved", D2)
    big = await provision(bot)
    assert big.summary.no_account == [f"邱莉（{moved}）"]
    assert (big.ops.calls["list_accounts"], big.ops.calls["profile"]) == (1, 1)


async def test_rooms_follow_roster_changes(
    gridbot: BotFactory,
    make_user: MakeUser,
    synapse: Synapse,
    nio_client: NioClientFactory,
    tmp_path: Path,
) -> None:
    bot, rows, _admin = await demo_bot(gridbot, make_user, synapse, tmp_path)
    assert (await provision(bot)).summary.ok
    reader = Reader(synapse, await bot_token(bot))
    province = await _room_of_kind(bot, "province_space")
    rooms = by_name(await reader.hierarchy(province))
    ganxi = rooms["芦溪县赣西物流有限公司·三级网格"]["room_id"]
    shunda = rooms["芦溪县顺达危险货物运输有限公司·三级网格"]["room_id"]
    freight_space = rooms["芦溪县·道路货运网格"]["room_id"]
    county = rooms["芦溪县·交通运输安全生产网格"]["room_id"]
    wu, yi, lin = (mxid_of(rows, n) for n in ("吴丽华", "易小军", "林志明"))

    # 吴丽华 joins her rooms, so her removal is a kick of a joined member.
    wu_client = await nio_client(wu, PASSWORD)
    for room in (ganxi, freight_space, county):
        await wu_client.join(room)

    # The roster changes: 吴丽华 leaves 赣西物流; 顺达 is reassigned from 易小军 to 林志明;
    # a new enterprise (新安物流) joins the freight grid, served by 易小军.
    newcomer = f"@xinan-{uuid.uuid4().hex[:6]}:localhost"
    await synapse.register(localpart(newcomer), PASSWORD)
    changed = [dict(r) for r in rows]
    for row in changed:
        if row["enterprise"] == "芦溪县赣西物流有限公司":
            row["ent_members"] = []
        if row["enterprise"] == "芦溪县顺达危险货物运输有限公司":
            row["l2_members"] = [f"林志明/13807991024/{lin}"]
    changed.append(
        {
            "county": "芦溪县",
            "domain": "道路货运",
            "l2_members": [f"易小军/13807991023/{yi}"],
            "enterprise": "芦溪县新安物流有限公司",
            "type": "货运",
            "ent_chief": f"程新安/13807993001/{newcomer}",
        }
    )
    await import_rows(bot, tmp_path, changed, "changed", D2)

    run = await provision(bot)
    s = run.summary
    assert s.ok, s.failed
    assert s.created == ["芦溪县新安物流有限公司·三级网格"]
    removed = {(room, user) for room, user in s.removed}
    assert {
        ("芦溪县赣西物流有限公司·三级网格", wu),
        ("芦溪县·道路货运网格", wu),
        ("芦溪县·交通运输安全生产网格", wu),
        ("芦溪县顺达危险货物运输有限公司·三级网格", yi),
    } == removed
    invited = set(s.invited)
    assert ("芦溪县顺达危险货物运输有限公司·三级网格", lin) in invited
    assert ("芦溪县新安物流有限公司·三级网格", newcomer) in invited
    assert ("芦溪县·道路货运网格", newcomer) in invited

    ganxi_state = await reader.state(ganxi)
    assert ganxi_state.members[wu].membership == "leave"
    assert ganxi_state.members[wu].sender == bot.user_id
    shunda_state = await reader.state(shunda)
    assert yi not in members(shunda_state) and lin in members(shunda_state)
    assert "林志明" in (shunda_state.topic or "") and "易小军" not in (shunda_state.topic or "")
    assert lin in (shunda_state.power_levels or {})["users"]
    assert yi not in (shunda_state.power_levels or {})["users"]
    tree = by_name(await reader.hierarchy(freight_space))
    assert "芦溪县新安物流有限公司·三级网格" in tree
    new_room = tree["芦溪县新安物流有限公司·三级网格"]["room_id"]
    assert members(await reader.state(new_room)) == {
        bot.user_id,
        newcomer,
        yi,
        mxid_of(rows, "邓国华"),
    }
    # 易小军 still serves 赣西物流: he stays in the freight grid's space and room.
    assert yi in members(await reader.state(freight_space))

    again = await provision(bot)
    assert again.ops.state_changes == 0, again.ops.calls


async def test_crash_half_way_is_finished_without_duplicates(
    gridbot: BotFactory, make_user: MakeUser, synapse: Synapse, tmp_path: Path
) -> None:
    bot, _rows, _admin = await demo_bot(gridbot, make_user, synapse, tmp_path)
    try:
        await provision(bot, ops_class=CrashAfter, rooms=12)
    except Crash:
        pass
    else:
        raise AssertionError("the injected crash did not happen")
    reader = Reader(synapse, await bot_token(bot))
    assert 12 <= len(await reader.joined_rooms()) < DEMO_ROOMS

    # The next run loses the answer to one createRoom: that room is reported failed, and the
    # run is left unfinished, so the one after looks for it instead of making it again.
    lossy = await provision(bot, ops_class=LoseAnswerAfter, rooms=3)
    assert len(lossy.summary.failed) >= 1
    # The room made just before the crash was never recorded: found by its key, not remade.
    assert len(lossy.summary.adopted) >= 1

    run = await provision(bot)
    s = run.summary
    assert s.ok, s.failed
    assert len(s.adopted) == 1  # the room whose answer was lost
    joined = await reader.joined_rooms()
    assert len(joined) == len(set(joined)) == DEMO_ROOMS
    tree = await reader.hierarchy(await _room_of_kind(bot, "province_space"))
    assert len(tree) == DEMO_ROOMS
    assert all(r.get("name") for r in tree)
    assert (await provision(bot)).ops.state_changes == 0


async def _room_of_kind(bot: BotUnderTest, kind: str) -> str:
    async with bot.db.transaction() as session:
        return str(await session.scalar(select(RoomInfo.room_id).where(RoomInfo.kind == kind)))


async def test_two_runs_at_once_make_each_room_once(
    gridbot: BotFactory, make_user: MakeUser, synapse: Synapse, tmp_path: Path
) -> None:
    """The bot's own run and `gridbot provision` from a shell can start together on a fresh
    database: both log in for the first time at once, then the lease lets one go first, and the
    other finds every room made and changes nothing."""
    bot, _rows, _admin = await demo_bot(gridbot, make_user, synapse, tmp_path)
    first, second = await asyncio.gather(provision(bot), provision(bot))
    reader = Reader(synapse, await bot_token(bot))
    assert first.summary.ok and second.summary.ok
    assert sorted([len(first.summary.created), len(second.summary.created)]) == [0, DEMO_ROOMS]
    assert min(first.ops.state_changes, second.ops.state_changes) == 0
    joined = await reader.joined_rooms()
    assert len(joined) == len(set(joined)) == DEMO_ROOMS


async def test_a_space_with_more_children_than_a_create_carries_gets_the_rest_put(
    gridbot: BotFactory,
    make_user: MakeUser,
    synapse: Synapse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A province's grid space links a thousand enterprises; one createRoom carrying them all
    outlasts the request timeout. With the limit at one link per createRoom, every space still
    ends with all its children, and a second run changes nothing."""
    monkeypatch.setattr(provision_apply, "CREATE_CHILD_LIMIT", 1)
    bot, _rows, _admin = await demo_bot(gridbot, make_user, synapse, tmp_path)
    first = await provision(bot)
    assert first.summary.ok, first.summary.failed
    # Without the limit: one put per room but the top space (its parent link). With it, also
    # every child link a space could not carry in its createRoom.
    assert first.ops.calls["put_state"] > DEMO_ROOMS - 1
    reader = Reader(synapse, await bot_token(bot))
    async with bot.db.transaction() as session:
        province = await session.scalar(
            select(RoomInfo.room_id).where(RoomInfo.kind == "province_space")
        )
    tree = await reader.hierarchy(str(province))
    assert len(tree) == DEMO_ROOMS  # every room reached from the top: no link is missing
    linked = sum(len(children(r)) for r in tree)
    assert linked == DEMO_ROOMS - 1
    again = await provision(bot)
    assert again.ops.state_changes == 0, again.ops.calls

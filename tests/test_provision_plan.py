"""The room plan and the state diff, without a homeserver: layout, members, power levels, and
which requests a difference turns into."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from bot.config import parse_config
from bot.provision.cli import load_plan
from bot.provision.plan import (
    ADMIN_ROOM,
    CHIEF,
    COUNTY_SPACE,
    DEPUTY,
    ENTERPRISE_ROOM,
    GRID_SPACE,
    L1_ROOM,
    L2_ROOM,
    STAFF,
    build_plan,
)
from bot.provision.roster import load_roster
from bot.provision.state import (
    Desired,
    Invite,
    Kick,
    Member,
    PutState,
    RoomState,
    diff,
    has_creator_power,
    parse_state,
    power_levels,
)
from bot.provision.texts import TemplateTexts
from bot.roster.apply import import_roster
from bot.sandbox import DEMO_ROSTER
from messages import Messages
from storage import admins as admin_store
from storage.db import Database

BOT = "@gridbot:localhost"
ADMIN = "@admin:localhost"
DEMO = Path(str(DEMO_ROSTER))  # tests run from the checkout: a plain file


def mx(name: str) -> str:
    return f"@{name}:localhost"


async def demo_plan(db: Database):  # type: ignore[no-untyped-def]
    result = await import_roster(db, DEMO, today=date(2026, 1, 5))
    assert not result.errors
    async with db.transaction() as s:
        roster = await load_roster(s)
    texts = TemplateTexts(Messages(), "zh_CN")
    return build_plan(roster, admins=[ADMIN, BOT], bot_user_id=BOT, texts=texts)


async def test_demo_plan_layout_and_members(sqlite_db: Database) -> None:
    plan = await demo_plan(sqlite_db)
    kinds = [s.kind for s in plan.rooms.values()]
    assert kinds.count(ENTERPRISE_ROOM) == 15 and kinds.count(GRID_SPACE) == 5
    assert kinds.count(L2_ROOM) == 5 and kinds.count(L1_ROOM) == 1 and len(kinds) == 30
    # Parents always come before their children.
    seen: set[str] = set()
    for key, spec in plan.rooms.items():
        assert set(spec.parents) <= seen, key
        seen.add(key)
    by_name = {s.name: s for s in plan.rooms.values()}
    ganxi = by_name["芦溪县赣西物流有限公司·三级网格"]
    assert ganxi.members == {
        mx("dengguohua"): CHIEF,
        mx("yixiaojun"): DEPUTY,
        mx("zhouhongwei"): STAFF,
        mx("wulihua"): 0,
    }
    space = plan.rooms[ganxi.parents[0]]
    assert space.kind == GRID_SPACE and space.name == "芦溪县·道路货运网格"
    assert space.members[mx("dengguohua")] == CHIEF and space.members[ADMIN] == CHIEF
    assert space.members[mx("wulihua")] == 0
    admin_room = plan.rooms[ADMIN_ROOM]
    assert admin_room.members == {ADMIN: CHIEF}  # the bot is never a planned member
    # The admin room hangs under the top space (the province here), which has no parent.
    (top_key,) = admin_room.parents
    assert top_key.startswith("province_space:") and plan.rooms[top_key].parents == ()
    county = next(s for s in plan.rooms.values() if s.kind == COUNTY_SPACE)
    assert county.members[mx("liujianguo")] == CHIEF
    # Upper spaces show the tree to the level-1 leadership only.
    top = plan.rooms[admin_room.parents[0]]
    assert mx("liujianguo") in top.members and mx("wulihua") not in top.members
    assert "易凤英（13807992004）" in plan.without_matrix_id
    assert plan.names[mx("wulihua")] == "吴丽华"


async def test_fingerprint_follows_the_rooms_not_unrelated_fields(sqlite_db: Database) -> None:
    first = await demo_plan(sqlite_db)
    again = await demo_plan(sqlite_db)
    assert first.fingerprint() == again.fingerprint()


def _desired(**overrides: object) -> Desired:
    values: dict[str, object] = {
        "name": "N",
        "topic": "T",
        "power_levels": {"users": {"@a:x": 50}},
        "parents": {"!p:x": {"via": ["x"], "canonical": True}},
        "children": {},
        "invite": frozenset({"@a:x", "@b:x"}),
        "keep": frozenset({"@a:x", "@b:x", "@ghost:x"}),
    }
    values.update(overrides)
    return Desired(**values)  # type: ignore[arg-type]


def test_no_difference_no_request() -> None:
    want = _desired()
    have = RoomState(
        name="N",
        topic="T",
        power_levels={"users": {"@a:x": 50}},
        parents={"!p:x": {"via": ["x"], "canonical": True}},
        members={"@a:x": Member("join", "@a:x"), "@b:x": Member("invite", BOT)},
    )
    d = diff(want, have, {"@a:x", "@b:x"}, bot_user_id=BOT)
    assert d.requests == 0 and not d.adopt and not d.forget


def test_differences_become_minimal_requests() -> None:
    want = _desired(children={"!c:x": {"via": ["x"], "order": "30"}})
    have = RoomState(
        name="old",
        topic="T",
        power_levels={"users": {}},
        parents={"!p:x": {"via": ["x"], "canonical": True}, "!old:x": {"via": ["x"]}},
        members={
            "@a:x": Member("join", "@a:x"),  # in the room, not yet managed: adopt
            "@gone:x": Member("join", "@gone:x"),  # added by the bot, left the roster: kick
            "@guest:x": Member("join", "@guest:x"),  # invited by a chief: left alone
        },
    )
    d = diff(want, have, {"@gone:x"}, bot_user_id=BOT)
    assert PutState("m.room.name", "", {"name": "N"}) in d.puts
    assert PutState("m.room.power_levels", "", {"users": {"@a:x": 50}}) in d.puts
    assert PutState("m.space.parent", "!old:x", {}) in d.puts
    assert PutState("m.space.child", "!c:x", {"via": ["x"], "order": "30"}) in d.puts
    assert len(d.puts) == 4
    assert d.invites == [Invite("@b:x")] and d.kicks == [Kick("@gone:x")]
    assert d.adopt == ["@a:x"]


def test_who_declined_is_not_invited_again_unless_asked() -> None:
    want = _desired()
    have = RoomState(
        name="N",
        topic="T",
        power_levels={"users": {"@a:x": 50}},
        parents={"!p:x": {"via": ["x"], "canonical": True}},
        members={"@a:x": Member("join", "@a:x"), "@b:x": Member("leave", "@b:x")},
    )
    d = diff(want, have, {"@a:x", "@b:x"}, bot_user_id=BOT)
    assert d.invites == [] and d.declined == ["@b:x"]
    d = diff(want, have, {"@a:x", "@b:x"}, bot_user_id=BOT, reinvite=True)
    assert d.invites == [Invite("@b:x")]


def test_power_levels_by_room_version() -> None:
    from bot.provision.plan import RoomSpec

    spec = RoomSpec("k", ENTERPRISE_ROOM, "n", "t", members={"@c:x": CHIEF, "@m:x": 0})
    v12 = power_levels(spec, BOT, "12")
    v10 = power_levels(spec, BOT, "10")
    assert v12["users"] == {"@c:x": CHIEF}  # v12: the creator must not be listed
    assert v10["users"] == {"@c:x": CHIEF, BOT: 100}
    assert v12["events"]["m.room.tombstone"] == 150 and v10["events"]["m.room.tombstone"] == 100
    assert has_creator_power("12") and not has_creator_power("11") and not has_creator_power(None)
    assert v12["events_default"] == 0 and v12["state_default"] == 50


def test_parse_state_reads_links_and_members() -> None:
    state = parse_state(
        [
            {"type": "m.room.create", "state_key": "", "content": {"room_version": "12"}},
            {"type": "m.space.child", "state_key": "!a:x", "content": {"via": ["x"]}},
            {"type": "m.space.child", "state_key": "!gone:x", "content": {}},
            {
                "type": "m.room.member",
                "state_key": "@u:x",
                "sender": BOT,
                "content": {"membership": "invite"},
            },
        ]
    )
    assert state.room_version == "12" and state.children == {"!a:x": {"via": ["x"]}}
    assert state.members == {"@u:x": Member("invite", BOT)}


async def test_bookkeeping_on_sqlite_and_postgresql(db: Database) -> None:
    """The 0003 tables and the Writer's batched bookkeeping work on both backends."""
    from bot.provision import store
    from bot.provision.plan import RoomSpec
    from storage.models import Enterprise, RoomInfo, StaffChange

    await import_roster(db, DEMO, today=date(2026, 1, 5))
    writer = store.Writer(db, batch=2)
    room = RoomSpec("enterprise_room:1", ENTERPRISE_ROOM, "n", "t", enterprise_id=1, grid_id=2)
    space = RoomSpec("grid_space:2", GRID_SPACE, "n", "t", grid_id=2)
    await writer.record_room(room, "!a:x", "12", ["@u:x", "@v:x"])
    await writer.record_room(space, "!b:x", "12", [])  # fills a batch
    await writer.record_room(room, "!a:x", "12", [])  # recorded: no-op
    await writer.finish_room(
        room,
        "!a:x",
        added=["@w:x"],
        removed=["@u:x"],
        state_hash="h1",
        room_version="12",
        ids_changed=False,
    )
    await writer.flush()
    await store.save_accounts(db, {"@u:x": True, "@ghost:x": False})
    await store.save_accounts(db, {"@ghost:x": True})
    snap = await store.load(db)
    assert snap.rooms["enterprise_room:1"].room_id == "!a:x"
    assert snap.rooms["enterprise_room:1"].state_hash == "h1"
    assert snap.rooms["grid_space:2"].state_hash is None
    assert snap.managed == {"!a:x": {"@v:x", "@w:x"}}
    assert snap.accounts == {"@u:x": True, "@ghost:x": True}

    async with db.transaction() as s:
        assert (await s.get(RoomInfo, "!a:x")).kind == ENTERPRISE_ROOM  # type: ignore[union-attr]
        ent = await s.get(Enterprise, 1)
        assert ent is not None
        s.add(
            StaffChange(
                enterprise_id=ent.id,
                room_id="!a:x",
                requested_by="@u:x",
                request_event_id="$e",
                items=[
                    {"action": "leave", "person_id": 1, "name": "张敏", "kinds": ["ent_member"]}
                ],
            )
        )
        store.request_provisioning(s, "test")
    async with db.transaction() as s:
        change = await s.get(StaffChange, 1)
        assert change is not None and change.status == "pending" and change.code == "S-1"
        assert change.items[0]["name"] == "张敏"
    pending = await store.pending_requests(db)
    assert len(pending) == 1
    await store.mark_requests_done(db, pending)
    assert await store.pending_requests(db) == []


async def test_admins_named_in_chat_are_in_the_admin_room_for_bot_and_cli(
    sqlite_db: Database,
) -> None:
    """``gridbot provision`` (its --plan here) and the bot's worker read one list: bot.yaml's
    admins and those added with /admin add, county or not, are the admin room's members;
    removed in chat, one is out of it again. Only bot.yaml's moderate the spaces."""
    await demo_plan(sqlite_db)  # the demo roster imported
    now = datetime.now(UTC)
    async with sqlite_db.transaction() as s:
        county = await admin_store.unit_named(s, "芦溪县")
        assert county is not None
        await admin_store.add_admin(s, mx("li"), county[0], ADMIN, now)
        await admin_store.add_admin(s, mx("wang"), None, ADMIN, now)
    config = parse_config(
        {"homeserver": "http://x", "user_id": BOT, "password": "x", "admins": [ADMIN]}
    )
    plan = await load_plan(sqlite_db, config)
    assert plan.rooms[ADMIN_ROOM].members == {ADMIN: CHIEF, mx("li"): CHIEF, mx("wang"): CHIEF}
    spaces = [s for s in plan.rooms.values() if s.is_space]
    assert spaces and all(ADMIN in s.members for s in spaces)
    assert not any({mx("li"), mx("wang")} & set(s.members) for s in spaces)

    async with sqlite_db.transaction() as s:
        await admin_store.remove_admin(s, mx("li"))
    plan = await load_plan(sqlite_db, config)
    assert plan.rooms[ADMIN_ROOM].members == {ADMIN: CHIEF, mx("wang"): CHIEF}

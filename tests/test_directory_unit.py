"""The grid directory (storage/directory.py): reach per action and role, the room tie-break,
people each once, one set of role labels, and README tables generated from the rules."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from sqlalchemy import select

import handlers.basics.cancel
import handlers.cases.requests
import handlers.notices.issue
import handlers.visits.reminders
import handlers.visits.visit
from bot import permissions
from bot.app import build_router
from messages import LOCALES, Messages
from storage import directory as D
from storage.db import Database
from storage.directory import ADMIN, Action, Identity, Place, Reach, RoleView
from storage.models import Enterprise, Grid, OutboxMessage, Person, Role, RoleKind, RoomInfo
from storage.visits import Visit
from tests.case_seed import GANXI, TONGDA, fake_mxids, seed_case_grid
from tests.dispatch_harness import DispatchHarness
from tests.dispatch_harness import test_config as harness_config

SINCE = date(2026, 1, 1)

# --- reach: a county of two level-2 grids, and a second county ---------------------------------
#
#   level-1 grid 1 ── level-2 grid 10: enterprises 100, 101
#                 └── level-2 grid 11: enterprise 110
#   level-1 grid 2 ── level-2 grid 20: enterprise 200
# The member serves 100 and 110 (across grids, so "served" differs from "level-2 grid").

L1 = Grid(id=1, level=1, parent_id=None, name="芦溪县一级网格", active=True)
L1_OTHER = Grid(id=2, level=1, parent_id=None, name="湘东区一级网格", active=True)
FREIGHT = Grid(id=10, level=2, parent_id=1, name="芦溪县二级网格·道路货运", active=True)
PASSENGER = Grid(id=11, level=2, parent_id=1, name="芦溪县二级网格·道路客运", active=True)
PORT = Grid(id=20, level=2, parent_id=2, name="湘东区二级网格·港航", active=True)
ENTERPRISES = {
    100: Enterprise(id=100, grid_id=10, name="甲物流", active=True),
    101: Enterprise(id=101, grid_id=10, name="乙货运", active=True),
    110: Enterprise(id=110, grid_id=11, name="丙客运站", active=True),
    200: Enterprise(id=200, grid_id=20, name="丁港务", active=True),
}
PLACES = {
    100: Place(100, 10, 1),
    101: Place(101, 10, 1),
    110: Place(110, 11, 1),
    200: Place(200, 20, 2),
}
COUNTY = {100, 101, 110}
GRID_10 = {100, 101}
SERVED = {100, 110}
OWN = {100}
ALL = set(PLACES)

# Where each kind's one role sits in the sample identities.
ANCHOR: dict[str, tuple[Grid | None, Enterprise | None]] = {
    RoleKind.L1_CHIEF: (L1, None),
    RoleKind.L1_OFFICE_DIRECTOR: (L1, None),
    RoleKind.L1_OFFICE_MEMBER: (L1, None),
    RoleKind.L2_CHIEF: (FREIGHT, None),
    RoleKind.L2_OFFICE_MEMBER: (FREIGHT, None),
    RoleKind.L2_MEMBER: (FREIGHT, None),
    RoleKind.ENT_CHIEF: (None, ENTERPRISES[100]),
    RoleKind.ENT_MEMBER: (None, ENTERPRISES[100]),
}
KINDS = [ADMIN, *ANCHOR]


def identity(*kinds: str) -> Identity:
    ident = Identity(user_id="@x:localhost", person=Person(id=1, name="某人"))
    for kind in kinds:
        if kind == ADMIN:
            ident.is_admin = True
            continue
        grid, ent = ANCHOR[kind]
        ident.roles.append(RoleView(kind, grid, ent, None, SINCE))
        if kind == RoleKind.L2_MEMBER:
            ident.served = [ENTERPRISES[i] for i in sorted(SERVED)]
    return ident


def covered(r: Reach) -> set[int]:
    return {eid for eid, place in PLACES.items() if r.covers(place)}


L1_KINDS = [RoleKind.L1_CHIEF, RoleKind.L1_OFFICE_DIRECTOR, RoleKind.L1_OFFICE_MEMBER]
# Today's behaviour of every call site, per action: role kind → enterprises reached.
EXPECTED: dict[Action, dict[str, set[int]]] = {
    Action.SEE: {
        ADMIN: ALL,
        **dict.fromkeys(L1_KINDS, COUNTY),
        RoleKind.L2_CHIEF: GRID_10,
        RoleKind.L2_OFFICE_MEMBER: GRID_10,
        RoleKind.L2_MEMBER: SERVED,
        RoleKind.ENT_CHIEF: OWN,
        RoleKind.ENT_MEMBER: OWN,
    },
    Action.REPORT: {
        RoleKind.L2_CHIEF: GRID_10,
        RoleKind.L2_OFFICE_MEMBER: GRID_10,
        RoleKind.L2_MEMBER: SERVED,
        RoleKind.ENT_CHIEF: OWN,
        RoleKind.ENT_MEMBER: OWN,
    },
    Action.BROADCAST: {ADMIN: ALL, **dict.fromkeys(L1_KINDS, COUNTY)},
    Action.NOTICE: {RoleKind.L2_CHIEF: GRID_10, RoleKind.L2_MEMBER: SERVED},
    Action.REMIND: {
        ADMIN: ALL,
        **dict.fromkeys(L1_KINDS, COUNTY),
        RoleKind.L2_CHIEF: GRID_10,
        RoleKind.L2_MEMBER: SERVED,
    },
    Action.OVERSEE: {
        ADMIN: ALL,
        **dict.fromkeys(L1_KINDS, COUNTY),
        RoleKind.L2_CHIEF: GRID_10,
        RoleKind.L2_OFFICE_MEMBER: GRID_10,
        RoleKind.L2_MEMBER: SERVED,
    },
    Action.VISIT: {RoleKind.L2_MEMBER: SERVED},
    Action.COVERAGE: {
        ADMIN: ALL,
        **dict.fromkeys(L1_KINDS, COUNTY),
        RoleKind.L2_CHIEF: GRID_10,
        RoleKind.L2_OFFICE_MEMBER: GRID_10,
    },
    Action.DECLARE_STAFF: {RoleKind.ENT_CHIEF: OWN, RoleKind.ENT_MEMBER: OWN},
    Action.DECIDE_STAFF: {RoleKind.L2_MEMBER: SERVED, RoleKind.L2_CHIEF: GRID_10},
    Action.REVIEW: {
        ADMIN: ALL,
        **dict.fromkeys(L1_KINDS, COUNTY),
        RoleKind.L2_CHIEF: GRID_10,
        RoleKind.L2_OFFICE_MEMBER: GRID_10,
        RoleKind.L2_MEMBER: SERVED,
    },
    Action.ADMINISTER: {ADMIN: ALL},
}


def test_a_county_admin_reaches_their_county_only() -> None:
    ident = identity(ADMIN)
    ident.admin_grids = frozenset({L1.id})
    for action in (Action.ADMINISTER, Action.BROADCAST, Action.SEE):
        assert covered(D.reach(ident, action)) == COUNTY
    ident.admin_grids = frozenset({L1_OTHER.id})
    assert covered(D.reach(ident, Action.ADMINISTER)) == ALL - COUNTY


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("kind", KINDS)
def test_reach_of_each_role_for_each_action(action: Action, kind: str) -> None:
    ident = identity(kind)
    r = D.reach(ident, action)
    assert covered(r) == EXPECTED[action].get(kind, set())
    assert r.empty == (kind not in EXPECTED[action])
    for eid, place in PLACES.items():
        assert D.may(ident, action, place) == (eid in covered(r))
    # Command access rules read the same table.
    assert (kind in D.roles_for(action)) == (kind in EXPECTED[action])


def test_reach_of_several_roles_is_the_union_and_capacity_names_the_roles_at_a_place() -> None:
    # An office director of level 1 who is also the chief of the passenger grid.
    ident = identity(RoleKind.L1_OFFICE_DIRECTOR)
    ident.roles.append(RoleView(RoleKind.L2_CHIEF, PASSENGER, None, None, SINCE))
    assert covered(D.reach(ident, Action.NOTICE)) == {110}
    assert covered(D.reach(ident, Action.REMIND)) == COUNTY
    assert covered(D.reach(ident, Action.BROADCAST) | D.reach(ident, Action.NOTICE)) == COUNTY
    at_station = D.capacity_at(ident, PLACES[110])
    assert at_station.l2_chief and at_station.l1_office and at_station.chief
    assert not (at_station.serves or at_station.ent_staff or at_station.admin)
    assert at_station.may(Action.NOTICE) and at_station.sees
    at_freight = D.capacity_at(ident, PLACES[100])
    assert at_freight.l1_office and not at_freight.l2_chief and not at_freight.may(Action.NOTICE)
    assert not D.capacity_at(ident, PLACES[200]).sees

    member = identity(RoleKind.L2_MEMBER)
    st = D.capacity_at(member, PLACES[110])
    assert st.serves and st.l2_handler and not st.l2_chief
    assert D.capacity_at(member, PLACES[101]).kinds == frozenset()
    assert [e.id for e in D.at_hand(member, Action.VISIT)] == [100, 110]
    assert D.at_hand(identity(RoleKind.ENT_CHIEF), Action.VISIT) == []
    assert [e.id for e in D.at_hand(identity(RoleKind.ENT_CHIEF), Action.REPORT)] == [100]


# --- queries against a database ---------------------------------------------------------------


async def _room(
    db: Database,
    room_id: str,
    kind: str,
    *,
    ts: int | None,
    enterprise_id: int | None = None,
    grid_id: int | None = None,
    left: bool = False,
) -> None:
    async with db.transaction() as s:
        s.add(
            RoomInfo(
                room_id=room_id,
                kind=kind,
                enterprise_id=enterprise_id,
                grid_id=grid_id,
                joined_ts=ts,
                left=left,
            )
        )


async def test_room_tie_break_newest_join_among_rooms_not_left(db: Database) -> None:
    grid = await seed_case_grid(db, fake_mxids())
    ganxi, tongda, l2 = grid.ganxi, grid.tongda, grid.grids["l2"]
    await _room(db, "!a-old:x", "enterprise_room", ts=1_000, enterprise_id=ganxi)
    await _room(db, "!b-new:x", "enterprise_room", ts=2_000, enterprise_id=ganxi)
    await _room(db, "!c-left:x", "enterprise_room", ts=3_000, enterprise_id=ganxi, left=True)
    await _room(db, "!0-never:x", "enterprise_room", ts=None, enterprise_id=ganxi)
    # Same join time: the room id decides, so the answer never changes between calls.
    await _room(db, "!t2:x", "enterprise_room", ts=5_000, enterprise_id=tongda)
    await _room(db, "!t1:x", "enterprise_room", ts=5_000, enterprise_id=tongda)
    # A room never joined counts only when there is no other.
    await _room(db, "!l2-never:x", "l2_room", ts=None, grid_id=l2)
    async with db.transaction() as s:
        assert await D.room_of(s, D.ENTERPRISE_ROOM, ganxi) == "!b-new:x"
        assert await D.rooms_of(s, D.ENTERPRISE_ROOM, [ganxi, tongda, 999]) == {
            ganxi: "!b-new:x",
            tongda: "!t1:x",
        }
        assert await D.room_of(s, D.L2_ROOM, l2) == "!l2-never:x"
        assert await D.room_of(s, D.L1_ROOM, grid.grids["l1"]) is None
        assert await D.room_of(s, D.L1_ROOM, None) is None
    await _room(db, "!l2-joined:x", "l2_room", ts=10, grid_id=l2)
    async with db.transaction() as s:
        assert await D.room_of(s, D.L2_ROOM, l2) == "!l2-joined:x"
        circle = await D.circle_of(s, ganxi)
        assert (circle.ent_room, circle.l2_room, circle.l1_room) == (
            "!b-new:x",
            "!l2-joined:x",
            None,
        )


async def test_people_come_once_each_and_circle_names_everyone_around(db: Database) -> None:
    mx = fake_mxids()
    grid = await seed_case_grid(db, mx)
    async with db.transaction() as s:
        # The level-1 office director 周芳 is also a level-2 chief, and a level-1 office member.
        fang = await s.scalar(select(Person).where(Person.name == "周芳"))
        assert fang is not None
        s.add_all(
            [
                Role(
                    person_id=fang.id, kind=RoleKind.L2_CHIEF, grid_id=grid.grids["l2"], since=SINCE
                ),
                Role(
                    person_id=fang.id,
                    kind=RoleKind.L1_OFFICE_MEMBER,
                    grid_id=grid.grids["l1"],
                    since=SINCE,
                ),
            ]
        )
    async with db.transaction() as s:
        office = await D.holders(s, D.L1_OFFICE, grid_id=grid.grids["l1"])
        assert [c.name for c in office] == ["周芳"]
        circle = await D.circle_of(s, grid.ganxi)
        assert circle.enterprise.name == GANXI
        assert [c.user_id for c in circle.staff] == [mx["entchief"], mx["entmember"]]
        assert [c.user_id for c in circle.members] == [mx["member"]]
        assert {c.name for c in circle.l2_chiefs} == {"李卫东", "周芳"}
        assert [c.user_id for c in circle.l2_office] == [mx["l2office"]]
        assert [c.user_id for c in circle.l1_chiefs] == [mx["l1chief"]]
        assert [c.user_id for c in circle.l1_office] == [mx["l1office"]]
        everyone = D.unite(circle.l1_chiefs, circle.l1_office, circle.l2_chiefs)
        assert [c.name for c in everyone].count("周芳") == 1
        assert [c.name for c in everyone] == ["王建国", "周芳", "李卫东"]

        # Who may confirm a staff change: the members serving it, then the level-2 chiefs.
        place = await D.place_of(s, grid.tongda)
        who = await D.people_who_may(s, Action.DECIDE_STAFF, place)
        assert who[0].user_id == mx["member_b"]
        assert {c.user_id for c in who[1:]} == {mx["l2chief"], mx["l1office"]} and len(who) == 3

        by_ent = await D.serving_members_by_enterprise(s, [grid.ganxi, grid.tongda])
        assert {k: [c.name for c in v] for k, v in by_ent.items()} == {
            grid.ganxi: ["张敏"],
            grid.tongda: ["赵磊"],
        }
        contacts = await D.enterprise_contacts(s, [grid.ganxi, grid.tongda])
        assert {k: [c.name for c in v] for k, v in contacts.items()} == {
            grid.ganxi: ["刘强"],
            grid.tongda: ["陈亮"],
        }

        member = await D.identify(s, mx["member"], frozenset())
        assert await D.enterprise_ids_in(s, D.reach(member, Action.SEE)) == {grid.ganxi}
        chief = await D.identify(s, mx["l1chief"], frozenset())
        county = {grid.ganxi, grid.tongda}
        assert await D.enterprise_ids_in(s, D.reach(chief, Action.SEE)) == county
        pool = await D.enterprises_in(s, D.reach(chief, Action.BROADCAST), by_name=True)
        assert sorted(e.name for e in pool) == sorted([GANXI, TONGDA])
        assert all(e.unit is not None and e.grid is not None for e in pool)
        grids = await D.level2_grids_in(s, D.reach(chief, Action.COVERAGE))
        assert [g.id for g in grids] == [grid.grids["l2"]]
        admin = await D.identify(s, "@admin:localhost", frozenset({"@admin:localhost"}))
        assert await D.enterprise_ids_in(s, D.reach(admin, Action.SEE)) is None
        assert await D.enterprise_ids_in(s, D.reach(admin, Action.REPORT)) == set()


# --- an enterprise given a second, newer room ------------------------------------------------

TZ = ZoneInfo("Asia/Shanghai")
OLD, NEW, LEFT = "!ganxi-a-old:localhost", "!ganxi-b-new:localhost", "!ganxi-c-left:localhost"
L2_OLD, L2_NEW = "!l2-a-old:localhost", "!l2-b-new:localhost"


async def test_everything_about_an_enterprise_goes_to_its_newest_room(db: Database) -> None:
    mx = fake_mxids()
    grid = await seed_case_grid(db, mx)
    for key in ("l1chief", "member", "entchief"):
        await _room(db, f"!dm-{key}:localhost", "direct", ts=None)
    # The old rooms sort first by id (the old tie-break picked them); the new ones were joined
    # later; the bot has left a third, even newer one.
    await _room(db, OLD, "enterprise_room", ts=1_000, enterprise_id=grid.ganxi)
    await _room(db, NEW, "enterprise_room", ts=2_000, enterprise_id=grid.ganxi)
    await _room(db, LEFT, "enterprise_room", ts=3_000, enterprise_id=grid.ganxi, left=True)
    await _room(db, L2_OLD, "l2_room", ts=1_000, grid_id=grid.grids["l2"])
    await _room(db, L2_NEW, "l2_room", ts=2_000, grid_id=grid.grids["l2"])
    modules = [
        handlers.notices.issue,
        handlers.cases.requests,
        handlers.visits.visit,
        handlers.visits.reminders,
        handlers.basics.cancel,
    ]
    h = DispatchHarness(db, modules, harness_config())

    def dm(key: str) -> str:
        return f"!dm-{key}:localhost"

    with time_machine.travel(datetime(2026, 11, 19, 10, 0, tzinfo=TZ), tick=False) as clock:
        await h.scheduler.tick()  # plans the month's visit reminders
        clock.move_to(datetime(2026, 11, 20, 9, 0, 30, tzinfo=TZ))
        await h.scheduler.tick()  # the 20th's reminder: 张敏 has not visited 赣西物流 yet
        # A notice from the level-1 chief, a request from the enterprise, a member's visit.
        await h.say(mx["l1chief"], "/群发 货运\n关于做好冬季运输安全的通知", room=dm("l1chief"))
        await h.say(mx["l1chief"], "确认", room=dm("l1chief"))
        await h.say(mx["entchief"], "/上报 仓库门口积水，车辆无法进出", room=dm("entchief"))
        await h.say(mx["member"], "/visit 赣西物流 查了监控，无问题", room=dm("member"))
        await h.say(mx["member"], "确认", room=dm("member"))

    async with db.transaction() as s:
        rows = list(
            await s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.event_type == "m.room.message")  # not the tap reactions
                .order_by(OutboxMessage.id)
            )
        )
        visit = await s.scalar(select(Visit))
    by_room: dict[str, list[str]] = {}
    for r in rows:
        by_room.setdefault(r.room_id, []).append(r.content["body"])
    assert not {OLD, LEFT, L2_OLD} & set(by_room), sorted(by_room)
    new = "\n".join(by_room[NEW])
    assert "【部署要求】N-2026-0001" in new  # the notice
    assert "E-2026-0001" in new  # the request's home thread
    assert "V-2026-0001" in new  # the visit record
    l2 = "\n".join(by_room[L2_NEW])
    assert "张敏" in l2 and GANXI in l2  # the visit reminder
    assert "N-2026-0001" in l2  # the notice's copy for the level-2 grid
    assert "E-2026-0001" in l2  # the request alert for the serving member
    assert visit is not None and visit.posted_room_id == NEW
    async with db.transaction() as s:
        assert await D.room_of(s, D.ENTERPRISE_ROOM, grid.ganxi) == NEW


# --- labels and the README -------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
def test_templates_name_roles_as_the_one_mapping_does(locale: str) -> None:
    messages = Messages()
    for kind in D.ROLE_LABELS:
        assert messages.label(locale, "role", kind) == D.role_label(kind, locale)
    assert D.role_label("unknown", locale) == "unknown"
    whoami = messages.render(
        locale,
        "whoami",
        user_id="@a:x",
        name="甲",
        phone=None,
        is_admin=True,
        roles=[],
        l1_member_of=["芦溪县一级网格"],
        served=[],
    ).plain
    assert D.role_label(ADMIN, locale) in whoami and D.role_label(D.L1_MEMBER, locale) in whoami


def test_readme_permission_tables_are_generated_from_the_code() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert permissions.render(readme, build_router().commands) == readme, (
        "README.md is out of date: run python -m bot.permissions"
    )


def test_actions_are_documented_with_commands_that_exist() -> None:
    names = {c.name for c in build_router().commands}
    for action in Action:
        doc = D.ACTION_DOCS[action]
        quoted = [w.strip("`(),") for w in doc.split() if w.strip("(),").startswith("`/")]
        assert all(q.lstrip("/") in names for q in quoted), (action, quoted)


def test_the_directory_imports_nothing_from_bot_or_handlers() -> None:
    text = Path(D.__file__).read_text(encoding="utf-8")
    assert "from bot" not in text and "import bot" not in text
    assert "from handlers" not in text and "import handlers" not in text


def test_reach_or_and_empty() -> None:
    assert Reach().empty and not Reach(enterprises=frozenset({1})).empty
    both = Reach(l1_grids=frozenset({1})) | Reach(everything=True)
    assert both.everything and both.l1_grids == frozenset({1})

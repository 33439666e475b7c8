"""Staff-change declarations: parsing and the checks against the current staff (no homeserver)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from sqlalchemy import select

import handlers.staff.commands
from bot.errors import UserError
from handlers.staff.declaration import (
    StaffError,
    _join,
    _leave,
    check,
    code_of,
    declare,
    may_withdraw,
    parse_code,
    split_items,
    still_to_apply,
)
from storage.db import Database
from storage.models import OutboxMessage, RoleKind, StaffChange
from storage.staff_changes import JOIN, LEAVE, Staffer
from tests.dispatch_harness import DispatchHarness
from tests.roster_seed import set_room
from tests.visits_seed import GANXI, fake_mxids, seed_visit_grid

STAFF = [
    Staffer(1, "刘强", "13800000004", "@liu:x", RoleKind.ENT_CHIEF),
    Staffer(2, "陈红", "13800000005", "@chen:x", RoleKind.ENT_MEMBER),
    Staffer(3, "张敏", "13800000006", None, RoleKind.ENT_MEMBER),
    Staffer(4, "张敏", "13800000007", None, RoleKind.ENT_MEMBER),
]


def reason(fn, *args):  # type: ignore[no-untyped-def]
    with pytest.raises(StaffError) as err:
        fn(*args)
    return err.value.reason


def test_items_split_on_lines_and_semicolons() -> None:
    text = "离开 陈红；加入 企业网格员 周新 13900000009\njoin ent_member Li @li:x"
    assert split_items(text) == [
        ["离开", "陈红"],
        ["加入", "企业网格员", "周新", "13900000009"],
        ["join", "ent_member", "Li", "@li:x"],
    ]


def test_leave_matches_name_phone_or_matrix_id() -> None:
    assert _leave(["陈红"], STAFF)["person_id"] == 2
    assert _leave(["@liu:x"], STAFF) == {
        "action": LEAVE,
        "person_id": 1,
        "name": "刘强",
        "kinds": [RoleKind.ENT_CHIEF],
    }
    assert _leave(["13800000007"], STAFF)["person_id"] == 4
    assert reason(_leave, ["张敏"], STAFF) == "ambiguous"
    assert reason(_leave, ["王五"], STAFF) == "not_found"


def test_join_needs_role_name_and_a_contact() -> None:
    item = _join(["企业负责人", "王五", "13900000001", "@wang:x"], "line")
    assert item == {
        "action": JOIN,
        "kind": RoleKind.ENT_CHIEF,
        "name": "王五",
        "phone": "13900000001",
        "matrix_id": "@wang:x",
    }
    assert reason(_join, ["厂长", "王五", "139"], "l") == "unknown_role"
    assert reason(_join, ["网格员", "王五"], "l") == "no_contact"
    assert reason(_join, ["网格员", "王五", "@Bad Id"], "l") == "bad_matrix_id"
    assert reason(_join, ["网格员", "王五", "明天"], "l") == "bad_token"


def test_phones_follow_the_roster_rule() -> None:
    # Stored as the roster import stores them, so a later import recognises the person.
    assert _join(["网格员", "王五", "138-0000-0001"], "l")["phone"] == "13800000001"
    assert _join(["网格员", "王五", "+86 13800000001"], "l")["phone"] == "13800000001"
    assert _join(["网格员", "王五", "１３８０００００００１"], "l")["phone"] == "13800000001"
    assert reason(_join, ["网格员", "王五", "12345"], "l") == "bad_phone"
    assert _leave(["138-0000-0007"], STAFF)["person_id"] == 4
    assert _join(["企业网格员。", "王五", "@wang:x"], "l")["kind"] == RoleKind.ENT_MEMBER


def test_one_chief_and_no_double_staff() -> None:
    new_chief = _join(["负责人", "王五", "@wang:x"], "l")
    assert reason(check, [new_chief], STAFF) == "one_chief"
    check([_leave(["刘强"], STAFF), new_chief], STAFF)  # a handover is fine
    again = _join(["网格员", "陈红", "@chen:x"], "l")
    assert reason(check, [again], STAFF) == "already"
    # A promotion is explicit: leave, then join in the new role.
    check(
        [
            _leave(["陈红"], STAFF),
            _leave(["刘强"], STAFF),
            _join(["负责人", "陈红", "@chen:x"], "l"),
        ],
        STAFF,
    )


def test_a_confirmation_checks_again_and_skips_who_left_meanwhile() -> None:
    items = declare("离开 陈红；加入 企业网格员 周新 13900000009", STAFF)
    assert still_to_apply(items, STAFF) == items
    gone = [s for s in STAFF if s.person_id != 2]  # 陈红 left by an import meanwhile
    assert [i["action"] for i in still_to_apply(items, gone)] == [JOIN]
    chief = declare("加入 负责人 王五 @wang:x", [s for s in STAFF if s.person_id != 1])
    assert reason(still_to_apply, chief, STAFF) == "one_chief"  # a chief came meanwhile


def test_refusals_are_user_errors_answered_with_staff_error() -> None:
    with pytest.raises(UserError) as err:
        declare("调岗 陈红", STAFF)
    assert err.value.template == "staff_error"
    assert err.value.values == {"reason": "bad_line", "line": "调岗 陈红"}
    assert reason(declare, "  ；", STAFF) == "empty"


def test_who_may_withdraw() -> None:
    assert may_withdraw("@chen:x", "@chen:x", STAFF)
    assert may_withdraw("@liu:x", "@chen:x", STAFF)  # the chief
    assert not may_withdraw("@other:x", "@chen:x", STAFF)


def test_codes() -> None:
    assert parse_code("S-12") == 12 and parse_code("s12") == 12
    with pytest.raises(ValueError):
        parse_code("12")
    assert reason(code_of, "12") == "bad_code"


# --- through the dispatcher (no homeserver) ----------------------------------------------------


async def _rows(db: Database, after: int = 0) -> list[OutboxMessage]:
    async with db.transaction() as s:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.id > after, OutboxMessage.event_type == "m.room.message")
            .order_by(OutboxMessage.id)
        )
        return list(await s.scalars(query))


async def test_a_declaration_rings_its_deciders_and_a_refusal_changes_nothing(
    sqlite_db: Database,
) -> None:
    g = await seed_visit_grid(sqlite_db, fake_mxids())
    ent = "!ent:localhost"
    await set_room(sqlite_db, ent, "enterprise_room", enterprise_id=g.enterprises[GANXI])
    h = DispatchHarness(sqlite_db, [handlers.staff.commands])

    out = await h.say("@entchief:localhost", "/人员变动 加入 企业网格员 周新 13900000009", room=ent)
    (asked,) = await _rows(sqlite_db)
    assert "人员变动申请 S-1" in out[0] and asked.room_id == ent
    # It asks the serving member and the level-2 chief to act: it rings them, only them.
    assert asked.content["msgtype"] == "m.text"
    assert asked.content["m.mentions"]["user_ids"] == ["@l2chief:localhost", "@member:localhost"]
    assert asked.reply_to_event  # an answer to the declaration

    # Refusals: an m.notice reply each, and nothing is stored for them.
    for text, why in (
        ("/人员变动 离开 不存在的人", "本企业当前人员中没有「不存在的人」"),
        ("/人员变动 加入 负责人 王五 @wang:x", "每个企业只能有一位负责人"),
        ("/staff confirm X-1", "变动编号「X-1」无效"),
    ):
        last = (await _rows(sqlite_db))[-1].id
        out = await h.say("@entchief:localhost", text, room=ent)
        (row,) = await _rows(sqlite_db, last)
        assert why in out[0] and row.content["msgtype"] == "m.notice", out
    # Another domain's member is refused without learning who decides, or for which enterprise.
    (refused,) = await h.say("@member_p:localhost", "/确认变动 S-1", room=ent)
    assert refused == "只有服务该企业的网格员或二级网格长可以处理 S-1。"
    async with sqlite_db.transaction() as s:
        changes = list(await s.scalars(select(StaffChange)))
        assert [(c.id, c.status) for c in changes] == [(1, "pending")]

    with time_machine.travel(datetime(2026, 11, 20, 10, tzinfo=UTC), tick=False):
        out = await h.say("@member:localhost", "/确认变动 S-1", room=ent)
    assert "已由 张敏 确认" in out[0]
    assert "已确认，不能再处理" in (await h.say("@member:localhost", "/staff 确认 S-1"))[0]
    async with sqlite_db.transaction() as s:
        change = await s.get(StaffChange, 1)
        assert change is not None and change.status == "confirmed"
        assert change.items[0]["person_id"]  # the newcomer's person id is kept

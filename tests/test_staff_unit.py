"""Staff-change declarations: parsing and the checks against the current staff (no homeserver)."""

from __future__ import annotations

import pytest

from bot.staff import (
    JOIN,
    LEAVE,
    Staffer,
    StaffError,
    _join,
    _leave,
    check,
    parse_code,
    split_items,
)
from storage.models import RoleKind

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


def test_codes() -> None:
    assert parse_code("S-12") == 12 and parse_code("s12") == 12
    with pytest.raises(ValueError):
        parse_code("12")

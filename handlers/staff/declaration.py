"""The rules of a staff change (人员变动): read a declaration and check it against the staff.

Plain functions of text and the enterprise's current staff (storage.staff_changes reads it):
no context, no database. A declaration that cannot go ahead raises :class:`StaffError`, a
UserError answered with the ``staff_error`` template.

A declaration is one item per line (or separated by ；/;)::

    离开 张敏                                  leave 张敏
    加入 企业网格员 李四 13800000000 @lisi:example.org
    join ent_chief 王五 @wangwu:example.org

"leave" takes a current staff member of the enterprise by name, phone or Matrix id and ends all
their roles there. "join" takes a role (企业负责人 / ent_chief or 企业网格员 / ent_member), a name
and a phone or Matrix id (or both). A promotion is explicit: leave, then join in the new role.
"""

from __future__ import annotations

import re
from typing import Any

from bot.config import MXID_RE
from bot.errors import UserError
from bot.words import clean, looks_like_phone, normalize, phone_digits, phone_number
from storage.models import RoleKind
from storage.staff_changes import JOIN, LEAVE, Staffer

_VERBS = {
    **dict.fromkeys(("leave", "离开", "离职", "调离", "退出", "减少"), LEAVE),
    **dict.fromkeys(("join", "加入", "新增", "新任", "增加"), JOIN),
}
_ROLES = {
    **dict.fromkeys(
        ("ent_chief", "chief", "负责人", "企业负责人", "三级网格长", "网格长"), RoleKind.ENT_CHIEF
    ),
    **dict.fromkeys(
        ("ent_member", "member", "网格员", "企业网格员", "三级网格员"), RoleKind.ENT_MEMBER
    ),
}
_SEPARATORS = re.compile(r"[\n；;]+")
_CODE = re.compile(r"^S-?(\d{1,9})$", re.IGNORECASE)


class StaffError(UserError):
    """A declaration or decision that cannot go ahead; ``reason`` picks the message."""

    def __init__(self, reason: str, **values: Any) -> None:
        super().__init__("staff_error", reason=reason, **values)
        self.reason = reason


def split_items(text: str) -> list[list[str]]:
    return [line.split() for line in _SEPARATORS.split(text) if line.strip()]


def declare(text: str, staff: list[Staffer]) -> list[dict[str, Any]]:
    """The items of a declaration, checked against the enterprise's current staff."""
    items: list[dict[str, Any]] = []
    for tokens in split_items(text):
        verb = _VERBS.get(normalize(tokens[0]))
        if verb == LEAVE:
            items.append(_leave(tokens[1:], staff))
        elif verb == JOIN:
            items.append(_join(tokens[1:], " ".join(tokens)))
        else:
            raise StaffError("bad_line", line=" ".join(tokens))
    if not items:
        raise StaffError("empty")
    check(items, staff)
    return items


def still_to_apply(items: list[dict[str, Any]], staff: list[Staffer]) -> list[dict[str, Any]]:
    """A declared change checked again at confirmation: things may have moved since (an import,
    another change). Who has left already is left out; the rest must still hold. The items
    are the same dicts (storage gives each join its person id)."""
    current = {s.person_id for s in staff}
    items = [i for i in items if i["action"] == JOIN or i["person_id"] in current]
    check(items, staff)
    return items


def _leave(args: list[str], staff: list[Staffer]) -> dict[str, Any]:
    if not args:
        raise StaffError("leave_who")
    who = " ".join(args)
    found = [s for s in staff if _is(who, s)]
    people = {s.person_id for s in found}
    if not people:
        raise StaffError("not_found", who=who)
    if len(people) > 1:
        raise StaffError("ambiguous", who=who)
    first = found[0]
    return {
        "action": LEAVE,
        "person_id": first.person_id,
        "name": first.name,
        "kinds": sorted({s.kind for s in found}),
    }


def _is(who: str, s: Staffer) -> bool:
    """Whether "who" (a name, Matrix id or phone as typed: 138-0000-0004) names this staffer."""
    if who in (s.matrix_id, s.name, s.phone):
        return True
    phone = phone_number(who)
    return phone is not None and s.phone is not None and phone == phone_digits(s.phone)


def _join(args: list[str], line: str) -> dict[str, Any]:
    if len(args) < 2:
        raise StaffError("join_usage", line=line)
    kind = _ROLES.get(normalize(args[0]))
    if kind is None:
        raise StaffError("unknown_role", role=args[0])
    name, phone, matrix_id = args[1], None, None
    for token in args[2:]:
        if clean(token).startswith("@"):
            if not MXID_RE.match(clean(token)):
                raise StaffError("bad_matrix_id", value=token)
            matrix_id = clean(token)
        elif looks_like_phone(token):
            # The roster's rule, so that imports and staff changes store the same digits.
            phone = phone_number(token)
            if phone is None:
                raise StaffError("bad_phone", value=token)
        else:
            raise StaffError("bad_token", value=token)
    if not phone and not matrix_id:
        raise StaffError("no_contact", name=name)
    return {"action": JOIN, "kind": str(kind), "name": name, "phone": phone, "matrix_id": matrix_id}


def _same(item: dict[str, Any], s: Staffer) -> bool:
    if item["matrix_id"]:
        return item["matrix_id"] == s.matrix_id
    return item["phone"] == s.phone and item["name"] == s.name


def check(items: list[dict[str, Any]], staff: list[Staffer]) -> None:
    """Each person once; nobody joins who is already staff; one chief at most afterwards."""
    leaving = [i["person_id"] for i in items if i["action"] == LEAVE]
    if len(leaving) != len(set(leaving)):
        raise StaffError("duplicate", who=next(i["name"] for i in items if i["action"] == LEAVE))
    joins = [i for i in items if i["action"] == JOIN]
    keys = [(i["matrix_id"] or "", i["phone"] or "", i["name"]) for i in joins]
    if len(keys) != len(set(keys)):
        raise StaffError("duplicate", who=joins[0]["name"])
    for item in joins:
        for s in staff:
            if s.person_id not in leaving and _same(item, s):
                raise StaffError("already", who=s.name)
    chiefs = {s.person_id for s in staff if s.kind == RoleKind.ENT_CHIEF} - set(leaving)
    if len(chiefs) + sum(1 for i in joins if i["kind"] == RoleKind.ENT_CHIEF) > 1:
        raise StaffError("one_chief")


def may_withdraw(sender: str, requested_by: str, staff: list[Staffer]) -> bool:
    """The requester may withdraw a pending change, and so may the enterprise's chief."""
    chiefs = {s.matrix_id for s in staff if s.kind == RoleKind.ENT_CHIEF}
    return sender == requested_by or sender in chiefs


def parse_code(text: str) -> int:
    """'S-12' (or 's12') → 12; ValueError otherwise (an Arg's parse)."""
    match = _CODE.match(clean(text).strip())
    if match is None:
        raise ValueError(text)
    return int(match.group(1))


def code_of(text: str) -> int:
    """The change a /staff confirm|reject|withdraw names; refused with the text otherwise."""
    try:
        return parse_code(text)
    except ValueError:
        raise StaffError("bad_code", value=text) from None

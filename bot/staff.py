"""Staff changes of an enterprise (人员变动): parse a declaration, check it against the roster,
and apply it once the enterprise's level-2 member confirms.

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
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import MXID_RE
from bot.words import clean, looks_like_phone, normalize, phone_digits, phone_number
from storage.directory import Action, Contact, people_who_may, place_of
from storage.models import Assignment, Enterprise, Person, Role, RoleKind

LEAVE = "leave"
JOIN = "join"
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
ENT_KINDS = (RoleKind.ENT_CHIEF, RoleKind.ENT_MEMBER)
_SEPARATORS = re.compile(r"[\n；;]+")


class StaffError(Exception):
    """A declaration or decision that cannot go ahead; ``reason`` picks the message."""

    def __init__(self, reason: str, **values: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.values = values


@dataclass(frozen=True)
class Staffer:
    person_id: int
    name: str
    phone: str | None
    matrix_id: str | None
    kind: str


async def enterprise_staff(session: AsyncSession, enterprise_id: int) -> list[Staffer]:
    rows = await session.execute(
        select(Role, Person)
        .join(Person, Person.id == Role.person_id)
        .where(
            Role.enterprise_id == enterprise_id,
            Role.until.is_(None),
            Role.kind.in_(ENT_KINDS),
            Person.active.is_(True),
        )
        .order_by(Role.kind, Person.name)
    )
    return [Staffer(p.id, p.name, p.phone, p.matrix_id, r.kind) for r, p in rows.all()]


def split_items(text: str) -> list[list[str]]:
    return [line.split() for line in _SEPARATORS.split(text) if line.strip()]


async def declare(session: AsyncSession, enterprise_id: int, text: str) -> list[dict[str, Any]]:
    """The items of a declaration, checked against the enterprise's current staff."""
    staff = await enterprise_staff(session, enterprise_id)
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


async def apply(
    session: AsyncSession, enterprise_id: int, items: list[dict[str, Any]], today: date
) -> None:
    """Write a confirmed change into the roster, dated ``today`` (roles end / begin). Each join
    item gets the "person_id" it was given, so roster imports can tell whether their file
    already has the change."""
    staff = await enterprise_staff(session, enterprise_id)
    # Things may have moved since the declaration (an import, another change): check again,
    # leaving out who is gone already.
    current = {s.person_id for s in staff}
    items = [i for i in items if i["action"] == JOIN or i["person_id"] in current]
    check(items, staff)
    leavers: list[int] = []
    for item in items:
        if item["action"] != LEAVE:
            continue
        roles = await session.scalars(
            select(Role).where(
                Role.person_id == item["person_id"],
                Role.enterprise_id == enterprise_id,
                Role.until.is_(None),
                Role.kind.in_(ENT_KINDS),
            )
        )
        for role in roles:
            role.until = today
        leavers.append(item["person_id"])
    for item in items:
        if item["action"] == JOIN:
            person = await _person_for(session, item)
            person.active, person.deactivated_on = True, None
            await session.flush()
            item["person_id"] = person.id
            session.add(
                Role(
                    person_id=person.id, kind=item["kind"], enterprise_id=enterprise_id, since=today
                )
            )
    await session.flush()
    for person_id in leavers:
        await _deactivate_if_idle(session, person_id, today)


async def _person_for(session: AsyncSession, item: dict[str, Any]) -> Person:
    if item["matrix_id"]:
        person = await session.scalar(select(Person).where(Person.matrix_id == item["matrix_id"]))
        if person is not None:
            if item["phone"] and not person.phone:
                person.phone = item["phone"]
            return person
    if item["phone"]:
        same = list(
            await session.scalars(
                select(Person).where(Person.phone == item["phone"], Person.name == item["name"])
            )
        )
        if len(same) == 1 and (not item["matrix_id"] or same[0].matrix_id is None):
            if item["matrix_id"]:
                same[0].matrix_id = item["matrix_id"]
            return same[0]
    person = Person(
        name=item["name"], phone=item["phone"], matrix_id=item["matrix_id"], active=True
    )
    session.add(person)
    return person


async def _deactivate_if_idle(session: AsyncSession, person_id: int, today: date) -> None:
    """Someone with no current role or assignment left is out of the roster (kept, dated)."""
    role = await session.scalar(
        select(Role.id).where(Role.person_id == person_id, Role.until.is_(None)).limit(1)
    )
    served = await session.scalar(
        select(Assignment.id)
        .where(Assignment.person_id == person_id, Assignment.until.is_(None))
        .limit(1)
    )
    if role is None and served is None:
        person = await session.get(Person, person_id)
        if person is not None and person.active:
            person.active, person.deactivated_on = False, today


async def deciders(session: AsyncSession, enterprise: Enterprise) -> list[Contact]:
    """Who may confirm: the level-2 member(s) serving the enterprise and its level-2 chief
    (the directory's RULES[DECIDE_STAFF], read as people)."""
    return await people_who_may(session, Action.DECIDE_STAFF, await place_of(session, enterprise))


_CODE = re.compile(r"^S-?(\d{1,9})$", re.IGNORECASE)


def parse_code(text: str) -> int:
    match = _CODE.match(text.strip())
    if match is None:
        raise ValueError(text)
    return int(match.group(1))

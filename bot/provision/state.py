"""Room state: what a room should hold (desired), what it holds (actual), and the difference.

Power levels are written whole, as the bot wants them, and compared whole: only the bot may
change them (``m.room.power_levels`` needs 100), so any difference is drift to repair.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from bot.provision.plan import RoomSpec

# Bump when the layout of what the bot writes changes, so the next run re-checks every room.
LAYOUT_VERSION = 1
# Invites passed inside createRoom (the rest are sent one by one). Synapse refuses a createRoom
# with more invites than the rc_invites.per_room burst (default 10) for a non-exempt bot.
CREATE_INVITE_LIMIT = 10
# Space links passed inside createRoom (the rest are put one by one when the room is checked).
# Synapse persists a createRoom's state one event after another in one request: a space of a
# thousand enterprises made in one call outlasts the client's request timeout (seen at 5,000
# enterprises in bench/province.py), and an unanswered createRoom cannot simply be sent again.
CREATE_CHILD_LIMIT = 100

JOINED = frozenset({"join", "invite"})


def has_creator_power(room_version: str | None) -> bool:
    """Room versions 12+ give creators unlimited power; they must not be listed in ``users``."""
    if not room_version:
        return False
    if room_version == "org.matrix.hydra.11":
        return True
    return room_version.isdigit() and int(room_version) >= 12


def power_levels(spec: RoomSpec, bot_user_id: str, room_version: str | None) -> dict[str, Any]:
    creator = has_creator_power(room_version)
    users = {u: p for u, p in sorted(spec.members.items()) if p > 0}
    if not creator:
        users[bot_user_id] = 100
    bot_only = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            # Derived from the roster: a change by hand would be overwritten on the next run.
            "m.room.name": bot_only,
            "m.room.topic": bot_only,
            "m.room.power_levels": bot_only,
            "m.room.join_rules": bot_only,
            "m.room.history_visibility": bot_only,
            "m.room.guest_access": bot_only,
            "m.room.canonical_alias": bot_only,
            "m.room.encryption": bot_only,
            "m.room.server_acl": bot_only,
            "m.room.tombstone": 150 if creator else bot_only,
            "m.space.child": bot_only,
            "m.space.parent": bot_only,
            "m.room.avatar": 50,
            "m.room.pinned_events": 50,
        },
        # Nobody chats in a space; in rooms everyone may talk.
        "events_default": 100 if spec.is_space else 0,
        "state_default": 50,
        # Chiefs may bring a guest in; membership from the roster is the bot's (kick/ban 100).
        "invite": 50,
        "kick": bot_only,
        "ban": bot_only,
        "redact": 50,
        "notifications": {"room": 50},
    }


@dataclass(frozen=True)
class Desired:
    """A room's target state with room ids resolved. None / empty = not managed or none."""

    name: str | None
    topic: str | None
    power_levels: dict[str, Any] | None
    parents: dict[str, dict[str, Any]]  # parent room id -> m.space.parent content
    children: dict[str, dict[str, Any]]  # child room id -> m.space.child content
    invite: frozenset[str]  # members that have an account: invite them
    keep: frozenset[str]  # every member of the plan, with or without an account

    def digest(self) -> str:
        data = {
            "v": LAYOUT_VERSION,
            "name": self.name,
            "topic": self.topic,
            "pl": self.power_levels,
            "parents": self.parents,
            "children": self.children,
            "invite": sorted(self.invite),
            "keep": sorted(self.keep),
        }
        raw = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass(frozen=True)
class Member:
    membership: str
    sender: str


@dataclass
class RoomState:
    room_version: str | None = None
    name: str | None = None
    topic: str | None = None
    power_levels: dict[str, Any] | None = None
    parents: dict[str, dict[str, Any]] = field(default_factory=dict)
    children: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)


def parse_state(events: list[dict[str, Any]]) -> RoomState:
    state = RoomState()
    for ev in events:
        etype, key = ev.get("type"), ev.get("state_key")
        content = ev.get("content") or {}
        if etype == "m.room.create":
            state.room_version = str(content.get("room_version") or "1")
        elif etype == "m.room.name":
            state.name = content.get("name")
        elif etype == "m.room.topic":
            state.topic = content.get("topic")
        elif etype == "m.room.power_levels":
            state.power_levels = content
        elif etype == "m.space.parent" and key and content:
            state.parents[key] = content
        elif etype == "m.space.child" and key and content:
            state.children[key] = content
        elif etype == "m.room.member" and key:
            state.members[key] = Member(str(content.get("membership")), str(ev.get("sender")))
    return state


# --- what to do --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PutState:
    event_type: str
    state_key: str
    content: dict[str, Any]


@dataclass(frozen=True)
class Invite:
    user_id: str


@dataclass(frozen=True)
class Kick:
    user_id: str


@dataclass
class Diff:
    puts: list[PutState] = field(default_factory=list)
    invites: list[Invite] = field(default_factory=list)
    kicks: list[Kick] = field(default_factory=list)
    adopt: list[str] = field(default_factory=list)  # in the room already: now managed
    forget: list[str] = field(default_factory=list)  # gone already: no longer managed
    declined: list[str] = field(default_factory=list)  # left or refused after our invite

    @property
    def requests(self) -> int:
        return len(self.puts) + len(self.invites) + len(self.kicks)


def diff(
    desired: Desired,
    actual: RoomState,
    managed: set[str],
    *,
    bot_user_id: str,
    reinvite: bool = False,
) -> Diff:
    out = Diff()
    if desired.name is not None and actual.name != desired.name:
        out.puts.append(PutState("m.room.name", "", {"name": desired.name}))
    if desired.topic is not None and actual.topic != desired.topic:
        out.puts.append(PutState("m.room.topic", "", {"topic": desired.topic}))
    if desired.power_levels is not None and actual.power_levels != desired.power_levels:
        out.puts.append(PutState("m.room.power_levels", "", desired.power_levels))
    _links(out, "m.space.parent", desired.parents, actual.parents)
    _links(out, "m.space.child", desired.children, actual.children)

    for user in sorted(desired.invite):
        member = actual.members.get(user)
        membership = member.membership if member else None
        if membership in JOINED:
            if user not in managed:
                out.adopt.append(user)
        elif membership == "ban" or (membership is not None and user in managed and not reinvite):
            # Left, refused or was removed by a person after the bot invited them: respect it.
            out.declined.append(user)
        else:
            out.invites.append(Invite(user))
    for user in sorted(managed - desired.keep):
        if user == bot_user_id:
            continue
        member = actual.members.get(user)
        if member is not None and member.membership in JOINED:
            out.kicks.append(Kick(user))
        else:
            out.forget.append(user)
    return out


def _links(
    out: Diff,
    event_type: str,
    desired: dict[str, dict[str, Any]],
    actual: dict[str, dict[str, Any]],
) -> None:
    for room_id, content in sorted(desired.items()):
        if actual.get(room_id) != content:
            out.puts.append(PutState(event_type, room_id, content))
    for room_id in sorted(set(actual) - set(desired)):
        out.puts.append(PutState(event_type, room_id, {}))  # empty content removes the link

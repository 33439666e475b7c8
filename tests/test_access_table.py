"""The access-control table: every command × role × room kind, dispatched for real.

Each cell sends "/<command>" as one role in one kind of room through the real dispatcher and
handlers, and checks the outcome against the one permission source, the command specs
(``Command.roles`` / ``rooms``, which README's command table is generated from): where the spec
refuses, the sender is told why (not in the roster, not allowed, wrong room) and nothing else
happens; where it allows, the command runs. No cell may end in an internal error."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from bot.app import HANDLER_MODULES, build_router
from bot.commands import KNOWN
from storage import inbox
from storage.db import Database
from storage.directory import identify
from storage.inbox import IncomingEvent
from storage.models import BotSession, InboxEvent, OutboxMessage
from tests.case_seed import GANXI, TONGDA, fake_mxids, seed_case_grid
from tests.dispatch_harness import BOT, DispatchHarness
from tests.dispatch_harness import test_config as make_config
from tests.roster_seed import set_room

ADMIN, STRANGER = "@admin:localhost", "@stranger:localhost"
# The roles of the issue, each played by one person of the seeded county.
ROLES = {
    "admin": ADMIN,
    "level-1 chief": "@l1chief:localhost",
    "level-1 office": "@l1office:localhost",
    "level-2 chief": "@l2chief:localhost",
    "level-2 member": "@member:localhost",
    "enterprise chief": "@entchief:localhost",
    "enterprise member": "@entmember:localhost",
    "stranger": STRANGER,
}
# Room id → (the room's kind as the dispatcher sees it, what it is to the people above, who
# belong to 赣西物流 or serve it).
ROOMS = {
    "!own-enterprise:localhost": "enterprise_room",
    "!other-enterprise:localhost": "enterprise_room",
    "!level-2:localhost": "l2_room",
    "!level-1:localhost": "l1_room",
    "!admin:localhost": "admin_room",
    "!direct:localhost": "direct",
    "!outside:localhost": "other",
}
DENIALS = {"not_in_roster": "不在网格名册", "not_allowed": "你无权使用", "wrong_room": "不能在"}


async def _world(db: Database) -> DispatchHarness:
    g = await seed_case_grid(db, fake_mxids())
    where = {
        "!own-enterprise:localhost": {"enterprise_id": g.enterprises[GANXI]},
        "!other-enterprise:localhost": {"enterprise_id": g.enterprises[TONGDA]},
        "!level-2:localhost": {"grid_id": g.grids["l2"]},
        "!level-1:localhost": {"grid_id": g.grids["l1"]},
    }
    for room, kind in ROOMS.items():
        if kind != "other":
            await set_room(db, room, kind, **where.get(room, {}))
    return DispatchHarness(db, list(HANDLER_MODULES), make_config(admins=[ADMIN]))


async def test_every_command_for_every_role_in_every_room(sqlite_db: Database) -> None:
    h = await _world(sqlite_db)
    commands = build_router().commands
    # One event per cell, all stored in one sync batch and handled in order, as the bot would.
    cells: dict[str, tuple[str, str, str, str]] = {}
    events = []
    for n, (cmd, (role, user), (room, kind)) in enumerate(
        (c, r, m) for c in commands for r in ROLES.items() for m in ROOMS.items()
    ):
        event_id = f"$cell{n}"
        cells[event_id] = (cmd.name, role, room, kind)
        content = {"msgtype": "m.text", "body": f"/{cmd.name}"}
        source = {
            "event_id": event_id,
            "sender": user,
            "type": "m.room.message",
            "origin_server_ts": 1_700_000_000_000 + n,
            "content": content,
        }
        events.append(IncomingEvent(event_id, room, user, "m.room.message", n, source))
    async with sqlite_db.transaction() as s:
        s.add(BotSession(user_id=BOT, device_id="D", access_token="t"))
        await inbox.store_batch(s, BOT, events, "token")
        idents = {u: await identify(s, u, frozenset({ADMIN})) for u in ROLES.values()}
    await h.dispatcher.drain()
    async with sqlite_db.transaction() as s:
        outcome = dict((await s.execute(select(InboxEvent.event_id, InboxEvent.outcome))).all())
        replies: dict[str, list[str]] = {}
        for cause, content in await s.execute(
            select(OutboxMessage.cause, OutboxMessage.content)
            .where(OutboxMessage.event_type == "m.room.message")
            .order_by(OutboxMessage.id)
        ):
            replies.setdefault(str(cause), []).append(content["body"])
    by_name = {c.name: c for c in commands}
    wrong: list[str] = []
    for event_id, (name, role, room, kind) in cells.items():
        cmd, ident = by_name[name], idents[ROLES[role]]
        got, said = outcome[event_id], replies.get(event_id, [])
        cell = f"/{name} as {role} in {room}: {got} {said[:1]}"
        if cmd.roles == KNOWN and not ident.known:
            expected = "not_in_roster"
        elif not cmd.allowed_for(ident.role_kinds, ident.known):
            expected = "not_allowed"
        elif not cmd.allowed_in(kind):
            expected = "wrong_room"
        else:
            expected = None
        if got == "error":
            wrong.append(f"internal error: {cell}")
        elif expected is not None and (
            got != "denied" or len(said) != 1 or DENIALS[expected] not in said[0]
        ):
            wrong.append(f"should be refused ({expected}): {cell}")
        elif expected is None and got == "denied":
            wrong.append(f"should run: {cell}")
    assert not wrong, "\n".join(wrong[:40])
    # Both kinds of cell occur: the table is neither all-allowed nor all-refused.
    counts = Counter(outcome[e] for e in cells)
    assert counts["denied"] > 100 and counts["handled"] > 100, counts

"""Bring the homeserver in line with the plan, with as few requests as possible.

1. Accounts: every Matrix id in the plan not yet known to exist is looked up: all local ones at
   once through Synapse's admin API when the bot is a server admin, otherwise one by one
   (profile; 404 = no account yet). People without one are listed and invited by a later run
   that finds them.
2. Create what is missing, children before parents. Each room is made in one createRoom call
   (name, topic, power levels, up to ten invites, and its space links to rooms that exist
   already) whose creation content names the room's key. Children first means a new space
   carries all its m.space.child links in its createRoom; the children's m.space.parent links
   then go into distinct rooms, in parallel (one link per request into one busy space would
   queue there). The rooms made are recorded in batches (store.Writer). A run holds the
   database lease (bot/provision/lease.py); one that finds the last run unfinished first reads
   the creation content of the bot's unrecorded rooms and adopts those it made, so a crash
   before a batch was committed never leads to a second room.
3. Check every room whose desired state differs from the state last applied (a hash in the
   database; ``verify`` checks all): read its state from the homeserver (rooms just made are
   known without asking) and send only the differences: names, topics, power levels, space
   links, invites of who is missing, kicks of who the bot added and who left the roster.
   A second run with an unchanged roster therefore sends no state-changing request at all.

Steps 2 and 3 run as one pipeline, a task per room that waits only for the rooms it links to,
so the request slots (``MatrixOps`` concurrency) stay busy from the first room to the last.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from bot.provision import store
from bot.provision.lease import provisioning_lease
from bot.provision.matrix import MatrixError, MatrixOps
from bot.provision.plan import Plan, RoomSpec, build_plan
from bot.provision.roster import load_roster
from bot.provision.state import (
    CREATE_CHILD_LIMIT,
    CREATE_INVITE_LIMIT,
    Desired,
    Member,
    RoomState,
    diff,
    parse_state,
    power_levels,
)
from bot.provision.texts import TemplateTexts
from messages import Messages
from storage import admins as admin_store
from storage.db import Database

log = logging.getLogger(__name__)

CREATE = "create"
CHECK = "check"
# A listing page of local accounts is worth this many profile lookups (bot/provision/matrix.py).
LOOKUPS_PER_PAGE = 25
# In every room's m.room.create content: which roster room it is, to find it after a crash.
ROOM_KEY = "org.gridbot.room_key"


class Reporter(Protocol):
    def phase(self, name: str, total: int) -> None: ...

    def advance(self, name: str) -> None: ...

    def waiting(self) -> None: ...


class _Quiet:
    def phase(self, name: str, total: int) -> None:
        pass

    def advance(self, name: str) -> None:
        pass

    def waiting(self) -> None:
        pass


@dataclass
class Summary:
    rooms: int = 0
    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)  # made by an interrupted run, unrecorded
    updated: list[str] = field(default_factory=list)  # rooms whose state the bot changed
    unchanged: int = 0
    invited: list[tuple[str, str]] = field(default_factory=list)  # (room, user)
    removed: list[tuple[str, str]] = field(default_factory=list)
    declined: list[tuple[str, str]] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    no_account: list[str] = field(default_factory=list)  # "name (@id)"
    without_matrix_id: list[str] = field(default_factory=list)
    requests: int = 0  # state-changing requests sent

    @property
    def ok(self) -> bool:
        return not self.failed


class Provisioner:
    def __init__(
        self,
        db: Database,
        ops: MatrixOps,
        messages: Messages,
        *,
        bot_user_id: str,
        admins: Iterable[str],
        locale: str = "zh_CN",
        reporter: Reporter | None = None,
        verify: bool = False,
        reinvite: bool = False,
        encrypted: bool = False,
    ) -> None:
        self.db = db
        # New rooms (not spaces) are created with m.room.encryption (megolm) in their state.
        self.encrypted = encrypted
        self.ops = ops
        self.messages = messages
        self.bot = bot_user_id
        self.admins = tuple(admins)
        self.locale = locale
        self.reporter = reporter or _Quiet()
        self.verify = verify
        self.reinvite = reinvite
        self.server = bot_user_id.split(":", 1)[1]
        self.summary = Summary()
        # Filled by run():
        self.plan = Plan()
        self.snap = store.Snapshot({}, {}, {})
        self.ids: dict[str, str] = {}  # key -> room id
        self.versions: dict[str, str | None] = {}
        self.known: dict[str, RoomState] = {}  # rooms made in this run: state without asking
        self.accounts: dict[str, bool] = {}
        self.children: dict[str, list[str]] = {}
        self.default_version: str | None = None
        self.settled: dict[str, asyncio.Event] = {}  # rooms to make: set once made (or failed)
        self.unanswered = False  # a createRoom whose answer was lost: it may exist unrecorded
        self.writer = store.Writer(db)

    # --- the run --------------------------------------------------------------------------------

    async def run(self) -> Summary:
        async with provisioning_lease(self.db, on_wait=self.reporter.waiting) as lease:
            try:
                summary = await self._run(adopt=lease.interrupted)
            finally:
                # Stopped by an error: rooms still being made must exist before the lease is
                # released, or the next run's look for unrecorded rooms could miss them.
                await self.ops.settle()
            lease.complete = not self.unanswered
        return summary

    async def _run(self, *, adopt: bool) -> Summary:
        async with self.db.transaction() as session:
            roster = await load_roster(session)
            named = await admin_store.admin_ids(session)
        texts = TemplateTexts(self.messages, self.locale)
        self.plan = build_plan(
            roster, admins=self.admins, room_admins=named, bot_user_id=self.bot, texts=texts
        )
        self.snap = await store.load(self.db)
        self.ids = {k: r.room_id for k, r in self.snap.rooms.items()}
        self.versions = {k: r.room_version for k, r in self.snap.rooms.items()}
        specs = dict(self.plan.rooms)
        for key, stored in self.snap.rooms.items():
            if key not in specs:
                specs[key] = _retired(stored)
        self.children = {}
        for key, spec in specs.items():
            for parent in spec.parents:
                self.children.setdefault(parent, []).append(key)
        self.summary.rooms = len(self.plan.rooms)
        self.summary.without_matrix_id = list(self.plan.without_matrix_id)

        if adopt:
            await self._adopt_unrecorded()
        started = time.perf_counter()
        await self._check_accounts()
        accounts = time.perf_counter()
        await self._converge(specs)
        log.info(
            "provisioned %d rooms: accounts %.1f s, rooms %.1f s",
            len(specs),
            accounts - started,
            time.perf_counter() - accounts,
        )
        self.summary.requests = self.ops.state_changes
        return self.summary

    async def _check_accounts(self) -> None:
        users = sorted(self.plan.users() | set(self.admins))
        self.accounts = {u: True for u in users if self.snap.accounts.get(u)}
        unknown = [u for u in users if u not in self.accounts]
        found: dict[str, bool] = {}

        # A bot that is a server admin reads the local accounts a thousand at a time; worth it
        # while that takes far fewer requests than a lookup per person.
        local = [u for u in unknown if u.endswith(f":{self.server}")]
        listed = None
        if local:
            listed = await self.ops.local_accounts(max_pages=max(1, len(local) // LOOKUPS_PER_PAGE))
        if listed is not None:
            for user in local:
                found[user] = self.accounts[user] = user in listed
            unknown = [u for u in unknown if u not in found]

        async def check(user: str) -> None:
            has = await self.ops.has_account(user)
            if has is not None:
                found[user] = has
            self.accounts[user] = has is not False  # unknown: try the invite

        await _all(check(u) for u in unknown)
        await store.save_accounts(self.db, found)
        for user in users:
            if not self.accounts.get(user):
                name = self.plan.names.get(user)
                self.summary.no_account.append(f"{name}（{user}）" if name else user)

    # --- steps 2 and 3, pipelined ---------------------------------------------------------------

    async def _converge(self, specs: dict[str, RoomSpec]) -> None:
        """One task per room: a new room waits for its children to exist (so its createRoom
        carries their links), then every room waits for its parents and children to exist
        before it is checked. No barrier between levels keeps all request slots busy."""
        missing = [k for k in self.plan.rooms if k not in self.ids]
        self.reporter.phase(CREATE, len(missing))
        self.reporter.phase(CHECK, len(specs))
        if missing:
            self.default_version = await self.ops.default_room_version()
        self.settled = {k: asyncio.Event() for k in missing}
        # Deepest first: the semaphore is first come first served, so leaves take the slots.
        order = sorted(specs, key=lambda k: -self.plan.depth(k) if k in self.plan.rooms else 0)
        await _all(self._room(specs[k]) for k in order)
        await self.writer.flush()

    async def _after(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key in self.settled:
                await self.settled[key].wait()

    async def _room(self, spec: RoomSpec) -> None:
        children = self.children.get(spec.key, [])
        if spec.key in self.settled:
            try:
                await self._after(children)
                await self._create(spec)
            finally:
                self.settled[spec.key].set()
        await self._after([*spec.parents, *children])
        try:
            if spec.key not in self.ids:
                return  # its creation failed (reported)
            desired = self._desired(spec, self.versions.get(spec.key))
            stored = self.snap.rooms.get(spec.key)
            if (
                not self.verify
                and spec.key not in self.known
                and stored is not None
                and stored.state_hash == desired.digest()
            ):
                self.summary.unchanged += 1
                return
            await self._check(spec, desired)
        finally:
            self.reporter.advance(CHECK)

    async def _adopt_unrecorded(self) -> None:
        """After an interrupted run: the bot's rooms not in the database whose creation content
        names a planned room are that room (made, then the run died before recording it)."""
        recorded = set(self.ids.values())
        unknown = [r for r in await self.ops.joined_rooms() if r not in recorded]

        async def look(room_id: str) -> None:
            try:
                state = await self.ops.get_state(room_id)
            except MatrixError as err:
                log.warning("cannot read %s after an interrupted run: %s", room_id, err)
                return
            create = next((e for e in state if e.get("type") == "m.room.create"), {})
            key = (create.get("content") or {}).get(ROOM_KEY)
            if create.get("sender") != self.bot or key not in self.plan.rooms or key in self.ids:
                return
            spec = self.plan.rooms[key]
            self.ids[key] = room_id
            await self.writer.record_room(spec, room_id, None, ())
            self.summary.adopted.append(spec.name or key)

        await _all(look(r) for r in unknown)
        await self.writer.flush()

    async def _create(self, spec: RoomSpec) -> None:
        try:
            version = self.default_version
            desired = self._desired(spec, version)
            invite = sorted(desired.invite)[:CREATE_INVITE_LIMIT]
            children = dict(sorted(desired.children.items())[:CREATE_CHILD_LIMIT])
            made = replace(desired, children=children)
            try:
                room_id = await self.ops.create_room(
                    name=desired.name,
                    topic=desired.topic,
                    space=spec.is_space,
                    room_version=version,
                    invite=invite,
                    initial_state=_initial_state(made, self.encrypted and not spec.is_space),
                    creation_content={ROOM_KEY: spec.key},
                )
            except MatrixError as err:
                # It may exist: leave the lease unfinished so the next run looks for it.
                self.unanswered = self.unanswered or err.unanswered
                raise
            await self.writer.record_room(spec, room_id, version, invite)
            self.ids[spec.key] = room_id
            self.versions[spec.key] = version
            self.snap.managed[room_id] = set(invite)
            if version is not None:
                self.known[spec.key] = RoomState(
                    room_version=version,
                    name=desired.name,
                    topic=desired.topic,
                    power_levels=desired.power_levels,
                    parents=dict(desired.parents),
                    children=children,  # the rest are put when the room is checked
                    members={
                        self.bot: Member("join", self.bot),
                        **{u: Member("invite", self.bot) for u in invite},
                    },
                )
            self.summary.created.append(spec.name or spec.key)
            self.summary.invited.extend((spec.name or spec.key, u) for u in invite)
        except MatrixError as err:
            self._fail(spec, err.op, str(err))
        finally:
            self.reporter.advance(CREATE)

    # --- checking a room ------------------------------------------------------------------

    async def _check(self, spec: RoomSpec, desired: Desired) -> None:
        label = spec.name or spec.key
        room_id = self.ids[spec.key]
        try:
            actual = self.known.get(spec.key)
            if actual is None:
                actual = parse_state(await self.ops.get_state(room_id))
                if actual.room_version != self.versions.get(spec.key):
                    self.versions[spec.key] = actual.room_version
                    desired = self._desired(spec, actual.room_version)
            managed = self.snap.managed.get(room_id, set())
            todo = diff(desired, actual, managed, bot_user_id=self.bot, reinvite=self.reinvite)
            stored = self.snap.rooms.get(spec.key)
            ids_changed = stored is not None and _ids_changed(stored, spec)
            self.summary.declined.extend((label, u) for u in todo.declined)
            failures = 0
            results = await asyncio.gather(
                *(
                    self.ops.put_state(room_id, p.event_type, p.content, p.state_key)
                    for p in todo.puts
                ),
                return_exceptions=True,
            )
            failures += self._failures(spec, results)
            invites = [i.user_id for i in todo.invites]
            results = await asyncio.gather(
                *(self.ops.invite(room_id, u) for u in invites), return_exceptions=True
            )
            failures += self._failures(spec, results)
            invited = [u for u, r in zip(invites, results, strict=True) if r is None]
            kicks = [k.user_id for k in todo.kicks]
            reason = self._kick_reason()
            results = await asyncio.gather(
                *(self.ops.kick(room_id, u, reason) for u in kicks), return_exceptions=True
            )
            failures += self._failures(spec, results)
            kicked = [u for u, r in zip(kicks, results, strict=True) if r is None]

            if todo.puts:
                self.summary.updated.append(label)
            self.summary.invited.extend((label, u) for u in invited)
            self.summary.removed.extend((label, u) for u in kicked)
            await self.writer.finish_room(
                spec,
                room_id,
                added=[*todo.adopt, *invited],
                removed=[*todo.forget, *kicked],
                state_hash=None if failures else desired.digest(),
                room_version=self.versions.get(spec.key),
                ids_changed=ids_changed,
            )
        except MatrixError as err:
            self._fail(spec, err.op, str(err))

    def _failures(self, spec: RoomSpec, results: list[Any]) -> int:
        n = 0
        for r in results:
            if isinstance(r, MatrixError):
                self._fail(spec, r.op, str(r))
                n += 1
            elif isinstance(r, BaseException):
                raise r
        return n

    # --- desired state --------------------------------------------------------------------------

    def _desired(self, spec: RoomSpec, version: str | None) -> Desired:
        if spec.retired:
            # Out of the roster: unlink it and remove who the bot added; the room itself stays.
            return Desired(None, None, None, {}, {}, frozenset(), frozenset())
        via = [self.server]
        parents = {
            self.ids[p]: ({"via": via, "canonical": True} if i == 0 else {"via": via})
            for i, p in enumerate(spec.parents)
            if p in self.ids
        }
        children = {
            self.ids[c]: self._child_content(self.plan.rooms[c])
            for c in self.children.get(spec.key, [])
            if c in self.ids and c in self.plan.rooms
        }
        members = frozenset(spec.members)
        return Desired(
            name=spec.name,
            topic=spec.topic,
            power_levels=power_levels(spec, self.bot, version),
            parents=parents,
            children=children,
            invite=frozenset(u for u in members if self.accounts.get(u, True)),
            keep=members,
        )

    def _child_content(self, spec: RoomSpec) -> dict[str, Any]:
        return {"via": [self.server], "order": spec.order}

    def _kick_reason(self) -> str:
        return self.messages.render(self.locale, "room_kick_reason").plain

    def _fail(self, spec: RoomSpec, op: str, error: str) -> None:
        log.warning("provisioning %s (%s): %s failed: %s", spec.name, spec.key, op, error)
        self.summary.failed.append(f"{spec.name or spec.key}: {error}")


def _initial_state(desired: Desired, encrypted: bool = False) -> list[dict[str, Any]]:
    # Join rule (invite) and history visibility (shared) come with MatrixOps.create_room; no
    # m.room.guest_access event means guests are forbidden.
    state: list[dict[str, Any]] = [
        {"type": "m.room.power_levels", "state_key": "", "content": desired.power_levels},
    ]
    for parent_id, content in desired.parents.items():
        state.append({"type": "m.space.parent", "state_key": parent_id, "content": content})
    for child_id, content in desired.children.items():
        state.append({"type": "m.space.child", "state_key": child_id, "content": content})
    if encrypted:
        state.append({"type": "m.room.encryption", "state_key": "", "content": MEGOLM})
    return state


MEGOLM = {"algorithm": "m.megolm.v1.aes-sha2"}


def _retired(stored: store.StoredRoom) -> RoomSpec:
    return RoomSpec(
        key=stored.key,
        kind=stored.kind,
        name=None,
        topic=None,
        unit_id=stored.unit_id,
        grid_id=stored.grid_id,
        enterprise_id=stored.enterprise_id,
        retired=True,
    )


def _ids_changed(stored: store.StoredRoom, spec: RoomSpec) -> bool:
    return (stored.kind, stored.unit_id, stored.grid_id, stored.enterprise_id) != (
        spec.kind,
        spec.unit_id,
        spec.grid_id,
        spec.enterprise_id,
    )


async def _all(coros: Iterable[Awaitable[None]]) -> None:
    """Run all; an unexpected error (not a refused request) stops the run like a crash would."""
    try:
        async with asyncio.TaskGroup() as tg:
            for coro in coros:
                tg.create_task(coro)  # type: ignore[arg-type]
    except BaseExceptionGroup as group:
        raise group.exceptions[0] from None

"""Database side of provisioning: room ids by key, members the bot added, account checks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.provision.plan import RoomSpec
from storage.db import Database
from storage.models import ManagedMember, MatrixAccount, ProvisionedRoom, ProvisionRequest, RoomInfo


@dataclass(frozen=True)
class StoredRoom:
    key: str
    room_id: str
    kind: str
    room_version: str | None
    state_hash: str | None
    unit_id: int | None
    grid_id: int | None
    enterprise_id: int | None


@dataclass
class Snapshot:
    rooms: dict[str, StoredRoom]
    managed: dict[str, set[str]]  # room id -> users the bot added
    accounts: dict[str, bool]


async def load(db: Database) -> Snapshot:
    async with db.transaction() as s:
        rows = await s.execute(
            select(ProvisionedRoom, RoomInfo).join(
                RoomInfo, RoomInfo.room_id == ProvisionedRoom.room_id
            )
        )
        rooms = {
            p.key: StoredRoom(
                p.key,
                p.room_id,
                info.kind,
                p.room_version,
                p.state_hash,
                info.unit_id,
                info.grid_id,
                info.enterprise_id,
            )
            for p, info in rows.all()
        }
        managed: dict[str, set[str]] = {}
        for m in await s.scalars(select(ManagedMember)):
            managed.setdefault(m.room_id, set()).add(m.user_id)
        accounts = {a.user_id: a.has_account for a in await s.scalars(select(MatrixAccount))}
    return Snapshot(rooms, managed, accounts)


async def save_accounts(db: Database, found: dict[str, bool]) -> None:
    if not found:
        return
    now = datetime.now(UTC)
    users = sorted(found)
    async with db.transaction() as s:
        known: set[str] = set()
        for i in range(0, len(users), 500):  # well under every driver's parameter limit
            chunk = users[i : i + 500]
            known.update(
                await s.scalars(
                    select(MatrixAccount.user_id).where(MatrixAccount.user_id.in_(chunk))
                )
            )
            for user in chunk:
                if user in known:
                    await s.execute(
                        update(MatrixAccount)
                        .where(MatrixAccount.user_id == user)
                        .values(has_account=found[user], checked_at=now)
                    )
        s.add_all(
            MatrixAccount(user_id=u, has_account=found[u], checked_at=now)
            for u in users
            if u not in known
        )


Op = Callable[["Batch"], Awaitable[None]]


@dataclass
class Batch:
    """One transaction of a Writer, with the rows its ops touch loaded up front (one query
    each instead of one per room)."""

    session: AsyncSession
    infos: dict[str, RoomInfo]
    provisioned: set[str]

    async def room_info(self, spec: RoomSpec, room_id: str) -> None:
        info = self.infos.get(room_id)
        if info is None:
            info = self.infos[room_id] = RoomInfo(room_id=room_id, left=False)
            self.session.add(info)
        info.kind = spec.kind
        info.unit_id, info.grid_id = spec.unit_id, spec.grid_id
        info.enterprise_id = spec.enterprise_id


class Writer:
    """The run's bookkeeping, committed in batches rather than a transaction per room.

    SQLite takes one writer at a time, and dozens of small concurrent transactions cost more
    CPU than the requests they record. A crash before a batch is committed loses nothing the
    next run cannot find again: a room made but not recorded is adopted through the key in its
    creation content (the lease says a run was interrupted), and its members are then seen in
    its state.
    """

    def __init__(self, db: Database, *, batch: int = 50) -> None:
        self.db = db
        self.batch = batch
        self._ops: list[tuple[Op, str, str]] = []
        self._lock = asyncio.Lock()

    async def _add(self, op: Op, room_id: str, key: str) -> None:
        self._ops.append((op, room_id, key))
        if len(self._ops) >= self.batch:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            ops, self._ops = self._ops, []
            if not ops:
                return
            try:
                await self._commit(ops)
            except IntegrityError:
                # The running bot's sync inserted a RoomInfo row in between: one at a time.
                for one in ops:
                    await self._commit([one])

    async def _commit(self, ops: list[tuple[Op, str, str]]) -> None:
        room_ids = list({room_id for _, room_id, _ in ops})
        keys = list({key for _, _, key in ops})
        async with self.db.transaction() as s:
            infos = {
                i.room_id: i
                for i in await s.scalars(select(RoomInfo).where(RoomInfo.room_id.in_(room_ids)))
            }
            provisioned = set(
                await s.scalars(select(ProvisionedRoom.key).where(ProvisionedRoom.key.in_(keys)))
            )
            batch = Batch(s, infos, provisioned)
            for op, _, _ in ops:
                await op(batch)

    async def record_room(
        self,
        spec: RoomSpec,
        room_id: str,
        room_version: str | None,
        invited: Iterable[str],
    ) -> None:
        """A room just made (or found after an interrupted run), with whom its createRoom
        invited."""
        invited = list(invited)

        async def op(b: Batch) -> None:
            await b.room_info(spec, room_id)
            if spec.key in b.provisioned:
                return  # recorded by a run going on at the same time (CLI and bot)
            b.provisioned.add(spec.key)
            await b.session.flush()  # the rows below refer to the RoomInfo row
            b.session.add(ProvisionedRoom(key=spec.key, room_id=room_id, room_version=room_version))
            for user in invited:
                b.session.add(ManagedMember(room_id=room_id, user_id=user))

        await self._add(op, room_id, spec.key)

    async def finish_room(
        self,
        spec: RoomSpec,
        room_id: str,
        *,
        added: Iterable[str],
        removed: Iterable[str],
        state_hash: str | None,
        room_version: str | None,
        ids_changed: bool,
    ) -> None:
        """After a room was checked: who the bot now manages there, and the state it matches."""
        added, removed = list(added), list(removed)

        async def op(b: Batch) -> None:
            s = b.session
            for user in added:
                if await s.get(ManagedMember, (room_id, user)) is None:
                    s.add(ManagedMember(room_id=room_id, user_id=user))
            if removed:
                await s.execute(
                    delete(ManagedMember).where(
                        ManagedMember.room_id == room_id, ManagedMember.user_id.in_(removed)
                    )
                )
            if ids_changed and not spec.retired:
                await b.room_info(spec, room_id)
            await s.execute(
                update(ProvisionedRoom)
                .where(ProvisionedRoom.key == spec.key)
                .values(
                    state_hash=state_hash, room_version=room_version, updated_at=datetime.now(UTC)
                )
            )

        await self._add(op, room_id, spec.key)


def request_provisioning(session: AsyncSession, reason: str) -> None:
    """Queue a run for the bot's provisioning worker (inside the caller's transaction)."""
    session.add(ProvisionRequest(reason=reason[:255]))


async def pending_requests(db: Database) -> list[int]:
    async with db.transaction() as s:
        rows = await s.scalars(
            select(ProvisionRequest.id)
            .where(ProvisionRequest.done_at.is_(None))
            .order_by(ProvisionRequest.id)
        )
        return list(rows)


async def mark_requests_done(db: Database, ids: list[int]) -> None:
    if not ids:
        return
    async with db.transaction() as s:
        await s.execute(
            update(ProvisionRequest)
            .where(ProvisionRequest.id.in_(ids))
            .values(done_at=datetime.now(UTC))
        )


async def request_reasons(db: Database, ids: list[int]) -> list[str]:
    """Why each of the given requests was queued (e.g. an admin import's progress message)."""
    if not ids:
        return []
    async with db.transaction() as s:
        rows = await s.scalars(
            select(ProvisionRequest.reason)
            .where(ProvisionRequest.id.in_(ids))
            .order_by(ProvisionRequest.id)
        )
        return list(rows)

"""Admins named in chat, the admin audit, and what the admin room reads: the roster's state
fingerprint, the roster as a table (export) and the bot's health figures."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from storage import leases
from storage.models import (
    Admin,
    AdminAudit,
    AdminUnit,
    Assignment,
    BotSession,
    Enterprise,
    Grid,
    InboxEvent,
    OutboxMessage,
    Person,
    Role,
    ScheduledJob,
)

# --- admins ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AdminEntry:
    user_id: str
    unit_id: int | None  # None: every unit (province-wide)
    unit_name: str | None
    added_by: str
    added_at: datetime


async def admin_scope(session: AsyncSession, user_id: str) -> tuple[bool, frozenset[int] | None]:
    """Whether ``user_id`` is an admin named in chat, and the units they administer (None:
    all of them)."""
    rows = (await session.execute(select(Admin.unit_id).where(Admin.user_id == user_id))).all()
    if not rows:
        return False, None
    units = [r[0] for r in rows]
    return True, None if None in units else frozenset(units)


async def level1_grids_of(session: AsyncSession, unit_ids: Iterable[int]) -> frozenset[int]:
    ids = list(unit_ids)
    if not ids:
        return frozenset()
    found = await session.scalars(
        select(Grid.id).where(Grid.unit_id.in_(ids), Grid.level == 1, Grid.active.is_(True))
    )
    return frozenset(found)


async def list_admins(session: AsyncSession) -> list[AdminEntry]:
    rows = await session.execute(
        select(Admin, AdminUnit.name)
        .outerjoin(AdminUnit, AdminUnit.id == Admin.unit_id)
        .order_by(Admin.added_at, Admin.user_id)
    )
    return [
        AdminEntry(a.user_id, a.unit_id, name, a.added_by, a.added_at) for a, name in rows.all()
    ]


async def admin_ids(session: AsyncSession) -> list[str]:
    """Every admin named in chat, county or province-wide: the admin room's members besides
    bot.yaml's ``admins`` (bot/provision)."""
    return sorted(await session.scalars(select(Admin.user_id).distinct()))


async def get_admin(session: AsyncSession, user_id: str) -> AdminEntry | None:
    for entry in await list_admins(session):
        if entry.user_id == user_id:
            return entry
    return None


async def add_admin(
    session: AsyncSession, user_id: str, unit_id: int | None, added_by: str, now: datetime
) -> None:
    row = await session.get(Admin, user_id)
    if row is None:
        session.add(Admin(user_id=user_id, unit_id=unit_id, added_by=added_by, added_at=now))
    else:
        row.unit_id, row.added_by, row.added_at = unit_id, added_by, now


async def remove_admin(session: AsyncSession, user_id: str) -> bool:
    done = await session.execute(delete(Admin).where(Admin.user_id == user_id))
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def unit_named(session: AsyncSession, name: str) -> tuple[int, str] | None:
    """An active county or special body by name (as the roster names it)."""
    row = (
        await session.execute(
            select(AdminUnit.id, AdminUnit.name).where(
                AdminUnit.name == name,
                AdminUnit.active.is_(True),
                AdminUnit.kind.in_(("county", "special")),
            )
        )
    ).first()
    return (row[0], row[1]) if row else None


async def unit_names(session: AsyncSession, unit_ids: Iterable[int]) -> list[str]:
    ids = list(unit_ids)
    if not ids:
        return []
    return list(
        await session.scalars(
            select(AdminUnit.name).where(AdminUnit.id.in_(ids)).order_by(AdminUnit.name)
        )
    )


# --- audit (append-only: rows are only ever added) ----------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]


def audit(
    session: AsyncSession,
    actor: str,
    action: str,
    *,
    room_id: str | None = None,
    now: datetime | None = None,
    **detail: Any,
) -> None:
    session.add(
        AdminAudit(
            at=now or datetime.now(UTC),
            actor=actor,
            action=action,
            room_id=room_id,
            detail=detail,
        )
    )


async def audit_log(session: AsyncSession, limit: int = 30) -> list[AuditEntry]:
    rows = await session.scalars(
        select(AdminAudit).order_by(AdminAudit.at.desc(), AdminAudit.id.desc()).limit(limit)
    )
    return [AuditEntry(r.at, r.actor, r.action, dict(r.detail or {})) for r in rows]


# --- the roster's state ------------------------------------------------------------------


async def roster_fingerprint(session: AsyncSession) -> str:
    """A hash of everything an import reads and writes: equal fingerprints, equal diffs."""
    digest = hashlib.sha256()
    queries: list[Any] = [
        select(
            AdminUnit.id, AdminUnit.kind, AdminUnit.name, AdminUnit.parent_id, AdminUnit.active
        ).order_by(AdminUnit.id),
        select(Grid.id, Grid.unit_id, Grid.level, Grid.domain, Grid.name, Grid.active).order_by(
            Grid.id
        ),
        select(
            Enterprise.id,
            Enterprise.grid_id,
            Enterprise.name,
            Enterprise.type,
            Enterprise.active,
            Enterprise.latitude,
            Enterprise.longitude,
        ).order_by(Enterprise.id),
        select(Person.id, Person.name, Person.phone, Person.matrix_id, Person.active).order_by(
            Person.id
        ),
        select(
            Role.id, Role.person_id, Role.kind, Role.grid_id, Role.enterprise_id, Role.until
        ).order_by(Role.id),
        select(
            Assignment.id, Assignment.person_id, Assignment.enterprise_id, Assignment.until
        ).order_by(Assignment.id),
    ]
    for query in queries:
        for row in (await session.execute(query)).all():
            digest.update(repr(tuple(row)).encode())
        digest.update(b"|")
    return digest.hexdigest()[:16]


@dataclass
class PersonCell:
    name: str
    phone: str | None
    matrix_id: str | None


@dataclass
class EnterpriseLine:
    """One enterprise with everything the import format puts on its row."""

    province: str | None
    city: str | None
    county: str
    county_id: int
    unit_kind: str
    domain: str
    enterprise: str
    type: str
    longitude: float | None
    latitude: float | None
    people: dict[str, list[PersonCell]] = field(default_factory=dict)


async def roster_lines(
    session: AsyncSession, unit_ids: frozenset[int] | None
) -> list[EnterpriseLine]:
    """The active roster, one line per enterprise (in ``unit_ids``, or all), with the current
    holders of every role the import format has a column for."""
    units = {u.id: u for u in await session.scalars(select(AdminUnit))}
    grids = {g.id: g for g in await session.scalars(select(Grid).where(Grid.active.is_(True)))}
    people = {
        p.id: PersonCell(p.name, p.phone, p.matrix_id)
        for p in await session.scalars(select(Person).where(Person.active.is_(True)))
    }
    by_grid: dict[tuple[str, int], list[PersonCell]] = {}
    by_ent: dict[tuple[str, int], list[PersonCell]] = {}
    for r in await session.scalars(select(Role).where(Role.until.is_(None)).order_by(Role.id)):
        if r.person_id not in people:
            continue
        if r.grid_id is not None:
            by_grid.setdefault((r.kind, r.grid_id), []).append(people[r.person_id])
        elif r.enterprise_id is not None:
            by_ent.setdefault((r.kind, r.enterprise_id), []).append(people[r.person_id])
    for a in await session.scalars(
        select(Assignment).where(Assignment.until.is_(None)).order_by(Assignment.id)
    ):
        if a.person_id in people:
            by_ent.setdefault(("l2_member", a.enterprise_id), []).append(people[a.person_id])
    lines: list[EnterpriseLine] = []
    ents = await session.scalars(
        select(Enterprise).where(Enterprise.active.is_(True)).order_by(Enterprise.id)
    )
    for e in ents:
        grid = grids.get(e.grid_id)
        unit = units.get(e.unit_id)
        if grid is None or unit is None or not unit.active:
            continue
        if unit_ids is not None and unit.id not in unit_ids:
            continue
        parent = units.get(unit.parent_id) if unit.parent_id else None
        city = parent.name if parent is not None and parent.kind == "city" else None
        top = units.get(parent.parent_id) if parent is not None and parent.parent_id else parent
        province = top.name if top is not None and top.kind == "province" else None
        l1 = grid.parent_id
        line = EnterpriseLine(
            province=province,
            city=city,
            county=unit.name,
            county_id=unit.id,
            unit_kind=unit.kind,
            domain=grid.domain,
            enterprise=e.name,
            type=e.type,
            longitude=e.longitude,
            latitude=e.latitude,
        )
        for kind in ("l1_chief", "l1_office_director", "l1_office_member"):
            line.people[kind] = by_grid.get((kind, l1), []) if l1 else []
        for kind in ("l2_chief", "l2_office_member"):
            line.people[kind] = by_grid.get((kind, grid.id), [])
        for kind in ("l2_member", "ent_chief", "ent_member"):
            line.people[kind] = by_ent.get((kind, e.id), [])
        lines.append(line)
    lines.sort(key=lambda x: (x.county, x.domain, x.enterprise))
    return lines


# --- health ------------------------------------------------------------------------------


@dataclass
class Health:
    database_bytes: int | None = None
    sync_token_at: datetime | None = None
    inbox_pending: int = 0
    oldest_unhandled: datetime | None = None
    newest_event_ts: int | None = None  # origin_server_ts (ms) of the newest stored event
    outbox_pending: int = 0
    outbox_failed: int = 0
    failing_rooms: list[tuple[str, int, str | None]] = field(default_factory=list)
    oldest_pending_send: datetime | None = None
    jobs_due: int = 0
    jobs_late: int = 0
    errors: int = 0
    last_errors: list[str] = field(default_factory=list)
    failed_since: datetime | None = None  # the oldest failure not followed by a success
    # The process handling events (bot/lease.py): host:pid:tag, and until when it holds.
    lease_holder: str | None = None
    lease_until: datetime | None = None


async def health(session: AsyncSession, now: datetime, since: datetime) -> Health:
    """Figures for /health; failures and errors are counted since ``since`` (the bot's start)."""
    h = Health()
    h.lease_holder, h.lease_until = await leases.holder_of(session, "inbox")
    h.inbox_pending = int(
        await session.scalar(select(func.count()).where(InboxEvent.handled_at.is_(None))) or 0
    )
    h.oldest_unhandled = await session.scalar(
        select(func.min(InboxEvent.received_at)).where(InboxEvent.handled_at.is_(None))
    )
    h.newest_event_ts = await session.scalar(select(func.max(InboxEvent.origin_server_ts)))
    h.outbox_pending = int(
        await session.scalar(select(func.count()).where(OutboxMessage.status == "pending")) or 0
    )
    h.oldest_pending_send = await session.scalar(
        select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status == "pending")
    )
    h.outbox_failed = int(
        await session.scalar(
            select(func.count()).where(
                OutboxMessage.status == "failed", OutboxMessage.created_at >= since
            )
        )
        or 0
    )
    rooms = await session.execute(
        select(OutboxMessage.room_id, func.count(), func.max(OutboxMessage.last_error))
        .where(OutboxMessage.status == "failed", OutboxMessage.created_at >= since)
        .group_by(OutboxMessage.room_id)
        .order_by(func.count().desc())
        .limit(10)
    )
    h.failing_rooms = [(r[0], int(r[1]), r[2]) for r in rooms.all()]
    h.jobs_due = int(
        await session.scalar(
            select(func.count()).where(ScheduledJob.done_at.is_(None), ScheduledJob.due_at <= now)
        )
        or 0
    )
    h.jobs_late = int(
        await session.scalar(
            select(func.count()).where(
                ScheduledJob.outcome.in_(("late", "error")), ScheduledJob.done_at >= since
            )
        )
        or 0
    )
    errors = await session.scalars(
        select(InboxEvent.event_id)
        .where(InboxEvent.outcome == "error", InboxEvent.handled_at >= since)
        .order_by(InboxEvent.handled_at.desc())
    )
    error_ids = list(errors)
    h.errors = len(error_ids)
    job_errors = await session.scalars(
        select(ScheduledJob.last_error)
        .where(ScheduledJob.outcome == "error", ScheduledJob.done_at >= since)
        .order_by(ScheduledJob.done_at.desc())
        .limit(5)
    )
    h.last_errors = [(e or "").splitlines()[0] if e else "" for e in job_errors if e]
    h.last_errors += [f"event {i}" for i in error_ids[:5]]
    h.errors += len(h.last_errors) - min(len(error_ids), 5)
    last_ok = await session.scalar(
        select(func.max(OutboxMessage.sent_at)).where(OutboxMessage.status == "sent")
    )
    failed_q = select(func.min(OutboxMessage.created_at)).where(
        OutboxMessage.status == "failed", OutboxMessage.created_at >= since
    )
    if last_ok is not None:
        failed_q = failed_q.where(OutboxMessage.created_at > last_ok)
    h.failed_since = await session.scalar(failed_q)
    h.database_bytes = await _database_bytes(session)
    return h


async def oldest_failure_since(session: AsyncSession, since: datetime) -> datetime | None:
    """When messages began to fail, counting only failures after ``since``: None when the
    latest messages went out (or none failed)."""
    return await session.scalar(
        select(func.min(OutboxMessage.created_at)).where(
            OutboxMessage.status == "failed", OutboxMessage.created_at >= since
        )
    )


async def sync_session_of(session: AsyncSession, user_id: str) -> BotSession | None:
    return await session.get(BotSession, user_id)


async def _database_bytes(session: AsyncSession) -> int | None:
    dialect = (await session.connection()).dialect.name
    try:
        if dialect == "postgresql":
            return int(await session.scalar(text("SELECT pg_database_size(current_database())")))
        if dialect == "sqlite":
            pages = await session.scalar(text("PRAGMA page_count"))
            size = await session.scalar(text("PRAGMA page_size"))
            return int(pages) * int(size)
    except Exception:
        return None
    return None


async def failing_rooms(session: AsyncSession, since: datetime) -> dict[str, datetime]:
    """Rooms whose latest finished message (since ``since``) failed, each with when its
    failures began (the first failure after its last message that went out)."""
    rows = await session.execute(
        select(OutboxMessage.room_id, OutboxMessage.status, OutboxMessage.created_at)
        .where(OutboxMessage.status.in_(("sent", "failed")), OutboxMessage.created_at >= since)
        .order_by(OutboxMessage.room_id, OutboxMessage.id)
    )
    began: dict[str, datetime] = {}
    for room_id, status, created in rows.all():
        if status == "sent":
            began.pop(room_id, None)
        else:
            began.setdefault(room_id, created)
    return began


async def last_alert(session: AsyncSession) -> str | None:
    """The last send-failure alert state the bot announced ("alert_failing" or
    "alert_recovered"), from the audit."""
    return await session.scalar(
        select(AdminAudit.action)
        .where(AdminAudit.action.in_(("alert_failing", "alert_recovered")))
        .order_by(AdminAudit.id.desc())
        .limit(1)
    )

"""SQLAlchemy models: the grid roster and the bot's runtime bookkeeping.

History is never hard-deleted: rows that leave the roster get ``active = False`` and a date,
and role / assignment rows get an ``until`` date, so past reports stay true.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back time-zone aware, on SQLite and PostgreSQL.

    SQLite keeps no offset, so without this a deadline read back from SQLite is naive and cannot
    be compared with ``datetime.now(tz)``; PostgreSQL's timestamptz is aware already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class UnitKind(enum.StrEnum):
    PROVINCE = "province"
    CITY = "city"
    COUNTY = "county"
    # A province-level body running a special grid of its own (省综交中心, 省交通执法局, 厅治超办).
    SPECIAL = "special"


class EnterpriseType(enum.StrEnum):
    """The six kinds of enterprise or project in scope; values are the Chinese names."""

    PASSENGER = "道路客运企业及站场"
    FREIGHT = "道路货运企业"
    PORT = "港口码头"
    SHIPPING = "航运企业"
    FERRY = "渡口"
    CONSTRUCTION = "在建交通工程"


class RoleKind(enum.StrEnum):
    L1_CHIEF = "l1_chief"  # 一级网格长: bureau head
    L1_OFFICE_DIRECTOR = "l1_office_director"  # 一级网格办公室主任
    L1_OFFICE_MEMBER = "l1_office_member"  # 一级网格办公室成员
    L2_CHIEF = "l2_chief"  # 二级网格长: deputy head; also a level-1 member
    L2_OFFICE_MEMBER = "l2_office_member"  # 二级网格办公室成员
    L2_MEMBER = "l2_member"  # 二级网格员: serves 1:N enterprises
    ENT_CHIEF = "ent_chief"  # 三级网格长: enterprise principal
    ENT_MEMBER = "ent_member"  # 三级网格员


class AdminUnit(Base):
    """Province, city, county, or a province-level special body that owns grids."""

    __tablename__ = "admin_units"
    __table_args__ = (UniqueConstraint("kind", "name", name="uq_admin_units_kind_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(100))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("admin_units.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deactivated_on: Mapped[date | None] = mapped_column(Date)

    parent: Mapped[AdminUnit | None] = relationship(remote_side=[id])


class Grid(Base):
    """A level-1 grid (one per county or special body) or a level-2 grid (one per domain)."""

    __tablename__ = "grids"
    __table_args__ = (UniqueConstraint("unit_id", "level", "domain", name="uq_grids_unit_domain"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("admin_units.id"))
    level: Mapped[int] = mapped_column(Integer)
    # Level 2: the business domain (e.g. 道路货运); level 1: the empty string.
    domain: Mapped[str] = mapped_column(String(100), default="")
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deactivated_on: Mapped[date | None] = mapped_column(Date)

    unit: Mapped[AdminUnit] = relationship()
    parent: Mapped[Grid | None] = relationship(remote_side=[id])


class Enterprise(Base):
    """A level-3 grid: one enterprise or project, served by a level-2 grid."""

    __tablename__ = "enterprises"
    __table_args__ = (UniqueConstraint("unit_id", "name", name="uq_enterprises_unit_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("admin_units.id"))
    grid_id: Mapped[int] = mapped_column(ForeignKey("grids.id"))
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_on: Mapped[date | None] = mapped_column(Date)
    deactivated_on: Mapped[date | None] = mapped_column(Date)
    # Where it is (WGS-84 degrees, from the roster's 经度/纬度, resolved by hand): a visit's
    # shared location is measured against it. Both or neither.
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)

    unit: Mapped[AdminUnit] = relationship()
    grid: Mapped[Grid] = relationship()


class Person(Base):
    """Someone in the roster. Identified by Matrix id when known, else by phone."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(32), index=True)
    matrix_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deactivated_on: Mapped[date | None] = mapped_column(Date)


class Role(Base):
    """A person's role in a grid or enterprise over a period (``until`` None = current)."""

    __tablename__ = "roles"
    __table_args__ = (
        Index("ix_roles_person_current", "person_id", "until"),
        Index("ix_roles_grid", "grid_id"),
        Index("ix_roles_enterprise", "enterprise_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    kind: Mapped[str] = mapped_column(String(32))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id"))
    since: Mapped[date] = mapped_column(Date)
    until: Mapped[date | None] = mapped_column(Date)

    person: Mapped[Person] = relationship()
    grid: Mapped[Grid | None] = relationship()
    enterprise: Mapped[Enterprise | None] = relationship()


class Assignment(Base):
    """The 1:N service of a level-2 member to an enterprise over a period."""

    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_assignments_person", "person_id", "until"),
        Index("ix_assignments_enterprise", "enterprise_id", "until"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    since: Mapped[date] = mapped_column(Date)
    until: Mapped[date | None] = mapped_column(Date)

    person: Mapped[Person] = relationship()
    enterprise: Mapped[Enterprise] = relationship()


# --- runtime ---------------------------------------------------------------------------------


class BotSession(Base):
    """The bot's login and sync position; one row per bot user."""

    __tablename__ = "bot_session"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(255))
    access_token: Mapped[str] = mapped_column(Text)
    sync_token: Mapped[str | None] = mapped_column(Text)
    filter_id: Mapped[str | None] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime(), server_default=func.now(), onupdate=func.now()
    )


class UserPreference(Base):
    """Per-Matrix-user settings chosen in chat (e.g. /language), for roster people and admins."""

    __tablename__ = "user_prefs"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    language: Mapped[str | None] = mapped_column(String(8))


class RoomInfo(Base):
    """What the bot knows of a room: when it joined, and what the room is for."""

    __tablename__ = "rooms"

    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # county_space, grid_space, l1_room, l2_room, enterprise_room, admin_room, direct, other
    kind: Mapped[str] = mapped_column(String(32), default="other")
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("admin_units.id"))
    grid_id: Mapped[int | None] = mapped_column(ForeignKey("grids.id"))
    enterprise_id: Mapped[int | None] = mapped_column(ForeignKey("enterprises.id"))
    # origin_server_ts (ms) of the bot's latest join; earlier events are ignored.
    joined_ts: Mapped[int | None] = mapped_column(BigInteger)
    join_event_id: Mapped[str | None] = mapped_column(String(255))
    left: Mapped[bool] = mapped_column(Boolean, default=False)


class InboxEvent(Base):
    """Every timeline event the bot received, written in the same transaction as the sync token."""

    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_pending", "handled_at", "seq"),)

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Arrival order, so pending events are handled in the order they were received.
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    room_id: Mapped[str] = mapped_column(String(255))
    sender: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(255))
    origin_server_ts: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    handled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # handled | ignored | error
    outcome: Mapped[str | None] = mapped_column(String(32))


class OutboxMessage(Base):
    """A message to send. The transaction id is stored before the first attempt and reused."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_pending", "sent_at", "id"),
        Index("ix_outbox_status_room", "status", "room_id"),
        # Replies and reactions name the bot's event: find what it carried (notice, case).
        Index("ix_outbox_event_id", "event_id"),
        # Tap-to-answer: the keys the bot seeded on a question.
        Index("ix_outbox_annotates_txn", "annotates_txn"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    room_id: Mapped[str] = mapped_column(String(255), index=True)
    txn_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(255), default="m.room.message")
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The inbox event (or other cause) this message answers, for tracing.
    cause: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    event_id: Mapped[str | None] = mapped_column(String(255))
    # pending | sent | failed (gave up: e.g. the bot is not in the room)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # Relations, resolved by the sender when it sends this message: each is either a Matrix
    # event id known when queuing, or the txn id of an earlier queued message of the same room
    # (whose event id exists only once it is sent). Replies, threads and edits are all so.
    # (Txn ids, not row ids: a foreign key to the same table would let the ORM reorder the
    # inserts of one transaction, and a room's messages are sent in id order.)
    reply_to_event: Mapped[str | None] = mapped_column(String(255))
    reply_to_txn: Mapped[str | None] = mapped_column(String(64))
    thread_root_event: Mapped[str | None] = mapped_column(String(255))
    thread_root_txn: Mapped[str | None] = mapped_column(String(64))
    edit_of_event: Mapped[str | None] = mapped_column(String(255))
    edit_of_txn: Mapped[str | None] = mapped_column(String(64))
    # A reaction (m.reaction) annotates this event or earlier queued message: tap-to-answer keys.
    annotates_event: Mapped[str | None] = mapped_column(String(255))
    annotates_txn: Mapped[str | None] = mapped_column(String(64))
    # A file the sender uploads (once per content hash) and puts in ``content["url"]``.
    file_id: Mapped[int | None] = mapped_column(ForeignKey("outbox_files.id"))
    file: Mapped[OutboxFile | None] = relationship(lazy="raise")


class OutboxFile(Base):
    """Bytes the bot sends as a file (a report, an export). Uploaded once per content hash:
    the mxc URI is kept here and reused by every message that carries the same bytes."""

    __tablename__ = "outbox_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))
    mimetype: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    url: Mapped[str | None] = mapped_column(String(255))
    uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # For encrypted rooms: the ``file`` object of the encrypted upload (url, key, iv, hashes).
    encrypted: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ConversationState(Base):
    """An open multi-step conversation, keyed by (room, sender) like aiogram's FSM storage."""

    __tablename__ = "conversations"

    room_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    sender: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    locale: Mapped[str] = mapped_column(String(8), default="zh_CN")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # The outbox message asking the current question (taps on it answer the step).
    question_txn: Mapped[str | None] = mapped_column(String(64))
    # The answer taken last and {"state", "data"} before it: an edit of that answer, while
    # nothing else was answered since, replaces it.
    answer_event_id: Mapped[str | None] = mapped_column(String(255))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class ScheduledJob(Base):
    """A job due at a time: the database is the truth, the in-memory scheduler only a timer.

    ``key`` makes creation idempotent (e.g. "visit-reminder:2026-11-20"); ``done_at`` is set in
    the same transaction as the messages the job queues, so a job runs once even across crashes.
    """

    __tablename__ = "scheduled_jobs"
    __table_args__ = (Index("ix_scheduled_jobs_due", "done_at", "due_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255), unique=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # done | late (ran after its time, e.g. the bot was down) | skipped | error
    outcome: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


# --- provisioning: rooms and spaces that mirror the grid (issue 3) ---------------------------


class ProvisionedRoom(Base):
    """A room or space the bot made for the grid; ``key`` names what it mirrors (e.g. "ent:12").

    The kind and the grid / enterprise it belongs to live in ``rooms`` (RoomInfo); this row adds
    the room version and the hash of the state last applied. A room made but not recorded (a
    crash in between) is found again by the key its ``m.room.create`` content carries.
    """

    __tablename__ = "provisioned_rooms"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.room_id"), unique=True)
    # Rooms made before migration 0007 carry a deterministic alias; newer ones none.
    alias: Mapped[str | None] = mapped_column(String(255))
    # Power-level rules differ by room version (v12: the creator is above every level).
    room_version: Mapped[str | None] = mapped_column(String(32))
    # sha256 of the desired state last applied in full; None = check against the homeserver.
    state_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ProvisionLease(Base):
    """One provisioning run at a time (the bot's worker and ``gridbot provision`` share the
    database; two runs would both make a missing room). A single row (id 1).

    ``unfinished`` is set when a run starts and cleared only when it ends having recorded every
    room it made; a run that finds it set first looks for rooms made but never recorded.
    """

    __tablename__ = "provision_lease"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    unfinished: Mapped[bool] = mapped_column(Boolean, default=False)


class AppserviceTransaction(Base):
    """A transaction the homeserver pushed (appservice mode), stored with its events."""

    __tablename__ = "appservice_transactions"

    txn_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    events: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class RunnerLease(Base):
    """Who consumes the inbox (runs dispatcher, sender, scheduler): one process at a time; the
    others wait as hot standbys and take over when the lease expires (bot/lease.py)."""

    __tablename__ = "runner_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ManagedMember(Base):
    """Someone the bot put into a room; only these does the bot ever remove again."""

    __tablename__ = "managed_members"

    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.room_id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class MatrixAccount(Base):
    """Whether a roster Matrix id has an account on its homeserver (profile lookup)."""

    __tablename__ = "matrix_accounts"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    has_account: Mapped[bool] = mapped_column(Boolean)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ProvisionRequest(Base):
    """Ask the running bot to re-provision (e.g. after a confirmed staff change)."""

    __tablename__ = "provision_requests"
    __table_args__ = (Index("ix_provision_requests_pending", "done_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reason: Mapped[str] = mapped_column(String(255))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StaffChange(Base):
    """A staff change an enterprise declared (人员变动), applied once its level-2 member confirms.

    ``items`` is a list of {"action": "leave", "person_id", "name", "kinds"} and
    {"action": "join", "kind", "name", "phone", "matrix_id"} (plus "person_id" once applied).
    """

    __tablename__ = "staff_changes"
    __table_args__ = (Index("ix_staff_changes_enterprise", "enterprise_id", "status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id"))
    room_id: Mapped[str] = mapped_column(String(255))
    requested_by: Mapped[str] = mapped_column(String(255))
    request_event_id: Mapped[str] = mapped_column(String(255))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # pending | confirmed | rejected | cancelled
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    decided_by: Mapped[str | None] = mapped_column(String(255))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    effective_on: Mapped[date | None] = mapped_column(Date)
    note: Mapped[str | None] = mapped_column(Text)
    # Set by the first roster import whose file agrees with the change (or overrides it with
    # --file-wins); until then an import that would undo it is refused.
    reconciled_on: Mapped[date | None] = mapped_column(Date)

    enterprise: Mapped[Enterprise] = relationship()

    @property
    def code(self) -> str:
        return f"S-{self.id}"


class Admin(Base):
    """An admin named in chat (/admin add). ``unit_id`` None: the whole province (every unit);
    else that county (or special body) only. bot.yaml's ``admins`` are not stored here: they
    are the first admins, province-wide, and cannot be removed from chat."""

    __tablename__ = "admins"

    user_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("admin_units.id"))
    added_by: Mapped[str] = mapped_column(String(255))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AdminAudit(Base):
    """Every admin action (import, export, provisioning, admin changes): append-only."""

    __tablename__ = "admin_audit"
    __table_args__ = (Index("ix_admin_audit_at", "at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(32))
    room_id: Mapped[str | None] = mapped_column(String(255))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

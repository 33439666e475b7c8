"""The outbox: messages to send, each with a transaction id fixed before the first attempt.

A message may declare relations (reply, thread, edit) to a Matrix event or to an earlier queued
message, and may carry a file; :func:`prepare` turns the stored row into the content to send,
once its parents are sent. Every transaction that queues a message notes the room in the
session, and the database tells the sender after commit (see ``storage.db``).
"""

from __future__ import annotations

import copy
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OutboxFile, OutboxMessage

# session.info key: the rooms this transaction queued messages for (read after commit).
QUEUED_ROOMS = "gridbot_outbox_rooms"
# … and those of them it queued an answer to a person for (the sender lets them go first).
ANSWER_ROOMS = "gridbot_outbox_answer_rooms"
_FILES = "gridbot_outbox_files"

REACTION = "m.reaction"

PENDING = "pending"
SENT = "sent"
FAILED = "failed"

# An event id, or an earlier queued message (the sender puts in its event id once it is sent).
Ref = str | OutboxMessage

# ``last_error`` of a message dropped because the message it relates to was never sent.
PARENT_NOT_SENT = "GRIDBOT_PARENT_NOT_SENT"


def enqueue(
    session: AsyncSession,
    room_id: str,
    content: dict[str, Any],
    *,
    event_type: str = "m.room.message",
    cause: str | None = None,
    txn_id: str | None = None,
    reply_to: Ref | None = None,
    thread_root: Ref | None = None,
    edit_of: Ref | None = None,
    annotates: Ref | None = None,
    file: OutboxFile | None = None,
) -> OutboxMessage:
    msg = OutboxMessage(
        room_id=room_id,
        txn_id=txn_id or f"gridbot-{uuid.uuid4().hex}",
        event_type=event_type,
        content=content,
        cause=cause,
        attempts=0,
        status=PENDING,
    )
    relations = {
        "reply_to": reply_to,
        "thread_root": thread_root,
        "edit_of": edit_of,
        "annotates": annotates,
    }
    for name, ref in relations.items():
        if isinstance(ref, OutboxMessage):
            if ref.room_id != room_id:
                raise ValueError(f"{name}: a relation must stay in its room ({ref.room_id})")
            setattr(msg, f"{name}_txn", ref.txn_id)
        elif ref:
            setattr(msg, f"{name}_event", ref)
    if file is not None:
        msg.file = file
    session.add(msg)
    session.info.setdefault(QUEUED_ROOMS, set()).add(room_id)
    if answers_person(msg):
        session.info.setdefault(ANSWER_ROOMS, set()).add(room_id)
    return msg


def add_file(session: AsyncSession, data: bytes, name: str, mimetype: str) -> OutboxFile:
    """Keep bytes to send; the same bytes queued twice in one transaction are stored once."""
    digest = hashlib.sha256(data).hexdigest()
    files: dict[str, OutboxFile] = session.info.setdefault(_FILES, {})
    if digest not in files:
        files[digest] = OutboxFile(
            sha256=digest, name=name, mimetype=mimetype, size=len(data), data=data
        )
        session.add(files[digest])
    return files[digest]


async def pending_rooms(session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(OutboxMessage.room_id).where(OutboxMessage.status == PENDING).distinct()
    )
    return list(rows)


async def next_for_room(session: AsyncSession, room_id: str) -> OutboxMessage | None:
    return await session.scalar(
        select(OutboxMessage)
        .where(OutboxMessage.room_id == room_id, OutboxMessage.status == PENDING)
        .order_by(OutboxMessage.id)
        .limit(1)
    )


@dataclass(frozen=True)
class Upload:
    """A file the sender must upload before it can send a message."""

    file_id: int
    sha256: str
    name: str
    mimetype: str
    data: bytes
    encrypted: bool = False  # for an encrypted room: encrypt, upload, keep the file object


@dataclass(frozen=True)
class Prepared:
    """What the sender does next with a message: send ``content``, upload first, wait, or
    go on to the next one (``dropped``: it has nothing left to refer to)."""

    content: dict[str, Any] | None = None
    upload: Upload | None = None
    wait_for: int | None = None  # a parent message still pending
    dropped: bool = False


async def prepare(session: AsyncSession, msg: OutboxMessage, encrypted: bool = False) -> Prepared:
    """Resolve a queued message's relations and file into the content to send now.

    A parent that is still pending makes the message wait (a parent is always earlier in the
    same room, so this is rare); a parent that failed is dropped from the relations, and an
    edit of a message that never went out is sent as a message of its own. A reaction to a
    message that never went out is marked failed and dropped. In an ``encrypted`` room a file
    goes as ``file`` (its encrypted upload), elsewhere as ``url``.
    """
    events: dict[str, str | None] = {}
    for name in ("reply_to", "thread_root", "edit_of", "annotates"):
        event_id = getattr(msg, f"{name}_event")
        parent_txn = getattr(msg, f"{name}_txn")
        if parent_txn is not None:
            parent = await session.scalar(
                select(OutboxMessage).where(OutboxMessage.txn_id == parent_txn)
            )
            if parent is not None and parent.status == PENDING:
                return Prepared(wait_for=parent.id)
            event_id = parent.event_id if parent is not None and parent.status == SENT else None
        events[name] = event_id
    if msg.event_type == REACTION and events["annotates"] is None:
        why = f"{PARENT_NOT_SENT}: the reacted-to message was never sent"
        await mark_attempt(session, msg.id, why, give_up=True)
        return Prepared(dropped=True)
    content = copy.deepcopy(msg.content)
    if msg.file_id is not None:
        file = await session.get(OutboxFile, msg.file_id)
        assert file is not None
        if encrypted:
            enc = file.encrypted or await uploaded_encrypted(session, file.sha256, file.id)
            if enc is None:
                return Prepared(
                    upload=Upload(
                        file.id, file.sha256, file.name, file.mimetype, file.data, encrypted=True
                    )
                )
            content.pop("url", None)
            content["file"] = enc
        else:
            url = file.url or await uploaded_url(session, file.sha256, file.id)
            if url is None:
                return Prepared(
                    upload=Upload(file.id, file.sha256, file.name, file.mimetype, file.data)
                )
            content["url"] = url
    return Prepared(content=with_relations(content, **events))


async def uploaded_url(session: AsyncSession, sha256: str, file_id: int) -> str | None:
    """The mxc URI of these bytes if they were uploaded before (for any message); it is then
    kept on ``file_id`` too."""
    url = await session.scalar(
        select(OutboxFile.url)
        .where(OutboxFile.sha256 == sha256, OutboxFile.url.is_not(None))
        .limit(1)
    )
    if url is not None:
        await session.execute(update(OutboxFile).where(OutboxFile.id == file_id).values(url=url))
    return url


async def uploaded_encrypted(
    session: AsyncSession, sha256: str, file_id: int
) -> dict[str, Any] | None:
    """The encrypted upload of these bytes (a ``file`` object) if made before; kept on
    ``file_id`` too."""
    rows = await session.scalars(
        select(OutboxFile.encrypted).where(
            OutboxFile.sha256 == sha256, OutboxFile.encrypted.is_not(None)
        )
    )
    enc = next((r for r in rows if r), None)
    if enc is not None:
        await session.execute(
            update(OutboxFile).where(OutboxFile.id == file_id).values(encrypted=enc)
        )
    return enc


async def set_file_encrypted(session: AsyncSession, file_id: int, file: dict[str, Any]) -> None:
    await session.execute(
        update(OutboxFile)
        .where(OutboxFile.id == file_id)
        .values(encrypted=file, uploaded_at=datetime.now(UTC))
    )


def with_relations(
    content: dict[str, Any],
    *,
    reply_to: str | None = None,
    thread_root: str | None = None,
    edit_of: str | None = None,
    annotates: str | None = None,
) -> dict[str, Any]:
    """Add ``m.relates_to`` (and for an edit ``m.new_content``) to message content."""
    if annotates:
        relation = content.get("m.relates_to") or {}
        content["m.relates_to"] = {**relation, "rel_type": "m.annotation", "event_id": annotates}
        return content
    if edit_of:
        new_content = {k: v for k, v in content.items() if k != "m.relates_to"}
        edited = {
            **new_content,
            "body": "* " + str(content.get("body", "")),
            "m.new_content": new_content,
            "m.relates_to": {"rel_type": "m.replace", "event_id": edit_of},
            # Whoever the original mentioned was pinged already: an edit pings nobody again.
            "m.mentions": {},
        }
        if "formatted_body" in content:
            edited["formatted_body"] = "* " + str(content["formatted_body"])
        return edited
    if thread_root:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": thread_root,
            "is_falling_back": reply_to is None,
            "m.in_reply_to": {"event_id": reply_to or thread_root},
        }
    elif reply_to:
        content["m.relates_to"] = {"m.in_reply_to": {"event_id": reply_to}}
    return content


async def set_file_url(session: AsyncSession, file_id: int, url: str) -> None:
    await session.execute(
        update(OutboxFile)
        .where(OutboxFile.id == file_id)
        .values(url=url, uploaded_at=datetime.now(UTC))
    )


async def mark_sent(session: AsyncSession, msg_id: int, event_id: str) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == msg_id)
        .values(status=SENT, event_id=event_id, sent_at=datetime.now(UTC))
    )


async def mark_attempt(session: AsyncSession, msg_id: int, error: str, *, give_up: bool) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == msg_id)
        .values(
            attempts=OutboxMessage.attempts + 1,
            last_error=error[:2000],
            status=FAILED if give_up else PENDING,
        )
    )


async def exists(session: AsyncSession, txn_id: str) -> bool:
    return (
        await session.scalar(select(OutboxMessage.id).where(OutboxMessage.txn_id == txn_id))
    ) is not None


async def sent_event(session: AsyncSession, room_id: str, event_id: str) -> OutboxMessage | None:
    """The bot's message that became ``event_id`` in ``room_id`` (None for anyone else's)."""
    return await session.scalar(
        select(OutboxMessage).where(
            OutboxMessage.event_id == event_id, OutboxMessage.room_id == room_id
        )
    )


async def reaction_keys(session: AsyncSession, txn_id: str) -> set[str]:
    """The reaction keys the bot queued on its message ``txn_id`` (its tap-to-answer keys)."""
    rows = await session.scalars(
        select(OutboxMessage.content).where(
            OutboxMessage.annotates_txn == txn_id, OutboxMessage.event_type == REACTION
        )
    )
    return {str((c.get("m.relates_to") or {}).get("key")) for c in rows}


# --- why a message was not sent, and who goes first ----------------------------------------------

# What a failed message's ``last_error`` ("CODE: message", as the sender stores the homeserver's
# answer) means, in a word the templates turn into text (``_labels.j2`` ``send_cause``). The one
# place a homeserver error code is interpreted.
TOO_LARGE = "too_large"
NOT_IN_ROOM = "not_in_room"
NO_PERMISSION = "no_permission"
BANNED = "banned"
FORBIDDEN = "forbidden"
ROOM_GONE = "room_gone"
SERVER_ERROR = "server_error"
REJECTED = "rejected"
PARENT_FAILED = "parent_failed"
NO_ANSWER = "no_answer"
OTHER = "other"

_ERRCODE = re.compile(r"^([A-Z][A-Z0-9_.]*_[A-Z0-9_.]+|\d{3}): ?")
_CAUSES = {
    "M_TOO_LARGE": TOO_LARGE,
    "M_NOT_JOINED": NOT_IN_ROOM,  # Synapse with MSC3848's codes
    "M_INSUFFICIENT_POWER": NO_PERMISSION,
    "M_NOT_FOUND": ROOM_GONE,
    "M_UNKNOWN_ROOM": ROOM_GONE,
    "M_UNKNOWN": SERVER_ERROR,
    "M_BAD_JSON": REJECTED,
    "M_NOT_JSON": REJECTED,
    PARENT_NOT_SENT: PARENT_FAILED,
}


def error_code(last_error: str | None) -> str | None:
    """The homeserver's error code of a stored ``last_error`` (``M_FORBIDDEN``); None when it
    holds no code (a network error: the homeserver never answered)."""
    m = _ERRCODE.match(last_error or "")
    return m[1] if m else None


def failure_cause(last_error: str | None) -> str:
    """Why a message failed, in one word of the constants above. M_FORBIDDEN is told apart by
    Synapse's message: not in the room (removed, never invited), banned, or too low a power
    level to post."""
    code = error_code(last_error)
    if code is None:
        return NO_ANSWER if last_error else OTHER
    if code == "M_FORBIDDEN":
        text = (last_error or "").lower()
        if "banned" in text:
            return BANNED
        if "not in room" in text or "not joined" in text:
            return NOT_IN_ROOM
        if "permission" in text or "power" in text or "send_level" in text:
            return NO_PERMISSION
        return FORBIDDEN
    return _CAUSES.get(code, OTHER)


def failed_with(code: str) -> ColumnElement[bool]:
    """SQL: the message failed with this homeserver error code (e.g. ``M_TOO_LARGE``)."""
    return and_(OutboxMessage.status == FAILED, OutboxMessage.last_error.like(f"{code}:%"))


# Ranks of messages waiting for the homeserver (lower goes first; see bot.sender.SendGate).
ANSWER, FAN_OUT = 0, 1


def answers_person(msg: OutboxMessage) -> bool:
    """Does this message answer someone who is waiting for it? Its cause is a person's event
    (an inbox event id) and it is a reply (to that event, or to the question it answers), or a
    tap-to-answer key under such a question. Fan-out (notices, jobs) and messages a command
    posts into other rooms are not: they may wait behind the answers."""
    if not (msg.cause or "").startswith("$"):
        return False
    return bool(msg.reply_to_event or msg.reply_to_txn or msg.annotates_txn)


def rank(msg: OutboxMessage) -> tuple[int, int]:
    """Order of messages from different rooms waiting for the homeserver: answers to people
    first, then the oldest (a room's own messages always go in id order)."""
    return (ANSWER if answers_person(msg) else FAN_OUT, msg.id)


def _is_answer() -> ColumnElement[bool]:
    """SQL for :func:`answers_person`."""
    return and_(
        OutboxMessage.cause.like("$%"),
        or_(
            OutboxMessage.reply_to_event.is_not(None),
            OutboxMessage.reply_to_txn.is_not(None),
            OutboxMessage.annotates_txn.is_not(None),
        ),
    )


async def rank_in_room(session: AsyncSession, msg: OutboxMessage) -> tuple[int, int]:
    """:func:`rank` of a room's next message, raised to ANSWER when an answer to a person
    waits behind it in the room: a room's messages go in order, so that answer is quick only
    if what is ahead of it is (a progress report queued in the issuer's chat, say)."""
    if answers_person(msg):
        return (ANSWER, msg.id)
    behind = await session.scalar(
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == PENDING,
            OutboxMessage.room_id == msg.room_id,
            OutboxMessage.id > msg.id,
            _is_answer(),
        )
        .limit(1)
    )
    return (FAN_OUT if behind is None else ANSWER, msg.id)


async def failed_by_cause(
    session: AsyncSession, ids: list[int]
) -> dict[str | None, list[OutboxMessage]]:
    """Those of these messages that were given up on, by their cause, oldest first."""
    rows = await session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.status == FAILED)
        .order_by(OutboxMessage.id)
    )
    grouped: dict[str | None, list[OutboxMessage]] = {}
    for row in rows:
        grouped.setdefault(row.cause, []).append(row)
    return grouped


async def by_txn(session: AsyncSession, txn_id: str) -> OutboxMessage | None:
    """The queued message with this transaction id (e.g. a progress message to edit)."""
    return await session.scalar(select(OutboxMessage).where(OutboxMessage.txn_id == txn_id))


async def latest_body(session: AsyncSession, msg: OutboxMessage) -> str | None:
    """What a client shows of the queued message ``msg`` (not counting failed edits): the
    body of its newest edit, else its own."""
    edit = await session.scalar(
        select(OutboxMessage)
        .where(OutboxMessage.edit_of_txn == msg.txn_id, OutboxMessage.status != FAILED)
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    )
    if edit is None:
        return msg.content.get("body")
    return (edit.content.get("m.new_content") or edit.content).get("body")

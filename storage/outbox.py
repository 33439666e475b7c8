"""The outbox: messages to send, each with a transaction id fixed before the first attempt.

A message may declare relations (reply, thread, edit) to a Matrix event or to an earlier queued
message, and may carry a file; :func:`prepare` turns the stored row into the content to send,
once its parents are sent. Every transaction that queues a message notes the room in the
session, and the database tells the sender after commit (see ``storage.db``).
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import OutboxFile, OutboxMessage

# session.info key: the rooms this transaction queued messages for (read after commit).
QUEUED_ROOMS = "gridbot_outbox_rooms"
_FILES = "gridbot_outbox_files"

PENDING = "pending"
SENT = "sent"
FAILED = "failed"

# An event id, or an earlier queued message (the sender puts in its event id once it is sent).
Ref = str | OutboxMessage


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
    for name, ref in (("reply_to", reply_to), ("thread_root", thread_root), ("edit_of", edit_of)):
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


@dataclass(frozen=True)
class Prepared:
    """What the sender does next with a message: send ``content``, upload first, or wait."""

    content: dict[str, Any] | None = None
    upload: Upload | None = None
    wait_for: int | None = None  # a parent message still pending


async def prepare(session: AsyncSession, msg: OutboxMessage) -> Prepared:
    """Resolve a queued message's relations and file into the content to send now.

    A parent that is still pending makes the message wait (a parent is always earlier in the
    same room, so this is rare); a parent that failed is dropped from the relations, and an
    edit of a message that never went out is sent as a message of its own.
    """
    events: dict[str, str | None] = {}
    for name in ("reply_to", "thread_root", "edit_of"):
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
    content = copy.deepcopy(msg.content)
    if msg.file_id is not None:
        file = await session.get(OutboxFile, msg.file_id)
        assert file is not None
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


def with_relations(
    content: dict[str, Any],
    *,
    reply_to: str | None = None,
    thread_root: str | None = None,
    edit_of: str | None = None,
) -> dict[str, Any]:
    """Add ``m.relates_to`` (and for an edit ``m.new_content``) to message content."""
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

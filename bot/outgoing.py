"""The one way to send: a message states what to say and where, and is queued in the outbox.

Commands (``CommandContext``), jobs (``JobContext``), conversation steps and hooks all build an
:class:`Outgoing` and call :func:`queue`, inside the transaction that holds the change the
message is about. The sender does the rest at send time: it resolves replies, threads and
edits to event ids (waiting until a parent queued earlier is sent), uploads each file once and
reuses its mxc URI. Nothing queued here needs a job to get it going: the database tells the
sender about every room a committed transaction queued for.

Which msgtype: ``m.notice`` for answers to a person's own command, ``m.text`` (``rings=True``)
for whatever asks people to act; Synapse's default push rules mute every m.notice. Which
templates ring, and whom, is the one table in bot/rings.py; :func:`queue` holds every message to
it and rings each person at most once per triggering event (:func:`rung`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import rings as ring_rules
from bot.errors import UserError
from messages import Messages
from storage import outbox
from storage.models import OutboxMessage

Ref = outbox.Ref


@dataclass(frozen=True)
class Attachment:
    """A file to send: bytes (or a file read now) to upload, or an mxc URI already uploaded
    (e.g. a photo a member sent). ``msgtype`` is m.file, m.image, m.audio or m.video."""

    name: str
    mimetype: str = "application/octet-stream"
    data: bytes | None = None
    url: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    msgtype: str = "m.file"
    # An encrypted file someone sent (url, key, iv, hashes): relayed as it is into encrypted
    # rooms; the sender decrypts and uploads it in plaintext for an unencrypted room.
    file: dict[str, Any] | None = None

    @classmethod
    def from_path(cls, path: Path, mimetype: str, name: str | None = None) -> Attachment:
        return cls(name=name or path.name, mimetype=mimetype, data=path.read_bytes())

    @classmethod
    def from_media(cls, media: dict[str, Any]) -> Attachment:
        """A file someone sent (as kept on a notice, case or visit: url, name, info)."""
        info = dict(media.get("info") or {})
        return cls(
            name=str(media.get("name") or "attachment"),
            mimetype=str(info.get("mimetype") or "application/octet-stream"),
            url=str(media["url"]),
            info=info,
            msgtype=str(media.get("msgtype") or "m.file"),
            file=dict(media["file"]) if isinstance(media.get("file"), dict) else None,
        )


@dataclass
class Outgoing:
    """One message to one room.

    ``template`` with ``values`` renders the text (messages/<locale>/<template>.j2); with an
    ``attachment`` it is optional and the file's name is the body. ``mentions`` are the user
    ids to notify (intentional mentions; never @room). ``rings`` sends it as m.text, which
    reaches their phones: only for the templates bot.rings.RINGS lists. Relations take an
    event id or an earlier :class:`OutboxMessage` of the same room.
    """

    room_id: str
    template: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    mentions: Iterable[str] = ()
    locale: str | None = None
    rings: bool = False
    reply_to: Ref | None = None
    thread_root: Ref | None = None
    edit_of: Ref | None = None
    attachment: Attachment | None = None
    # Idempotency key for messages that may be queued again by a retry of their cause.
    txn_id: str | None = None


class Speaks:
    """``send`` for whatever can ``post`` an Outgoing (command and job contexts): the keyword
    form of one message, so callers need not build the dataclass themselves."""

    def post(self, message: Outgoing) -> OutboxMessage:
        raise NotImplementedError

    def send(
        self,
        room_id: str,
        template: str | None,
        /,
        *,
        mentions: Iterable[str] = (),
        locale: str | None = None,
        rings: bool = False,
        reply_to: Ref | None = None,
        thread_root: Ref | None = None,
        edit_of: Ref | None = None,
        attachment: Attachment | None = None,
        **values: Any,
    ) -> OutboxMessage:
        """Post ``template`` into any room, queued in the caller's transaction. ``locale`` is
        for rooms read by others than the sender (default: the context's)."""
        return self.post(
            Outgoing(
                room_id,
                template,
                values,
                mentions=mentions,
                locale=locale,
                rings=rings,
                reply_to=reply_to,
                thread_root=thread_root,
                edit_of=edit_of,
                attachment=attachment,
            )
        )


def content_of(
    messages: Messages, message: Outgoing, locale: str, mentions: Iterable[str] | None = None
) -> dict[str, Any]:
    """The event content of a message, before relations (which the sender adds). ``mentions``
    (default: the message's) are the user ids it names in ``m.mentions``; a ringing message
    with nobody left to mention is sent as a notice."""
    att = message.attachment
    users = sorted({u for u in (message.mentions if mentions is None else mentions) if u})
    msgtype = "m.text" if message.rings and users else "m.notice"
    if message.template is not None:
        rendered = messages.render(message.locale or locale, message.template, **message.values)
        content = rendered.content(msgtype)
    else:
        content = {"msgtype": msgtype, "body": att.name if att else ""}
    if att is not None:
        # A file event: the rendered plain text (if any) is its caption, the name its filename.
        content = {
            "msgtype": att.msgtype,
            "body": content["body"] if message.template is not None else att.name,
            "filename": att.name,
            "info": {"mimetype": att.mimetype, **att.info},
        }
        if att.data is not None:
            content["info"]["size"] = len(att.data)
        if att.file is not None:
            content["file"] = att.file
        elif att.url is not None:
            content["url"] = att.url
    content["m.mentions"] = {"user_ids": users}
    return content


# session.info key: whom this transaction's ringing messages have mentioned so far.
_RUNG = "gridbot_rung"


def rung(session: AsyncSession) -> set[str]:
    """The people rung so far by the triggering event whose transaction ``session`` is (one
    inbox event, one job): a later ringing message of it names them but does not mention them
    again, so one event rings a person's phone once, however many rooms it is told in. The
    dispatcher's context adds the sender of the event: their own message rings nobody's phone
    for them."""
    return session.info.setdefault(_RUNG, set())


def _to_mention(session: AsyncSession, message: Outgoing) -> list[str]:
    """Whom the message mentions: for a ringing one, those this event has not rung yet."""
    users = sorted({u for u in message.mentions if u})
    if not message.rings:
        return users  # an m.notice rings nobody: it may name whom it likes
    already = rung(session)
    fresh = [u for u in users if u not in already]
    already.update(fresh)
    return fresh


# Synapse refuses an event over 65,536 bytes of JSON, content and envelope (ids, hashes,
# signatures, prev/auth events) together; a bot message's envelope takes about 1.5 KB.
MAX_EVENT_BYTES = 65_536
ENVELOPE_BYTES = 4_096
_SOME_EVENT_ID = "$" + "x" * 43  # as long as a room v4+ event id


class MessageTooLarge(UserError):
    """A message would not fit one Matrix event: the event that asked for it is refused whole,
    so nothing about it is recorded (see bot.errors)."""

    def __init__(self, size: int) -> None:
        limit = MAX_EVENT_BYTES - ENVELOPE_BYTES
        super().__init__("message_too_large", size_kb=-(-size // 1024), limit_kb=limit // 1024)
        self.size = size


def event_size(content: dict[str, Any], message: Outgoing) -> int:
    """Bytes of ``content`` as it will be sent, with its relations (an edit repeats it)."""
    sized = outbox.with_relations(
        copy.deepcopy(content),
        reply_to=_SOME_EVENT_ID if message.reply_to else None,
        thread_root=_SOME_EVENT_ID if message.thread_root else None,
        edit_of=_SOME_EVENT_ID if message.edit_of else None,
    )
    if message.attachment is not None:
        sized["url"] = "mxc://" + "x" * 80
    return len(json.dumps(sized, ensure_ascii=False, separators=(",", ":")).encode())


def fits(messages: Messages, message: Outgoing, locale: str) -> bool:
    """Would ``message`` fit one Matrix event (what :func:`queue` would refuse with
    MessageTooLarge)? For callers that can say it another way (a long notice: its beginning,
    and the full text as a file)."""
    content = content_of(messages, message, locale)
    return event_size(content, message) <= MAX_EVENT_BYTES - ENVELOPE_BYTES


def queue(
    session: AsyncSession,
    messages: Messages,
    message: Outgoing,
    *,
    locale: str,
    cause: str | None,
) -> OutboxMessage:
    """Render ``message`` and put it in the outbox, in the session's transaction. Whether it
    may ring is bot.rings' table; whom it rings, this event's first mention of them."""
    ring_rules.check(message.template, message.rings)
    content = content_of(messages, message, locale, _to_mention(session, message))
    if (size := event_size(content, message)) > MAX_EVENT_BYTES - ENVELOPE_BYTES:
        raise MessageTooLarge(size)  # before anything about it is recorded
    att = message.attachment
    file = None
    if att is not None and att.url is None:
        if att.data is None:
            raise ValueError(f"attachment {att.name!r} has neither bytes nor a url")
        file = outbox.add_file(session, att.data, att.name, att.mimetype)
    return outbox.enqueue(
        session,
        message.room_id,
        content,
        cause=cause,
        txn_id=message.txn_id,
        reply_to=message.reply_to,
        thread_root=message.thread_root,
        edit_of=message.edit_of,
        file=file,
    )


def queue_reaction(
    session: AsyncSession, parent: OutboxMessage, key: str, *, cause: str | None
) -> OutboxMessage:
    """Queue the bot's own reaction ``key`` on an earlier queued message (the answers a person
    can tap under a question); sent once the question has its event id."""
    return outbox.enqueue(
        session,
        parent.room_id,
        {"m.relates_to": {"rel_type": "m.annotation", "key": key}},
        event_type=outbox.REACTION,
        cause=cause,
        annotates=parent,
    )

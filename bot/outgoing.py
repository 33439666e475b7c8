"""The one way to send: a message states what to say and where, and is queued in the outbox.

Commands (``CommandContext``), jobs (``JobContext``), conversation steps and hooks all build an
:class:`Outgoing` and call :func:`queue`, inside the transaction that holds the change the
message is about. The sender does the rest at send time: it resolves replies, threads and
edits to event ids (waiting until a parent queued earlier is sent), uploads each file once and
reuses its mxc URI. Nothing queued here needs a job to get it going: the database tells the
sender about every room a committed transaction queued for.

Which msgtype: ``m.notice`` for answers to a person's own command, ``m.text`` (``rings=True``)
for whatever asks people to act; Synapse's default push rules mute every m.notice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

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
        )


@dataclass
class Outgoing:
    """One message to one room.

    ``template`` with ``values`` renders the text (messages/<locale>/<template>.j2); with an
    ``attachment`` it is optional and the file's name is the body. ``mentions`` are the user
    ids to notify (intentional mentions; never @room). Relations take an event id or an
    earlier :class:`OutboxMessage` of the same room.
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

    @property
    def msgtype(self) -> str:
        return "m.text" if self.rings else "m.notice"


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


def content_of(messages: Messages, message: Outgoing, locale: str) -> dict[str, Any]:
    """The event content of a message, before relations (which the sender adds)."""
    att = message.attachment
    if message.template is not None:
        rendered = messages.render(message.locale or locale, message.template, **message.values)
        content = rendered.content(message.msgtype)
    else:
        content = {"msgtype": message.msgtype, "body": att.name if att else ""}
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
        if att.url is not None:
            content["url"] = att.url
    content["m.mentions"] = {"user_ids": sorted({u for u in message.mentions if u})}
    return content


def queue(
    session: AsyncSession,
    messages: Messages,
    message: Outgoing,
    *,
    locale: str,
    cause: str | None,
) -> OutboxMessage:
    """Render ``message`` and put it in the outbox, in the session's transaction."""
    content = content_of(messages, message, locale)
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

"""Multi-step conversations (like python-telegram-bot's ConversationHandler), kept in the database.

A :class:`Conversation` declares its steps up front, in order, each with what it expects:
``Conversation("meeting", DATE("date"), TEXT("attendees", "topics"), CONFIRM("confirm",
counted=False))`` (an expectation called with step names declares those steps, in order; the
long form ``steps=[Ask("date", DATE), …]`` declares the same). ``@conv.step("date")`` gives a
step its function. A command handler starts one with :func:`start`, and every later message
from the same sender in the same room goes to the current step until the step ends it, the
sender sends ``/cancel`` (``/取消``), or it sits idle past the configured time. State and data
live in ``conversations`` keyed by (room, sender), so a restart continues where it stopped, and
they change in the same transaction as the replies of the step.

Naming a step that is not declared (in ``@conv.step``, :meth:`Step.goto`, :func:`start`)
raises ValueError at once, not at the user's next message. The "3/9" progress of a question
comes from the declared order (:meth:`Conversation.progress`). Answers are read with
bot.words, the same in every conversation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from bot import taps
from bot.context import CommandContext
from bot.geo import GeoPoint, parse_geo_uri
from bot.outgoing import Outgoing, queue, queue_reaction
from bot.relations import is_edit, relation
from bot.words import typed_text
from messages import Messages
from storage import outbox
from storage.models import ConversationState

# msgtypes that carry a file in a conversation (photos, minutes, scans).
MEDIA_TYPES = frozenset({"m.image", "m.file", "m.video", "m.audio"})


@dataclass(frozen=True)
class Incoming:
    """One message from the sender, as a step sees it."""

    event_id: str
    msgtype: str
    text: str
    media: dict[str, Any] | None = None
    # A shared location (m.location); its text is empty.
    location: GeoPoint | None = None

    @property
    def is_media(self) -> bool:
        return self.media is not None


StepFn = Callable[["Step", Incoming], Awaitable[None]]


class Expect(StrEnum):
    """What a step expects. CHOICE, CONFIRM and the end of PHOTO are read with bot.words.

    Called with step names it declares them: ``TEXT("what", "where")`` is
    ``(Ask("what", TEXT), Ask("where", TEXT))``, for :class:`Conversation`'s compact form."""

    CHOICE = "choice"  # a number from the listed options ("2", "２") or (part of) a name
    TEXT = "text"  # free text, kept as typed
    DATE = "date"  # a day: 今天, 11月20日, 2026-11-20
    TIME = "time"  # a moment: 14:30, 昨天 23:10, 30分钟前
    NUMBER = "number"  # counts, e.g. casualties "0 2 0"
    PHOTO = "photo"  # images, any number, until a DONE or SKIP word
    FILE = "file"  # one file, or a SKIP word
    CONFIRM = "confirm"  # a CONFIRM or CANCEL word
    LOCATION = "location"  # a shared location (m.location), or a SKIP word

    def __call__(
        self, *names: str, counted: bool = True, options: str | int | None = None
    ) -> tuple[Ask, ...]:
        return tuple(Ask(name, self, counted, options) for name in names)


CHOICE, TEXT, DATE, TIME, NUMBER = (
    Expect.CHOICE,
    Expect.TEXT,
    Expect.DATE,
    Expect.TIME,
    Expect.NUMBER,
)
PHOTO, FILE, CONFIRM = Expect.PHOTO, Expect.FILE, Expect.CONFIRM

_FIXED_TAPS = {
    Expect.CONFIRM: taps.CONFIRM_TAPS,
    Expect.PHOTO: taps.DONE_TAPS,
    Expect.FILE: taps.SKIP_TAPS,
    Expect.LOCATION: taps.SKIP_TAPS,
}


@dataclass(frozen=True)
class Ask:
    """One declared step: its name (the stored state), what it expects, and whether it is
    numbered in the "n/total" progress (not a pick that is often skipped, nor a summary)."""

    name: str
    expects: Expect
    counted: bool = True
    # For a CHOICE: the options it lists, to be tapped as 1️⃣…🔟 (at most ten) — the key of
    # the conversation data holding them, or their number when fixed (e.g. two grades).
    options: str | int | None = None

    def taps(self, data: dict[str, Any]) -> dict[str, str]:
        """The reactions to seed under this step's question, each with the answer it stands
        for (bot.taps); none for a question answered in words."""
        if self.expects is Expect.CHOICE:
            if isinstance(self.options, int):
                return taps.numbered(range(self.options))
            return taps.numbered(data.get(self.options) if self.options else None)
        return dict(_FIXED_TAPS.get(self.expects, {}))


def _each(group: Ask | Iterable[Ask]) -> Iterable[Ask]:
    return (group,) if isinstance(group, Ask) else group


@dataclass(frozen=True)
class Progress:
    """Where a question stands among the counted steps, for templates: "{{ index }}/{{ total }}"."""

    index: int
    total: int

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


class Conversation:
    """A named, declared list of steps; a module-level definition, like a command spec.

    The steps come in order as ``Ask``s or groups of them (``TEXT("what", "where")``), or as
    the list ``steps=[…]``."""

    def __init__(self, name: str, *asks: Ask | Iterable[Ask], steps: Sequence[Ask] = ()) -> None:
        steps = [*(a for group in asks for a in _each(group)), *steps]
        names = [a.name for a in steps]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"conversation {name!r} needs distinct step names, got {names}")
        self.name = name
        self.steps: tuple[Ask, ...] = tuple(steps)
        self._asks = {a.name: a for a in self.steps}
        counted = [a.name for a in self.steps if a.counted]
        self._progress = {n: Progress(i, len(counted)) for i, n in enumerate(counted, 1)}
        self.handlers: dict[str, StepFn] = {}

    def ask(self, state: str) -> Ask:
        """The declared step ``state``; ValueError when there is none (a typo fails here)."""
        try:
            return self._asks[state]
        except KeyError:
            raise ValueError(
                f"conversation {self.name!r} declares no step {state!r} "
                f"(declared: {', '.join(self._asks)})"
            ) from None

    def progress(self, state: str) -> Progress | None:
        """ "3/9" for the template of ``state``'s question; None for an uncounted step."""
        self.ask(state)
        return self._progress.get(state)

    def step(self, state: str) -> Callable[[StepFn], StepFn]:
        """Decorator giving a declared step its function; raises at import for a typo."""
        self.ask(state)
        if state in self.handlers:
            raise ValueError(f"conversation {self.name!r} step {state!r} has a function already")

        def register(fn: StepFn) -> StepFn:
            self.handlers[state] = fn
            return fn

        return register

    def missing(self) -> list[str]:
        """Declared steps without a function (a conversation would stall there)."""
        return [a.name for a in self.steps if a.name not in self.handlers]


# ``ask(step, name, again=…)``: send the question of step ``name`` and move there.
Asker = Callable[..., None]


def text_step(
    conversation: Conversation,
    state: str,
    *,
    key: str,
    then: str,
    ask: Asker,
    place: bool = False,
) -> StepFn:
    """Register the commonest step, a declared TEXT step: store a non-empty text answer under
    ``key`` and ask the ``then`` question; an empty answer (e.g. a photo) re-asks. A question
    of ``place`` ("where?") also takes a shared location, kept as its coordinates. Both names
    are checked against the declaration here, at import."""
    if conversation.ask(state).expects is not TEXT:
        raise ValueError(f"{conversation.name} step {state!r} is not declared as TEXT")
    conversation.ask(then)

    async def store_text(step: Step, msg: Incoming) -> None:
        text = msg.text or (msg.location.label() if place and msg.location else "")
        if not text:
            ask(step, state, again=True)
            return
        step.data[key] = text
        ask(step, then)

    store_text.__name__ = f"ask_{state}"
    return conversation.step(state)(store_text)


@dataclass
class Step:
    """What a step function gets: the command context plus the conversation's state and data."""

    ctx: CommandContext
    row: ConversationState
    data: dict[str, Any]
    state: str
    conversation: Conversation
    ended: bool = False

    def goto(self, state: str) -> None:
        self.conversation.ask(state)  # ValueError now, not a silent stall at the next message
        self.state = state

    def end(self) -> None:
        self.ended = True

    @property
    def progress(self) -> Progress | None:
        return self.conversation.progress(self.state)

    def ask(self, state: str, template: str, /, **values: Any) -> None:
        """Move to ``state`` and send its question; the template gets ``progress``."""
        self.goto(state)
        self.reply(template, progress=self.progress, **values)

    def reply(self, template: str, /, **values: Any) -> None:
        self.ctx.reply(template, **values)


def _idle(ctx: CommandContext) -> timedelta:
    return timedelta(minutes=ctx.services.config.timing.conversation_idle_minutes)


async def current(session: AsyncSession, room_id: str, sender: str) -> ConversationState | None:
    return await session.get(ConversationState, (room_id, sender))


async def start(
    ctx: CommandContext, conversation: Conversation, state: str, data: dict[str, Any] | None = None
) -> None:
    """Begin (or restart) ``conversation`` for the sender in this room at ``state``."""
    conversation.ask(state)  # ValueError for an undeclared step
    now = datetime.now(UTC)
    row = await current(ctx.session, ctx.room_id, ctx.sender)
    if row is None:
        row = ConversationState(room_id=ctx.room_id, sender=ctx.sender)
        ctx.session.add(row)
    row.name, row.state, row.data, row.locale = (
        conversation.name,
        state,
        dict(data or {}),
        ctx.locale,
    )
    row.started_at = row.updated_at = now
    row.expires_at = now + _idle(ctx)
    row.question_txn = row.answer_event_id = row.before = None
    ctx.asked = True


async def cancel(session: AsyncSession, room_id: str, sender: str) -> ConversationState | None:
    row = await current(session, room_id, sender)
    if row is not None:
        await session.delete(row)
    return row


def incoming_from(ctx: CommandContext) -> Incoming | None:
    return incoming(ctx.event.event_id, ctx.event.source.get("content") or {})


def incoming(event_id: str, content: dict[str, Any]) -> Incoming | None:
    """A message's content as a step reads it; None for what never answers a step."""
    msgtype = content.get("msgtype")
    body = content.get("body")
    if not isinstance(msgtype, str) or not isinstance(body, str):
        return None
    if msgtype in MEDIA_TYPES:
        info = content.get("info")
        media = {
            "url": content.get("url"),
            "msgtype": msgtype,
            "name": body,
            # Steps read info as a dict (meeting minutes, notice attachments): nothing else.
            "info": info if isinstance(info, dict) else {},
        }
        file = content.get("file")
        if isinstance(file, dict) and not media["url"]:
            # A file in an encrypted room: the encrypted upload's url, key, iv and hashes.
            media["url"], media["file"] = file.get("url"), file
        return Incoming(event_id, msgtype, "", media if media["url"] else None)
    if msgtype == "m.location":
        # An unreadable geo: URI still answers, with nothing in it: the step asks again.
        return Incoming(event_id, msgtype, "", location=parse_geo_uri(content.get("geo_uri")))
    if msgtype != "m.text":
        return None  # notices come from bots; they never answer a step
    return Incoming(event_id, msgtype, typed_text(body).strip())


class ConversationHook:
    """Dispatcher hook: route what a sender with an open conversation sends to its step: a
    message, a tap on the current question's reactions, or an edit of the last answer."""

    def __init__(self, conversations: list[Conversation]) -> None:
        for c in conversations:
            if c.missing():
                raise ValueError(f"conversation {c.name!r} has no function for {c.missing()}")
        self.by_name = {c.name: c for c in conversations}

    async def __call__(self, ctx: CommandContext) -> bool:
        if ctx.event.type == "m.reaction":
            return await self._tap(ctx)
        if ctx.event.type != "m.room.message":
            return False
        content = ctx.event.source.get("content") or {}
        if is_edit(content):
            return await self._edit(ctx, relation(content), content)
        row = await self._open(ctx)
        if row is None:
            return False
        msg = incoming_from(ctx)
        if msg is None:
            return False
        if not msg.is_media and ctx.services.router.parse(msg.text) is not None:
            return False  # a command: /cancel ends the conversation, others run beside it
        return await self._answer(ctx, row, msg)

    async def _open(self, ctx: CommandContext) -> ConversationState | None:
        """The sender's conversation here, closed first if it sat idle too long."""
        row = await current(ctx.session, ctx.room_id, ctx.sender)
        if row is not None and row.expires_at <= datetime.now(UTC):
            # Idle too long and not yet swept: close it and let the message be handled afresh.
            await ctx.session.delete(row)
            ctx.reply("conversation_timeout", name=row.name)
            return None
        return row

    async def _answer(self, ctx: CommandContext, row: ConversationState, msg: Incoming) -> bool:
        """Run the current step on ``msg``; keep what it was before, so an edit can redo it."""
        conversation = self.by_name.get(row.name)
        step_fn = conversation.handlers.get(row.state) if conversation else None
        if conversation is None or step_fn is None:
            await ctx.session.delete(row)  # its definition is gone (an upgrade): drop it
            return False
        before = {"state": row.state, "data": dict(row.data or {})}
        step = Step(
            ctx=ctx, row=row, data=dict(row.data or {}), state=row.state, conversation=conversation
        )
        await step_fn(step, msg)
        if step.ended:
            await ctx.session.delete(row)
            return True
        if step.state != row.state:
            ctx.asked = True
        now = datetime.now(UTC)
        row.state, row.data = step.state, step.data
        flag_modified(row, "data")
        row.answer_event_id, row.before = msg.event_id, before
        row.updated_at = now
        row.expires_at = now + _idle(ctx)
        return True

    async def _tap(self, ctx: CommandContext) -> bool:
        """A reaction on one of the bot's questions to this sender: the current question's
        key answers its step as typing would; a tap on an older question only says so."""
        rel = relation(ctx.event.source.get("content") or {})
        parent, key = rel.get("event_id"), rel.get("key")
        if rel.get("rel_type") != "m.annotation" or not isinstance(parent, str):
            return False
        question = await outbox.sent_event(ctx.session, ctx.room_id, parent)
        if question is None or ctx.sender not in _mentioned(question.content):
            return False  # not a question to this sender (e.g. a ✅ on a notice)
        offered = await outbox.reaction_keys(ctx.session, question.txn_id)
        if taps.answer(dict.fromkeys(offered, ""), key) is None:
            return False  # not one of the seeded answers (a 👍, say)
        ctx.reply_target = parent
        row = await self._open(ctx)
        if row is None or row.question_txn != question.txn_id:
            ctx.reply("tap_stale")
            return True
        conversation = self.by_name.get(row.name)
        tapped = (
            taps.answer(conversation.ask(row.state).taps(row.data), key) if conversation else None
        )
        if tapped is None:
            ctx.reply("tap_stale")
            return True
        return await self._answer(ctx, row, Incoming(ctx.event.event_id, "m.text", tapped))

    async def _edit(
        self, ctx: CommandContext, rel: dict[str, Any], content: dict[str, Any]
    ) -> bool:
        """An edit of the answer the conversation took last, while nothing was answered since,
        replaces that answer: the step runs again from where it was. Other edits are left to
        the dispatcher (which says once that edits are not read)."""
        original = rel.get("event_id")
        new_content = content.get("m.new_content")
        if not isinstance(original, str) or not isinstance(new_content, dict):
            return False
        row = await self._open(ctx)
        if row is None or row.answer_event_id != original or not row.before:
            return False
        msg = incoming(original, new_content)
        if msg is None or (not msg.is_media and ctx.services.router.parse(msg.text) is not None):
            return False
        row.state, row.data = row.before["state"], dict(row.before["data"])
        ctx.reply_target = original
        ctx.asked = True  # the question that follows is asked anew, with its taps
        return await self._answer(ctx, row, msg)

    async def settle(self, ctx: CommandContext) -> None:
        """After an event that asked the sender a new question (the last message the event
        queued to them here): remember it as the conversation's question and seed its taps."""
        if not ctx.asked:
            return
        row = await current(ctx.session, ctx.room_id, ctx.sender)
        conversation = self.by_name.get(row.name) if row is not None else None
        asked = [
            m for m in ctx.sent if m.room_id == ctx.room_id and m.event_type == "m.room.message"
        ]
        if row is None or conversation is None or not asked:
            return
        question = asked[-1]
        row.question_txn = question.txn_id
        for key in conversation.ask(row.state).taps(row.data):
            queue_reaction(ctx.session, question, key, cause=ctx.event.event_id)


def _mentioned(content: dict[str, Any]) -> list[str]:
    mentions = content.get("m.mentions")
    users = mentions.get("user_ids") if isinstance(mentions, dict) else None
    return users if isinstance(users, list) else []


async def sweep_expired(session: AsyncSession, messages: Messages, now: datetime) -> int:
    """End idle conversations, telling each sender in their room. Returns how many ended."""
    rows = list(
        await session.scalars(select(ConversationState).where(ConversationState.expires_at <= now))
    )
    for row in rows:
        message = Outgoing(
            row.room_id, "conversation_timeout", {"name": row.name}, mentions=[row.sender]
        )
        queue(
            session,
            messages,
            message,
            locale=row.locale,
            cause=f"conversation-timeout:{row.sender}",
        )
    if rows:
        await session.execute(delete(ConversationState).where(ConversationState.expires_at <= now))
    return len(rows)

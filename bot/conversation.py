"""Multi-step conversations (like python-telegram-bot's ConversationHandler), kept in the database.

A :class:`Conversation` names its steps; a command handler starts one with :func:`start`, and
every later message from the same sender in the same room goes to the current step until the
step ends it, the sender sends ``/cancel`` (``/取消``), or it sits idle past the configured time.
State and data live in ``conversations`` keyed by (room, sender), so a restart continues where
it stopped, and they change in the same transaction as the replies of the step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from bot.context import CommandContext
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

    @property
    def is_media(self) -> bool:
        return self.media is not None


StepFn = Callable[["Step", Incoming], Awaitable[None]]


class Conversation:
    """A named set of steps; a module-level definition, like a command spec (no state)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.steps: dict[str, StepFn] = {}

    def step(self, state: str) -> Callable[[StepFn], StepFn]:
        def register(fn: StepFn) -> StepFn:
            self.steps[state] = fn
            return fn

        return register


Ask = Callable[..., None]


def text_step(conversation: Conversation, state: str, *, key: str, then: str, ask: Ask) -> StepFn:
    """Register the commonest step: store a non-empty text answer under ``key`` and ask the
    ``then`` question; an empty answer (e.g. a photo) re-asks. ``ask(step, name, again=…)``
    renders a question and moves the conversation to it."""

    async def store_text(step: Step, msg: Incoming) -> None:
        if not msg.text:
            ask(step, state, again=True)
            return
        step.data[key] = msg.text
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
    ended: bool = False

    def goto(self, state: str) -> None:
        self.state = state

    def end(self) -> None:
        self.ended = True

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
    if state not in conversation.steps:
        raise ValueError(f"{conversation.name} has no step {state!r}")
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


async def cancel(session: AsyncSession, room_id: str, sender: str) -> ConversationState | None:
    row = await current(session, room_id, sender)
    if row is not None:
        await session.delete(row)
    return row


def incoming_from(ctx: CommandContext) -> Incoming | None:
    content = ctx.event.source.get("content") or {}
    msgtype = content.get("msgtype")
    body = content.get("body")
    if not isinstance(msgtype, str) or not isinstance(body, str):
        return None
    if msgtype in MEDIA_TYPES:
        media = {
            "url": content.get("url"),
            "msgtype": msgtype,
            "name": body,
            "info": content.get("info") or {},
        }
        return Incoming(ctx.event.event_id, msgtype, "", media if content.get("url") else None)
    if msgtype != "m.text":
        return None  # notices come from bots; they never answer a step
    return Incoming(ctx.event.event_id, msgtype, body.strip())


class ConversationHook:
    """Dispatcher hook: route messages of a sender with an open conversation to its step."""

    def __init__(self, conversations: list[Conversation]) -> None:
        self.by_name = {c.name: c for c in conversations}

    async def __call__(self, ctx: CommandContext) -> bool:
        if ctx.event.type != "m.room.message":
            return False
        row = await current(ctx.session, ctx.room_id, ctx.sender)
        if row is None:
            return False
        now = datetime.now(UTC)
        if row.expires_at <= now:
            # Idle too long and not yet swept: close it and let the message be handled afresh.
            await ctx.session.delete(row)
            ctx.reply("conversation_timeout", name=row.name)
            return False
        msg = incoming_from(ctx)
        if msg is None:
            return False
        if not msg.is_media and ctx.services.router.parse(msg.text) is not None:
            return False  # a command: /cancel ends the conversation, others run beside it
        conversation = self.by_name.get(row.name)
        step_fn = conversation.steps.get(row.state) if conversation else None
        if step_fn is None:
            await ctx.session.delete(row)  # its definition is gone (an upgrade): drop it
            return False
        step = Step(ctx=ctx, row=row, data=dict(row.data or {}), state=row.state)
        await step_fn(step, msg)
        if step.ended:
            await ctx.session.delete(row)
        else:
            row.state, row.data = step.state, step.data
            flag_modified(row, "data")
            row.updated_at = now
            row.expires_at = now + _idle(ctx)
        return True


async def sweep_expired(session: AsyncSession, messages: Messages, now: datetime) -> int:
    """End idle conversations, telling each sender in their room. Returns how many ended."""
    rows = list(
        await session.scalars(select(ConversationState).where(ConversationState.expires_at <= now))
    )
    for row in rows:
        rendered = messages.render(row.locale, "conversation_timeout", name=row.name)
        content = rendered.content("m.notice")
        content["m.mentions"] = {"user_ids": [row.sender]}
        outbox.enqueue(session, row.room_id, content, cause=f"conversation-timeout:{row.sender}")
    if rows:
        await session.execute(delete(ConversationState).where(ConversationState.expires_at <= now))
    return len(rows)

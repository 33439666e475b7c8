"""What the visit, meeting and training conversations share: each fills in a record field by
field in the declared order, skipping what is known already, then shows a summary (its last
step) and saves on 确认.

A module gives these its ``ask(ctx, data, **extra) -> state``: it sends the question of the
first open field (with ``extra``, e.g. the error of a re-ask) and returns that step's name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from typing import Any

from bot import dates
from bot.context import CommandContext
from bot.conversation import Conversation, Incoming, Step
from bot.words import confirmed, past_day

Ask = Callable[..., str]
# The day of an answer, or None and the error to show with the re-ask.
DayCheck = Callable[
    [CommandContext, dict[str, Any], str], Awaitable[tuple[date | None, dict[str, Any]]]
]
Save = Callable[[CommandContext, dict[str, Any], Incoming], Awaitable[None]]


def first_open(
    conv: Conversation, data: dict[str, Any], marks: Mapping[str, str] | None = None
) -> str:
    """The first declared step not answered in ``data``: its answer is stored under its name
    or ``<name>_id`` (a choice), or else ``marks`` names the key that says it is done (e.g.
    "photos_done" while "photos" fills up). The last step, the summary, when all others are."""
    *fields, summary = (a.name for a in conv.steps)
    for name in fields:
        done = {marks[name]} if marks and name in marks else {name, f"{name}_id"}
        if not done & data.keys():
            return name
    return summary


def take_text(step: Step, msg: Incoming, ask: Ask) -> None:
    """A text answer is kept under the step's name; anything else (a file) is asked again."""
    if msg.is_media or not msg.text:
        step.goto(ask(step.ctx, step.data, error="need_text"))
        return
    step.data[step.state] = msg.text
    step.goto(ask(step.ctx, step.data))


async def read_past_day(
    ctx: CommandContext, _data: dict[str, Any], text: str
) -> tuple[date | None, dict[str, Any]]:
    """A day up to today: 今天, 昨天, 11月20日, 2026-11-20."""
    day, error = past_day(text, dates.today(ctx.services.config.tz))
    if error or day is None:
        return None, {"error": error or "unreadable", "answer": text}
    return day, {}


async def take_date(step: Step, msg: Incoming, ask: Ask, check: DayCheck = read_past_day) -> None:
    """The "date" field, as ``check`` reads it; a refused answer is asked again with why."""
    if msg.is_media:
        step.goto(ask(step.ctx, step.data, error="need_text"))
        return
    day, extra = await check(step.ctx, step.data, msg.text)
    if day is not None:
        step.data["date"] = day.isoformat()
    step.goto(ask(step.ctx, step.data, **extra))


async def take_confirmation(step: Step, msg: Incoming, ask: Ask, save: Save) -> None:
    """At the summary: 确认 saves and ends, 取消 ends unsaved, anything else asks again."""
    answer = None if msg.is_media else confirmed(msg.text)
    if answer is None:
        step.goto(ask(step.ctx, step.data, error="confirm_hint"))
        return
    step.end()
    if answer:
        await save(step.ctx, step.data, msg)
    else:
        step.reply("conversation_cancelled", name=step.conversation.name)

"""Buttons by reply: a plain reply in a case's thread (or to any bot post about it) that names a
step — 确认, 整改完成, 复查通过, 受理, 续报 … — acts on that case as the command would."""

from __future__ import annotations

from bot.commands import strip_reply_fallback
from bot.context import CommandContext
from handlers.cases import accidents, hazards, requests
from handlers.cases.threads import case_answered, related_event_ids
from storage import cases


async def case_reply_hook(ctx: CommandContext) -> bool:
    """Dispatcher hook; True when the message acted on a case (it is then not a command)."""
    if ctx.event.type != "m.room.message":
        return False
    content = ctx.event.source.get("content") or {}
    body = content.get("body")
    if content.get("msgtype") != "m.text" or not isinstance(body, str):
        return False
    if not related_event_ids(ctx):
        return False
    text = strip_reply_fallback(body).strip()
    if not text or text.startswith(("/", "／")):
        return False
    code = await case_answered(ctx)
    if code is None:
        return False
    kind = cases.kind_of(code)
    if kind == cases.HAZARD:
        return await hazards.act(ctx, code, text, from_reply=True)
    if kind == cases.REQUEST:
        return await requests.on_reply(ctx, code, text)
    return await accidents.on_reply(ctx, code, text)


# Collected by bot/app.py (run before the conversation hook).
EVENT_HOOKS = (case_reply_hook,)

"""Which enterprise a new hazard, accident or request is for: the room's, the sender's only one,
or one picked from a numbered list."""

from __future__ import annotations

from typing import Any

from bot.context import CommandContext
from bot.words import choose
from storage import rooms
from storage.directory import ENTERPRISE_ROOM, Action, enterprises_in, reach
from storage.models import Enterprise


async def reportable(ctx: CommandContext) -> list[Enterprise]:
    """The enterprises the sender may report for (RULES[REPORT]), as a pick list shows them."""
    return await enterprises_in(ctx.session, reach(ctx.identity, Action.REPORT), by_name=True)


async def enterprise_here(ctx: CommandContext, options: list[Enterprise]) -> Enterprise | None:
    """The enterprise a report is about when it goes without saying: the room's, or the only one."""
    info = await rooms.get(ctx.session, ctx.room_id)
    if info is not None and info.kind == ENTERPRISE_ROOM and info.enterprise_id is not None:
        for ent in options:
            if ent.id == info.enterprise_id:
                return ent
    return options[0] if len(options) == 1 else None


def pick_option(options: list[list[Any]], text: str) -> list[Any] | None:
    """The [id, name] picked by number ("2", "２") or by (part of) its name, as everywhere."""
    index = choose([o[1] for o in options], text).one
    return options[index] if index is not None else None

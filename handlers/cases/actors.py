"""Who acts on a case, on which case, and in what capacity they stand to its enterprise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bot.context import CommandContext
from handlers.cases.refusals import CaseError
from handlers.cases.threads import case_answered
from storage import cases
from storage.cases import CaseRow
from storage.directory import Capacity, capacity
from storage.models import Enterprise

C = TypeVar("C", bound=CaseRow)


@dataclass(frozen=True)
class Actor:
    """Who does something to a case, from where (system jobs have no room)."""

    user_id: str
    name: str
    room_id: str | None = None
    event_id: str | None = None
    # True when the triggering message sits in the case's thread in room_id.
    in_thread: bool = False

    @classmethod
    def system(cls) -> Actor:
        return cls(cases.SYSTEM, cases.SYSTEM)

    def reply_target(self, room_id: str) -> str | None:
        """The actor's message, when it was sent in this room's case thread (a post there
        replies to it)."""
        return self.event_id if self.in_thread and self.room_id == room_id else None


async def actor_of(ctx: CommandContext, code: str | None = None) -> Actor:
    return Actor(
        user_id=ctx.sender,
        name=ctx.identity.display_name,
        room_id=ctx.room_id,
        event_id=ctx.event.event_id,
        in_thread=code is not None and await case_answered(ctx) == code,
    )


def parse_case_code(text: str, kind: str | None = None) -> str:
    """The case code typed (``kind``'s, if given); CaseError bad_code / wrong_kind."""
    code = cases.parse_code(text)
    if code is None:
        raise CaseError("bad_code", text, kind or "")
    if kind is not None and cases.kind_of(code) != kind:
        raise CaseError("wrong_kind", code, kind)
    return code


async def case_meant(ctx: CommandContext, text: str, kind: str) -> tuple[str, str]:
    """The case of ``kind`` a command names by its code ("H-2026-0001 确认") or, without one, by
    the thread it is typed in; returns (code, the rest of the text). CaseError otherwise."""
    first, _, rest = text.partition(" ")
    code = cases.parse_code(first)
    if code is None:
        code = await case_answered(ctx)
        if code is None or cases.kind_of(code) != kind:
            raise CaseError("need_code", "", kind)
        return code, text
    if cases.kind_of(code) != kind:
        raise CaseError("wrong_kind", code, kind)
    return code, rest.strip()


async def case_in_reach(
    ctx: CommandContext, code: str, model: type[C]
) -> tuple[C, Enterprise, Capacity]:
    """The case, its enterprise and the sender's capacity there; CaseError not_found when there
    is no such case, out_of_scope when the sender may not see it."""
    kind = cases.kind_of(code)
    row = await cases.get_case(ctx.session, code)
    if not isinstance(row, model):
        raise CaseError("not_found", code, kind)
    ent = await cases.enterprise_of(ctx.session, row)
    cap = await capacity(ctx.session, ctx.identity, ent)
    if not cap.sees:
        raise CaseError("out_of_scope", code, kind)
    return row, ent, cap


def acknowledge(
    reply: Callable[..., Any], actor: Actor, code: str, kind: str, action: str, status: str
) -> None:
    """Tell the actor their step was taken (``reply`` is ctx.reply or step.reply), unless they
    took it in the case's thread, where the post about it answers them."""
    if not actor.in_thread:
        reply("case_ack", code=code, kind=kind, action=action, status=status)

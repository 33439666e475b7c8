"""Turn the problems a visit found into a hazard or an escalation: /hazard V-…, /escalate V-…

The visit's confirmation names these commands when problems were found; this module lets the
hazard and request commands accept a visit id and start from what the visit recorded.
"""

from __future__ import annotations

import re

from bot.context import CommandContext
from bot.errors import UserError
from storage.directory import serves
from storage.models import Enterprise
from storage.visits import Visit, get_visit

VISIT_CODE = re.compile(r"^V-\d{4}-\d+$", re.IGNORECASE)


def is_visit_code(token: str) -> bool:
    return bool(VISIT_CODE.match(token.strip()))


async def visit_to_follow(ctx: CommandContext, code: str) -> tuple[Visit, Enterprise]:
    """The visit and its enterprise, if the sender may follow it up; otherwise refuses with
    why (a UserError answered with ``visit_followup``)."""
    visit = await get_visit(ctx.session, code)
    if visit is None:
        raise UserError("visit_followup", problem="unknown", code=code.upper())
    ident = ctx.identity
    own = ident.person is not None and ident.person.id == visit.person_id
    if not (own or serves(ident, visit.enterprise_id)):
        raise UserError("visit_followup", problem="not_yours", code=visit.code)
    if not visit.problems:
        raise UserError("visit_followup", problem="no_problems", code=visit.code)
    ent = await ctx.session.get(Enterprise, visit.enterprise_id)
    if ent is None or not ent.active:
        raise UserError("visit_followup", problem="enterprise_gone", code=visit.code)
    return visit, ent


def problem_text(ctx: CommandContext, visit: Visit) -> str:
    """The visit's problems, marked with where they came from (kept in the case's record)."""
    suffix = f"（走访 {visit.code}）" if ctx.locale == "zh_CN" else f" (visit {visit.code})"
    return f"{visit.problems}{suffix}"

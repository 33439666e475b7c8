"""``/history admin`` (/历史 管理): the append-only audit of admin actions (imports, exports,
provisioning, admin changes, failure alerts). /history itself lives in handlers/cases/history.py
and hands this form over here."""

from __future__ import annotations

from bot.context import CommandContext
from bot.errors import UserError
from bot.words import normalize
from storage import admins as admin_store

WORDS = frozenset({"admin", "管理", "管理员"})
SHOW = 30


def asks_for_admin_history(arg: str) -> bool:
    return normalize(arg) in WORDS


async def show(ctx: CommandContext) -> None:
    if not ctx.identity.is_admin:
        raise UserError("admin_not_admin")
    entries = await admin_store.audit_log(ctx.session, SHOW)
    ctx.reply("admin_history", entries=entries)

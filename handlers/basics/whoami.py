"""/whoami: the sender's roles, grids and served enterprises."""

from __future__ import annotations

from bot.commands import command
from bot.context import CommandContext
from storage.directory import L1_MEMBER
from storage.models import RoleKind


@command(
    "whoami",
    aliases=("我是谁", "我的信息"),
    summary={"zh_CN": "查看我的网格角色与服务企业", "en": "show my grid roles and enterprises"},
)
async def whoami(ctx: CommandContext) -> None:
    ident = ctx.identity
    if not ident.known:
        ctx.reply("whoami_stranger", user_id=ident.user_id)
        return
    roles = [
        {
            "kind": r.kind,
            "grid": r.grid.name if r.grid else None,
            "enterprise": r.enterprise.name if r.enterprise else None,
            "unit": r.unit.name if r.unit else None,
            "since": r.since,
        }
        for r in ident.roles
    ]
    l1_member_of = (
        sorted(
            {
                r.grid.parent.name
                for r in ident.roles
                if r.grid and r.grid.parent and r.kind == RoleKind.L2_CHIEF
            }
        )
        if L1_MEMBER in ident.role_kinds
        else []
    )
    ctx.reply(
        "whoami",
        user_id=ident.user_id,
        name=ident.display_name,
        phone=ident.person.phone if ident.person else None,
        is_admin=ident.is_admin,
        roles=roles,
        l1_member_of=l1_member_of,
        served=[{"name": e.name, "type": e.type} for e in ident.served],
    )

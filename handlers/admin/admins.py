"""/admin list|add|remove (/管理员): admins kept in the database, each change audited.

bot.yaml's ``admins`` are the first admins (province-wide) and cannot be removed here. An admin
added with a county administers that county only; a county admin may add or remove admins of
their own county only.

The admin room's members are bot.yaml's admins and these (bot/provision/plan.py): a change
queues a provisioning run, which invites a new admin into the room at once and removes one
taken off (the bot invited them; bot.yaml's admins stay)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.commands import Arg, command
from bot.context import CommandContext
from bot.errors import UserError
from bot.provision import store as provision_store
from handlers.admin.roster import ADMIN_ROLES, ADMIN_ROOMS
from storage import admins as admin_store

# Why a provisioning run was queued: the admin room's members changed.
ADMIN_ROOM_REASON = "admin-room:"


@command(
    "admin",
    aliases=("管理员",),
    summary={
        "zh_CN": "管理员：列出、添加（可限定一个县）、移除",
        "en": "admins: list, add (optionally for one county), remove",
    },
    details={
        "zh_CN": "/管理员 list；/管理员 add @账号:服务器 [县名]（不写县名即全省）；"
        "/管理员 remove @账号:服务器。bot.yaml 中的管理员不能在群里移除。",
        "en": "/admin list; /admin add @user:server [county] (no county: province-wide); "
        "/admin remove @user:server. bot.yaml's admins cannot be removed from chat.",
    },
    args=(
        Arg(
            {"zh_CN": "list|add|remove 账号 县", "en": "list|add|remove user county"},
            required=False,
            rest=True,
            key="what",
        ),
    ),
    roles=ADMIN_ROLES,
    rooms=ADMIN_ROOMS,
)
async def admin_command(ctx: CommandContext) -> None:
    words = str(ctx.args.get("what") or "list").split()
    verb = words[0].lower() if words else "list"
    configured = sorted(ctx.services.admins)
    mine = ctx.identity.admin_units  # None: province-wide
    if verb in ("list", "列表", "ls"):
        ctx.reply(
            "admin_list", configured=configured, admins=await admin_store.list_admins(ctx.session)
        )
        return
    if len(words) < 2 or not words[1].startswith("@") or ":" not in words[1]:
        raise UserError("admin_usage")
    user = words[1]
    now = datetime.now(UTC)
    if verb in ("add", "添加"):
        unit_id, unit_name = None, None
        if len(words) > 2:
            found = await admin_store.unit_named(ctx.session, " ".join(words[2:]))
            if found is None:
                raise UserError("admin_unknown_unit", name=" ".join(words[2:]))
            unit_id, unit_name = found
        if mine is not None and (unit_id is None or unit_id not in mine):
            raise UserError("admin_out_of_reach")
        await admin_store.add_admin(ctx.session, user, unit_id, ctx.sender, now)
        admin_store.audit(
            ctx.session,
            ctx.sender,
            "admin_add",
            room_id=ctx.room_id,
            now=now,
            user=user,
            unit=unit_name or "*",
        )
        provision_store.request_provisioning(ctx.session, f"{ADMIN_ROOM_REASON}add {user}")
        ctx.reply("admin_added", user=user, unit=unit_name)
        return
    if verb in ("remove", "rm", "移除", "删除"):
        if user in configured:
            raise UserError("admin_configured", user=user)
        entry = await admin_store.get_admin(ctx.session, user)
        if entry is None:
            raise UserError("admin_not_found", user=user)
        if mine is not None and (entry.unit_id is None or entry.unit_id not in mine):
            raise UserError("admin_out_of_reach")
        await admin_store.remove_admin(ctx.session, user)
        admin_store.audit(
            ctx.session,
            ctx.sender,
            "admin_remove",
            room_id=ctx.room_id,
            now=now,
            user=user,
            unit=entry.unit_name or "*",
        )
        provision_store.request_provisioning(ctx.session, f"{ADMIN_ROOM_REASON}remove {user}")
        ctx.reply("admin_removed", user=user)
        return
    raise UserError("admin_usage")

"""/staff (人员变动): an enterprise reports a staff change; its level-2 member confirms it.

Declared in the enterprise's room by its chief or a member, stored as pending (S-<n>); the
level-2 member serving the enterprise (or the level-2 chief) confirms with /确认变动 S-<n> or
rejects with /驳回变动 S-<n>. On confirmation the roster is updated with the date and the bot's
provisioning worker moves people in and out of the rooms.
"""

from __future__ import annotations

from typing import Any

from bot import dates
from bot.commands import ENTERPRISE_ROOM, Arg, command
from bot.context import CommandContext
from bot.provision.store import request_provisioning
from bot.words import CONFIRM, which
from handlers.staff.declaration import (
    StaffError,
    code_of,
    declare,
    may_withdraw,
    parse_code,
    still_to_apply,
)
from storage import rooms, staff_changes
from storage.directory import (
    ENTERPRISE_STAFF,
    L2_STAFF,
    Action,
    Contact,
    enterprise_ids_in,
    may,
    people_who_may,
    place_of,
    reach,
)
from storage.models import Enterprise, StaffChange

# The first word of /staff: confirm with the one CONFIRM vocabulary; the others are staff's own.
_ACTIONS = {
    "confirm": CONFIRM,
    "reject": frozenset({"reject", "驳回", "退回"}),
    "withdraw": frozenset({"cancel", "取消", "撤回", "撤销"}),
    "list": frozenset({"list", "列表", "待确认"}),
}

_CODE_ARG = Arg({"zh_CN": "编号", "en": "code"}, parse=parse_code, key="code")
_REASON_ARG = Arg({"zh_CN": "原因", "en": "reason"}, required=False, rest=True, key="reason")


@command(
    "staff",
    aliases=("人员变动",),
    summary={
        "zh_CN": "报告本企业人员变动（离开、加入），由服务网格员确认",
        "en": "report a staff change of this enterprise, confirmed by its grid member",
    },
    details={
        "zh_CN": "在企业群中发送，每行一项：「离开 姓名」或「加入 企业负责人|企业网格员 姓名 电话 "
        "@账号」（电话、账号至少一项）。例如：/人员变动 离开 张敏；加入 企业网格员 李四 "
        "13800000000。不带内容时列出待确认的变动；/人员变动 撤回 S-3 撤回自己的申请。",
        "en": "In the enterprise room, one item per line: 'leave NAME' or 'join ent_chief|"
        "ent_member NAME PHONE @id' (phone or Matrix id at least). Example: /staff leave Zhang; "
        "join ent_member Li 13800000000. Without text: the pending changes; /staff cancel S-3 "
        "withdraws your request.",
    },
    args=(Arg({"zh_CN": "变动内容", "en": "changes"}, required=False, rest=True, key="text"),),
    roles=ENTERPRISE_STAFF | L2_STAFF,
)
async def staff(ctx: CommandContext) -> None:
    text = (ctx.args.get("text") or "").strip()
    head, rest = [*text.split(maxsplit=1), "", ""][:2]
    action = which(head, _ACTIONS)
    if action in ("confirm", "reject", "withdraw"):
        code_text, _, reason = rest.strip().partition(" ")
        code = code_of(code_text)
        if action == "confirm":
            await _confirm(ctx, code)
        elif action == "reject":
            await _reject(ctx, code, reason.strip() or None)
        else:
            await _withdraw(ctx, code)
    elif not text or action == "list":
        await _list(ctx)
    else:
        await _declare(ctx, text)


@command(
    "staff-confirm",
    aliases=("确认变动",),
    summary={
        "zh_CN": "确认企业人员变动，更新名册",
        "en": "confirm a staff change: update the roster",
    },
    args=(_CODE_ARG,),
    roles=L2_STAFF,
)
async def staff_confirm(ctx: CommandContext) -> None:
    await _confirm(ctx, ctx.args["code"])


@command(
    "staff-reject",
    aliases=("驳回变动",),
    summary={"zh_CN": "驳回企业人员变动", "en": "reject a staff change"},
    args=(_CODE_ARG, _REASON_ARG),
    roles=L2_STAFF,
)
async def staff_reject(ctx: CommandContext) -> None:
    await _reject(ctx, ctx.args["code"], ctx.args.get("reason"))


# --- steps -------------------------------------------------------------------------------------


async def _room_enterprise(ctx: CommandContext) -> Enterprise:
    info = await rooms.get(ctx.session, ctx.room_id)
    if ctx.room_kind != ENTERPRISE_ROOM or info is None or info.enterprise_id is None:
        raise StaffError("enterprise_room_only")
    enterprise = await ctx.session.get(Enterprise, info.enterprise_id)
    if enterprise is None or not enterprise.active:
        raise StaffError("enterprise_room_only")
    return enterprise


async def _deciders(ctx: CommandContext, enterprise: Enterprise) -> list[Contact]:
    """Who may confirm: the level-2 member(s) serving the enterprise and its level-2 chief
    (the directory's RULES[DECIDE_STAFF], read as people)."""
    place = await place_of(ctx.session, enterprise)
    return await people_who_may(ctx.session, Action.DECIDE_STAFF, place)


async def _declare(ctx: CommandContext, text: str) -> None:
    enterprise = await _room_enterprise(ctx)
    if not may(ctx.identity, Action.DECLARE_STAFF, await place_of(ctx.session, enterprise)):
        raise StaffError("not_staff_here", enterprise=enterprise.name)
    items = declare(text, await staff_changes.enterprise_staff(ctx.session, enterprise.id))
    change = staff_changes.add(
        ctx.session,
        enterprise.id,
        items,
        room_id=ctx.room_id,
        requested_by=ctx.sender,
        event_id=ctx.event.event_id,
    )
    await ctx.session.flush()
    who = await _deciders(ctx, enterprise)
    # It asks the deciders to act: it rings them, as an answer to the declaration.
    ids = [d.user_id for d in who if d.user_id]
    ctx.send(
        ctx.room_id,
        "staff_declared",
        mentions=ids,
        rings=bool(ids),
        reply_to=ctx.event.event_id,
        code=change.code,
        enterprise=enterprise.name,
        items=items,
        deciders=[{"name": d.name, "user_id": d.user_id} for d in who],
    )


async def _load(ctx: CommandContext, code: int) -> tuple[StaffChange, Enterprise]:
    change = await staff_changes.get(ctx.session, code)
    if change is None:
        raise StaffError("no_request", code=f"S-{code}")
    if change.status != staff_changes.PENDING:
        raise StaffError("not_pending", code=change.code, status=change.status)
    enterprise = await ctx.session.get(Enterprise, change.enterprise_id)
    assert enterprise is not None
    return change, enterprise


async def _may_decide(ctx: CommandContext, enterprise: Enterprise, change: StaffChange) -> None:
    place = await place_of(ctx.session, enterprise)
    if not may(ctx.identity, Action.DECIDE_STAFF, place):
        # Who decides is named only to those who may see the enterprise's records anyway.
        sees = may(ctx.identity, Action.SEE, place)
        raise StaffError(
            "not_decider",
            code=change.code,
            enterprise=enterprise.name if sees else None,
            deciders=[d.name for d in await _deciders(ctx, enterprise)] if sees else [],
        )


async def _confirm(ctx: CommandContext, code: int) -> None:
    change, enterprise = await _load(ctx, code)
    await _may_decide(ctx, enterprise, change)
    today = dates.today(ctx.services.config.tz)
    items = [dict(i) for i in change.items]
    staff_now = await staff_changes.enterprise_staff(ctx.session, enterprise.id)
    await staff_changes.apply(ctx.session, enterprise.id, still_to_apply(items, staff_now), today)
    change.items = items  # with the person ids of who joined
    staff_changes.decide(change, "confirmed", ctx.sender)
    change.effective_on = today
    request_provisioning(ctx.session, f"staff change {change.code}")
    _announce(ctx, change, enterprise, today=today)


async def _reject(ctx: CommandContext, code: int, reason: str | None) -> None:
    change, enterprise = await _load(ctx, code)
    await _may_decide(ctx, enterprise, change)
    staff_changes.decide(change, "rejected", ctx.sender)
    change.note = reason
    _announce(ctx, change, enterprise, reason=reason)


async def _withdraw(ctx: CommandContext, code: int) -> None:
    change, enterprise = await _load(ctx, code)
    staff_now = await staff_changes.enterprise_staff(ctx.session, enterprise.id)
    if not may_withdraw(ctx.sender, change.requested_by, staff_now):
        raise StaffError("not_requester", code=change.code)
    staff_changes.decide(change, "cancelled", ctx.sender)
    _announce(ctx, change, enterprise)


def _announce(
    ctx: CommandContext, change: StaffChange, enterprise: Enterprise, **extra: Any
) -> None:
    values: dict[str, Any] = {
        "code": change.code,
        "status": change.status,
        "enterprise": enterprise.name,
        "items": change.items,
        "by": ctx.identity.display_name,
        "today": None,
        "reason": None,
        **extra,
    }
    ctx.reply("staff_decided", **values)
    if ctx.room_id != change.room_id:
        ctx.send(change.room_id, "staff_decided", mentions=[change.requested_by], **values)


async def _list(ctx: CommandContext) -> None:
    # What the sender may declare or decide, and whatever concerns the room it is asked in.
    concerned = reach(ctx.identity, Action.DECLARE_STAFF) | reach(ctx.identity, Action.DECIDE_STAFF)
    ids = await enterprise_ids_in(ctx.session, concerned) or set()  # no "everything" in these
    info = await rooms.get(ctx.session, ctx.room_id)
    if ctx.room_kind == ENTERPRISE_ROOM and info is not None and info.enterprise_id:
        ids.add(info.enterprise_id)
    changes = await staff_changes.pending(ctx.session, ids)
    ctx.reply(
        "staff_list",
        changes=[{"code": c.code, "enterprise": e.name, "items": c.items} for c, e in changes],
    )

"""/history (/历史): a case's ledger and audit trail; /overdue (/逾期): what is late, in scope."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.commands import KNOWN, Arg, command
from bot.context import CommandContext
from handlers.admin import audit as admin_audit
from handlers.cases.actors import case_in_reach, parse_case_code
from storage import cases, rooms
from storage.directory import Action, enterprise_ids_in, enterprise_names, reach

# Lines shown by /overdue per kind; the rest is counted.
OVERDUE_LIMIT = 30


@command(
    "history",
    aliases=("历史", "记录"),
    summary={
        "zh_CN": "查看隐患、诉求或事故的详情与全部记录",
        "en": "show a case and its audit trail",
    },
    details={
        "zh_CN": "例如 /历史 H-2026-0001；管理员：/历史 管理（管理操作记录）。"
        "企业只能查看本企业的，网格员查看所服务企业的，"
        "网格长和办公室查看本网格的。",
        "en": "e.g. /history H-2026-0001; admins: /history admin (the admin actions). "
        "Enterprises see their own cases, members those of the "
        "enterprises they serve, chiefs and office their grid's.",
    },
    args=(Arg({"zh_CN": "编号", "en": "id"}, key="code"),),
    roles=KNOWN,
)
async def history_command(ctx: CommandContext) -> None:
    if admin_audit.asks_for_admin_history(ctx.args["code"]):
        await admin_audit.show(ctx)  # /history admin: the admin actions (handlers/admin)
        return
    await show(ctx, parse_case_code(ctx.args["code"]))


async def show(ctx: CommandContext, code: str) -> None:
    """Reply with the case and its trail, if the sender may see it."""
    kind = cases.kind_of(code)
    row, ent, _ = await case_in_reach(ctx, code, cases.MODEL[kind])
    events = await cases.history(ctx.session, code)
    where = await rooms.get_many(ctx.session, sorted({e.room_id for e in events if e.room_id}))
    ctx.reply(
        "case_history",
        kind=kind,
        case=row,
        ent=ent,
        events=events,
        room_kinds={room_id: info.kind for room_id, info in where.items()},
        tz=ctx.services.config.tz,
    )


@command(
    "overdue",
    aliases=("逾期",),
    summary={"zh_CN": "列出我范围内逾期的隐患和诉求", "en": "list overdue hazards and requests"},
    details={
        "zh_CN": "隐患：整改期限已过仍未提交整改；诉求：受理时限已过仍无人受理。"
        "范围与 /历史 相同。",
        "en": "Hazards past their rectification deadline and not submitted; requests past their "
        "response deadline and not taken. Same scope as /history.",
    },
    roles=KNOWN,
)
async def overdue_command(ctx: CommandContext) -> None:
    now = datetime.now(UTC)
    scope = await enterprise_ids_in(ctx.session, reach(ctx.identity, Action.SEE))
    hazards = await cases.overdue_hazards(ctx.session, now, scope)
    requests = await cases.overdue_requests(ctx.session, now, scope)
    ent_ids = {h.enterprise_id for h in hazards} | {r.enterprise_id for r in requests}
    names = await enterprise_names(ctx.session, ent_ids)
    ctx.reply(
        "case_overdue",
        hazards=hazards[:OVERDUE_LIMIT],
        requests=requests[:OVERDUE_LIMIT],
        more_hazards=max(0, len(hazards) - OVERDUE_LIMIT),
        more_requests=max(0, len(requests) - OVERDUE_LIMIT),
        names=names,
        now=now,
        tz=ctx.services.config.tz,
    )

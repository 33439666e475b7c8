"""/status N-…: who acknowledged a notice, when and by whom; /notices: recent notices in scope."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from bot.commands import KNOWN, Arg, ArgError, command
from bot.context import CommandContext
from bot.errors import UserError
from handlers.notices.acknowledge import NOTICE_CODE
from handlers.notices.issue import ISSUE_ROOMS
from storage import notices as N
from storage.directory import Action, enterprise_ids_in, own_enterprise_ids, reach, roles_for

PAGE_SIZE = 40  # rows per /status page: 300 rows would pass Matrix's 64 KiB event limit
LIST_SIZE = 10


def _page(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ArgError({"zh_CN": f"页码应为正整数：{text}", "en": f"page must be a number: {text}"})
    return int(text)


def status_order(t: N.NoticeTarget, delivery: N.Delivery) -> tuple[int, str, str]:
    """Silent first (the undelivered before them), then acknowledged in order of time."""
    if t.acked_at is None:
        return (0 if delivery.undelivered else 1, "", t.enterprise_name)
    return (2, t.acked_at.isoformat(), t.enterprise_name)


@command(
    "status",
    aliases=("状态",),
    summary={"zh_CN": "查看通知的确认情况", "en": "who has acknowledged a notice"},
    args=(
        NOTICE_CODE,
        Arg({"zh_CN": "页码", "en": "page"}, required=False, parse=_page, key="page"),
    ),
    details={
        "zh_CN": "例如 /状态 N-2026-0001：逐家列出送达、确认时间、确认人、是否反馈，"
        "以及按时确认率。"
        f"每页 {PAGE_SIZE} 家，未确认的排在前面；/状态 N-2026-0001 2 查看第 2 页。",
        "en": "e.g. /status N-2026-0001: delivery, acknowledgement time and person, feedback, "
        f"and the on-time rate, {PAGE_SIZE} enterprises a page, silent ones first.",
    },
    roles=roles_for(Action.OVERSEE),
    rooms=ISSUE_ROOMS,
)
async def status(ctx: CommandContext) -> None:
    code = ctx.args["code"]
    notice = await N.by_code(ctx.session, code)
    visible = await enterprise_ids_in(ctx.session, reach(ctx.identity, Action.OVERSEE))
    targets = await N.targets_of(ctx.session, notice.id) if notice else []
    full = notice is not None and (visible is None or notice.issuer == ctx.sender)
    shown = targets if full else [t for t in targets if visible and t.enterprise_id in visible]
    if notice is None or not shown:
        raise UserError("notice_not_found", code=code)
    feedback = await N.feedback_counts(ctx.session, [t.id for t in shown])
    deliveries = await N.post_deliveries(ctx.session, notice.id)
    counts = N.count(shown, notice.deadline, feedback, deliveries)
    pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
    page = ctx.args.get("page") or 1
    if page > pages:
        raise UserError("notice_status_no_page", code=notice.code, page=page, pages=pages)
    tz = ctx.services.config.tz
    ordered = sorted(shown, key=lambda t: status_order(t, deliveries[t.id]))
    rows = [
        {
            "index": (page - 1) * PAGE_SIZE + i + 1,
            "enterprise": t.enterprise_name,
            "delivery": deliveries[t.id].state,
            "cause": deliveries[t.id].cause,
            "code": deliveries[t.id].code or "",
            "acked_at": t.acked_at.astimezone(tz) if t.acked_at else None,
            "acked_by": t.acked_by_name,
            "method": t.ack_method,
            "on_time": t.on_time(notice.deadline),
            "feedback": feedback.get(t.id, 0),
        }
        for i, t in enumerate(ordered[(page - 1) * PAGE_SIZE : page * PAGE_SIZE])
    ]
    ctx.reply(
        "notice_status",
        code=notice.code,
        kind=notice.kind,
        issuer_name=notice.issuer_name,
        created=notice.created_at.astimezone(tz),
        deadline=notice.deadline.astimezone(tz),
        overdue=datetime.now(UTC) > notice.deadline,
        counts=counts,
        rate=counts.on_time_rate,
        rows=rows,
        page=page,
        pages=pages,
        partial=len(shown) < len(targets),
    )


@command(
    "notices",
    aliases=("通知列表", "近期通知"),
    summary={"zh_CN": "近期通知及确认进度", "en": "recent notices and their acknowledgements"},
    details={
        "zh_CN": f"列出你范围内最近 {LIST_SIZE} 条通知；"
        "企业人员看到的是发给本企业的通知及是否已确认。",
        "en": f"The latest {LIST_SIZE} notices in your scope; enterprise staff see their own.",
    },
    roles=KNOWN,
)
async def notices(ctx: CommandContext) -> None:
    visible = await enterprise_ids_in(ctx.session, reach(ctx.identity, Action.SEE))
    mine = own_enterprise_ids(ctx.identity)
    # Enterprise staff do not see a notice that never reached their enterprise as sent to it.
    found = await N.latest(
        ctx.session, visible=visible, issuer=ctx.sender, limit=LIST_SIZE, own=mine
    )
    ids = [n.id for n in found]
    totals = await N.acknowledgement_totals(ctx.session, ids, visible=visible, issuer=ctx.sender)
    # For enterprise staff: has their enterprise acknowledged each notice?
    own = await N.acknowledged_by(ctx.session, ids, mine)
    tz = ctx.services.config.tz
    now = datetime.now(UTC)
    items: list[dict[str, Any]] = [
        {
            "code": n.code,
            "kind": n.kind,
            "title": n.text.strip().splitlines()[0][:40] if n.text.strip() else "",
            "created": n.created_at.astimezone(tz),
            "deadline": n.deadline.astimezone(tz),
            "overdue": now > n.deadline,
            "total": totals.get(n.id, (0, 0))[0],
            "acked": totals.get(n.id, (0, 0))[1],
            "own": own.get(n.id),
        }
        for n in found
    ]
    ctx.reply("notice_list", items=items)

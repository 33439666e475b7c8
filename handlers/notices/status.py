"""/status N-…: who acknowledged a notice, when and by whom; /notices: recent notices in scope."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select

from bot.commands import KNOWN, Arg, ArgError, command
from bot.context import CommandContext
from handlers.notices.acknowledge import code_arg
from handlers.notices.issue import ISSUE_ROOMS
from storage import notices as N
from storage.directory import Action, enterprise_ids_in, own_enterprise_ids, reach, roles_for

PAGE_SIZE = 40  # rows per /status page: 300 rows would pass Matrix's 64 KiB event limit
LIST_SIZE = 10


def _page(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ArgError({"zh_CN": f"页码应为正整数：{text}", "en": f"page must be a number: {text}"})
    return int(text)


def _order(t: N.NoticeTarget, live: dict[int, str]) -> tuple[int, str, str]:
    """Silent first (the undelivered before them), then acknowledged in order of time."""
    if t.acked_at is None:
        undelivered = live.get(t.id, t.delivery) in (N.FAILED, N.NO_ROOM)
        return (0 if undelivered else 1, "", t.enterprise_name)
    return (2, t.acked_at.isoformat(), t.enterprise_name)


@command(
    "status",
    aliases=("状态",),
    summary={"zh_CN": "查看通知的确认情况", "en": "who has acknowledged a notice"},
    args=(
        Arg({"zh_CN": "通知编号", "en": "notice"}, parse=code_arg, key="code"),
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
        ctx.reply("notice_not_found", code=code)
        return
    feedback = await N.feedback_counts(ctx.session, [t.id for t in shown])
    live = await N.live_delivery(ctx.session, notice.id)
    counts = N.count(shown, notice.deadline, feedback, live)
    pages = max(1, math.ceil(len(shown) / PAGE_SIZE))
    page = min(ctx.args.get("page") or 1, pages)
    tz = ctx.services.config.tz
    ordered = sorted(shown, key=lambda t: _order(t, live))
    rows = [
        {
            "index": (page - 1) * PAGE_SIZE + i + 1,
            "enterprise": t.enterprise_name,
            "delivery": live.get(t.id, t.delivery),
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
    q = select(N.Notice).order_by(N.Notice.created_at.desc(), N.Notice.id.desc()).limit(LIST_SIZE)
    if visible is not None:
        reached = select(N.NoticeTarget.notice_id).where(N.NoticeTarget.enterprise_id.in_(visible))
        q = q.where(or_(N.Notice.issuer == ctx.sender, N.Notice.id.in_(reached)))
    found = list(await ctx.session.scalars(q))
    if not found:
        ctx.reply("notice_list", items=[])
        return
    stats = select(
        N.NoticeTarget.notice_id, func.count(), func.count(N.NoticeTarget.acked_at)
    ).where(N.NoticeTarget.notice_id.in_([n.id for n in found]))
    if visible is not None:
        # Counts over what this person may see (their issued notices are seen whole).
        mine = [n.id for n in found if n.issuer == ctx.sender]
        stats = stats.where(
            or_(N.NoticeTarget.enterprise_id.in_(visible), N.NoticeTarget.notice_id.in_(mine))
        )
    totals = {
        nid: (int(total), int(acked))
        for nid, total, acked in (
            await ctx.session.execute(stats.group_by(N.NoticeTarget.notice_id))
        )
    }
    own = await _own_states(ctx, [n.id for n in found])
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


async def _own_states(ctx: CommandContext, notice_ids: list[int]) -> dict[int, bool]:
    """For enterprise staff: has their enterprise acknowledged each notice?"""
    ent_ids = own_enterprise_ids(ctx.identity)
    if not ent_ids:
        return {}
    rows = await ctx.session.execute(
        select(N.NoticeTarget.notice_id, N.NoticeTarget.acked_at).where(
            N.NoticeTarget.notice_id.in_(notice_ids), N.NoticeTarget.enterprise_id.in_(ent_ids)
        )
    )
    states: dict[int, bool] = {}
    for nid, acked_at in rows:
        states[nid] = states.get(nid, True) and acked_at is not None
    return states

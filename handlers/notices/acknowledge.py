"""Acknowledgements and feedback: ✅/👍 on a notice, a reply saying 收到, /ack, /feedback.

Only the enterprise's own chief and members count (an outsider's ✅ is ignored). The first
acknowledgement's time and person are kept; later ones change nothing, and redacting the
reaction does not erase the record (redactions are never looked at). The time is the server's
timestamp of the person's event, so an acknowledgement sent while the bot was down still counts
as on time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bot import words
from bot.commands import (
    DIRECT,
    ENTERPRISE_ROOM,
    Arg,
    ArgError,
    Handler,
    Text,
    command,
    strip_reply_fallback,
)
from bot.context import CommandContext
from bot.errors import UserError
from bot.relations import relation, replied_to, thread_root
from storage import notices as N
from storage import rooms
from storage.directory import ENTERPRISE_STAFF, is_staff_of, own_enterprise_ids
from storage.models import Enterprise

ACK_KEYS = frozenset({"✅", "👍", "✔"})
_EMOJI_NOISE = re.compile("[\ufe0f\U0001f3fb-\U0001f3ff]")
ACK_ROOMS = frozenset({ENTERPRISE_ROOM, DIRECT})


def normalize_key(key: str) -> str:
    """✅️ / 👍🏽 → ✅ / 👍: drop variation selectors and skin tones."""
    return _EMOJI_NOISE.sub("", key.strip())


def says_received(text: str) -> bool:
    """Does a reply to a notice acknowledge it? (收到, 已收到！, 已阅, ok, ✅; not 没收到)."""
    return normalize_key(text) in ACK_KEYS or words.says_received(text)


def code_arg(text: str) -> str:
    code = N.parse_code(text)
    if code is None:
        raise ArgError(
            {
                "zh_CN": f"通知编号应形如 N-2026-0001（收到的是「{text}」）",
                "en": f"a notice number looks like N-2026-0001 (got {text!r})",
            }
        )
    return code


# The notice number as a command's argument (/ack, /feedback, /status).
NOTICE_CODE = Arg({"zh_CN": "通知编号", "en": "notice"}, parse=code_arg, key="code")


def _ack_time(ctx: CommandContext) -> datetime:
    """The person's moment (server timestamp), never later than the bot's clock."""
    sent = datetime.fromtimestamp(ctx.event.origin_server_ts / 1000, UTC)
    return min(sent, datetime.now(UTC))


def _parent_event(content: dict[str, Any]) -> str | None:
    """The event a message answers: a reply, or the root of a thread it is in."""
    return replied_to(content) or thread_root(content)


@dataclass
class AckResult:
    enterprise: str
    code: str
    first: bool
    by_name: str | None
    at: datetime | None

    def as_dict(self, tz: Any) -> dict[str, Any]:
        return {
            "enterprise": self.enterprise,
            "code": self.code,
            "first": self.first,
            "by_name": self.by_name,
            "at": self.at.astimezone(tz) if self.at else None,
        }


async def acknowledge(
    ctx: CommandContext, notice: N.Notice, target: N.NoticeTarget, method: str
) -> AckResult:
    """Record the sender's acknowledgement (the caller checked they belong to the enterprise)."""
    first = await N.record_ack(
        ctx.session,
        target.id,
        at=_ack_time(ctx),
        user_id=ctx.sender,
        name=ctx.identity.display_name,
        method=method,
        event_id=ctx.event.event_id,
    )
    await ctx.session.refresh(target)
    return AckResult(
        target.enterprise_name, notice.code, first, target.acked_by_name, target.acked_at
    )


async def _notice_and_target(
    ctx: CommandContext, carried: N.Carried
) -> tuple[N.Notice, N.NoticeTarget]:
    assert carried.target_id is not None
    target = await ctx.session.get(N.NoticeTarget, carried.target_id)
    notice = await ctx.session.get(N.Notice, carried.notice_id)
    assert target is not None and notice is not None
    return notice, target


class NoticeAckHook:
    """Dispatcher hook: reactions and 收到-replies on any message that carried a notice."""

    async def __call__(self, ctx: CommandContext) -> bool:
        content = ctx.event.source.get("content") or {}
        if ctx.event.type == "m.reaction":
            return await self._reaction(ctx, content)
        if ctx.event.type == "m.room.message" and content.get("msgtype") == "m.text":
            return await self._reply(ctx, content)
        return False

    async def _reaction(self, ctx: CommandContext, content: dict[str, Any]) -> bool:
        rel = relation(content)
        parent = rel.get("event_id")
        if rel.get("rel_type") != "m.annotation" or not isinstance(parent, str):
            return False
        carried = await N.carried_by(ctx.session, parent)
        if carried is None:
            return False
        key = rel.get("key")
        if (
            carried.target_id is None
            or not isinstance(key, str)
            or normalize_key(key) not in ACK_KEYS
        ):
            return True  # another emoji, or the level-2 copy: nothing to record
        notice, target = await _notice_and_target(ctx, carried)
        if not is_staff_of(ctx.identity, target.enterprise_id):
            return True  # an outsider's ✅ (e.g. the grid member's) does not count; stay quiet
        result = await acknowledge(ctx, notice, target, N.BY_REACTION)
        if result.first:
            ctx.send(
                ctx.room_id,
                "ack_result",
                locale=ctx.services.config.language,  # the room's language, not the reactor's
                reply_to=parent,
                results=[result.as_dict(_tz(ctx))],
            )
        return True

    async def _reply(self, ctx: CommandContext, content: dict[str, Any]) -> bool:
        parent = _parent_event(content)
        body = content.get("body")
        if parent is None or not isinstance(body, str):
            return False
        text = strip_reply_fallback(body).strip()
        if ctx.services.router.parse(text) is not None or not says_received(text):
            return False  # a command (e.g. /收到 as a reply) or ordinary talk
        carried = await N.carried_by(ctx.session, parent)
        if carried is None or carried.target_id is None:
            return False
        notice, target = await _notice_and_target(ctx, carried)
        if not is_staff_of(ctx.identity, target.enterprise_id):
            raise UserError("ack_not_counted", enterprise=target.enterprise_name, code=notice.code)
        result = await acknowledge(ctx, notice, target, N.BY_REPLY)
        ctx.reply("ack_result", results=[result.as_dict(_tz(ctx))])
        return True


def _tz(ctx: CommandContext) -> Any:
    return ctx.services.config.tz


# --- commands -----------------------------------------------------------------------------------


async def _room_enterprises(ctx: CommandContext) -> list[int]:
    """The enterprises the sender speaks for here: the room's own, or (in a direct chat) all
    of theirs. Refuses an outsider in an enterprise room."""
    if ctx.room_kind != ENTERPRISE_ROOM:
        return own_enterprise_ids(ctx.identity)
    info = await rooms.get(ctx.session, ctx.room_id)
    eid = info.enterprise_id if info else None
    enterprise = await ctx.session.get(Enterprise, eid) if eid is not None else None
    if enterprise is None:
        raise UserError("ack_no_enterprise")
    if not is_staff_of(ctx.identity, enterprise.id):
        raise UserError("ack_not_counted", enterprise=enterprise.name, code=None)
    return [enterprise.id]


async def _find_targets(
    ctx: CommandContext, code: str | None
) -> list[tuple[N.Notice, N.NoticeTarget]]:
    """What an /ack or /feedback in this room, by this sender, is about: the notice named (or
    replied to), else the one notice still open. Refuses when that is not clear."""
    enterprise_ids = await _room_enterprises(ctx)
    if code is None:
        content = ctx.event.source.get("content") or {}
        parent = _parent_event(content)
        carried = await N.carried_by(ctx.session, parent) if parent else None
        if carried is not None:
            notice = await ctx.session.get(N.Notice, carried.notice_id)
            code = notice.code if notice else None
    if code is not None:
        notice = await N.by_code(ctx.session, code)
        if notice is None:
            raise UserError("ack_unknown_notice", code=code)
        pairs = []
        for eid in enterprise_ids:
            target = await N.target_for(ctx.session, notice.id, eid)
            if target is not None:
                pairs.append((notice, target))
        if not pairs:
            raise UserError("ack_not_targeted", code=code)
        return pairs
    open_pairs = await N.open_targets_for(ctx.session, enterprise_ids)
    codes = sorted({n.code for n, _ in open_pairs})
    if not open_pairs:
        raise UserError("ack_nothing_open")
    if len(codes) > 1:
        raise UserError("ack_which", codes=codes)
    return open_pairs


def answer_command(
    name: str, *, aliases: tuple[str, ...], summary: Text, args: tuple[Arg, ...], details: Text
) -> Callable[[Handler], Handler]:
    """A command by which an enterprise answers a notice (/ack, /feedback): its own chief and
    members, in its room or a direct chat."""
    return command(
        name,
        aliases=aliases,
        summary=summary,
        args=args,
        details=details,
        roles=ENTERPRISE_STAFF,
        rooms=ACK_ROOMS,
    )


@answer_command(
    "ack",
    aliases=("收到", "确认收到"),
    summary={"zh_CN": "确认收到通知", "en": "acknowledge a notice"},
    args=(replace(NOTICE_CODE, required=False),),
    details={
        "zh_CN": "企业负责人或网格员在企业群中确认收到通知，例如 /收到 N-2026-0001。"
        "只有一条待确认的通知时可省略编号；"
        "也可以在通知上点 ✅ 或 👍，或回复该通知“收到”。",
        "en": "In the enterprise room, e.g. /ack N-2026-0001; "
        "without a number when only one notice is open. "
        "A ✅ or 👍 on the notice, or a reply saying 收到, works too.",
    },
)
async def ack(ctx: CommandContext) -> None:
    pairs = await _find_targets(ctx, ctx.args.get("code"))
    results = [await acknowledge(ctx, n, t, N.BY_COMMAND) for n, t in pairs]
    ctx.reply("ack_result", results=[r.as_dict(_tz(ctx)) for r in results])


@answer_command(
    "feedback",
    aliases=("反馈",),
    summary={"zh_CN": "报告通知的贯彻落实情况", "en": "report how a notice was carried out"},
    args=(NOTICE_CODE, Arg({"zh_CN": "落实情况", "en": "what was done"}, rest=True, key="text")),
    details={
        "zh_CN": "例如 /反馈 N-2026-0001 已组织全体驾驶员学习，并完成车辆安全检查。"
        "可多次反馈，均会保存；反馈同时视为确认收到。",
        "en": "e.g. /feedback N-2026-0001 All drivers briefed, vehicles checked. "
        "Each feedback is kept; it also counts as an acknowledgement.",
    },
)
async def feedback(ctx: CommandContext) -> None:
    pairs = await _find_targets(ctx, ctx.args["code"])
    if len(pairs) > 1:
        raise UserError("feedback_which", enterprises=[t.enterprise_name for _, t in pairs])
    notice, target = pairs[0]
    ctx.session.add(
        N.NoticeFeedback(
            target_id=target.id,
            person=ctx.sender,
            person_name=ctx.identity.display_name,
            text=ctx.args["text"],
            event_id=ctx.event.event_id,
            created_at=datetime.now(UTC),
        )
    )
    result = await acknowledge(ctx, notice, target, N.BY_FEEDBACK)
    count = (await N.feedback_counts(ctx.session, [target.id]))[target.id]
    ctx.reply(
        "feedback_recorded",
        code=notice.code,
        enterprise=target.enterprise_name,
        count=count,
        acked_now=result.first,
    )


# Collected by bot/app.py (run before the conversation hook).
EVENT_HOOKS = (NoticeAckHook(),)

"""/broadcast, /notice, /remind: put a notice together, confirm it, send it down the grid.

The command's first line holds the options (kind, filters, ``--within``); the lines after it
are the text. Without text the bot asks for it. Files and images sent next in the same
conversation go out with the notice. The bot then shows how many enterprises (and rooms) it
will reach and asks for 确认 or 取消; only 确认 writes anything.
"""

from __future__ import annotations

from typing import Any

from bot import conversation
from bot.commands import (
    ADMIN_ROOM,
    DIRECT,
    L1_ROOM,
    L2_ROOM,
    Arg,
    Handler,
    Text,
    command,
    strip_reply_fallback,
    tr,
)
from bot.context import CommandContext
from bot.conversation import CONFIRM, TEXT, Ask, Conversation, Incoming, Step
from bot.errors import UserError
from bot.evidence import is_mxc
from bot.words import CANCEL, confirmed, is_in
from handlers.notices.options import (
    NOTICE_KIND_WORDS,
    REMIND_KIND_WORDS,
    Filter,
    OptionError,
    Options,
    Resolution,
    parse_options,
    resolve,
)
from handlers.notices.publish import Draft, default_within_hours, preview, publish
from storage import notices as N
from storage.directory import RULES, Action, Identity, enterprises_in, reach, roles_for
from storage.models import Enterprise

BROADCAST, NOTICE, REMIND = "broadcast", "notice", "remind"
# Each command's reach is its action's row of the directory's RULES.
ACTIONS = {BROADCAST: Action.BROADCAST, NOTICE: Action.NOTICE, REMIND: Action.REMIND}
ISSUE_ROOMS = frozenset({DIRECT, L1_ROOM, L2_ROOM, ADMIN_ROOM})
MAX_ATTACHMENTS = 10
PREVIEW_NAMES = 8

# The text (skipped when the command had it), then 确认 or 取消; files may come at either step.
_STEPS = (Ask("text", TEXT), Ask("confirm", CONFIRM, counted=False))
broadcast_conv = Conversation(BROADCAST, steps=_STEPS)
notice_conv = Conversation(NOTICE, steps=_STEPS)
remind_conv = Conversation(REMIND, steps=_STEPS)
_CONVERSATIONS = {BROADCAST: broadcast_conv, NOTICE: notice_conv, REMIND: remind_conv}


_FILTER_HELP_ZH = (
    "范围可写领域（客运 货运 港口 航运 渡口 工程）、企业类型（如 道路货运企业）、"
    "县区（县:芦溪县）或企业名称（企业:赣西物流有限公司,芦溪通达货运公司），不写则为全部；"
    "--within 24h（或 48小时、3天）指定确认时限。"
)
_FILTER_HELP_EN = (
    "Filters: domains (客运 货运 港口 航运 渡口 工程), enterprise types, counties (县:芦溪县) or "
    "enterprise names (企业:A,B); none = all. --within 24h (or 3d) sets the acknowledgement time."
)


def issuing_command(
    origin: str, alias: str, *, kinds: str, summary: Text, details: Text
) -> Handler:
    """/broadcast, /notice or /remind: the same command in other words, each reaching as far as
    its action's row of the directory's RULES; each starts the conversation of its origin."""

    async def begin(ctx: CommandContext) -> None:
        await _begin(ctx, origin)

    begin.__name__ = begin.__qualname__ = origin
    options = Arg(
        {"zh_CN": f"{kinds} 范围 --within 24h", "en": "kind filters --within 24h"},
        required=False,
        rest=True,
        key="options",
    )
    return command(
        origin,
        aliases=(alias,),
        summary=summary,
        args=(options,),
        details=details,
        roles=roles_for(ACTIONS[origin]),
        rooms=ISSUE_ROOMS,
    )(begin)


broadcast = issuing_command(
    BROADCAST,
    "群发",
    kinds="部署要求|事故案例|检查通报|安全提醒",
    summary={
        "zh_CN": "向本辖区企业群发通知（需逐家确认收到）",
        "en": "send a notice to the enterprises of your area (each must acknowledge)",
    },
    details={
        "zh_CN": "第一行写类型和范围，第二行起写正文，例如：\n"
        "/群发 部署要求 货运 港口 --within 48h\n关于做好元旦期间安全生产工作的通知\n……\n"
        + _FILTER_HELP_ZH
        + "随后可发送文件或图片作为附件；机器人显示发送对象数量后，"
        "回复「确认」发出或「取消」放弃。",
        "en": "First line: kind and filters; the text from the second line, e.g.\n"
        "/broadcast requirement 货运 --within 48h\nNotice on holiday safety…\n"
        + _FILTER_HELP_EN
        + " Then send files or images to attach; reply 确认 to send or 取消 to cancel.",
    },
)
notice = issuing_command(
    NOTICE,
    "通知",
    kinds="部署要求|事故案例|检查通报|安全提醒",
    summary={
        "zh_CN": "向本网格（或你服务的）企业发通知（需逐家确认收到）",
        "en": "send a notice to your grid's (or your served) enterprises",
    },
    details={
        "zh_CN": "二级网格长发往本网格全部企业，二级网格员发往自己服务的企业。例如：\n"
        "/通知 典型事故案例 --within 24h\n某地货车侧翻事故通报……\n"
        + _FILTER_HELP_ZH
        + "随后可发送附件，回复「确认」发出或「取消」放弃。",
        "en": "A level-2 chief reaches the grid's enterprises, a member those they serve, e.g.\n"
        "/notice accident --within 24h\nCase: a lorry overturned…\n" + _FILTER_HELP_EN,
    },
)
remind = issuing_command(
    REMIND,
    "提醒",
    kinds="节假日|天气预警|特殊时段",
    summary={
        "zh_CN": "节假日、恶劣天气、特殊时段安全提醒（点名各企业负责人）",
        "en": "holiday / weather / special-period safety reminder (mentions each chief)",
    },
    details={
        "zh_CN": "类型必填：节假日、天气预警 或 特殊时段。例如：\n"
        "/提醒 天气预警 渡口 航运 --within 12h\n明日起有强降雨，请落实停航措施……\n"
        + _FILTER_HELP_ZH
        + "消息会点名每家企业的负责人，需确认收到。",
        "en": "The kind is required: holiday, weather or special, e.g.\n"
        "/remind weather 渡口 --within 12h\nHeavy rain from tomorrow…\n" + _FILTER_HELP_EN,
    },
)


# --- starting ------------------------------------------------------------------------------------


async def _pool(ctx: CommandContext, origin: str) -> list[Enterprise]:
    """Every enterprise the issuer reaches with this command, before the filter."""
    return await enterprises_in(ctx.session, reach(ctx.identity, ACTIONS[origin]))


def _issuer_role(origin: str, ident: Identity) -> tuple[str | None, str | None]:
    """The role the issuer speaks in, for the header of the post: (role kind, grid name)."""
    if ident.is_admin and origin != NOTICE:
        return "admin", None
    # The first role of the command's rule the issuer holds (level 1 before level 2).
    for kind in RULES[ACTIONS[origin]]:
        for r in ident.roles:
            if r.kind == kind:
                return r.kind, r.grid.name if r.grid else None
    return None, None


def split_body(ctx: CommandContext) -> tuple[str, str]:
    """(options after the command word on the first line, text from the second line on)."""
    content = ctx.event.source.get("content") or {}
    body = strip_reply_fallback(str(content.get("body") or "")).lstrip()
    first, _, rest = body.partition("\n")
    parts = first.split(maxsplit=1)
    return (parts[1] if len(parts) > 1 else ""), rest.strip()


def _bad_options(ctx: CommandContext, origin: str, err: OptionError) -> UserError:
    return UserError("notice_bad_options", reason=tr(err.reason, ctx.locale), origin=origin)


def _options(ctx: CommandContext, origin: str, line: str) -> Options:
    """The option line read; a reminder must say which kind it is."""
    kinds = REMIND_KIND_WORDS if origin == REMIND else NOTICE_KIND_WORDS
    try:
        opts = parse_options(line, kinds)
    except OptionError as err:
        raise _bad_options(ctx, origin, err) from None
    if origin == REMIND and opts.kind is None:
        missing = OptionError(
            {
                "zh_CN": "请写明提醒类型：节假日、天气预警 或 特殊时段",
                "en": "say which reminder: holiday, weather or special",
            }
        )
        raise _bad_options(ctx, origin, missing)
    return opts


async def _recipients(ctx: CommandContext, origin: str, flt: Filter) -> Resolution:
    """The enterprises the issuer reaches with ``origin`` that pass the filter; refuses when
    the filter names what is not there, or when nothing is left."""
    try:
        found = resolve(await _pool(ctx, origin), flt)
    except OptionError as err:
        raise _bad_options(ctx, origin, err) from None
    if not found.enterprises:
        raise UserError("notice_no_targets", origin=origin, filtered=not found.filter.empty)
    return found


async def _begin(ctx: CommandContext, origin: str) -> None:
    line, text = split_body(ctx)
    opts = _options(ctx, origin, line)
    found = await _recipients(ctx, origin, opts.filter)
    kind = opts.kind or N.REQUIREMENT
    data: dict[str, Any] = {
        "origin": origin,
        "kind": kind,
        "within": opts.within_hours or default_within_hours(ctx.services.config, kind),
        "filter": found.filter.as_dict(),
        "text": text,
        "attachments": [],
    }
    if text:
        await _prompt(ctx, data)
        await conversation.start(ctx, _CONVERSATIONS[origin], "confirm", data)
    else:
        ctx.reply("notice_ask_text", origin=origin, targets=len(found.enterprises))
        await conversation.start(ctx, _CONVERSATIONS[origin], "text", data)


async def _prompt(ctx: CommandContext, data: dict[str, Any]) -> None:
    found = await _recipients(ctx, data["origin"], Filter.from_dict(data["filter"]))
    p = await preview(ctx.session, found.enterprises, data["within"], ctx.room_id)
    ctx.reply(
        "notice_confirm",
        origin=data["origin"],
        kind=data["kind"],
        targets=p.targets,
        rooms=p.rooms,
        no_room=p.no_room,
        l2_rooms=p.l2_rooms,
        names=[e.name for e in found.enterprises[:PREVIEW_NAMES]],
        more=max(0, p.targets - PREVIEW_NAMES),
        deadline=p.deadline.astimezone(ctx.services.config.tz),
        within=data["within"],
        attachments=len(data["attachments"]),
        text=data["text"],
    )


# --- conversation steps --------------------------------------------------------------------------


def _attach(step: Step, msg: Incoming) -> None:
    files: list[dict[str, Any]] = step.data.setdefault("attachments", [])
    if len(files) >= MAX_ATTACHMENTS:
        step.reply("notice_attachment_limit", limit=MAX_ATTACHMENTS)
        return
    assert msg.media is not None
    if not is_mxc(msg.media.get("url")):
        step.reply("attachment_refused")  # it would be posted verbatim into every room
        return
    files.append(msg.media)
    step.reply(
        "notice_attachment_added",
        count=len(files),
        name=msg.media.get("name") or "",
        waiting_text=not step.data.get("text"),
    )


async def on_text(step: Step, msg: Incoming) -> None:
    if msg.is_media:
        _attach(step, msg)
        return
    if is_in(msg.text, CANCEL):
        step.end()
        step.reply("conversation_cancelled", name=step.data["origin"])
        return
    if not msg.text:
        step.reply("notice_ask_text", origin=step.data["origin"], targets=None)
        return
    step.data["text"] = msg.text
    step.goto("confirm")
    await _prompt(step.ctx, step.data)


async def on_confirm(step: Step, msg: Incoming) -> None:
    if msg.is_media:
        _attach(step, msg)
        return
    answer = confirmed(msg.text)
    if answer is False:
        step.end()
        step.reply("conversation_cancelled", name=step.data["origin"])
    elif answer:
        step.end()
        await _send(step.ctx, step.data)
    else:
        step.reply("notice_confirm_reask")


for _conv in _CONVERSATIONS.values():
    _conv.step("text")(on_text)
    _conv.step("confirm")(on_confirm)
del _conv  # the app collects Conversation objects from module names: list each once


async def _send(ctx: CommandContext, data: dict[str, Any]) -> None:
    origin = data["origin"]
    try:
        # Resolved again: the roster may have changed while the issuer was typing.
        found = await _recipients(ctx, origin, Filter.from_dict(data["filter"]))
    except UserError as refusal:
        # Answered here, not rolled back: the conversation is over either way.
        ctx.reply(refusal.template, **refusal.values)
        return
    role, where = _issuer_role(origin, ctx.identity)
    draft = Draft(
        origin=origin,
        kind=data["kind"],
        text=data["text"],
        within_hours=int(data["within"]),
        issuer=ctx.sender,
        issuer_name=ctx.identity.display_name,
        issuer_role=role,
        issuer_where=where,
        issuer_room=ctx.room_id,
        locale=ctx.locale,
        filter=data["filter"],
        attachments=list(data.get("attachments") or []),
    )
    done = await publish(ctx.session, ctx.services, draft, found.enterprises)
    ctx.reply(
        "notice_sent",
        code=done.notice.code,
        kind=draft.kind,
        targets=done.notice.target_count,
        posted=done.posted,
        no_room=done.no_room,
        l2_copies=done.l2_copies,
        deadline=done.notice.deadline.astimezone(ctx.services.config.tz),
        progress=done.posted >= ctx.services.config.timing.notices.progress_min_rooms,
    )

"""/escalate (/上报), /take (/受理), /resolve (/解决): problems raised up the grid."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot import conversation
from bot.commands import Arg, Handler, Text, command
from bot.context import CommandContext
from bot.conversation import TEXT, Conversation, Incoming, Step
from bot.words import normalize
from handlers.cases import request_rules
from handlers.cases.actors import Actor, acknowledge, actor_of, case_in_reach, parse_case_code
from handlers.cases.refusals import CaseError, end_refused
from handlers.cases.report_enterprise import enterprise_here
from handlers.cases.threads import CaseThreads
from handlers.visits.followup import is_visit_code, problem_text, visit_to_follow
from storage import cases
from storage.cases import REQUEST, CaseRequest
from storage.directory import ENTERPRISE_STAFF, L1_ROLES, L2_STAFF, Capacity, own_enterprises
from storage.models import Enterprise

# Who takes and resolves requests: the level-2 and level-1 grids (not admins: no level holds).
HANDLERS = L2_STAFF | L1_ROLES

raise_conv = Conversation("escalate", TEXT("text"))

# Replies in a request's thread that act on it.
REPLY_WORDS = {
    "受理": "take",
    "take": "take",
    "解决": "resolve",
    "已解决": "resolve",
    "resolve": "resolve",
    "上报": "escalate",
    "转上级": "escalate",
    "escalate": "escalate",
}

_CODE_ARG = Arg({"zh_CN": "编号", "en": "id"}, key="code")


@command(
    "escalate",
    aliases=("上报",),
    summary={
        "zh_CN": "向网格员反映问题诉求，或把诉求转交上一级",
        "en": "raise a problem to your grid member, or pass a request up",
    },
    details={
        "zh_CN": (
            "企业：/上报 问题描述（不带描述则逐步填写），由服务本企业的二级网格员受理；"
            "二级网格员在企业群中 /上报 问题 则直接报二级网格。\n"
            "转交上一级：/上报 E-2026-0001 [说明]"
            "（网格员 → 二级网格办公室/网格长 → 一级网格长）。\n"
            "每一级有受理时限，超时无人受理会自动上报，并告知提出人。"
        ),
        "en": (
            "Enterprise: /escalate <problem> (or step by step), answered by its level-2 member. "
            "Pass up: /escalate E-2026-0001 [note] (member → level-2 office/chief → level-1 "
            "chief). Each level has a deadline; untaken requests go up by themselves."
        ),
    },
    args=(
        Arg({"zh_CN": "问题或编号", "en": "problem or id"}, required=False, rest=True, key="text"),
    ),
    roles=ENTERPRISE_STAFF | L2_STAFF,
)
async def escalate_command(ctx: CommandContext) -> None:
    text = (ctx.args.get("text") or "").strip()
    first, _, rest = text.partition(" ")
    if text and is_visit_code(first):
        visit, ent = await visit_to_follow(ctx, first)
        await _raise(ctx, (ent, "level2"), problem_text(ctx, visit))
        return
    code = cases.parse_code(first) if text else None
    if code is not None:
        await act(ctx, code, "escalate", rest.strip())
        return
    target = await raise_target(ctx)
    if not text:
        await conversation.start(ctx, raise_conv, "text", {})
        ctx.reply("request_ask", enterprise=target[0].name)
        return
    await _raise(ctx, target, text)


def request_step_command(
    action: str, alias: str, *, summary: Text, details: Text, note: Arg | None = None
) -> Handler:
    """/take or /resolve: a step on the request whose code follows (then ``note``, if the
    step takes one), by those who handle requests."""

    async def take_step(ctx: CommandContext) -> None:
        code = parse_case_code(ctx.args["code"], REQUEST)
        await act(ctx, code, action, ctx.args.get("note") or "")

    take_step.__name__ = take_step.__qualname__ = f"{action}_command"
    args = (_CODE_ARG,) if note is None else (_CODE_ARG, note)
    return command(
        action, aliases=(alias,), summary=summary, details=details, args=args, roles=HANDLERS
    )(take_step)


take_command = request_step_command(
    "take",
    "受理",
    summary={"zh_CN": "受理一条问题诉求", "en": "take a request"},
    details={
        "zh_CN": "例如 /受理 E-2026-0001。由诉求当前所在层级的人员受理，受理后不再自动上报。",
        "en": "e.g. /take E-2026-0001, by someone at the request's current level.",
    },
)
resolve_command = request_step_command(
    "resolve",
    "解决",
    note=Arg({"zh_CN": "处理结果", "en": "answer"}, rest=True, key="note"),
    summary={"zh_CN": "答复并办结一条问题诉求", "en": "resolve a request with an answer"},
    details={
        "zh_CN": "例如 /解决 E-2026-0001 已协调交警在路口增设警示标志。",
        "en": "e.g. /resolve E-2026-0001 warning signs added with the traffic police.",
    },
)


Rule = Callable[[CaseThreads, Actor, Capacity, CaseRequest, str], Awaitable[None]]
STEPS: dict[str, Rule] = {
    "take": request_rules.take,
    "resolve": request_rules.resolve,
    "escalate": request_rules.pass_up,
}


async def act(ctx: CommandContext, code: str, action: str, note: str) -> None:
    if cases.kind_of(code) != REQUEST:
        raise CaseError("wrong_kind", code, REQUEST)
    req, _, cap = await case_in_reach(ctx, code, CaseRequest)
    actor = await actor_of(ctx, code)
    await STEPS[action](CaseThreads(ctx), actor, cap, req, note)
    acknowledge(ctx.reply, actor, code, REQUEST, action, req.state)


async def raise_target(ctx: CommandContext) -> tuple[Enterprise, str]:
    """Which enterprise a new request is for, and the level it starts at (CaseError if none)."""
    ident = ctx.identity
    own = own_enterprises(ident)
    if own:
        ent = await enterprise_here(ctx, own)
        if ent is not None:
            return ent, "member"
    elif ident.served:
        ent = await enterprise_here(ctx, list(ident.served))
        if ent is not None:
            return ent, "level2"
    raise CaseError("raise_where", "", REQUEST)


async def _raise(ctx: CommandContext, target: tuple[Enterprise, str], text: str) -> None:
    ent, level = target
    actor = await actor_of(ctx)
    req = await request_rules.raise_request(CaseThreads(ctx), actor, ent.id, text, level)
    if await cases.home_room(ctx.session, req.code) != ctx.room_id:
        ctx.reply("request_raised", r=req, enterprise=ent.name, tz=ctx.services.config.tz)


@raise_conv.step("text")
async def ask_text(step: Step, msg: Incoming) -> None:
    ctx = step.ctx
    if not msg.text:
        step.reply("request_ask", enterprise="")
        return
    try:
        target = await raise_target(ctx)
    except CaseError as refusal:
        end_refused(step, refusal)  # the sender's roles changed meanwhile
        return
    step.end()
    await _raise(ctx, target, msg.text)


async def on_reply(ctx: CommandContext, code: str, text: str) -> bool:
    """A reply in a request's thread: 受理 / 解决 答复 / 上报 [说明]; other chat is ignored."""
    word, _, rest = " ".join(text.split()).partition(" ")
    action = REPLY_WORDS.get(normalize(word))
    if action is None:
        return False
    await act(ctx, code, action, rest)
    return True

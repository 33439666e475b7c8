"""/accident (/事故): report an accident step by step; it is relayed up at once. Follow-ups with
/accident A-… update … (续报) or as a reply in its thread."""

from __future__ import annotations

from typing import Any

from bot import conversation
from bot.commands import Arg, command
from bot.context import CommandContext
from bot.conversation import (
    CHOICE,
    NUMBER,
    PHOTO,
    TEXT,
    TIME,
    Ask,
    Conversation,
    Incoming,
    Step,
    text_step,
)
from bot.words import FINISHED, choose, is_in, normalize
from handlers.cases import accident_rules, history
from handlers.cases.accident_parsing import parse_casualties, parse_when
from handlers.cases.support import (
    Poster,
    Refusal,
    actor_of,
    enterprise_or_ask,
    home_room,
    now_local,
    photo_of,
    pick_option,
    refuse,
    related_event_ids,
    reportable,
    visible_case,
)
from storage import cases
from storage.cases import ACCIDENT, Accident
from storage.directory import GRID_STAFF
from storage.hazard_categories import ACCIDENT_TYPES, OTHER

UPDATE_WORDS = ("update", "续报", "更新")

# The enterprise is asked only when the room does not say it: the questions count 1/7 … 7/7.
report_conv = Conversation(
    "accident",
    steps=[
        Ask("enterprise", CHOICE, counted=False),
        Ask("time", TIME),
        Ask("place", TEXT),
        Ask("type", CHOICE),
        Ask("casualties", NUMBER),
        Ask("vehicles", TEXT),
        Ask("account", TEXT),
        Ask("photos", PHOTO),
    ],
)


@command(
    "accident",
    aliases=("事故",),
    summary={"zh_CN": "快报生产安全事故，或续报", "en": "report an accident, or follow one up"},
    details={
        "zh_CN": (
            "不带参数：逐步填写事故快报（时间、地点、类型、伤亡、车辆船舶、简要经过、照片），"
            "提交后立即报送二级网格员、二级网格长、一级网格长和办公室。\n"
            "续报：/事故 A-2026-0001 续报 内容，或在事故话题中回复“续报 内容”。\n"
            "/事故 A-2026-0001 查看详情与记录。"
        ),
        "en": (
            "Without arguments: report an accident step by step (time, place, type, casualties, "
            "vehicles or vessels, account, photos); it is relayed to every level at once. "
            "Follow-up: /accident A-2026-0001 update <text>, or reply 续报 <text> in its thread."
        ),
    },
    args=(
        Arg({"zh_CN": "编号 续报内容", "en": "id update"}, required=False, rest=True, key="text"),
    ),
    roles=GRID_STAFF,
)
async def accident_command(ctx: CommandContext) -> None:
    text = (ctx.args.get("text") or "").strip()
    if not text:
        await start_report(ctx)
        return
    first, _, rest = text.partition(" ")
    code = cases.parse_code(first)
    if code is None:
        code = await cases.code_for_event(ctx.session, related_event_ids(ctx))
        if code is None or cases.kind_of(code) != ACCIDENT:
            refuse(ctx.reply, "need_code", "", ACCIDENT)
            return
        rest = text
    elif cases.kind_of(code) != ACCIDENT:
        refuse(ctx.reply, "wrong_kind", code, ACCIDENT)
        return
    rest = rest.strip()
    if not rest:
        await history.show(ctx, code)
        return
    word, _, body = rest.partition(" ")
    if normalize(word) not in UPDATE_WORDS:
        refuse(ctx.reply, "unknown_action", code, ACCIDENT, text=rest)
        return
    await update(ctx, code, body.strip())


async def update(ctx: CommandContext, code: str, text: str) -> None:
    found = await visible_case(ctx, code, ACCIDENT, Accident)
    if found is None:
        return
    acc, _, st = found
    actor = await actor_of(ctx, code)
    try:
        await accident_rules.update(Poster.of(ctx), actor, st, acc, text)
    except Refusal as refusal:
        refuse(ctx.reply, refusal.reason, code, ACCIDENT, **refusal.values)
        return
    if not actor.in_thread:
        ctx.reply("case_ack", code=code, kind=ACCIDENT, action="update", status=acc.status)


async def on_reply(ctx: CommandContext, code: str, text: str) -> bool:
    """'续报 …' in an accident's thread is a follow-up; other chat is ignored."""
    word, _, body = " ".join(text.split()).partition(" ")
    if normalize(word) not in UPDATE_WORDS:
        return False
    await update(ctx, code, body)
    return True


# --- the report conversation --------------------------------------------------------------------


async def start_report(ctx: CommandContext) -> None:
    ent = await enterprise_or_ask(ctx, report_conv, ACCIDENT, "accident_ask")
    if ent is None:
        return
    await conversation.start(
        ctx, report_conv, "time", {"enterprise_id": ent.id, "enterprise": ent.name}
    )
    progress = report_conv.progress("time")
    ctx.reply("accident_ask", step="time", again=False, enterprise=ent.name, progress=progress)


def _ask(step: Step, name: str, again: bool = False, **values: Any) -> None:
    step.ask(name, "accident_ask", step=name, again=again, **values)


@report_conv.step("enterprise")
async def pick_enterprise(step: Step, msg: Incoming) -> None:
    chosen = pick_option(step.data["options"], msg.text)
    if chosen is None:
        _ask(step, "enterprise", again=True, options=step.data["options"])
        return
    step.data = {"enterprise_id": chosen[0], "enterprise": chosen[1]}
    _ask(step, "time", enterprise=chosen[1])


@report_conv.step("time")
async def ask_time(step: Step, msg: Incoming) -> None:
    when = parse_when(msg.text, now_local(step.ctx.services))
    if when is None:
        _ask(step, "time", again=True, enterprise=step.data["enterprise"])
        return
    step.data["occurred_at"] = when.isoformat()
    _ask(step, "place")


@report_conv.step("place")
async def ask_place(step: Step, msg: Incoming) -> None:
    if not msg.text:
        _ask(step, "place", again=True)
        return
    step.data["place"] = msg.text
    _ask(step, "type", types=list(ACCIDENT_TYPES))


@report_conv.step("type")
async def ask_type(step: Step, msg: Incoming) -> None:
    index = choose(ACCIDENT_TYPES, msg.text).one
    chosen = ACCIDENT_TYPES[index] if index is not None else None
    text = msg.text
    if chosen is None and text.startswith(OTHER) and len(text) > len(OTHER):
        chosen = f"{OTHER}：{text[len(OTHER) :].strip(' :：')}"
    if chosen is None:
        _ask(step, "type", again=True, types=list(ACCIDENT_TYPES))
        return
    step.data["type"] = chosen
    _ask(step, "casualties")


@report_conv.step("casualties")
async def ask_casualties(step: Step, msg: Incoming) -> None:
    counts = parse_casualties(msg.text)
    if counts is None:
        _ask(step, "casualties", again=True)
        return
    step.data["dead"], step.data["injured"], step.data["missing"] = counts
    _ask(step, "vehicles")


text_step(report_conv, "vehicles", key="vehicles", then="account", ask=_ask)


@report_conv.step("account")
async def ask_account(step: Step, msg: Incoming) -> None:
    if not msg.text:
        _ask(step, "account", again=True)
        return
    step.data["account"] = msg.text
    step.data["photos"] = []
    _ask(step, "photos")


@report_conv.step("photos")
async def ask_photos(step: Step, msg: Incoming) -> None:
    ctx = step.ctx
    photo = photo_of(msg, ctx.sender)
    if photo is not None:
        step.data["photos"].append(photo)
        step.reply("case_photo_received", count=len(step.data["photos"]))
        return
    if not is_in(msg.text, FINISHED):
        _ask(step, "photos", again=True)
        return
    options = await reportable(ctx)
    step.end()
    if all(e.id != step.data["enterprise_id"] for e in options):
        refuse(step.reply, "no_enterprise", "", ACCIDENT)
        return
    actor = await actor_of(ctx)
    acc, missing = await accident_rules.report(
        Poster.of(ctx), actor, ctx.services.config, step.data["enterprise_id"], step.data
    )
    home = await home_room(ctx.session, acc.code)
    if home != ctx.room_id or missing:
        step.reply(
            "accident_reported",
            a=acc,
            enterprise=step.data["enterprise"],
            missing=missing,
            elsewhere=home != ctx.room_id,
        )

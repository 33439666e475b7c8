"""/hazard (/隐患): report a hazard step by step, or act on one by its id (or in its thread)."""

from __future__ import annotations

import re
from typing import Any

from bot import conversation
from bot.commands import Arg, command
from bot.context import CommandContext
from bot.conversation import (
    CHOICE,
    DATE,
    PHOTO,
    TEXT,
    Ask,
    Conversation,
    Incoming,
    Step,
    text_step,
)
from bot.words import FINISHED, choose, future_day, is_in, visible, which
from handlers.cases import hazard_rules, history
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
)
from handlers.visits.followup import is_visit_code, problem_text, visit_to_follow
from storage import cases
from storage.cases import HAZARD, Hazard
from storage.directory import GRID_STAFF, standing
from storage.hazard_categories import OTHER, categories_for
from storage.models import Enterprise, Grid

# Words that name a step, in commands and as replies in a hazard's thread (longest first).
ACTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "verify_fail",
        ("复查不通过", "复查未通过", "复查 不通过", "验收不通过", "不通过", "verify fail", "fail"),
    ),
    ("verify_pass", ("复查通过", "复查 通过", "验收通过", "通过", "verify pass", "pass")),
    ("confirm", ("确认", "confirm")),
    ("submit", ("整改完成", "已整改", "提交", "submit")),
    ("close", ("销号", "close")),
    ("supervise", ("挂牌督办", "督办", "supervise")),
)
# What may follow the step's word: "确认！", "复查不通过，原因", or nothing.
_PUNCT = ":：,，。;；!！~～、."
_SEP = rf"(?:$|[\s{re.escape(_PUNCT)}])"
_ACTION_RES = sorted(
    ((re.compile(re.escape(w) + _SEP, re.IGNORECASE), a) for a, ws in ACTIONS for w in ws),
    key=lambda p: -len(p[0].pattern),
)
# The enterprise is asked only when the room does not say it, so the questions count 1/9 … 9/9
# from "what" (a report from a visit starts at 2/9: the description is the visit's).
report_conv = Conversation(
    "hazard",
    steps=[
        Ask("enterprise", CHOICE, counted=False),
        Ask("what", TEXT),
        Ask("where", TEXT),
        Ask("category", CHOICE),
        Ask("grade", CHOICE),
        Ask("photos", PHOTO),
        Ask("measures", TEXT),
        Ask("plan", TEXT),
        Ask("responsible", TEXT),
        Ask("deadline", DATE),
    ],
)
submit_conv = Conversation("hazard_submit", steps=[Ask("photos", PHOTO)])


def parse_action(text: str) -> tuple[str, str] | None:
    """'复查不通过，仍有堆放' → ('verify_fail', '仍有堆放'); None if no step is named."""
    t = " ".join(visible(text).split())
    for pattern, action in _ACTION_RES:
        m = pattern.match(t)
        if m:
            return action, t[m.end() :].strip(" " + _PUNCT)
    return None


@command(
    "hazard",
    aliases=("隐患",),
    summary={"zh_CN": "上报隐患，或办理某条隐患", "en": "report a hazard, or act on one"},
    details={
        "zh_CN": (
            "不带参数：逐步上报隐患（内容、位置、类别、等级、照片、临时措施、整改措施、责任人、"
            "整改期限）。\n"
            "/隐患 V-2026-0001 把走访发现的问题作为隐患上报\n"
            "/隐患 H-2026-0001 查看详情与记录\n"
            "/隐患 H-2026-0001 确认 [一般|重大] [期限]（二级网格员确认等级和期限）\n"
            "/隐患 H-2026-0001 整改完成 [说明]（企业提交，随后发送整改后照片）\n"
            "/隐患 H-2026-0001 复查通过 / 复查不通过 [新期限] 原因（二级网格员复查）\n"
            "/隐患 H-2026-0001 销号（重大隐患复查通过后，由二级或一级网格长销号）\n"
            "/隐患 H-2026-0001 督办（二级或一级网格长挂牌督办）\n"
            "在隐患话题里直接回复“确认”“整改完成”“复查通过”“复查不通过 原因”“销号”“督办”也可以。"
        ),
        "en": (
            "Without arguments: report a hazard step by step. With an id: /hazard H-2026-0001 "
            "shows it; confirm [general|major] [deadline] (level-2 member); submit [note] "
            "(enterprise, then photos); verify pass | verify fail [new deadline] reason "
            "(member); close (a chief, for a verified major hazard); supervise (a chief). "
            "Replies in the hazard's thread work too: 确认, 整改完成, 复查通过, 复查不通过 …"
        ),
    },
    args=(Arg({"zh_CN": "编号 操作", "en": "id action"}, required=False, rest=True, key="text"),),
    roles=GRID_STAFF,
)
async def hazard_command(ctx: CommandContext) -> None:
    text = (ctx.args.get("text") or "").strip()
    if not text:
        await start_report(ctx)
        return
    first, _, rest = text.partition(" ")
    if is_visit_code(first):
        await start_from_visit(ctx, first)
        return
    code = cases.parse_code(first)
    if code is None:
        # A step typed in a hazard's thread needs no id.
        code = await cases.code_for_event(ctx.session, related_event_ids(ctx))
        if code is None or cases.kind_of(code) != HAZARD:
            refuse(ctx.reply, "need_code", "", HAZARD)
            return
        rest = text
    elif cases.kind_of(code) != HAZARD:
        refuse(ctx.reply, "wrong_kind", code, HAZARD)
        return
    await act(ctx, code, rest.strip())


async def act(ctx: CommandContext, code: str, text: str, *, from_reply: bool = False) -> bool:
    """Run one step on a hazard for the sender; False if text names no step (replies only)."""
    hazard = await hazard_rules.session_hazard(ctx.session, code)
    if hazard is None:
        refuse(ctx.reply, "not_found", code, HAZARD)
        return True
    ent = await ctx.session.get(Enterprise, hazard.enterprise_id)
    assert ent is not None
    st = await standing(ctx.session, ctx.identity, ent)
    parsed = parse_action(text) if text else None
    if from_reply and parsed is None:
        return False
    if not st.sees:
        refuse(ctx.reply, "out_of_scope", code, HAZARD)
        return True
    if not text:
        await history.show(ctx, code)
        return True
    if parsed is None:
        refuse(ctx.reply, "unknown_action", code, HAZARD, text=text)
        return True
    action, rest = parsed
    actor = await actor_of(ctx, code)
    poster = Poster.of(ctx)
    config = ctx.services.config
    try:
        if action == "confirm":
            await hazard_rules.confirm(poster, actor, st, config, hazard, rest)
        elif action == "submit":
            await start_submit(ctx, hazard, st.ent_staff, rest)
            return True
        elif action in ("verify_pass", "verify_fail"):
            await hazard_rules.verify(
                poster, actor, st, config, hazard, action == "verify_pass", rest
            )
        elif action == "close":
            await hazard_rules.close(poster, actor, st, hazard, rest)
        else:
            await hazard_rules.supervise(poster, actor, st, hazard, rest)
    except Refusal as refusal:
        refuse(ctx.reply, refusal.reason, code, HAZARD, **refusal.values)
        return True
    if not actor.in_thread:
        ctx.reply("case_ack", code=code, kind=HAZARD, action=action, status=hazard.status)
    return True


# --- reporting ----------------------------------------------------------------------------------


async def start_report(ctx: CommandContext) -> None:
    ent = await enterprise_or_ask(ctx, report_conv, HAZARD, "hazard_ask")
    if ent is None:
        return
    data = await _enterprise_data(ctx, ent)
    await conversation.start(ctx, report_conv, "what", data)
    ctx.reply(
        "hazard_ask",
        step="what",
        again=False,
        enterprise=ent.name,
        progress=report_conv.progress("what"),
    )


async def start_from_visit(ctx: CommandContext, code: str) -> None:
    """/hazard V-…: report what a visit found; the description is taken from the visit."""
    found = await visit_to_follow(ctx, code)
    if found is None:
        return
    visit, ent = found
    data = await _enterprise_data(ctx, ent)
    data["description"] = problem_text(ctx, visit)
    await conversation.start(ctx, report_conv, "where", data)
    ctx.reply("hazard_ask", step="where", again=False, progress=report_conv.progress("where"))


async def _enterprise_data(ctx: CommandContext, ent: Enterprise) -> dict[str, Any]:
    grid = await ctx.session.get(Grid, ent.grid_id)
    categories = categories_for(ent.type, grid.domain if grid else "")
    return {"enterprise_id": ent.id, "enterprise": ent.name, "categories": list(categories)}


def _ask(step: Step, name: str, again: bool = False, **values: Any) -> None:
    step.ask(name, "hazard_ask", step=name, again=again, **values)


@report_conv.step("enterprise")
async def pick_enterprise(step: Step, msg: Incoming) -> None:
    chosen = pick_option(step.data["options"], msg.text)
    if chosen is None:
        _ask(step, "enterprise", again=True, options=step.data["options"])
        return
    ent = await step.ctx.session.get(Enterprise, chosen[0])
    assert ent is not None
    step.data = await _enterprise_data(step.ctx, ent)
    _ask(step, "what", enterprise=ent.name)


@report_conv.step("what")
async def ask_what(step: Step, msg: Incoming) -> None:
    if not msg.text:
        _ask(step, "what", again=True, enterprise=step.data["enterprise"])
        return
    step.data["description"] = msg.text
    _ask(step, "where")


@report_conv.step("where")
async def ask_where(step: Step, msg: Incoming) -> None:
    if not msg.text:
        _ask(step, "where", again=True)
        return
    step.data["location"] = msg.text
    _ask(step, "category", categories=step.data["categories"])


@report_conv.step("category")
async def ask_category(step: Step, msg: Incoming) -> None:
    options = tuple(step.data["categories"])
    text = msg.text
    index = choose(options, text).one
    chosen = options[index] if index is not None else None
    if chosen is None and text.startswith(OTHER) and len(text) > len(OTHER):
        chosen = f"{OTHER}：{text[len(OTHER) :].strip(' :：')}"
    if chosen is None:
        _ask(step, "category", again=True, categories=list(options))
        return
    step.data["category"] = chosen
    _ask(step, "grade")


@report_conv.step("grade")
async def ask_grade(step: Step, msg: Incoming) -> None:
    # "1"/"2" as numbered in the question, or the grade's words (一般, 重大隐患 …).
    grade = which(msg.text, hazard_rules.GRADE_WORDS, numbered=True)
    if grade is None:
        _ask(step, "grade", again=True)
        return
    step.data["grade"] = grade
    step.data["photos"] = []
    _ask(step, "photos")


@report_conv.step("photos")
async def ask_photos(step: Step, msg: Incoming) -> None:
    photo = photo_of(msg, step.ctx.sender)
    if photo is not None:
        step.data["photos"].append(photo)
        step.reply("case_photo_received", count=len(step.data["photos"]))
        return
    if is_in(msg.text, FINISHED):
        _ask(step, "measures")
        return
    _ask(step, "photos", again=True)


text_step(report_conv, "measures", key="measures", then="plan", ask=_ask)


text_step(report_conv, "plan", key="plan", then="responsible", ask=_ask)


text_step(report_conv, "responsible", key="responsible", then="deadline", ask=_ask)


@report_conv.step("deadline")
async def ask_deadline(step: Step, msg: Incoming) -> None:
    ctx = step.ctx
    today = now_local(ctx.services).date()
    day, error = future_day(msg.text, today) if msg.text else (None, "unreadable")
    if error is not None or day is None:
        _ask(step, "deadline", again=True, past=error == "past")
        return
    options = await reportable(ctx)
    if all(e.id != step.data["enterprise_id"] for e in options):
        step.end()  # roles changed meanwhile
        refuse(step.reply, "no_enterprise", "", HAZARD)
        return
    actor = await actor_of(ctx)
    hazard, missing = await hazard_rules.report(
        Poster.of(ctx),
        actor,
        ctx.services.config,
        step.data["enterprise_id"],
        {**step.data, "deadline": day},
    )
    step.end()
    home = await home_room(ctx.session, hazard.code)
    if home != ctx.room_id or missing:
        step.reply(
            "hazard_reported",
            h=hazard,
            enterprise=step.data["enterprise"],
            missing=missing,
            elsewhere=home != ctx.room_id,
        )


# --- submitting the rectification ---------------------------------------------------------------


async def start_submit(ctx: CommandContext, hazard: Hazard, ent_staff: bool, note: str) -> None:
    """Check the enterprise may submit now, then collect the after-photos in a conversation."""
    if not ent_staff:
        refuse(ctx.reply, "not_allowed", hazard.code, HAZARD, action="submit", who="ent_staff")
        return
    if hazard.status in (cases.H_REPORTED, cases.H_CONFIRMED):
        refuse(ctx.reply, "not_confirmed", hazard.code, HAZARD)
        return
    if hazard.status != cases.H_RECTIFYING:
        refuse(ctx.reply, "bad_state", hazard.code, HAZARD, action="submit", status=hazard.status)
        return
    data = {"code": hazard.code, "note": note, "photos": []}
    await conversation.start(ctx, submit_conv, "photos", data)
    ctx.reply("hazard_submit_ask", code=hazard.code, again=False)


@submit_conv.step("photos")
async def submit_photos(step: Step, msg: Incoming) -> None:
    ctx = step.ctx
    photo = photo_of(msg, ctx.sender)
    if photo is not None:
        step.data["photos"].append(photo)
        step.reply("case_photo_received", count=len(step.data["photos"]))
        return
    code = step.data["code"]
    if not is_in(msg.text, FINISHED) or not step.data["photos"]:
        step.reply("hazard_submit_ask", code=code, again=True)
        return
    step.end()
    hazard = await hazard_rules.session_hazard(ctx.session, code)
    assert hazard is not None
    ent = await ctx.session.get(Enterprise, hazard.enterprise_id)
    assert ent is not None
    st = await standing(ctx.session, ctx.identity, ent)
    actor = await actor_of(ctx, code)
    try:
        await hazard_rules.submit(
            Poster.of(ctx), actor, st, hazard, step.data["photos"], step.data["note"]
        )
    except Refusal as refusal:
        refuse(step.reply, refusal.reason, code, HAZARD, **refusal.values)
        return
    if not actor.in_thread:
        step.reply("case_ack", code=code, kind=HAZARD, action="submit", status=hazard.status)

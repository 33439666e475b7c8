"""/hazard (/隐患): report a hazard step by step, or act on one by its id (or in its thread)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from bot import conversation
from bot.context import CommandContext
from bot.conversation import CHOICE, DATE, PHOTO, TEXT, Conversation, Incoming, Step
from bot.dates import today
from bot.words import FINISHED, future_day, is_in, visible, which
from handlers.cases import hazard_rules, history
from handlers.cases.actors import Actor, acknowledge, actor_of, case_in_reach, case_meant
from handlers.cases.refusals import CaseError, end_refused
from handlers.cases.report_flow import ReportFlow, took_evidence
from handlers.cases.threads import CaseThreads
from handlers.visits.followup import is_visit_code, problem_text, visit_to_follow
from storage.cases import HAZARD, Hazard
from storage.directory import Capacity
from storage.hazard_categories import categories_of

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
    CHOICE("enterprise", counted=False, options="options"),
    TEXT("what", "where"),
    CHOICE("category", options="categories"),
    CHOICE("grade", options=len(hazard_rules.GRADE_WORDS)),
    PHOTO("photos"),
    TEXT("measures", "plan", "responsible"),
    DATE("deadline"),
)
submit_conv = Conversation("hazard_submit", PHOTO("photos"))


def parse_action(text: str) -> tuple[str, str] | None:
    """'复查不通过，仍有堆放' → ('verify_fail', '仍有堆放'); None if no step is named."""
    t = " ".join(visible(text).split())
    for pattern, action in _ACTION_RES:
        m = pattern.match(t)
        if m:
            return action, t[m.end() :].strip(" " + _PUNCT)
    return None


async def _categories(ctx: CommandContext, enterprise_id: int) -> dict[str, Any]:
    return {"categories": list(await categories_of(ctx.session, enterprise_id))}


report = ReportFlow(report_conv, HAZARD, file=hazard_rules.report, extras=_categories)


async def _named(ctx: CommandContext, text: str) -> None:
    """/hazard V-… reports what a visit found; /hazard H-… [step] shows or acts on a hazard (in
    a hazard's thread the id may be left out)."""
    first = text.partition(" ")[0]
    if is_visit_code(first):
        await start_from_visit(ctx, first)
        return
    code, rest = await case_meant(ctx, text, HAZARD)
    await act(ctx, code, rest)


hazard_command = report.command(
    "hazard",
    "隐患",
    arg={"zh_CN": "编号 操作", "en": "id action"},
    summary={"zh_CN": "上报隐患，或办理某条隐患", "en": "report a hazard, or act on one"},
    details={
        "zh_CN": (
            "不带参数：逐步上报隐患（内容、位置、类别、等级、照片（也可发语音和 PDF、Word、"
            "Excel、PPT 文件）、临时措施、整改措施、责任人、整改期限）。\n"
            "/隐患 V-2026-0001 把走访发现的问题作为隐患上报\n"
            "/隐患 H-2026-0001 查看详情与记录\n"
            "/隐患 H-2026-0001 确认 [一般|重大] [期限]（二级网格员确认等级和期限）\n"
            "/隐患 H-2026-0001 整改完成 [说明]（企业提交，随后发送整改后照片，可附语音和文件）\n"
            "/隐患 H-2026-0001 复查通过 / 复查不通过 [新期限] 原因（二级网格员复查）\n"
            "/隐患 H-2026-0001 销号（重大隐患复查通过后，由二级或一级网格长销号）\n"
            "/隐患 H-2026-0001 督办（二级或一级网格长挂牌督办）\n"
            "在隐患话题里直接回复“确认”“整改完成”“复查通过”“复查不通过 原因”“销号”“督办”也可以。"
        ),
        "en": (
            "Without arguments: report a hazard step by step (photos, voice notes and PDF, "
            "Word, Excel or PowerPoint files are kept as evidence). With an id: /hazard "
            "H-2026-0001 shows it; confirm [general|major] [deadline] (level-2 member); submit "
            "[note] (enterprise, then photos, voice notes, files); verify pass | verify fail "
            "[new deadline] reason (member); close (a chief, for a verified major hazard); "
            "supervise (a chief). Replies in the hazard's thread work too: 确认, 整改完成, "
            "复查通过, 复查不通过 …"
        ),
    },
    then=_named,
)


# The steps taken by a word (submitting collects photos first: see start_submit).
Rule = Callable[[CaseThreads, Actor, Capacity, Hazard, str], Awaitable[None]]
STEPS: dict[str, Rule] = {
    "confirm": hazard_rules.confirm,
    "verify_pass": hazard_rules.verify_pass,
    "verify_fail": hazard_rules.verify_fail,
    "close": hazard_rules.close,
    "supervise": hazard_rules.supervise,
}


async def act(ctx: CommandContext, code: str, text: str, *, from_reply: bool = False) -> bool:
    """Run one step on a hazard for the sender; False if a reply in its thread names no step
    (it is chat, left alone)."""
    parsed = parse_action(text) if text else None
    if from_reply and parsed is None:
        return False
    if not text:
        await history.show(ctx, code)
        return True
    hazard, _, cap = await case_in_reach(ctx, code, Hazard)
    if parsed is None:
        raise CaseError("unknown_action", code, HAZARD, text=text)
    action, rest = parsed
    if action == "submit":
        await start_submit(ctx, hazard, cap, rest)
        return True
    actor = await actor_of(ctx, code)
    await STEPS[action](CaseThreads(ctx), actor, cap, hazard, rest)
    acknowledge(ctx.reply, actor, code, HAZARD, action, hazard.status)
    return True


# --- the report's own questions ----------------------------------------------------------------


report.text("what", key="description", then="where")
report.text("where", key="location", then="category", place=True)
report.choice("category", key="category", listed="categories", then="grade")


@report_conv.step("grade")
async def ask_grade(step: Step, msg: Incoming) -> None:
    # "1"/"2" as numbered in the question, or the grade's words (一般, 重大隐患 …).
    grade = which(msg.text, hazard_rules.GRADE_WORDS, numbered=True)
    if grade is None:
        report.ask(step, "grade", again=True)
        return
    step.data["grade"] = grade
    report.ask(step, "photos")


report.photos("photos", then="measures")
report.text("measures", key="measures", then="plan")
report.text("plan", key="plan", then="responsible")
report.text("responsible", key="responsible", then="deadline")


@report_conv.step("deadline")
async def ask_deadline(step: Step, msg: Incoming) -> None:
    day, error = future_day(msg.text, today(step.ctx.services.config.tz))
    if error is not None or day is None:
        report.ask(step, "deadline", again=True, past=error == "past")
        return
    await report.finish(step, {**step.data, "deadline": day})


async def start_from_visit(ctx: CommandContext, code: str) -> None:
    """/hazard V-…: report what a visit found; the description is taken from the visit."""
    visit, ent = await visit_to_follow(ctx, code)
    description = problem_text(ctx, visit)
    await report.start_at(ctx, ent.id, ent.name, "where", description=description)


# --- submitting the rectification ---------------------------------------------------------------


async def start_submit(ctx: CommandContext, hazard: Hazard, cap: Capacity, note: str) -> None:
    """Check the enterprise may submit now, then collect the after-photos (and any voice notes
    or documents) in a conversation."""
    hazard_rules.check_submit(cap, hazard)
    data = {"code": hazard.code, "note": note, "photos": [], "files": []}
    await conversation.start(ctx, submit_conv, "photos", data)
    ctx.reply("hazard_submit_ask", code=hazard.code, again=False)


@submit_conv.step("photos")
async def submit_photos(step: Step, msg: Incoming) -> None:
    if took_evidence(step, msg):
        return
    code = step.data["code"]
    if not is_in(msg.text, FINISHED) or not step.data["photos"]:
        step.reply("hazard_submit_ask", code=code, again=True)
        return
    ctx = step.ctx
    try:
        hazard, _, cap = await case_in_reach(ctx, code, Hazard)
        actor = await actor_of(ctx, code)
        photos, note = step.data["photos"], step.data["note"]
        files = list(step.data.get("files") or [])
        await hazard_rules.submit(CaseThreads(ctx), actor, cap, hazard, photos, note, files)
    except CaseError as refusal:
        end_refused(step, refusal)  # e.g. submitted meanwhile by a colleague
        return
    step.end()
    acknowledge(step.reply, actor, code, HAZARD, "submit", hazard.status)

"""/accident (/事故): report an accident step by step; it is relayed up at once. Follow-ups with
/accident A-… update … (续报) or as a reply in its thread."""

from __future__ import annotations

from typing import Any

from bot.context import CommandContext
from bot.conversation import CHOICE, NUMBER, PHOTO, TEXT, TIME, Conversation, Incoming, Step
from bot.dates import now
from bot.words import normalize
from handlers.cases import accident_rules, history
from handlers.cases.accident_parsing import parse_casualties, parse_when
from handlers.cases.actors import acknowledge, actor_of, case_in_reach, case_meant
from handlers.cases.refusals import CaseError
from handlers.cases.report_flow import ReportFlow
from handlers.cases.threads import CaseThreads
from storage.cases import ACCIDENT, Accident
from storage.hazard_categories import ACCIDENT_TYPES

UPDATE_WORDS = ("update", "续报", "更新")

# The enterprise is asked only when the room does not say it: the questions count 1/7 … 7/7.
report_conv = Conversation(
    "accident",
    CHOICE("enterprise", counted=False, options="options"),
    TIME("time"),
    TEXT("place"),
    CHOICE("type", options="types"),
    NUMBER("casualties"),
    TEXT("vehicles", "account"),
    PHOTO("photos"),
)


async def _types(_ctx: CommandContext, _enterprise_id: int) -> dict[str, Any]:
    return {"types": list(ACCIDENT_TYPES)}


report = ReportFlow(report_conv, ACCIDENT, file=accident_rules.report, extras=_types)


async def _named(ctx: CommandContext, text: str) -> None:
    """/accident A-… shows an accident, /accident A-… 续报 … follows it up (in its thread the
    id may be left out)."""
    code, rest = await case_meant(ctx, text, ACCIDENT)
    if not rest:
        await history.show(ctx, code)
    elif not await on_reply(ctx, code, rest):
        raise CaseError("unknown_action", code, ACCIDENT, text=rest)


accident_command = report.command(
    "accident",
    "事故",
    arg={"zh_CN": "编号 续报内容", "en": "id update"},
    summary={"zh_CN": "快报生产安全事故，或续报", "en": "report an accident, or follow one up"},
    details={
        "zh_CN": (
            "不带参数：逐步填写事故快报（时间、地点、类型、伤亡、车辆船舶、简要经过、照片、语音或文件），"
            "提交后立即报送二级网格员、二级网格长、一级网格长和办公室。\n"
            "续报：/事故 A-2026-0001 续报 内容，或在事故话题中回复“续报 内容”。\n"
            "/事故 A-2026-0001 查看详情与记录。"
        ),
        "en": (
            "Without arguments: report an accident step by step (time, place, type, casualties, "
            "vehicles or vessels, account, photos, voice notes or files); it is relayed to every "
            "level at once. "
            "Follow-up: /accident A-2026-0001 update <text>, or reply 续报 <text> in its thread."
        ),
    },
    then=_named,
)


async def on_reply(ctx: CommandContext, code: str, text: str) -> bool:
    """'续报 …' (by command or in the accident's thread) is a follow-up; False for anything
    else (chat in the thread is left alone)."""
    word, *body = text.split(maxsplit=1)
    if normalize(word) not in UPDATE_WORDS:
        return False
    acc, _, cap = await case_in_reach(ctx, code, Accident)
    actor = await actor_of(ctx, code)
    await accident_rules.update(CaseThreads(ctx), actor, cap, acc, "".join(body))
    acknowledge(ctx.reply, actor, code, ACCIDENT, "update", acc.status)
    return True


# --- the report's own questions -----------------------------------------------------------------


@report_conv.step("time")
async def ask_time(step: Step, msg: Incoming) -> None:
    when = parse_when(msg.text, now(step.ctx.services.config.tz))
    if when is None:
        report.ask(step, "time", again=True)
        return
    step.data["occurred_at"] = when.isoformat()
    report.ask(step, "place")


report.text("place", key="place", then="type", place=True)
report.choice("type", key="type", listed="types", then="casualties")


@report_conv.step("casualties")
async def ask_casualties(step: Step, msg: Incoming) -> None:
    counts = parse_casualties(msg.text)
    if counts is None:
        report.ask(step, "casualties", again=True)
        return
    step.data["dead"], step.data["injured"], step.data["missing"] = counts
    report.ask(step, "vehicles")


report.text("vehicles", key="vehicles", then="account")
report.text("account", key="account", then="photos")
report.photos("photos")

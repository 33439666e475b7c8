"""/meeting (/会议) and /training (/培训): the quarterly safety meeting and grid-member training.

/meeting: a level-2 chief records the safety meeting (安全生产工作会议) of their grid: date,
attendees, topics, decisions and, optionally, the minutes as a file. The meeting counts for the
quarter of its date (see handlers/visits/reminders.py for the quarterly reminders).

/training: level-1 staff (chief, office) or an admin record a training: date, topic and who
attended; names are matched to roster people of the recorder's county where that is unambiguous.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from bot import conversation, dates
from bot.commands import DIRECT, GRID_ROOMS, command
from bot.context import CommandContext
from bot.conversation import CHOICE, CONFIRM, DATE, FILE, TEXT, Conversation, Incoming, Step
from bot.evidence import is_mxc
from bot.words import SKIP, choose, is_in, split_names
from handlers.visits.forms import first_open, take_confirmation, take_date, take_text
from storage.directory import L1_ROLES, L1_STAFF, Reach, held_grids, level2_grids_in
from storage.models import RoleKind
from storage.visits import (
    MEETING_PREFIX,
    TRAINING_PREFIX,
    Meeting,
    Training,
    TrainingAttendee,
    match_people,
    next_code,
)

# Each is asked in this order, skipping what is known (the grid of a chief with one grid);
# the summary last.
meeting_conv = Conversation(
    "meeting",
    CHOICE("grid", counted=False, options="choices"),
    DATE("date"),
    TEXT("attendees", "topics", "decisions"),
    FILE("minutes"),
    CONFIRM("confirm", counted=False),
)
training_conv = Conversation(
    "training", DATE("date"), TEXT("topic", "attendees"), CONFIRM("confirm", counted=False)
)
ROOMS = GRID_ROOMS | {DIRECT}


@command(
    "meeting",
    aliases=("会议",),
    summary={"zh_CN": "登记本季度安全生产工作会议", "en": "record the quarterly safety meeting"},
    details={
        "zh_CN": (
            "二级网格长每季度至少召开一次安全生产工作会议。按提示回答：日期（默认今天）、参会人员、"
            "议题、议定事项，然后可发送会议纪要文件（或回复 跳过），最后回复 确认 保存。"
        ),
        "en": (
            "A level-2 chief holds a safety meeting at least once a quarter. Answer: date "
            "(default today), attendees, topics, decisions; then send the minutes as a file (or "
            "reply skip), and reply yes to save."
        ),
    },
    roles=frozenset({RoleKind.L2_CHIEF}),
    rooms=ROOMS,
)
async def meeting(ctx: CommandContext) -> None:
    grids = [g for g in held_grids(ctx.identity, {RoleKind.L2_CHIEF}) if g.active]
    data: dict[str, Any] = {"choices": [[g.id, g.name] for g in grids]}
    if len(grids) == 1:
        data["grid_id"], data["grid"] = grids[0].id, grids[0].name
    await conversation.start(ctx, meeting_conv, _ask_meeting(ctx, data), data)


@command(
    "training",
    aliases=("培训",),
    summary={"zh_CN": "登记一次网格员培训", "en": "record a grid-member training"},
    details={
        "zh_CN": (
            "一级网格办公室登记培训（先培训、后上岗；每年培训）。按提示回答：日期（默认今天）、"
            "培训内容、参加人员（姓名用顿号、逗号或空格分隔，会与名册匹配），最后回复 确认 保存。"
        ),
        "en": (
            "The level-1 office records a training. Answer: date (default today), topic, "
            "attendees (names separated by commas or spaces, matched to the roster), then yes."
        ),
    },
    roles=L1_STAFF,
    rooms=ROOMS,
)
async def training(ctx: CommandContext) -> None:
    await conversation.start(ctx, training_conv, _ask_training(ctx, {}), {})


# --- meeting steps ---------------------------------------------------------------------------


@meeting_conv.step("grid")
async def meeting_grid(step: Step, msg: Incoming) -> None:
    names = [name for _id, name in step.data["choices"]]
    picked = choose(names, msg.text) if not msg.is_media else None
    if picked is None or picked.one is None:
        step.goto(_ask_meeting(step.ctx, step.data, error="pick"))
        return
    step.data["grid_id"], step.data["grid"] = step.data["choices"][picked.one]
    step.goto(_ask_meeting(step.ctx, step.data))


@meeting_conv.step("date")
async def meeting_date(step: Step, msg: Incoming) -> None:
    await take_date(step, msg, _ask_meeting)


@meeting_conv.step("attendees")
@meeting_conv.step("topics")
@meeting_conv.step("decisions")
async def meeting_text(step: Step, msg: Incoming) -> None:
    take_text(step, msg, _ask_meeting)


@meeting_conv.step("minutes")
async def meeting_minutes(step: Step, msg: Incoming) -> None:
    if msg.is_media and msg.media and not is_mxc(msg.media.get("url")):
        step.reply("attachment_refused")
        return
    if msg.is_media and msg.media:
        info = msg.media.get("info") or {}
        step.data["minutes"] = {
            "url": msg.media["url"],
            "name": msg.media.get("name") or "",
            "mimetype": info.get("mimetype"),
        }
    elif is_in(msg.text, SKIP):
        step.data["minutes"] = None
    else:
        step.goto(_ask_meeting(step.ctx, step.data, error="not_file"))
        return
    step.goto(_ask_meeting(step.ctx, step.data))


@meeting_conv.step("confirm")
async def meeting_confirm(step: Step, msg: Incoming) -> None:
    await take_confirmation(step, msg, _ask_meeting, _save_meeting)


# --- training steps --------------------------------------------------------------------------


@training_conv.step("date")
async def training_date(step: Step, msg: Incoming) -> None:
    await take_date(step, msg, _ask_training)


@training_conv.step("topic")
async def training_topic(step: Step, msg: Incoming) -> None:
    take_text(step, msg, _ask_training)


@training_conv.step("attendees")
async def training_attendees(step: Step, msg: Incoming) -> None:
    names = split_names(msg.text) if not msg.is_media else []
    if not names:
        step.goto(_ask_training(step.ctx, step.data, error="no_names"))
        return
    matched = await match_people(step.ctx.session, names, await _county_grids(step.ctx))
    step.data["attendees_text"] = msg.text
    step.data["attendees"] = [[name, matched[name]] for name in names]
    step.goto(_ask_training(step.ctx, step.data))


@training_conv.step("confirm")
async def training_confirm(step: Step, msg: Incoming) -> None:
    await take_confirmation(step, msg, _ask_training, _save_training)


# --- shared ----------------------------------------------------------------------------------


def _ask_meeting(ctx: CommandContext, data: dict[str, Any], **extra: Any) -> str:
    return _ask(ctx, meeting_conv, data, **extra)


def _ask_training(ctx: CommandContext, data: dict[str, Any], **extra: Any) -> str:
    return _ask(ctx, training_conv, data, **extra)


def _ask(ctx: CommandContext, conv: Conversation, data: dict[str, Any], **extra: Any) -> str:
    """Ask the first declared field not yet in ``data`` (or show the summary, the last step);
    returns the step name."""
    kind = conv.name
    state = first_open(conv, data)
    values: dict[str, Any] = {"error": None, "answer": None, **extra}
    values["progress"] = conv.progress(state)
    if state == "grid":
        values["choices"] = [name for _id, name in data["choices"]]
    if state == "confirm":
        values.update(_summary(kind, data))
        ctx.reply(f"{kind}_summary", **values)
    else:
        ctx.reply(f"{kind}_ask", field=state, **values)
    return state


def _summary(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    day = date.fromisoformat(data["date"])
    if kind == "meeting":
        minutes = data.get("minutes")
        return {
            "grid": data["grid"],
            "date": data["date"],
            "quarter": dates.quarter_of(day),
            "attendees": data["attendees"],
            "topics": data["topics"],
            "decisions": data["decisions"],
            "minutes": minutes["name"] if minutes else None,
        }
    return {
        "date": data["date"],
        "topic": data["topic"],
        "matched": [name for name, pid in data["attendees"] if pid],
        "unmatched": [name for name, pid in data["attendees"] if not pid],
    }


async def _county_grids(ctx: CommandContext) -> set[int] | None:
    """The recorder's level-1 grid(s) and their level-2 grids, where names are matched first."""
    l1 = {g.id for g in held_grids(ctx.identity, L1_ROLES)}
    if not l1:
        return None
    under = await level2_grids_in(ctx.session, Reach(l1_grids=frozenset(l1)))
    return l1 | {g.id for g in under}


async def _save_meeting(ctx: CommandContext, data: dict[str, Any], msg: Incoming) -> None:
    person = ctx.identity.person
    assert person is not None  # L2_CHIEF implies a roster person
    today = dates.today(ctx.services.config.tz)
    code = await next_code(ctx.session, MEETING_PREFIX, today.year)
    ctx.session.add(
        Meeting(
            code=code,
            grid_id=data["grid_id"],
            person_id=person.id,
            meeting_date=date.fromisoformat(data["date"]),
            attendees=data["attendees"],
            topics=data["topics"],
            decisions=data["decisions"],
            minutes=data.get("minutes"),
            room_id=ctx.room_id,
            event_id=msg.event_id,
        )
    )
    ctx.reply("meeting_saved", code=code, **_summary("meeting", data))


async def _save_training(ctx: CommandContext, data: dict[str, Any], msg: Incoming) -> None:
    today = dates.today(ctx.services.config.tz)
    code = await next_code(ctx.session, TRAINING_PREFIX, today.year)
    l1 = next(iter(held_grids(ctx.identity, L1_ROLES)), None)
    record = Training(
        code=code,
        grid_id=l1.id if l1 else None,
        recorded_by=ctx.sender,
        training_date=date.fromisoformat(data["date"]),
        topic=data["topic"],
        attendees_text=data["attendees_text"],
        room_id=ctx.room_id,
        event_id=msg.event_id,
    )
    ctx.session.add(record)
    await ctx.session.flush()
    ctx.session.add_all(
        TrainingAttendee(training_id=record.id, name=name, person_id=pid)
        for name, pid in data["attendees"]
    )
    ctx.reply("training_saved", code=code, **_summary("training", data))

"""/visit (/走访): a level-2 member logs an on-site visit, step by step or in one line.

Steps: enterprise → date → what was checked → problems → location → photos → confirm. Every
answer is checked where it is given and a bad one is asked again with the reason; the state
lives in the database (bot.conversation), so a restart continues at the same question.

The location is the member's shared location (Element: 附件/➕ → 位置, an ``m.location``), or
跳过 / skip; one shared later, with the photos or at the summary, is taken too (the last one
counts). The saved visit keeps the point and its distance to the enterprise's coordinates and is
marked 现场 / 异地 / 未定位 by storage.visits.siting against ``visits.onsite_radius_m``.

One-line form: ``/visit 赣西物流 检查了车辆动态监控，无问题`` picks the enterprise by part of its
name, takes the rest as what was checked and the date as today. When the text says there was no
problem (无问题, 未发现隐患 …) problems are none; otherwise the problems question is asked. It then
goes straight to the summary (photos and a location may still be sent before 确认).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from bot import conversation, dates, evidence
from bot.commands import DIRECT, ENTERPRISE_ROOM, GRID_ROOMS, Arg, command
from bot.context import CommandContext
from bot.conversation import (
    CHOICE,
    CONFIRM,
    DATE,
    PHOTO,
    TEXT,
    Conversation,
    Expect,
    Incoming,
    Step,
)
from bot.evidence import Evidence, Refused
from bot.geo import GeoPoint, distance_m
from bot.outgoing import Attachment
from bot.words import FINISHED, NONE, SKIP, choose, is_in, says_no_problem
from handlers.visits.forms import (
    first_open,
    read_past_day,
    take_confirmation,
    take_date,
    take_text,
)
from storage import rooms
from storage.directory import Action, at_hand, roles_for, room_of
from storage.models import Enterprise
from storage.visits import (
    VISIT_PREFIX,
    Siting,
    Visit,
    assignment_on,
    current_since,
    next_code,
    siting,
)

# The enterprise is often preset (its room, or the only one served) and the summary is no
# question, so neither counts in the progress.
conv = Conversation(
    "visit",
    CHOICE("enterprise", counted=False, options="choices"),
    DATE("date"),
    TEXT("checked", "problems"),
    Expect.LOCATION("location"),
    PHOTO("photos"),
    CONFIRM("confirm", counted=False),
)
VISIT_ROOMS = GRID_ROOMS | {DIRECT}


@command(
    "visit",
    aliases=("走访",),
    summary={"zh_CN": "登记一次企业走访", "en": "log an on-site visit to an enterprise"},
    details={
        "zh_CN": (
            "按提示依次回答：企业（序号或名称的一部分）、日期（默认今天；可写 昨天、11月20日、"
            "2026-11-20）、检查内容、发现的问题（无 或 具体问题）、位置（附件/➕ → 位置，共享"
            "当前位置，或回复 跳过）、照片（可发多张，发完回复 完成，或回复 跳过），最后回复 确认 "
            "保存或 取消 放弃。随时发送 /取消 结束。\n"
            "一句话登记：/走访 赣西物流 检查了车辆动态监控，无问题（日期为今天）。\n"
            "保存后记录会发到该企业群，并按共享的位置标注 现场、异地（附距离）或 未定位；"
            "发现问题时可用 /hazard 或 /escalate 加走访编号转为隐患或上报。\n"
            "发照片时也可以发语音，或 PDF、Word、Excel、PPT 文件，一并作为走访证据保存。"
        ),
        "en": (
            "Answer in turn: enterprise (number or part of the name), date (default today; "
            "yesterday, 11月20日, 2026-11-20), what was checked, problems found (无/none or text), "
            "your location (attachment/➕ → Location, share it, or 跳过/skip), photos (send any "
            "number, then 完成/done, or 跳过/skip), then 确认/yes to save or 取消/no. /cancel "
            "ends it at any step.\n"
            "One line: /visit 赣西物流 checked the vehicle monitoring, no problem (dated today).\n"
            "The record is posted in the enterprise room, marked on site, away (with the "
            "distance) or not located by the shared location; problems can be followed up with "
            "/hazard or /escalate and the visit id.\n"
            "With the photos you may also send voice notes and PDF, Word, Excel or PowerPoint "
            "files: they are kept as evidence of the visit."
        ),
    },
    args=(
        Arg(
            {"zh_CN": "企业 检查内容", "en": "enterprise what-was-checked"},
            required=False,
            rest=True,
            key="text",
        ),
    ),
    roles=roles_for(Action.VISIT),
    rooms=VISIT_ROOMS,
)
async def visit(ctx: CommandContext) -> None:
    served = at_hand(ctx.identity, Action.VISIT)
    if not served:
        ctx.reply("visit_no_enterprises")
        return
    data: dict[str, Any] = {"choices": [[e.id, e.name] for e in served], "photos": []}
    error: dict[str, Any] = {}
    text = (ctx.args.get("text") or "").strip()
    if text:
        query, *rest = text.split(maxsplit=1)
        picked = choose(_names(data), query)
        if rest:
            # The one-line form: today, the rest is what was checked, photos and location
            # optional at confirm.
            data.update(oneline=True, checked=rest[0], photos_done=True, location=None)
            if says_no_problem(rest[0]):
                data["problems"] = None
        if picked.one is not None:
            error = await _set_enterprise(ctx, data, picked.one)
        else:
            error = {"error": "ambiguous" if picked.picks else "unknown", "query": query}
            data["matches"] = list(picked.picks)
    else:
        index = await _room_enterprise(ctx, data)
        if index is None and len(served) == 1:
            index = 0
        if index is not None:
            error = await _set_enterprise(ctx, data, index)
    await conversation.start(ctx, conv, _ask_next(ctx, data, **error), data)


# --- steps -----------------------------------------------------------------------------------


@conv.step("enterprise")
async def step_enterprise(step: Step, msg: Incoming) -> None:
    data = step.data
    if msg.is_media:
        step.goto(_ask_next(step.ctx, data, error="need_text"))
        return
    picked = choose(_names(data), msg.text)
    if picked.one is None:
        data["matches"] = list(picked.picks)
        error = "ambiguous" if picked.picks else "unknown"
        step.goto(_ask_next(step.ctx, data, error=error, query=msg.text))
        return
    extra = await _set_enterprise(step.ctx, data, picked.one)
    step.goto(_ask_next(step.ctx, data, **extra))


@conv.step("date")
async def step_date(step: Step, msg: Incoming) -> None:
    await take_date(step, msg, _ask_next, _check_day)


@conv.step("checked")
async def step_checked(step: Step, msg: Incoming) -> None:
    take_text(step, msg, _ask_next)


@conv.step("problems")
async def step_problems(step: Step, msg: Incoming) -> None:
    if is_in(msg.text, NONE):  # 无 / none: nothing found
        step.data["problems"] = None
        step.goto(_ask_next(step.ctx, step.data))
        return
    take_text(step, msg, _ask_next)


@conv.step("location")
async def step_location(step: Step, msg: Incoming) -> None:
    """The member's shared location (m.location), or 跳过 / skip."""
    data = step.data
    if msg.location is not None:
        await _take_location(step.ctx, data, msg.location)
        step.goto(_ask_next(step.ctx, data, located=_siting(step.ctx, data)))
        return
    if not msg.is_media and is_in(msg.text, SKIP):
        data["location"] = None
        step.goto(_ask_next(step.ctx, data))
        return
    step.goto(_ask_next(step.ctx, data, error="location_hint"))


@conv.step("photos")
async def step_photos(step: Step, msg: Incoming) -> None:
    data = step.data
    if msg.location is not None:
        await _location_later(step, msg.location)
        return
    if msg.is_media:
        _add_photo(step, msg)
        return
    if is_in(msg.text, FINISHED):
        data["photos_done"] = True
        step.goto(_ask_next(step.ctx, data))
        return
    step.goto(_ask_next(step.ctx, data, error="photos_hint"))


@conv.step("confirm")
async def step_confirm(step: Step, msg: Incoming) -> None:
    if msg.location is not None:
        await _location_later(step, msg.location)  # a location may still come with the summary
        return
    if msg.is_media:
        _add_photo(step, msg)  # photos may still come with the summary
        return
    await take_confirmation(step, msg, _ask_next, _save)


# --- helpers ---------------------------------------------------------------------------------


def _names(data: dict[str, Any]) -> list[str]:
    return [name for _id, name in data["choices"]]


def _ask_next(ctx: CommandContext, data: dict[str, Any], **extra: Any) -> str:
    """Reply with the question for the first unanswered field; returns that step's name.
    (The photos are open until 完成; "photos" holds the ones received so far.)"""
    state = first_open(conv, data, {"photos": "photos_done"})
    # Every question template gets the same re-ask fields (StrictUndefined needs them all).
    values: dict[str, Any] = {"error": None, "answer": None, "since": None, "query": None}
    values["located"] = None  # the location just taken, shown above the next question
    values["progress"] = conv.progress(state)
    values.update(extra)
    if state == "enterprise":
        names = _names(data)
        values["choices"] = list(enumerate(names, 1))
        values["matches"] = [(i + 1, names[i]) for i in data.get("matches") or []]
    elif state == "confirm":
        values.update(_summary(data), siting=_siting(ctx, data))
    else:
        values.update({k: data.get(k) for k in ("enterprise", "date", "checked")})
    ctx.reply("visit_summary" if state == "confirm" else f"visit_ask_{state}", **values)
    return state


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "enterprise": data["enterprise"],
        "date": data["date"],
        "checked": data["checked"],
        "problems": data.get("problems"),
        "photos": len(data.get("photos") or []),
        "files": list(data.get("files") or []),
    }


async def _take_location(ctx: CommandContext, data: dict[str, Any], point: GeoPoint) -> None:
    """Keep a shared location (the last one counts) with its distance to the enterprise."""
    data["location"] = point.as_dict()
    await _measure(ctx, data)


async def _measure(ctx: CommandContext, data: dict[str, Any]) -> None:
    """The shared location's distance to the enterprise's coordinates, in metres: None when the
    enterprise has none (the roster's 经度/纬度 are optional)."""
    shared = data.get("location")
    if not shared:
        return
    ent = await ctx.session.get(Enterprise, data["enterprise_id"])
    site = None
    if ent is not None and ent.latitude is not None and ent.longitude is not None:
        site = GeoPoint(ent.latitude, ent.longitude)
    shared["distance_m"] = distance_m(GeoPoint.from_dict(shared), site) if site else None


def _siting(ctx: CommandContext, data: dict[str, Any]) -> Siting:
    """How the visit will be marked (现场 / 异地 / 未定位): storage.visits.siting."""
    shared = data.get("location") or {}
    return siting(
        shared.get("distance_m"),
        ctx.services.config.visits.onsite_radius_m,
        shared=bool(shared),
        accuracy_m=shared.get("accuracy"),
    )


async def _location_later(step: Step, point: GeoPoint) -> None:
    """A location shared with the photos or at the summary is taken; the step stays."""
    await _take_location(step.ctx, step.data, point)
    step.reply(
        "visit_location_added",
        located=_siting(step.ctx, step.data),
        confirm=step.state == "confirm",
    )


async def _room_enterprise(ctx: CommandContext, data: dict[str, Any]) -> int | None:
    """In an enterprise room of an enterprise the member serves, that enterprise is preset."""
    if ctx.room_kind != ENTERPRISE_ROOM:
        return None
    info = await rooms.get(ctx.session, ctx.room_id)
    ids = [eid for eid, _name in data["choices"]]
    if info is None or info.enterprise_id not in ids:
        return None
    return ids.index(info.enterprise_id)


async def _set_enterprise(ctx: CommandContext, data: dict[str, Any], index: int) -> dict[str, Any]:
    """Choose the enterprise; the one-line form also takes today as the date if it is valid."""
    eid, name = data["choices"][index]
    data.update(enterprise_id=eid, enterprise=name)
    data.pop("matches", None)
    if data.get("oneline") and "date" not in data:
        today = dates.today(ctx.services.config.tz)
        day, extra = await _check_day(ctx, data, today.isoformat())
        if day is not None:
            data["date"] = day.isoformat()
        return extra
    return {}


async def _check_day(
    ctx: CommandContext, data: dict[str, Any], text: str
) -> tuple[date | None, dict[str, Any]]:
    """The visit day from ``text`` (a day the member served the enterprise), or None and the
    error to show with the re-ask."""
    day, refused = await read_past_day(ctx, data, text)
    if day is None:
        return None, refused
    person = ctx.identity.person
    assert person is not None  # L2_MEMBER role implies a roster person
    if await assignment_on(ctx.session, person.id, data["enterprise_id"], day) is None:
        since = await current_since(ctx.session, person.id, data["enterprise_id"])
        return None, {"error": "before_since", "since": since, "answer": text}
    return day, {}


def _add_photo(step: Step, msg: Incoming) -> None:
    """Attach evidence (photos step or summary), as bot.evidence reads it: a photo (its mxc url
    in "photos"), a voice note or a document (the item in "files"); any other file, or one
    whose url is no mxc:// URI (photos end up in <img src> of the post), is refused, saying
    why."""
    got = evidence.take(msg.media)
    if isinstance(got, Evidence):
        # An encrypted photo cannot be shown inline (<img src> of its ciphertext): it is kept
        # with the files and relayed as an image event with its key.
        photo = got.kind == evidence.PHOTO and not evidence.is_encrypted(got.item)
        key = "photos" if photo else "files"
        step.data[key] = [*step.data.get(key, []), got.url if photo else got.item]
    step.reply(
        "visit_evidence_added",
        photos=len(step.data.get("photos") or []),
        files=list(step.data.get("files") or []),
        refused=got.reason if isinstance(got, Refused) else None,
        confirm=step.state == "confirm",
    )


async def _save(ctx: CommandContext, data: dict[str, Any], msg: Incoming) -> None:
    person = ctx.identity.person
    assert person is not None
    today = dates.today(ctx.services.config.tz)
    code = await next_code(ctx.session, VISIT_PREFIX, today.year)
    record = Visit(
        code=code,
        person_id=person.id,
        enterprise_id=data["enterprise_id"],
        visit_date=date.fromisoformat(data["date"]),
        checked=data["checked"],
        problems=data.get("problems"),
        photos=list(data.get("photos") or []),
        files=list(data.get("files") or []),
        room_id=ctx.room_id,
        event_id=msg.event_id,
    )
    ctx.session.add(record)
    await _measure(ctx, data)  # against the enterprise's coordinates as they are now
    if shared := data.get("location"):
        record.latitude, record.longitude = shared["lat"], shared["lon"]
        record.accuracy_m, record.distance_m = shared.get("accuracy"), shared.get("distance_m")
    values = {
        "code": code,
        "member": person.name,
        **_summary(data),
        "siting": _siting(ctx, data),
        "photo_urls": record.photos,
    }
    room = await room_of(ctx.session, ENTERPRISE_ROOM, data["enterprise_id"])
    posted = None
    if room is not None and room != ctx.room_id:
        posted = ctx.send(room, "visit_record", **values)
        # Voice notes and documents follow the record as file events (the photos are inline).
        for i, item in enumerate(record.files, 1):
            attachment = Attachment.from_media(item)
            ctx.send(
                room,
                "evidence_caption",
                reply_to=posted,
                attachment=attachment,
                code=code,
                stage="visit",
                index=i,
                total=len(record.files),
                item=item,
            )
    reply = ctx.reply("visit_saved", **values, room=room, here=room == ctx.room_id)
    await ctx.session.flush()
    record.posted_room_id = room
    record.posted_outbox_id = (posted or reply).id if room else None

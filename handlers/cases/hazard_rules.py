"""The life of a hazard: report → confirm → rectify → submit → verify → close, plus supervision
and overdue reminders. Each step checks who may take it, records an audit row and tells the
people concerned in the case's threads. Commands, thread replies and jobs all come through here.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.config import Config
from bot.words import GENERAL_GRADE, MAJOR_GRADE, future_day, which
from handlers.cases import deadlines
from handlers.cases.support import (
    Actor,
    Poster,
    Refusal,
    home_room,
    reply_target,
)
from storage import cases
from storage.cases import (
    GENERAL,
    H_CLOSED,
    H_CONFIRMED,
    H_RECTIFYING,
    H_REPORTED,
    H_SUBMITTED,
    H_VERIFIED,
    HAZARD,
    HAZARD_OPEN,
    MAJOR,
    Hazard,
)
from storage.directory import EnterpriseCircle, Standing, circle_of, unite

GRADE_NAMES = {GENERAL: "一般隐患", MAJOR: "重大事故隐患"}
# In the order the report question numbers them: 1 一般隐患, 2 重大事故隐患.
GRADE_WORDS = {GENERAL: GENERAL_GRADE, MAJOR: MAJOR_GRADE}


async def show_photos(
    poster: Poster, code: str, room_id: str, photos: list[dict[str, Any]], stage: str
) -> None:
    """Put photos into the case thread in room_id (threaded by the sender once it is sent)."""
    await poster.photos(code, room_id, photos, stage)


async def report(
    poster: Poster, actor: Actor, config: Config, enterprise_id: int, data: dict[str, Any]
) -> tuple[Hazard, list[str]]:
    """Create the hazard; returns it and the upper rooms that were missing (for a major one)."""
    session = poster.session
    now = datetime.now(UTC)
    code = await cases.next_code(session, HAZARD, now.astimezone(config.tz).year)
    deadline: date = data["deadline"]
    hazard = Hazard(
        code=code,
        enterprise_id=enterprise_id,
        status=H_REPORTED,
        grade=data["grade"],
        category=data["category"],
        description=data["description"],
        location=data["location"],
        interim_measures=data.get("measures", ""),
        plan=data.get("plan", ""),
        responsible=data.get("responsible", ""),
        deadline=deadline,
        deadline_at=deadlines.end_of_day(deadline, config),
        photos=list(data.get("photos") or []),
        fix_photos=[],
        fix_note="",
        rework_count=0,
        supervised=False,
        reported_by=actor.user_id,
        reporter_name=actor.name,
        reported_at=now,
    )
    session.add(hazard)
    cases.record(
        session,
        code,
        "report",
        None,
        H_REPORTED,
        actor=actor.user_id,
        actor_name=actor.name,
        room_id=actor.room_id,
        note=hazard.description,
    )
    ar = await circle_of(session, enterprise_id)
    home = ar.ent_room or actor.room_id
    assert home is not None
    await poster.post(code, home, "hazard_posted", h=hazard, ent=ar.enterprise, mentions=ar.members)
    await show_photos(poster, code, home, hazard.photos, "report")
    missing: list[str] = []
    if hazard.grade == MAJOR:
        missing = await major_alert(poster, hazard, ar, "report")
    await deadlines.watch_hazard(session, config, hazard)
    return hazard, missing


async def major_alert(poster: Poster, hazard: Hazard, ar: EnterpriseCircle, why: str) -> list[str]:
    """Tell every level at once: the level-2 room (members, chief) and the level-1 room
    (chief, office). Returns the kinds of room that do not exist, to warn the reporter."""
    missing = []
    targets = (
        ("l2_room", ar.l2_room, unite(ar.members, ar.l2_chiefs)),
        ("l1_room", ar.l1_room, unite(ar.l1_chiefs, ar.l1_office)),
    )
    for kind, room, people in targets:
        if room is None:
            missing.append(kind)
            continue
        await poster.post(
            hazard.code,
            room,
            "hazard_major_alert",
            h=hazard,
            ent=ar.enterprise,
            why=why,
            mentions=people,
        )
        await show_photos(poster, hazard.code, room, hazard.photos, "report")
    return missing


async def _announce(
    poster: Poster,
    actor: Actor,
    hazard: Hazard,
    ar: EnterpriseCircle,
    action: str,
    from_state: str | None,
    note: str,
    *,
    home_mentions: list[Any],
    l2_mentions: list[Any] | None = None,
    l1_mentions: list[Any] | None = None,
    up: bool | None = None,
) -> None:
    """Post a step in the home thread; a major or supervised hazard's steps also go up to the
    level-2 and level-1 rooms (``up`` overrides that)."""
    home = await home_room(poster.session, hazard.code) or ar.ent_room or actor.room_id
    values = {"h": hazard, "ent": ar.enterprise, "action": action, "from_state": from_state}
    values |= {"actor": actor.name, "note": note}
    assert home is not None
    await poster.post(
        hazard.code,
        home,
        "hazard_update",
        reply_to=reply_target(actor, home),
        mentions=home_mentions,
        **values,
    )
    if up is None:
        up = hazard.grade == MAJOR or hazard.supervised
    if not up:
        return
    for room, people in ((ar.l2_room, l2_mentions), (ar.l1_room, l1_mentions)):
        if room and room != home:
            await poster.post(
                hazard.code,
                room,
                "hazard_update",
                reply_to=reply_target(actor, room),
                mentions=people or [],
                **values,
            )


def _record(
    poster: Poster, actor: Actor, h: Hazard, action: str, old: str | None, note: str = ""
) -> None:
    cases.record(
        poster.session,
        h.code,
        action,
        old,
        h.status,
        actor=actor.user_id,
        actor_name=actor.name,
        room_id=actor.room_id,
        note=note,
    )


def _need(ok: bool, action: str, who: str) -> None:
    if not ok:
        raise Refusal("not_allowed", action=action, who=who)


def _state(h: Hazard, allowed: tuple[str, ...], action: str) -> None:
    if h.status not in allowed:
        raise Refusal("bad_state", action=action, status=h.status)


def parse_confirm(text: str, today: date) -> tuple[str | None, date | None]:
    """'重大 12月1日' → (grade, deadline); raises Refusal on a word it cannot read."""
    grade, day = None, None
    for token in text.split():
        named = which(token, GRADE_WORDS)
        if named is not None:
            grade = named
            continue
        parsed, error = future_day(token, today)
        if error == "unreadable":
            raise Refusal("bad_confirm", token=token)
        if error == "past":
            raise Refusal("deadline_past", day=parsed)
        day = parsed
    return grade, day


async def confirm(
    poster: Poster, actor: Actor, st: Standing, config: Config, h: Hazard, text: str
) -> None:
    """The level-2 member confirms the grade and deadline; rectification starts."""
    _need(st.l2_handler, "confirm", "l2_handler")
    _state(h, (H_REPORTED,), "confirm")
    today = datetime.now(config.tz).date()
    grade, day = parse_confirm(text, today)
    was_major = h.grade == MAJOR
    changed = False
    if grade and grade != h.grade:
        h.grade, changed = grade, True
    if day and day != h.deadline:
        h.deadline, h.deadline_at = day, deadlines.end_of_day(day, config)
        h.overdue_at, changed = None, True
        await deadlines.watch_hazard(poster.session, config, h)
    h.status, h.confirmed_by = H_CONFIRMED, actor.name
    # The audit note says what was confirmed (Chinese, like the rest of the ledger).
    note = f"{GRADE_NAMES[h.grade]}，期限 {h.deadline.isoformat()}"
    if changed:
        note += "（已调整）"
    _record(poster, actor, h, "confirm", H_REPORTED, note)
    h.status = H_RECTIFYING
    _record(poster, actor, h, "start", H_CONFIRMED)
    ar = await circle_of(poster.session, h.enterprise_id)
    upgraded = h.grade == MAJOR and not was_major
    if upgraded:
        await major_alert(poster, h, ar, "upgrade")
    await _announce(
        poster,
        actor,
        h,
        ar,
        "confirm",
        H_REPORTED,
        note,
        home_mentions=ar.staff,
        up=(was_major or h.supervised) and not upgraded,
    )


async def submit(
    poster: Poster, actor: Actor, st: Standing, h: Hazard, photos: list[dict[str, Any]], note: str
) -> None:
    """The enterprise reports the hazard fixed, with photos; the member is asked to re-check."""
    _need(st.ent_staff, "submit", "ent_staff")
    if h.status in (H_REPORTED, H_CONFIRMED):
        raise Refusal("not_confirmed")
    _state(h, (H_RECTIFYING,), "submit")
    if not photos:
        raise Refusal("need_photos")
    h.status = H_SUBMITTED
    h.fix_photos = [*h.fix_photos, *photos]
    h.fix_note = note
    _record(poster, actor, h, "submit", H_RECTIFYING, note)
    ar = await circle_of(poster.session, h.enterprise_id)
    await _announce(poster, actor, h, ar, "submit", H_RECTIFYING, note, home_mentions=ar.members)
    home = await home_room(poster.session, h.code)
    if home:
        await show_photos(poster, h.code, home, photos, f"fix-{h.rework_count}")


async def verify(
    poster: Poster,
    actor: Actor,
    st: Standing,
    config: Config,
    h: Hazard,
    passed: bool,
    text: str,
) -> None:
    """The member re-checks: pass closes a general hazard (a major one waits for the chief's
    close-out); fail sends it back to rectification and counts a rework."""
    action = "verify_pass" if passed else "verify_fail"
    _need(st.l2_handler, action, "l2_handler")
    _state(h, (H_SUBMITTED,), action)
    ar = await circle_of(poster.session, h.enterprise_id)
    now = datetime.now(UTC)
    if passed:
        h.status, h.verified_by, h.verified_at = H_VERIFIED, actor.name, now
        _record(poster, actor, h, action, H_SUBMITTED, text)
        if h.grade == GENERAL:
            h.status, h.closed_at = H_CLOSED, now
            _record(poster, actor, h, "close", H_VERIFIED, "一般隐患复查通过即销号")
            await _announce(
                poster, actor, h, ar, "close_auto", H_SUBMITTED, text, home_mentions=ar.staff
            )
        else:
            await _announce(
                poster,
                actor,
                h,
                ar,
                action,
                H_SUBMITTED,
                text,
                home_mentions=ar.staff,
                l2_mentions=ar.l2_chiefs,
                l1_mentions=ar.l1_chiefs,
                up=True,
            )
        return
    today = datetime.now(config.tz).date()
    words = text.split(maxsplit=1)
    day, error = future_day(words[0], today) if words else (None, "unreadable")
    if error == "past":
        raise Refusal("deadline_past", day=day)
    if day is not None:
        text = words[1] if len(words) > 1 else ""
    if not text.strip():
        raise Refusal("need_reason")
    h.status = H_RECTIFYING
    h.rework_count += 1
    if day is not None and day != h.deadline:
        h.deadline, h.deadline_at, h.overdue_at = day, deadlines.end_of_day(day, config), None
    # A new round: watch the deadline again (reminding at once if it has passed).
    await deadlines.watch_hazard(poster.session, config, h)
    _record(poster, actor, h, action, H_SUBMITTED, text)
    await _announce(poster, actor, h, ar, action, H_SUBMITTED, text, home_mentions=ar.staff)


async def close(poster: Poster, actor: Actor, st: Standing, h: Hazard, note: str) -> None:
    """A chief closes out (销号) a verified major hazard."""
    _need(st.chief, "close", "chief")
    _state(h, (H_VERIFIED,), "close")
    h.status, h.closed_at = H_CLOSED, datetime.now(UTC)
    _record(poster, actor, h, "close", H_VERIFIED, note)
    ar = await circle_of(poster.session, h.enterprise_id)
    await _announce(
        poster, actor, h, ar, "close", H_VERIFIED, note, home_mentions=unite(ar.staff, ar.members)
    )


async def supervise(poster: Poster, actor: Actor, st: Standing, h: Hazard, note: str) -> None:
    """A level-2 or level-1 chief puts the hazard under supervision (挂牌督办)."""
    _need(st.chief, "supervise", "chief")
    _state(h, (*HAZARD_OPEN, H_SUBMITTED, H_VERIFIED), "supervise")
    if h.supervised:
        raise Refusal("already_supervised", by=h.supervised_by or "")
    h.supervised, h.supervised_by = True, actor.name
    _record(poster, actor, h, "supervise", h.status, note)
    ar = await circle_of(poster.session, h.enterprise_id)
    await _announce(
        poster,
        actor,
        h,
        ar,
        "supervise",
        h.status,
        note,
        home_mentions=unite(ar.staff, ar.members),
        l2_mentions=ar.members,
        l1_mentions=[],
        up=True,
    )


# --- overdue ------------------------------------------------------------------------------------


def still_due(h: Hazard | None, payload: dict[str, Any]) -> bool:
    """Whether a deadline job still concerns the hazard: open, same deadline, same round."""
    return (
        h is not None
        and h.status in HAZARD_OPEN
        and h.deadline_at.isoformat() == payload["deadline_at"]
        and h.rework_count == payload.get("round", 0)
    )


async def remind_overdue(poster: Poster, config: Config, h: Hazard, n: int, late: bool) -> None:
    """Flag the hazard overdue (once) and remind the enterprise and its member(s)."""
    now = datetime.now(UTC)
    if h.overdue_at is None:
        h.overdue_at = now
        _record(poster, Actor.system(), h, "overdue", h.status)
    ar = await circle_of(poster.session, h.enterprise_id)
    home = await home_room(poster.session, h.code) or ar.ent_room
    if home:
        await poster.post(
            h.code,
            home,
            "hazard_overdue",
            h=h,
            ent=ar.enterprise,
            n=n,
            late=late,
            days=_days_over(h, now),
            mentions=unite(ar.staff, ar.members),
        )
    await deadlines.next_hazard_reminder(poster.session, config, h, n + 1, now)


async def escalate_overdue(poster: Poster, h: Hazard, late: bool) -> None:
    """Tell the level-2 chief (and the level-1 chief for a major hazard) it is overdue."""
    now = datetime.now(UTC)
    _record(poster, Actor.system(), h, "overdue_escalate", h.status)
    ar = await circle_of(poster.session, h.enterprise_id)
    targets = [(ar.l2_room, ar.l2_chiefs)]
    if h.grade == MAJOR or h.supervised:
        targets.append((ar.l1_room, ar.l1_chiefs))
    posted = False
    for room, people in targets:
        if room:
            await poster.post(
                h.code,
                room,
                "hazard_overdue_chief",
                h=h,
                ent=ar.enterprise,
                late=late,
                days=_days_over(h, now),
                mentions=people,
            )
            posted = True
    if not posted:
        # No grid room known: say it where the case lives, mentioning the chiefs.
        home = await home_room(poster.session, h.code)
        if home:
            await poster.post(
                h.code,
                home,
                "hazard_overdue_chief",
                h=h,
                ent=ar.enterprise,
                late=late,
                days=_days_over(h, now),
                mentions=ar.l2_chiefs,
            )


def _days_over(h: Hazard, now: datetime) -> int:
    return max(0, (now - h.deadline_at).days)


async def session_hazard(session: AsyncSession, code: str) -> Hazard | None:
    row = await cases.get_case(session, code)
    return row if isinstance(row, Hazard) else None

"""The life of a hazard: report → confirm → rectify → submit → verify → close, plus supervision
and overdue reminders. Each step checks who may take it (or raises :class:`CaseError`), records
an audit row and tells the people concerned in the case's threads: the post rings those who
must act next and is a notice for the rest. Commands, thread replies and jobs all come here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from bot.dates import today
from bot.words import GENERAL_GRADE, MAJOR_GRADE, future_day, which
from handlers.cases import deadlines
from handlers.cases.actors import Actor
from handlers.cases.refusals import CaseError
from handlers.cases.threads import Audience, CaseThreads
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
from storage.directory import Capacity, Contact, EnterpriseCircle, unite

GRADE_NAMES = {GENERAL: "一般隐患", MAJOR: "重大事故隐患"}
# In the order the report question numbers them: 1 一般隐患, 2 重大事故隐患.
GRADE_WORDS = {GENERAL: GENERAL_GRADE, MAJOR: MAJOR_GRADE}


async def report(
    threads: CaseThreads, actor: Actor, data: dict[str, Any]
) -> tuple[Hazard, list[str]]:
    """Create the hazard; returns it and the upper rooms that were missing (for a major one)."""
    config = threads.config
    now = datetime.now(UTC)
    deadline: date = data["deadline"]
    hazard = Hazard(
        code=await threads.new_code(HAZARD, now),
        enterprise_id=data["enterprise_id"],
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
        files=list(data.get("files") or []),
        fix_files=[],
        fix_note="",
        rework_count=0,
        supervised=False,
        reported_by=actor.user_id,
        reporter_name=actor.name,
        reported_at=now,
    )
    ar = await threads.open(hazard, actor, "report", H_REPORTED, hazard.description)
    # The members serving the enterprise are to confirm it.
    await threads.tell(
        hazard.code,
        [Audience(ar.ent_room or actor.room_id, ar.members, rings=True)],
        "hazard_posted",
        photos=hazard.photos,
        files=hazard.files,
        stage="report",
        h=hazard,
        ent=ar.enterprise,
    )
    missing: list[str] = []
    if hazard.grade == MAJOR:
        missing = await _major_alert(threads, hazard, ar, "report")
    await deadlines.watch_hazard(threads, hazard)
    return hazard, missing


async def _major_alert(
    threads: CaseThreads, hazard: Hazard, ar: EnterpriseCircle, why: str
) -> list[str]:
    """Ring every level at once; returns the kinds of room that do not exist."""
    return await threads.alert_upper_levels(
        hazard.code,
        ar,
        "hazard_major_alert",
        photos=hazard.photos,
        files=hazard.files,
        stage="report",
        h=hazard,
        ent=ar.enterprise,
        why=why,
    )


def _upper_rooms(
    ar: EnterpriseCircle,
    l2: Sequence[Contact] = (),
    l1: Sequence[Contact] = (),
    *,
    rings: bool = False,
) -> list[Audience]:
    return [Audience(ar.l2_room, l2, rings), Audience(ar.l1_room, l1, rings)]


def _told(
    hazard: Hazard, ar: EnterpriseCircle, action: str
) -> tuple[Sequence[Contact], bool, list[Audience]]:
    """Whom a step is told: those its post in the home thread mentions, whether it rings them
    (it does when the step hands the hazard to them), and the upper rooms, which follow every
    step of a major or supervised hazard for the record."""
    above = _upper_rooms(ar) if hazard.grade == MAJOR or hazard.supervised else []
    if action in ("confirm", "verify_fail"):
        return ar.staff, True, above  # the enterprise is to rectify it
    if action == "submit":
        return ar.members, True, above  # the members are to re-check it
    if action == "verify_pass":  # a major hazard: the chiefs are to close it out
        if ar.l2_room is None and ar.l1_room is None:  # no upper room: rung where it lives
            return unite(ar.l2_chiefs, ar.l1_chiefs), True, []
        return ar.staff, False, _upper_rooms(ar, ar.l2_chiefs, ar.l1_chiefs, rings=True)
    if action == "supervise":
        return unite(ar.staff, ar.members), False, _upper_rooms(ar, ar.members)
    if action == "close":
        return unite(ar.staff, ar.members), False, above
    return ar.staff, False, above  # close_auto: closed with its re-check


async def _took(
    threads: CaseThreads, actor: Actor, hazard: Hazard, action: str, from_state: str, note: str
) -> None:
    """Record a step that moved the hazard on from ``from_state``, and tell of it."""
    threads.record(actor, hazard.code, action, from_state, hazard.status, note)
    await _announce(threads, actor, hazard, await threads.circle(hazard), action, from_state, note)


async def _announce(
    threads: CaseThreads,
    actor: Actor,
    hazard: Hazard,
    ar: EnterpriseCircle,
    action: str,
    from_state: str,
    note: str,
    *,
    above: Sequence[Audience] | None = None,
) -> None:
    """Post a step in the hazard's threads, to whom :func:`_told` says (``above`` stands for
    the upper rooms when given)."""
    people, rings, told_above = _told(hazard, ar, action)
    await threads.step_taken(
        hazard.code,
        ar,
        actor,
        "hazard_update",
        home=people,
        rings=rings,
        also=told_above if above is None else above,
        h=hazard,
        action=action,
        from_state=from_state,
        note=note,
    )


def _refuse(hazard: Hazard, reason: str, **values: Any) -> CaseError:
    return CaseError(reason, hazard.code, HAZARD, **values)


def _need(ok: bool, hazard: Hazard, action: str, who: str) -> None:
    if not ok:
        raise _refuse(hazard, "not_allowed", action=action, who=who)


def _state(hazard: Hazard, allowed: tuple[str, ...], action: str) -> None:
    if hazard.status not in allowed:
        raise _refuse(hazard, "bad_state", action=action, status=hazard.status)


def _future_day(hazard: Hazard, word: str, today: date) -> date | None:
    """The deadline a word names (None if it names none); CaseError for a day gone by."""
    day, error = future_day(word, today)
    if error == "past":
        raise _refuse(hazard, "deadline_past", day=day)
    return day


def parse_confirm(hazard: Hazard, text: str, today: date) -> tuple[str | None, date | None]:
    """'重大 12月1日' → (grade, deadline); CaseError on a word it cannot read."""
    grade, day = None, None
    for token in text.split():
        named = which(token, GRADE_WORDS)
        if named is not None:
            grade = named
            continue
        day = _future_day(hazard, token, today)
        if day is None:
            raise _refuse(hazard, "bad_confirm", token=token)
    return grade, day


async def confirm(
    threads: CaseThreads, actor: Actor, cap: Capacity, hazard: Hazard, text: str
) -> None:
    """The level-2 member confirms the grade and deadline; rectification starts."""
    _need(cap.l2_handler, hazard, "confirm", "l2_handler")
    _state(hazard, (H_REPORTED,), "confirm")
    config = threads.config
    grade, day = parse_confirm(hazard, text, today(config.tz))
    was_major = hazard.grade == MAJOR
    changed = False
    if grade and grade != hazard.grade:
        hazard.grade, changed = grade, True
    if day and day != hazard.deadline:
        hazard.deadline, hazard.deadline_at = day, deadlines.end_of_day(day, config)
        hazard.overdue_at, changed = None, True
        await deadlines.watch_hazard(threads, hazard)
    hazard.status, hazard.confirmed_by = H_CONFIRMED, actor.name
    # The audit note says what was confirmed (Chinese, like the rest of the ledger).
    note = f"{GRADE_NAMES[hazard.grade]}，期限 {hazard.deadline.isoformat()}"
    if changed:
        note += "（已调整）"
    threads.record(actor, hazard.code, "confirm", H_REPORTED, hazard.status, note)
    hazard.status = H_RECTIFYING
    threads.record(actor, hazard.code, "start", H_CONFIRMED, hazard.status)
    ar = await threads.circle(hazard)
    upgraded = hazard.grade == MAJOR and not was_major
    if upgraded:
        await _major_alert(threads, hazard, ar, "upgrade")
    # A hazard that was major or is supervised is followed above (unless just alerted there).
    above = _upper_rooms(ar) if (was_major or hazard.supervised) and not upgraded else []
    await _announce(threads, actor, hazard, ar, "confirm", H_REPORTED, note, above=above)


def check_submit(cap: Capacity, hazard: Hazard) -> None:
    """Whether the enterprise may submit its rectification now; CaseError if not."""
    _need(cap.ent_staff, hazard, "submit", "ent_staff")
    if hazard.status in (H_REPORTED, H_CONFIRMED):
        raise _refuse(hazard, "not_confirmed")
    _state(hazard, (H_RECTIFYING,), "submit")


async def submit(
    threads: CaseThreads,
    actor: Actor,
    cap: Capacity,
    hazard: Hazard,
    photos: list[dict[str, Any]],
    note: str,
    files: Sequence[dict[str, Any]] = (),
) -> None:
    """The enterprise reports the hazard fixed, with photos (at least one) and any voice notes
    or documents; the members are to re-check."""
    check_submit(cap, hazard)
    if not photos:
        raise _refuse(hazard, "need_photos")
    hazard.status = H_SUBMITTED
    hazard.fix_photos = [*hazard.fix_photos, *photos]
    hazard.fix_files = [*(hazard.fix_files or []), *files]
    hazard.fix_note = note
    await _took(threads, actor, hazard, "submit", H_RECTIFYING, note)
    home = await threads.home(hazard.code, await threads.circle(hazard), actor)
    if home:
        stage = f"fix-{hazard.rework_count}"
        await threads.evidence(hazard.code, home, photos, files, stage)


async def verify_pass(
    threads: CaseThreads, actor: Actor, cap: Capacity, hazard: Hazard, text: str
) -> None:
    """The member's re-check passes: a general hazard is closed with it; a major one waits for
    a chief's close-out (销号), and the chiefs are rung."""
    _need(cap.l2_handler, hazard, "verify_pass", "l2_handler")
    _state(hazard, (H_SUBMITTED,), "verify_pass")
    now = datetime.now(UTC)
    hazard.status, hazard.verified_by, hazard.verified_at = H_VERIFIED, actor.name, now
    if hazard.grade == MAJOR:
        await _took(threads, actor, hazard, "verify_pass", H_SUBMITTED, text)
        return
    threads.record(actor, hazard.code, "verify_pass", H_SUBMITTED, hazard.status, text)
    hazard.status, hazard.closed_at = H_CLOSED, now
    threads.record(actor, hazard.code, "close", H_VERIFIED, hazard.status, "一般隐患复查通过即销号")
    ar = await threads.circle(hazard)
    await _announce(threads, actor, hazard, ar, "close_auto", H_SUBMITTED, text)


async def verify_fail(
    threads: CaseThreads, actor: Actor, cap: Capacity, hazard: Hazard, text: str
) -> None:
    """The member's re-check fails ("[新期限] 原因"): back to rectification, counting a rework."""
    _need(cap.l2_handler, hazard, "verify_fail", "l2_handler")
    _state(hazard, (H_SUBMITTED,), "verify_fail")
    config = threads.config
    words = text.split(maxsplit=1)
    day = _future_day(hazard, words[0], today(config.tz)) if words else None
    if day is not None:
        text = words[1] if len(words) > 1 else ""
    if not text.strip():
        raise _refuse(hazard, "need_reason")
    hazard.status = H_RECTIFYING
    hazard.rework_count += 1
    if day is not None and day != hazard.deadline:
        hazard.deadline, hazard.overdue_at = day, None
        hazard.deadline_at = deadlines.end_of_day(day, config)
    # A new round: watch the deadline again (reminding at once if it has passed).
    await deadlines.watch_hazard(threads, hazard)
    await _took(threads, actor, hazard, "verify_fail", H_SUBMITTED, text)


async def close(
    threads: CaseThreads, actor: Actor, cap: Capacity, hazard: Hazard, note: str
) -> None:
    """A chief closes out (销号) a verified major hazard."""
    _need(cap.chief, hazard, "close", "chief")
    _state(hazard, (H_VERIFIED,), "close")
    hazard.status, hazard.closed_at = H_CLOSED, datetime.now(UTC)
    await _took(threads, actor, hazard, "close", H_VERIFIED, note)


async def supervise(
    threads: CaseThreads, actor: Actor, cap: Capacity, hazard: Hazard, note: str
) -> None:
    """A level-2 or level-1 chief puts the hazard under supervision (挂牌督办)."""
    _need(cap.chief, hazard, "supervise", "chief")
    _state(hazard, (*HAZARD_OPEN, H_SUBMITTED, H_VERIFIED), "supervise")
    if hazard.supervised:
        raise _refuse(hazard, "already_supervised", by=hazard.supervised_by or "")
    hazard.supervised, hazard.supervised_by = True, actor.name
    await _took(threads, actor, hazard, "supervise", hazard.status, note)


# --- overdue ------------------------------------------------------------------------------------


def still_due(hazard: Hazard | None, payload: dict[str, Any]) -> bool:
    """Whether a deadline job still concerns the hazard: open, same deadline, same round."""
    return (
        hazard is not None
        and hazard.status in HAZARD_OPEN
        and hazard.deadline_at.isoformat() == payload["deadline_at"]
        and hazard.rework_count == payload.get("round", 0)
    )


async def remind_overdue(threads: CaseThreads, hazard: Hazard, n: int, late: bool) -> None:
    """Flag the hazard overdue (once) and ring the enterprise and its member(s)."""
    now = datetime.now(UTC)
    if hazard.overdue_at is None:
        hazard.overdue_at = now
        threads.record(Actor.system(), hazard.code, "overdue", hazard.status, hazard.status)
    ar = await threads.circle(hazard)
    await threads.tell(
        hazard.code,
        [Audience(await threads.home(hazard.code, ar), unite(ar.staff, ar.members), rings=True)],
        "hazard_overdue",
        h=hazard,
        ent=ar.enterprise,
        n=n,
        late=late,
        days=_days_over(hazard, now),
    )
    await deadlines.remind_again(threads, hazard, n + 1, now)


async def escalate_overdue(threads: CaseThreads, hazard: Hazard, late: bool) -> None:
    """Ring the level-2 chief (and the level-1 chief for a major or supervised hazard)."""
    now = datetime.now(UTC)
    threads.record(Actor.system(), hazard.code, "overdue_escalate", hazard.status, hazard.status)
    ar = await threads.circle(hazard)
    chiefs = [Audience(ar.l2_room, ar.l2_chiefs, rings=True)]
    if hazard.grade == MAJOR or hazard.supervised:
        chiefs.append(Audience(ar.l1_room, ar.l1_chiefs, rings=True))
    if not any(a.room for a in chiefs):
        # No grid room known: say it where the case lives, mentioning the level-2 chief.
        chiefs = [Audience(await threads.home(hazard.code, ar), ar.l2_chiefs, rings=True)]
    await threads.tell(
        hazard.code,
        chiefs,
        "hazard_overdue_chief",
        h=hazard,
        ent=ar.enterprise,
        late=late,
        days=_days_over(hazard, now),
    )


def _days_over(hazard: Hazard, now: datetime) -> int:
    return max(0, (now - hazard.deadline_at).days)

"""Requests (问题诉求) climbing the grid one level at a time: member → level 2 → level 1.

At each level someone must take it (受理) within that level's working-hour deadline, or it
goes up by itself; the requester is told at every move where it stands.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bot.config import Config
from handlers.cases import deadlines
from handlers.cases.support import (
    Actor,
    Poster,
    Refusal,
    home_room,
    reply_target,
)
from storage import cases
from storage.cases import LEVELS, R_OPEN, R_RESOLVED, R_TAKEN, REQUEST, CaseRequest
from storage.directory import Contact, EnterpriseCircle, Standing, circle_of, unite


def handlers_at(ar: EnterpriseCircle, level: str) -> list[Contact]:
    """Who answers a request at a level (and is mentioned when it arrives there)."""
    if level == "member":
        return ar.members
    if level == "level2":
        return unite(ar.l2_chiefs, ar.l2_office)
    return unite(ar.l1_chiefs, ar.l1_office)


def room_at(ar: EnterpriseCircle, level: str) -> str | None:
    return ar.l1_room if level == "level1" else ar.l2_room


def can_handle(st: Standing, level: str) -> bool:
    if level == "member":
        return st.serves
    if level == "level2":
        return st.l2_chief or st.l2_office
    return st.l1_chief or st.l1_office


def can_resolve(st: Standing, level: str) -> bool:
    """The level holding it, or anyone above it, may solve it."""
    return any(can_handle(st, lv) for lv in LEVELS[LEVELS.index(level) :])


def next_level(level: str) -> str | None:
    i = LEVELS.index(level)
    return LEVELS[i + 1] if i + 1 < len(LEVELS) else None


def requesters(req: CaseRequest) -> list[Contact]:
    return [Contact(req.raiser_name, req.raised_by)]


async def raise_request(
    poster: Poster, actor: Actor, config: Config, enterprise_id: int, text: str, level: str
) -> CaseRequest:
    session = poster.session
    now = datetime.now(UTC)
    code = await cases.next_code(session, REQUEST, now.astimezone(config.tz).year)
    req = CaseRequest(
        code=code,
        enterprise_id=enterprise_id,
        text=text,
        status=R_OPEN,
        level=level,
        deadline_at=deadlines.request_deadline(config, level, now),
        raised_by=actor.user_id,
        raiser_name=actor.name,
        raised_at=now,
        escalations=0,
    )
    session.add(req)
    cases.record(
        session,
        code,
        "raise",
        None,
        req.state,
        actor=actor.user_id,
        actor_name=actor.name,
        room_id=actor.room_id,
        note=text,
    )
    ar = await circle_of(session, enterprise_id)
    home = ar.ent_room or actor.room_id
    assert home is not None
    values = {"r": req, "ent": ar.enterprise}
    await poster.post(code, home, "request_posted", mentions=handlers_at(ar, level), **values)
    room = room_at(ar, level)
    if room and room != home:
        await poster.post(
            code,
            room,
            "request_alert",
            mentions=handlers_at(ar, level),
            action="raise",
            note="",
            **values,
        )
    await deadlines.watch_request(session, req)
    return req


async def _tell(
    poster: Poster,
    actor: Actor,
    req: CaseRequest,
    ar: EnterpriseCircle,
    action: str,
    from_state: str,
    note: str,
) -> None:
    """Tell the requester in the request's home thread where it stands now."""
    home = await home_room(poster.session, req.code) or ar.ent_room or actor.room_id
    assert home is not None
    await poster.post(
        req.code,
        home,
        "request_update",
        reply_to=reply_target(actor, home),
        mentions=requesters(req),
        r=req,
        ent=ar.enterprise,
        action=action,
        from_state=from_state,
        actor=actor.name,
        note=note,
    )


def _record(
    poster: Poster, actor: Actor, req: CaseRequest, action: str, old: str, note: str
) -> None:
    cases.record(
        poster.session,
        req.code,
        action,
        old,
        req.state,
        actor=actor.user_id,
        actor_name=actor.name,
        room_id=actor.room_id,
        note=note,
    )


def _open(req: CaseRequest, action: str, allowed: tuple[str, ...] = (R_OPEN,)) -> None:
    if req.status not in allowed:
        raise Refusal("bad_state", action=action, status=req.state)


async def take(poster: Poster, actor: Actor, st: Standing, req: CaseRequest) -> None:
    if not can_handle(st, req.level):
        raise Refusal("not_allowed", action="take", who=f"level_{req.level}")
    _open(req, "take")
    old = req.state
    req.status, req.taken_by, req.taken_at = R_TAKEN, actor.name, datetime.now(UTC)
    _record(poster, actor, req, "take", old, "")
    await deadlines.unwatch_request(poster.session, req)
    ar = await circle_of(poster.session, req.enterprise_id)
    await _tell(poster, actor, req, ar, "take", old, "")


async def resolve(poster: Poster, actor: Actor, st: Standing, req: CaseRequest, note: str) -> None:
    if not can_resolve(st, req.level):
        raise Refusal("not_allowed", action="resolve", who=f"level_{req.level}_up")
    _open(req, "resolve", (R_OPEN, R_TAKEN))
    if not note.strip():
        raise Refusal("need_resolution")
    old = req.state
    req.status, req.resolved_by = R_RESOLVED, actor.name
    req.resolution, req.resolved_at = note, datetime.now(UTC)
    _record(poster, actor, req, "resolve", old, note)
    await deadlines.unwatch_request(poster.session, req)
    ar = await circle_of(poster.session, req.enterprise_id)
    await _tell(poster, actor, req, ar, "resolve", old, note)
    room = room_at(ar, req.level)
    if room and room != await home_room(poster.session, req.code):
        await poster.post(
            req.code,
            room,
            "request_update",
            reply_to=reply_target(actor, room),
            mentions=[],
            r=req,
            ent=ar.enterprise,
            action="resolve",
            from_state=old,
            actor=actor.name,
            note=note,
        )


async def pass_up(
    poster: Poster, actor: Actor, st: Standing | None, config: Config, req: CaseRequest, note: str
) -> None:
    """Send the request one level up: by whoever holds it now, or by the system (st None) when
    its deadline passed with nobody taking it."""
    auto = st is None
    if st is not None and not can_handle(st, req.level):
        raise Refusal("not_allowed", action="escalate", who=f"level_{req.level}")
    _open(req, "escalate", (R_OPEN, R_TAKEN))
    up = next_level(req.level)
    if up is None:
        raise Refusal("top_level")
    old = req.state
    await deadlines.unwatch_request(poster.session, req)
    now = datetime.now(UTC)
    req.level, req.status = up, R_OPEN
    req.taken_by = req.taken_at = None
    req.deadline_at = deadlines.request_deadline(config, up, now)
    req.escalations += 1
    action = "auto_escalate" if auto else "escalate"
    _record(poster, actor, req, action, old, note)
    await deadlines.watch_request(poster.session, req)
    ar = await circle_of(poster.session, req.enterprise_id)
    await _tell(poster, actor, req, ar, action, old, note)
    room = room_at(ar, up)
    if room:
        await poster.post(
            req.code,
            room,
            "request_alert",
            mentions=handlers_at(ar, up),
            r=req,
            ent=ar.enterprise,
            action=action,
            note=note,
        )


async def top_overdue(poster: Poster, req: CaseRequest, late: bool) -> None:
    """At level 1 there is nowhere higher: remind level 1 and tell the requester, once."""
    cases.record(
        poster.session,
        req.code,
        "overdue",
        req.state,
        req.state,
        actor=cases.SYSTEM,
        actor_name=cases.SYSTEM,
        room_id=None,
    )
    ar = await circle_of(poster.session, req.enterprise_id)
    room = room_at(ar, req.level)
    if room:
        await poster.post(
            req.code,
            room,
            "request_overdue",
            mentions=handlers_at(ar, req.level),
            r=req,
            ent=ar.enterprise,
            late=late,
        )
    await _tell(poster, Actor.system(), req, ar, "overdue", req.state, "")

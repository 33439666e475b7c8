"""Requests (问题诉求) climbing the grid one level at a time: member → level 2 → level 1.

At each level someone must take it (受理) within that level's working-hour deadline, or it
goes up by itself; those who must take it are rung in their level's room, and the requester
is told at every move where it stands.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from handlers.cases import deadlines
from handlers.cases.actors import Actor
from handlers.cases.refusals import CaseError
from handlers.cases.threads import Audience, CaseThreads
from storage.cases import LEVELS, R_OPEN, R_RESOLVED, R_TAKEN, REQUEST, CaseRequest
from storage.directory import Capacity, Contact, EnterpriseCircle, unite


def handlers_at(ar: EnterpriseCircle, level: str) -> list[Contact]:
    """Who answers a request at a level (and is rung when it arrives there)."""
    if level == "member":
        return ar.members
    if level == "level2":
        return unite(ar.l2_chiefs, ar.l2_office)
    return unite(ar.l1_chiefs, ar.l1_office)


def room_at(ar: EnterpriseCircle, level: str) -> str | None:
    return ar.l1_room if level == "level1" else ar.l2_room


def can_handle(cap: Capacity, level: str) -> bool:
    if level == "member":
        return cap.serves
    if level == "level2":
        return cap.l2_chief or cap.l2_office
    return cap.l1_chief or cap.l1_office


def can_resolve(cap: Capacity, level: str) -> bool:
    """The level holding it, or anyone above it, may solve it."""
    return any(can_handle(cap, lv) for lv in LEVELS[LEVELS.index(level) :])


def next_level(level: str) -> str | None:
    i = LEVELS.index(level)
    return LEVELS[i + 1] if i + 1 < len(LEVELS) else None


def requesters(req: CaseRequest) -> list[Contact]:
    return [Contact(req.raiser_name, req.raised_by)]


async def raise_request(
    threads: CaseThreads, actor: Actor, enterprise_id: int, text: str, level: str
) -> CaseRequest:
    now = datetime.now(UTC)
    req = CaseRequest(
        code=await threads.new_code(REQUEST, now),
        enterprise_id=enterprise_id,
        text=text,
        status=R_OPEN,
        level=level,
        deadline_at=deadlines.request_deadline(threads.config, level, now),
        raised_by=actor.user_id,
        raiser_name=actor.name,
        raised_at=now,
        escalations=0,
    )
    ar = await threads.open(req, actor, "raise", req.state, text)
    home = ar.ent_room or actor.room_id
    # Those who must take it are rung once: in their level's room, or here if that is this one.
    elsewhere = room_at(ar, level) not in (None, home)
    home_audience = Audience(home, handlers_at(ar, level), rings=not elsewhere)
    await threads.tell(req.code, [home_audience], "request_posted", r=req, ent=ar.enterprise)
    if elsewhere:
        await _ring_level(threads, req, ar, "request_alert", action="raise", note="")
    await deadlines.watch_request(threads, req)
    return req


async def _ring_level(
    threads: CaseThreads, req: CaseRequest, ar: EnterpriseCircle, template: str, **values: Any
) -> None:
    """Ring those who must take the request at its level: in their level's room, or in the
    request's home thread when their level has no room."""
    room = room_at(ar, req.level) or await threads.home(req.code, ar)
    audience = Audience(room, handlers_at(ar, req.level), rings=True)
    await threads.tell(req.code, [audience], template, r=req, ent=ar.enterprise, **values)


async def _tell_requester(
    threads: CaseThreads,
    actor: Actor,
    req: CaseRequest,
    ar: EnterpriseCircle,
    action: str,
    from_state: str,
    note: str,
    *also: Audience,
) -> None:
    """Tell the requester in the request's home thread where it stands now (and ``also`` other
    rooms, for the record)."""
    await threads.step_taken(
        req.code,
        ar,
        actor,
        "request_update",
        home=requesters(req),
        also=also,
        r=req,
        action=action,
        from_state=from_state,
        note=note,
    )


def _open(req: CaseRequest, action: str, allowed: tuple[str, ...] = (R_OPEN,)) -> None:
    if req.status not in allowed:
        raise CaseError("bad_state", req.code, REQUEST, action=action, status=req.state)


def _need(ok: bool, req: CaseRequest, action: str, who: str) -> None:
    if not ok:
        raise CaseError("not_allowed", req.code, REQUEST, action=action, who=who)


async def take(
    threads: CaseThreads, actor: Actor, cap: Capacity, req: CaseRequest, _note: str = ""
) -> None:
    _need(can_handle(cap, req.level), req, "take", f"level_{req.level}")
    _open(req, "take")
    old = req.state
    req.status, req.taken_by, req.taken_at = R_TAKEN, actor.name, datetime.now(UTC)
    threads.record(actor, req.code, "take", old, req.state)
    await deadlines.unwatch_request(threads, req)
    ar = await threads.circle(req)
    await _tell_requester(threads, actor, req, ar, "take", old, "")


async def resolve(
    threads: CaseThreads, actor: Actor, cap: Capacity, req: CaseRequest, note: str
) -> None:
    _need(can_resolve(cap, req.level), req, "resolve", f"level_{req.level}_up")
    _open(req, "resolve", (R_OPEN, R_TAKEN))
    if not note.strip():
        raise CaseError("need_resolution", req.code, REQUEST)
    old = req.state
    req.status, req.resolved_by = R_RESOLVED, actor.name
    req.resolution, req.resolved_at = note, datetime.now(UTC)
    threads.record(actor, req.code, "resolve", old, req.state, note)
    await deadlines.unwatch_request(threads, req)
    ar = await threads.circle(req)
    level_room = Audience(room_at(ar, req.level))
    await _tell_requester(threads, actor, req, ar, "resolve", old, note, level_room)


async def pass_up(
    threads: CaseThreads, actor: Actor, cap: Capacity | None, req: CaseRequest, note: str
) -> None:
    """Send the request one level up: by whoever holds it now, or by the system (cap None)
    when its deadline passed with nobody taking it."""
    auto = cap is None
    if cap is not None:
        _need(can_handle(cap, req.level), req, "escalate", f"level_{req.level}")
    _open(req, "escalate", (R_OPEN, R_TAKEN))
    up = next_level(req.level)
    if up is None:
        raise CaseError("top_level", req.code, REQUEST)
    old = req.state
    await deadlines.unwatch_request(threads, req)
    now = datetime.now(UTC)
    req.level, req.status = up, R_OPEN
    req.taken_by = req.taken_at = None
    req.deadline_at = deadlines.request_deadline(threads.config, up, now)
    req.escalations += 1
    action = "auto_escalate" if auto else "escalate"
    threads.record(actor, req.code, action, old, req.state, note)
    await deadlines.watch_request(threads, req)
    ar = await threads.circle(req)
    await _tell_requester(threads, actor, req, ar, action, old, note)
    await _ring_level(threads, req, ar, "request_alert", action=action, note=note)


async def top_overdue(threads: CaseThreads, req: CaseRequest, late: bool) -> None:
    """At level 1 there is nowhere higher: ring level 1 and tell the requester, once."""
    system = Actor.system()
    threads.record(system, req.code, "overdue", req.state, req.state)
    ar = await threads.circle(req)
    await _ring_level(threads, req, ar, "request_overdue", late=late)
    await _tell_requester(threads, system, req, ar, "overdue", req.state, "")

"""Accidents (生产安全事故): relayed at once to every level, follow-ups (续报) in their threads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.config import Config
from handlers.cases.hazard_rules import show_photos
from handlers.cases.support import Actor, Poster, Refusal, home_room, reply_target
from storage import cases
from storage.cases import A_REPORTED, ACCIDENT, Accident
from storage.directory import Standing, circle_of, unite


def minutes_since(occurred_at: datetime, now: datetime) -> int:
    return max(0, int((now - occurred_at).total_seconds() // 60))


async def report(
    poster: Poster, actor: Actor, config: Config, enterprise_id: int, data: dict[str, Any]
) -> tuple[Accident, list[str]]:
    """Store the accident and relay it: enterprise room, level-2 room (members, chief),
    level-1 room (chief, office). Returns the kinds of upper room that are missing."""
    session = poster.session
    now = datetime.now(UTC)
    code = await cases.next_code(session, ACCIDENT, now.astimezone(config.tz).year)
    acc = Accident(
        code=code,
        enterprise_id=enterprise_id,
        status=A_REPORTED,
        occurred_at=datetime.fromisoformat(data["occurred_at"]).astimezone(UTC),
        place=data["place"],
        type=data["type"],
        dead=data["dead"],
        injured=data["injured"],
        missing=data["missing"],
        vehicles=data.get("vehicles", ""),
        account=data.get("account", ""),
        photos=list(data.get("photos") or []),
        updates=0,
        reported_by=actor.user_id,
        reporter_name=actor.name,
        reported_at=now,
    )
    session.add(acc)
    cases.record(
        session,
        code,
        "report",
        None,
        A_REPORTED,
        actor=actor.user_id,
        actor_name=actor.name,
        room_id=actor.room_id,
        note=acc.account,
    )
    ar = await circle_of(session, enterprise_id)
    minutes = minutes_since(acc.occurred_at, now)
    values = {"a": acc, "ent": ar.enterprise, "minutes": minutes, "reporter": actor.name}
    home = ar.ent_room or actor.room_id
    assert home is not None
    await poster.post(code, home, "accident_posted", mentions=ar.members, **values)
    await show_photos(poster, code, home, acc.photos, "accident")
    missing = []
    for kind, room, people in (
        ("l2_room", ar.l2_room, unite(ar.members, ar.l2_chiefs)),
        ("l1_room", ar.l1_room, unite(ar.l1_chiefs, ar.l1_office)),
    ):
        if room is None:
            missing.append(kind)
            continue
        await poster.post(code, room, "accident_alert", mentions=people, **values)
        await show_photos(poster, code, room, acc.photos, "accident")
    return acc, missing


async def update(poster: Poster, actor: Actor, st: Standing, acc: Accident, text: str) -> None:
    """A follow-up report (续报): recorded, and posted in the accident's thread in every room."""
    if not (st.ent_staff or st.l2_handler or st.l1_chief or st.l1_office):
        raise Refusal("not_allowed", action="update", who="accident_update")
    if not text.strip():
        raise Refusal("need_update_text")
    acc.updates += 1
    cases.record(
        poster.session,
        acc.code,
        "update",
        acc.status,
        acc.status,
        actor=actor.user_id,
        actor_name=actor.name,
        room_id=actor.room_id,
        note=text,
    )
    ar = await circle_of(poster.session, acc.enterprise_id)
    home = await home_room(poster.session, acc.code) or ar.ent_room or actor.room_id
    now = datetime.now(UTC)
    values = {
        "a": acc,
        "ent": ar.enterprise,
        "text": text,
        "actor": actor.name,
        "minutes": minutes_since(acc.occurred_at, now),
    }
    rooms = [home, ar.l2_room, ar.l1_room]
    done: set[str] = set()
    for room in rooms:
        if room and room not in done:
            done.add(room)
            await poster.post(
                acc.code,
                room,
                "accident_update",
                reply_to=reply_target(actor, room),
                mentions=[],
                **values,
            )

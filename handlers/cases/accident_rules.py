"""Accidents (生产安全事故): relayed at once to every level, follow-ups (续报) in their threads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from handlers.cases.actors import Actor
from handlers.cases.refusals import CaseError
from handlers.cases.threads import Audience, CaseThreads
from storage.cases import A_REPORTED, ACCIDENT, Accident
from storage.directory import Capacity


def minutes_since(occurred_at: datetime, now: datetime) -> int:
    return max(0, int((now - occurred_at).total_seconds() // 60))


async def report(
    threads: CaseThreads, actor: Actor, data: dict[str, Any]
) -> tuple[Accident, list[str]]:
    """Store the accident and relay it, ringing the enterprise room (the members serving it)
    and every level above. Returns the kinds of upper room that are missing."""
    now = datetime.now(UTC)
    acc = Accident(
        code=await threads.new_code(ACCIDENT, now),
        enterprise_id=data["enterprise_id"],
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
        files=list(data.get("files") or []),
        updates=0,
        reported_by=actor.user_id,
        reporter_name=actor.name,
        reported_at=now,
    )
    ar = await threads.open(acc, actor, "report", A_REPORTED, acc.account)
    minutes = minutes_since(acc.occurred_at, now)
    values = {"a": acc, "ent": ar.enterprise, "minutes": minutes, "reporter": actor.name}
    home = Audience(ar.ent_room or actor.room_id, ar.members, rings=True)
    files, stage = acc.files, "accident"
    await threads.tell(
        acc.code, [home], "accident_posted", photos=acc.photos, files=files, stage=stage, **values
    )
    missing = await threads.alert_upper_levels(
        acc.code, ar, "accident_alert", photos=acc.photos, files=files, stage=stage, **values
    )
    return acc, missing


async def update(
    threads: CaseThreads, actor: Actor, cap: Capacity, acc: Accident, text: str
) -> None:
    """A follow-up report (续报): recorded, and posted in the accident's thread in every room."""
    if not (cap.ent_staff or cap.l2_handler or cap.l1_chief or cap.l1_office):
        raise CaseError("not_allowed", acc.code, ACCIDENT, action="update", who="accident_update")
    if not text.strip():
        raise CaseError("need_update_text", acc.code, ACCIDENT)
    acc.updates += 1
    threads.record(actor, acc.code, "update", acc.status, acc.status, text)
    ar = await threads.circle(acc)
    await threads.step_taken(
        acc.code,
        ar,
        actor,
        "accident_update",
        also=[Audience(ar.l2_room), Audience(ar.l1_room)],
        a=acc,
        text=text,
        minutes=minutes_since(acc.occurred_at, datetime.now(UTC)),
    )

"""Publish a notice: rows, outbox messages and jobs, all in the caller's one transaction.

Everything is written before anything is sent: the notice, one target per enterprise, one
outbox row per message (post, attachments, level-2 copies) with one delivery row each, and the
notice's jobs. The sender then works from the outbox (a transaction id fixed per message), so
a crash mid-broadcast resumes on restart and no room gets the notice twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import scheduler
from bot.config import Config
from bot.context import Services
from storage import notices as N
from storage import outbox
from storage.directory import ENTERPRISE_ROOM, L2_ROOM, Contact, enterprise_contacts, rooms_of
from storage.models import Enterprise, OutboxMessage

# Job kinds (handled in handlers/notices/jobs.py).
JOB_REMIND = "notice-remind"
JOB_SUMMARY = "notice-summary"
JOB_ESCALATE_MEMBER = "notice-escalate-member"
JOB_ESCALATE_CHIEF = "notice-escalate-chief"
JOB_DELIVERY = "notice-delivery"
JOB_CALENDAR = "notice-calendar"
DELIVERY_CHECK_SECONDS = 3


def default_within_hours(config: Config, kind: str) -> int:
    t = config.timing.notices
    return {
        N.REQUIREMENT: t.requirement_hours,
        N.ACCIDENT_CASE: t.accident_case_hours,
        N.INSPECTION_BULLETIN: t.inspection_bulletin_hours,
    }.get(kind, t.safety_reminder_hours)


def queue(
    session: AsyncSession,
    services: Services,
    room_id: str,
    template: str,
    /,
    *,
    locale: str,
    cause: str,
    msgtype: str = "m.notice",
    mentions: list[Contact] | None = None,
    **values: Any,
) -> OutboxMessage:
    """Render a template into the outbox. Messages that must reach a person's phone are m.text:
    the default push rules mute m.notice, even when it mentions someone."""
    content = services.messages.render(locale, template, **values).content(msgtype)
    content["m.mentions"] = {"user_ids": sorted({m.user_id for m in mentions or []})}
    return outbox.enqueue(session, room_id, content, cause=cause)


def attachment_content(media: dict[str, Any]) -> dict[str, Any]:
    return {
        "msgtype": media.get("msgtype") or "m.file",
        "body": media.get("name") or "attachment",
        "url": media["url"],
        "info": media.get("info") or {},
        "m.mentions": {},
    }


@dataclass
class Draft:
    """A notice as the issuer put it together, before it has a number."""

    origin: str  # broadcast | notice | remind | calendar
    kind: str
    text: str
    within_hours: int
    issuer: str
    issuer_name: str
    issuer_role: str | None
    issuer_where: str | None
    issuer_room: str | None
    locale: str
    filter: dict[str, Any] = field(default_factory=dict)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    # /remind and the calendar mention each enterprise's chief in the post.
    mention_contacts: bool = False


@dataclass
class Preview:
    """What the issuer is asked to confirm."""

    targets: int
    rooms: int
    no_room: list[str]
    l2_rooms: int
    deadline: datetime


async def preview(
    session: AsyncSession, enterprises: list[Enterprise], within_hours: int, issuer_room: str
) -> Preview:
    rooms = await rooms_of(session, ENTERPRISE_ROOM, [e.id for e in enterprises])
    grids = await rooms_of(session, L2_ROOM, {e.grid_id for e in enterprises})
    return Preview(
        targets=len(enterprises),
        rooms=len(rooms),
        no_room=[e.name for e in enterprises if e.id not in rooms],
        l2_rooms=sum(1 for r in grids.values() if r != issuer_room),
        deadline=datetime.now(UTC) + timedelta(hours=within_hours),
    )


@dataclass
class Published:
    notice: N.Notice
    posted: int
    no_room: list[str]
    l2_copies: int


async def publish(
    session: AsyncSession, services: Services, draft: Draft, enterprises: list[Enterprise]
) -> Published:
    config = services.config
    now = datetime.now(UTC)
    code = await N.allocate_code(session, now.astimezone(config.tz).year)
    notice = N.Notice(
        code=code,
        origin=draft.origin,
        kind=draft.kind,
        text=draft.text,
        attachments=list(draft.attachments),
        issuer=draft.issuer,
        issuer_name=draft.issuer_name,
        issuer_room=draft.issuer_room,
        locale=draft.locale,
        scope={"role": draft.issuer_role, "where": draft.issuer_where, "filter": draft.filter},
        created_at=now,
        deadline=now + timedelta(hours=draft.within_hours),
        target_count=len(enterprises),
        progress_reported=0,
    )
    session.add(notice)
    await session.flush()

    ids = [e.id for e in enterprises]
    rooms = await rooms_of(session, ENTERPRISE_ROOM, ids)
    contacts = await enterprise_contacts(session, ids) if draft.mention_contacts else {}
    targets = [
        N.NoticeTarget(
            notice_id=notice.id,
            enterprise_id=e.id,
            enterprise_name=e.name,
            grid_id=e.grid_id,
            room_id=rooms.get(e.id),
            delivery=N.PENDING if e.id in rooms else N.NO_ROOM,
        )
        for e in enterprises
    ]
    session.add_all(targets)
    await session.flush()

    cause = f"notice:{code}"
    values = _post_values(notice, draft, config)
    carried: list[tuple[OutboxMessage, N.NoticeTarget | None, str]] = []
    for t in targets:
        if t.room_id is None:
            continue
        who = contacts.get(t.enterprise_id, [])
        msg = queue(
            session,
            services,
            t.room_id,
            "notice_post",
            locale=config.language,
            cause=cause,
            msgtype="m.text",
            mentions=who,
            enterprise=t.enterprise_name,
            contacts=[m.as_dict() for m in who],
            **values,
        )
        carried.append((msg, t, N.PART_POST))
        for media in draft.attachments:
            carried.append(
                (outbox.enqueue(session, t.room_id, attachment_content(media), cause=cause), t,
                 N.PART_ATTACHMENT)
            )  # fmt: skip

    # One copy per level-2 room involved, for the chiefs' awareness (not in the issuing room).
    by_grid: dict[int, list[str]] = {}
    for e in enterprises:
        by_grid.setdefault(e.grid_id, []).append(e.name)
    copies = 0
    for grid_id, room_id in (await rooms_of(session, L2_ROOM, by_grid)).items():
        if room_id == draft.issuer_room:
            continue
        msg = queue(
            session,
            services,
            room_id,
            "notice_l2_copy",
            locale=config.language,
            cause=cause,
            enterprises=by_grid[grid_id],
            **values,
        )
        carried.append((msg, None, N.PART_L2_COPY))
        for media in draft.attachments:
            carried.append(
                (outbox.enqueue(session, room_id, attachment_content(media), cause=cause), None,
                 N.PART_L2_COPY)
            )  # fmt: skip
        copies += 1

    await session.flush()  # outbox ids for the delivery rows
    session.add_all(
        N.NoticeDelivery(
            notice_id=notice.id,
            target_id=t.id if t else None,
            room_id=msg.room_id,
            part=part,
            outbox_id=msg.id,
            status=N.PENDING,
        )
        for msg, t, part in carried
    )
    await schedule_jobs(session, config, notice, delivery=bool(carried))
    return Published(
        notice=notice,
        posted=sum(1 for t in targets if t.room_id),
        no_room=[t.enterprise_name for t in targets if t.room_id is None],
        l2_copies=copies,
    )


def _post_values(notice: N.Notice, draft: Draft, config: Config) -> dict[str, Any]:
    return {
        "code": notice.code,
        "kind": notice.kind,
        "text": notice.text,
        "issuer_name": draft.issuer_name,
        "issuer_role": draft.issuer_role,
        "issuer_where": draft.issuer_where,
        "deadline": notice.deadline.astimezone(config.tz),
        "attachments": len(draft.attachments),
        "origin": draft.origin,
    }


async def schedule_jobs(
    session: AsyncSession, config: Config, notice: N.Notice, *, delivery: bool
) -> None:
    t = config.timing.notices
    payload = {"notice_id": notice.id}
    window = notice.deadline - notice.created_at
    for i, fraction in enumerate(sorted(set(t.remind_at_fractions))):
        if 0 < fraction < 1:
            due = notice.created_at + window * fraction
            await scheduler.schedule(
                session, JOB_REMIND, f"notice:{notice.code}:remind:{i}", due, payload
            )
    await scheduler.schedule(
        session, JOB_SUMMARY, f"notice:{notice.code}:summary", notice.deadline, payload
    )
    member_at = notice.deadline + timedelta(hours=t.escalate_member_after_hours)
    chief_at = notice.deadline + timedelta(
        hours=max(t.escalate_chief_after_hours, t.escalate_member_after_hours)
    )
    await scheduler.schedule(
        session, JOB_ESCALATE_MEMBER, f"notice:{notice.code}:escalate-member", member_at, payload
    )
    await scheduler.schedule(
        session, JOB_ESCALATE_CHIEF, f"notice:{notice.code}:escalate-chief", chief_at, payload
    )
    if delivery:
        await schedule_check(session, notice, chain="main", n=0, due=notice.created_at)


async def schedule_check(
    session: AsyncSession,
    notice: N.Notice,
    *,
    chain: str,
    n: int,
    due: datetime,
    interval: int = DELIVERY_CHECK_SECONDS,
) -> None:
    """The n-th delivery check of a chain (the fan-out, or one round of reminders)."""
    await scheduler.schedule(
        session,
        JOB_DELIVERY,
        f"notice:{notice.code}:delivery:{chain}:{n}",
        due,
        {"notice_id": notice.id, "chain": chain, "n": n, "interval": interval},
    )

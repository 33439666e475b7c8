"""A notice's scheduled work: delivery progress, reminders, the deadline summary, escalation.

Each notice gets its job rows when it is published (handlers/notices/publish.py): reminders at
the configured fractions of its window, the issuer's summary at the deadline, then the
responsible level-2 member(s) and later the level-2 chief are told which enterprises stay
silent. A delivery check follows the fan-out, reports progress and unreachable rooms, and
copies the event ids of sent messages so reactions find their target by index.
The calendar planner turns ``timing.notices.calendar`` into reminder jobs ahead of time.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import scheduler
from bot.config import CalendarReminder
from bot.context import Services
from bot.scheduler import JobContext, job, planner
from handlers.notices.options import Filter, resolve
from handlers.notices.publish import (
    DELIVERY_CHECK_SECONDS,
    JOB_CALENDAR,
    JOB_DELIVERY,
    JOB_ESCALATE_CHIEF,
    JOB_ESCALATE_MEMBER,
    JOB_REMIND,
    JOB_SUMMARY,
    Draft,
    publish,
    queue,
    schedule_check,
)
from storage import notices as N
from storage.directory import (
    L2_ROOM,
    Contact,
    Reach,
    admin_rooms,
    enterprise_contacts,
    enterprises_in,
    grid_names,
    holders_by_grid,
    rooms_of,
    serving_members_by_enterprise,
)
from storage.models import RoleKind, RoomInfo, ScheduledJob

log = logging.getLogger(__name__)

PROGRESS_STEPS = (25, 50, 75, 100)
MAX_CHECK_SECONDS = 300
LIST_LIMIT = 30  # names listed in one message; the rest are counted


async def _notice(ctx: JobContext) -> N.Notice | None:
    # No double runs to guard against here: the scheduler claims each job in this transaction.
    notice = await ctx.session.get(N.Notice, ctx.payload.get("notice_id"))
    if notice is None:
        log.error("job %s: notice %s is gone", ctx.job.key, ctx.payload.get("notice_id"))
    return notice


async def _issuer_rooms(session: AsyncSession, notice: N.Notice) -> list[str]:
    """Where the issuer hears about their notice; the admin room(s) for the calendar's."""
    return [notice.issuer_room] if notice.issuer_room else await admin_rooms(session)


def _issuer_mention(notice: N.Notice) -> list[Contact]:
    return [Contact(notice.issuer_name, notice.issuer)] if notice.issuer else []


def _local(ctx: JobContext, when: datetime) -> datetime:
    return when.astimezone(ctx.services.config.tz)


def _title(notice: N.Notice) -> str:
    lines = notice.text.strip().splitlines()
    return lines[0][:60] if lines else ""


def _job_values(ctx: JobContext, notice: N.Notice) -> dict[str, Any]:
    return {
        "code": notice.code,
        "kind": notice.kind,
        "title": _title(notice),
        "deadline": _local(ctx, notice.deadline),
        "late": ctx.late,
        "due_at": _local(ctx, ctx.job.due_at),
    }


# --- delivery ------------------------------------------------------------------------------------


@job(JOB_DELIVERY)
async def check_delivery(ctx: JobContext) -> None:
    notice = await _notice(ctx)
    if notice is None:
        return
    session = ctx.session
    pending = await N.pending_deliveries(session, notice.id)
    targets = {t.id: t for t in await N.targets_of(session, notice.id)}
    failed_now: list[str] = []
    failed_l2: list[str] = []
    left = 0
    for d, o in pending:
        target = targets.get(d.target_id) if d.target_id else None
        if o.status == "sent":
            d.status, d.event_id = N.SENT, o.event_id
            if target is not None and d.part == N.PART_POST:
                target.delivery, target.delivered_at = N.SENT, o.sent_at
        elif o.status == "failed":
            d.status = N.FAILED
            if target is not None and d.part == N.PART_POST:
                target.delivery, target.delivery_error = N.FAILED, o.last_error
                failed_now.append(target.enterprise_name)
            elif d.part == N.PART_L2_COPY and d.room_id not in failed_l2:
                failed_l2.append(d.room_id)
        else:
            left += 1
    changed = left < len(pending)

    posts = [t for t in targets.values() if t.room_id is not None]
    sent = sum(1 for t in posts if t.delivery == N.SENT)
    failed = sum(1 for t in posts if t.delivery == N.FAILED)
    rooms = await _issuer_rooms(session, notice)
    percent = 100 * (sent + failed) // len(posts) if posts else 100
    step = max((s for s in PROGRESS_STEPS if s <= percent), default=0)
    if (
        notice.issuer_room
        and len(posts) >= ctx.services.config.timing.notices.progress_min_rooms
        and step > notice.progress_reported
    ):
        notice.progress_reported = step
        queue(
            session,
            ctx.services,
            notice.issuer_room,
            "notice_progress",
            locale=notice.locale,
            cause=f"job:{ctx.job.key}",
            code=notice.code,
            sent=sent,
            failed=failed,
            total=len(posts),
            percent=step,
        )
    if failed_now or failed_l2:
        grids = await _l2_room_names(session, failed_l2)
        for room in rooms:
            queue(
                session,
                ctx.services,
                room,
                "notice_undelivered",
                locale=notice.locale,
                cause=f"job:{ctx.job.key}",
                msgtype="m.text",
                mentions=_issuer_mention(notice),
                code=notice.code,
                enterprises=failed_now,
                l2_rooms=grids,
                issuer=_issuer_mention(notice)[0].as_dict() if notice.issuer else None,
            )
    if left == 0:
        notice.delivery_done_at = ctx.now
        return
    # Still sending: look again soon, less often while nothing moves (e.g. the server is away).
    n = int(ctx.payload.get("n") or 0)
    interval = int(ctx.payload.get("interval") or DELIVERY_CHECK_SECONDS)
    if changed or n == 0:
        interval = DELIVERY_CHECK_SECONDS
    else:
        interval = min(MAX_CHECK_SECONDS, interval * 2)
    await schedule_check(
        session,
        notice,
        chain=str(ctx.payload.get("chain") or "main"),
        n=n + 1,
        due=ctx.now + timedelta(seconds=interval),
        interval=interval,
    )


async def _l2_room_names(session: AsyncSession, room_ids: list[str]) -> list[str]:
    if not room_ids:
        return []
    infos = [await session.get(RoomInfo, r) for r in room_ids]
    names = await grid_names(session, [i.grid_id for i in infos if i and i.grid_id])
    return [
        names.get(i.grid_id, r) if i and i.grid_id else r
        for i, r in zip(infos, room_ids, strict=True)
    ]


# --- reminders before the deadline ---------------------------------------------------------------


@job(JOB_REMIND)
async def remind_silent(ctx: JobContext) -> None:
    notice = await _notice(ctx)
    if notice is None or ctx.now >= notice.deadline:
        return  # past the deadline escalation takes over
    silent = [
        t
        for t in await N.targets_of(ctx.session, notice.id)
        if t.acked_at is None and t.room_id and t.delivery in (N.PENDING, N.SENT)
    ]
    if not silent:
        return
    contacts = await enterprise_contacts(ctx.session, [t.enterprise_id for t in silent])
    language = ctx.services.config.language
    carried = []
    for t in silent:
        who = contacts.get(t.enterprise_id, [])
        assert t.room_id is not None
        msg = queue(
            ctx.session,
            ctx.services,
            t.room_id,
            "notice_reminder",
            locale=language,
            cause=f"job:{ctx.job.key}",
            msgtype="m.text",
            mentions=who,
            enterprise=t.enterprise_name,
            contacts=[m.as_dict() for m in who],
            left=notice.deadline - ctx.now,
            **_job_values(ctx, notice),
        )
        carried.append((msg, t))
    await ctx.session.flush()
    # A ✅ on the reminder counts like one on the notice.
    ctx.session.add_all(
        N.NoticeDelivery(
            notice_id=notice.id,
            target_id=t.id,
            room_id=msg.room_id,
            part=N.PART_REMINDER,
            outbox_id=msg.id,
            status=N.PENDING,
        )
        for msg, t in carried
    )
    await _schedule_late_check(ctx, notice)


async def _schedule_late_check(ctx: JobContext, notice: N.Notice) -> None:
    """Reminders are new deliveries: a check of their own copies their event ids."""
    chain = "remind-" + ctx.job.key.rsplit(":", 1)[-1]
    await schedule_check(ctx.session, notice, chain=chain, n=0, due=ctx.now)


# --- at and after the deadline -------------------------------------------------------------------


def _silent_items(targets: list[N.NoticeTarget]) -> list[dict[str, Any]]:
    return [
        {"name": t.enterprise_name, "undelivered": t.delivery in (N.FAILED, N.NO_ROOM)}
        for t in targets
    ]


@job(JOB_SUMMARY)
async def summarize(ctx: JobContext) -> None:
    notice = await _notice(ctx)
    if notice is None:
        return
    targets = await N.targets_of(ctx.session, notice.id)
    feedback = await N.feedback_counts(ctx.session, [t.id for t in targets])
    counts = N.count(targets, notice.deadline, feedback)
    silent = [t for t in targets if t.acked_at is None]
    for room in await _issuer_rooms(ctx.session, notice):
        queue(
            ctx.session,
            ctx.services,
            room,
            "notice_summary",
            locale=notice.locale,
            cause=f"job:{ctx.job.key}",
            msgtype="m.text",
            mentions=_issuer_mention(notice),
            counts=counts,
            rate=counts.on_time_rate,
            silent=_silent_items(silent[:LIST_LIMIT]),
            more=max(0, len(silent) - LIST_LIMIT),
            issuer=_issuer_mention(notice)[0].as_dict() if notice.issuer else None,
            **_job_values(ctx, notice),
        )


async def _silent_by_grid(
    ctx: JobContext, notice: N.Notice
) -> dict[int | None, list[N.NoticeTarget]]:
    grouped: dict[int | None, list[N.NoticeTarget]] = defaultdict(list)
    for t in await N.targets_of(ctx.session, notice.id):
        if t.acked_at is None:
            grouped[t.grid_id].append(t)
    return grouped


@job(JOB_ESCALATE_MEMBER)
async def escalate_to_members(ctx: JobContext) -> None:
    """Past the deadline: each level-2 room hears which of its enterprises are silent, with the
    responsible member(s) mentioned (and the chief, for enterprises nobody serves)."""
    await _escalate(ctx, to_chief=False)


@job(JOB_ESCALATE_CHIEF)
async def escalate_to_chief(ctx: JobContext) -> None:
    """Later still: the level-2 chief is mentioned with the enterprises that stay silent."""
    await _escalate(ctx, to_chief=True)


async def _escalate(ctx: JobContext, *, to_chief: bool) -> None:
    notice = await _notice(ctx)
    if notice is None:
        return
    by_grid = await _silent_by_grid(ctx, notice)
    if not by_grid:
        return
    grid_ids = [g for g in by_grid if g is not None]
    rooms = await rooms_of(ctx.session, L2_ROOM, grid_ids)
    names = await grid_names(ctx.session, grid_ids)
    chiefs = await holders_by_grid(ctx.session, {RoleKind.L2_CHIEF}, grid_ids, with_account=True)
    members = await serving_members_by_enterprise(
        ctx.session, [t.enterprise_id for ts in by_grid.values() for t in ts], with_account=True
    )
    unreachable: list[str] = []
    for grid_id, silent in by_grid.items():
        room = rooms.get(grid_id) if grid_id is not None else None
        if room is None:
            unreachable.append(names.get(grid_id, "?") if grid_id is not None else "?")
            continue
        items = [
            {
                "name": t.enterprise_name,
                "undelivered": t.delivery in (N.FAILED, N.NO_ROOM),
                "members": [m.as_dict() for m in members.get(t.enterprise_id, [])],
            }
            for t in silent
        ]
        unassigned = [i for i in items if not i["members"]]
        grid_chiefs = chiefs.get(grid_id, [])
        if to_chief:
            mentions = grid_chiefs
        else:
            mentions = [Contact(**m) for i in items for m in i["members"]]
            if unassigned:
                mentions += grid_chiefs
        queue(
            ctx.session,
            ctx.services,
            room,
            "notice_escalate_chief" if to_chief else "notice_escalate_member",
            locale=ctx.services.config.language,
            cause=f"job:{ctx.job.key}",
            msgtype="m.text",
            mentions=mentions,
            grid=names.get(grid_id, ""),
            silent=items[:LIST_LIMIT],
            more=max(0, len(items) - LIST_LIMIT),
            unassigned=len(unassigned),
            chiefs=[m.as_dict() for m in grid_chiefs],
            **_job_values(ctx, notice),
        )
    if unreachable:
        for room in await _issuer_rooms(ctx.session, notice):
            queue(
                ctx.session,
                ctx.services,
                room,
                "notice_escalate_no_room",
                locale=notice.locale,
                cause=f"job:{ctx.job.key}",
                grids=unreachable,
                to_chief=to_chief,
                **_job_values(ctx, notice),
            )


# --- the reminder calendar -----------------------------------------------------------------------


def calendar_key(entry: CalendarReminder) -> str:
    digest = hashlib.sha256(f"{entry.message}|{','.join(entry.domains)}".encode()).hexdigest()
    return f"notice-calendar:{entry.date.isoformat()}:{entry.hour}:{entry.kind}:{digest[:12]}"


@planner
async def plan_calendar(session: AsyncSession, services: Services, now: datetime) -> None:
    """Make a job for every configured reminder still ahead (idempotent by key), and drop the
    pending ones whose entry was edited or removed from the configuration since."""
    tz = services.config.tz
    wanted = set()
    for entry in services.config.timing.notices.calendar:
        due = datetime.combine(entry.date, time(entry.hour), tz).astimezone(UTC)
        if due > now:
            key = calendar_key(entry)
            wanted.add(key)
            row = await scheduler.schedule(
                session, JOB_CALENDAR, key, due, entry.model_dump(mode="json")
            )
            if row.outcome == "skipped":  # dropped by an earlier edit, now configured again
                row.done_at = row.outcome = None
    stale = await session.scalars(
        select(ScheduledJob.key).where(
            ScheduledJob.kind == JOB_CALENDAR,
            ScheduledJob.done_at.is_(None),
            ScheduledJob.due_at > now,
        )
    )
    for key in set(stale) - wanted:
        await scheduler.cancel(session, key)


@job(JOB_CALENDAR)
async def send_calendar_reminder(ctx: JobContext) -> None:
    entry = CalendarReminder.model_validate(ctx.payload)
    config = ctx.services.config
    everywhere = await enterprises_in(ctx.session, Reach(everything=True))
    found = resolve(everywhere, Filter(domains=list(entry.domains)))
    if not found.enterprises:
        log.warning("calendar reminder %s reaches no enterprise", ctx.job.key)
        return
    admin = await admin_rooms(ctx.session)
    draft = Draft(
        origin="calendar",
        kind=entry.kind,
        text=entry.message,
        within_hours=entry.within_hours or config.timing.notices.safety_reminder_hours,
        issuer="",
        issuer_name="",
        issuer_role=None,
        issuer_where=None,
        issuer_room=admin[0] if admin else None,
        locale=config.language,
        filter={"domains": list(entry.domains)},
        mention_contacts=True,
    )
    done = await publish(ctx.session, ctx.services, draft, found.enterprises)
    for room in admin:
        queue(
            ctx.session,
            ctx.services,
            room,
            "notice_calendar_sent",
            locale=config.language,
            cause=f"job:{ctx.job.key}",
            targets=done.notice.target_count,
            posted=done.posted,
            no_room=done.no_room,
            **_job_values(ctx, done.notice),
        )

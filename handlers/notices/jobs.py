"""A notice's scheduled work: progress reports, reminders, the deadline summary, escalation.

Each notice gets its job rows when it is published (handlers/notices/publish.py): reminders at
the configured fractions of its window, the issuer's summary at the deadline, then the
responsible level-2 member(s) and later the level-2 chief are told which enterprises stay
silent. None of them sends the notice: the commit that published it woke the sender. A progress
check follows the fan-out, reading each message's state from its outbox row, and tells the
issuer how far it got and which rooms cannot be reached.
The calendar planner turns ``timing.notices.calendar`` into reminder jobs ahead of time.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any

from bot import scheduler
from bot.config import CalendarReminder
from bot.context import Services
from bot.scheduler import JobContext, job, planner
from handlers.notices.options import Filter, resolve
from handlers.notices.publish import (
    JOB_CALENDAR,
    JOB_ESCALATE_CHIEF,
    JOB_ESCALATE_MEMBER,
    JOB_PROGRESS,
    JOB_REMIND,
    JOB_SUMMARY,
    PROGRESS_CHECK_SECONDS,
    Draft,
    ProgressCheck,
    publish,
    schedule_progress_check,
)
from storage import jobs, rooms
from storage import notices as N
from storage.db import Session
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
from storage.models import RoleKind

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


async def _issuer_rooms(session: Session, notice: N.Notice) -> list[str]:
    """Where the issuer hears about their notice; the admin room(s) for the calendar's."""
    return [notice.issuer_room] if notice.issuer_room else await admin_rooms(session)


async def _tell_issuer(
    ctx: JobContext,
    notice: N.Notice,
    template: str,
    /,
    *,
    asks: bool,
    rooms: list[str] | None = None,
    **values: Any,
) -> None:
    """Say something about a notice to its issuer, in ``rooms`` (default: where they hear
    about it). What ``asks`` them to act rings (m.text) and mentions them; the calendar's
    notices have nobody to mention."""
    issuer = Contact(notice.issuer_name, notice.issuer) if notice.issuer else None
    for room in rooms if rooms is not None else await _issuer_rooms(ctx.session, notice):
        ctx.send(
            room,
            template,
            locale=notice.locale,
            rings=asks,
            mentions=[notice.issuer] if asks and notice.issuer else [],
            issuer=issuer.as_dict() if issuer else None,
            **values,
        )


def _title(notice: N.Notice) -> str:
    lines = notice.text.strip().splitlines()
    return lines[0][:60] if lines else ""


def _job_values(ctx: JobContext, notice: N.Notice) -> dict[str, Any]:
    """What every notice job's template shows (``late`` and ``due_at`` come from the job)."""
    return {
        "code": notice.code,
        "kind": notice.kind,
        "title": _title(notice),
        "deadline": notice.deadline.astimezone(ctx.services.config.tz),
    }


# --- progress of the fan-out ---------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far the sender got with a notice's fan-out."""

    posts: int
    sent: int  # posts sent
    failed: int  # posts given up on
    finished: int  # messages (posts, attachments, copies) sent or given up on
    unfinished: int  # messages the sender is still on

    @property
    def percent(self) -> int:
        return 100 * (self.sent + self.failed) // self.posts if self.posts else 100


def progress_of(messages: list[N.FanOutMessage]) -> Progress:
    posts = [m.delivery.state for m in messages if m.part == N.PART_POST]
    unfinished = sum(1 for m in messages if m.delivery.state == N.PENDING)
    return Progress(
        posts=len(posts),
        sent=posts.count(N.SENT),
        failed=posts.count(N.FAILED),
        finished=len(messages) - unfinished,
        unfinished=unfinished,
    )


def step_to_report(percent: int, reported: int) -> int | None:
    """The progress step (25/50/75/100 %) reached and not yet reported, if any."""
    step = max((s for s in PROGRESS_STEPS if s <= percent), default=0)
    return step if step > reported else None


@dataclass(frozen=True)
class Failed:
    """A room a notice did not reach, and why (``outbox.failure_cause``; its error code)."""

    name: str  # the enterprise, or (for a level-2 room) its room id until named
    cause: str | None
    code: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cause": self.cause, "code": self.code or ""}


@dataclass(frozen=True)
class Failures:
    """Messages the sender gave up on that the issuer has not heard of yet."""

    delivery_ids: tuple[int, ...]
    enterprises: list[Failed]  # whose post (or full text) did not go out, each once
    l2_rooms: list[Failed]  # level-2 rooms whose copy did not go out, each once


def failures_not_told(messages: list[N.FanOutMessage], told: set[int]) -> Failures:
    """Posts, full texts and level-2 copies given up on, leaving out what earlier checks
    reported (attachments to a reached enterprise room are not worth a word of their own)."""
    failed = [
        m
        for m in messages
        if m.delivery.state == N.FAILED and m.part in (*N.CARRIERS, N.PART_L2_COPY)
    ]
    new = [m for m in failed if m.delivery_id not in told]
    # Each room once: by now or by an earlier check.
    seen = {(m.part == N.PART_L2_COPY, m.room_id) for m in failed if m.delivery_id in told}
    enterprises: list[Failed] = []
    l2_rooms: list[Failed] = []
    for m in new:
        key = (m.part == N.PART_L2_COPY, m.room_id)
        if key in seen:
            continue
        seen.add(key)
        about = Failed(m.enterprise or m.room_id, m.delivery.cause, m.delivery.code)
        (l2_rooms if m.part == N.PART_L2_COPY else enterprises).append(about)
    return Failures(
        delivery_ids=tuple(m.delivery_id for m in new),
        enterprises=enterprises,
        l2_rooms=l2_rooms,
    )


def next_interval(check: ProgressCheck, moved: bool) -> int:
    """Look again soon while the fan-out moves, less and less often while it does not (e.g.
    the homeserver is away)."""
    if moved or check.n == 0:
        return PROGRESS_CHECK_SECONDS
    return min(MAX_CHECK_SECONDS, check.interval * 2)


@job(JOB_PROGRESS)
async def report_progress(ctx: JobContext) -> None:
    """Tell the issuer how the fan-out goes: progress at 25/50/75/100 % for large fan-outs, and
    every room that cannot be reached. Only reads (the outbox, through the deliveries) and
    reports; the next check carries what was told."""
    notice = await _notice(ctx)
    if notice is None:
        return
    check = ProgressCheck.from_payload(ctx.payload)
    messages = await N.fan_out(ctx.session, notice.id)
    progress = progress_of(messages)
    step = step_to_report(progress.percent, notice.progress_reported)
    min_rooms = ctx.services.config.timing.notices.progress_min_rooms
    if notice.issuer_room and progress.posts >= min_rooms and step is not None:
        notice.progress_reported = step
        await _tell_issuer(
            ctx,
            notice,
            "notice_progress",
            asks=False,
            rooms=[notice.issuer_room],
            code=notice.code,
            sent=progress.sent,
            failed=progress.failed,
            total=progress.posts,
            percent=step,
        )
    failures = failures_not_told(messages, set(check.told))
    if failures.enterprises or failures.l2_rooms:
        for m in messages:
            if m.delivery_id in failures.delivery_ids:
                log.warning(
                    "%s: %s not sent to %s: %s", notice.code, m.part, m.room_id, m.delivery.error
                )
        await _tell_issuer(
            ctx,
            notice,
            "notice_undelivered",
            asks=True,
            code=notice.code,
            enterprises=[f.as_dict() for f in failures.enterprises],
            l2_rooms=await _l2_room_names(ctx.session, failures.l2_rooms),
        )
    if progress.unfinished == 0:
        notice.delivery_done_at = ctx.now
        return
    interval = next_interval(check, moved=progress.finished > check.finished)
    await schedule_progress_check(
        ctx.session,
        notice,
        ProgressCheck(
            n=check.n + 1,
            interval=interval,
            told=check.told + failures.delivery_ids,
            finished=progress.finished,
        ),
        ctx.now + timedelta(seconds=interval),
    )


async def _l2_room_names(session: Session, failed: list[Failed]) -> list[dict[str, Any]]:
    """Level-2 rooms not reached, by their grid's name (the room id when it is not known)."""
    if not failed:
        return []
    infos = await rooms.get_many(session, [f.name for f in failed])
    grid_ids = [i.grid_id for i in infos.values() if i.grid_id]
    names = await grid_names(session, grid_ids)
    found = {r: names.get(i.grid_id) for r, i in infos.items() if i.grid_id}
    return [{**f.as_dict(), "name": found.get(f.name) or f.name} for f in failed]


# --- reminders before the deadline ---------------------------------------------------------------


@job(JOB_REMIND)
async def remind_silent(ctx: JobContext) -> None:
    notice = await _notice(ctx)
    if notice is None or ctx.now >= notice.deadline:
        return  # past the deadline escalation takes over
    deliveries = await N.post_deliveries(ctx.session, notice.id)
    silent = [
        t
        for t in await N.targets_of(ctx.session, notice.id)
        if t.acked_at is None and t.room_id and deliveries[t.id].reachable
    ]
    if not silent:
        return
    contacts = await enterprise_contacts(ctx.session, [t.enterprise_id for t in silent])
    queued: list[N.Queued] = []
    for t in silent:
        who = contacts.get(t.enterprise_id, [])
        assert t.room_id is not None
        reminder = ctx.send(
            t.room_id,
            "notice_reminder",
            rings=True,
            mentions=[m.user_id for m in who if m.user_id],
            enterprise=t.enterprise_name,
            contacts=[m.as_dict() for m in who],
            left=notice.deadline - ctx.now,
            **_job_values(ctx, notice),
        )
        queued.append((reminder, t, N.PART_REMINDER))
    # A ✅ on the reminder counts like one on the notice (found through the outbox event id).
    await N.add_deliveries(ctx.session, notice.id, queued)


# --- at and after the deadline -------------------------------------------------------------------


def _silent_item(t: N.NoticeTarget, deliveries: dict[int, N.Delivery]) -> dict[str, Any]:
    return {"name": t.enterprise_name, "undelivered": deliveries[t.id].undelivered}


@job(JOB_SUMMARY)
async def summarize(ctx: JobContext) -> None:
    notice = await _notice(ctx)
    if notice is None:
        return
    targets = await N.targets_of(ctx.session, notice.id)
    feedback = await N.feedback_counts(ctx.session, [t.id for t in targets])
    deliveries = await N.post_deliveries(ctx.session, notice.id)
    counts = N.count(targets, notice.deadline, feedback, deliveries)
    silent = [t for t in targets if t.acked_at is None]
    await _tell_issuer(
        ctx,
        notice,
        "notice_summary",
        asks=True,
        counts=counts,
        rate=counts.on_time_rate,
        silent=[_silent_item(t, deliveries) for t in silent[:LIST_LIMIT]],
        more=max(0, len(silent) - LIST_LIMIT),
        **_job_values(ctx, notice),
    )


def _silent_by_grid(
    targets: list[N.NoticeTarget], deliveries: dict[int, N.Delivery]
) -> dict[int | None, list[N.NoticeTarget]]:
    """Silent enterprises by level-2 grid; not those the notice never reached (the issuer was
    told those, with the cause: nobody is to chase an acknowledgement of what never arrived)."""
    grouped: dict[int | None, list[N.NoticeTarget]] = defaultdict(list)
    for t in targets:
        if t.acked_at is None and not deliveries[t.id].undelivered:
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
    deliveries = await N.post_deliveries(ctx.session, notice.id)
    by_grid = _silent_by_grid(await N.targets_of(ctx.session, notice.id), deliveries)
    if not by_grid:
        return
    grid_ids = [g for g in by_grid if g is not None]
    grid_rooms = await rooms_of(ctx.session, L2_ROOM, grid_ids)
    names = await grid_names(ctx.session, grid_ids)
    chiefs = await holders_by_grid(ctx.session, {RoleKind.L2_CHIEF}, grid_ids, with_account=True)
    members = await serving_members_by_enterprise(
        ctx.session, [t.enterprise_id for ts in by_grid.values() for t in ts], with_account=True
    )
    unreachable: list[str] = []
    for grid_id, silent in by_grid.items():
        room = grid_rooms.get(grid_id) if grid_id is not None else None
        if room is None:
            unreachable.append(names.get(grid_id, "?") if grid_id is not None else "?")
            continue
        items = [
            {
                **_silent_item(t, deliveries),
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
        ctx.send(
            room,
            "notice_escalate_chief" if to_chief else "notice_escalate_member",
            rings=True,
            mentions=[m.user_id for m in mentions if m.user_id],
            grid=names.get(grid_id, ""),
            silent=items[:LIST_LIMIT],
            more=max(0, len(items) - LIST_LIMIT),
            unassigned=len(unassigned),
            chiefs=[m.as_dict() for m in grid_chiefs],
            **_job_values(ctx, notice),
        )
    if unreachable:
        await _tell_issuer(
            ctx,
            notice,
            "notice_escalate_no_room",
            asks=True,
            grids=unreachable,
            to_chief=to_chief,
            **_job_values(ctx, notice),
        )


# --- the reminder calendar -----------------------------------------------------------------------


def calendar_key(entry: CalendarReminder) -> str:
    digest = hashlib.sha256(f"{entry.message}|{','.join(entry.domains)}".encode()).hexdigest()
    return f"notice-calendar:{entry.date.isoformat()}:{entry.hour}:{entry.kind}:{digest[:12]}"


@planner
async def plan_calendar(session: Session, services: Services, now: datetime) -> None:
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
    for key in await jobs.keys_pending_after(session, JOB_CALENDAR, now) - wanted:
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
    )
    done = await publish(ctx.session, ctx.services, draft, found.enterprises)
    await _tell_issuer(
        ctx,
        done.notice,
        "notice_calendar_sent",
        asks=False,
        rooms=admin,
        targets=done.notice.target_count,
        posted=done.posted,
        no_room=done.no_room,
        **_job_values(ctx, done.notice),
    )

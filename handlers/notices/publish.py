"""Publish a notice: rows, outbox messages and jobs, all in the caller's one transaction.

Everything is written before anything is sent: the notice, one target per enterprise, one
outbox row per message (post, attachments, level-2 copies) with one delivery row each, and the
notice's jobs. The commit wakes the sender (the database tells it which rooms got messages); it
works from the outbox (a transaction id fixed per message), so a crash mid-broadcast resumes on
restart and no room gets the notice twice. The jobs only remind, summarize, escalate and report
progress; none is needed for the notice to go out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import outgoing, scheduler
from bot.config import Config
from bot.context import Services
from bot.outgoing import Attachment, Outgoing
from storage import notices as N
from storage.db import Session
from storage.directory import ENTERPRISE_ROOM, L2_ROOM, enterprise_contacts, rooms_of
from storage.models import Enterprise, OutboxMessage

# Job kinds (handled in handlers/notices/jobs.py).
JOB_REMIND = "notice-remind"
JOB_SUMMARY = "notice-summary"
JOB_ESCALATE_MEMBER = "notice-escalate-member"
JOB_ESCALATE_CHIEF = "notice-escalate-chief"
JOB_PROGRESS = "notice-delivery"  # the kind's name from before it only reported progress
JOB_CALENDAR = "notice-calendar"
PROGRESS_CHECK_SECONDS = 3


def default_within_hours(config: Config, kind: str) -> int:
    t = config.timing.notices
    return {
        N.REQUIREMENT: t.requirement_hours,
        N.ACCIDENT_CASE: t.accident_case_hours,
        N.INSPECTION_BULLETIN: t.inspection_bulletin_hours,
    }.get(kind, t.safety_reminder_hours)


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


@dataclass
class Preview:
    """What the issuer is asked to confirm."""

    targets: int
    rooms: int
    no_room: list[str]
    l2_rooms: int
    deadline: datetime


async def preview(
    session: Session, enterprises: list[Enterprise], within_hours: int, issuer_room: str
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
    session: Session, services: Services, draft: Draft, enterprises: list[Enterprise]
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
    # Each post names and rings whom it asks to acknowledge: the chief (else the members).
    contacts = await enterprise_contacts(session, ids)
    targets = [
        N.NoticeTarget(
            notice_id=notice.id,
            enterprise_id=e.id,
            enterprise_name=e.name,
            grid_id=e.grid_id,
            room_id=rooms.get(e.id),
        )
        for e in enterprises
    ]
    session.add_all(targets)

    queued: list[N.Queued] = []

    def carry(message: Outgoing, part: str, target: N.NoticeTarget | None = None) -> OutboxMessage:
        """Queue one message of the notice; its delivery row links it to the outbox."""
        sent = outgoing.queue(
            session, services.messages, message, locale=config.language, cause=f"notice:{code}"
        )
        queued.append((sent, target, part))
        return sent

    full = full_text_file(notice)

    def carry_text(message: Outgoing, part: str, target: N.NoticeTarget | None = None) -> None:
        """Queue a message with the notice's text: whole when it fits one Matrix event, else
        its beginning, and the whole text as a file in reply to it (see ``long_form``)."""
        short = long_form(services, message, config.language, notice.text, full.name)
        if short is None:
            carry(message, part, target)
            return
        posted = carry(short, part, target)
        reply = Outgoing(message.room_id, attachment=full, reply_to=posted)
        carry(reply, N.PART_TEXT if target is not None else part, target)

    values = _post_values(notice, draft, config)
    files = [Attachment.from_media(media) for media in draft.attachments]
    for t in targets:
        if t.room_id is None:
            continue
        who = contacts.get(t.enterprise_id, [])
        # Every target must acknowledge: the post rings (m.text), mentioning whom it names.
        post_values = {
            **values,
            "enterprise": t.enterprise_name,
            "contacts": [m.as_dict() for m in who],
        }
        carry_text(
            Outgoing(
                t.room_id,
                "notice_post",
                post_values,
                mentions=[m.user_id for m in who if m.user_id],
                rings=True,
            ),
            N.PART_POST,
            t,
        )
        for file in files:
            carry(Outgoing(t.room_id, attachment=file), N.PART_ATTACHMENT, t)

    # One copy per level-2 room involved, for the chiefs' awareness (not in the issuing room).
    by_grid: dict[int, list[str]] = {}
    for e in enterprises:
        by_grid.setdefault(e.grid_id, []).append(e.name)
    copies = 0
    for grid_id, room_id in (await rooms_of(session, L2_ROOM, by_grid)).items():
        if room_id == draft.issuer_room:
            continue
        copy_values = {**values, "enterprises": by_grid[grid_id]}
        carry_text(Outgoing(room_id, "notice_l2_copy", copy_values), N.PART_L2_COPY)
        for file in files:
            carry(Outgoing(room_id, attachment=file), N.PART_L2_COPY)
        copies += 1

    await N.add_deliveries(session, notice.id, queued)
    await schedule_jobs(session, config, notice, progress=bool(queued))
    return Published(
        notice=notice,
        posted=sum(1 for t in targets if t.room_id),
        no_room=[t.enterprise_name for t in targets if t.room_id is None],
        l2_copies=copies,
    )


# Long notices. A post repeats the text in plain and HTML form inside one Matrix event (at most
# 64 KiB with its header and mentions), and escaping (<, &, line breaks) can double it. A notice
# whose post would not fit is posted with the text's first EXCERPT_CHARS characters (cut at a
# line end) and a line saying so; the whole text follows at once as ``N-2026-0001.txt`` (UTF-8),
# a reply to the post in the same room. Decided here, before anything is recorded; the notice
# has reached an enterprise once both are sent (storage.notices.CARRIERS).
EXCERPT_CHARS = 1500
SURELY_FITS_BYTES = 4_000  # a text this short fits however it is escaped: nothing to measure


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The beginning of a long text: at most ``limit`` characters, cut at a line end when there
    is one in the second half."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", limit // 2, limit)
    return text[: cut if cut > 0 else limit].rstrip()


def full_text_file(notice: N.Notice) -> Attachment:
    """The whole text as a file (with a BOM, so that old Windows Notepad reads it as UTF-8)."""
    data = ("\ufeff" + notice.text).encode()
    return Attachment(f"{notice.code}.txt", "text/plain; charset=utf-8", data=data)


def long_form(
    services: Services, message: Outgoing, locale: str, text: str, file_name: str
) -> Outgoing | None:
    """``message`` with only the text's beginning when the whole would not fit one event
    (None: it fits as it is)."""
    if len(text.encode()) <= SURELY_FITS_BYTES or outgoing.fits(services.messages, message, locale):
        return None
    values = {**message.values, "text": excerpt(text), "full_text": file_name}
    return replace(message, values=values)


def _post_values(notice: N.Notice, draft: Draft, config: Config) -> dict[str, Any]:
    return {
        "code": notice.code,
        "kind": notice.kind,
        "text": notice.text,
        "full_text": None,  # the file's name when the post carries only the beginning
        "issuer_name": draft.issuer_name,
        "issuer_role": draft.issuer_role,
        "issuer_where": draft.issuer_where,
        "deadline": notice.deadline.astimezone(config.tz),
        "attachments": len(draft.attachments),
        "origin": draft.origin,
    }


async def schedule_jobs(
    session: Session, config: Config, notice: N.Notice, *, progress: bool
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
    if progress:
        # Sending starts on commit (the outbox wakes the sender); this only reports how it goes.
        first = notice.created_at + timedelta(seconds=PROGRESS_CHECK_SECONDS)
        await schedule_progress_check(session, notice, ProgressCheck(n=0), first)


@dataclass(frozen=True)
class ProgressCheck:
    """One look at a notice's fan-out, and what the earlier looks have told the issuer."""

    n: int
    interval: int = PROGRESS_CHECK_SECONDS
    # Delivery rows already reported as undeliverable.
    told: tuple[int, ...] = ()
    # Messages sent or given up on at the last look (more now: the fan-out moves).
    finished: int = 0

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ProgressCheck:
        return cls(
            n=int(payload.get("n") or 0),
            interval=int(payload.get("interval") or PROGRESS_CHECK_SECONDS),
            told=tuple(int(i) for i in payload.get("told") or ()),
            finished=int(payload.get("finished") or 0),
        )


async def schedule_progress_check(
    session: Session, notice: N.Notice, check: ProgressCheck, due: datetime
) -> None:
    await scheduler.schedule(
        session,
        JOB_PROGRESS,
        f"notice:{notice.code}:progress:{check.n}",
        due,
        {
            "notice_id": notice.id,
            "n": check.n,
            "interval": check.interval,
            "told": list(check.told),
            "finished": check.finished,
        },
    )

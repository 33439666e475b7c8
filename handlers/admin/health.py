"""/health (/运行状态): how the bot is doing; and a watch that tells the admin room once when
messages keep failing, and once when sending recovers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

from bot.commands import command
from bot.context import CommandContext, Services
from bot.scheduler import JobContext, job, planner, schedule
from handlers.admin.roster import ADMIN_ROLES, ADMIN_ROOMS
from storage import admins as admin_store
from storage.directory import admin_rooms

WATCH = "admin_health_watch"
# Failures older than this are not looked at by the watch (a room long gone stays quiet).
WATCH_WINDOW = timedelta(days=1)
SHOW_ROOMS = 10


def version() -> str:
    try:
        return metadata.version("gridbot")
    except metadata.PackageNotFoundError:
        return "dev"


def duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m"


@command(
    "health",
    aliases=("运行状态",),
    summary={
        "zh_CN": "机器人运行状态：同步、待处理、发送失败、定时任务、数据库、错误",
        "en": "the bot's health: sync, backlog, failed sends, jobs, database, errors",
    },
    roles=ADMIN_ROLES,
    rooms=ADMIN_ROOMS,
)
async def health(ctx: CommandContext) -> None:
    now = datetime.now(UTC)
    started = ctx.services.started_at
    h = await admin_store.health(ctx.session, now, started)
    behind = None
    if h.newest_event_ts is not None:
        behind = max(0, int(now.timestamp() - h.newest_event_ts / 1000))
    ctx.reply(
        "admin_health",
        version=version(),
        uptime=duration((now - started).total_seconds()),
        behind=behind,
        h=h,
        appservice=ctx.services.config.appservice is not None,
    )


@planner
async def plan_watch(session: Any, services: Services, now: datetime) -> None:
    """A watch each minute while some room fails or an alert is outstanding (none else)."""
    failing = await admin_store.failing_rooms(session, now - WATCH_WINDOW)
    said = await admin_store.last_alert(session)
    if not failing and said != "alert_failing":
        return
    minute = now.replace(second=0, microsecond=0)
    # Once a minute, and at once when what is failing or what was said changes.
    state = f"{len(failing)}-{said or 'none'}"
    await schedule(session, WATCH, f"{WATCH}:{minute:%Y%m%d%H%M}:{state}", minute)


@job(WATCH)
async def watch(ctx: JobContext) -> None:
    """Say once that messages keep failing (longer than timing.send_failure_alert_minutes),
    and once that they go out again; the state is the last alert in the admin audit."""
    limit = timedelta(minutes=ctx.services.config.timing.send_failure_alert_minutes)
    failing = await admin_store.failing_rooms(ctx.session, ctx.now - WATCH_WINDOW)
    long_failing = {r: t for r, t in failing.items() if ctx.now - t >= limit}
    said = await admin_store.last_alert(ctx.session)
    rooms = await admin_rooms(ctx.session)
    if long_failing and said != "alert_failing":
        since = min(long_failing.values())
        for room in rooms:
            ctx.send(
                room,
                "admin_alert_failing",
                locale=ctx.services.config.language,
                since=f"{since:%Y-%m-%d %H:%M}",
                rooms=sorted(long_failing)[:SHOW_ROOMS],
            )
        admin_store.audit(
            ctx.session, ctx.services.config.user_id, "alert_failing", rooms=len(long_failing)
        )
    elif not failing and said == "alert_failing":
        for room in rooms:
            ctx.send(room, "admin_alert_recovered", locale=ctx.services.config.language)
        admin_store.audit(ctx.session, ctx.services.config.user_id, "alert_recovered")

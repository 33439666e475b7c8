"""Province scale in appservice mode: provisioning N enterprise rooms, a broadcast to all of them
and a restart, each beside a raw appservice-token loop or an absolute target (issue 17).

    python bench/province.py [--rooms 2000] [--rounds 1] [--concurrency 8] [--in-flight 16]
                             [--no-accounts] [--no-admin] [--skip-provision] [--skip-broadcast]
                             [--broadcast-rounds 2] [--restart-rooms N] [--restarts 3]
                             [--down S] [--no-sync] [--pg] [--profile] [--check] [-v]

One throw-away Synapse (single process, SQLite, its data on /dev/shm when there is one) starts
with GridBot's registration in ``app_service_config_files`` (written before it starts, by
bot/appservice/registration.py: the bot's own user as namespace, ``rate_limited: false``).
GridBot runs as its own process, ``gridbot run -c bot.yaml`` with an ``appservice:`` section,
from the start to the end: it receives every transaction the homeserver pushes (the events of
every room made, by GridBot or by the raw loops alike: they all act as the bot's user).

1. Provisioning. The generated county of bench/provision.py (``seed``: N enterprises, each with
   a chief and two staff, sixty level-2 members) is provisioned by GridBot's ``Provisioner``
   logged in with the as_token (bot/client.py ``login``, the path of ``gridbot provision``),
   beside a raw loop: plain aiohttp with the same as_token and as many requests in flight
   (``--concurrency``), one createRoom per planned room with the same name, topic, room type
   (spaces), power levels (bot/provision/state.py ``power_levels``) and invites of the same
   people, and nothing else (no space links: provisioning's "create-only" baseline). Rounds
   alternate (bench/interleave.py), each GridBot round on a fresh copy of the seeded database;
   the bot process's database is the last round's. ``--no-accounts`` leaves the roster without
   accounts (no invites on either side); by default all are registered first. The bench asks
   Synapse to make GridBot's user a server admin (``--no-admin``: it does not ask), as the README
   advises so that accounts are listed in one request; Synapse 1.163 refuses (M_EXCLUSIVE: the
   appservice's own user), so in appservice mode the provisioner looks each person up.
2. Broadcast. From an admin's direct chat with the bot, ``/群发`` then ``确认`` posts a notice
   into every enterprise room; measured from the 确认 sent until the homeserver has accepted
   the last post (every delivery's outbox row is ``sent``), beside raw loops that PUT the same
   rendered notice with the as_token into the same rooms, one at a time and ``--in-flight`` at
   a time (bench/broadcast.py's contenders, here in appservice mode: no watcher syncs, the
   time is to the last send the homeserver acknowledged, on both sides). Between measures the
   bench waits until the bot has handled every pushed echo and is idle. Target ≤ 1.15× the
   one-at-a-time loop.
3. Restart in appservice mode. The bot is stopped (SIGTERM); the admin sends ``/whoami`` in the
   direct chat (the homeserver's push fails and it backs off); after ``--down`` seconds the bot
   is started again: time from the process start to the answer in the admin's client, when the
   endpoint listened, when it acted with the token, its CPU seconds, peak RSS (VmHWM).
   Targets: median under 5 s, no peak at 300 MB or more. With ``--restart-rooms`` other than
   ``--rooms`` (or ``--skip-provision``) the database is *generated*: the roster of that many
   enterprises with a room recorded for each (room ids that do not exist on the homeserver),
   since an appservice start reads nothing from the homeserver's rooms; that is how a 20,000
   room restart fits on this machine. Only the direct chat is real.
   ``--long-down S`` adds two restarts after S seconds down: the homeserver, having failed to
   push the /whoami, backs off (Synapse: retries after 2, 4, 8, … s, up to 512 s), and the
   bot's own ping when it starts handling (bot/appservice/ping.py) should make it retry at
   once; the second of them has the bench ping too, as soon as the endpoint answers.
4. The same restart in sync mode: bench/resume.py at the same N (N ≤ 2000; its own Synapse,
   after this one stopped), unless ``--no-sync``; above 2000 a pointer row.

PostgreSQL for the bot's databases with ``--pg`` (127.0.0.1:5432, user postgres, throw-away
databases dropped at the end); SQLite files in the work directory otherwise. ``--profile`` adds
one restart under cProfile (not counted) and prints where its time went.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import secrets
import shutil
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import yaml  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.common import PASSWORD, bounded, broadcast_phases, login, process_cpu  # noqa: E402
from bench.interleave import Result, Stats, interleave, paired_ratios, print_summary  # noqa: E402
from bot.sandbox.homeserver import Synapse, free_port  # noqa: E402

NAME = "province"
BROADCAST_TARGET = 1.15
RESTART_SECONDS = 5.0
RESTART_MB = 300.0
SYNC_MAX_ROOMS = 2000  # above this the sync-mode restart is a pointer row (bench/resume.py)
BOT = "@gridbot:localhost"
RAW_PROV, GRIDBOT_PROV = "raw as_token createRoom loop", "GridBot provision (appservice)"
RAW_SEQ, RAW_PAR = "raw as_token, one at a time", "raw as_token, in flight"
GRIDBOT_CAST = "GridBot /群发 (appservice)"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}


# --- setup ---------------------------------------------------------------------------------------


@dataclass
class Appservice:
    """The bot's appservice settings and the registration file the homeserver starts with."""

    port: int
    as_token: str
    hs_token: str
    registration: Path
    id: str = "gridbot-bench"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "as_token": self.as_token,
            "hs_token": self.hs_token,
        }


def write_registration(work: Path) -> Appservice:
    from bot.appservice.registration import registration
    from bot.config import parse_config

    aps = Appservice(
        free_port(),
        secrets.token_urlsafe(24),
        secrets.token_urlsafe(24),
        work / "gridbot-registration.yaml",
    )
    data = {"homeserver": "http://127.0.0.1:1", "user_id": BOT, "appservice": aps.settings()}
    reg = registration(parse_config(data, "bench"))
    aps.registration.write_text(yaml.safe_dump(reg, sort_keys=False), "utf-8")
    return aps


class Databases:
    """The bot's databases: SQLite files in ``work``, or throw-away PostgreSQL databases."""

    def __init__(self, work: Path, pg: bool) -> None:
        self.work = work
        self.pg = pg
        self.made: list[str] = []

    async def _admin(self) -> Any:
        import asyncpg

        return await asyncpg.connect(**PG, timeout=5)

    def _name(self) -> str:
        return f"gridbot_bench_{uuid.uuid4().hex[:10]}"

    async def new(self, label: str) -> str:
        if not self.pg:
            path = self.work / f"{label}.db"
            path.unlink(missing_ok=True)
            return f"sqlite+aiosqlite:///{path}"
        name = self._name()
        admin = await self._admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self.made.append(name)
        return f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"

    async def copy(self, url: str, label: str) -> str:
        """A copy of the (closed) database at ``url``."""
        if not self.pg:
            source = Path(url.removeprefix("sqlite+aiosqlite:///"))
            target = self.work / f"{label}.db"
            shutil.copyfile(source, target)
            return f"sqlite+aiosqlite:///{target}"
        name = self._name()
        admin = await self._admin()
        try:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{url.rsplit("/", 1)[1]}"')
        finally:
            await admin.close()
        self.made.append(name)
        return f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}"

    async def drop_all(self) -> None:
        if not self.made:
            return
        admin = await self._admin()
        try:
            for name in self.made:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def seeded(dbs: Databases, n: int, label: str) -> tuple[str, list[str]]:
    """A database holding bench/provision.py's generated county of ``n`` enterprises."""
    from bench.provision import seed

    url = await dbs.new(label)
    started = time.monotonic()
    people = await seed(url, n)
    print(
        f"  roster: {n} enterprises, {len(people)} people ({time.monotonic() - started:.1f} s)",
        flush=True,
    )
    return url, people


async def record_generated_rooms(url: str) -> int:
    """A room recorded for every enterprise, as provisioning leaves them; the ids are made up
    (these rooms do not exist on the homeserver: an appservice start never reads them)."""
    from storage.db import Database
    from storage.models import Enterprise, RoomInfo

    db = Database(url)
    joined_ts = int(time.time() * 1000)
    try:
        async with db.transaction() as s:
            ids = list(await s.scalars(select(Enterprise.id).order_by(Enterprise.id)))
            s.add_all(
                RoomInfo(room_id=f"!generated{e:06d}:localhost", kind="enterprise_room",
                         enterprise_id=e, joined_ts=joined_ts, left=False)
                for e in ids
            )  # fmt: skip
    finally:
        await db.close()
    return len(ids)


# --- the bot process ------------------------------------------------------------------------------


@dataclass
class BotProcess:
    """``gridbot run -c bot.yaml`` in ``work``, its output in a log of its own."""

    work: Path
    label: str
    proc: asyncio.subprocess.Process | None = None
    wall0: float = 0.0
    t0: float = 0.0

    @property
    def log_path(self) -> Path:
        return self.work / f"bot-{self.label.replace(' ', '-')}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, profile: Path | None = None) -> None:
        from bench.resume import bot_command, child_env

        with self.log_path.open("wb") as log:
            self.wall0, self.t0 = time.time(), time.perf_counter()
            self.proc = await asyncio.create_subprocess_exec(
                *bot_command(self.work / "bot.yaml", profile),
                cwd=self.work,
                env=child_env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise RuntimeError(
                f"bot ({self.label}) exited with {self.proc.returncode}; its log ends:\n"
                + self.tail()
            )

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 60)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def seen(self, words: str) -> float | None:
        from bench.resume import seen_at

        return seen_at(self.log_path.read_text(errors="replace"), words, self.wall0)


async def wait_health(aps: Appservice, bot: BotProcess, within: float = 120) -> float:
    """perf_counter time at which the bot's endpoint answered GET /health."""
    deadline = time.monotonic() + within
    timeout = aiohttp.ClientTimeout(total=1)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while time.monotonic() < deadline:
            bot.check_alive()
            try:
                async with http.get(f"{aps.url}/health") as resp:
                    if resp.status == 200:
                        return time.perf_counter()
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"the bot's endpoint did not answer within {within} s")


async def ping(hs_url: str, aps: Appservice) -> int:
    """The client-server appservice ping: the homeserver pings the endpoint and, on success,
    retries its queued transactions at once instead of after its backoff."""
    url = f"{hs_url}/_matrix/client/v1/appservice/{aps.id}/ping"
    headers = {"Authorization": f"Bearer {aps.as_token}"}
    async with aiohttp.ClientSession() as http, http.post(url, json={}, headers=headers) as resp:
        if resp.status != 200:
            print(f"  appservice ping: {resp.status} {await resp.text()}", flush=True)
        return resp.status


async def bot_idle(db_url: str, pids: list[int], within: float = 900) -> float:
    """Until the bot's inbox is handled and its outbox sent, and it and the homeserver have
    been quiet for a second; the seconds that took."""
    from bench.resume import settle
    from storage.db import Database
    from storage.models import InboxEvent, OutboxMessage

    started = time.monotonic()
    db = Database(db_url)
    try:
        while time.monotonic() - started < within:
            async with db.transaction() as s:
                inbox = await s.scalar(
                    select(func.count())
                    .select_from(InboxEvent)
                    .where(InboxEvent.handled_at.is_(None))
                )
                outbox = await s.scalar(
                    select(func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.status == "pending")
                )
            if not inbox and not outbox:
                for pid in pids:
                    await settle(pid, quiet=1.0, within=120)
                async with db.transaction() as s:
                    inbox = await s.scalar(
                        select(func.count())
                        .select_from(InboxEvent)
                        .where(InboxEvent.handled_at.is_(None))
                    )
                if not inbox:
                    return time.monotonic() - started
            await asyncio.sleep(0.5)
    finally:
        await db.close()
    raise TimeoutError(f"the bot was not idle within {within} s")


# --- 1. provisioning ---------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    items: int
    seconds: float
    server_cpu: float = math.nan
    client_cpu: float = math.nan  # this process (GridBot's provisioner, or the raw loop)
    bot_cpu: float = math.nan  # the bot process (storing and handling the pushed events)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


class Cpu:
    """CPU seconds of the homeserver, this process and the bot process since ``start``."""

    def __init__(self, hs_pid: int, bot_pid: int | None) -> None:
        self.hs_pid, self.bot_pid = hs_pid, bot_pid
        self.start()

    def start(self) -> None:
        self.hs, self.me = process_cpu(self.hs_pid), time.process_time()
        self.bot = process_cpu(self.bot_pid) if self.bot_pid else 0.0

    def spent(self) -> tuple[float, float, float]:
        bot = process_cpu(self.bot_pid) - self.bot if self.bot_pid else math.nan
        return process_cpu(self.hs_pid) - self.hs, time.process_time() - self.me, bot


def bot_config(hs_url: str, aps: Appservice, db_url: str, admins: list[str]) -> Any:
    from bot.config import parse_config

    data = {
        "homeserver": hs_url,
        "user_id": BOT,
        "appservice": aps.settings(),
        "database_url": db_url,
        "admins": admins,
    }
    return parse_config(data, "bench")


async def gridbot_provision(config: Any, concurrency: int) -> tuple[int, dict[str, int], Any]:
    """What ``gridbot provision`` does (bot/provision/cli.py ``provision_with_config``), with
    the request counts kept: rooms made, requests by name, the summary."""
    from bot.client import build_client
    from bot.client import login as bot_login
    from bot.provision.apply import Provisioner
    from bot.provision.matrix import MatrixOps
    from messages import Messages
    from storage.db import Database

    db = Database(config.database_url)
    client = build_client(config, encryption=False)
    try:
        await bot_login(client, config, db)
        ops = MatrixOps(client, concurrency=concurrency)
        summary = await Provisioner(
            db,
            ops,
            Messages(),
            bot_user_id=config.user_id,
            admins=config.admins,
            locale=config.language,
        ).run()
        return len(summary.created), dict(ops.calls), summary
    finally:
        await client.close()
        await db.close()


async def raw_bodies(
    hs_url: str, aps: Appservice, config: Any, accounts: bool
) -> list[dict[str, Any]]:
    """One createRoom body per planned room: name, topic, space type, the power levels GridBot
    gives it, invites of the same people (those with an account)."""
    from bot.provision.cli import load_plan
    from bot.provision.state import power_levels
    from storage.db import Database

    db = Database(config.database_url)
    try:
        plan = await load_plan(db, config)
    finally:
        await db.close()
    headers = {"Authorization": f"Bearer {aps.as_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{hs_url}/_matrix/client/v3/capabilities", headers=headers) as resp,
    ):
        caps = (await resp.json()).get("capabilities", {})
    version = (caps.get("m.room_versions") or {}).get("default")
    bodies = []
    for spec in plan.rooms.values():
        body: dict[str, Any] = {
            "preset": "private_chat",
            "visibility": "private",
            "name": spec.name,
            "topic": spec.topic,
            "invite": sorted(u for u in spec.members if u != BOT) if accounts else [],
            "power_level_content_override": power_levels(spec, BOT, version),
        }
        if version:
            body["room_version"] = version
        if spec.is_space:
            body["creation_content"] = {"type": "m.space"}
        bodies.append(body)
    return bodies


async def raw_provision(hs_url: str, as_token: str, bodies: list[dict[str, Any]], c: int) -> int:
    """createRoom for every body with the as_token, ``c`` requests in flight."""
    queue = list(reversed(bodies))
    headers = {"Authorization": f"Bearer {as_token}"}
    url = f"{hs_url}/_matrix/client/v3/createRoom"
    made = 0
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:

        async def worker() -> None:
            nonlocal made
            while queue:
                body = queue.pop()
                async with http.post(url, json=body) as resp:
                    answer = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise RuntimeError(f"createRoom: {resp.status} {answer}")
                made += 1

        await asyncio.gather(*(worker() for _ in range(c)))
    return made


# --- 2. broadcast ------------------------------------------------------------------------------


async def enterprise_rooms(db_url: str) -> list[str]:
    from storage.db import Database
    from storage.models import RoomInfo

    db = Database(db_url)
    try:
        async with db.transaction() as s:
            rooms = await s.scalars(
                select(RoomInfo.room_id)
                .where(RoomInfo.kind == "enterprise_room", RoomInfo.left.is_(False))
                .order_by(RoomInfo.enterprise_id)
            )
            return list(rooms)
    finally:
        await db.close()


async def raw_send(
    hs_url: str, as_token: str, rooms: list[str], content: dict[str, Any], in_flight: int
) -> None:
    headers = {"Authorization": f"Bearer {as_token}"}
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:

        async def send(room: str) -> None:
            txn = uuid.uuid4().hex
            url = f"{hs_url}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"
            async with http.put(url, json=content) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"send to {room}: {resp.status} {await resp.text()}")

        await bounded(rooms, send, in_flight)


@dataclass
class Broadcasts:
    hs_url: str
    aps: Appservice
    db_url: str
    rooms: list[str]
    issuer: Any  # nio client
    dm: str
    in_flight: int
    cpu: Cpu
    runs: list[Run] = field(default_factory=list)
    count: int = 0

    def marker(self, tag: str) -> str:
        self.count += 1
        return f"{tag}-{self.count}"

    async def raw(self, in_flight: int) -> float:
        from bench.broadcast import notice_content

        content = notice_content(self.marker("RAW"))
        self.cpu.start()
        started = time.perf_counter()
        await raw_send(self.hs_url, self.aps.as_token, self.rooms, content, in_flight)
        seconds = time.perf_counter() - started
        name = RAW_SEQ if in_flight == 1 else RAW_PAR
        self.runs.append(Run(name, len(self.rooms), seconds, *self.cpu.spent()))
        return seconds

    async def _posts(self, db: Any) -> tuple[int, int]:
        from storage import notices as N
        from storage.models import OutboxMessage

        async with db.transaction() as s:
            total, sent = (
                await s.execute(
                    select(
                        func.count(),
                        func.count().filter(OutboxMessage.status == "sent"),
                    )
                    .select_from(N.NoticeDelivery)
                    .join(OutboxMessage, OutboxMessage.id == N.NoticeDelivery.outbox_id)
                    .where(N.NoticeDelivery.part == N.PART_POST)
                )
            ).one()
        return int(total), int(sent)

    async def _phases(self, wall0: float) -> tuple[float, float, float]:
        """Seconds after 确认 was sent: when it was handled, the first and the last post sent."""
        from storage.db import Database

        db = Database(self.db_url)
        try:
            async with db.transaction() as s:
                return await broadcast_phases(s, self.dm, self.issuer.user_id, wall0)
        finally:
            await db.close()

    async def gridbot(self) -> float:
        from bench.broadcast import WATCH_FILTER, issuer_wait, notice_text, send_ok
        from storage.db import Database

        marker = self.marker("GRIDBOT")
        world = SimpleNamespace(issuer=self.issuer, dm=self.dm)
        await self.issuer.sync(timeout=0, sync_filter=WATCH_FILTER)
        await send_ok(
            self.issuer,
            self.dm,
            "m.room.message",
            {"msgtype": "m.text", "body": "/群发 部署要求\n" + notice_text(marker)},
        )
        await issuer_wait(world, "请确认", within=300)  # type: ignore[arg-type]
        db = Database(self.db_url)
        try:
            before, _ = await self._posts(db)
            self.cpu.start()
            wall0, started = time.time(), time.perf_counter()
            await send_ok(
                self.issuer, self.dm, "m.room.message", {"msgtype": "m.text", "body": "确认"}
            )
            deadline = time.monotonic() + 900
            while True:
                total, sent = await self._posts(db)
                if total > before and sent == total:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{total - sent} posts never sent")
                await asyncio.sleep(0.1)
            seconds = time.perf_counter() - started
        finally:
            await db.close()
        posts = total - before
        note = "" if posts == len(self.rooms) else f"{posts} posts for {len(self.rooms)} rooms; "
        handled, first, last = await self._phases(wall0)
        note += f"确认 handled at {handled:.2f} s, posts sent {first:.2f}–{last:.2f} s"
        self.runs.append(Run(GRIDBOT_CAST, posts, seconds, *self.cpu.spent(), note=note))
        return seconds


# --- 3. restarts -------------------------------------------------------------------------------


@dataclass
class Restart:
    label: str
    rooms: int
    seconds: float  # process start → the admin has the answer
    listening: float | None  # → "appservice endpoint listening" in its log
    acting: float | None  # → "acting as" (the as_token accepted)
    command_handled: float | None  # → the /whoami handled (its inbox)
    cpu: float
    hwm_answer_mb: float
    hwm_mb: float
    rss_mb: float
    down: float
    pinged: bool


async def restart(
    hs_url: str,
    aps: Appservice,
    work: Path,
    commander: Any,
    label: str,
    rooms: int,
    *,
    down: float,
    with_ping: bool = False,
    profile: Path | None = None,
    within: float = 900,
) -> Restart:
    """The bot is down: the /whoami is sent, ``down`` seconds pass, the bot starts; measured
    until the admin has the answer."""
    from bench.resume import handling, settle, status_kb

    mine = await commander.command()
    if down:
        await asyncio.sleep(down)
    bot = BotProcess(work, label)
    await bot.start(profile)
    try:
        answer = asyncio.create_task(commander.answer(mine))
        if with_ping:
            await wait_health(aps, bot)
            await ping(hs_url, aps)
        died = asyncio.create_task(bot.proc.wait())  # type: ignore[union-attr]
        done, _ = await asyncio.wait({answer, died}, timeout=within, return_when="FIRST_COMPLETED")
        if answer not in done:
            answer.cancel()
            died.cancel()
            why = "exited" if died in done else f"no answer in {within} s"
            raise RuntimeError(f"bot ({label}) {why}; its log ends:\n{bot.tail()}")
        died.cancel()
        seconds = answer.result() - bot.t0
        hwm_answer, cpu = status_kb(bot.pid, "VmHWM") / 1024, process_cpu(bot.pid)
        await settle(bot.pid)
        hwm, rss = status_kb(bot.pid, "VmHWM") / 1024, status_kb(bot.pid, "VmRSS") / 1024
    finally:
        await bot.stop()
    config = yaml.safe_load((work / "bot.yaml").read_text())
    _, _, handled = await handling(config["database_url"], bot.wall0, mine)
    return Restart(
        label,
        rooms,
        seconds,
        bot.seen("appservice endpoint listening"),
        bot.seen(" acting as "),
        handled,
        cpu,
        hwm_answer,
        hwm,
        rss,
        down,
        with_ping,
    )


async def open_dm(hs: Synapse, issuer: Any, within: float = 120) -> str:
    """The admin's direct chat with the bot, once the bot has joined it (an invite pushed)."""
    resp = await issuer.room_create(invite=[BOT], is_direct=True)
    dm = getattr(resp, "room_id", None)
    if not dm:
        raise RuntimeError(f"room_create: {resp}")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        members = await issuer.joined_members(dm)
        if any(m.user_id == BOT for m in getattr(members, "members", [])):
            return dm
        await asyncio.sleep(0.2)
    raise TimeoutError("the bot never joined the direct chat")


# --- tables --------------------------------------------------------------------------------------


def _f(value: float | None, width: int, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–".rjust(width)
    return f"{value:{width}.{digits}f}"


def print_runs(title: str, unit: str, runs: list[Run]) -> None:
    if not runs:
        return
    print()
    print(
        f"{title:34} {'n':>6} {'seconds':>8} {unit:>8} {'Synapse CPU':>11} {'bench CPU':>9} "
        f"{'bot CPU':>8}  note"
    )
    for r in runs:
        print(
            f"{r.name:34} {r.items:6d} {r.seconds:8.1f} {r.rate:8.1f} {_f(r.server_cpu, 11, 1)} "
            f"{_f(r.client_cpu, 9, 1)} {_f(r.bot_cpu, 8, 1)}  {r.note}"
        )


def print_restarts(starts: list[Restart]) -> None:
    if not starts:
        return
    print()
    print(
        f"{'':26} {'rooms':>6} {'down s':>6} {'answer s':>8} {'listen s':>8} {'token s':>7} "
        f"{'command s':>9} {'CPU s':>6} {'peak MB':>7} {'at answer':>9} {'idle MB':>7}"
    )
    for s in starts:
        label = s.label + (" + ping" if s.pinged else "")
        print(
            f"{label:26} {s.rooms:6d} {s.down:6.0f} {s.seconds:8.2f} {_f(s.listening, 8)} "
            f"{_f(s.acting, 7)} {_f(s.command_handled, 9)} {s.cpu:6.2f} {s.hwm_mb:7.1f} "
            f"{s.hwm_answer_mb:9.1f} {s.rss_mb:7.1f}"
        )
    print(
        "(seconds from the process start: answer = the admin has the reply to the /whoami sent "
        "while the bot was down;\n listen = its endpoint listening, token = the as_token "
        "accepted (both from its log), command = the /whoami handled (its inbox);\n down = "
        "seconds the bot stayed down after the /whoami; + ping = the bench pinged the homeserver "
        "(appservice ping) once the endpoint answered)"
    )


# --- main ---------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace) -> list[Result]:
    """Run the benchmark as ``args`` say; print its tables; return its summary rows."""
    from bench.resume import Commander, World, import_floor_mb, print_profile, workdirs

    work, hs_dir, temps = workdirs(None)
    dbs = Databases(work, args.pg)
    results: list[Result] = []
    prov_runs: list[Run] = []
    cast_runs: list[Run] = []
    starts: list[Restart] = []
    prov_stats: dict[str, Stats] = {}
    cast_stats: dict[str, Stats] = {}
    calls: list[dict[str, int]] = []
    n = args.rooms
    try:
        aps = write_registration(work)
        hs = Synapse(
            hs_dir,
            relaxed_limits=True,
            extra={"app_service_config_files": [str(aps.registration)]},
        )
        started = time.monotonic()
        await hs.start()
        assert hs._proc is not None
        hs_pid = hs._proc.pid
        print(f"homeserver {hs.url} up in {time.monotonic() - started:.1f} s", flush=True)
        bot: BotProcess | None = None
        issuer = None
        try:
            admin = await hs.register("admin", PASSWORD, admin=True)
            admin_token = await hs.login(admin, PASSWORD)
            issuer_id = await hs.register("issuer", PASSWORD)
            await hs.exempt_from_ratelimit(issuer_id, admin_token)
            if not args.no_admin:
                await make_admin(hs, admin_token)

            # --- the databases: provisioned rounds, or a generated one -------------------
            provision = not args.skip_provision
            restart_rooms = args.restart_rooms or n
            dbs_rounds: list[str] = []
            people: list[str] = []
            if provision:
                seed_url, people = await seeded(dbs, n, "seed")
                for k in range(args.rounds):
                    dbs_rounds.append(await dbs.copy(seed_url, f"gridbot{k + 1}"))
                bot_db = dbs_rounds[-1]
                if args.accounts:
                    t0 = time.monotonic()
                    await bounded(people, lambda m: hs.register(m, PASSWORD), 8)
                    print(
                        f"  {len(people)} accounts registered in {time.monotonic() - t0:.1f} s",
                        flush=True,
                    )
            if not provision or restart_rooms != n:
                gen_url, _ = await seeded(dbs, restart_rooms, "generated")
                made = await record_generated_rooms(gen_url)
                print(f"  generated database: {made} rooms recorded (not on the homeserver)")
                if not provision:
                    bot_db = gen_url
            else:
                gen_url = None

            def write_bot_yaml(db_url: str) -> None:
                data = {
                    "homeserver": hs.url,
                    "user_id": BOT,
                    "appservice": aps.settings(),
                    "database_url": db_url,
                    "admins": [issuer_id],
                }
                (work / "bot.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))

            write_bot_yaml(bot_db)
            from storage.db import Database

            for url in {bot_db, *dbs_rounds}:
                db = Database(url)
                await db.upgrade()
                await db.close()
            bot = BotProcess(work, "running")
            t0 = time.perf_counter()
            await bot.start()
            await wait_health(aps, bot)
            print(f"  bot process listening in {time.perf_counter() - t0:.1f} s", flush=True)
            cpu = Cpu(hs_pid, bot.pid)

            # --- 1. provisioning ---------------------------------------------------------
            if provision:
                config = bot_config(hs.url, aps, dbs_rounds[0], [])
                bodies = await raw_bodies(hs.url, aps, config, args.accounts)
                invites = sum(len(b["invite"]) for b in bodies)
                print(
                    f"provisioning: {len(bodies)} rooms ({invites} invites), "
                    f"{args.concurrency} in flight, {args.rounds} rounds",
                    flush=True,
                )
                unused = iter(dbs_rounds)

                async def gridbot_round() -> float:
                    cfg = bot_config(hs.url, aps, next(unused), [])
                    cpu.start()
                    t = time.perf_counter()
                    made, counts, summary = await gridbot_provision(cfg, args.concurrency)
                    seconds = time.perf_counter() - t
                    note = ""
                    if summary.failed:
                        # Reported, not raised: the rooms made are still broadcast to.
                        note = f"{len(summary.failed)} FAILED: " + "; ".join(summary.failed[:3])
                        print(f"    GridBot's provisioning: {note}", flush=True)
                    prov_runs.append(Run(GRIDBOT_PROV, made, seconds, *cpu.spent(), note=note))
                    calls.append(counts)
                    print(f"    GridBot's requests: {counts}", flush=True)
                    return seconds

                async def raw_round() -> float:
                    cpu.start()
                    t = time.perf_counter()
                    made = await raw_provision(hs.url, aps.as_token, bodies, args.concurrency)
                    seconds = time.perf_counter() - t
                    prov_runs.append(Run(RAW_PROV, made, seconds, *cpu.spent()))
                    return seconds

                async def settled() -> None:
                    waited = await bot_idle(bot_db, [bot.pid, hs_pid])
                    print(f"    (bot idle after {waited:.1f} s)", flush=True)

                def progress(r: int, name: str, values: list[float]) -> None:
                    print(f"  round {r}: {name} {values[0]:.1f} s", flush=True)

                prov_stats = await interleave(
                    {RAW_PROV: raw_round, GRIDBOT_PROV: gridbot_round},
                    args.rounds,
                    between=settled,
                    progress=progress,
                )

            # --- the admin's direct chat -------------------------------------------------
            issuer = await login(hs, issuer_id)
            dm = await open_dm(hs, issuer)
            await bot_idle(bot_db, [bot.pid, hs_pid])

            # --- 2. broadcast ------------------------------------------------------------
            if not args.skip_broadcast and provision:
                rooms = await enterprise_rooms(bot_db)
                casts = Broadcasts(hs.url, aps, bot_db, rooms, issuer, dm, args.in_flight, cpu)
                print(
                    f"broadcast: {len(rooms)} enterprise rooms, {args.broadcast_rounds} rounds",
                    flush=True,
                )

                async def settled_cast() -> None:
                    await bot_idle(bot_db, [bot.pid, hs_pid])

                def progress_cast(r: int, name: str, values: list[float]) -> None:
                    print(f"  round {r}: {name} {values[0]:.1f} s", flush=True)

                cast_stats = await interleave(
                    {
                        RAW_SEQ: lambda: casts.raw(1),
                        RAW_PAR: lambda: casts.raw(args.in_flight),
                        GRIDBOT_CAST: casts.gridbot,
                    },
                    args.broadcast_rounds,
                    between=settled_cast,
                    progress=progress_cast,
                )
                cast_runs = casts.runs

            # --- 3. restarts ---------------------------------------------------------------
            await bot.stop()
            bot = None
            commander = Commander(issuer, World(BOT, issuer_id, dm, [], []))
            await commander.sync(0)
            groups: list[tuple[str, str, int]] = []  # (database, label suffix, rooms)
            if provision:
                groups.append((bot_db, "", n))
            if gen_url is not None:
                groups.append((gen_url, " (generated)", restart_rooms))
            current = bot_db
            for db_url, suffix, rooms_n in groups:
                if db_url != current:
                    # Another database: a first start on it (unmeasured) with a new direct chat,
                    # so that its invite and join are recorded there.
                    write_bot_yaml(db_url)
                    current = db_url
                    warm = BotProcess(work, "warm-up")
                    await warm.start()
                    try:
                        await wait_health(aps, warm)
                        dm = await open_dm(hs, issuer)
                        await bot_idle(db_url, [warm.pid, hs_pid])
                    finally:
                        await warm.stop()
                    commander = Commander(issuer, World(BOT, issuer_id, dm, [], []))
                    await commander.sync(0)
                for k in range(1, args.restarts + 1):
                    start = await restart(
                        hs.url, aps, work, commander, f"restart {k}{suffix}", rooms_n,
                        down=args.down,
                    )  # fmt: skip
                    starts.append(start)
                    print(
                        f"  restart {k}{suffix}: answered at {start.seconds:.2f} s, "
                        f"peak {start.hwm_mb:.0f} MB",
                        flush=True,
                    )
            for with_ping in (False, True) if args.long_down else ():
                start = await restart(
                    hs.url, aps, work, commander, "long down", groups[-1][2],
                    down=args.long_down, with_ping=with_ping,
                )  # fmt: skip
                starts.append(start)
                print(
                    f"  {args.long_down:g} s down{' + ping' if with_ping else ''}: answered at "
                    f"{start.seconds:.2f} s",
                    flush=True,
                )
            if args.profile:
                prof = work / "restart.prof"
                start = await restart(
                    hs.url, aps, work, commander, "profiled", groups[-1][2], down=0, profile=prof
                )
                print(f"  profiled restart: answered at {start.seconds:.2f} s", flush=True)
                print_profile(prof)
        finally:
            if bot is not None:
                await bot.stop()
            if issuer is not None:
                await issuer.close()
            await hs.stop()
    finally:
        await dbs.drop_all()
        if args.keep_logs:
            print(f"(logs kept in {args.keep_logs})")
            shutil.copytree(work, args.keep_logs, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.db*", "synapse"))  # fmt: skip
        for temp in temps:
            temp.cleanup()

    # --- tables and summary rows --------------------------------------------------------------
    print_runs("provisioning", "rooms/s", prov_runs)
    print_runs("broadcast", "msg/s", cast_runs)
    floor = import_floor_mb()
    print_restarts(starts)
    print(f"(a Python process that only imports the bot peaks at {floor:.0f} MB)")

    def total_cpu(name: str) -> Stats:
        return Stats.of(
            r.server_cpu + r.client_cpu + r.bot_cpu for r in prov_runs if r.name == name
        )

    if prov_stats:
        rooms_made = prov_runs[0].items
        paired = paired_ratios(prov_stats[GRIDBOT_PROV], prov_stats[RAW_PROV])
        results.append(
            Result(
                NAME,
                f"provision {rooms_made} rooms, appservice (wall)",
                "s",
                prov_stats[GRIDBOT_PROV],
                prov_stats[RAW_PROV],
                "raw as_token loop",
                note=f"{args.rounds} alternating rounds, {args.concurrency} in flight; "
                "GridBot / raw round by round: "
                + ", ".join(f"{x:.2f}" for x in paired)
                + " (bench/provision.py's sync-mode target is 1.3× this create-only loop)"
                + "".join(f"; GridBot run {r.note}" for r in prov_runs if r.note),
            )
        )
        results.append(
            Result(
                NAME,
                f"provision {rooms_made} rooms, appservice (rooms/s)",
                "rooms/s",
                Stats.of(r.rate for r in prov_runs if r.name == GRIDBOT_PROV),
                Stats.of(r.rate for r in prov_runs if r.name == RAW_PROV),
                "raw as_token loop",
            )
        )
        results.append(
            Result(
                NAME,
                f"provision {rooms_made} rooms (CPU, Synapse + bench + bot)",
                "s",
                total_cpu(GRIDBOT_PROV),
                total_cpu(RAW_PROV),
                "raw as_token loop",
                note="bot = the running bot process storing and handling the pushed events",
            )
        )
    if cast_stats:
        grid, seq, par = cast_stats[GRIDBOT_CAST], cast_stats[RAW_SEQ], cast_stats[RAW_PAR]
        rooms_n = cast_runs[0].items
        results.append(
            Result(
                NAME,
                f"/群发 to {rooms_n} rooms, appservice → last post accepted",
                "s",
                grid,
                seq,
                "raw, one at a time",
                BROADCAST_TARGET,
                note=f"{args.broadcast_rounds} alternating rounds; GridBot / raw round by round: "
                + ", ".join(f"{x:.2f}" for x in paired_ratios(grid, seq))
                + f"; raw with {args.in_flight} in flight: {par.median:.2f} s median "
                f"({grid.median / par.median:.2f}× GridBot/it)",
            )
        )
    for suffix, pick in (("", lambda s: "generated" not in s.label), (" (generated)", None)):
        mine = [
            s for s in starts
            if s.label.startswith("restart") and (pick(s) if pick else "generated" in s.label)
        ]  # fmt: skip
        if not mine:
            continue
        rooms_n = mine[0].rooms
        results.append(
            Result(
                NAME,
                f"appservice restart, {rooms_n} rooms{suffix} → first answer",
                "s",
                Stats.of(s.seconds for s in mine),
                target=RESTART_SECONDS,
                note=f"/whoami sent while down, {args.down:g} s down; listening at "
                f"{Stats.of(s.listening or math.nan for s in mine).median:.2f} s, token at "
                f"{Stats.of(s.acting or math.nan for s in mine).median:.2f} s (medians)",
            )
        )
        results.append(
            Result(
                NAME,
                f"appservice restart, {rooms_n} rooms{suffix} → peak RSS",
                "MB",
                Stats.of(s.hwm_mb for s in mine),
                target=RESTART_MB,
                by="max",
                note=f"imports alone peak at {floor:.0f} MB",
            )
        )
        results.append(
            Result(
                NAME,
                f"appservice restart, {rooms_n} rooms{suffix} → CPU s until answered",
                "s",
                Stats.of(s.cpu for s in mine),
            )
        )
    for s in starts:
        if s.label == "long down":
            results.append(
                Result(
                    NAME,
                    f"appservice restart after {s.down:g} s down"
                    + (", pinged" if s.pinged else "")
                    + " → first answer",
                    "s",
                    Stats.of([s.seconds]),
                    note="the homeserver backs off pushing (Synapse: 2, 4, 8, … s, up to 512 s) "
                    "until a ping succeeds: the bot's own at start"
                    + (", and the bench's once the endpoint answered" if s.pinged else ""),
                )
            )

    # --- 4. the same restart in sync mode ---------------------------------------------------
    sync_n = min(n, SYNC_MAX_ROOMS)
    if args.no_sync:
        pass
    elif n > SYNC_MAX_ROOMS:
        results.append(
            Result(
                NAME,
                f"sync-mode restart at {n} rooms",
                "s",
                Stats(),
                note=f"not run above {SYNC_MAX_ROOMS} rooms: "
                f"python bench/resume.py --rooms {n} (or --rooms {SYNC_MAX_ROOMS} for the issue's "
                "comparison)",
            )
        )
    else:
        from bench import resume

        print(
            f"\nsync mode: bench/resume.py --rooms {sync_n} --restarts {args.restarts}", flush=True
        )
        rargs = resume.parse(["--rooms", str(sync_n), "--restarts", str(args.restarts)])
        for r in await resume.measure(rargs):
            r.bench = f"{NAME} (sync)"
            results.append(r)
    return results


async def make_admin(hs: Synapse, admin_token: str) -> None:
    """The bot's user a server admin (as the README advises), so provisioning lists accounts."""
    from urllib.parse import quote

    url = f"{hs.url}/_synapse/admin/v2/users/{quote(BOT, safe='')}"
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.put(url, json={"admin": True}, headers=headers) as resp,
    ):
        if resp.status not in (200, 201):
            print(f"  could not make {BOT} an admin: {resp.status} {await resp.text()}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=2000, help="enterprises (rooms), 2000")
    parser.add_argument("--rounds", type=int, default=1, help="provisioning rounds (1)")
    parser.add_argument("--concurrency", type=int, default=8, help="provisioning requests (8)")
    parser.add_argument(
        "--in-flight", type=int, default=16, help="sends of the raw concurrent broadcast loop"
    )
    parser.add_argument(
        "--broadcast-rounds", type=int, default=2, help="alternating broadcast rounds (2)"
    )
    parser.add_argument(
        "--no-accounts",
        dest="accounts",
        action="store_false",
        help="no accounts for the roster's people (no invites on either side)",
    )
    parser.add_argument(
        "--no-admin", action="store_true", help="the bot's user is not a server admin"
    )
    parser.add_argument(
        "--skip-provision",
        action="store_true",
        help="no provisioning (and no broadcast): restarts on a generated database",
    )
    parser.add_argument("--skip-broadcast", action="store_true")
    parser.add_argument(
        "--restart-rooms",
        type=int,
        help="rooms of the restarts' generated database (default: the provisioned ones)",
    )
    parser.add_argument("--restarts", type=int, default=3, help="measured restarts (3)")
    parser.add_argument(
        "--down", type=float, default=0.0, help="seconds the bot stays down after the /whoami"
    )
    parser.add_argument(
        "--long-down",
        type=float,
        default=0.0,
        metavar="S",
        help="two more restarts after S seconds down: without and with the bench's own ping",
    )
    parser.add_argument("--no-sync", action="store_true", help="skip the sync-mode restart")
    parser.add_argument("--pg", action="store_true", help="PostgreSQL for the bot's databases")
    parser.add_argument("--profile", action="store_true", help="one restart under cProfile")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the bot's logs to DIR")
    parser.add_argument("-v", "--verbose", action="store_true", help="INFO logs of this script")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return parser


def scaled(scale: float) -> list[str]:
    """Arguments for a run ``scale`` times the default size (bench/run.py --quick)."""
    return ["--rooms", str(max(50, round(2000 * scale))), "--restarts", "2"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("nio").setLevel(logging.ERROR)
    if os.environ.get("GRIDBOT_BENCH_PHASES"):
        logging.getLogger("bot.provision.apply").setLevel(logging.INFO)
    results = asyncio.run(measure(args))
    print_summary(results)
    if args.check and any(r.passed is False for r in results):
        print("a target was missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

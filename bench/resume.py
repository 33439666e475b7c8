"""Resume at size: GridBot in 2,000 rooms is restarted; time to the first answered command and
peak memory.

    python bench/resume.py [--rooms 2000] [--restarts 3] [--busy N] [--keep DIR] [--profile]
                           [--check]

On a throw-away Synapse (relaxed rate limits, every account exempt; its data on /dev/shm when
there is one, see ``workdirs``) the bot's account creates ``--rooms`` enterprise rooms (16
requests in flight), and GridBot's database holds a generated
county of as many enterprises (the roster bench/provision.py seeds: a chief and two staff each,
sixty level-2 members) with those rooms recorded as theirs, as ``gridbot provision`` leaves
them. A user shares a direct chat with the bot and sits in ``--busy`` of the rooms.

The bot runs as its own process, ``gridbot run -c bot.yaml``, as in production:

1. first start (fresh database: login, the initial sync of every room): informative;
2. stop (SIGTERM), then, while it is down, the user writes one message into each busy room and
   sends ``/whoami`` in the direct chat; restart. Measured: from the process start until the
   user's client has the answer, and the bot process's peak RSS (``VmHWM`` in /proc, read once
   the answer is in and again once the process has gone idle). Repeated ``--restarts`` times.

Targets: the median restart answers within 10 s, and no restart peaks at 300 MB or more.
There is no baseline to interleave with: the targets are absolute, and each restart is one
sample; the table shows them all. ``--profile`` adds one more restart under cProfile and prints
where its time went (that run is slower and not counted). ``--keep DIR`` keeps the homeserver
and the seeded database in DIR, so the next run skips the setup (its first start then also sees
the messages of the earlier runs). Each run's bot logs in as a new device, with the
configuration's defaults otherwise (encryption on). Logs and ``bot.yaml`` are in the work
directory (kept with ``--keep``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import pstats
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from nio import (  # noqa: E402
    AsyncClient,
    JoinResponse,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
)

from bench.common import PASSWORD, bounded, login, process_cpu  # noqa: E402
from bench.interleave import Result, Stats, print_summary  # noqa: E402
from bot.sandbox.homeserver import Synapse  # noqa: E402

NAME = "resume"
TARGET_SECONDS = 10.0
TARGET_MB = 300.0
SETUP_IN_FLIGHT = 16


# --- /proc ----------------------------------------------------------------------------------------


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/PID/status (VmHWM: peak resident set, VmRSS: now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


async def settle(pid: int, quiet: float = 1.0, within: float = 60) -> float:
    """Wait until the process has used under 2% of a core for ``quiet`` seconds; returns the
    seconds waited."""
    started = time.monotonic()
    last = process_cpu(pid)
    while time.monotonic() - started < within:
        await asyncio.sleep(quiet)
        now = process_cpu(pid)
        if now - last < 0.02 * quiet:
            break
        last = now
    return time.monotonic() - started


# --- the world ------------------------------------------------------------------------------------


@dataclass
class World:
    bot_id: str
    user_id: str
    dm: str
    rooms: list[str]
    busy: list[str]


async def build_world(hs: Synapse, work: Path, n: int, busy: int) -> World:
    from sqlalchemy import select

    from bench.provision import seed
    from storage.db import Database
    from storage.models import Enterprise, RoomInfo

    admin = await hs.register("admin", PASSWORD, admin=True)
    token = await hs.login(admin, PASSWORD)
    bot_id = await hs.register("gridbot", PASSWORD)
    user_id = await hs.register("user", PASSWORD)
    for mxid in (bot_id, user_id):
        await hs.exempt_from_ratelimit(mxid, token)

    (work / "seed.db").unlink(missing_ok=True)  # an earlier setup that did not finish
    db_url = f"sqlite+aiosqlite:///{work / 'seed.db'}"
    started = time.monotonic()
    people = await seed(db_url, n)
    db = Database(db_url)
    async with db.transaction() as s:
        names = list(await s.scalars(select(Enterprise.name).order_by(Enterprise.id)))
    print(
        f"  roster: {n} enterprises, {len(people)} people ({time.monotonic() - started:.1f} s)",
        flush=True,
    )

    setup = await login(hs, bot_id, device="SETUP")
    user = await login(hs, user_id)
    try:
        joined_ts = int(time.time() * 1000)
        done = 0
        started = time.monotonic()

        async def make(i: int) -> str:
            nonlocal done
            resp = await setup.room_create(
                name=names[i],
                topic=f"{names[i]} 安全生产网格群",
                invite=[user_id] if i < busy else [],
            )
            if not isinstance(resp, RoomCreateResponse):
                raise RuntimeError(f"room_create: {resp}")
            done += 1
            if done % 250 == 0:
                rate = done / (time.monotonic() - started)
                print(f"  {done}/{n} rooms ({rate:.1f}/s)", flush=True)
            return resp.room_id

        rooms = await bounded(range(n), make, SETUP_IN_FLIGHT)
        print(f"  {n} rooms created in {time.monotonic() - started:.1f} s", flush=True)

        async def join(room: str) -> None:
            resp = await user.join(room)
            if not isinstance(resp, JoinResponse):
                raise RuntimeError(f"join {room}: {resp}")

        await bounded(rooms[:busy], join, SETUP_IN_FLIGHT)
        resp = await user.room_create(invite=[bot_id], is_direct=True)
        if not isinstance(resp, RoomCreateResponse):
            raise RuntimeError(f"room_create: {resp}")
        dm = resp.room_id
        joined = await setup.join(dm)
        if not isinstance(joined, JoinResponse):
            raise RuntimeError(f"join {dm}: {joined}")
    finally:
        await setup.close()
        await user.close()

    async with db.transaction() as s:
        ids = list(await s.scalars(select(Enterprise.id).order_by(Enterprise.id)))
        s.add_all(
            RoomInfo(room_id=r, kind="enterprise_room", enterprise_id=e, joined_ts=joined_ts,
                     left=False)
            for r, e in zip(rooms, ids, strict=True)
        )  # fmt: skip
    await db.close()
    return World(bot_id, user_id, dm, rooms, rooms[:busy])


# --- the user -------------------------------------------------------------------------------------


class Commander:
    """The user: writes while the bot is down, then waits for the answer in the direct chat."""

    def __init__(self, client: AsyncClient, world: World) -> None:
        self.client = client
        self.world = world
        self.filter = {
            "room": {
                "rooms": [world.dm],
                "timeline": {"limit": 50},
                "state": {"lazy_load_members": True},
                "ephemeral": {"not_types": ["*"]},
            },
            "presence": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        }

    async def sync(self, timeout_ms: int) -> SyncResponse:
        resp = await self.client.sync(timeout=timeout_ms, sync_filter=self.filter)
        if not isinstance(resp, SyncResponse):
            raise RuntimeError(f"user sync: {resp}")
        return resp

    async def send(self, room: str, body: str) -> str:
        resp = await self.client.room_send(
            room, "m.room.message", {"msgtype": "m.text", "body": body}
        )
        if not isinstance(resp, RoomSendResponse):
            raise RuntimeError(f"send: {resp}")
        return resp.event_id

    async def chatter(self, tag: str) -> None:
        """One message into each busy room, as people write while the bot is away."""
        await bounded(
            self.world.busy, lambda r: self.send(r, f"大家好，今天的检查已做完（{tag}）"), 8
        )

    async def command(self) -> str:
        await self.sync(0)  # from here on, the next syncs hold the command and its answer
        return await self.send(self.world.dm, "/whoami")

    async def answer(self, mine: str) -> float:
        """perf_counter time at which the bot's reply to event ``mine`` reached us."""
        seen_mine = False
        while True:
            sync = await self.sync(30_000)
            room = sync.rooms.join.get(self.world.dm)
            now = time.perf_counter()
            for event in room.timeline.events if room else []:
                if event.event_id == mine:
                    seen_mine = True
                    continue
                if event.sender != self.world.bot_id:
                    continue
                content = event.source.get("content") or {}
                reply_to = ((content.get("m.relates_to") or {}).get("m.in_reply_to") or {}).get(
                    "event_id"
                )
                if reply_to == mine or (seen_mine and reply_to is None):
                    return now


# --- the bot process ------------------------------------------------------------------------------


@dataclass
class Start:
    label: str
    seconds: float  # process start → the user has the answer
    logged_in: float | None  # process start → "logged in" in its log
    cpu: float  # CPU seconds of the bot process until then
    hwm_answer_mb: float  # VmHWM when the answer was in
    hwm_mb: float  # VmHWM once idle
    rss_mb: float  # VmRSS once idle
    settled: float  # seconds from the answer to idle
    gaps: int  # "filled a gap" lines in its log
    handled: int  # events it handled (from its inbox)
    first_handled: float | None  # process start → the first of them handled
    command_handled: float | None  # process start → the /whoami handled (its answer queued)


def bot_command(config: Path, profile: Path | None) -> list[str]:
    if profile is not None:
        profiler = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "bot.cli"]
        return [*profiler, "run", "-c", str(config)]
    script = Path(sys.executable).parent / "gridbot"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]
    return [*head, "run", "-c", str(config)]


def child_env() -> dict[str, str]:
    """This environment without GRIDBOT_* overrides; the repository importable; bytecode
    cached as an installed bot has it (with PYTHONDONTWRITEBYTECODE, set in this machine's
    shell, every start would compile each module edited since its .pyc: seconds and tens of
    MB that a deployed bot never spends)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GRIDBOT_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


# The log line's time, as the bot's logging writes it ("2026-11-29 20:55:25,004" or
# "2026-11-29 20:55:25.004+08:00").
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)(?:[.,](\d+))?([+-]\d\d:?\d\d|Z)?")


def line_time(line: str) -> float | None:
    """The epoch seconds a log line starts with, if it does."""
    m = _STAMP.match(line)
    if not m:
        return None
    text = m.group(1) + (f".{m.group(2)}" if m.group(2) else "") + (m.group(3) or "")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def seen_at(log: str, words: str, wall0: float) -> float | None:
    """Seconds from ``wall0`` to the first log line containing ``words``."""
    for line in log.splitlines():
        if words in line and (t := line_time(line)) is not None:
            return t - wall0
    return None


async def handling(
    db_url: str, since: float, command: str
) -> tuple[int, float | None, float | None]:
    """From the bot's inbox: how many events it handled after ``since`` (epoch seconds), when
    the first was handled and when ``command`` was, both in seconds after ``since``."""
    from sqlalchemy import func, select

    from storage.db import Database
    from storage.models import InboxEvent

    start = datetime.fromtimestamp(since, UTC)
    db = Database(db_url)
    try:
        async with db.transaction() as s:
            count, first = (
                await s.execute(
                    select(func.count(), func.min(InboxEvent.handled_at)).where(
                        InboxEvent.handled_at >= start
                    )
                )
            ).one()
            mine = await s.scalar(
                select(InboxEvent.handled_at).where(InboxEvent.event_id == command)
            )
    finally:
        await db.close()

    def after(t: datetime | None) -> float | None:
        if t is None:
            return None
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() - since

    return int(count), after(first), after(mine)


async def run_bot(
    work: Path, commander: Commander, label: str, profile: Path | None = None, within: float = 300
) -> Start:
    """Start the bot with a /whoami waiting; measure; stop it."""
    mine = await commander.command()
    log_path = work / f"bot-{label.replace(' ', '-')}.log"
    with log_path.open("wb") as log:
        wall0, t0 = time.time(), time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *bot_command(work / "bot.yaml", profile),
            cwd=work,
            env=child_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
    pid = proc.pid
    try:
        answer = asyncio.create_task(commander.answer(mine))
        died = asyncio.create_task(proc.wait())
        done, _ = await asyncio.wait({answer, died}, timeout=within, return_when="FIRST_COMPLETED")
        if answer not in done:
            answer.cancel()
            died.cancel()
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
            why = f"exited with {proc.returncode}" if died in done else f"no answer in {within} s"
            raise RuntimeError(f"bot ({label}) {why}; its log ends:\n{tail}")
        died.cancel()
        seconds = answer.result() - t0
        hwm_answer, cpu = status_kb(pid, "VmHWM") / 1024, process_cpu(pid)
        settled = await settle(pid)
        hwm, rss = status_kb(pid, "VmHWM") / 1024, status_kb(pid, "VmRSS") / 1024
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    text = log_path.read_text(errors="replace")
    config = yaml.safe_load((work / "bot.yaml").read_text())
    handled = await handling(config["database_url"], wall0, mine)
    return Start(
        label,
        seconds,
        seen_at(text, " logged in as ", wall0),
        cpu,
        hwm_answer,
        hwm,
        rss,
        settled,
        text.count("filled a gap"),
        *handled,
    )


def import_floor_mb() -> float:
    """Peak RSS of a Python process that only imports the bot (the code's own share)."""
    import subprocess

    code = "import resource, bot.app; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    peaks = []
    for _ in range(2):  # the first may compile edited modules (more memory), the second not
        command = [sys.executable, "-c", code]
        out = subprocess.run(command, env=child_env(), capture_output=True, text=True, check=True)
        peaks.append(int(out.stdout.strip()) / 1024)
    return min(peaks)


def print_profile(path: Path, top: int = 20) -> None:
    """Where the profiled restart's time went: the project's functions by cumulative time,
    then every function by its own time."""
    stats = pstats.Stats(str(path))
    ours = "^" + re.escape(str(REPO)) + r"/(bot|handlers|storage|messages)/"
    print(f"\nprofiled restart: the project's {top} functions with the most cumulative time")
    stats.sort_stats("cumulative").print_stats(ours, top)
    print(f"profiled restart: the {top} functions with the most time of their own")
    stats.sort_stats("tottime").print_stats(top)


# --- main ---------------------------------------------------------------------------------------


def workdirs(keep: str | None) -> tuple[Path, Path, list[tempfile.TemporaryDirectory[str]]]:
    """The bot's directory, the homeserver's, and the temporary ones to clean up.

    Kept: both in ``keep``. Otherwise the homeserver's data goes to a tmpfs (/dev/shm) when
    there is one: room creation there is CPU-bound (~9 rooms/s here) instead of waiting on
    fsync (2.5-4.5 rooms/s on this VM's disk). The bot's database stays on disk: it is what
    the restart measures.
    """
    if keep:
        work = Path(keep).absolute()
        work.mkdir(parents=True, exist_ok=True)
        return work, work / "synapse", []
    temps = [tempfile.TemporaryDirectory(prefix="gridbot-bench-resume-")]
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        temps.append(tempfile.TemporaryDirectory(prefix="gridbot-bench-resume-hs-", dir=shm))
    return Path(temps[0].name), Path(temps[-1].name) / "synapse", temps


def print_table(starts: list[Start]) -> None:
    def opt(value: float | None, width: int) -> str:
        return f"{value:{width}.2f}" if value is not None else "?".rjust(width)

    print()
    print(
        f"{'':14} {'answer s':>8} {'login s':>8} {'1st event s':>11} {'command s':>9} "
        f"{'events':>6} {'CPU s':>6} {'peak MB':>8} {'at answer':>9} {'idle MB':>8} {'gaps':>5}"
    )
    for s in starts:
        print(
            f"{s.label:14} {s.seconds:8.2f} {opt(s.logged_in, 8)} {opt(s.first_handled, 11)} "
            f"{opt(s.command_handled, 9)} {s.handled:6d} {s.cpu:6.2f} {s.hwm_mb:8.1f} "
            f"{s.hwm_answer_mb:9.1f} {s.rss_mb:8.1f} {s.gaps:5d}"
        )
    print(
        "(seconds from the process start: answer = the user has the reply to the /whoami sent "
        "while the bot was down;\n login = 'logged in' in its log; 1st event, command = the first "
        "event and the /whoami handled, from its inbox;\n events = events it handled; CPU = its "
        "CPU seconds until the answer; peak = VmHWM once idle, and when the answer came;\n "
        "idle MB = VmRSS once idle; gaps = rooms it paged back through /messages)"
    )


async def measure(args: argparse.Namespace) -> list[Result]:
    """Run the benchmark as ``args`` say; print its table; return its summary rows."""
    work, hs_dir, temps = workdirs(args.keep)
    starts: list[Start] = []
    try:
        hs = Synapse(hs_dir, relaxed_limits=True)
        started = time.monotonic()
        await hs.start()
        print(f"homeserver {hs.url} up in {time.monotonic() - started:.1f} s", flush=True)
        try:
            saved = work / "world.json"
            world_ok = saved.exists() and (work / "seed.db").exists()
            world = World(**json.loads(saved.read_text())) if world_ok else None
            if world is not None and (len(world.rooms), len(world.busy)) != (args.rooms, args.busy):
                raise SystemExit(
                    f"{work} holds {len(world.rooms)} rooms ({len(world.busy)} busy): "
                    "use another --keep directory for another size"
                )
            if world is None:
                print(f"setup: {args.rooms} rooms, {args.busy} of them busy", flush=True)
                world = await build_world(hs, work, args.rooms, args.busy)
                saved.write_text(json.dumps(asdict(world)))
            else:
                print(f"reusing the {len(world.rooms)} rooms kept in {work}", flush=True)
            # A fresh database for the first start: its WAL files and crypto store go with it.
            for stale in work.glob("gridbot.db?*"):
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
            shutil.copyfile(work / "seed.db", work / "gridbot.db")
            config = {
                "homeserver": hs.url,
                "user_id": world.bot_id,
                "password": PASSWORD,
                "database_url": f"sqlite+aiosqlite:///{work / 'gridbot.db'}",
                "admins": [world.user_id],
                # A new device per run: a kept homeserver holds the keys of the last run's
                # device, whose crypto store went with its database.
                "device_id": f"RESUME{secrets.token_hex(4).upper()}",
            }
            (work / "bot.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
            commander = Commander(await login(hs, world.user_id), world)
            try:
                await commander.sync(0)
                first = await run_bot(work, commander, "first start")
                starts.append(first)
                print(f"  first start: answered at {first.seconds:.2f} s", flush=True)
                for k in range(1, args.restarts + 1):
                    await commander.chatter(f"restart {k}")
                    start = await run_bot(work, commander, f"restart {k}")
                    starts.append(start)
                    print(
                        f"  restart {k}: answered at {start.seconds:.2f} s, peak "
                        f"{start.hwm_mb:.0f} MB",
                        flush=True,
                    )
                if args.profile:
                    await commander.chatter("profiled")
                    prof = work / "restart.prof"
                    start = await run_bot(work, commander, "profiled", profile=prof)
                    print(f"  profiled restart: answered at {start.seconds:.2f} s", flush=True)
                    print_profile(prof)
            finally:
                await commander.client.close()
        finally:
            await hs.stop()
    finally:
        for temp in temps:
            temp.cleanup()
    # Measured after the runs, so with the code they ran (in a checkout others edit meanwhile).
    floor = import_floor_mb()
    print_table(starts)
    print(f"(a Python process that only imports the bot peaks at {floor:.0f} MB)")
    restarts = [s for s in starts if s.label.startswith("restart")]
    first = starts[0]
    logins = [s.logged_in for s in restarts if s.logged_in is not None]
    busy = f"{args.busy} rooms written to while down" if args.busy else "no activity while down"
    return [
        Result(
            NAME,
            f"restart in {args.rooms} rooms → first answer",
            "s",
            Stats.of(s.seconds for s in restarts),
            target=TARGET_SECONDS,
            note=f"{busy}; logged in at {statistics.median(logins):.2f} s (median)"
            if logins
            else busy,
        ),
        Result(
            NAME,
            f"restart in {args.rooms} rooms → peak RSS",
            "MB",
            Stats.of(s.hwm_mb for s in restarts),
            target=TARGET_MB,
            by="max",
            note=f"imports alone peak at {floor:.0f} MB",
        ),
        Result(
            NAME,
            f"restart in {args.rooms} rooms → CPU s until answered",
            "s",
            Stats.of(s.cpu for s in restarts),
            note="the bot's own CPU seconds: what other load on the machine does not stretch",
        ),
        Result(NAME, "first start → first answer", "s", Stats.of([first.seconds])),
        Result(NAME, "first start → peak RSS", "MB", Stats.of([first.hwm_mb]), by="max"),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=2000, help="rooms the bot is in (2000)")
    parser.add_argument("--restarts", type=int, default=3, help="measured restarts (3)")
    parser.add_argument(
        "--busy",
        type=int,
        help="rooms that get a message while the bot is down (default: a tenth of --rooms)",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep (and reuse) the setup in DIR")
    parser.add_argument(
        "--profile", action="store_true", help="one more restart under cProfile, printed"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="INFO logs of this script")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return parser


def scaled(scale: float) -> list[str]:
    """Arguments for a run ``scale`` times the default size (bench/run.py --quick)."""
    restarts = "3" if scale >= 0.5 else "2"
    return ["--rooms", str(max(50, round(2000 * scale))), "--restarts", restarts]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.busy is None:
        args.busy = args.rooms // 10
    args.busy = min(args.busy, args.rooms)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("nio").setLevel(logging.ERROR)
    results = asyncio.run(measure(args))
    print_summary(results)
    if args.check and any(r.passed is False for r in results):
        print("a target was missed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

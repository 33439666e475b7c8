"""Broadcast fan-out and acknowledgement intake: GridBot beside raw matrix-nio loops.

    python bench/broadcast.py [--rooms 300] [--rounds 3] [--in-flight 16] [--check] [-v]

On a throw-away Synapse (rate limits relaxed, every sender exempt) a "watcher" who sits in every
room records when each message arrives, through its own sync loop. Each enterprise has two rooms
with the same three members: its GridBot room (watcher, bot, chief) and a raw room (watcher, raw
sender, chief), so the homeserver does the same work per message on both sides and the raw
messages never reach the bot. Measured in alternating rounds (bench/interleave.py), the bot
running throughout:

1. raw, sequential: one nio client sends the notice into each raw room, one after the other;
2. raw, concurrent: the same with ``--in-flight`` sends at a time (what the sender allows);
3. GridBot: from the issuer's 确认 to the watcher holding the notice in every enterprise room
   (the issuer's /群发 goes through sync, dispatch, one transaction writing targets, outbox rows
   and deliveries, then the outbox sender); then, untimed against any baseline, every chief
   reacts ✅ at once and the time until GridBot has recorded all of them is noted.

After each measure the bench waits until the bot is idle (inbox handled, outbox sent), so one
round's leftovers do not land on the next. The target is GridBot's median within 1.15 times the
sequential raw loop's (``--check`` turns a miss into exit code 1).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nio import (  # noqa: E402
    AsyncClient,
    JoinResponse,
    RoomCreateResponse,
    RoomMessageNotice,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)
from sqlalchemy import func, select  # noqa: E402

from bench.common import PASSWORD, bounded, broadcast_phases, login, process_cpu, wait_ready  # noqa: E402
from bench.interleave import Result, Stats, interleave, paired_ratios, print_summary  # noqa: E402
from bot.sandbox.homeserver import Synapse  # noqa: E402

NAME = "broadcast"
TARGET_RATIO = 1.15
SETUP_IN_FLIGHT = 8
WATCH_FILTER = {
    "room": {
        "timeline": {"limit": 50},
        "state": {"lazy_load_members": True},
        "ephemeral": {"not_types": ["*"]},
    },
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}
RAW_SEQ, RAW_PAR, GRIDBOT = "raw nio, one at a time", "raw nio, in flight", "GridBot /broadcast"


async def send_ok(client: AsyncClient, room: str, event_type: str, content: dict) -> str:
    while True:
        resp = await client.room_send(room, event_type, content)
        if isinstance(resp, RoomSendResponse):
            return resp.event_id
        if getattr(resp, "status_code", None) == "M_LIMIT_EXCEEDED":
            await asyncio.sleep((getattr(resp, "retry_after_ms", None) or 500) / 1000)
            continue
        raise RuntimeError(f"send to {room} as {client.user_id}: {resp}")


class Watcher:
    """Sits in every room; records when a message containing a marker first arrives there."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.seen: dict[str, dict[str, tuple[float, str]]] = {}  # marker → room → (t, event)
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._sync(0)  # the long first sync, before any clock starts
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _sync(self, timeout_ms: int) -> None:
        resp = await self.client.sync(timeout=timeout_ms, sync_filter=WATCH_FILTER)
        if not isinstance(resp, SyncResponse):
            raise RuntimeError(f"watcher sync: {resp}")
        now = time.perf_counter()
        for room_id, info in resp.rooms.join.items():
            for ev in info.timeline.events:
                if not isinstance(ev, RoomMessageText | RoomMessageNotice):
                    continue
                for marker, rooms in self.seen.items():
                    if marker in ev.body and room_id not in rooms:
                        rooms[room_id] = (now, ev.event_id)
        self._changed.set()

    async def _loop(self) -> None:
        while True:
            await self._sync(30_000)

    def expect(self, marker: str) -> None:
        self.seen[marker] = {}

    async def wait_all(self, marker: str, rooms: set[str], within: float = 600) -> float:
        """perf_counter time at which the last of ``rooms`` showed ``marker``."""
        deadline = time.monotonic() + within
        while not rooms <= self.seen[marker].keys():
            if time.monotonic() > deadline:
                missing = len(rooms - self.seen[marker].keys())
                raise TimeoutError(f"{missing} rooms never showed {marker}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), 5)
            except TimeoutError:
                pass
        return max(self.seen[marker][r][0] for r in rooms)


# --- setup ----------------------------------------------------------------------------------------


@dataclass
class World:
    hs: Synapse
    ids: dict[str, str]
    watcher: AsyncClient
    issuer: AsyncClient
    raw: AsyncClient
    chiefs: list[AsyncClient]
    rooms: list[str]  # enterprise rooms (with the bot), in enterprise order
    raw_rooms: list[str]  # one per enterprise, same members but the raw sender for the bot
    # (empty unless build_world was asked for them)
    l2_rooms: list[str]
    dm: str


async def build_world(hs: Synapse, n: int, *, raw_rooms: bool = False) -> World:
    """Accounts, ``n`` enterprise rooms (watcher, bot, chief), six level-2 rooms, the issuer's
    direct chat with the bot; with ``raw_rooms`` also a raw room per enterprise (watcher, raw
    sender, chief). bench/ratelimits.py builds its world here too (without raw rooms)."""
    admin = await hs.register("admin", PASSWORD, admin=True)
    token = await hs.login(admin, PASSWORD)
    ids = {k: await hs.register(k, PASSWORD) for k in ("issuer", "watcher", "gridbot", "raw")}
    for user_id in ids.values():
        await hs.exempt_from_ratelimit(user_id, token)
    chief_ids = [await hs.register(f"chief{i:03d}", PASSWORD) for i in range(n)]
    print(f"  {n + 4} users registered", flush=True)
    watcher = await login(hs, ids["watcher"])
    issuer = await login(hs, ids["issuer"])
    raw = await login(hs, ids["raw"])
    setup_bot = await login(hs, ids["gridbot"], device="SETUP")
    chiefs = await bounded(chief_ids, lambda u: login(hs, u), SETUP_IN_FLIGHT)

    async def make_room(invite: list[str]) -> str:
        resp = await watcher.room_create(invite=invite)
        if not isinstance(resp, RoomCreateResponse):
            raise RuntimeError(f"room_create: {resp}")
        return resp.room_id

    started = time.monotonic()
    rooms = await bounded(
        range(n), lambda i: make_room([ids["gridbot"], chief_ids[i]]), SETUP_IN_FLIGHT
    )
    raws: list[str] = []
    if raw_rooms:
        raws = await bounded(
            range(n), lambda i: make_room([ids["raw"], chief_ids[i]]), SETUP_IN_FLIGHT
        )
    l2_rooms = await bounded(range(6), lambda _i: make_room([ids["gridbot"]]), SETUP_IN_FLIGHT)
    made = len(rooms) + len(raws) + len(l2_rooms)
    print(f"  {made} rooms created in {time.monotonic() - started:.1f} s", flush=True)

    async def join(pair: tuple[AsyncClient, str]) -> None:
        client, room = pair
        resp = await client.join(room)
        if not isinstance(resp, JoinResponse):
            raise RuntimeError(f"{client.user_id} join {room}: {resp}")

    started = time.monotonic()
    pairs = [(setup_bot, r) for r in rooms + l2_rooms] + [(raw, r) for r in raws]
    pairs += list(zip(chiefs, rooms, strict=True)) + list(zip(chiefs, raws, strict=False))
    await bounded(pairs, join, SETUP_IN_FLIGHT)
    resp = await issuer.room_create(invite=[ids["gridbot"]], is_direct=True)
    assert isinstance(resp, RoomCreateResponse), resp
    dm = resp.room_id
    await join((setup_bot, dm))
    print(f"  {len(pairs) + 1} joins in {time.monotonic() - started:.1f} s", flush=True)
    await setup_bot.close()
    return World(hs, ids, watcher, issuer, raw, chiefs, rooms, raws, l2_rooms, dm)


async def seed(db: Any, world: World) -> None:
    """A county with six level-2 grids (one per domain); each enterprise has its own chief."""
    from storage.models import (
        AdminUnit,
        Enterprise,
        EnterpriseType,
        Grid,
        Person,
        Role,
        RoleKind,
        RoomInfo,
        UnitKind,
    )

    joined_ts = int(time.time() * 1000)
    types = list(EnterpriseType)
    async with db.transaction() as s:
        county = AdminUnit(kind=UnitKind.COUNTY, name="基准县", active=True)
        s.add(county)
        await s.flush()
        l1 = Grid(unit_id=county.id, level=1, domain="", name="基准县一级网格", active=True)
        s.add(l1)
        await s.flush()
        grids = [
            Grid(unit_id=county.id, level=2, domain=t.value, name=f"二级网格·{t.value}",
                 parent_id=l1.id, active=True)
            for t in types
        ]  # fmt: skip
        s.add_all(grids)
        await s.flush()
        ents = [
            Enterprise(unit_id=county.id, grid_id=grids[i % 6].id, name=f"企业{i:03d}",
                       type=types[i % 6].value, active=True)
            for i in range(len(world.rooms))
        ]  # fmt: skip
        s.add_all(ents)
        people = [
            Person(name=f"负责人{i:03d}", matrix_id=c.user_id, active=True)
            for i, c in enumerate(world.chiefs)
        ]
        s.add_all(people)
        await s.flush()
        s.add_all(
            Role(
                person_id=p.id, kind=RoleKind.ENT_CHIEF, enterprise_id=e.id, since=date(2026, 1, 1)
            )
            for p, e in zip(people, ents, strict=True)
        )
        s.add_all(
            RoomInfo(room_id=r, kind="enterprise_room", enterprise_id=e.id, joined_ts=joined_ts,
                     left=False)
            for r, e in zip(world.rooms, ents, strict=True)
        )  # fmt: skip
        s.add_all(
            RoomInfo(room_id=r, kind="l2_room", grid_id=g.id, joined_ts=joined_ts, left=False)
            for r, g in zip(world.l2_rooms, grids, strict=True)
        )
        s.add(RoomInfo(room_id=world.dm, kind="direct", joined_ts=joined_ts, left=False))


# --- the measurements ---------------------------------------------------------------------------


def notice_content(marker: str) -> dict[str, Any]:
    """The same message GridBot posts, rendered from its template."""
    from messages import Messages

    content = (
        Messages()
        .render(
            "zh_CN",
            "notice_post",
            code="N-2026-0000",
            kind="requirement",
            text=notice_text(marker),
            full_text=None,
            issuer_name="基准",
            issuer_role="admin",
            issuer_where=None,
            deadline=datetime.now(UTC),
            attachments=0,
            origin="broadcast",
            enterprise="企业000",
            contacts=[],
        )
        .content("m.text")
    )
    content["m.mentions"] = {}
    return content


def notice_text(marker: str) -> str:
    return (
        f"关于做好基准测试期间安全生产工作的通知（{marker}）\n各企业：请认真落实。\n"
        + "一、……\n" * 8
    )


@dataclass
class Round:
    """One measure of one contender: seconds until the last room had it, and what else was seen."""

    what: str
    seconds: float
    note: str = ""
    server_cpu: float = math.nan  # CPU seconds Synapse spent meanwhile
    client_cpu: float = math.nan  # CPU seconds of this process (GridBot or the raw loop, the
    # watcher and the other clients)


class Cpu:
    """CPU seconds spent by Synapse and by this process since ``start``."""

    def __init__(self, hs: Synapse) -> None:
        assert hs._proc is not None  # started
        self.pid = hs._proc.pid
        self.start()

    def start(self) -> None:
        self.server, self.client = process_cpu(self.pid), time.process_time()

    def spent(self) -> tuple[float, float]:
        return process_cpu(self.pid) - self.server, time.process_time() - self.client


@dataclass
class Bench:
    world: World
    watcher: Watcher
    in_flight: int
    cpu: Cpu
    rounds: list[Round] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    count: dict[str, int] = field(default_factory=dict)

    def marker(self, tag: str) -> str:
        self.count[tag] = self.count.get(tag, 0) + 1
        return f"{tag}-{self.count[tag]}"

    async def raw(self, in_flight: int) -> float:
        what = RAW_SEQ if in_flight == 1 else RAW_PAR
        marker = self.marker("RAW1" if in_flight == 1 else "RAWN")
        content = notice_content(marker)
        rooms = self.world.raw_rooms
        self.watcher.expect(marker)
        started = time.perf_counter()
        self.cpu.start()
        await bounded(
            rooms, lambda r: send_ok(self.world.raw, r, "m.room.message", content), in_flight
        )
        sent = time.perf_counter() - started
        seen = await self.watcher.wait_all(marker, set(rooms)) - started
        self.rounds.append(Round(what, seen, f"all sent at {sent:.2f} s", *self.cpu.spent()))
        return seen


async def issuer_wait(world: World, words: str, within: float = 120) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        resp = await world.issuer.sync(timeout=5000, sync_filter=WATCH_FILTER)
        if not isinstance(resp, SyncResponse):
            continue
        info = resp.rooms.join.get(world.dm)
        for ev in info.timeline.events if info else []:
            if isinstance(ev, RoomMessageNotice) and words in ev.body:
                return
    raise TimeoutError(f"the issuer never saw {words!r}")


class GridBotSide:
    """GridBot running for the whole bench; each call of ``broadcast`` is one round."""

    def __init__(self, bench: Bench, work: Path, database_url: str | None) -> None:
        from bot.config import parse_config

        world = bench.world
        self.bench = bench
        self.config = parse_config(
            {
                "homeserver": world.hs.url,
                "user_id": world.ids["gridbot"],
                "password": PASSWORD,
                "database_url": database_url or f"sqlite+aiosqlite:///{work / 'gridbot.db'}",
                "admins": [world.ids["issuer"]],
            },
            "bench",
        )
        self.db: Any = None
        self.bot: Any = None
        self.task: asyncio.Task[None] | None = None
        self.done = 0  # broadcasts completed

    async def start(self) -> None:
        from bot.app import GridBot
        from storage.db import Database

        self.db = Database(self.config.database_url)
        await self.db.upgrade()
        await seed(self.db, self.bench.world)
        self.bot = GridBot(self.config, self.db)
        self.task = asyncio.create_task(self.bot.run())
        started = time.monotonic()
        await wait_ready(self.bot, self.task)
        print(f"  GridBot ready in {time.monotonic() - started:.1f} s", flush=True)

    async def stop(self) -> None:
        if self.bot is not None and self.task is not None:
            self.bot.stop()
            try:
                await asyncio.wait_for(self.task, 30)
            except TimeoutError:
                print("GridBot did not stop within 30 s")
        if self.db is not None:
            await self.db.close()

    async def idle(self, within: float = 300) -> None:
        """Until every stored event is handled and every queued message sent."""
        from storage.models import InboxEvent, OutboxMessage

        async def nothing_left() -> bool:
            async with self.db.transaction() as s:
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
            return not inbox and not outbox

        await _until(nothing_left, within, pause=0.1)

    async def broadcast(self) -> float:
        from storage import notices as N
        from storage.models import OutboxMessage

        world, watcher = self.bench.world, self.bench.watcher
        marker = self.bench.marker("GRIDBOT")
        n = len(world.rooms)
        await world.issuer.sync(timeout=0, sync_filter=WATCH_FILTER)
        await send_ok(
            world.issuer,
            world.dm,
            "m.room.message",
            {"msgtype": "m.text", "body": "/群发 部署要求\n" + notice_text(marker)},
        )
        await issuer_wait(world, "请确认")
        watcher.expect(marker)
        expected = n * (self.done + 1)  # post deliveries sent, over every round so far
        wall0 = time.time()
        t0 = time.perf_counter()
        self.bench.cpu.start()
        await send_ok(
            world.issuer, world.dm, "m.room.message", {"msgtype": "m.text", "body": "确认"}
        )

        async def all_sent() -> bool:
            async with self.db.transaction() as s:
                sent = await s.scalar(
                    select(func.count())
                    .select_from(N.NoticeDelivery)
                    .join(OutboxMessage, OutboxMessage.id == N.NoticeDelivery.outbox_id)
                    .where(N.NoticeDelivery.part == N.PART_POST, OutboxMessage.status == "sent")
                )
            return sent == expected

        db_done = asyncio.create_task(_until(all_sent))
        seen = await watcher.wait_all(marker, set(world.rooms)) - t0
        cpu = self.bench.cpu.spent()
        recorded = await db_done - t0
        handled, first, last = await self._phases(wall0)
        self.bench.rounds.append(
            Round(
                GRIDBOT,
                seen,
                f"确认 handled (one transaction) at {handled:.2f} s; posts sent "
                f"{first:.2f}–{last:.2f} s; outbox all sent at {recorded:.2f} s",
                *cpu,
            )
        )
        self.done += 1
        await self.idle()  # the echoes of its own posts: not part of the acks that follow
        await self._acks(marker, n * self.done)
        return seen

    async def _acks(self, marker: str, expected: int) -> None:
        """Every chief reacts ✅ to this round's post in their room, all at once."""
        from storage import notices as N

        world = self.bench.world
        posts = self.bench.watcher.seen[marker]

        async def ack(i: int) -> None:
            room = world.rooms[i]
            rel = {"rel_type": "m.annotation", "event_id": posts[room][1], "key": "✅"}
            await send_ok(world.chiefs[i], room, "m.reaction", {"m.relates_to": rel})

        async def all_acked() -> bool:
            async with self.db.transaction() as s:
                acked = await s.scalar(
                    select(func.count())
                    .select_from(N.NoticeTarget)
                    .where(N.NoticeTarget.acked_at.is_not(None))
                )
            return acked == expected

        t0 = time.perf_counter()
        await bounded(range(len(world.rooms)), ack, 64)
        sent = time.perf_counter() - t0
        done = await _until(all_acked) - t0
        self.bench.acks.append(done)
        self.bench.rounds.append(
            Round(f"{len(world.rooms)} ✅ acks → recorded", done, f"all sent at {sent:.2f} s")
        )

    async def _phases(self, wall0: float) -> tuple[float, float, float]:
        """Seconds after 确认 was sent: when it was handled, first and last post sent."""
        world = self.bench.world
        async with self.db.transaction() as s:
            return await broadcast_phases(s, world.dm, world.ids["issuer"], wall0)


async def _until(
    check: Callable[[], Awaitable[bool]],
    within: float = 600,
    pause: float = 0.02,
) -> float:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(pause)
    return time.perf_counter()


# --- main --------------------------------------------------------------------------------------


def print_table(rounds: list[Round], n: int) -> None:
    print()
    print(
        f"{'':28} {'rooms':>5} {'seconds':>8} {'msg/s':>7} {'Synapse CPU s':>13} "
        f"{'this process CPU s':>18}  note"
    )
    for r in rounds:
        server = "" if math.isnan(r.server_cpu) else f"{r.server_cpu:.1f}"
        client = "" if math.isnan(r.client_cpu) else f"{r.client_cpu:.1f}"
        print(
            f"{r.what:28} {n:5d} {r.seconds:8.2f} {n / r.seconds:7.1f} {server:>13} "
            f"{client:>18}  {r.note}"
        )


async def measure(args: argparse.Namespace) -> list[Result]:
    """Run the benchmark as ``args`` say; print its table; return its summary rows."""
    n = args.rooms
    with tempfile.TemporaryDirectory(prefix="gridbot-bench-") as tmp:
        work = Path(tmp)
        hs = Synapse(work / "synapse", relaxed_limits=True)
        started = time.monotonic()
        await hs.start()
        print(f"homeserver {hs.url} up in {time.monotonic() - started:.1f} s", flush=True)
        world: World | None = None
        watcher: Watcher | None = None
        side: GridBotSide | None = None
        try:
            world = await build_world(hs, n, raw_rooms=True)
            watcher = Watcher(world.watcher)
            started = time.monotonic()
            await watcher.start()
            print(f"  watcher's first sync: {time.monotonic() - started:.1f} s", flush=True)
            bench = Bench(world, watcher, args.in_flight, Cpu(hs))
            side = GridBotSide(bench, work, args.database_url)
            await side.start()
            await side.idle()
            print(
                f"{args.rounds} rounds of: {RAW_SEQ}, {RAW_PAR} ({args.in_flight}), {GRIDBOT}",
                flush=True,
            )

            def progress(r: int, name: str, values: list[float]) -> None:
                print(f"  round {r}: {name} {values[0]:.2f} s", flush=True)

            stats = await interleave(
                {
                    RAW_SEQ: lambda: bench.raw(1),
                    RAW_PAR: lambda: bench.raw(args.in_flight),
                    GRIDBOT: side.broadcast,
                },
                args.rounds,
                between=side.idle,
                progress=progress,
            )
        finally:
            if side is not None:
                await side.stop()
            if watcher is not None:
                await watcher.stop()
            if world is not None:
                for c in [world.watcher, world.issuer, world.raw, *world.chiefs]:
                    await c.close()
            await hs.stop()
    print_table(bench.rounds, n)
    grid, seq, par = stats[GRIDBOT], stats[RAW_SEQ], stats[RAW_PAR]

    def cpu(what: str) -> Stats:
        return Stats.of(r.server_cpu + r.client_cpu for r in bench.rounds if r.what == what)

    return [
        Result(
            NAME,
            f"/broadcast to {n} rooms",
            "s",
            grid,
            seq,
            "raw, one at a time",
            TARGET_RATIO,
            note=f"{args.rounds} alternating rounds; GridBot / raw round by round: "
            + ", ".join(f"{x:.2f}" for x in paired_ratios(grid, seq))
            + f"; raw with {args.in_flight} in flight: {par.median:.2f} s median "
            f"({grid.median / par.median:.2f}× GridBot/it)",
        ),
        Result(
            NAME,
            f"/broadcast to {n} rooms (CPU, Synapse + bench process)",
            "s",
            cpu(GRIDBOT),
            cpu(RAW_SEQ),
            "raw, one at a time",
            note="the bench process holds GridBot, or the raw loop, and the watcher",
        ),
        Result(NAME, f"{n} ✅ acks recorded", "s", Stats.of(bench.acks)),
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=300, help="enterprise rooms (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument(
        "--in-flight", type=int, default=16, help="concurrent sends of the raw concurrent loop"
    )
    parser.add_argument(
        "--database-url", help="GridBot's database (default: SQLite in the temp directory)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show GridBot's INFO logs")
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET_RATIO}×")
    return parser


def scaled(scale: float) -> list[str]:
    """Arguments for a run ``scale`` times the default size (bench/run.py --quick)."""
    rounds = "3" if scale >= 0.5 else "2"
    return ["--rooms", str(max(20, round(300 * scale))), "--rounds", rounds]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    results = asyncio.run(measure(args))
    print_summary(results)
    if args.check and any(r.passed is False for r in results):
        print("GridBot above target")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

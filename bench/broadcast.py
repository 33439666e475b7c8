"""Broadcast fan-out and acknowledgement intake: GridBot beside raw matrix-nio loops.

    python bench/broadcast.py [--rooms 300] [--in-flight 16] [--check] [-v]

On a throw-away Synapse (rate limits relaxed, every sender exempt) a "watcher" who sits in every
enterprise room records when each message arrives, through its own sync loop. Measured, in one run:

1. raw, sequential: one nio client sends the notice into each room, one after the other;
2. raw, concurrent: the same with ``--in-flight`` sends at a time (what the sender allows);
3. GridBot: from the issuer's 确认 to the watcher holding the notice in every room
   (the issuer's /群发 goes through sync, dispatch, one transaction writing targets, outbox rows
   and deliveries, then the outbox sender);
4. acknowledgements: every enterprise's chief reacts ✅ at once; time until GridBot has recorded
   all of them in its database.

The target is GridBot within 1.15 times the sequential raw loop (``--check`` turns a miss into
exit code 1). The table goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

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

from bench.common import PASSWORD, login  # noqa: E402
from bot.sandbox.homeserver import Synapse  # noqa: E402

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
T = TypeVar("T")
_DB_URL: list[str | None] = [None]  # --database-url
_DM: list[str] = []  # the issuer's direct chat and id, for _phases


async def bounded(items: Iterable[T], fn: Callable[[T], Awaitable[Any]], limit: int) -> list[Any]:
    slots = asyncio.Semaphore(limit)

    async def one(item: T) -> Any:
        async with slots:
            return await fn(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


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
            with _suppress_timeout():
                await asyncio.wait_for(self._changed.wait(), 5)
        return max(self.seen[marker][r][0] for r in rooms)


class _suppress_timeout:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: object, *_: object) -> bool:
        return exc_type is TimeoutError


@dataclass
class Row:
    what: str
    seconds: float
    n: int
    note: str = ""


# --- setup ----------------------------------------------------------------------------------------


@dataclass
class World:
    hs: Synapse
    ids: dict[str, str]
    watcher: AsyncClient
    issuer: AsyncClient
    raw: AsyncClient
    chiefs: list[AsyncClient]
    rooms: list[str]  # enterprise rooms, in enterprise order
    l2_rooms: list[str]
    dm: str


async def build_world(hs: Synapse, n: int) -> World:
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
        range(n), lambda i: make_room([ids["gridbot"], ids["raw"], chief_ids[i]]), SETUP_IN_FLIGHT
    )
    l2_rooms = await bounded(range(6), lambda _i: make_room([ids["gridbot"]]), SETUP_IN_FLIGHT)
    print(f"  {n + 6} rooms created in {time.monotonic() - started:.1f} s", flush=True)

    async def join(pair: tuple[AsyncClient, str]) -> None:
        client, room = pair
        resp = await client.join(room)
        if not isinstance(resp, JoinResponse):
            raise RuntimeError(f"{client.user_id} join {room}: {resp}")

    started = time.monotonic()
    pairs = [(setup_bot, r) for r in rooms + l2_rooms] + [(raw, r) for r in rooms]
    pairs += list(zip(chiefs, rooms, strict=True))
    await bounded(pairs, join, SETUP_IN_FLIGHT)
    resp = await issuer.room_create(invite=[ids["gridbot"]], is_direct=True)
    assert isinstance(resp, RoomCreateResponse), resp
    dm = resp.room_id
    await join((setup_bot, dm))
    print(f"  {len(pairs) + 1} joins in {time.monotonic() - started:.1f} s", flush=True)
    await setup_bot.close()
    return World(hs, ids, watcher, issuer, raw, chiefs, rooms, l2_rooms, dm)


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
    from datetime import UTC, datetime

    from messages import Messages

    content = (
        Messages()
        .render(
            "zh_CN",
            "notice_post",
            code="N-2026-0000",
            kind="requirement",
            text=notice_text(marker),
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


async def bench_raw(world: World, watcher: Watcher, marker: str, in_flight: int) -> Row:
    content = notice_content(marker)
    watcher.expect(marker)
    started = time.perf_counter()
    await bounded(
        world.rooms, lambda r: send_ok(world.raw, r, "m.room.message", content), in_flight
    )
    sent = time.perf_counter() - started
    seen = await watcher.wait_all(marker, set(world.rooms)) - started
    how = "one at a time" if in_flight == 1 else f"{in_flight} in flight"
    return Row(f"raw nio, {how}", seen, len(world.rooms), f"all sent at {sent:.2f} s")


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


async def bench_gridbot(world: World, watcher: Watcher, work: Path, marker: str) -> list[Row]:
    from bot.app import GridBot
    from bot.config import parse_config
    from storage import notices as N
    from storage.db import Database

    config = parse_config(
        {
            "homeserver": world.hs.url,
            "user_id": world.ids["gridbot"],
            "password": PASSWORD,
            "database_url": _DB_URL[0] or f"sqlite+aiosqlite:///{work / 'gridbot.db'}",
            "admins": [world.ids["issuer"]],
        },
        "bench",
    )
    _DM[:] = [world.dm, world.ids["issuer"]]
    db = Database(config.database_url)
    await db.upgrade()
    await seed(db, world)
    bot = GridBot(config, db)
    run_task = asyncio.create_task(bot.run())
    rows: list[Row] = []
    try:
        started = time.monotonic()
        await _ready(bot, run_task)
        print(f"  GridBot ready in {time.monotonic() - started:.1f} s", flush=True)
        await world.issuer.sync(timeout=0, sync_filter=WATCH_FILTER)
        await send_ok(
            world.issuer,
            world.dm,
            "m.room.message",
            {"msgtype": "m.text", "body": "/群发 部署要求\n" + notice_text(marker)},
        )
        await issuer_wait(world, "请确认")
        watcher.expect(marker)
        t0 = time.perf_counter()
        await send_ok(
            world.issuer, world.dm, "m.room.message", {"msgtype": "m.text", "body": "确认"}
        )

        async def all_sent() -> bool:
            async with db.transaction() as s:
                left = await s.scalar(
                    select(func.count())
                    .select_from(N.NoticeTarget)
                    .join(N.NoticeDelivery, N.NoticeDelivery.target_id == N.NoticeTarget.id)
                    .where(N.NoticeDelivery.part == N.PART_POST)
                )
                from storage.models import OutboxMessage

                sent = await s.scalar(
                    select(func.count())
                    .select_from(N.NoticeDelivery)
                    .join(OutboxMessage, OutboxMessage.id == N.NoticeDelivery.outbox_id)
                    .where(N.NoticeDelivery.part == N.PART_POST, OutboxMessage.status == "sent")
                )
            return bool(left) and left == sent

        wall0 = time.time()
        db_done = asyncio.create_task(_until(all_sent))
        seen = await watcher.wait_all(marker, set(world.rooms)) - t0
        recorded = await db_done - t0
        handled, first, last = await _phases(db, wall0)
        rows.append(
            Row(
                "GridBot /broadcast",
                seen,
                len(world.rooms),
                f"确认 handled (one transaction) at {handled:.2f} s; posts sent "
                f"{first:.2f}–{last:.2f} s; outbox all sent at {recorded:.2f} s",
            )
        )

        # Every chief reacts ✅ to the notice in their room, all at once.
        posts = watcher.seen[marker]

        async def ack(i: int) -> None:
            room = world.rooms[i]
            rel = {"rel_type": "m.annotation", "event_id": posts[room][1], "key": "✅"}
            await send_ok(world.chiefs[i], room, "m.reaction", {"m.relates_to": rel})

        async def all_acked() -> bool:
            async with db.transaction() as s:
                acked = await s.scalar(
                    select(func.count())
                    .select_from(N.NoticeTarget)
                    .where(N.NoticeTarget.acked_at.is_not(None))
                )
            return acked == len(world.rooms)

        t0 = time.perf_counter()
        await bounded(range(len(world.rooms)), ack, 64)
        sent = time.perf_counter() - t0
        done = await _until(all_acked) - t0
        rows.append(
            Row(f"{len(world.rooms)} ✅ acks → recorded", done, len(world.rooms),
                f"all sent at {sent:.2f} s")
        )  # fmt: skip
    finally:
        bot.stop()
        try:
            await asyncio.wait_for(run_task, 30)
        except TimeoutError:
            print("GridBot did not stop within 30 s")
        await db.close()
    return rows


async def _phases(db: Any, wall0: float) -> tuple[float, float, float]:
    """Seconds after 确认 was sent: when it was handled, first and last post sent."""
    from storage import notices as N
    from storage.models import InboxEvent, OutboxMessage

    async with db.transaction() as s:
        handled = await s.scalar(
            select(InboxEvent.handled_at)
            .where(InboxEvent.room_id == _DM[0], InboxEvent.sender == _DM[1])
            .order_by(InboxEvent.seq.desc())
            .limit(1)
        )
        first, last = (
            await s.execute(
                select(func.min(OutboxMessage.sent_at), func.max(OutboxMessage.sent_at))
                .join(N.NoticeDelivery, N.NoticeDelivery.outbox_id == OutboxMessage.id)
                .where(N.NoticeDelivery.part == N.PART_POST)
            )
        ).one()
    stamps = [t.timestamp() - wall0 if t else float("nan") for t in (handled, first, last)]
    return stamps[0], stamps[1], stamps[2]


async def _until(check: Callable[[], Awaitable[bool]], within: float = 600) -> float:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)
    return time.perf_counter()


async def _ready(bot: Any, run_task: asyncio.Task[None], within: float = 180) -> None:
    waiter = asyncio.create_task(bot.ready.wait())
    done, _ = await asyncio.wait({waiter, run_task}, timeout=within, return_when="FIRST_COMPLETED")
    if run_task in done:
        waiter.cancel()
        run_task.result()
        raise RuntimeError("GridBot stopped before it was ready")
    if waiter not in done:
        waiter.cancel()
        raise TimeoutError(f"GridBot not ready within {within} s")


# --- main --------------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'':28} {'rooms':>5} {'seconds':>8} {'msg/s':>7} {'× raw':>6}  note")
    base = next((r.seconds for r in rows if r.what.startswith("raw nio, one")), None)
    for r in rows:
        ratio = f"{r.seconds / base:6.2f}" if base and "acks" not in r.what else ""
        print(f"{r.what:28} {r.n:5d} {r.seconds:8.2f} {r.n / r.seconds:7.1f} {ratio:>6}  {r.note}")
    print(f"(target: GridBot /broadcast within {TARGET_RATIO}× the one-at-a-time raw loop)")


async def run(n: int, in_flight: int, rows: list[Row]) -> None:
    with tempfile.TemporaryDirectory(prefix="gridbot-bench-") as tmp:
        work = Path(tmp)
        hs = Synapse(work / "synapse", relaxed_limits=True)
        started = time.monotonic()
        await hs.start()
        print(f"homeserver {hs.url} up in {time.monotonic() - started:.1f} s", flush=True)
        world: World | None = None
        watcher: Watcher | None = None
        try:
            world = await build_world(hs, n)
            watcher = Watcher(world.watcher)
            started = time.monotonic()
            await watcher.start()
            print(f"  watcher's first sync: {time.monotonic() - started:.1f} s", flush=True)
            print("raw loops", flush=True)
            rows.append(await bench_raw(world, watcher, "RAW-SEQ", 1))
            rows.append(await bench_raw(world, watcher, "RAW-PAR", in_flight))
            print("GridBot", flush=True)
            rows.extend(await bench_gridbot(world, watcher, work, "GRIDBOT"))
        finally:
            if watcher is not None:
                await watcher.stop()
            if world is not None:
                for c in [world.watcher, world.issuer, world.raw, *world.chiefs]:
                    await c.close()
            await hs.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=300, help="enterprise rooms (default 300)")
    parser.add_argument(
        "--in-flight", type=int, default=16, help="concurrent sends of the raw concurrent loop"
    )
    parser.add_argument(
        "--database-url", help="GridBot's database (default: SQLite in the temp directory)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show GridBot's INFO logs")
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET_RATIO}×")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _DB_URL[0] = args.database_url
    rows: list[Row] = []
    try:
        asyncio.run(run(args.rooms, args.in_flight, rows))
    finally:
        if rows:
            print_table(rows)
    base = next((r.seconds for r in rows if r.what.startswith("raw nio, one")), None)
    grid = next((r.seconds for r in rows if r.what == "GridBot /broadcast"), None)
    if args.check and base and grid and grid / base > TARGET_RATIO:
        print("GridBot above target")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""GridBot on a homeserver with Synapse's default rate limits: what the bot's exemption gains.

    python bench/ratelimits.py [--rooms 30] [--commands 8] [--provision-enterprises 2]

One throw-away Synapse with its rate limits as shipped (only logins relaxed, for the benchmark's
own clients). Everyone but the bot is exempt; the bot is exempt for the "exempt" runs and held to
the defaults (``rc_message`` 0.2/s burst 10, ``rc_room_creation`` 0.016/s burst 10, …) for the
"default limits" runs: the override is removed (Synapse then counts from a full burst).

1. Broadcast: the issuer's /群发 to ``--rooms`` enterprise rooms (six level-2 grids, so six
   level-2 copies too), from 确认 to the last post recorded as sent, exempt and not.
2. Answers during the held fan-out: while the default-limits broadcast goes out, the issuer
   sends ``--commands`` /whoami, one every 3 s; each answer's wait (sent → seen by the issuer).
   Beside it, the same commands once the fan-out is over (the limit alone).
3. Provisioning a generated county (``--provision-enterprises`` enterprises; rooms, spaces and
   links as bench/provision.py makes them, people without accounts), exempt and not.

"Per 100 rooms" scales each measured time linearly to 100 rooms (the first ten messages or
rooms of a burst make the small runs a little cheaper than that). The table goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nio import RoomMessageNotice, SyncResponse  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from bench.broadcast import WATCH_FILTER, World, build_world, send_ok  # noqa: E402
from bench.broadcast import seed as seed_broadcast  # noqa: E402
from bench.common import PASSWORD  # noqa: E402
from bot.sandbox.homeserver import RELAXED_LIMITS, Synapse  # noqa: E402

COMMAND_EVERY = 3.0  # seconds between the issuer's /whoami during the fan-out
RC_MESSAGE_BURST = 10  # Synapse 1.163's defaults
RC_ROOM_CREATION_BURST = 10


@dataclass
class Row:
    what: str
    rooms: int
    seconds: float
    note: str = ""
    # Under a limit: the limited actions done (messages sent, rooms created) and the burst
    # Synapse allows before holding them to its rate; 0 when not limited.
    actions: int = 0
    burst: int = 0

    @property
    def per_100(self) -> float:
        """Seconds for 100 rooms: linear when not limited; under a limit the burst, then the
        measured seconds per action beyond it (the rate Synapse holds the bot to)."""
        if not self.rooms:
            return float("nan")
        if not self.burst or self.actions <= self.burst:
            return self.seconds / self.rooms * 100
        per_action = self.seconds / (self.actions - self.burst)
        return max(0.0, 100 * self.actions / self.rooms - self.burst) * per_action


@dataclass
class Waits:
    what: str
    seconds: list[float]


# --- broadcast and answers ------------------------------------------------------------------------


async def _sent_since(db: Any, since: datetime) -> int:
    """Messages the bot sent since then (notice parts, answers, progress reports)."""
    from storage.models import OutboxMessage

    async with db.transaction() as s:
        n = await s.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.status == "sent", OutboxMessage.sent_at >= since)
        )
    return int(n or 0)


async def _posts_sent(db: Any, code: str) -> tuple[int, int]:
    """(posts and level-2 copies of notice ``code``, how many of them are sent)."""
    from storage import notices as N
    from storage.models import OutboxMessage

    async with db.transaction() as s:
        rows = (
            await s.execute(
                select(OutboxMessage.status, func.count())
                .join(N.NoticeDelivery, N.NoticeDelivery.outbox_id == OutboxMessage.id)
                .join(N.Notice, N.Notice.id == N.NoticeDelivery.notice_id)
                .where(N.Notice.code == code)
                .group_by(OutboxMessage.status)
            )
        ).all()
    counts = {status: int(n) for status, n in rows}
    return sum(counts.values()), counts.get("sent", 0)


class Issuer:
    """The issuer's side of the direct chat: send, and wait for the bot's next answer."""

    def __init__(self, world: World, bot_id: str) -> None:
        self.client, self.dm, self.bot_id = world.issuer, world.dm, bot_id
        self.seen: list[tuple[float, str]] = []  # (perf_counter, body) of the bot's messages
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> None:
        await self.client.sync(timeout=0, sync_filter=WATCH_FILTER)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            resp = await self.client.sync(timeout=30_000, sync_filter=WATCH_FILTER)
            if not isinstance(resp, SyncResponse):
                await asyncio.sleep(1)
                continue
            now = time.perf_counter()
            info = resp.rooms.join.get(self.dm)
            for ev in info.timeline.events if info else []:
                if isinstance(ev, RoomMessageNotice) and ev.sender == self.bot_id:
                    self.seen.append((now, ev.body))
            self._changed.set()

    async def say(self, text: str) -> float:
        t0 = time.perf_counter()
        await send_ok(self.client, self.dm, "m.room.message", {"msgtype": "m.text", "body": text})
        return t0

    async def answer(self, after: float, words: str, within: float = 900) -> tuple[float, str]:
        deadline = time.monotonic() + within
        while True:
            for t, body in self.seen:
                if t >= after and words in body:
                    self.seen.remove((t, body))
                    return t, body
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer with {words!r}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), 5)
            except TimeoutError:
                pass


async def broadcast(issuer: Issuer, marker: str) -> tuple[str, float]:
    """/群发 … 确认: the notice's code, and the perf_counter time 确认 was sent."""
    t = await issuer.say(f"/群发 部署要求\n关于基准测试的通知（{marker}）\n各企业：请落实。")
    await issuer.answer(t, "请确认")
    t0 = await issuer.say("确认")
    _, body = await issuer.answer(t0, "已发出")
    return body.split()[1].split("（")[0], t0


async def until_sent(db: Any, code: str, started: float, within: float = 3600) -> float:
    deadline = time.monotonic() + within
    while True:
        total, sent = await _posts_sent(db, code)
        if total and total == sent:
            return time.perf_counter() - started
        if time.monotonic() > deadline:
            raise TimeoutError(f"{code}: {sent}/{total} sent")
        await asyncio.sleep(0.2)


async def commands(issuer: Issuer, n: int, every: float) -> list[float]:
    """Send n /whoami, one every ``every`` seconds; each answer's wait in seconds. One is
    answered before the next is sent, as a person waits for the answer."""
    out: list[float] = []
    for i in range(n):
        if i:
            await asyncio.sleep(every)
        t0 = await issuer.say("/whoami")
        seen, _ = await issuer.answer(t0, issuer.client.user_id)  # the answer names the sender
        out.append(seen - t0)
    return out


async def bench_broadcast(
    hs: Synapse, admin_token: str, world: World, work: Path, n_commands: int
) -> tuple[list[Row], list[Waits]]:
    from bot.app import GridBot
    from bot.config import parse_config
    from storage.db import Database

    bot_id = world.ids["gridbot"]
    config = parse_config(
        {
            "homeserver": hs.url,
            "user_id": bot_id,
            "password": PASSWORD,
            "database_url": f"sqlite+aiosqlite:///{work / 'gridbot.db'}",
            "admins": [world.ids["issuer"]],
        },
        "bench",
    )
    db = Database(config.database_url)
    await db.upgrade()
    await seed_broadcast(db, world)
    bot = GridBot(config, db)
    run_task = asyncio.create_task(bot.run())
    issuer = Issuer(world, bot_id)
    rows: list[Row] = []
    waits: list[Waits] = []
    n = len(world.rooms)
    try:
        await asyncio.wait_for(bot.ready.wait(), 300)
        await issuer.start()
        code, t0 = await broadcast(issuer, "exempt")
        seconds = await until_sent(db, code, t0)
        rows.append(Row("broadcast, bot exempt", n, seconds, f"{n} posts + 6 level-2 copies"))
        print(f"  exempt broadcast: {seconds:.1f} s", flush=True)

        await hs.remove_ratelimit_override(bot_id, admin_token)
        await asyncio.sleep(1)
        since = datetime.now(UTC)
        code, t0 = await broadcast(issuer, "default")
        asked = asyncio.create_task(commands(issuer, n_commands, COMMAND_EVERY))
        seconds = await until_sent(db, code, t0)
        during = await asked
        sent = await _sent_since(db, since)
        note = f"{n} posts + 6 level-2 copies; {sent} messages in all, with the answers"
        rows.append(Row("broadcast, default limits", n, seconds, note, sent, RC_MESSAGE_BURST))
        waits.append(Waits(f"{n_commands} answers during that fan-out", during))
        print(f"  default-limits broadcast: {seconds:.1f} s; answers {during}", flush=True)
        await asyncio.sleep(10)  # the bucket refills a little
        idle = await commands(issuer, n_commands, 6.0)
        waits.append(Waits(f"{n_commands} answers, nothing else sent (one every 6 s)", idle))
        print(f"  answers with nothing else going on: {idle}", flush=True)
    finally:
        await issuer.stop()
        bot.stop()
        try:
            await asyncio.wait_for(run_task, 30)
        except TimeoutError:
            print("GridBot did not stop within 30 s")
        await db.close()
    return rows, waits


# --- provisioning ---------------------------------------------------------------------------------


async def provision_once(
    hs: Synapse, bot_id: str, db_url: str, concurrency: int
) -> tuple[int, float]:
    from bot.client import build_client
    from bot.client import login as bot_login
    from bot.config import parse_config
    from bot.provision.apply import Provisioner
    from bot.provision.matrix import MatrixOps
    from messages import Messages
    from storage.db import Database

    config = parse_config(
        {"homeserver": hs.url, "user_id": bot_id, "password": PASSWORD, "database_url": db_url},
        "bench",
    )
    db = Database(db_url)
    client = build_client(config)
    try:
        await bot_login(client, config, db)
        ops = MatrixOps(client, concurrency=concurrency)
        provisioner = Provisioner(db, ops, Messages(), bot_user_id=bot_id, admins=[])
        started = time.perf_counter()
        summary = await provisioner.run()
        seconds = time.perf_counter() - started
        if summary.failed:
            raise RuntimeError(f"provisioning failed: {summary.failed[:5]}")
        return len(summary.created), seconds
    finally:
        await client.close()
        await db.close()


async def bench_provision(
    hs: Synapse, admin_token: str, work: Path, enterprises: int, concurrency: int
) -> list[Row]:
    from bench.provision import seed as seed_county

    rows = []
    for exempt in (True, False):
        name = "exempt" if exempt else "default"
        bot_id = await hs.register(f"provisioner-{name}", PASSWORD)
        if exempt:
            await hs.exempt_from_ratelimit(bot_id, admin_token)
        db_url = f"sqlite+aiosqlite:///{work / f'provision-{name}.db'}"
        await seed_county(db_url, enterprises)
        rooms, seconds = await provision_once(hs, bot_id, db_url, concurrency)
        what = "provisioning, bot exempt" if exempt else "provisioning, default limits"
        note = f"{enterprises} enterprises, people without accounts"
        burst = 0 if exempt else RC_ROOM_CREATION_BURST
        rows.append(Row(what, rooms, seconds, note, rooms, burst))
        print(f"  {what}: {rooms} rooms in {seconds:.1f} s", flush=True)
    return rows


# --- main -----------------------------------------------------------------------------------------


def print_table(rows: list[Row], waits: list[Waits]) -> None:
    print()
    print(f"{'':34} {'rooms':>5} {'seconds':>8} {'per 100 rooms':>14}  note")
    for r in rows:
        print(f"{r.what:34} {r.rooms:5d} {r.seconds:8.1f} {r.per_100:12.0f} s  {r.note}")
    exempt = {r.what.split(",")[0]: r for r in rows if r.what.endswith("exempt")}
    for r in rows:
        base = exempt.get(r.what.split(",")[0])
        if base is not None and r is not base:
            gain = r.per_100 / base.per_100
            print(f"  {r.what.split(',')[0]}, 100 rooms: exempting the bot is {gain:.0f}× faster")
    for w in waits:
        if w.seconds:
            print(
                f"{w.what}: median {statistics.median(w.seconds):.1f} s, max {max(w.seconds):.1f} s"
            )


async def run(args: argparse.Namespace, rows: list[Row], waits: list[Waits]) -> None:
    with tempfile.TemporaryDirectory(prefix="gridbot-bench-ratelimits-") as tmp:
        work = Path(tmp)
        hs = Synapse(
            work / "synapse",
            relaxed_limits=False,
            limits={"rc_login": RELAXED_LIMITS["rc_login"]},
        )
        await hs.start()
        print(f"homeserver {hs.url} up, default rate limits", flush=True)
        world: World | None = None
        try:
            if args.rooms:
                world = await build_world(hs, args.rooms)
                admin_token = await hs.login(hs.user_id("admin"), PASSWORD)
                got, waited = await bench_broadcast(hs, admin_token, world, work, args.commands)
                rows.extend(got)
                waits.extend(waited)
            else:
                await hs.register("admin", PASSWORD, admin=True)
                admin_token = await hs.login(hs.user_id("admin"), PASSWORD)
            if args.provision_enterprises:
                rows.extend(
                    await bench_provision(
                        hs, admin_token, work, args.provision_enterprises, args.concurrency
                    )
                )
        finally:
            if world is not None:
                for c in [world.watcher, world.issuer, world.raw, *world.chiefs]:
                    await c.close()
            await hs.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", type=int, default=30, help="enterprise rooms (0: skip)")
    parser.add_argument("--commands", type=int, default=8, help="/whoami during the fan-out")
    parser.add_argument(
        "--provision-enterprises", type=int, default=2, help="county size to provision (0: skip)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="provisioning requests")
    parser.add_argument("-v", "--verbose", action="store_true", help="show GridBot's INFO logs")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    rows: list[Row] = []
    waits: list[Waits] = []
    try:
        asyncio.run(run(args, rows, waits))
    finally:
        if rows or waits:
            print_table(rows, waits)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Round-trip latency: a bare matrix-nio echo bot versus GridBot, on a throw-away Synapse.

    python bench/roundtrip.py [--n 200] [--warmup 10] [--batch 20] [--only bare|gridbot] [--check]

A user sends "/whoami", waits (through its own sync) for the bot's reply, then sends the next
one; the wall time of each round trip is recorded. Both bots run at once in this process against
the same homeserver, with every account exempt from rate limits, and are measured in
alternating batches of --batch round trips (bench/interleave.py: bare, GridBot, GridBot, bare,
…), so load from elsewhere on a shared machine hits both alike. The target is GridBot's median
at most 1.2 times the bare bot's (--check turns a miss into exit code 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

# Run as a script from anywhere: make the repository importable.
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nio import (  # noqa: E402
    AsyncClient,
    JoinedMembersResponse,
    MatrixRoom,
    RoomCreateResponse,
    RoomMessageNotice,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)

from bench.common import PASSWORD, login, wait_ready  # noqa: E402
from bench.interleave import (  # noqa: E402
    Measure,
    Result,
    Stats,
    interleave,
    paired_ratios,
    print_summary,
)
from bot.sandbox.homeserver import Synapse  # noqa: E402

NAME = "roundtrip"
TARGET_P50_RATIO = 1.2
# Same filter for the measuring user whatever the bot, so its sync costs the same in both runs.
USER_FILTER = {
    "room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": True}},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}


async def create_room(client: AsyncClient, invite: list[str]) -> str:
    resp = await client.room_create(invite=invite, is_direct=True)
    if not isinstance(resp, RoomCreateResponse):
        raise RuntimeError(f"room_create: {resp}")
    return resp.room_id


async def wait_joined(client: AsyncClient, room_id: str, user_id: str, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        resp = await client.joined_members(room_id)
        if isinstance(resp, JoinedMembersResponse) and any(
            m.user_id == user_id for m in resp.members
        ):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{user_id} did not join {room_id} within {within} s")


class User:
    """The measuring side: send, then sync until the bot answers after our event."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def sync(self, timeout_ms: int) -> SyncResponse:
        resp = await self.client.sync(timeout=timeout_ms, sync_filter=USER_FILTER)
        if not isinstance(resp, SyncResponse):
            raise RuntimeError(f"user sync: {resp}")
        return resp

    async def drain(self, seconds: float) -> None:
        """Swallow whatever is pending (welcome messages, earlier replies)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await self.sync(int(left * 1000))

    async def round_trip(self, room_id: str, bot_id: str, within: float = 30) -> float:
        started = time.perf_counter()
        resp = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": "/whoami"}
        )
        if not isinstance(resp, RoomSendResponse):
            raise RuntimeError(f"send: {resp}")
        mine = resp.event_id
        seen_mine = False
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            sync = await self.sync(30_000)
            room = sync.rooms.join.get(room_id)
            for event in room.timeline.events if room else []:
                if event.event_id == mine:
                    seen_mine = True
                elif (
                    seen_mine
                    and event.sender == bot_id
                    and isinstance(event, RoomMessageText | RoomMessageNotice)
                ):
                    return time.perf_counter() - started
        raise TimeoutError(f"{bot_id} did not answer /whoami within {within} s")


# --- (a) bare matrix-nio echo bot --------------------------------------------------------------


@asynccontextmanager
async def bare_bot(hs: Synapse, user: User, echo_id: str) -> AsyncIterator[str]:
    """A bare nio echo bot answering /whoami in a room with the user; yields the room."""
    echo = await login(hs, echo_id)

    async def on_message(room: MatrixRoom, event: RoomMessageText) -> None:
        if event.sender != echo.user_id and event.body.strip() == "/whoami":
            await echo.room_send(
                room.room_id,
                "m.room.message",
                {"msgtype": "m.notice", "body": f"you are {event.sender}"},
            )

    try:
        room_id = await create_room(user.client, [echo_id])
        await echo.join(room_id)
        await wait_joined(user.client, room_id, echo_id, 10)
        # Start after the backlog, then answer from the live sync loop only.
        await echo.sync(timeout=0)
        echo.add_event_callback(on_message, RoomMessageText)  # type: ignore[arg-type]
        loop_task = asyncio.create_task(echo.sync_forever(timeout=30_000))
        try:
            yield room_id
        finally:
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
    finally:
        await echo.close()


# --- (b) GridBot ---------------------------------------------------------------------------------


@asynccontextmanager
async def gridbot(
    hs: Synapse, user: User, bot_id: str, admin_id: str, work: Path
) -> AsyncIterator[str]:
    """GridBot running against the homeserver, in a room with the user; yields the room."""
    from bot.app import GridBot  # written alongside this script: imported only when used
    from bot.config import parse_config

    config = parse_config(
        {
            "homeserver": hs.url,
            "user_id": bot_id,
            "password": PASSWORD,
            "database_url": f"sqlite+aiosqlite:///{work / 'gridbot.db'}",
            # GridBot accepts invites only from roster people and admins; the user is neither.
            "admins": [admin_id, user.client.user_id],
        },
        "bench",
    )
    bot = GridBot(config)
    run_task = asyncio.create_task(bot.run())
    try:
        await wait_ready(bot, run_task, 30)
        room_id = await create_room(user.client, [bot_id])
        # GridBot joins on invite by itself (and may greet); wait for both to be done.
        await wait_joined(user.client, room_id, bot_id, 20)
        yield room_id
    finally:
        bot.stop()
        try:
            await asyncio.wait_for(run_task, 15)
        except TimeoutError:
            print("GridBot did not stop within 15 s; cancelled")


def batches(user: User, room_id: str, bot_id: str, n: int, batch: int) -> Measure:
    """One call: the next batch of round trips to one bot (ms each), ``n`` in all."""
    done = 0

    async def run() -> list[float]:
        nonlocal done
        k = min(batch, n - done)
        done += k
        return [await user.round_trip(room_id, bot_id) * 1e3 for _ in range(k)]

    return run


# --- main -----------------------------------------------------------------------------------------


def print_table(stats: dict[str, Stats]) -> None:
    print()
    print(
        f"{'':12} {'n':>5} {'p50 ms':>8} {'p90 ms':>8} {'p95 ms':>8} {'mean ms':>8} "
        f"{'min ms':>8} {'max ms':>8}"
    )
    for name, s in stats.items():
        print(
            f"{name:12} {s.n:5d} {s.median:8.1f} {s.p90:8.1f} {s.pct(95):8.1f} {s.mean:8.1f} "
            f"{s.min:8.1f} {s.max:8.1f}"
        )
    if len(stats) == 2:
        bare, grid = stats.values()
        print(
            f"{'ratio':12} {'':5} {grid.median / bare.median:8.2f} {grid.p90 / bare.p90:8.2f} "
            f"{grid.pct(95) / bare.pct(95):8.2f} {grid.mean / bare.mean:8.2f}   "
            f"(GridBot / bare; target p50 ≤ {TARGET_P50_RATIO})"
        )


async def measure(args: argparse.Namespace) -> list[Result]:
    """Run the benchmark as ``args`` say; print its table; return its summary rows."""
    n, batch = args.n, max(1, args.batch)
    with tempfile.TemporaryDirectory(prefix="gridbot-bench-") as tmp:
        work = Path(tmp)
        hs = Synapse(work / "synapse", relaxed_limits=True)
        started = time.monotonic()
        await hs.start()
        print(f"homeserver {hs.url} up in {time.monotonic() - started:.1f} s", flush=True)
        user: User | None = None
        try:
            admin_id = await hs.register("admin", PASSWORD, admin=True)
            admin_token = await hs.login(admin_id, PASSWORD)
            ids = {name: await hs.register(name, PASSWORD) for name in ("user", "echo", "gridbot")}
            for user_id in ids.values():
                await hs.exempt_from_ratelimit(user_id, admin_token)
            user = User(await login(hs, ids["user"]))
            await user.sync(0)
            async with contextlib.AsyncExitStack() as bots_up:
                bots: dict[str, tuple[str, str]] = {}
                if args.only in (None, "bare"):
                    room = await bots_up.enter_async_context(bare_bot(hs, user, ids["echo"]))
                    bots["bare echo"] = (room, ids["echo"])
                if args.only in (None, "gridbot"):
                    room = await bots_up.enter_async_context(
                        gridbot(hs, user, ids["gridbot"], admin_id, work)
                    )
                    bots["GridBot"] = (room, ids["gridbot"])
                await user.drain(1.0)  # welcome messages and the like
                for room_id, bot_id in bots.values():
                    for _ in range(args.warmup):
                        await user.round_trip(room_id, bot_id)
                rounds = math.ceil(n / batch)
                print(
                    f"{' and '.join(bots)}: {args.warmup} warm-up + {n} round trips each, "
                    f"{rounds} alternating batches of {batch}",
                    flush=True,
                )

                def progress(r: int, name: str, values: list[float]) -> None:
                    if r % 5 == 0 or r == rounds:
                        print(
                            f"  round {r}/{rounds} {name}: median {Stats.of(values).median:.1f} ms",
                            flush=True,
                        )

                stats = await interleave(
                    {name: batches(user, *bot, n, batch) for name, bot in bots.items()},
                    rounds,
                    progress=progress,
                )
        finally:
            if user is not None:
                await user.client.close()
            await hs.stop()
    print_table(stats)
    if "GridBot" not in stats:
        return []
    return [
        Result(
            NAME,
            "/whoami round trip",
            "ms",
            stats["GridBot"],
            stats.get("bare echo"),
            "bare nio echo",
            TARGET_P50_RATIO if "bare echo" in stats else None,
            note=f"{rounds} alternating batches of {batch} per bot, {args.warmup} warm-up each"
            + paired_note(stats),
        )
    ]


def paired_note(stats: dict[str, Stats]) -> str:
    """Batch by batch, GridBot's median over the bare bot's neighbouring batch: the spread
    shows how far one run's ratio can be trusted."""
    if len(stats) != 2:
        return ""
    pairs = paired_ratios(stats["GridBot"], stats["bare echo"])
    if not pairs:
        return ""
    return (
        f"; batch by batch {min(pairs):.2f}–{max(pairs):.2f}, median {Stats.of(pairs).median:.2f}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="measured round trips per bot")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured round trips first")
    parser.add_argument("--batch", type=int, default=20, help="round trips per bot in a row")
    parser.add_argument("--only", choices=("bare", "gridbot"), help="run one half only")
    parser.add_argument("-v", "--verbose", action="store_true", help="show GridBot's INFO logs")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 if p50 ratio > {TARGET_P50_RATIO}"
    )
    return parser


def scaled(scale: float) -> list[str]:
    """Arguments for a run ``scale`` times the default size (bench/run.py --quick)."""
    n = max(20, round(200 * scale))
    batch = max(5, round(20 * scale))
    return ["--n", str(n), "--batch", str(batch), "--warmup", str(max(3, round(10 * scale)))]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.n < 1:
        build_parser().error("--n must be at least 1")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    results = asyncio.run(measure(args))
    print_summary(results)
    if args.check and any(r.passed is False for r in results):
        print("p50 ratio above target")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Round-trip latency: a bare matrix-nio echo bot versus GridBot, on a throw-away Synapse.

    python bench/roundtrip.py [--n 200] [--warmup 10] [--batch 20] [--only bare|gridbot] [--check]

A user sends "/whoami", waits (through its own sync) for the bot's reply, then sends the next
one; the wall time of each round trip is recorded. Both bots run at once in this process against
the same homeserver, with every account exempt from rate limits, and are measured in
alternating batches (--batch), so load from elsewhere on a shared machine hits both alike.
The target is GridBot's p50 at most 1.2 times the bare bot's (--check turns a miss into exit
code 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

from bench.common import PASSWORD, login  # noqa: E402
from bot.sandbox.homeserver import Synapse  # noqa: E402

TARGET_P50_RATIO = 1.2
# Same filter for the measuring user whatever the bot, so its sync costs the same in both runs.
USER_FILTER = {
    "room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": True}},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}


@dataclass
class Stats:
    name: str
    samples: list[float]  # seconds

    def pct(self, q: int) -> float:
        if len(self.samples) < 2:
            return self.samples[0]
        return statistics.quantiles(self.samples, n=100, method="inclusive")[q - 1]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p95(self) -> float:
        return self.pct(95)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples)


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
        await _wait_ready(bot, run_task)
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


async def measure_interleaved(
    user: User, bots: dict[str, tuple[str, str]], n: int, warmup: int, batch: int
) -> list[Stats]:
    """``n`` round trips per bot, in alternating batches of ``batch``: whatever else the shared
    machine does meanwhile slows both bots alike, so the ratio holds where raw times do not."""
    for room_id, bot_id in bots.values():
        for _ in range(warmup):
            await user.round_trip(room_id, bot_id)
    samples: dict[str, list[float]] = {name: [] for name in bots}
    while any(len(s) < n for s in samples.values()):
        for name, (room_id, bot_id) in bots.items():
            for _ in range(min(batch, n - len(samples[name]))):
                samples[name].append(await user.round_trip(room_id, bot_id))
        done = min(len(s) for s in samples.values())
        if done % 50 < batch:
            print(f"  {done}/{n} round trips each", flush=True)
    return [Stats(name, s) for name, s in samples.items()]


async def _wait_ready(bot: Any, run_task: asyncio.Task[None], within: float = 30) -> None:
    ready = getattr(bot, "ready", None)
    if not isinstance(ready, asyncio.Event):
        await asyncio.sleep(2)  # no readiness signal: give it time for login and first sync
        return
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait({waiter, run_task}, timeout=within, return_when="FIRST_COMPLETED")
    if run_task in done:
        waiter.cancel()
        run_task.result()  # raises what the bot died of
        raise RuntimeError("GridBot stopped before it was ready")
    if waiter not in done:
        waiter.cancel()
        raise TimeoutError(f"GridBot not ready within {within} s")


# --- main -----------------------------------------------------------------------------------------


def print_table(results: list[Stats]) -> None:
    print()
    print(
        f"{'':12} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'min ms':>8} {'max ms':>8}"
    )
    for s in results:
        print(
            f"{s.name:12} {len(s.samples):5d} {s.p50 * 1e3:8.1f} {s.p95 * 1e3:8.1f} "
            f"{s.mean * 1e3:8.1f} {min(s.samples) * 1e3:8.1f} {max(s.samples) * 1e3:8.1f}"
        )
    if len(results) == 2:
        bare, grid = results
        print(
            f"{'ratio':12} {'':5} {grid.p50 / bare.p50:8.2f} {grid.p95 / bare.p95:8.2f} "
            f"{grid.mean / bare.mean:8.2f}   (GridBot / bare; target p50 ≤ {TARGET_P50_RATIO})"
        )


async def run(n: int, warmup: int, batch: int, only: str | None, results: list[Stats]) -> None:
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
                if only in (None, "bare"):
                    room = await bots_up.enter_async_context(bare_bot(hs, user, ids["echo"]))
                    bots["bare echo"] = (room, ids["echo"])
                if only in (None, "gridbot"):
                    room = await bots_up.enter_async_context(
                        gridbot(hs, user, ids["gridbot"], admin_id, work)
                    )
                    bots["GridBot"] = (room, ids["gridbot"])
                await user.drain(1.0)  # welcome messages and the like
                print(
                    f"{' and '.join(bots)}: {warmup} warm-up + {n} round trips each, "
                    f"alternating batches of {batch}",
                    flush=True,
                )
                results.extend(await measure_interleaved(user, bots, n, warmup, batch))
        finally:
            if user is not None:
                await user.client.close()
            await hs.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="measured round trips per bot")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured round trips first")
    parser.add_argument("--batch", type=int, default=20, help="round trips per bot in a row")
    parser.add_argument("--only", choices=("bare", "gridbot"), help="run one half only")
    parser.add_argument("-v", "--verbose", action="store_true", help="show GridBot's INFO logs")
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 if p50 ratio > {TARGET_P50_RATIO}"
    )
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    results: list[Stats] = []
    try:
        asyncio.run(run(args.n, args.warmup, max(1, args.batch), args.only, results))
    finally:
        if results:
            print_table(results)
    if args.check and len(results) == 2 and results[1].p50 / results[0].p50 > TARGET_P50_RATIO:
        print("p50 ratio above target")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Encryption's cost: GridBot in encrypted rooms beside GridBot in unencrypted rooms, same run.

    python bench/encryption.py [--n 100] [--batch 10] [--rooms 300] [--scale 1.0] [--check]

Round trip: a member sends "/whoami" and waits (through its own sync) for the answer; one
GridBot with ``encryption: true`` in an encrypted direct chat with a member whose nio client
encrypts, one with ``encryption: false`` in a plain one, measured in alternating batches
(bench/interleave.py). Target: encrypted p50 at most 1.3 times the unencrypted.

Broadcast: one message queued (the one send path, bot/outgoing.py) into each of --rooms
encrypted rooms (each with a member whose device must get the room key) and as many plain
rooms; the time until the outbox is empty. Target: encrypted at most 1.5 times plain.
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
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nio import (  # noqa: E402
    AsyncClient,
    AsyncClientConfig,
    JoinedMembersResponse,
    LoginResponse,
    RoomCreateResponse,
    RoomMessageNotice,
    RoomMessageText,
    RoomSendResponse,
    SyncResponse,
)
from sqlalchemy import func, select  # noqa: E402

from bench.common import PASSWORD, bounded, wait_ready  # noqa: E402
from bench.interleave import Result, Stats, interleave, print_summary  # noqa: E402
from bot.sandbox.homeserver import Synapse  # noqa: E402

MEGOLM = {
    "type": "m.room.encryption",
    "state_key": "",
    "content": {"algorithm": "m.megolm.v1.aes-sha2"},
}
FILTER = {
    "room": {"timeline": {"limit": 50}, "state": {"lazy_load_members": True}},
    "presence": {"not_types": ["*"]},
    "account_data": {"not_types": ["*"]},
}
RT_TARGET, FAN_TARGET = 1.3, 1.5


async def member(hs: Synapse, user_id: str, store: Path | None) -> AsyncClient:
    config = AsyncClientConfig(encryption_enabled=store is not None, store_sync_tokens=False)
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, at setup
    client = AsyncClient(hs.url, user_id, store_path=str(store or ""), config=config)
    resp = await client.login(PASSWORD, device_name="bench")
    if not isinstance(resp, LoginResponse):
        raise RuntimeError(f"login {user_id}: {resp}")
    return client


async def sync(client: AsyncClient, timeout_ms: int) -> SyncResponse:
    resp = await client.sync(timeout=timeout_ms, sync_filter=FILTER)
    if not isinstance(resp, SyncResponse):
        raise RuntimeError(f"sync: {resp}")
    if client.olm is not None:
        if client.should_upload_keys:
            await client.keys_upload()
        if client.should_query_keys:
            await client.keys_query()
        if client.should_claim_keys:
            await client.keys_claim(client.get_users_for_key_claiming())
        await client.send_to_device_messages()
    return resp


async def joined(client: AsyncClient, room_id: str, user_id: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        resp = await client.joined_members(room_id)
        if isinstance(resp, JoinedMembersResponse) and any(
            m.user_id == user_id for m in resp.members
        ):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{user_id} did not join {room_id}")


async def room_with(client: AsyncClient, bot_id: str, encrypted: bool) -> str:
    resp = await client.room_create(
        invite=[bot_id], is_direct=False, initial_state=[MEGOLM] if encrypted else []
    )
    if not isinstance(resp, RoomCreateResponse):
        raise RuntimeError(f"room_create: {resp}")
    return resp.room_id


async def round_trip(client: AsyncClient, room_id: str, bot_id: str) -> float:
    started = time.perf_counter()
    resp = await client.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "/whoami"},
        ignore_unverified_devices=True,
    )
    if not isinstance(resp, RoomSendResponse):
        raise RuntimeError(f"send: {resp}")
    seen = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = await sync(client, 30_000)
        room = got.rooms.join.get(room_id)
        for event in room.timeline.events if room else []:
            if event.event_id == resp.event_id:
                seen = True
            elif (
                seen
                and event.sender == bot_id
                and isinstance(event, RoomMessageText | RoomMessageNotice)
            ):
                return (time.perf_counter() - started) * 1e3
    raise TimeoutError("no answer")


async def start_bot(hs: Synapse, bot_id: str, work: Path, admins: list[str], encrypted: bool):
    from bot.app import GridBot
    from bot.config import parse_config

    name = "enc" if encrypted else "plain"
    config = parse_config(
        {
            "homeserver": hs.url,
            "user_id": bot_id,
            "password": PASSWORD,
            "database_url": f"sqlite+aiosqlite:///{work / f'{name}.db'}",
            "admins": admins,
            "encryption": {"enabled": encrypted, "trust": "all"},
        },
        "bench",
    )
    bot = GridBot(config)
    task = asyncio.create_task(bot.run())
    await wait_ready(bot, task, 60)
    return bot, task


async def settle(bot: Any, rooms: int) -> None:
    """Until the bot is in ``rooms`` rooms and has sent what it had to say (its welcomes)."""
    await asyncio.sleep(2)
    while True:
        if not bot.sender.busy_rooms and len(bot.client.rooms) >= rooms:
            return
        await asyncio.sleep(0.2)


async def fan_out(bot: Any, rooms: list[str]) -> float:
    """Queue one message into each room (one transaction) and time until all are sent."""
    from bot.outgoing import Outgoing, queue
    from storage.models import OutboxMessage

    started = time.perf_counter()
    async with bot.db.transaction() as session:
        for room in rooms:
            queue(
                session,
                bot.services.messages,
                Outgoing(room, "internal_error"),
                locale="zh_CN",
                cause=None,
            )
    while True:
        async with bot.db.transaction() as session:
            left = await session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.status == "pending")
            )
        if not left:
            return time.perf_counter() - started
        await asyncio.sleep(0.05)


async def measure(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="gridbot-bench-e2e-") as tmp:
        work = Path(tmp)
        hs = Synapse(work / "synapse", relaxed_limits=True)
        await hs.start()
        clients: list[AsyncClient] = []
        tasks: list[asyncio.Task[None]] = []
        bots: list[Any] = []
        try:
            admin = await hs.register("admin", PASSWORD, admin=True)
            token = await hs.login(admin, PASSWORD)
            ids = {n: await hs.register(n, PASSWORD) for n in ("enc", "plain", "u1", "u2")}
            for uid in ids.values():
                await hs.exempt_from_ratelimit(uid, token)
            enc_user = await member(hs, ids["u1"], work / "store-u1")
            plain_user = await member(hs, ids["u2"], None)
            clients += [enc_user, plain_user]
            await sync(enc_user, 0)
            await sync(plain_user, 0)
            admins = [ids["u1"], ids["u2"]]
            for encrypted in (True, False):
                bot, task = await start_bot(
                    hs, ids["enc" if encrypted else "plain"], work, admins, encrypted
                )
                bots.append(bot)
                tasks.append(task)
            rooms = {}
            for name, user, encrypted in (
                ("encrypted", enc_user, True),
                ("plain", plain_user, False),
            ):
                bot_id = ids["enc" if encrypted else "plain"]
                rooms[name] = (user, await room_with(user, bot_id, encrypted), bot_id)
                await joined(user, rooms[name][1], bot_id)
                await sync(user, 1000)
            for user, room, bot_id in rooms.values():
                for _ in range(args.warmup):
                    await round_trip(user, room, bot_id)
            batch, n = max(1, args.batch), args.n
            count = math.ceil(n / batch)
            done = {k: 0 for k in rooms}

            def measure_one(name: str):
                async def run() -> list[float]:
                    k = min(batch, n - done[name])
                    done[name] += k
                    user, room, bot_id = rooms[name]
                    return [await round_trip(user, room, bot_id) for _ in range(k)]

                return run

            stats = await interleave({k: measure_one(k) for k in rooms}, count)
            enc, plain = stats["encrypted"], stats["plain"]
            print(
                f"round trip p50: encrypted {enc.median:.1f} ms, plain {plain.median:.1f} ms, "
                f"ratio {enc.median / plain.median:.2f} (target ≤ {RT_TARGET})"
            )
            results.append(
                Result("e2e", "/whoami round trip", "ms", enc, plain, "unencrypted", RT_TARGET)
            )

            if args.rooms:
                made: dict[bool, list[str]] = {}
                for encrypted, user in ((True, enc_user), (False, plain_user)):
                    bot_id = ids["enc" if encrypted else "plain"]

                    async def make(_i: int, user=user, bot_id=bot_id, encrypted=encrypted) -> str:
                        return await room_with(user, bot_id, encrypted)

                    made[encrypted] = await bounded(range(args.rooms), make, 8)
                    await joined(user, made[encrypted][-1], bot_id, 120)
                for bot in bots:
                    await settle(bot, args.rooms + 1)
                seconds = {
                    enc: await fan_out(bot, made[enc])
                    for bot, enc in zip(bots, (True, False), strict=True)
                }
                ratio = seconds[True] / seconds[False]
                print(
                    f"broadcast to {args.rooms} rooms: encrypted {seconds[True]:.2f} s, "
                    f"plain {seconds[False]:.2f} s, ratio {ratio:.2f} (target ≤ {FAN_TARGET})"
                )
                results.append(
                    Result(
                        "e2e",
                        f"one message into {args.rooms} rooms",
                        "s",
                        Stats.of([seconds[True]]),
                        Stats.of([seconds[False]]),
                        "unencrypted",
                        FAN_TARGET,
                    )
                )
        finally:
            for bot in bots:
                bot.stop()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 20)
            for c in clients:
                await c.close()
            await hs.stop()
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="measured round trips per bot")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rooms", type=int, default=300, help="rooms per broadcast (0: skip)")
    parser.add_argument("--scale", type=float, default=1.0, help="every size at this fraction")
    parser.add_argument("--check", action="store_true", help="exit 1 on a missed target")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.n = max(10, round(args.n * args.scale))
    args.rooms = round(args.rooms * args.scale)
    logging.basicConfig(level=logging.WARNING)
    results = asyncio.run(measure(args))
    print_summary(results)
    if args.check and any(r.passed is False for r in results):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Provisioning speed: GridBot versus a raw matrix-nio loop, on one throw-away Synapse.

    python bench/provision.py [--enterprises 300] [--rounds 2] [--concurrency 8] [--accounts]
                              [--no-admin] [--no-linked] [--check]

A generated county (province → city → county; six level-2 grids; N enterprises, each with a
chief and two members, served by ten grid members per domain) is written into a fresh database.
GridBot provisions it (spaces, rooms, links both ways, power levels, account checks,
bookkeeping). Two baselines run beside it at the same concurrency:

- "raw nio loop": the same number of rooms with the same names, topics and room types
  (spaces), and nothing else. The target (≤ 1.3×) is against this one.
- "raw loop, links both ways": the same rooms as a tree, with the least a client can send for
  the issue's links both ways: deepest level first, each space's createRoom carrying its
  m.space.child links, then one m.space.parent PUT per link. This shows what the links alone
  cost the homeserver.

Runs alternate round by round, in reversed order every other round (raw, linked, GridBot,
GridBot, linked, raw, …; bench/interleave.py; each GridBot round with its own bot account and
database), so all see the same drift: the homeserver slows down as its database grows, and
other load on the machine comes and goes. The target compares medians over the rounds. Besides
wall time the table shows the CPU seconds Synapse and this process spent, which other load on
the machine disturbs less.

By default the roster's people have no accounts (found missing and listed, so no invites are
sent); ``--accounts`` registers them all first, and both sides then invite them. GridBot's account
is a server admin, as the README advises, so it reads who has an account in one admin-API
listing; ``--no-admin`` makes it an ordinary account that looks each person up (profile).
Every account is exempt from rate limits; the homeserver runs with relaxed limits.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from nio import (  # noqa: E402
    RoomCreateResponse,
    RoomPutStateResponse,
)

from bench.common import PASSWORD, login, process_cpu  # noqa: E402
from bench.interleave import Result, Stats, interleave, paired_ratios, print_summary  # noqa: E402
from bot.sandbox.homeserver import Synapse  # noqa: E402

if TYPE_CHECKING:
    from bot.provision.matrix import MatrixOps
    from bot.provision.plan import Plan

T = TypeVar("T")
NAME = "provision"
TARGET_RATIO = 1.3
RAW, LINKED, GRIDBOT = "raw nio loop", "raw loop, links both ways", "GridBot provision"
DOMAINS = ("道路客运", "道路货运", "港口", "航运", "渡口", "交通工程")
TYPES = ("道路客运企业及站场", "道路货运企业", "港口码头", "航运企业", "渡口", "在建交通工程")
MEMBERS_PER_GRID = 10


@dataclass
class Run:
    """One run of one contender."""

    name: str
    rooms: int
    seconds: float
    server_cpu: float = 0.0  # CPU seconds Synapse spent meanwhile: steadier than wall time
    client_cpu: float = 0.0  # CPU seconds of this process (GridBot's side, or the raw loop)

    @property
    def rate(self) -> float:
        return self.rooms / self.seconds if self.seconds else 0.0


def synapse_pid(hs: Synapse) -> int:
    assert hs._proc is not None  # started
    return hs._proc.pid


async def timed(hs: Synapse, work: Awaitable[T]) -> tuple[T, float, float, float]:
    """Run ``work``: its value, wall seconds, Synapse CPU seconds and this process's CPU seconds."""
    pid = synapse_pid(hs)
    server, started, cpu = process_cpu(pid), time.perf_counter(), time.process_time()
    value = await work
    seconds = time.perf_counter() - started
    return value, seconds, process_cpu(pid) - server, time.process_time() - cpu


async def seed(db_url: str, enterprises: int) -> list[str]:
    """Write the generated county; returns every roster Matrix id."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from storage.db import Database
    from storage.models import (
        AdminUnit,
        Assignment,
        Enterprise,
        Grid,
        Person,
        Role,
        RoleKind,
        UnitKind,
    )

    since = date(2026, 1, 1)
    db = Database(db_url)
    await db.upgrade()
    mxids: list[str] = []

    def person(s: AsyncSession, name: str) -> Person:
        mxid = f"@b{len(mxids):04d}:localhost"
        mxids.append(mxid)
        p = Person(name=name, phone=f"138{len(mxids):08d}", matrix_id=mxid, active=True)
        s.add(p)
        return p

    async with db.transaction() as s:
        province = AdminUnit(kind=UnitKind.PROVINCE, name="江西省", active=True)
        s.add(province)
        await s.flush()
        city = AdminUnit(kind=UnitKind.CITY, name="萍乡市", parent_id=province.id, active=True)
        s.add(city)
        await s.flush()
        county = AdminUnit(kind=UnitKind.COUNTY, name="芦溪县", parent_id=city.id, active=True)
        s.add(county)
        await s.flush()
        l1 = Grid(unit_id=county.id, level=1, domain="", name="芦溪县一级网格", active=True)
        s.add(l1)
        await s.flush()
        roles: list[Role] = []
        for kind, n in (
            (RoleKind.L1_CHIEF, 1),
            (RoleKind.L1_OFFICE_DIRECTOR, 1),
            (RoleKind.L1_OFFICE_MEMBER, 2),
        ):
            for i in range(n):
                p = person(s, f"一级{kind}{i}")
                await s.flush()
                roles.append(Role(person_id=p.id, kind=kind, grid_id=l1.id, since=since))
        grids = []
        for domain in DOMAINS:
            g = Grid(
                unit_id=county.id,
                level=2,
                domain=domain,
                name=f"芦溪县二级网格·{domain}",
                parent_id=l1.id,
                active=True,
            )
            s.add(g)
            await s.flush()
            chief, office = person(s, f"{domain}网格长"), person(s, f"{domain}办公室")
            members = [person(s, f"{domain}网格员{i}") for i in range(MEMBERS_PER_GRID)]
            await s.flush()
            roles.append(
                Role(person_id=chief.id, kind=RoleKind.L2_CHIEF, grid_id=g.id, since=since)
            )
            roles.append(
                Role(person_id=office.id, kind=RoleKind.L2_OFFICE_MEMBER, grid_id=g.id, since=since)
            )
            roles.extend(
                Role(person_id=m.id, kind=RoleKind.L2_MEMBER, grid_id=g.id, since=since)
                for m in members
            )
            grids.append((g, members))
        for i in range(enterprises):
            g, members = grids[i % len(grids)]
            ent = Enterprise(
                unit_id=county.id,
                grid_id=g.id,
                name=f"芦溪县第{i + 1:03d}号{DOMAINS[i % len(DOMAINS)]}企业",
                type=TYPES[i % len(TYPES)],
                active=True,
            )
            s.add(ent)
            chief = person(s, f"企业{i}负责人")
            staff = [person(s, f"企业{i}网格员{j}") for j in range(2)]
            await s.flush()
            roles.append(
                Role(person_id=chief.id, kind=RoleKind.ENT_CHIEF, enterprise_id=ent.id, since=since)
            )
            roles.extend(
                Role(person_id=p.id, kind=RoleKind.ENT_MEMBER, enterprise_id=ent.id, since=since)
                for p in staff
            )
            member = members[(i // len(grids)) % len(members)]
            s.add(Assignment(person_id=member.id, enterprise_id=ent.id, since=since))
        s.add_all(roles)
    await db.close()
    return mxids


async def bench_gridbot(
    hs: Synapse, bot_id: str, db_url: str, concurrency: int
) -> tuple[Run, MatrixOps]:
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
        provisioner = Provisioner(
            db, ops, Messages(), bot_user_id=bot_id, admins=[], locale="zh_CN"
        )
        summary, seconds, server, cpu = await timed(hs, provisioner.run())
        if summary.failed:
            raise RuntimeError(f"provisioning failed: {summary.failed[:5]}")
        return Run(GRIDBOT, len(summary.created), seconds, server, cpu), ops
    finally:
        await client.close()
        await db.close()


async def bench_raw(
    hs: Synapse,
    user_id: str,
    rooms: list[tuple[str, str, bool, list[str]]],
    concurrency: int,
    name: str,
) -> Run:
    """Create the rooms (name, topic, space?, invites) with ``concurrency`` requests in flight."""
    client = await login(hs, user_id)
    queue: asyncio.Queue[tuple[str, str, bool, list[str]]] = asyncio.Queue()
    for room in rooms:
        queue.put_nowait(room)

    async def worker() -> None:
        while not queue.empty():
            room_name, topic, space, invite = queue.get_nowait()
            resp = await client.room_create(name=room_name, topic=topic, space=space, invite=invite)
            if not isinstance(resp, RoomCreateResponse):
                raise RuntimeError(f"room_create: {resp}")

    try:
        _, seconds, server, cpu = await timed(
            hs, asyncio.gather(*(worker() for _ in range(concurrency)))
        )
        return Run(name, len(rooms), seconds, server, cpu)
    finally:
        await client.close()


async def bench_raw_linked(
    hs: Synapse, user_id: str, plan: Plan, invites: bool, concurrency: int, name: str
) -> Run:
    """The plan's rooms as a tree with a plain nio loop: one level at a time, deepest first, each
    space made with its m.space.child links, then one m.space.parent PUT per link."""
    client = await login(hs, user_id)
    server = user_id.split(":", 1)[1]
    ids: dict[str, str] = {}
    levels: dict[int, list[str]] = {}
    for key in plan.rooms:
        levels.setdefault(plan.depth(key), []).append(key)
    slots = asyncio.Semaphore(concurrency)

    async def make(key: str) -> None:
        spec = plan.rooms[key]
        links = [
            {"type": "m.space.child", "state_key": ids[c], "content": {"via": [server]}}
            for c in plan.children(key)
        ]
        async with slots:
            resp = await client.room_create(
                name=spec.name,
                topic=spec.topic,
                space=spec.is_space,
                invite=sorted(spec.members) if invites else [],
                initial_state=links,
            )
        if not isinstance(resp, RoomCreateResponse):
            raise RuntimeError(f"room_create: {resp}")
        ids[key] = resp.room_id

    async def link(child: str, parent: str) -> None:
        async with slots:
            resp = await client.room_put_state(
                ids[child], "m.space.parent", {"via": [server]}, state_key=ids[parent]
            )
        if not isinstance(resp, RoomPutStateResponse):
            raise RuntimeError(f"room_put_state: {resp}")

    async def tree() -> None:
        for depth in sorted(levels, reverse=True):
            await asyncio.gather(*(make(k) for k in levels[depth]))
        await asyncio.gather(*(link(k, p) for k, spec in plan.rooms.items() for p in spec.parents))

    try:
        _, seconds, server_cpu, cpu = await timed(hs, tree())
        return Run(name, len(plan.rooms), seconds, server_cpu, cpu)
    finally:
        await client.close()


def print_table(runs: list[Run]) -> None:
    print()
    head = ("rooms", "seconds", "rooms/s", "Synapse CPU s", "client CPU s")
    print(f"{'':34} {head[0]:>6} {head[1]:>8} {head[2]:>8} {head[3]:>14} {head[4]:>13}")

    def row(name: str, rooms: float, seconds: float, server: float, client: float) -> None:
        print(
            f"{name:34} {rooms:6.0f} {seconds:8.1f} {rooms / seconds:8.2f} "
            f"{server:14.1f} {client:13.1f}"
        )

    for r in runs:
        row(r.name, r.rooms, r.seconds, r.server_cpu, r.client_cpu)
    for name in (RAW, LINKED, GRIDBOT):
        mine = [r for r in runs if r.name == name]
        if mine:
            medians = [
                Stats.of(getattr(r, a) for r in mine).median
                for a in ("rooms", "seconds", "server_cpu", "client_cpu")
            ]
            row(f"{name}, median", *medians)


async def measure(args: argparse.Namespace) -> list[Result]:
    """Run the benchmark as ``args`` say; print its table; return its summary rows."""
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="gridbot-bench-provision-") as tmp:
        work = Path(tmp)
        hs = Synapse(work / "synapse", relaxed_limits=True)
        t0 = time.monotonic()
        await hs.start()
        print(f"homeserver {hs.url} up in {time.monotonic() - t0:.1f} s", flush=True)
        try:
            admin = await hs.register("admin", PASSWORD, admin=True)
            admin_token = await hs.login(admin, PASSWORD)
            raw_id = await hs.register("raw", PASSWORD)
            await hs.exempt_from_ratelimit(raw_id, admin_token)
            # One bot account and database per GridBot round: each provisions from scratch.
            bots: list[tuple[str, str]] = []
            for n in range(args.rounds):
                bot_id = await hs.register(f"gridbot{n + 1}", PASSWORD, admin=not args.no_admin)
                await hs.exempt_from_ratelimit(bot_id, admin_token)
                db_url = f"sqlite+aiosqlite:///{work / f'gridbot{n + 1}.db'}"
                mxids = await seed(db_url, args.enterprises)
                bots.append((bot_id, db_url))
            print(f"roster: {args.enterprises} enterprises, {len(mxids)} people", flush=True)
            if args.accounts:
                t0 = time.monotonic()
                for mxid in mxids:
                    await hs.register(mxid[1:].split(":")[0], PASSWORD)
                print(f"registered them in {time.monotonic() - t0:.1f} s", flush=True)

            # The same rooms for the raw loop: names, topics and types from GridBot's own plan.
            from bot.config import parse_config
            from bot.provision.cli import load_plan
            from storage.db import Database

            db = Database(bots[0][1])
            plan = await load_plan(
                db,
                parse_config(
                    {"homeserver": hs.url, "user_id": bots[0][0], "password": PASSWORD}, "bench"
                ),
            )
            await db.close()
            rooms = [
                (
                    s.name or "",
                    s.topic or "",
                    s.is_space,
                    sorted(s.members) if args.accounts else [],
                )
                for s in plan.rooms.values()
            ]
            print(f"{len(rooms)} rooms, {args.concurrency} in flight", flush=True)

            async def raw() -> float:
                runs.append(await bench_raw(hs, raw_id, rooms, args.concurrency, RAW))
                return runs[-1].seconds

            async def linked() -> float:
                run = await bench_raw_linked(
                    hs, raw_id, plan, args.accounts, args.concurrency, LINKED
                )
                runs.append(run)
                return run.seconds

            unused = iter(bots)

            async def gridbot() -> float:
                run, ops = await bench_gridbot(hs, *next(unused), args.concurrency)
                runs.append(run)
                print(f"    GridBot's requests: {dict(ops.calls)}", flush=True)
                return run.seconds

            def progress(r: int, name: str, values: list[float]) -> None:
                print(f"  round {r}: {name} {values[0]:.1f} s", flush=True)

            # The homeserver slows down as its database grows (and other load on the machine
            # comes and goes): alternating rounds, in reversed order every other round, give
            # every contender the same drift.
            contenders = {RAW: raw, GRIDBOT: gridbot}
            if not args.no_linked:
                contenders = {RAW: raw, LINKED: linked, GRIDBOT: gridbot}
            stats = await interleave(contenders, args.rounds, progress=progress)
        finally:
            await hs.stop()
    print_table(runs)

    def cpu(name: str) -> Stats:
        return Stats.of(r.server_cpu + r.client_cpu for r in runs if r.name == name)

    paired = paired_ratios(stats[GRIDBOT], stats[RAW])
    results = [
        Result(
            NAME,
            f"provision {len(rooms)} rooms (wall)",
            "s",
            stats[GRIDBOT],
            stats[RAW],
            "create-only loop",
            TARGET_RATIO,
            note=f"{args.rounds} alternating rounds; GridBot / raw round by round: "
            + ", ".join(f"{x:.2f}" for x in paired),
        ),
        Result(
            NAME,
            f"provision {len(rooms)} rooms (CPU, Synapse + client)",
            "s",
            cpu(GRIDBOT),
            cpu(RAW),
            "create-only loop",
        ),
    ]
    if LINKED in stats:
        results.append(
            Result(
                NAME,
                f"provision {len(rooms)} rooms (wall)",
                "s",
                stats[GRIDBOT],
                stats[LINKED],
                "loop linking both ways",
            )
        )
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--enterprises", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=2, help="alternating rounds (each GridBot's own account)"
    )
    parser.add_argument(
        "--accounts", action="store_true", help="register every roster person (invites sent)"
    )
    parser.add_argument(
        "--no-admin", action="store_true", help="GridBot's account is not a server admin"
    )
    parser.add_argument(
        "--no-linked", action="store_true", help="skip the raw loop with links both ways"
    )
    parser.add_argument("--check", action="store_true", help=f"exit 1 if ratio > {TARGET_RATIO}")
    return parser


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def scaled(scale: float) -> list[str]:
    """Arguments for a run ``scale`` times the default size (bench/run.py --quick)."""
    quick = [] if scale >= 0.5 else ["--no-linked"]  # the create-only loop is the target's
    return ["--enterprises", str(max(20, round(300 * scale))), "--rounds", "2", *quick]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("nio").setLevel(logging.ERROR)
    logging.getLogger("bot.provision.apply").setLevel(logging.INFO)  # time per phase
    results = asyncio.run(measure(args))
    print_summary(results)
    if args.check and any(r.passed is False for r in results):
        print("ratio above target")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

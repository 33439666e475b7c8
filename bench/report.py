"""Reports on a generated year: a county and a province, on SQLite and PostgreSQL.

    python bench/report.py [--scale 1.0] [--backends sqlite,postgresql] [--scopes county,province]

A year (2026) of grid work is written with bulk inserts (COPY on PostgreSQL):

- county: 500 enterprises, 6,000 visits, 2,000 hazards, 200 notices × 500 acknowledgements;
- province: 100 counties of 300 enterprises, 360,000 visits, 60,000 hazards, 100 notices per
  county to all its enterprises (3,000,000 acknowledgements).

``--scale`` shrinks the province (0.1: 10 counties). Each report — the year's report of the
county (summary + workbook + chart) and of the province (its counties side by side, ranked)
— runs in a fresh child process after a warm-up (matplotlib imported, the CJK font registered,
one tiny chart drawn, January's report built: as in a bot that has answered a report already,
its queries compiled), so its time and peak
memory (the child's maximum RSS, Python and libraries included) are its own. Targets: county
under 2 s on SQLite, province under 15 s on PostgreSQL, both under 500 MB (``--check``: exit 1
on a miss). The table goes to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sqlalchemy import Table, insert, text  # noqa: E402

from storage.db import Database  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
PG = os.environ.get("GRIDBOT_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
DOMAINS = [
    ("道路客运", "道路客运企业及站场"),
    ("道路货运", "道路货运企业"),
    ("港口", "港口码头"),
    ("航运", "航运企业"),
    ("渡口", "渡口"),
    ("交通工程", "在建交通工程"),
]
TARGETS = {"county": ("sqlite", 2.0), "province": ("postgresql", 15.0)}
MEMORY_MB = 500
BATCH = 50_000


def local(day: date, hour: int = 9) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=TZ).astimezone(UTC)


# --- data ---------------------------------------------------------------------------------------


class Gen:
    """Rows of each table, with ids given here (no round trips)."""

    def __init__(self, seed: int = 16) -> None:
        self.rnd = random.Random(seed)
        self.ids: dict[str, int] = {}

    def id(self, table: str) -> int:
        self.ids[table] = self.ids.get(table, 0) + 1
        return self.ids[table]


async def bulk(db: Database, table: Table, rows: Iterable[dict[str, Any]]) -> int:
    """Insert ``rows`` in batches: COPY on PostgreSQL, executemany on SQLite."""
    n = 0
    batch: list[dict[str, Any]] = []

    async def flush() -> None:
        if not batch:
            return
        cols = list(dict.fromkeys(k for r in batch for k in r))  # rows may leave some out
        async with db.transaction() as s:
            if db.dialect == "postgresql":
                conn = await s.connection()
                raw = (await conn.get_raw_connection()).driver_connection
                records = [
                    tuple(
                        json.dumps(v) if isinstance(v, list | dict) else v
                        for v in (r.get(c) for c in cols)
                    )
                    for r in batch
                ]
                await raw.copy_records_to_table(table.name, records=records, columns=cols)
            else:
                await s.execute(insert(table), [{c: r.get(c) for c in cols} for r in batch])

    for row in rows:
        batch.append(row)
        n += 1
        if len(batch) >= BATCH:
            await flush()
            batch = []
    await flush()
    return n


async def generate(
    db: Database, counties: int, per_county: int, notices: int, hazards: int
) -> dict[str, int]:
    """A year of work in ``counties`` counties of ``per_county`` enterprises each, with
    ``notices`` notices to all of a county's enterprises and ``hazards`` hazards a county."""
    from storage.cases import Accident, CaseEvent, CaseRequest, Hazard
    from storage.models import AdminUnit, Assignment, Enterprise, Grid, Person, Role
    from storage.notices import Notice, NoticeFeedback, NoticeTarget
    from storage.visits import Meeting, Training, TrainingAttendee, Visit

    g = Gen()
    rnd = g.rnd
    y0 = date(2026, 1, 1)
    units, grids, ents, people, roles, assigns = [], [], [], [], [], []
    province = g.id("unit")
    units.append({"id": province, "kind": "province", "name": "江西省", "active": True})
    cities = [g.id("unit") for _ in range(max(1, counties // 10))]
    units += [
        {"id": c, "kind": "city", "name": f"第{i + 1}市", "parent_id": province, "active": True}
        for i, c in enumerate(cities)
    ]
    layout: list[dict[str, Any]] = []  # per county: l1 grid, enterprises, members

    def person(name: str) -> int:
        pid = g.id("person")
        people.append(
            {"id": pid, "name": name, "phone": f"1{pid:010d}", "matrix_id": None, "active": True}
        )
        return pid

    def role(pid: int, kind: str, grid: int | None = None, ent: int | None = None) -> None:
        roles.append(
            {
                "id": g.id("role"),
                "person_id": pid,
                "kind": kind,
                "grid_id": grid,
                "enterprise_id": ent,
                "since": y0,
            }
        )

    for c in range(counties):
        unit = g.id("unit")
        name = f"第{c + 1}县"
        units.append(
            {"id": unit, "kind": "county", "name": name, "parent_id": cities[c % len(cities)]}
            | {"active": True}
        )
        l1 = g.id("grid")
        grids.append(
            {"id": l1, "unit_id": unit, "level": 1, "domain": "", "name": f"{name}一级网格"}
            | {"active": True}
        )
        role(person(f"{name}局长"), "l1_chief", l1)
        role(person(f"{name}安全"), "l1_office_director", l1)
        county: dict[str, Any] = {"l1": l1, "ents": [], "members": [], "grids": []}
        l2s = []
        for domain, _type in DOMAINS:
            gid = g.id("grid")
            grids.append(
                {
                    "id": gid,
                    "unit_id": unit,
                    "level": 2,
                    "domain": domain,
                    "name": f"{name}二级网格·{domain}",
                    "parent_id": l1,
                    "active": True,
                }
            )
            chief = person(f"{name}{domain}网格长")
            role(chief, "l2_chief", gid)
            l2s.append((gid, chief))
        county["grids"] = l2s
        members: dict[int, list[int]] = {}
        for gid, _ in l2s:
            members[gid] = []
            for m in range(max(1, per_county // len(DOMAINS) // 10)):
                pid = person(f"{name}网格员{gid}-{m}")
                role(pid, "l2_member", gid)
                members[gid].append(pid)
                county["members"].append(pid)
        for e in range(per_county):
            gid, _chief = l2s[e % len(l2s)]
            eid = g.id("ent")
            ents.append(
                {
                    "id": eid,
                    "unit_id": unit,
                    "grid_id": gid,
                    "name": f"{name}企业{e:04d}",
                    "type": DOMAINS[e % len(DOMAINS)][1],
                    "active": True,
                }
            )
            role(person(f"{name}企业{e:04d}负责人"), "ent_chief", ent=eid)
            member = members[gid][e // len(l2s) % len(members[gid])]
            assigns.append(
                {"id": g.id("assign"), "person_id": member, "enterprise_id": eid, "since": y0}
            )
            county["ents"].append((eid, member))
        layout.append(county)
    counts = {}
    for model, rows in (
        (AdminUnit, units),
        (Grid, grids),
        (Enterprise, ents),
        (Person, people),
        (Role, roles),
        (Assignment, assigns),
    ):
        counts[model.__tablename__] = await bulk(db, model.__table__, rows)

    def visits() -> Iterator[dict[str, Any]]:
        for county in layout:
            for eid, member in county["ents"]:
                for month in range(1, 13):
                    r = rnd.random()
                    times = 0 if r < 0.08 else 2 if r > 0.92 else 1
                    for k in range(times):
                        n = g.id("visit")
                        yield {
                            "id": n,
                            "code": f"V-2026-{n:07d}",
                            "person_id": member,
                            "enterprise_id": eid,
                            "visit_date": date(2026, month, 5 + 10 * k),
                            "checked": "检查",
                            "photos": [],
                            "room_id": "!bench",
                        }

    counts["visits"] = await bulk(db, Visit.__table__, visits())
    hazard_rows: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for county in layout:
        for i in range(hazards):
            eid, _m = county["ents"][i % len(county["ents"])]
            n = g.id("hazard")
            code = f"H-2026-{n:06d}"
            reported = local(y0 + timedelta(days=rnd.randrange(365)), 10)
            deadline = (reported + timedelta(days=rnd.randrange(5, 40))).astimezone(TZ).date()
            r = rnd.random()
            row = {
                "id": n,
                "code": code,
                "enterprise_id": eid,
                "status": "rectifying",
                "grade": "major" if r < 0.03 else "general",
                "category": ["车辆动态监控", "消防设施", "危险货物", "安全管理制度"][n % 4],
                "description": "隐患",
                "location": "现场",
                "interim_measures": "",
                "plan": "",
                "responsible": "",
                "deadline": deadline,
                "deadline_at": local(deadline + timedelta(days=1), 0),
                "photos": [],
                "fix_photos": [],
                "fix_note": "",
                "rework_count": 0,
                "supervised": r < 0.01,
                "reported_by": "@bench",
                "reporter_name": "网格员",
                "reported_at": reported,
            }

            def ev(action: str, at: datetime, code: str = code) -> None:
                events.append(
                    {
                        "id": g.id("event"),
                        "kind": "hazard",
                        "code": code,
                        "action": action,
                        "from_state": None,
                        "to_state": "x",
                        "actor": "@bench",
                        "actor_name": "网格员",
                        "room_id": None,
                        "at": at,
                        "note": "",
                    }
                )

            if r < 0.85:  # rectified, some late, some after a failed re-check
                done = reported + timedelta(days=rnd.randrange(3, 45))
                if done > row["deadline_at"]:
                    ev("overdue", row["deadline_at"])
                if rnd.random() < 0.1:
                    ev("verify_fail", done - timedelta(days=2))
                    row["rework_count"] = 1
                ev("verify_pass", done)
                row.update(status="closed", verified_at=done, closed_at=done)
            elif row["deadline_at"] < datetime(2027, 1, 1, tzinfo=UTC):
                ev("overdue", row["deadline_at"])
            hazard_rows.append(row)
    counts["hazards"] = await bulk(db, Hazard.__table__, hazard_rows)
    counts["case_events"] = await bulk(db, CaseEvent.__table__, events)
    hazard_rows.clear()
    events.clear()
    reqs, accs = [], []
    for county in layout:
        for i in range(per_county // 2):
            eid, _m = county["ents"][(i * 7) % len(county["ents"])]
            n = g.id("request")
            raised = local(y0 + timedelta(days=rnd.randrange(360)), 9)
            taken = raised + timedelta(hours=rnd.randrange(1, 72)) if i % 5 else None
            reqs.append(
                {
                    "id": n,
                    "code": f"E-2026-{n:06d}",
                    "enterprise_id": eid,
                    "text": "问题",
                    "status": "resolved" if taken and i % 3 else "open",
                    "level": "member",
                    "deadline_at": raised + timedelta(hours=24),
                    "raised_by": "@bench",
                    "raiser_name": "企业",
                    "raised_at": raised,
                    "taken_at": taken,
                    "resolved_at": taken + timedelta(hours=24) if taken and i % 3 else None,
                    "escalations": 1 if i % 11 == 0 else 0,
                }
            )
        for i in range(2):
            eid, _m = county["ents"][i]
            n = g.id("accident")
            occurred = local(y0 + timedelta(days=rnd.randrange(360)), 14)
            accs.append(
                {
                    "id": n,
                    "code": f"A-2026-{n:05d}",
                    "enterprise_id": eid,
                    "status": "reported",
                    "occurred_at": occurred,
                    "place": "国道",
                    "type": "道路交通事故",
                    "dead": 0,
                    "injured": 1,
                    "missing": 0,
                    "vehicles": "",
                    "account": "",
                    "photos": [],
                    "updates": 0,
                    "reported_by": "@bench",
                    "reporter_name": "企业",
                    "reported_at": occurred + timedelta(minutes=rnd.randrange(5, 120)),
                }
            )
    counts["case_requests"] = await bulk(db, CaseRequest.__table__, reqs)
    counts["accidents"] = await bulk(db, Accident.__table__, accs)
    meetings, trainings, attendees, notice_rows = [], [], [], []
    for county in layout:
        for gid, chief in county["grids"]:
            for q in range(4):
                if rnd.random() < 0.85:
                    n = g.id("meeting")
                    meetings.append(
                        {
                            "id": n,
                            "code": f"M-2026-{n:06d}",
                            "grid_id": gid,
                            "person_id": chief,
                            "meeting_date": date(2026, 3 * q + 2, 15),
                            "attendees": "全体",
                            "topics": "安全",
                            "decisions": "落实",
                            "room_id": "!bench",
                        }
                    )
        for k in range(2):
            n = g.id("training")
            trainings.append(
                {
                    "id": n,
                    "code": f"T-2026-{n:05d}",
                    "grid_id": county["l1"],
                    "recorded_by": "@bench",
                    "training_date": date(2026, 3 + 6 * k, 1),
                    "topic": "业务培训",
                    "attendees_text": "",
                    "room_id": "!bench",
                }
            )
            for pid in county["members"][k::2]:
                attendees.append(
                    {"id": g.id("attendee"), "training_id": n, "name": "网格员", "person_id": pid}
                )
        for k in range(notices):
            n = g.id("notice")
            created = local(y0 + timedelta(days=(k * 360) // max(1, notices)), 9)
            notice_rows.append(
                {
                    "id": n,
                    "code": f"N-2026-{n:06d}",
                    "origin": "broadcast",
                    "kind": "requirement",
                    "text": "通知",
                    "attachments": [],
                    "issuer": "@bench",
                    "issuer_name": "局",
                    "issuer_room": None,
                    "locale": "zh_CN",
                    "scope": {},
                    "created_at": created,
                    "deadline": created + timedelta(hours=72),
                    "target_count": len(county["ents"]),
                    "progress_reported": 100,
                }
            )
    counts["meetings"] = await bulk(db, Meeting.__table__, meetings)
    counts["trainings"] = await bulk(db, Training.__table__, trainings)
    counts["training_attendees"] = await bulk(db, TrainingAttendee.__table__, attendees)
    counts["notices"] = await bulk(db, Notice.__table__, notice_rows)
    feedback: list[dict[str, Any]] = []

    def targets() -> Iterator[dict[str, Any]]:
        i = 0
        for county in layout:
            mine = notice_rows[i : i + notices]
            i += notices
            for notice in mine:
                for eid, _m in county["ents"]:
                    n = g.id("target")
                    r = rnd.random()
                    acked = (
                        notice["created_at"] + timedelta(hours=rnd.randrange(1, 100))
                        if r < 0.93
                        else None
                    )
                    if acked and r < 0.2:
                        feedback.append(
                            {
                                "id": g.id("feedback"),
                                "target_id": n,
                                "person": "@bench",
                                "person_name": "企业",
                                "text": "已落实",
                                "event_id": f"$fb{n}",
                                "created_at": acked,
                            }
                        )
                    yield {
                        "id": n,
                        "notice_id": notice["id"],
                        "enterprise_id": eid,
                        "enterprise_name": "企业",
                        "grid_id": None,
                        "room_id": None,
                        "acked_at": acked,
                        "ack_method": "reaction" if acked else None,
                    }

    counts["notice_targets"] = await bulk(db, NoticeTarget.__table__, targets())
    counts["notice_feedback"] = await bulk(db, NoticeFeedback.__table__, feedback)
    if db.dialect == "postgresql":
        async with db.transaction() as s:
            await s.execute(text("ANALYZE"))
    return counts


# --- measuring one report in a child process -----------------------------------------------------


async def _measure(url: str, scope: str) -> dict[str, float]:
    from bot.config import parse_config
    from handlers.reports import charts, files
    from handlers.reports.build import Target, build
    from handlers.reports.model import COUNTIES, COUNTY
    from handlers.reports.period import Period
    from messages import Messages
    from storage.directory import Reach
    from storage.reports import Scope

    charts.register_fonts()
    import matplotlib.figure

    matplotlib.figure.Figure().savefig(io.BytesIO(), format="png")  # warm-up
    config = parse_config(
        {"homeserver": "http://localhost", "user_id": "@b:localhost", "password": "-"}
    )
    db = Database(url)
    async with db.transaction() as s:
        first = await s.scalar(text("SELECT min(id) FROM grids WHERE level = 1"))
    if scope == "county":
        target = Target(COUNTY, Scope(Reach(l1_grids=frozenset({first}))), "第1县")
    else:
        target = Target(COUNTIES, Scope(Reach(everything=True)), "江西省")
    now = datetime(2027, 1, 10, 12, tzinfo=TZ)
    async with db.transaction() as s:  # warm-up: the queries compiled once, as in a running bot
        await build(s, config, target, Period("month", 2026, 1), now)
    t0, c0 = time.perf_counter(), time.process_time()
    async with db.transaction() as s:
        backend = None
        if db.dialect == "postgresql":  # the server process answering this transaction
            backend = await s.scalar(text("SELECT pg_backend_pid()"))
            # All the work in that one process, so its CPU time is the database's (on 2 cores
            # parallel workers gain little anyway).
            await s.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
        server0 = _process_cpu(backend)
        report = await build(s, config, target, Period("year", 2026, 0), now)
        server = _process_cpu(backend) - server0
    t1 = time.perf_counter()
    rendered = await files.render(report, frozenset({"chat", "xlsx"}), "zh_CN", Messages())
    Messages().render("zh_CN", "report_summary", **rendered.summary, files=[], scheduled=False,
                      late=False, due_at=None)  # fmt: skip
    t2, c2 = time.perf_counter(), time.process_time()
    await db.close()
    peak = _high_water_mb()
    return {
        "seconds": t2 - t0,
        "sql": t1 - t0,
        "files": t2 - t1,
        "cpu": c2 - c0 + server,
        "peak_mb": peak,
    }


def _process_cpu(pid: int | None) -> float:
    """CPU seconds a local process (the PostgreSQL backend) has used; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _high_water_mb() -> float:
    """This process's peak resident memory. Not ru_maxrss: Linux carries the parent's peak
    across fork and exec into it (the generator's data would count)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(url: str, scope: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", url, "--scope", scope],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- main ------------------------------------------------------------------------------------


async def _pg_database() -> tuple[str, str]:
    import asyncpg

    name = f"gridbot_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG.replace("postgresql+asyncpg", "postgresql") + "/test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return f"{PG}/{name}", name


async def _drop_pg(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG.replace("postgresql+asyncpg", "postgresql") + "/test")
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def prepare(backend: str, scope: str, scale: float, tmp: Path) -> tuple[str, str, float]:
    """A database with the scope's year; its URL, a name to drop, and seconds to generate."""
    if backend == "postgresql":
        url, name = await _pg_database()
    else:
        url, name = f"sqlite+aiosqlite:///{tmp / f'{scope}.db'}", ""
    db = Database(url)
    await db.upgrade()
    t = time.perf_counter()
    if scope == "county":
        await generate(db, 1, 500, 200, 2000)
    else:
        await generate(db, max(1, round(100 * scale)), 300, 100, 600)
    took = time.perf_counter() - t
    await db.close()
    return url, name, took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="province size (1.0: 100 counties)")
    p.add_argument("--backends", default="sqlite,postgresql")
    p.add_argument("--scopes", default="county,province")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    p.add_argument("--measure", help=argparse.SUPPRESS)
    p.add_argument("--scope", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(asyncio.run(_measure(args.measure, args.scope))))
        return 0
    rows, missed = [], False
    with tempfile.TemporaryDirectory(prefix="gridbot-bench-report-") as tmp:
        for scope in args.scopes.split(","):
            for backend in args.backends.split(","):
                url, name, gen = asyncio.run(prepare(backend, scope, args.scale, Path(tmp)))
                try:
                    m = measure(url, scope)
                finally:
                    if name:
                        asyncio.run(_drop_pg(name))
                target_backend, limit = TARGETS[scope]
                goal = ""
                if backend == target_backend:
                    ok = m["seconds"] < limit and m["peak_mb"] < MEMORY_MB
                    missed |= not ok
                    goal = f"< {limit:g} s, < {MEMORY_MB} MB: {'ok' if ok else 'MISSED'}"
                rows.append((scope, backend, gen, m, goal))
                print(f"{scope} on {backend}: {m['seconds']:.2f} s", file=sys.stderr)
    load = os.getloadavg()[0]
    print(f"machine load average at the end: {load:.1f} (2 cores)")
    print("| report | backend | data generated (s) | report (s) | of it SQL (s) | files (s) |"
          " CPU, bench + database (s) | peak memory (MB) | target |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for scope, backend, gen, m, goal in rows:
        size = "county year" if scope == "county" else f"province year (scale {args.scale:g})"
        print(
            f"| {size} | {backend} | {gen:.1f} | {m['seconds']:.2f} | {m['sql']:.2f} "
            f"| {m['files']:.2f} | {m['cpu']:.2f} | {m['peak_mb']:.0f} | {goal} |"
        )
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())

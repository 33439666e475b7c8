"""A year of grid work (2026) whose every indicator is known by hand, for the report tests.

江西省 › 萍乡市 › 芦溪县 and 湘东区. Everything below is written straight into the database;
the numbers each test expects are worked out in the comments (and in EXPECTED).

芦溪县 (level-1 chief 王建国, office director 周芳)
  道路货运 grid F: chief 李卫东; members 张敏, 赵磊
    A 赣西物流有限公司  chief 刘强   member 张敏 all year
    B 芦溪通达货运公司  chief 吴勇   member 张敏 until 2026-11-15, then 赵磊 (hand-over mid-month)
    C 萍乡顺达运输公司  no chief (a gap)   member 赵磊
  道路客运 grid P: chief 陈红; member 孙芳
    D 芦溪汽车站        chief 钱进   member 孙芳
    E 宣风客运站        chief 郑华   member 孙芳 until 2026-06-30; deactivated 2026-06-30
湘东区 (level-1 chief 彭勇)
  港口 grid X: chief 冯涛; member 何静
    X 湘东港务公司      chief 许亮   member 何静

Visits (one on the 10th of each month listed):
  张敏–A Jan–Dec (+1 more in March) · 张敏–B Jan–Oct · 赵磊–B Dec · 赵磊–C Jan–Jun
  孙芳–D Jan–Dec · 孙芳–E Jan–May · 何静–X Jan–Dec
  → 芦溪县 due 55 (12+11+2+12+12+6), visited 46, visits 47, misses 9.
Meetings: F in Q1, Q2, Q4 · P in Q1, Q3 · X in every quarter.
Trainings: T0 2025-12-15 (张敏, 赵磊); T1 2026-03-01 芦溪县 (李卫东, 张敏, 孙芳);
  T2 2026-04-01 湘东区 (冯涛, 何静). Every level-2 role began 2026-01-01.
Notices: N1 2026-02-01 → A B C D E (A on time + feedback, B late, C silent, D on time,
  E on time + feedback); N2 2026-11-20 → A B D (A, B on time, D silent); N3 2026-05-01 with no
  targets; N4 2026-06-01 → X (on time).
Hazards: H1 A general 03-05, closed 03-15 · H2 B major, supervised, 04-10, overdue 05-01,
  verified 05-10, closed 05-12 · H3 C general 06-01, re-check failed 06-12, passed and closed
  06-25 · H4 D general 12-20, deadline 2027 · H5 D general 09-01, overdue 09-11, still open.
Requests: E1 A 03-02 taken +2 h, resolved +24 h · E2 B 07-01 escalated once, taken +4 h,
  resolved +48 h · E3 C 10-01 escalated twice, taken +24 h · E4 D 12-30 open.
Accidents: A1 B 08-08 14:00 reported 14:30, 2 injured · A2 D 10-10 08:00 reported 09:30, 1 dead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from storage.cases import Accident, CaseEvent, CaseRequest, Hazard
from storage.db import Database
from storage.models import (
    AdminUnit,
    Assignment,
    Enterprise,
    EnterpriseType,
    Grid,
    Person,
    Role,
    RoleKind,
    UnitKind,
)
from storage.notices import Notice, NoticeFeedback, NoticeTarget
from storage.visits import Meeting, Training, TrainingAttendee, Visit

TZ = ZoneInfo("Asia/Shanghai")
Y0 = date(2026, 1, 1)

GANXI, TONGDA, SHUNDA = "赣西物流有限公司", "芦溪通达货运公司", "萍乡顺达运输公司"
STATION, XUANFENG, PORT = "芦溪汽车站", "宣风客运站", "湘东港务公司"


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ).astimezone(UTC)  # type: ignore[misc]


@dataclass
class ReportGrid:
    units: dict[str, int] = field(default_factory=dict)
    grids: dict[str, int] = field(default_factory=dict)
    enterprises: dict[str, int] = field(default_factory=dict)
    people: dict[str, int] = field(default_factory=dict)
    mxids: dict[str, str] = field(default_factory=dict)


# key → (name, role kind, grid key or enterprise key)
PEOPLE = {
    "l1chief": ("王建国", RoleKind.L1_CHIEF, "L1"),
    "l1office": ("周芳", RoleKind.L1_OFFICE_DIRECTOR, "L1"),
    "chief_f": ("李卫东", RoleKind.L2_CHIEF, "F"),
    "zhang": ("张敏", RoleKind.L2_MEMBER, "F"),
    "zhao": ("赵磊", RoleKind.L2_MEMBER, "F"),
    "chief_p": ("陈红", RoleKind.L2_CHIEF, "P"),
    "sun": ("孙芳", RoleKind.L2_MEMBER, "P"),
    "ent_a": ("刘强", RoleKind.ENT_CHIEF, "A"),
    "ent_b": ("吴勇", RoleKind.ENT_CHIEF, "B"),
    "ent_d": ("钱进", RoleKind.ENT_CHIEF, "D"),
    "ent_e": ("郑华", RoleKind.ENT_CHIEF, "E"),
    "x_l1chief": ("彭勇", RoleKind.L1_CHIEF, "XL1"),
    "chief_x": ("冯涛", RoleKind.L2_CHIEF, "X"),
    "he": ("何静", RoleKind.L2_MEMBER, "X"),
    "ent_x": ("许亮", RoleKind.ENT_CHIEF, "EX"),
}
ENTERPRISES = {
    "A": (GANXI, EnterpriseType.FREIGHT, "F"),
    "B": (TONGDA, EnterpriseType.FREIGHT, "F"),
    "C": (SHUNDA, EnterpriseType.FREIGHT, "F"),
    "D": (STATION, EnterpriseType.PASSENGER, "P"),
    "E": (XUANFENG, EnterpriseType.PASSENGER, "P"),
    "EX": (PORT, EnterpriseType.PORT, "X"),
}
# (member, enterprise, since, until)
ASSIGNMENTS = [
    ("zhang", "A", Y0, None),
    ("zhang", "B", Y0, date(2026, 11, 15)),
    ("zhao", "B", date(2026, 11, 15), None),
    ("zhao", "C", Y0, None),
    ("sun", "D", Y0, None),
    ("sun", "E", Y0, date(2026, 6, 30)),
    ("he", "EX", Y0, None),
]
# (member, enterprise, months visited); one visit on the 10th of each, two in March for 张敏–A.
VISITS = [
    ("zhang", "A", range(1, 13)),
    ("zhang", "B", range(1, 11)),
    ("zhao", "B", [12]),
    ("zhao", "C", range(1, 7)),
    ("sun", "D", range(1, 13)),
    ("sun", "E", range(1, 6)),
    ("he", "EX", range(1, 13)),
]
MEETINGS = {"F": [date(2026, 3, 10), date(2026, 5, 20), date(2026, 12, 1)]}
MEETINGS["P"] = [date(2026, 2, 15), date(2026, 8, 15)]
MEETINGS["X"] = [date(2026, 3, 1), date(2026, 6, 1), date(2026, 9, 1), date(2026, 12, 1)]


async def seed_report_grid(db: Database, mxids: dict[str, str] | None = None) -> ReportGrid:
    mxids = mxids or {k: f"@{k}:localhost" for k in PEOPLE}
    out = ReportGrid(mxids=dict(mxids))
    async with db.transaction() as s:
        prov = AdminUnit(kind=UnitKind.PROVINCE, name="江西省", active=True)
        s.add(prov)
        await s.flush()
        city = AdminUnit(kind=UnitKind.CITY, name="萍乡市", parent_id=prov.id, active=True)
        s.add(city)
        await s.flush()
        luxi = AdminUnit(kind=UnitKind.COUNTY, name="芦溪县", parent_id=city.id, active=True)
        xiang = AdminUnit(kind=UnitKind.COUNTY, name="湘东区", parent_id=city.id, active=True)
        s.add_all([luxi, xiang])
        await s.flush()
        out.units = {"luxi": luxi.id, "xiang": xiang.id}
        l1 = Grid(unit_id=luxi.id, level=1, domain="", name="芦溪县一级网格", active=True)
        xl1 = Grid(unit_id=xiang.id, level=1, domain="", name="湘东区一级网格", active=True)
        s.add_all([l1, xl1])
        await s.flush()
        grids = {"L1": l1, "XL1": xl1}
        for key, unit, parent, domain in (
            ("F", luxi, l1, "道路货运"),
            ("P", luxi, l1, "道路客运"),
            ("X", xiang, xl1, "港口"),
        ):
            grids[key] = Grid(
                unit_id=unit.id,
                level=2,
                domain=domain,
                name=f"{unit.name}二级网格·{domain}",
                parent_id=parent.id,
                active=True,
            )
        s.add_all([grids[k] for k in "FPX"])
        await s.flush()
        ents = {}
        for key, (name, etype, grid) in ENTERPRISES.items():
            unit = xiang if grid == "X" else luxi
            ents[key] = Enterprise(
                unit_id=unit.id, grid_id=grids[grid].id, name=name, type=etype, active=True
            )
        ents["E"].active, ents["E"].deactivated_on = False, date(2026, 6, 30)
        s.add_all(ents.values())
        people = {
            k: Person(name=name, phone=f"1380000{i:04d}", matrix_id=mxids.get(k), active=True)
            for i, (k, (name, _kind, _w)) in enumerate(PEOPLE.items())
        }
        s.add_all(people.values())
        await s.flush()
        for k, (_name, kind, where) in PEOPLE.items():
            role = Role(person_id=people[k].id, kind=kind, since=Y0)
            if where in grids:
                role.grid_id = grids[where].id
            else:
                role.enterprise_id = ents[where].id
            if k == "ent_e":
                role.until = date(2026, 6, 30)
            s.add(role)
        for member, ent, since, until in ASSIGNMENTS:
            s.add(
                Assignment(
                    person_id=people[member].id,
                    enterprise_id=ents[ent].id,
                    since=since,
                    until=until,
                )
            )
        n = 0
        for member, ent, months in VISITS:
            days = [date(2026, m, 10) for m in months]
            if (member, ent) == ("zhang", "A"):
                days.append(date(2026, 3, 20))
            for day in days:
                n += 1
                s.add(
                    Visit(
                        code=f"V-2026-{n:04d}",
                        person_id=people[member].id,
                        enterprise_id=ents[ent].id,
                        visit_date=day,
                        checked="查了台账",
                        photos=[],
                        room_id="!r:localhost",
                    )
                )
        n = 0
        chiefs = {"F": "chief_f", "P": "chief_p", "X": "chief_x"}
        for grid, days in MEETINGS.items():
            for day in days:
                n += 1
                s.add(
                    Meeting(
                        code=f"M-2026-{n:04d}",
                        grid_id=grids[grid].id,
                        person_id=people[chiefs[grid]].id,
                        meeting_date=day,
                        attendees="全体",
                        topics="安全生产",
                        decisions="落实",
                        room_id="!r:localhost",
                    )
                )
        for code, grid, day, who in (
            ("T-2025-0001", "L1", date(2025, 12, 15), ["zhang", "zhao"]),
            ("T-2026-0001", "L1", date(2026, 3, 1), ["chief_f", "zhang", "sun"]),
            ("T-2026-0002", "XL1", date(2026, 4, 1), ["chief_x", "he"]),
        ):
            t = Training(
                code=code,
                grid_id=grids[grid].id,
                recorded_by="@l1office:localhost",
                training_date=day,
                topic="网格员业务培训",
                attendees_text="、".join(PEOPLE[w][0] for w in who),
                room_id="!r:localhost",
            )
            s.add(t)
            await s.flush()
            s.add_all(
                TrainingAttendee(training_id=t.id, name=PEOPLE[w][0], person_id=people[w].id)
                for w in who
            )
        await _notices(s, ents)
        await _cases(s, ents)
        out.grids = {k: g.id for k, g in grids.items()}
        out.enterprises = {k: e.id for k, e in ents.items()}
        out.people = {k: p.id for k, p in people.items()}
    return out


async def _notices(s: AsyncSession, ents: dict[str, Enterprise]) -> None:
    # (code, created, {enterprise: (acked at or None, feedback)})
    specs = [
        (
            "N-2026-0001",
            local(2026, 2, 1, 9),
            {
                "A": (local(2026, 2, 2, 9), True),
                "B": (local(2026, 2, 6, 9), False),
                "C": (None, False),
                "D": (local(2026, 2, 3, 9), False),
                "E": (local(2026, 2, 2, 10), True),
            },
        ),
        (
            "N-2026-0002",
            local(2026, 11, 20, 9),
            {"A": (local(2026, 11, 21, 9), False), "B": (local(2026, 11, 22, 9), False)}
            | {"D": (None, False)},
        ),
        ("N-2026-0003", local(2026, 5, 1, 9), {}),
        ("N-2026-0004", local(2026, 6, 1, 9), {"EX": (local(2026, 6, 1, 12), False)}),
    ]
    for code, created, targets in specs:
        notice = Notice(
            code=code,
            origin="broadcast",
            kind="requirement",
            text="关于做好安全生产工作的通知",
            attachments=[],
            issuer="@l1office:localhost",
            issuer_name="周芳",
            issuer_room=None,
            locale="zh_CN",
            scope={},
            created_at=created,
            deadline=created + timedelta(hours=72),
            target_count=len(targets),
        )
        s.add(notice)
        await s.flush()
        for ent, (acked, fed) in targets.items():
            t = NoticeTarget(
                notice_id=notice.id,
                enterprise_id=ents[ent].id,
                enterprise_name=ents[ent].name,
                grid_id=ents[ent].grid_id,
                room_id=None,
                acked_at=acked,
                acked_by="@x:localhost" if acked else None,
                ack_method="command" if acked else None,
            )
            s.add(t)
            await s.flush()
            if fed:
                s.add(
                    NoticeFeedback(
                        target_id=t.id,
                        person="@x:localhost",
                        person_name="刘强",
                        text="已组织学习",
                        event_id=f"$fb{t.id}",
                        created_at=acked + timedelta(hours=1),
                    )
                )


def _hazard(code: str, ent: Enterprise, grade: str, reported: datetime, deadline: date) -> Hazard:
    return Hazard(
        code=code,
        enterprise_id=ent.id,
        status="rectifying",
        grade=grade,
        category="车辆动态监控" if grade == "general" else "重大事故隐患",
        description="隐患",
        location="现场",
        deadline=deadline,
        deadline_at=local(deadline.year, deadline.month, deadline.day) + timedelta(days=1),
        photos=[],
        fix_photos=[],
        reported_by="@zhang:localhost",
        reporter_name="张敏",
        reported_at=reported,
    )


async def _cases(s: AsyncSession, ents: dict[str, Enterprise]) -> None:

    def event(code: str, action: str, at: datetime) -> CaseEvent:
        return CaseEvent(
            kind="hazard",
            code=code,
            action=action,
            from_state=None,
            to_state="x",
            actor="@zhang:localhost",
            actor_name="张敏",
            at=at,
        )

    h1 = _hazard("H-2026-0001", ents["A"], "general", local(2026, 3, 5, 10), date(2026, 3, 20))
    h1.status, h1.verified_at = "closed", local(2026, 3, 15, 10)
    h1.closed_at = h1.verified_at
    h2 = _hazard("H-2026-0002", ents["B"], "major", local(2026, 4, 10, 10), date(2026, 4, 30))
    h2.status, h2.supervised, h2.supervised_by = "closed", True, "李卫东"
    h2.overdue_at, h2.verified_at = local(2026, 5, 1, 0), local(2026, 5, 10, 10)
    h2.closed_at = local(2026, 5, 12, 10)
    h3 = _hazard("H-2026-0003", ents["C"], "general", local(2026, 6, 1, 10), date(2026, 6, 30))
    h3.status, h3.rework_count = "closed", 1
    h3.verified_at = h3.closed_at = local(2026, 6, 25, 10)
    h4 = _hazard("H-2026-0004", ents["D"], "general", local(2026, 12, 20, 10), date(2027, 1, 10))
    h5 = _hazard("H-2026-0005", ents["D"], "general", local(2026, 9, 1, 10), date(2026, 9, 10))
    h5.overdue_at = local(2026, 9, 11, 0)
    s.add_all([h1, h2, h3, h4, h5])
    s.add_all(
        [
            event("H-2026-0001", "verify_pass", local(2026, 3, 15, 10)),
            event("H-2026-0001", "close", local(2026, 3, 15, 10)),
            event("H-2026-0002", "overdue", local(2026, 5, 1, 0)),
            event("H-2026-0002", "verify_pass", local(2026, 5, 10, 10)),
            event("H-2026-0002", "close", local(2026, 5, 12, 10)),
            event("H-2026-0003", "verify_fail", local(2026, 6, 12, 10)),
            event("H-2026-0003", "verify_pass", local(2026, 6, 25, 10)),
            event("H-2026-0005", "overdue", local(2026, 9, 11, 0)),
        ]
    )

    def request(code: str, ent: str, raised: datetime, **kw: object) -> CaseRequest:
        r = CaseRequest(
            code=code,
            enterprise_id=ents[ent].id,
            text="问题",
            status="open",
            level="member",
            deadline_at=raised + timedelta(hours=24),
            raised_by="@ent:localhost",
            raiser_name="刘强",
            raised_at=raised,
            escalations=0,
        )
        for k, v in kw.items():
            setattr(r, k, v)
        return r

    t1, t2, t3 = local(2026, 3, 2, 9), local(2026, 7, 1, 9), local(2026, 10, 1, 9)
    s.add_all(
        [
            request(
                "E-2026-0001",
                "A",
                t1,
                status="resolved",
                taken_at=t1 + timedelta(hours=2),
                resolved_at=t1 + timedelta(hours=24),
            ),
            request(
                "E-2026-0002",
                "B",
                t2,
                status="resolved",
                escalations=1,
                taken_at=t2 + timedelta(hours=4),
                resolved_at=t2 + timedelta(hours=48),
            ),
            request(
                "E-2026-0003",
                "C",
                t3,
                status="taken",
                escalations=2,
                taken_at=t3 + timedelta(hours=24),
            ),
            request("E-2026-0004", "D", local(2026, 12, 30, 9)),
        ]
    )

    def accident(code: str, ent: str, at: datetime, delay: int, **kw: int) -> Accident:
        return Accident(
            code=code,
            enterprise_id=ents[ent].id,
            status="reported",
            occurred_at=at,
            place="国道",
            type="道路交通事故",
            vehicles="",
            account="",
            photos=[],
            reported_by="@zhang:localhost",
            reporter_name="张敏",
            reported_at=at + timedelta(minutes=delay),
            **kw,
        )

    s.add_all(
        [
            accident("A-2026-0001", "B", local(2026, 8, 8, 14), 30, injured=2),
            accident("A-2026-0002", "D", local(2026, 10, 10, 8), 90, dead=1),
        ]
    )

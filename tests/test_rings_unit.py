"""Who is rung (bot/rings.py), without a homeserver.

The send path's rules: only the table's templates ring, those that always ring are never sent
quietly, one event rings a person once and never its own sender, and README's table is the
table. Then the proof that the table is what the bot does: each feature's ringing messages are
driven through the real dispatcher and scheduler while every queued message is recorded, and
each test checks whom its messages rang, message by message. Together the tests ring every
template of the table (``COVERED``) and nothing else; tests/test_e2e_rings.py shows the same
on a real Synapse, from the recipients' side.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine

import handlers.staff.commands
from bot import outgoing, rings
from bot import readme as readme_tables
from bot.outgoing import Outgoing
from messages import Messages
from storage import cases
from storage.db import Database
from tests.case_seed import make_chief_office_director, seed_case_grid
from tests.dispatch_harness import DispatchHarness
from tests.roster_seed import set_room
from tests.test_cases_unit import (
    DM,
    ENT_A,
    L1,
    L2,
    MONDAY_9,
    TZ,
    CaseHarness,
    P,
    add_rooms,
    report_hazard,
    world,
)
from tests.test_notices_unit import L2_FREIGHT, U, deliver, dm, ent_room
from tests.test_notices_unit import setup as notice_setup
from tests.test_visits_unit import _rooms as visit_rooms
from tests.test_visits_unit import at
from tests.test_visits_unit import setup as visit_setup
from tests.visits_seed import GANXI, fake_mxids, seed_visit_grid

# Which templates each feature's test below rings; together, the whole table.
COVERED = {
    "cases": {
        "hazard_posted",
        "hazard_major_alert",
        "hazard_update",
        "hazard_overdue",
        "hazard_overdue_chief",
        "accident_posted",
        "accident_alert",
        "request_alert",
        "request_overdue",
    },
    "cases_without_upper_rooms": {
        "request_posted",
        "request_alert",
        "hazard_posted",
        "hazard_update",
    },
    "notices": {
        "notice_post",
        "notice_reminder",
        "notice_summary",
        "notice_escalate_member",
        "notice_escalate_chief",
        "notice_escalate_no_room",
        "notice_undelivered",
    },
    "duties": {"visit_reminder", "visit_gaps", "meeting_reminder", "meeting_gaps"},
    "staff": {"staff_declared"},
    "training": {"training_due", "training_newcomers"},
    "reports": {"report_summary"},
}


# --- recording what the bot queues ---------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    event: int  # the transaction: one triggering event
    template: str | None
    room: str
    rang: frozenset[str]  # whom it rang (an m.text's mentions); empty for a quiet message


Rung = tuple[str | None, str, frozenset[str]]


class Recorder:
    """Every message queued through the one send path, with whom it rang."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.all: list[Queued] = []
        self._seen = 0
        events = itertools.count(1)
        real = outgoing.queue

        def queue(session: Any, messages: Messages, message: Outgoing, **kw: Any) -> Any:
            row = real(session, messages, message, **kw)
            event = session.info.setdefault("test_event", next(events))
            content = row.content
            rang = content["m.mentions"]["user_ids"] if content["msgtype"] == "m.text" else ()
            self.all.append(Queued(event, message.template, message.room_id, frozenset(rang)))
            return row

        monkeypatch.setattr(outgoing, "queue", queue)

    def rang(self) -> list[Rung]:
        """(template, room, whom it rang) of each ringing message since the last look."""
        fresh, self._seen = self.all[self._seen :], len(self.all)
        return [(q.template, q.room, q.rang) for q in fresh if q.rang]

    def check(self, covered: set[str]) -> None:
        """What every test ends with: the templates that rang are the ones it covers, all in
        the table, and no event rang anyone twice."""
        assert {q.template for q in self.all if q.rang} == covered
        assert covered <= set(rings.RINGS)
        per_event: dict[int, Counter[str]] = {}
        for q in self.all:
            per_event.setdefault(q.event, Counter()).update(q.rang)
        twice = {e: [u for u, n in c.items() if n > 1] for e, c in per_event.items()}
        assert not any(twice.values()), twice


def ringing(*expected: tuple[str, str, Iterable[str]]) -> list[Rung]:
    return [(t, room, frozenset(who)) for t, room, who in expected]


def sort(rung: list[Rung]) -> list[Rung]:
    return sorted(rung, key=lambda r: (r[0] or "", r[1], sorted(r[2])))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return Recorder(monkeypatch)


# --- the table and the rules of the send path ----------------------------------------------------


def test_the_tests_below_ring_every_template_of_the_table() -> None:
    assert set().union(*COVERED.values()) == set(rings.RINGS)


def test_readme_table_is_generated_from_the_table() -> None:
    readme = readme_tables.README.read_text(encoding="utf-8")
    assert rings.render(readme) == readme, "README.md is out of date: run python -m bot.rings"


def test_every_template_of_the_table_exists_in_both_languages() -> None:
    for locale in ("zh_CN", "en"):
        for template in rings.RINGS:
            path = readme_tables.README.parent / "messages" / locale / f"{template}.j2"
            assert path.exists(), path


async def test_only_the_tables_templates_ring_and_each_person_once_per_event(
    sqlite_db: Database,
) -> None:
    messages = Messages()

    def q(s: Any, message: Outgoing) -> dict[str, Any]:
        return outgoing.queue(s, messages, message, locale="zh_CN", cause="t").content

    values = {"code": "S-1", "enterprise": "赣西物流", "items": [], "deciders": []}
    async with sqlite_db.transaction() as s:
        with pytest.raises(ValueError, match="is not in"):
            q(s, Outgoing("!r:x", "internal_error", rings=True, mentions=["@a:x"]))
        with pytest.raises(ValueError, match="always rings"):
            q(s, Outgoing("!r:x", "request_overdue", {}))
    async with sqlite_db.transaction() as s:
        outgoing.rung(s).add("@sender:x")  # as the dispatcher's context does
        first = q(s, Outgoing("!a:x", "staff_declared", values, ["@a:x", "@b:x"], rings=True))
        again = q(s, Outgoing("!b:x", "staff_declared", values, ["@b:x", "@c:x"], rings=True))
        nobody = q(s, Outgoing("!c:x", "staff_declared", values, ["@a:x", "@sender:x"], rings=True))
        quiet = q(s, Outgoing("!c:x", "staff_declared", values, ["@a:x"]))
    assert (first["msgtype"], first["m.mentions"]) == ("m.text", {"user_ids": ["@a:x", "@b:x"]})
    assert (again["msgtype"], again["m.mentions"]) == ("m.text", {"user_ids": ["@c:x"]})
    # Everyone it would ring was rung already: it goes out as a notice.
    assert (nobody["msgtype"], nobody["m.mentions"]) == ("m.notice", {"user_ids": []})
    # A notice rings nobody and may name whom it likes.
    assert (quiet["msgtype"], quiet["m.mentions"]) == ("m.notice", {"user_ids": ["@a:x"]})
    async with sqlite_db.transaction() as s:  # the next event rings them again
        later = q(s, Outgoing("!a:x", "staff_declared", values, ["@a:x"], rings=True))
    assert (later["msgtype"], later["m.mentions"]) == ("m.text", {"user_ids": ["@a:x"]})


# --- cases ---------------------------------------------------------------------------------------


async def _case_world(db: Database) -> CaseHarness:
    """The case grid with every room, its level-2 chief also the level-1 office director."""
    grid = await seed_case_grid(db, P)
    await make_chief_office_director(db, grid)
    await add_rooms(db, grid, ("a", "b", "l2", "l1"))
    return CaseHarness(db)


async def _deadline(h: CaseHarness, code: str) -> datetime:
    case = await h.case(code)
    return case.deadline_at.astimezone(TZ)


async def test_cases_ring_who_must_act_once_each(sqlite_db: Database, recorder: Recorder) -> None:
    with time_machine.travel(MONDAY_9, tick=False) as clock:
        h = await _case_world(sqlite_db)
        # A general hazard: its serving member, nobody above (no level-1 office).
        await report_hazard(h, grade="一般", photos=0, deadline="3月10日")
        assert recorder.rang() == ringing(("hazard_posted", ENT_A, [P["member"]]))
        assert not [q for q in recorder.all if q.room != ENT_A]

        # A major one: each person once, though the member is told in two rooms and the
        # level-2 chief (also the level-1 office director) in two.
        await report_hazard(h, grade="重大", photos=0, deadline="3月20日")
        assert recorder.rang() == ringing(
            ("hazard_posted", ENT_A, [P["member"]]),
            ("hazard_major_alert", L2, [P["l2chief"]]),
            ("hazard_major_alert", L1, [P["l1chief"], P["l1office"]]),
        )
        await h.say(P["member"], "/隐患 H-2026-0002 确认", L2)
        assert recorder.rang() == ringing(("hazard_update", ENT_A, [P["entchief"], P["entmember"]]))
        await h.say(P["entchief"], "/隐患 H-2026-0002 整改完成")
        await h.photo(P["entchief"])
        await h.say(P["entchief"], "完成")
        assert recorder.rang() == ringing(("hazard_update", ENT_A, [P["member"]]))
        await h.say(P["member"], "/隐患 H-2026-0002 复查通过", L2)
        assert recorder.rang() == ringing(
            ("hazard_update", L2, [P["l2chief"]]), ("hazard_update", L1, [P["l1chief"]])
        )

        # An accident, reported by an enterprise member.
        for answer in ("/事故", "40分钟前", "G60 沪昆高速芦溪段 K1020", "1", "死亡0 受伤2 失踪0"):
            await h.say(P["entmember"], answer)
        await h.say(P["entmember"], "赣J12345 重型半挂牵引车")
        await h.say(P["entmember"], "雨天追尾前车，驾驶员和押运员受伤送医")
        await h.photo(P["entmember"])
        await h.say(P["entmember"], "完成")
        assert recorder.rang() == ringing(
            ("accident_posted", ENT_A, [P["member"]]),
            ("accident_alert", L2, [P["l2chief"]]),
            ("accident_alert", L1, [P["l1chief"], P["l1office"]]),
        )

        # A request: its member, then level 2 when nobody takes it, then level 1.
        await h.say(P["entchief"], "/上报 门口路段缺少限速和警示标志")
        assert recorder.rang() == ringing(("request_alert", L2, [P["member"]]))
        clock.move_to(await _deadline(h, "E-2026-0001") + timedelta(minutes=1))
        await h.tick()
        assert recorder.rang() == ringing(("request_alert", L2, [P["l2chief"], P["l2office"]]))
        # The chief passes it up: level 1 is rung, but not the chief, who sent it there.
        await h.say(P["l2chief"], "/上报 E-2026-0001 涉及市政，请一级网格协调", L2)
        assert recorder.rang() == ringing(("request_alert", L1, [P["l1chief"], P["l1office"]]))
        clock.move_to(await _deadline(h, "E-2026-0001") + timedelta(minutes=1))
        await h.tick()
        assert recorder.rang() == ringing(
            ("request_overdue", L1, [P["l1chief"], P["l1office"], P["l2chief"]])
        )

        # The general hazard runs late: the enterprise and its member, then the level-2 chief
        # (only him: it is not major).
        clock.move_to(datetime(2026, 3, 11, 0, 1, tzinfo=TZ))
        await h.tick()
        assert recorder.rang() == ringing(
            ("hazard_overdue", ENT_A, [P["entchief"], P["entmember"], P["member"]])
        )
        clock.move_to(datetime(2026, 3, 12, 0, 2, tzinfo=TZ))
        await h.tick()
        assert sort(recorder.rang()) == sort(
            ringing(
                ("hazard_overdue", ENT_A, [P["entchief"], P["entmember"], P["member"]]),
                ("hazard_overdue_chief", L2, [P["l2chief"]]),
            )
        )
    recorder.check(COVERED["cases"])


async def test_without_upper_rooms_who_must_act_is_rung_where_the_case_lives(
    sqlite_db: Database, recorder: Recorder
) -> None:
    with time_machine.travel(MONDAY_9, tick=False):
        h = await world(sqlite_db, rooms=("a",))
        # The member level has no room: the request rings its member in the enterprise room,
        # and so does it when passed up to level 2.
        await h.say(P["entchief"], "/上报 园区道路照明不足")
        assert recorder.rang() == ringing(("request_posted", ENT_A, [P["member"]]))
        await h.say(P["member"], "/上报 E-2026-0001 需协调路灯建设", DM)
        assert recorder.rang() == ringing(("request_alert", ENT_A, [P["l2chief"], P["l2office"]]))

        # A major hazard whose re-check passed rings the chiefs where it lives.
        await report_hazard(h, grade="重大", photos=0)
        assert recorder.rang() == ringing(("hazard_posted", ENT_A, [P["member"]]))
        await h.say(P["member"], "/隐患 H-2026-0001 确认", DM)
        await h.say(P["entchief"], "/隐患 H-2026-0001 整改完成")
        await h.photo(P["entchief"])
        await h.say(P["entchief"], "完成")
        recorder.rang()
        await h.say(P["member"], "/隐患 H-2026-0001 复查通过", DM)
        assert recorder.rang() == ringing(("hazard_update", ENT_A, [P["l2chief"], P["l1chief"]]))
        assert (await h.case("H-2026-0001")).status == cases.H_VERIFIED
    recorder.check(COVERED["cases_without_upper_rooms"])


# --- notices -------------------------------------------------------------------------------------


async def test_notices_ring_whom_they_ask_to_acknowledge_and_the_issuer(
    sqlite_db: Database, recorder: Recorder
) -> None:
    db = sqlite_db
    h, grid = await notice_setup(db)  # C has no room; the passenger grid (D) no level-2 room
    chief, chief_dm = U["l1_chief"], dm("l1_chief")
    start = datetime(2026, 11, 20, 9, 0, tzinfo=TZ)
    with time_machine.travel(start, tick=False) as clock:
        # A broadcast rings each enterprise's chief, whom it names.
        await h.text(chief, chief_dm, "/群发 --within 24h\n关于做好冬季运输安全的通知")
        await h.text(chief, chief_dm, "确认")
        assert sort(recorder.rang()) == sort(
            ringing(
                ("notice_post", ent_room("A"), [U["chief_a"]]),
                ("notice_post", ent_room("B"), [U["chief_b"]]),
                ("notice_post", ent_room("D"), [U["chief_d"]]),
            )
        )
        await deliver(db)
        await h.text(U["chief_a"], ent_room("A"), "/收到")
        clock.shift(timedelta(hours=12, minutes=1))
        await h.scheduler.tick()
        assert sort(recorder.rang()) == sort(
            ringing(
                ("notice_reminder", ent_room("B"), [U["chief_b"]]),
                ("notice_reminder", ent_room("D"), [U["chief_d"]]),
            )
        )
        await deliver(db)
        clock.shift(timedelta(hours=12))  # the deadline: the issuer's report, the members
        await h.scheduler.tick()
        assert sort(recorder.rang()) == sort(
            ringing(
                ("notice_summary", chief_dm, [chief]),
                # B's member only: C has no room, nobody chases what never reached it.
                ("notice_escalate_member", L2_FREIGHT, [U["member_f"]]),
                ("notice_escalate_no_room", chief_dm, [chief]),  # D's grid has no room
            )
        )
        clock.shift(timedelta(hours=24))
        await h.scheduler.tick()
        assert sort(recorder.rang()) == sort(
            ringing(
                ("notice_escalate_chief", L2_FREIGHT, [U["l2_chief_f"]]),
                ("notice_escalate_no_room", chief_dm, [chief]),
            )
        )
        # A room that cannot be reached: the issuer is rung.
        await h.text(chief, chief_dm, f"/群发 企业:{grid.names['A']} --within 24h\n补充通知")
        await h.text(chief, chief_dm, "确认")
        assert recorder.rang() == ringing(("notice_post", ent_room("A"), [U["chief_a"]]))
        await deliver(db, fail=frozenset({ent_room("A")}))
        clock.shift(timedelta(seconds=4))
        await h.scheduler.tick()
        assert recorder.rang() == ringing(("notice_undelivered", chief_dm, [chief]))
    recorder.check(COVERED["notices"])


# --- visits and meetings -------------------------------------------------------------------------


async def test_duties_ring_whom_they_remind(sqlite_db: Database, recorder: Recorder) -> None:
    h, g = await visit_setup(sqlite_db)
    await visit_rooms(sqlite_db, g, passenger_room=True)
    m = fake_mxids()
    l2, l2p, l1 = "!l2:localhost", "!l2p:localhost", "!l1:localhost"
    with time_machine.travel(at(2026, 11, 19, 10, 0), tick=False) as clock:
        await h.scheduler.tick()
        clock.move_to(at(2026, 11, 20, 9, 0, 30))
        await h.scheduler.tick()
        assert sort(recorder.rang()) == sort(
            ringing(
                ("visit_reminder", l2, [m["member"]]),
                ("visit_reminder", l2p, [m["member_p"]]),
            )
        )
        clock.move_to(at(2026, 12, 1, 9, 1))
        await h.scheduler.tick()
        assert sort(recorder.rang()) == sort(
            ringing(
                ("visit_gaps", l2, [m["l2chief"]]),
                ("visit_gaps", l2p, [m["l2chief_p"]]),
                ("visit_gaps", l1, [m["office"]]),
            )
        )
        clock.move_to(at(2026, 12, 15, 9, 0, 30))
        await h.scheduler.tick()
        assert sort(recorder.rang()) == sort(
            ringing(
                ("meeting_reminder", l2, [m["l2chief"]]),
                ("meeting_reminder", l2p, [m["l2chief_p"]]),
            )
        )
        clock.move_to(at(2027, 1, 1, 9, 1))
        await h.scheduler.tick()
        assert ("meeting_gaps", l1, frozenset([m["l1chief"]])) in recorder.rang()
    recorder.check(COVERED["duties"])


# --- staff changes -------------------------------------------------------------------------------


async def test_a_staff_change_rings_whom_may_decide_it(
    sqlite_db: Database, recorder: Recorder
) -> None:
    g = await seed_visit_grid(sqlite_db, fake_mxids())
    ent = "!ent:localhost"
    await set_room(sqlite_db, ent, "enterprise_room", enterprise_id=g.enterprises[GANXI])
    h = DispatchHarness(sqlite_db, [handlers.staff.commands])
    await h.say("@entchief:localhost", "/人员变动 加入 企业网格员 周新 13900000009", room=ent)
    assert recorder.rang() == ringing(
        ("staff_declared", ent, ["@l2chief:localhost", "@member:localhost"])
    )
    await h.say("@member:localhost", "/确认变动 S-1", room=ent)
    assert recorder.rang() == []  # the decision is news to the declarer: a notice
    recorder.check(COVERED["staff"])


# --- training obligations ------------------------------------------------------------------------


async def test_training_lists_ring_the_level1_office(
    sqlite_db: Database, recorder: Recorder
) -> None:
    import handlers.reports.jobs
    from tests.dispatch_harness import test_config
    from tests.report_seed import seed_report_grid

    g = await seed_report_grid(sqlite_db)
    l1 = "!l1-report:localhost"
    await set_room(sqlite_db, l1, "l1_room", grid_id=g.grids["L1"])
    only_training = {"monthly": False, "quarterly": False, "annual_draft": ""}
    config = test_config(timing={"reports": only_training})
    h = DispatchHarness(sqlite_db, [handlers.reports.jobs], config)
    with time_machine.travel(datetime(2026, 10, 30, 10, tzinfo=TZ), tick=False) as clock:
        await h.scheduler.tick()  # plans the annual list (10-31) and the weekly one (11-02)
        clock.move_to(datetime(2026, 11, 2, 9, 0, 30, tzinfo=TZ))
        await h.scheduler.tick()
    assert sort(recorder.rang()) == sort(
        ringing(
            ("training_due", l1, ["@l1office:localhost"]),
            ("training_newcomers", l1, ["@l1office:localhost"]),
        )
    )
    recorder.check(COVERED["training"])


async def test_a_report_that_is_ready_rings_whom_it_is_for(
    sqlite_db: Database, recorder: Recorder
) -> None:
    import handlers.reports.jobs
    from tests.dispatch_harness import test_config
    from tests.report_seed import seed_report_grid

    g = await seed_report_grid(sqlite_db)
    l1 = "!l1-report:localhost"
    await set_room(sqlite_db, l1, "l1_room", grid_id=g.grids["L1"])
    only_monthly = {"quarterly": False, "annual_draft": "", "training_by": ""}
    config = test_config(timing={"reports": only_monthly})
    h = DispatchHarness(sqlite_db, [handlers.reports.jobs], config)
    with time_machine.travel(datetime(2026, 11, 30, 10, tzinfo=TZ), tick=False) as clock:
        await h.scheduler.tick()  # plans November's report (12-01 09:00)
        clock.move_to(datetime(2026, 12, 1, 9, 0, 30, tzinfo=TZ))
        await h.scheduler.tick()
    # The summary rings the office; its files (chart, workbook) follow quietly.
    assert sort(recorder.rang()) == sort(ringing(("report_summary", l1, ["@l1office:localhost"])))
    recorder.check(COVERED["reports"])

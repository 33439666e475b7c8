"""What phones type: full-width forms, zero-width characters, Chinese spaces, control
characters, markup and template-looking text. The bot reads what it can and refuses the rest
with words; it never crashes and never keeps half a record."""

from __future__ import annotations

from datetime import date

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import handlers.basics.cancel
from bot import conversation, dates
from bot.app import build_router
from handlers.staff.declaration import parse_code as staff_code
from storage import cases, notices
from storage.db import Database
from storage.visits import Training
from tests.dispatch_harness import DispatchHarness
from tests.test_cases_unit import ENT_A as CASE_ROOM
from tests.test_cases_unit import P as CASE_PEOPLE
from tests.test_cases_unit import world as case_world
from tests.test_taps_unit import ALICE, FRUIT, pick
from tests.test_visits_unit import OFFICE, at, setup

ROUTER = build_router()


@pytest.mark.parametrize(
    ("typed", "command", "args"),
    [
        ("/走访\u3000赣西 检查了车辆", "visit", "赣西 检查了车辆"),  # an ideographic space
        ("／ｈｅｌｐ", "help", ""),  # full-width slash and letters
        ("/帮助\u200b", "help", ""),  # a zero-width space pasted after the name
        ("/群发\n关于做好冬季运输安全的通知", "broadcast", "关于做好冬季运输安全的通知"),
    ],
)
def test_command_names_as_phones_type_them(typed: str, command: str, args: str) -> None:
    inv = ROUTER.parse(typed)
    assert inv is not None and inv.command is not None and inv.command.name == command
    assert inv.arg_text == args


@pytest.mark.parametrize("text", ["/ 帮助", "/", "帮助", "//"])
def test_what_is_no_command(text: str) -> None:
    inv = ROUTER.parse(text)
    assert inv is None or inv.command is None


def test_ids_typed_full_width_or_with_zero_width_characters() -> None:
    assert cases.parse_code("Ｈ－２０２６－０００１\u200b") == "H-2026-0001"
    assert cases.parse_code("\u200ba-2026-7") == "A-2026-0007"
    assert notices.parse_code("Ｎ－２０２６－０００３") == "N-2026-0003"
    assert staff_code("Ｓ－１２\u2060") == 12


# Any text up to a few KB: control and zero-width characters, RTL marks, full-width forms,
# Jinja-looking text and HTML among ordinary Chinese.
TRICKY = st.sampled_from(
    ["\x00", "\u200b", "\u202e", "\u3000", "{{7*7}}", "{% raw %}", "<script>", "&amp;", "１", "\n"]
)
TEXTS = st.lists(st.one_of(st.text(max_size=40), TRICKY), max_size=30).map("".join)


@given(TEXTS)
def test_the_command_parser_never_crashes(text: str) -> None:
    inv = ROUTER.parse(text)
    if inv is not None:
        assert inv.invoked_as and text.endswith(inv.arg_text)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(answer=TEXTS)
async def test_any_answer_gets_an_answer_and_never_half_a_record(
    sqlite_db: Database, answer: str
) -> None:
    h = DispatchHarness(sqlite_db, [pick, handlers.basics.cancel])
    await h.say(ALICE, "/pick")
    out = await h.say(ALICE, answer)
    assert "内部错误" not in "".join(out) and "internal error" not in "".join(out).lower()
    async with sqlite_db.transaction() as s:
        row = await conversation.current(s, "!room:localhost", ALICE)
    if ROUTER.parse(answer) is not None:
        return  # a command beside the conversation (e.g. /取消), answered as such
    assert row is not None, "a bad answer never ends the conversation"
    assert out, "every answer is answered: taken, or asked again"
    assert row.data.get("fruit") in (None, *FRUIT)


async def test_a_nul_in_an_answer_still_saves_the_record(db: Database) -> None:
    # PostgreSQL cannot store NUL in text: the answer is read without control characters.
    h, _g = await setup(db)
    with time_machine.travel(at(2026, 12, 3, 10, 0), tick=False):
        await h.say(OFFICE, "/培训")
        for answer in ("今天", "岗前\x00培训\x07", "赵磊"):
            await h.say(OFFICE, answer)
        assert "T-2026-0001" in (await h.say(OFFICE, "确认"))[0]
    async with db.transaction() as s:
        training = await s.scalar(select(Training))
        assert training is not None and training.topic == "岗前培训"


async def test_a_shared_location_answers_where_a_hazard_is(sqlite_db: Database) -> None:
    h = await case_world(sqlite_db)
    who = CASE_PEOPLE["entchief"]
    await h.say(who, "/隐患", CASE_ROOM)
    await h.say(who, "3号仓库消防通道堆放货物", CASE_ROOM)
    geo = {"msgtype": "m.location", "geo_uri": "geo:27.63,113.85;u=20"}
    out = await h.say(who, "Location", CASE_ROOM, **geo)
    assert "3/9" in out[0], "taken as the place: the next question is asked"
    async with sqlite_db.transaction() as s:
        row = await conversation.current(s, CASE_ROOM, who)
    assert row is not None and row.data["location"] == "27.63000, 113.85000 (±20 m)"


TODAY = date(2026, 11, 29)


@given(TEXTS)
def test_the_date_parser_reads_a_day_or_nothing(text: str) -> None:
    for prefer in ("past", "future"):
        day = dates.parse_day(text, TODAY, prefer)  # type: ignore[arg-type]
        assert day is None or isinstance(day, date)
    month = dates.parse_month(text, TODAY)
    assert month is None or 1 <= month[1] <= 12


@pytest.mark.parametrize(
    ("typed", "day"),
    [
        ("今天", TODAY),
        ("昨天", date(2026, 11, 28)),
        ("11月20日", date(2026, 11, 20)),
        ("１１月２０日", date(2026, 11, 20)),
        ("2026-11-20\u200b", date(2026, 11, 20)),
    ],
)
def test_chinese_dates_as_phones_type_them(typed: str, day: date) -> None:
    assert dates.parse_day(typed, TODAY) == day

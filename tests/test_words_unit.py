"""bot.words: one reading of what people type, whatever the phone's keyboard did to it."""

from __future__ import annotations

from datetime import date

import pytest

from bot import words
from bot.words import (
    CANCEL,
    CONFIRM,
    DONE,
    FINISHED,
    GENERAL_GRADE,
    MAJOR_GRADE,
    NONE,
    SKIP,
    choose,
    confirmed,
    is_in,
    normalize,
    past_day,
    phone_number,
    says_received,
    which,
)

ZWSP, ZWJ, WJ, BOM = "\u200b", "\u200d", "\u2060", "\ufeff"


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("完成。", "完成"),
        ("完成", "完成"),
        (" 完成 ！", "完成"),
        ("完成～～", "完成"),
        ("完成…", "完成"),
        ("完成、", "完成"),
        ("确认！", "确认"),
        ("确认!!", "确认"),
        ("ＯＫ", "ok"),
        ("ｄｏｎｅ．", "done"),
        ("２", "2"),
        (f"完成{ZWSP}", "完成"),
        (f"{BOM}确认{ZWJ}。", "确认"),
        (f"跳{WJ}过", "跳过"),
        ("\u3000取消，", "取消"),  # an ideographic space and a full-width comma
        ("-", "-"),
    ],
)
def test_normalize(typed: str, read: str) -> None:
    assert normalize(typed) == read


def test_word_sets_read_variants_alike() -> None:
    for typed in ("完成。", "完成", "ＤＯＮＥ", f"完成{ZWSP}", "跳过！", "没有。"):
        assert is_in(typed, FINISHED), typed
    assert DONE <= FINISHED and SKIP <= FINISHED
    assert is_in("无。", NONE) and not is_in("两辆车GPS离线", NONE)
    for typed in ("确认", "确认！", "确定。", "ＯＫ", "好的", "发送", "yes"):
        assert confirmed(typed) is True, typed
    for typed in ("取消", "取消。", "不发", "ＮＯ", "算了"):
        assert confirmed(typed) is False, typed
    assert confirmed("嗯") is None and confirmed("") is None
    assert not CONFIRM & CANCEL, "a word cannot both confirm and cancel"


def test_numbered_choices_and_grades() -> None:
    names = ["芦溪通达货运公司", "萍乡危险品运输公司", "赣西物流有限公司"]
    assert choose(names, "２").one == 1
    assert choose(names, "2.").one == 1
    assert choose(names, f"3{ZWSP}").one == 2
    assert choose(names, "赣西物流有限公司。").one == 2
    grades = {"general": GENERAL_GRADE, "major": MAJOR_GRADE}
    assert which("１", grades, numbered=True) == "general"
    assert which("２", grades, numbered=True) == "major"
    assert which("3", grades, numbered=True) is None
    assert which("2", grades) is None  # numbers only where the question numbers them
    assert which("重大事故隐患。", grades) == "major"
    assert which("一般隐患", grades) == "general"
    assert which("很严重", grades) is None


def test_dates_and_receipts() -> None:
    today = date(2026, 11, 19)
    assert past_day("昨天。", today) == (date(2026, 11, 18), None)
    assert past_day("２０２６－１１－１８", today) == (date(2026, 11, 18), None)
    assert past_day(f"今天{ZWSP}", today) == (today, None)
    assert words.future_day("３月１０日", date(2026, 3, 2)) == (date(2026, 3, 10), None)
    assert says_received("收到！") and says_received("已收到，马上落实") and says_received("ＯＫ")
    assert says_received("Got it.") and not says_received("没收到") and not says_received("")


def test_one_phone_rule() -> None:
    assert phone_number("13800000004") == "13800000004"
    assert phone_number("138-0000-0004") == "13800000004"
    assert phone_number("+86 138 0000 0004") == "13800000004"
    assert phone_number("１３８０００００００４") == "13800000004"
    assert phone_number("(0799)1234567") == "07991234567"
    assert phone_number("12800000004") is None  # no mobile starts with 12
    assert phone_number("139") is None and phone_number("明天") is None

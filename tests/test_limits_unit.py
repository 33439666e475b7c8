"""Text that could not be delivered is refused before anything is recorded (Matrix: 64 KiB an
event), and the person is told the limit."""

from __future__ import annotations

import handlers.basics.cancel
from bot import conversation
from storage.db import Database
from tests.dispatch_harness import DispatchHarness
from tests.dispatch_harness import test_config as make_config
from tests.test_taps_unit import ALICE, pick

ROOM = "!room:localhost"


async def _state(db: Database) -> tuple[str, dict[str, object]] | None:
    async with db.transaction() as s:
        row = await conversation.current(s, ROOM, ALICE)
        return (row.state, dict(row.data)) if row is not None else None


async def test_a_text_over_the_limit_is_refused_and_the_question_stays(sqlite_db: Database) -> None:
    h = DispatchHarness(sqlite_db, [pick, handlers.basics.cancel])
    await h.say(ALICE, "/pick")
    await h.say(ALICE, "1")
    before = await _state(sqlite_db)
    out = await h.say(ALICE, "隐" * 10_000)  # 30,000 bytes of UTF-8
    assert out == [
        "这段文字太长（约 30 KB），一次最多 23 KB（约 8000 个汉字）。没有收下，请缩短后重新发送；"
        "很长的材料可以作为文件发送。"
    ]
    assert await _state(sqlite_db) == before, "the conversation did not move"
    out = await h.say(ALICE, "带一箱")
    assert "备注带一箱" in out[0]


async def test_a_reply_that_would_not_fit_one_event_undoes_the_whole_step(
    sqlite_db: Database,
) -> None:
    # Within the text limit, but "<" is "&lt;" in HTML: plain and HTML together exceed 64 KiB.
    config = make_config(limits={"text_bytes": 30_000})
    h = DispatchHarness(sqlite_db, [pick, handlers.basics.cancel], config)
    await h.say(ALICE, "/pick")
    await h.say(ALICE, "1")
    before = await _state(sqlite_db)
    out = await h.say(ALICE, "<" * 20_000)
    assert len(out) == 1 and out[0].startswith("内容过长，无法发出：这条消息约 99 KB")
    assert "最多约 60 KB" in out[0] and "没有保存任何内容" in out[0]
    assert await _state(sqlite_db) == before, "nothing of the step was recorded"
    assert h.taps == []

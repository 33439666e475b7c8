"""Tap to answer and edited answers, through the real dispatcher and database.

A question with a fixed set of answers gets them as reactions; a tap answers the step as
typing would, only for the person the conversation belongs to, and a tap on an old question
only says so. An edit of the last answer replaces it; any other edit of a command or an answer
is answered once with "edits are not read"."""

from __future__ import annotations

import types

import handlers.basics.cancel
from bot import conversation
from bot.commands import command
from bot.context import CommandContext
from bot.words import choose, confirmed
from storage.db import Database
from tests.dispatch_harness import DispatchHarness

ALICE, BOB = "@alice:localhost", "@bob:localhost"
FRUIT = ["苹果", "梨", "桃"]

pick = types.ModuleType("pick")
pick_conv = conversation.Conversation(
    "pick",
    conversation.CHOICE("fruit", options="choices"),
    conversation.TEXT("note"),
    conversation.CONFIRM("confirm"),
)


@command("pick", summary={"zh_CN": "示例", "en": "demo"})
async def pick_cmd(ctx: CommandContext) -> None:
    await conversation.start(ctx, pick_conv, "fruit", {"choices": FRUIT})
    ctx.reply("joined", name="请选择水果：1 苹果 2 梨 3 桃", direct=False)


@pick_conv.step("fruit")
async def ask_fruit(step: conversation.Step, msg: conversation.Incoming) -> None:
    index = choose(FRUIT, msg.text).one
    if index is None:
        step.reply("joined", name="再选一次", direct=False)
        return
    step.data["fruit"] = FRUIT[index]
    step.ask("note", "joined", name=f"选了{FRUIT[index]}，备注？", direct=False)


@pick_conv.step("note")
async def ask_note(step: conversation.Step, msg: conversation.Incoming) -> None:
    step.data["note"] = msg.text
    step.ask("confirm", "joined", name=f"备注{msg.text}，确认？", direct=False)


@pick_conv.step("confirm")
async def ask_confirm(step: conversation.Step, msg: conversation.Incoming) -> None:
    yes = confirmed(msg.text)
    if yes is None:
        step.reply("joined", name="确认还是取消？", direct=False)
        return
    step.end()
    verdict = "保存" if yes else "放弃"
    step.reply("joined", name=f"{verdict}：{step.data['fruit']}/{step.data['note']}", direct=False)


pick.pick_conv, pick.pick_cmd = pick_conv, pick_cmd
for fn in (ask_fruit, ask_note, ask_confirm):
    setattr(pick, fn.__name__, fn)


def harness(db: Database) -> DispatchHarness:
    return DispatchHarness(db, [pick, handlers.basics.cancel])


async def test_a_whole_conversation_by_taps(sqlite_db: Database) -> None:
    h = harness(sqlite_db)
    out = await h.say(ALICE, "/pick")
    assert "请选择水果" in out[0]
    assert h.taps == ["1️⃣", "2️⃣", "3️⃣"]
    out = await h.tap_last(ALICE, "2️⃣")
    assert len(out) == 1 and "选了梨" in out[0]
    assert h.taps == [], "a question answered in words gets no taps"
    await h.say(ALICE, "带两箱")
    assert h.taps == ["✅", "❌"]
    # Clients differ in variation selectors: "✅️" is the ✅ the bot seeded.
    out = await h.tap_last(ALICE, "✅\ufe0f")
    assert len(out) == 1 and "保存：梨/带两箱" in out[0]


async def test_typing_still_answers_and_others_taps_do_not_count(sqlite_db: Database) -> None:
    h = harness(sqlite_db)
    await h.say(ALICE, "/pick")
    await h.mark_all_sent()
    question = f"$out{h.last_message}"
    # Bob taps under Alice's question: not his conversation, nothing happens.
    assert await h.tap(BOB, question, "1️⃣") == []
    # Alice taps something that is not an offered answer: nothing either.
    assert await h.tap(ALICE, question, "👍") == []
    out = await h.say(ALICE, "３")  # typed, full-width
    assert "选了桃" in out[0]
    # The first question is answered now: tapping it again only says so.
    out = await h.tap(ALICE, question, "1️⃣")
    assert out == [
        "这个问题已经回答过或已结束，点选不再有效。请按最新的问题回答（可点最新问题下的表情，或直接回复文字）。"
    ]
    out = await h.say(ALICE, "无")
    out = await h.say(ALICE, "确认")
    assert "保存：桃/无" in out[0]


async def test_an_edited_answer_replaces_it_while_nothing_else_was_answered(
    sqlite_db: Database,
) -> None:
    h = harness(sqlite_db)
    await h.say(ALICE, "/pick")
    await h.say(ALICE, "1")
    out = await h.say(ALICE, "带一箱")
    assert "备注带一箱" in out[0]
    note = h.last_event_id
    out = await h.edit(ALICE, note, "带三箱")
    assert len(out) == 1 and "备注带三箱，确认" in out[0], "the question is asked again"
    assert h.taps == ["✅", "❌"], "with its taps"
    # Edited again: still the last answer, so it replaces it again.
    out = await h.edit(ALICE, note, "带五箱")
    assert "备注带五箱" in out[0]
    out = await h.tap_last(ALICE, "✅")
    assert "保存：苹果/带五箱" in out[0]


async def test_other_edits_are_answered_once_and_talk_is_left_alone(sqlite_db: Database) -> None:
    h = harness(sqlite_db)
    await h.say(ALICE, "/pick")
    command_event = h.last_event_id
    await h.say(ALICE, "1")
    fruit = h.last_event_id
    await h.say(ALICE, "带一箱")  # the conversation has moved on past the fruit
    not_read = [
        "机器人不读取编辑过的消息（以免同一条命令执行两次）。如需更改，请重新发送一条新消息。"
    ]
    assert await h.edit(ALICE, fruit, "2") == not_read
    assert await h.edit(ALICE, fruit, "3") == [], "said once per edited message"
    assert await h.edit(ALICE, command_event, "/pick 桃") == not_read
    # Ordinary talk the bot never acted on, edited: nobody's business.
    await h.say(BOB, "大家好")
    assert await h.edit(BOB, h.last_event_id, "大家早上好") == []
    # Someone else's "edit" of Alice's answer (a forged relation) is not taken either.
    assert await h.edit(BOB, fruit, "2") == []
    out = await h.say(ALICE, "确认")
    assert "保存：苹果/带一箱" in out[0]


async def test_a_malformed_relation_is_ignored_not_a_crash(sqlite_db: Database) -> None:
    h = harness(sqlite_db)
    await h.say(ALICE, "/pick")
    assert await h.deliver(ALICE, "m.reaction", {"m.relates_to": "nonsense"}) == []
    weird = {"msgtype": "m.text", "body": "2", "m.relates_to": ["m.replace"]}
    out = await h.deliver(ALICE, "m.room.message", weird)
    assert "选了梨" in out[0], "a malformed relation is no relation: the answer counts"

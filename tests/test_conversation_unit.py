"""The conversation framework and scheduler through the real dispatcher and database."""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta

import time_machine

import handlers.basics.cancel
from bot import conversation, scheduler
from bot.commands import command
from bot.context import CommandContext
from storage.db import Database
from tests.dispatch_harness import DispatchHarness

demo = types.ModuleType("demo")
demo_conv = conversation.Conversation(
    "demo",
    steps=[
        conversation.Ask("name", conversation.TEXT),
        conversation.Ask("confirm", conversation.CONFIRM),
    ],
)


@command("demo", summary={"zh_CN": "示例", "en": "demo"})
async def demo_cmd(ctx: CommandContext) -> None:
    await conversation.start(ctx, demo_conv, "name")
    ctx.reply("nothing_to_cancel")  # any template will do as the first question


@demo_conv.step("name")
async def ask_name(step: conversation.Step, msg: conversation.Incoming) -> None:
    if not msg.text:
        step.reply("nothing_to_cancel")
        return
    step.data["name"] = msg.text
    step.goto("confirm")
    step.reply("language_set")


@demo_conv.step("confirm")
async def confirm(step: conversation.Step, msg: conversation.Incoming) -> None:
    step.data["confirmed"] = msg.text
    step.end()
    step.reply("joined", name=step.data["name"], direct=False)


@scheduler.job("demo-job")
async def demo_job(ctx: scheduler.JobContext) -> None:
    ctx.send("!room:localhost", "joined", name="late" if ctx.late else "on time", direct=False)


demo.demo_conv, demo.demo_cmd, demo.ask_name, demo.demo_job = (
    demo_conv,
    demo_cmd,
    ask_name,
    demo_job,
)

ALICE = "@alice:localhost"


async def test_conversation_steps_persist_and_end(sqlite_db: Database) -> None:
    h = DispatchHarness(sqlite_db, [demo, handlers.basics.cancel])
    assert await h.say(ALICE, "/demo") == ["当前没有进行中的对话。"]
    # A second harness on the same database is a restarted bot: the state survives.
    h2 = DispatchHarness(sqlite_db, [demo, handlers.basics.cancel])
    await h2.new_messages()
    assert await h2.say(ALICE, "张三") == ["好的，今后用中文回复你。"]
    out = await h2.say(ALICE, "确认")
    assert out and "张三，您好" in out[0]
    # Ended: plain text is no longer captured.
    assert await h2.say(ALICE, "随便说说") == []


async def test_cancel_and_other_commands_during_a_conversation(sqlite_db: Database) -> None:
    h = DispatchHarness(sqlite_db, [demo, handlers.basics.cancel])
    await h.say(ALICE, "/demo")
    # Another user in the same room is not inside Alice's conversation.
    assert await h.say("@bob:localhost", "李四") == []
    assert await h.say(ALICE, "/取消") == ["已取消「示例对话」，未保存任何内容。"]
    assert await h.say(ALICE, "张三") == []
    assert await h.say(ALICE, "/cancel") == ["当前没有进行中的对话。"]


async def test_idle_conversation_times_out_with_a_message(sqlite_db: Database) -> None:
    h = DispatchHarness(sqlite_db, [demo, handlers.basics.cancel])
    with time_machine.travel(datetime(2026, 11, 20, 9, 0, tzinfo=UTC), tick=False) as clock:
        await h.say(ALICE, "/demo")
        clock.shift(timedelta(minutes=31))
        await h.scheduler.tick()
        out = await h.new_messages()
        assert out == ["「示例对话」长时间没有回复，已自动结束，未保存。需要时请重新开始。"]
        assert await h.say(ALICE, "张三") == []


async def test_jobs_run_once_and_late_ones_say_so(sqlite_db: Database) -> None:
    h = DispatchHarness(sqlite_db, [demo])
    with time_machine.travel(datetime(2026, 11, 20, 9, 0, tzinfo=UTC), tick=False) as clock:
        async with sqlite_db.transaction() as s:
            await scheduler.schedule(
                s, "demo-job", "demo:1", datetime.now(UTC) + timedelta(hours=1)
            )
            await scheduler.schedule(s, "demo-job", "demo:1", datetime.now(UTC))  # same key: no-op
        await h.scheduler.tick()
        assert await h.new_messages() == []
        clock.shift(timedelta(hours=1, minutes=1))
        await h.scheduler.tick()
        assert len(await h.new_messages()) == 1
        await h.scheduler.tick()
        assert await h.new_messages() == []
        async with sqlite_db.transaction() as s:
            await scheduler.schedule(s, "demo-job", "demo:2", datetime.now(UTC))
        clock.shift(timedelta(days=2))  # the bot was down
        await h.scheduler.tick()
        out = await h.new_messages()
        assert len(out) == 1 and "late" in out[0]

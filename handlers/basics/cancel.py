"""/cancel: leave whatever conversation the sender has open in this room."""

from __future__ import annotations

from bot import conversation
from bot.commands import command
from bot.context import CommandContext


@command(
    "cancel",
    aliases=("取消", "退出"),
    summary={"zh_CN": "取消当前进行中的对话", "en": "cancel the conversation in progress"},
)
async def cancel(ctx: CommandContext) -> None:
    row = await conversation.cancel(ctx.session, ctx.room_id, ctx.sender)
    if row is None:
        ctx.reply("nothing_to_cancel")
    else:
        ctx.reply("conversation_cancelled", name=row.name)

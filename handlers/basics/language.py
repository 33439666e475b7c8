"""/language: choose the language the bot answers you in."""

from __future__ import annotations

from bot.commands import Arg, ArgError, command
from bot.context import CommandContext
from bot.words import normalize
from storage.directory import set_language

_CHOICES = {
    "zh": "zh_CN",
    "zh_cn": "zh_CN",
    "zh-cn": "zh_CN",
    "中文": "zh_CN",
    "汉语": "zh_CN",
    "en": "en",
    "english": "en",
    "英文": "en",
    "英语": "en",
}


def _language(text: str) -> str:
    code = _CHOICES.get(normalize(text))
    if code is None:
        raise ArgError(
            {
                "zh_CN": f"不支持的语言：{text}（可选 中文 / English）",
                "en": f"unsupported language: {text} (choose 中文 or English)",
            }
        )
    return code


@command(
    "language",
    aliases=("语言", "lang"),
    summary={"zh_CN": "设置机器人回复你的语言", "en": "choose the language of the bot's replies"},
    args=(Arg({"zh_CN": "中文|English", "en": "中文|English"}, parse=_language, key="language"),),
)
async def language(ctx: CommandContext) -> None:
    await set_language(ctx.session, ctx.sender, ctx.args["language"])
    ctx.locale = ctx.args["language"]
    ctx.reply("language_set")

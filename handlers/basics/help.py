"""/help: what the sender may do here, or the details of one command."""

from __future__ import annotations

from bot.commands import Arg, command, tr
from bot.context import CommandContext


@command(
    "help",
    aliases=("帮助", "h"),
    summary={"zh_CN": "查看你在此处可用的命令", "en": "list the commands you may use here"},
    details={
        "zh_CN": "不带参数列出可用命令；带命令名显示该命令的用法，例如 /帮助 whoami。",
        "en": "Without an argument, lists your commands; with a name, shows its usage.",
    },
    args=(Arg({"zh_CN": "命令", "en": "command"}, required=False, key="name"),),
)
async def help_command(ctx: CommandContext) -> None:
    router = ctx.services.router
    ident = ctx.identity
    name = ctx.args.get("name")
    if name:
        cmd = router.get(name)
        if cmd is None:
            ctx.reply("unknown_command", name=name.lstrip("/／"))
            return
        ctx.reply(
            "help_command",
            cmd=cmd,
            usage=cmd.usage(ctx.locale),
            summary=tr(cmd.summary, ctx.locale),
            details=tr(cmd.details, ctx.locale) if cmd.details else "",
            allowed=cmd.allowed_for(ident.role_kinds, ident.known),
            here=cmd.allowed_in(ctx.room_kind),
            roles=sorted(cmd.roles or ()),
            rooms=sorted(cmd.rooms or ()),
        )
        return
    usable = [
        {
            "name": c.name,
            "aliases": c.aliases,
            "usage": c.usage(ctx.locale),
            "summary": tr(c.summary, ctx.locale),
        }
        for c in router.commands
        if c.allowed_for(ident.role_kinds, ident.known) and c.allowed_in(ctx.room_kind)
    ]
    ctx.reply("help", commands=usable, known=ident.known, room_kind=ctx.room_kind)

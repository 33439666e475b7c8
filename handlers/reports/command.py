"""/report (/报表): the grid's indicators for a month, quarter or year, in the sender's scope.

The answer is a short summary table (HTML with a plain fallback); the chart (PNG), the
workbook (XLSX) and, for a year, the annual work report (HTML) follow as files in the same
room, through the one send path. ``/report member 张敏 2026`` is one person's score card with
the records behind it. Reports are not sent into enterprise rooms.
"""

from __future__ import annotations

from bot import dates
from bot.commands import ADMIN_ROOM, DIRECT, L1_ROOM, L2_ROOM, Arg, command
from bot.context import CommandContext
from handlers.reports import files
from handlers.reports.build import build
from handlers.reports.period import PeriodError, parse, window
from handlers.reports.scope import ReportError, read, resolve
from storage.directory import Action, reach, roles_for

_WHAT = Arg(
    {"zh_CN": "月|季|年 期间 范围 --format", "en": "month|quarter|year period scope --format"},
    required=False,
    rest=True,
    key="what",
)


@command(
    "report",
    aliases=("报表", "统计"),
    summary={
        "zh_CN": "网格工作报表：月报、季报、年报和年度考核（含 Excel、图表）",
        "en": "grid work reports: monthly, quarterly, annual, and the assessment (Excel, chart)",
    },
    details={
        "zh_CN": (
            "例：/报表 月（本月截至今天）、/报表 月 2026-11、/报表 季 2026Q3、/报表 年 2026、"
            "/报表 上月。范围：县:芦溪县、市:萍乡市、领域:货运、网格员 张敏（默认：你有权查看的"
            "全部范围；网格员只能看自己）。--format chat,xlsx,html 选择附带的文件（默认 Excel，"
            "年报另附年度工作情况 HTML；图表总会附上）。"
        ),
        "en": (
            "E.g. /report month (this month so far), /report month 2026-11, /report quarter "
            "2026Q3, /report year 2026, /report last. Scope: county:NAME, city:NAME, "
            "domain:货运, member NAME (default: everything you may see; a member sees "
            "themselves). --format chat,xlsx,html picks the files (default the workbook, and "
            "for a year the annual work report; the chart always comes along)."
        ),
    },
    args=(_WHAT,),
    roles=roles_for(Action.REVIEW),
    rooms=frozenset({DIRECT, L1_ROOM, L2_ROOM, ADMIN_ROOM}),
)
async def report(ctx: CommandContext) -> None:
    config = ctx.services.config
    now = dates.now(config.tz)
    ask = read(ctx.args.get("what") or "")
    try:
        period = parse(ask.kind, ask.period, now.date())
    except PeriodError as err:
        raise ReportError(f"period_{err.key}", err.text) from None
    win = window(period, config.tz, now)
    target = await resolve(
        ctx.session, reach(ctx.identity, Action.REVIEW), ctx.identity.person, ask, win
    )
    built = await build(ctx.session, config, target, period, now)
    formats = ask.formats or files.default_formats(period.kind)
    rendered = await files.render(built, formats, ctx.locale, ctx.services.messages)
    names = [f.name for f in rendered.files]
    ctx.reply(
        "report_summary", **rendered.summary, files=names, scheduled=False, late=False, due_at=None
    )
    for attachment in rendered.files:
        ctx.send(ctx.room_id, None, attachment=attachment)

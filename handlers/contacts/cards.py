"""/contacts (/通讯录): send every enterprise in the sender's reach its grid contact card.

Each enterprise room gets one CSV file: the enterprise's own chief and members, the level-2
members serving it, the level-2 chief and office, the level-1 chief and office, each with the
Matrix ID to write to. It is the smallest command that sends a file to the rooms of the
enterprises in the sender's scope, and it touches nothing outside this package (plus its
templates): the directory answers who and where, the send path uploads the file once per
distinct card and threads nothing.
"""

from __future__ import annotations

import csv
import io

from bot.commands import DIRECT, L1_ROOM, L2_ROOM, command
from bot.context import CommandContext
from bot.outgoing import Attachment
from storage import directory
from storage.directory import Action, EnterpriseCircle
from storage.models import RoleKind

# Who is on a card, in this order: the role kinds that name the row → the circle's people.
CARD_ROWS: tuple[tuple[tuple[str, ...], str], ...] = (
    ((RoleKind.ENT_CHIEF, RoleKind.ENT_MEMBER), "staff"),
    ((RoleKind.L2_MEMBER,), "members"),
    ((RoleKind.L2_CHIEF,), "l2_chiefs"),
    ((RoleKind.L2_OFFICE_MEMBER,), "l2_office"),
    ((RoleKind.L1_CHIEF,), "l1_chiefs"),
    ((RoleKind.L1_OFFICE_DIRECTOR, RoleKind.L1_OFFICE_MEMBER), "l1_office"),
)
HEADER = {"zh_CN": ("角色", "姓名", "Matrix ID"), "en": ("role", "name", "Matrix ID")}


def card_csv(circle: EnterpriseCircle, locale: str) -> bytes:
    """The card as CSV, UTF-8 with a BOM so that Excel shows the Chinese names."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER.get(locale, HEADER["zh_CN"]))
    for kinds, field in CARD_ROWS:
        label = " / ".join(directory.role_label(k, locale) for k in kinds)
        for person in getattr(circle, field):
            writer.writerow((label, person.name, person.user_id or ""))
    return ("\ufeff" + out.getvalue()).encode()


@command(
    "contacts",
    aliases=("通讯录",),
    summary={
        "zh_CN": "向范围内每家企业群发送本企业的网格通讯录（CSV 文件）",
        "en": "send each enterprise in your reach its grid contact card (a CSV file)",
    },
    details={
        "zh_CN": "每家企业收到一份：企业负责人和网格员、对口二级网格员、二级网格长和办公室、"
        "一级网格长和办公室。范围与 /提醒 相同。",
        "en": "Each enterprise gets its own card: its chief and members, the level-2 members "
        "serving it, the level-2 chief and office, the level-1 chief and office. Same reach "
        "as /remind.",
    },
    roles=directory.roles_for(Action.REMIND),
    rooms=frozenset({DIRECT, L1_ROOM, L2_ROOM}),
)
async def contacts(ctx: CommandContext) -> None:
    reach = directory.reach(ctx.identity, Action.REMIND)
    enterprises = await directory.enterprises_in(ctx.session, reach)
    rooms = await directory.rooms_of(
        ctx.session, directory.ENTERPRISE_ROOM, [e.id for e in enterprises]
    )
    locale = ctx.services.config.language  # the enterprise room's language, not the sender's
    for ent in enterprises:
        if ent.id in rooms:
            card = card_csv(await directory.circle_of(ctx.session, ent.id), locale)
            ctx.send(
                rooms[ent.id],
                "contact_card",
                locale=locale,
                attachment=Attachment(f"{ent.name}-网格通讯录.csv", "text/csv", data=card),
                enterprise=ent.name,
            )
    ctx.reply(
        "contacts_sent",
        sent=sum(1 for e in enterprises if e.id in rooms),
        no_room=[e.name for e in enterprises if e.id not in rooms],
    )

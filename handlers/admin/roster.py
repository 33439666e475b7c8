"""The roster through the admin room (网格通·管理员群): drop an XLSX, CSV or YAML file (or send
/roster import, /导入名册, and then the file), see the diff, confirm with ✅ or 确认; /roster
export (/导出名册) returns the roster in the import format.

The import is the CLI's (bot.roster), run in the event's transaction: first as a dry run (a
savepoint rolled back), then, on confirmation by the admin who uploaded it, for real, but only
if the roster's state (storage.admins.roster_fingerprint) is still the one the diff was made
against; otherwise the diff is made again and confirmation asked again. A confirmed import
queues a provisioning request whose progress is one message edited in place."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from bot import conversation
from bot.commands import ADMIN_ROOM, Arg, command
from bot.context import CommandContext
from bot.conversation import CONFIRM, FILE, Conversation, Incoming, Step
from bot.errors import UserError
from bot.outgoing import Attachment, Outgoing
from bot.provision import store as provision_store
from bot.roster.apply import ImportResult, import_in_session
from bot.words import SKIP, confirmed, is_in
from handlers.admin import files
from storage import admins as admin_store
from storage import inbox, outbox
from storage.directory import Action, Identity, roles_for

ADMIN_ROLES = roles_for(Action.ADMINISTER)
ADMIN_ROOMS = frozenset({ADMIN_ROOM})
# The staff-change conflict an import without --file-wins reports (bot.roster.apply).
CHAT_CHANGE_MARK = "群里确认的人员变动"
SHOW_ERRORS = 20
PROVISION_REASON = "admin-import:"

importing = Conversation(
    "roster_import",
    FILE("file", counted=False),
    CONFIRM("file_wins", counted=False),
    CONFIRM("confirm", counted=False),
)


def _limit(ctx: CommandContext) -> int:
    return ctx.services.config.limits.roster_file_bytes


def _media_of(content: dict[str, Any]) -> dict[str, Any] | None:
    msg = conversation.incoming("", content)
    return msg.media if msg is not None else None


async def _read(ctx: CommandContext, media: dict[str, Any]) -> bytes:
    """The file's bytes, or a UserError saying why it is not a roster to read."""
    name = str(media.get("name") or "")
    size = (media.get("info") or {}).get("size")
    if not files.looks_like_roster_name(name):
        raise UserError("admin_file_refused", reason="not_roster", name=name)
    if isinstance(size, int) and size > _limit(ctx):
        raise UserError("admin_file_refused", reason="too_big", name=name, limit=_limit(ctx))
    url = media.get("url")
    if not isinstance(url, str) or not url.startswith("mxc://") or ctx.services.download is None:
        raise UserError("admin_file_refused", reason="unreadable", name=name)
    try:
        data = await ctx.services.download(url)
    except Exception:
        raise UserError("admin_file_refused", reason="unreadable", name=name) from None
    if reason := files.refusal(name, data, _limit(ctx)):
        raise UserError("admin_file_refused", reason=reason, name=name, limit=_limit(ctx))
    return data


async def _run(
    ctx: CommandContext, name: str, data: bytes, *, dry_run: bool, file_wins: bool
) -> ImportResult:
    with tempfile.TemporaryDirectory(prefix="gridbot-roster-") as tmp:
        path = Path(tmp) / f"roster{files.suffix_of(name)}"
        path.write_bytes(data)
        return await import_in_session(
            ctx.session,
            path,
            dry_run=dry_run,
            file_wins=file_wins,
            limits=ctx.services.config.limits,
        )


async def out_of_scope(ctx: CommandContext, ident: Identity, units: list[str]) -> list[str]:
    """The file's units this admin does not administer (a county admin: all but theirs)."""
    if ident.admin_units is None:
        return []
    outside = []
    for name in units:
        found = await admin_store.unit_named(ctx.session, name)
        if found is None or found[0] not in ident.admin_units:
            outside.append(name)
    return outside


async def review(
    ctx: CommandContext,
    media: dict[str, Any],
    *,
    file_wins: bool = False,
    step: Step | None = None,
) -> None:
    """Dry-run an uploaded roster and answer: refused, errors (with the annotated workbook),
    no changes, a staff-change conflict to decide, or the diff to confirm. From a step of the
    import conversation (``step``), it moves that conversation on (or ends it)."""

    async def end() -> None:
        if step is not None:
            step.end()
        else:
            await conversation.cancel(ctx.session, ctx.room_id, ctx.sender)

    name = str(media.get("name") or "roster")
    data = await _read(ctx, media)
    result = await _run(ctx, name, data, dry_run=True, file_wins=file_wins)
    conflicts: list[str] = []
    if (
        result.errors
        and not file_wins
        and all(CHAT_CHANGE_MARK in e.message for e in result.errors)
    ):
        conflicts = [str(e) for e in result.errors]
        result = await _run(ctx, name, data, dry_run=True, file_wins=True)
        file_wins = True
    if result.errors:
        await end()
        admin_store.audit(
            ctx.session,
            ctx.sender,
            "import_refused",
            room_id=ctx.room_id,
            file=name,
            errors=len(result.errors),
        )
        marked = files.annotated(name, data, result.errors)
        if marked is not None:
            ctx.post(
                Outgoing(
                    ctx.room_id,
                    None,
                    attachment=Attachment(marked.name, marked.mimetype, data=marked.data),
                )
            )
        ctx.reply(
            "admin_roster_errors",
            annotated=marked.kind if marked is not None else None,
            name=name,
            errors=[str(e) for e in result.errors[:SHOW_ERRORS]],
            more=max(0, len(result.errors) - SHOW_ERRORS),
            total=len(result.errors),
        )
        return
    if outside := await out_of_scope(ctx, ctx.identity, result.units):
        await end()
        ctx.reply("admin_out_of_scope", units=outside)
        return
    if not result.changes:
        await end()
        ctx.reply("admin_roster_unchanged", name=name, rows=result.rows, units=result.units)
        return
    fingerprint = await admin_store.roster_fingerprint(ctx.session)
    ctx.post(
        Outgoing(
            ctx.room_id,
            None,
            attachment=Attachment(
                f"{Path(name).stem}-变更.txt",
                "text/plain",
                data=files.diff_text(name, result).encode("utf-8"),
            ),
        )
    )
    data_ = {
        "url": media["url"],
        "name": name,
        "info": media.get("info") or {},
        "fingerprint": fingerprint,
        "file_wins": file_wins,
        "conflicts": conflicts,
    }
    state = "file_wins" if conflicts else "confirm"
    if step is None:
        await conversation.start(ctx, importing, state, data_)
    else:
        step.data = data_
        step.goto(state)
        ctx.asked = True  # a new question: its taps, and the conversation points at it
    ctx.reply(
        "admin_roster_diff",
        name=name,
        rows=result.rows,
        units=result.units,
        counts=files.counts(result),
        lines=files.first_lines(result),
        warnings=result.warnings[:5],
        conflicts=conflicts,
    )


@command(
    "roster",
    aliases=("名册",),
    summary={
        "zh_CN": "导入（试运行、确认后生效）或导出网格名册",
        "en": "import (dry run, applied on confirmation) or export the grid roster",
    },
    details={
        "zh_CN": "/roster import：回复一个名册文件，或随后发送文件（XLSX、CSV、YAML）；"
        "直接把文件发到管理员群也可以。/roster export：导出当前名册（XLSX，导入格式）。",
        "en": "/roster import: as a reply to a roster file, or send the file next (XLSX, CSV, "
        "YAML); dropping the file into the admin room works too. /roster export: the current "
        "roster as an XLSX in the import format.",
    },
    args=(Arg({"zh_CN": "import|export", "en": "import|export"}, key="what"),),
    roles=ADMIN_ROLES,
    rooms=ADMIN_ROOMS,
)
async def roster_command(ctx: CommandContext) -> None:
    what = str(ctx.args.get("what") or "").strip().lower()
    if what in ("import", "导入"):
        await import_command(ctx)
    elif what in ("export", "导出"):
        await export_command(ctx)
    else:
        ctx.reply("admin_roster_usage")


@command(
    "roster-import",
    aliases=("导入名册",),
    summary={"zh_CN": "导入网格名册（先试运行）", "en": "import a roster file (dry run first)"},
    roles=ADMIN_ROLES,
    rooms=ADMIN_ROOMS,
)
async def import_command(ctx: CommandContext) -> None:
    replied = _reply_target(ctx.event.source.get("content") or {})
    if replied is not None:
        original = await _content_of(ctx, replied)
        media = _media_of(original) if original else None
        if media is not None:
            await review(ctx, media)
            return
    await conversation.start(ctx, importing, "file", {})
    ctx.reply("admin_roster_send_file")


async def _content_of(ctx: CommandContext, event_id: str) -> dict[str, Any] | None:
    event = await inbox.get(ctx.session, event_id)
    if event is None or event.room_id != ctx.room_id:
        return None
    content = event.source.get("content")
    return content if isinstance(content, dict) else None


def _reply_target(content: dict[str, Any]) -> str | None:
    rel = content.get("m.relates_to")
    if not isinstance(rel, dict):
        return None
    reply = rel.get("m.in_reply_to")
    target = reply.get("event_id") if isinstance(reply, dict) else None
    return target if isinstance(target, str) else None


@importing.step("file")
async def got_file(step: Step, msg: Incoming) -> None:
    if msg.media is None:
        if is_in(msg.text, SKIP) or confirmed(msg.text) is False:
            step.end()
            step.reply("conversation_cancelled", name=importing.name)
            return
        step.reply("admin_roster_send_file")
        return
    await review(step.ctx, msg.media, step=step)


@importing.step("file_wins")
async def decide_file_wins(step: Step, msg: Incoming) -> None:
    answer = confirmed(msg.text)
    if answer is None:
        step.reply("admin_roster_confirm_how")
        return
    if not answer:
        step.end()
        step.reply("admin_roster_cancelled")
        return
    step.goto("confirm")
    await confirm(step, Incoming(msg.event_id, "m.text", "确认"))


@importing.step("confirm")
async def confirm(step: Step, msg: Incoming) -> None:
    ctx = step.ctx
    answer = confirmed(msg.text)
    if answer is None:
        step.reply("admin_roster_confirm_how")
        return
    if not answer:
        step.end()
        step.reply("admin_roster_cancelled")
        return
    if not ctx.identity.is_admin:
        step.end()
        step.reply("admin_not_admin")
        return
    media = {"url": step.data["url"], "name": step.data["name"], "info": step.data["info"]}
    if await admin_store.roster_fingerprint(ctx.session) != step.data["fingerprint"]:
        # Another import (or a staff change) came first: diff again against what is there now.
        ctx.reply("admin_roster_changed_meanwhile")
        await review(ctx, media, file_wins=bool(step.data.get("file_wins")), step=step)
        return
    step.end()
    name = media["name"]
    data = await _read(ctx, media)
    result = await _run(ctx, name, data, dry_run=False, file_wins=bool(step.data.get("file_wins")))
    if result.errors or not result.applied:
        raise UserError("admin_roster_failed", errors=[str(e) for e in result.errors[:SHOW_ERRORS]])
    if outside := await out_of_scope(ctx, ctx.identity, result.units):
        raise UserError("admin_out_of_scope", units=outside)
    counts = files.counts(result)
    admin_store.audit(
        ctx.session,
        ctx.sender,
        "import",
        room_id=ctx.room_id,
        file=name,
        units=result.units,
        file_wins=bool(step.data.get("file_wins")),
        **counts,
    )
    ctx.reply("admin_roster_imported", name=name, counts=counts, units=result.units)
    progress = ctx.send(ctx.room_id, "admin_provision_progress", done=0, total=0, phase="start")
    provision_store.request_provisioning(ctx.session, f"{PROVISION_REASON}{progress.txn_id}")
    admin_store.audit(ctx.session, ctx.sender, "provision", room_id=ctx.room_id, reason="import")


@command(
    "roster-export",
    aliases=("导出名册",),
    summary={
        "zh_CN": "导出当前名册（XLSX，导入格式）",
        "en": "export the current roster (XLSX, the import format)",
    },
    roles=ADMIN_ROLES,
    rooms=ADMIN_ROOMS,
)
async def export_command(ctx: CommandContext) -> None:
    lines = await admin_store.roster_lines(ctx.session, ctx.identity.admin_units)
    stamp = datetime.now(ctx.services.config.tz).strftime("%Y%m%d")
    ctx.post(
        Outgoing(
            ctx.room_id,
            None,
            attachment=Attachment(
                f"网格名册-{stamp}.xlsx", files.XLSX_MIME, data=files.export_workbook(lines)
            ),
        )
    )
    admin_store.audit(ctx.session, ctx.sender, "export", room_id=ctx.room_id, rows=len(lines))
    ctx.reply("admin_roster_exported", rows=len(lines))


# --- hooks: a roster file dropped into the admin room; someone else's tap on the question ---


async def roster_dropped(ctx: CommandContext) -> bool:
    """An admin's file in the admin room, with no conversation of theirs open there, is a
    roster to review (a non-roster file is answered so)."""
    if ctx.event.type != "m.room.message" or ctx.room_kind != ADMIN_ROOM:
        return False
    content = ctx.event.source.get("content") or {}
    if content.get("msgtype") != "m.file" or not ctx.identity.is_admin:
        return False
    if await conversation.current(ctx.session, ctx.room_id, ctx.sender) is not None:
        return False  # their open conversation takes the file
    media = _media_of(content)
    if media is None:
        return False
    await review(ctx, media)
    return True


async def others_tap(ctx: CommandContext) -> bool:
    """A tap on an import's confirmation by anyone but the admin who uploaded it: not taken."""
    if ctx.event.type != "m.reaction":
        return False
    rel = (ctx.event.source.get("content") or {}).get("m.relates_to") or {}
    parent = rel.get("event_id")
    if rel.get("rel_type") != "m.annotation" or not isinstance(parent, str):
        return False
    question = await outbox.sent_event(ctx.session, ctx.room_id, parent)
    if question is None:
        return False
    mentions = (question.content.get("m.mentions") or {}).get("user_ids") or []
    if ctx.sender in mentions or not mentions:
        return False
    row = await conversation.current(ctx.session, ctx.room_id, mentions[0])
    if row is None or row.name != importing.name or row.question_txn != question.txn_id:
        return False
    ctx.reply_target = parent
    ctx.reply(
        "admin_confirm_not_yours",
        admin=ctx.identity.is_admin,
        owner=mentions[0],
    )
    return True


EVENT_HOOKS = (others_tap, roster_dropped)

"""``gridbot provision`` and the provisioning that follows a roster import."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import URL, make_url

from bot.client import build_client, login
from bot.config import Config, load_config
from bot.provision import store
from bot.provision.apply import Provisioner, Summary
from bot.provision.matrix import MatrixOps
from bot.provision.plan import Plan, build_plan
from bot.provision.report import format_summary, reporter_for
from bot.provision.roster import load_roster
from bot.provision.texts import TemplateTexts
from messages import Messages
from storage import admins as admin_store
from storage.db import Database


async def load_plan(db: Database, config: Config, messages: Messages | None = None) -> Plan:
    async with db.transaction() as session:
        roster = await load_roster(session)
        named = await admin_store.admin_ids(session)
    texts = TemplateTexts(messages or Messages(), config.language)
    return build_plan(
        roster,
        admins=config.admins,
        room_admins=named,
        bot_user_id=config.user_id,
        texts=texts,
    )


async def provision_with_config(
    db: Database,
    config: Config,
    *,
    verify: bool = False,
    reinvite: bool = False,
    concurrency: int = 8,
    out: TextIO | None = None,
) -> Summary:
    """Log in as the bot (the stored session is reused) and provision; the client is closed."""
    # No crypto store here: the running bot owns it (provisioning sends no messages).
    client = build_client(config, encryption=False)
    try:
        await login(client, config, db)
        ops = MatrixOps(client, concurrency=concurrency)
        # Requests the bot queued (it may not be running): this run carries them out too.
        queued = await store.pending_requests(db)
        with reporter_for(out) as reporter:
            summary = await Provisioner(
                db,
                ops,
                Messages(),
                bot_user_id=config.user_id,
                admins=config.admins,
                locale=config.language,
                encrypted=config.encryption.enabled and config.encryption.encrypted_rooms,
                reporter=reporter,
                verify=verify,
                reinvite=reinvite,
            ).run()
        if summary.ok:
            await store.mark_requests_done(db, queued)
        return summary
    finally:
        await client.close()


async def cmd_provision(
    db: Database, config: Config, args: argparse.Namespace, out: TextIO | None = None
) -> int:
    out = out or sys.stdout
    if args.plan:
        for line in format_plan(await load_plan(db, config)):
            print(line, file=out)
        return 0
    summary = await provision_with_config(
        db,
        config,
        verify=args.verify,
        reinvite=args.reinvite,
        concurrency=args.concurrency,
        out=out,
    )
    for line in format_summary(summary):
        print(line, file=out)
    return 0 if summary.ok else 1


def format_plan(plan: Plan) -> list[str]:
    lines = []
    for key, spec in plan.rooms.items():
        indent = "  " * plan.depth(key)
        lines.append(f"{indent}{spec.name}  [{spec.kind}, {len(spec.members)} 人 / people]")
    lines.append(f"共 {len(plan.rooms)} 个房间 / rooms")
    return lines


def bot_config(args: argparse.Namespace) -> Config | None:
    """The bot config if one was given (or ./bot.yaml exists): provisioning needs its login."""
    path = Path(args.config)
    return load_config(path) if path.exists() else None


def same_database(a: str, b: str) -> bool:
    """Do two database URLs name the same database (a SQLite file by its real path)?"""

    def key(url: URL) -> tuple[object, ...]:
        if url.get_backend_name() == "sqlite":
            path = url.database or ":memory:"
            return ("sqlite", path if path == ":memory:" else os.path.realpath(path))
        return (url.get_backend_name(), url.username, url.host, url.port, url.database)

    return key(make_url(a)) == key(make_url(b))


async def import_then_provision(
    db: Database, args: argparse.Namespace, out: TextIO | None = None
) -> int:
    """``gridbot roster import``: import into ``db`` (and only there), then provision when the
    rooms' plan changed, ``db`` is the database of the bot config at hand (-c, or ./bot.yaml)
    and neither --dry-run nor --no-provision was given."""
    from bot.roster.commands import cmd_import

    out = out or sys.stdout
    config = bot_config(args)
    limits = config.limits if config else None
    elsewhere = config is not None and not same_database(db.url, config.database_url)
    if args.dry_run or getattr(args, "no_provision", False) or elsewhere:
        config = None
    before = (await load_plan(db, config)).fingerprint() if config else None
    rc = await cmd_import(
        db,
        Path(args.file),
        args.dry_run,
        out,
        file_wins=getattr(args, "file_wins", False),
        limits=limits,
    )
    if rc == 0 and elsewhere and not args.dry_run and not getattr(args, "no_provision", False):
        print(
            f"房间未调整：导入的数据库不是 {args.config} 的数据库；需要时请对它明确运行"
            " gridbot provision / rooms not provisioned: the database imported into is not"
            f" the one {args.config} names; run gridbot provision for it if that is meant",
            file=out,
        )
    if rc != 0 or config is None or before is None:
        return rc
    if (await load_plan(db, config)).fingerprint() == before:
        print("房间无需调整 / the rooms need no change", file=out)
        return rc
    print("名册有变化，正在调整房间 / the roster changed: provisioning rooms", file=out)
    summary = await provision_with_config(db, config, out=out)
    for line in format_summary(summary):
        print(line, file=out)
    if not summary.ok:
        print(
            "名册已导入，但部分房间未能调整；请稍后运行 gridbot provision"
            " / the roster was imported, but some rooms failed: run gridbot provision later",
            file=out,
        )
        return 1
    return rc

"""The ``gridbot`` command: run, db upgrade, roster import/check, provision, report, appservice
registration, sandbox."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bot import logs
from bot.config import ConfigError, load_config

DEFAULT_CONFIG = "bot.yaml"
DEFAULT_DATABASE = "sqlite+aiosqlite:///gridbot.db"


def _setup_logging(verbose: bool) -> None:
    # Times in the machine's zone until a command reads the configured one (use_timezone).
    logs.setup(verbose)


def _database_url(args: argparse.Namespace) -> str:
    """--database wins; else the config file's database_url; else the default SQLite file."""
    if getattr(args, "database", None):
        return str(args.database)
    config_path = Path(args.config)
    if config_path.exists() or args.config != DEFAULT_CONFIG:
        return load_config(config_path).database_url
    return DEFAULT_DATABASE


async def _with_db(
    args: argparse.Namespace, fn: Callable[..., Awaitable[int]], *extra: object
) -> int:
    from storage.db import Database

    db = Database(_database_url(args))
    try:
        await db.upgrade()
        return await fn(db, *extra)
    finally:
        await db.close()


def cmd_run(args: argparse.Namespace) -> int:
    from bot.app import run_bot
    from bot.client import LoginFailed

    config = load_config(args.config)
    logs.use_timezone(config.tz)
    try:
        asyncio.run(run_bot(config))
    except LoginFailed as exc:
        print(f"gridbot: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # Whatever stopped it, one line (the traceback with -v): nothing is lost, a supervisor
        # restarting it (docs/deploy.md) carries on from the database.
        logging.getLogger("bot").debug("the bot stopped", exc_info=exc)
        print(f"gridbot: stopped: {_one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def _one_line(exc: BaseException) -> str:
    from bot.app import Fatal
    from storage.db import describe, is_unavailable

    if isinstance(exc, Fatal):
        return str(exc)
    if is_unavailable(exc):
        return f"the database is unavailable ({describe(exc)})"
    said = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {said}" if said else type(exc).__name__


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    async def upgrade(db: object) -> int:
        from storage.migrate import current_revision

        rev = await current_revision(db.engine)  # type: ignore[attr-defined]
        print(f"database at revision {rev}")
        return 0

    return asyncio.run(_with_db(args, upgrade))


def cmd_roster_import(args: argparse.Namespace) -> int:
    # Changes only the database it is given. Imports, then provisions the rooms when that is
    # the database of the bot config at hand and the rooms' plan changed; a dry run touches
    # nothing at all (no migration, no write, no homeserver).
    from bot.provision.cli import bot_config, import_then_provision
    from bot.roster.commands import cmd_dry_run

    if args.dry_run:
        config = bot_config(args)
        return asyncio.run(
            cmd_dry_run(
                _database_url(args),
                Path(args.file),
                file_wins=args.file_wins,
                limits=config.limits if config else None,
            )
        )
    return asyncio.run(_with_db(args, import_then_provision, args))


def cmd_provision(args: argparse.Namespace) -> int:
    from bot.client import LoginFailed
    from bot.provision.cli import cmd_provision as provision

    config = load_config(args.config)
    logs.use_timezone(config.tz)
    try:
        return asyncio.run(_with_db(args, provision, config, args))
    except LoginFailed as exc:
        print(f"gridbot: {exc}", file=sys.stderr)
        return 1


def cmd_roster_check(args: argparse.Namespace) -> int:
    from bot.roster.commands import cmd_check

    return asyncio.run(_with_db(args, cmd_check))


def cmd_report(args: argparse.Namespace) -> int:
    from handlers.reports.cli import run

    config_path = Path(args.config)
    if config_path.exists() or args.config != DEFAULT_CONFIG:
        config = load_config(config_path)
    else:  # a database URL alone is enough to read it: defaults for the rest
        from bot.config import parse_config

        config = parse_config(
            {"homeserver": "http://localhost", "user_id": "@gridbot:localhost", "password": "-"}
        )
    return asyncio.run(_with_db(args, run, config, args))


def cmd_appservice_registration(args: argparse.Namespace) -> int:
    """Write the registration file for the homeserver. Tokens missing from the configuration
    are made here and printed, to be put into it (or GRIDBOT_AS_TOKEN / GRIDBOT_HS_TOKEN)."""
    import yaml

    from bot.appservice.registration import new_token, registration

    config = load_config(args.config)
    settings = config.appservice
    if settings is None:
        print(
            f"gridbot: {args.config} has no appservice: section (see bot.example.yaml)",
            file=sys.stderr,
        )
        return 2
    made = {}
    for key in ("as_token", "hs_token"):
        if not getattr(settings, key):
            made[key] = new_token()
            setattr(settings, key, made[key])
    text = yaml.safe_dump(registration(config), sort_keys=False, allow_unicode=True)
    out = Path(args.output)
    out.write_text(text, encoding="utf-8")
    out.chmod(0o600)  # it holds both tokens
    print(f"wrote {out}: add it to the homeserver's app_service_config_files and restart it")
    if made:
        print(f"new tokens: put these under appservice: in {args.config}")
        for key, value in made.items():
            print(f"  {key}: {value}")
    return 0


def cmd_sandbox(args: argparse.Namespace) -> int:
    from bot.sandbox.demo import run_from_args

    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridbot", description="GridBot (网格通): the safety-supervision grid on Matrix"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser, database: bool = False) -> None:
        p.add_argument("-c", "--config", default=DEFAULT_CONFIG, help="config file (bot.yaml)")
        if database:
            p.add_argument("--database", help="database URL (overrides the config file)")

    run = sub.add_parser("run", help="run the bot")
    with_config(run)
    run.set_defaults(func=cmd_run)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations")
    with_config(up, database=True)
    up.set_defaults(func=cmd_db_upgrade)

    roster = sub.add_parser("roster", help="the grid roster (名册)")
    r_sub = roster.add_subparsers(dest="roster_command", required=True)
    imp = r_sub.add_parser("import", help="import a roster file (YAML, CSV, XLSX)")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    imp.add_argument(
        "--file-wins",
        action="store_true",
        help="let the file undo staff changes confirmed in chat (/staff) that it lacks",
    )
    imp.add_argument(
        "--no-provision",
        action="store_true",
        help="do not adjust the Matrix rooms afterwards (they are when -c/bot.yaml is present)",
    )
    with_config(imp, database=True)
    imp.set_defaults(func=cmd_roster_import)
    chk = r_sub.add_parser("check", help="coverage check: no enterprise without chief and member")
    with_config(chk, database=True)
    chk.set_defaults(func=cmd_roster_check)

    prov = sub.add_parser(
        "provision", help="create and update the grid's rooms and spaces from the roster"
    )
    with_config(prov, database=True)
    from bot.provision.args import add_arguments as add_provision_arguments

    add_provision_arguments(prov)
    prov.set_defaults(func=cmd_provision)

    rep = sub.add_parser(
        "report", help="a month's, quarter's or year's grid work report, written as files"
    )
    with_config(rep, database=True)
    from handlers.reports.cli import add_arguments as add_report_arguments

    add_report_arguments(rep)
    rep.set_defaults(func=cmd_report)

    aps = sub.add_parser("appservice", help="application-service mode (docs/deploy.md)")
    aps_sub = aps.add_subparsers(dest="appservice_command", required=True)
    reg = aps_sub.add_parser("registration", help="write the registration file for the homeserver")
    with_config(reg)
    reg.add_argument(
        "-o", "--output", default="gridbot-registration.yaml", help="where to write it"
    )
    reg.set_defaults(func=cmd_appservice_registration)

    sandbox = sub.add_parser("sandbox", help="local homeserver + demo county + bot")
    from bot.sandbox.demo import add_arguments

    add_arguments(sandbox)
    sandbox.set_defaults(func=cmd_sandbox)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"gridbot: config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

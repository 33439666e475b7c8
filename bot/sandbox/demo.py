"""``gridbot sandbox``: a local homeserver, the demo roster, demo logins and the bot, in one go.

Everything lives in one data directory, so a second run resumes the same server with the same
users and passwords. The homeserver listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import logging
import re
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.sandbox import demo_roster
from bot.sandbox.homeserver import Synapse, SynapseError, free_port, port_is_free

DEFAULT_DATA = Path("sandbox-data")
DEFAULT_PORT = 8008
DEFAULT_PASSWORD = "gridbot-demo"

SERVER_NAME = "localhost"
ADMIN_LOCALPART = "admin"
BOT_LOCALPART = "gridbot"
SECRETS_FILE = "sandbox-secrets.yaml"
LOCAL_MXID_RE = re.compile(rf"^@[a-z0-9._=\-/+]+:{re.escape(SERVER_NAME)}$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"data directory, reused by later runs (default ./{DEFAULT_DATA})",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"homeserver port on 127.0.0.1 (default {DEFAULT_PORT}; a free one if busy)",
    )
    parser.add_argument(
        "--roster",
        type=Path,
        default=None,
        help="roster to import (default: the demo county that ships with GridBot)",
    )
    parser.add_argument(
        "--password",
        default=DEFAULT_PASSWORD,
        help=f"password of @admin and every demo user (default {DEFAULT_PASSWORD})",
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Entry point for the CLI: runs the sandbox until Ctrl-C."""
    if args.roster is not None and not args.roster.is_file():
        print(f"roster {args.roster} not found")
        return 1
    try:
        return asyncio.run(run_sandbox(args.data, args.port, args.roster, args.password))
    except KeyboardInterrupt:
        return 130


# --- progress output --------------------------------------------------------------------------


class StepFailed(Exception):
    """A sandbox step failed; the message is for the operator."""


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Print "what… ok (1.2 s)" around a step, or "failed" when it raises."""
    print(f"{what}… ", end="", flush=True)
    started = time.monotonic()
    try:
        yield
    except BaseException:
        print("failed", flush=True)
        raise
    print(f"ok ({time.monotonic() - started:.1f} s)", flush=True)


# --- persistent secrets -----------------------------------------------------------------------


@dataclass
class Secrets:
    """Generated once per data directory and reused, so reruns keep working credentials."""

    bot_password: str
    # A server admin for the sandbox's own API calls, so that @admin's password can be reset
    # to --password even when it was changed.
    ops_localpart: str
    ops_password: str

    @classmethod
    def load_or_create(cls, path: Path) -> Secrets:
        data: dict[str, Any] = {}
        if path.exists():
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        made = cls(
            bot_password=str(data.get("bot_password") or secrets.token_urlsafe(24)),
            ops_localpart=str(data.get("ops_localpart") or "sandbox-ops"),
            ops_password=str(data.get("ops_password") or secrets.token_urlsafe(24)),
        )
        made.save(path)
        return made

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.__dict__, sort_keys=False), encoding="utf-8")
        path.chmod(0o600)


async def _ops_token(synapse: Synapse, sec: Secrets, path: Path) -> str:
    """Log the ops admin in, making a fresh one if its stored password no longer works."""
    await synapse.register(sec.ops_localpart, sec.ops_password, admin=True)
    try:
        return await synapse.login(sec.ops_localpart, sec.ops_password)
    except SynapseError as exc:
        if exc.status != 403:
            raise
    sec.ops_localpart = f"sandbox-ops-{secrets.token_hex(4)}"
    sec.save(path)
    await synapse.register(sec.ops_localpart, sec.ops_password, admin=True)
    return await synapse.login(sec.ops_localpart, sec.ops_password)


async def _ensure_user(
    synapse: Synapse,
    ops_token: str,
    localpart: str,
    password: str,
    *,
    admin: bool = False,
    displayname: str | None = None,
) -> str:
    """Register the user, or reset an existing one's password to the one we announce."""
    user_id = synapse.user_id(localpart)
    if await synapse.user_exists(user_id, ops_token):
        await synapse.set_password(user_id, password, ops_token)
        return user_id
    return await synapse.register(localpart, password, admin=admin, displayname=displayname)


# --- roster -----------------------------------------------------------------------------------


@dataclass
class DemoLogin:
    name: str
    roles: str
    user_id: str


async def load_roster(database_url: str, roster: Path | None = None) -> tuple[list[DemoLogin], str]:
    """Import the roster (the demo county shipped with the package when None) into the bot's
    database; returns the active people with a Matrix id and a line on what the import did."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from storage.db import Database
    from storage.directory import role_label
    from storage.models import Person, Role

    try:
        from bot.roster.apply import import_roster
    except ImportError as exc:
        raise StepFailed(f"the roster importer is not available: {exc}") from None

    db = Database(database_url)
    try:
        await db.upgrade()
        with contextlib.nullcontext(roster) if roster else demo_roster() as path:
            result = await import_roster(db, path)
        if result.errors:
            lines = "\n".join(f"  - {e}" for e in result.errors)
            raise StepFailed(f"{path} has {len(result.errors)} error(s):\n{lines}")
        async with db.transaction() as session:
            people = (
                await session.scalars(
                    select(Person)
                    .where(Person.active.is_(True), Person.matrix_id.is_not(None))
                    .order_by(Person.id)
                )
            ).all()
            roles = (
                await session.scalars(
                    select(Role)
                    .where(Role.until.is_(None), Role.person_id.in_([p.id for p in people]))
                    .options(selectinload(Role.grid), selectinload(Role.enterprise))
                    .order_by(Role.id)
                )
            ).all()
    finally:
        await db.close()

    labels: dict[int, list[str]] = {}
    for role in roles:
        where = role.enterprise.name if role.enterprise else role.grid.name if role.grid else ""
        label = role_label(role.kind)
        labels.setdefault(role.person_id, []).append(f"{label} {where}".strip())
    logins = [
        DemoLogin(p.name, "；".join(labels.get(p.id, [])) or "—", str(p.matrix_id)) for p in people
    ]
    return logins, _describe_import(result)


async def _provision(config_path: Path) -> str:
    """Make the demo county's Spaces and rooms, as `gridbot provision` does."""
    import io

    from bot.config import load_config
    from bot.provision.cli import provision_with_config
    from storage.db import Database

    config = load_config(config_path)
    db = Database(config.database_url)
    try:
        await db.upgrade()
        summary = await provision_with_config(db, config, out=io.StringIO())
    finally:
        await db.close()
    if summary.failed:
        raise StepFailed("provisioning failed for: " + ", ".join(summary.failed))
    return (
        f"{summary.rooms} rooms and spaces ({len(summary.created)} created), "
        f"{len(summary.invited)} invitations"
    )


def _describe_import(result: Any) -> str:
    """What the import did, in a line (plus its warnings); the result's shape is duck-typed."""
    changes = getattr(result, "changes", None)
    if changes is not None and hasattr(changes, "added"):
        line = (
            f"{len(changes.added)} added, {len(changes.changed)} changed, "
            f"{len(changes.deactivated)} deactivated"
        )
    else:
        line = f"{len(changes or [])} change(s)"
    if getattr(result, "rows", None):
        line += f" ({result.rows} rows)"
    warnings = getattr(result, "warnings", None) or []
    return line + "".join(f"\n  warning: {w}" for w in warnings)


# --- output -----------------------------------------------------------------------------------


def _print_box(
    synapse: Synapse, bot_id: str, password: str, logins: list[DemoLogin], skipped: int
) -> None:
    from rich.console import Console, Group
    from rich.panel import Panel
    from rich.table import Table

    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("Homeserver", synapse.url)
    head.add_row("Admin login", f"{synapse.user_id(ADMIN_LOCALPART)}  /  {password}")
    head.add_row("Bot", f"{bot_id} (talk to it in a direct chat)")

    people = Table(title="Demo logins", title_justify="left", expand=False)
    people.add_column("Name")
    people.add_column("Role")
    people.add_column("Matrix id")
    people.add_column("Password")
    for login in logins:
        people.add_row(login.name, login.roles, login.user_id, password)
    if not logins:
        people.add_row("(the roster has no one with a Matrix id on this server)", "", "", "")

    how = (
        "Connect with any Matrix client on this machine (the server listens on 127.0.0.1 only):\n"
        f"  Element desktop/web → Sign in → Homeserver: Edit → {synapse.url}\n"
        "  then sign in with a Matrix id (or just its name part) and the password above.\n"
        "Press Ctrl-C to stop the bot and the homeserver; rerun to resume with the same data."
    )
    parts: list[Any] = [head, people]
    if skipped:
        parts.append(f"({skipped} active people have Matrix ids on other servers; not registered)")
    parts.append(how)
    Console().print(Panel(Group(*parts), title="GridBot sandbox", expand=False))


# --- the bot ----------------------------------------------------------------------------------


async def _run_bot(config_path: Path) -> int:
    """Run GridBot until it stops; the first Ctrl-C asks it to stop, a second one cancels it."""
    from bot.config import load_config

    try:
        from bot.app import GridBot
    except ImportError as exc:
        raise StepFailed(f"GridBot is not available: {exc}") from None

    from bot import logs

    if not logging.getLogger().handlers:  # (`gridbot sandbox` has set it up already)
        logs.setup()
    config = load_config(config_path)
    logs.use_timezone(config.tz)
    bot = GridBot(config)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(bot.run())
    stopping = False
    stop_tasks: set[asyncio.Task[None]] = set()

    def on_signal() -> None:
        nonlocal stopping
        if stopping:
            task.cancel()
            return
        stopping = True
        print("\nstopping (Ctrl-C again to force)…", flush=True)
        result = bot.stop()
        if inspect.isawaitable(result):
            stopper = loop.create_task(_await(result))
            stop_tasks.add(stopper)
            stopper.add_done_callback(stop_tasks.discard)

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal)
    try:
        await task
    except asyncio.CancelledError:
        if not stopping:
            raise
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    return 0


async def _await(aw: Any) -> None:
    await aw


# --- main -------------------------------------------------------------------------------------


def _prepare_dir(data_dir: Path) -> Path:
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


def _write_bot_config(path: Path, config: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    path.chmod(0o600)  # it holds the bot's password


async def run_sandbox(data_dir: Path, port: int, roster: Path | None, password: str) -> int:
    """``roster`` None: the demo county shipped with the package."""
    data_dir = _prepare_dir(Path(data_dir))
    if not port_is_free(port):
        busy, port = port, free_port()
        print(f"port {busy} is busy; using {port} instead")

    synapse = Synapse(data_dir / "synapse", port=port, server_name=SERVER_NAME)
    try:
        with step(f"starting homeserver on 127.0.0.1:{port}"):
            await synapse.start()

        secrets_path = data_dir / SECRETS_FILE
        with step("registering @admin and the bot"):
            sec = Secrets.load_or_create(secrets_path)
            ops = await _ops_token(synapse, sec, secrets_path)
            await _ensure_user(synapse, ops, ADMIN_LOCALPART, password, admin=True)
            bot_id = await _ensure_user(
                synapse, ops, BOT_LOCALPART, sec.bot_password, displayname="GridBot 网格通"
            )
            await synapse.exempt_from_ratelimit(bot_id, ops)

        database_url = f"sqlite+aiosqlite:///{data_dir / 'gridbot.db'}"
        config_path = data_dir / "bot.yaml"
        bot_config = {
            "homeserver": synapse.url,
            "user_id": bot_id,
            "password": sec.bot_password,
            "database_url": database_url,
            "admins": [synapse.user_id(ADMIN_LOCALPART)],
        }
        _write_bot_config(config_path, bot_config)

        with step(f"importing roster {roster or 'of the demo county'}"):
            people, applied = await load_roster(database_url, roster)
        print(f"  roster: {applied}; {len(people)} active people with a Matrix id")

        suffix = f":{SERVER_NAME}"
        local = [p for p in people if p.user_id.endswith(suffix)]
        skipped = len(people) - len(local)
        failed = {
            # Synapse would lowercase such an id, and the roster would no longer match the login.
            p.user_id: f"  - {p.name} {p.user_id}: not a valid Matrix id "
            "(lowercase letters, digits and ._=-/+ only)"
            for p in local
            if not LOCAL_MXID_RE.match(p.user_id)
        }
        valid = [p for p in local if p.user_id not in failed]
        with step(f"registering {len(valid)} demo users"):
            for person in valid:
                try:
                    await _ensure_user(
                        synapse, ops, person.user_id, password, displayname=person.name
                    )
                except SynapseError as exc:
                    # One bad id in the roster should not keep the others from the demo.
                    failed[person.user_id] = f"  - {person.name} {person.user_id}: {exc}"
        if failed:
            print("could not register:\n" + "\n".join(failed.values()))
        local = [p for p in local if p.user_id not in failed]

        with step("provisioning the grid's rooms and spaces"):
            rooms_line = await _provision(config_path)
        print(f"  rooms: {rooms_line}")

        _print_box(synapse, bot_id, password, local, skipped)
        print("starting GridBot… (logs follow)", flush=True)
        code = await _run_bot(config_path)
    except StepFailed as exc:
        print(exc)
        code = 1
    except (SynapseError, OSError) as exc:
        print(f"error: {exc}")
        code = 1
    finally:
        with step("stopping homeserver"):
            await synapse.stop()
    return code

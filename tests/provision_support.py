"""Helpers for the provisioning tests: the demo roster with unique Matrix ids, provisioning as
the bot, and reading rooms back from the homeserver (state, /hierarchy, joined rooms)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

from bot.client import build_client, login
from bot.provision.apply import Provisioner, Summary
from bot.provision.matrix import MatrixError, MatrixOps
from bot.provision.state import RoomState, parse_state
from bot.roster.apply import import_roster
from bot.sandbox import DEMO_ROSTER
from bot.sandbox.homeserver import Synapse
from messages import Messages
from tests.bot_harness import BotUnderTest

DEMO = Path(str(DEMO_ROSTER))  # tests run from the checkout: a plain file
_MXID = re.compile(r"@([a-z0-9._=\-/+]+):localhost")


def demo_rows(suffix: str) -> list[dict[str, Any]]:
    """The demo county with every Matrix id made unique (tests share one homeserver)."""
    text = _MXID.sub(lambda m: f"@{m.group(1)}-{suffix}:localhost", DEMO.read_text("utf-8"))
    return yaml.safe_load(text)["rows"]


def mxids(rows: list[dict[str, Any]]) -> set[str]:
    text = yaml.safe_dump(rows, allow_unicode=True)
    return {f"@{m}:localhost" for m in _MXID.findall(text)}


def mxid_of(rows: list[dict[str, Any]], name: str) -> str:
    """The Matrix id written next to ``name`` (姓名/电话/@id cells)."""
    text = yaml.safe_dump(rows, allow_unicode=True)
    match = re.search(rf"{re.escape(name)}/[^\n]*?(@[a-z0-9._=\-/+]+:localhost)", text)
    assert match, name
    return match.group(1)


async def import_rows(
    bot: BotUnderTest, tmp_path: Path, rows: list[dict[str, Any]], name: str, today: date
) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"rows": rows}, allow_unicode=True), encoding="utf-8")
    result = await import_roster(bot.db, path, today=today)
    assert not result.errors, result.errors
    assert result.applied or not result.changes


class Crash(Exception):
    pass


class _FailAfter(MatrixOps):
    """The n-th createRoom is carried out by the homeserver; then ``fail`` decides what the
    provisioner sees (from then on for a crash, once for a lost answer)."""

    def __init__(self, *args: Any, rooms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.made = 0
        self.at = rooms

    async def create_room(self, **kwargs: Any) -> str:
        room_id = await super().create_room(**kwargs)
        self.made += 1
        self.fail(room_id)
        return room_id

    def fail(self, room_id: str) -> None:
        raise NotImplementedError


class CrashAfter(_FailAfter):
    """Dies (like a killed process) right after the n-th room was made, before it is recorded."""

    def fail(self, room_id: str) -> None:
        if self.made >= self.at:
            raise Crash(room_id)


class LoseAnswerAfter(_FailAfter):
    """The n-th createRoom is carried out, but its answer never arrives (a dropped connection)."""

    def fail(self, room_id: str) -> None:
        if self.made == self.at:
            raise MatrixError("create_room", None, "no answer: lost", unanswered=True)


@dataclass
class Run:
    summary: Summary
    ops: MatrixOps


async def provision(
    bot: BotUnderTest,
    *,
    ops_class: type[MatrixOps] = MatrixOps,
    verify: bool = False,
    **ops_kwargs: Any,
) -> Run:
    """One provisioning run as the bot (its own login), the way ``gridbot provision`` does it."""
    client = build_client(bot.config)
    try:
        await login(client, bot.config, bot.db)
        ops = ops_class(client, **ops_kwargs)
        summary = await Provisioner(
            bot.db,
            ops,
            Messages(),
            bot_user_id=bot.config.user_id,
            admins=bot.config.admins,
            locale=bot.config.language,
            verify=verify,
        ).run()
        return Run(summary, ops)
    finally:
        await client.close()


class Reader:
    """Reads rooms back with a user's access token (plain HTTP, independent of the code tested)."""

    def __init__(self, synapse: Synapse, token: str) -> None:
        self.synapse = synapse
        self.token = token

    async def _get(self, path: str, **params: str) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{self.synapse.url}{path}",
                params=params,
                headers={"Authorization": f"Bearer {self.token}"},
            ) as resp,
        ):
            body = await resp.json(content_type=None)
            assert resp.status == 200, (path, resp.status, body)
            return body

    async def hierarchy(self, space_id: str) -> list[dict[str, Any]]:
        rooms: list[dict[str, Any]] = []
        params: dict[str, str] = {"limit": "100"}
        while True:
            body = await self._get(
                f"/_matrix/client/v1/rooms/{quote(space_id, safe='')}/hierarchy", **params
            )
            rooms.extend(body["rooms"])
            if not body.get("next_batch"):
                return rooms
            params["from"] = body["next_batch"]

    async def state(self, room_id: str) -> RoomState:
        events = await self._get(f"/_matrix/client/v3/rooms/{quote(room_id, safe='')}/state")
        return parse_state(events)

    async def joined_rooms(self) -> list[str]:
        return (await self._get("/_matrix/client/v3/joined_rooms"))["joined_rooms"]


async def bot_token(bot: BotUnderTest) -> str:
    client = build_client(bot.config)
    try:
        await login(client, bot.config, bot.db)
        return str(client.access_token)
    finally:
        await client.close()


def members(state: RoomState, *memberships: str) -> set[str]:
    wanted = set(memberships or ("join", "invite"))
    return {u for u, m in state.members.items() if m.membership in wanted}

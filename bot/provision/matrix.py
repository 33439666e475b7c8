"""Thin wrappers over the nio calls provisioning makes: bounded concurrency, 429 retry, counts.

The bot's client is built with ``max_limit_exceeded=0`` (nio hands 429s straight back), so the
retry lives here: wait ``retry_after_ms`` and try again, up to a total wait. Every call is
counted by name, so tests can assert that a second run sends no state-changing request.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    RoomCreateResponse,
    RoomGetStateResponse,
    RoomInviteResponse,
    RoomKickResponse,
    RoomPreset,
    RoomPutStateResponse,
    RoomResolveAliasResponse,
)

log = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"create_room", "put_state", "invite", "kick"})
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
_MAX_NETWORK_RETRIES = 4


class MatrixError(Exception):
    """A request the homeserver refused (or that never got an answer)."""

    def __init__(self, op: str, errcode: str | None, message: str, status: int | None = None):
        super().__init__(f"{op}: {errcode or status or ''} {message}".strip())
        self.op = op
        self.errcode = errcode
        self.status = status


def _status(resp: Any) -> int | None:
    transport = getattr(resp, "transport_response", None)
    return getattr(transport, "status", None)


def _rate_limited(resp: Any) -> bool:
    return getattr(resp, "status_code", None) in ("M_LIMIT_EXCEEDED", 429) or _status(resp) == 429


class MatrixOps:
    def __init__(self, client: AsyncClient, *, concurrency: int = 8, max_wait: float = 600.0):
        self.client = client
        self.server_name = (client.user_id or ":").split(":", 1)[1]
        self._slots = asyncio.Semaphore(concurrency)
        self.max_wait = max_wait
        self.calls: Counter[str] = Counter()
        self.rate_limited = 0

    @property
    def state_changes(self) -> int:
        return sum(n for op, n in self.calls.items() if op in STATE_CHANGING)

    async def _call(self, op: str, fn: Callable[[], Awaitable[Any]], ok: type | tuple[type, ...]):
        """Run ``fn`` in a slot; retry 429s and lost connections; return the ok response."""
        self.calls[op] += 1
        waited = 0.0
        failures = 0
        while True:
            async with self._slots:
                try:
                    resp = await fn()
                except _NETWORK_ERRORS as exc:
                    resp = exc
            if isinstance(resp, BaseException):
                failures += 1
                if failures > _MAX_NETWORK_RETRIES:
                    raise MatrixError(op, None, f"no answer: {resp!r}") from resp
                await asyncio.sleep(min(2.0**failures, 30.0))
                continue
            if _rate_limited(resp):
                wait = (getattr(resp, "retry_after_ms", None) or 1000) / 1000
                self.rate_limited += 1
                waited += wait
                if waited > self.max_wait:
                    raise MatrixError(op, "M_LIMIT_EXCEEDED", "rate limited for too long", 429)
                log.info("%s rate limited; retrying in %.1fs", op, wait)
                await asyncio.sleep(wait)
                continue
            if isinstance(resp, ok):
                return resp
            raise MatrixError(
                op,
                getattr(resp, "status_code", None),
                getattr(resp, "message", None) or str(resp),
                _status(resp),
            )

    # --- reads --------------------------------------------------------------------------------

    async def default_room_version(self) -> str | None:
        """The homeserver's default room version (createRoom uses it when none is given)."""

        async def get() -> Any:
            return await self.client.send(
                "GET",
                "/_matrix/client/v3/capabilities",
                headers={"Authorization": f"Bearer {self.client.access_token}"},
            )

        self.calls["capabilities"] += 1
        async with self._slots:
            resp = await get()
            if resp.status != 200:
                return None
            body = await resp.json(content_type=None)
        versions = (body.get("capabilities") or {}).get("m.room_versions") or {}
        default = versions.get("default")
        return str(default) if default else None

    async def has_account(self, user_id: str) -> bool | None:
        """True / False from the public profile (404 = no account); None when the server will
        not say (403 with limit_profile_requests_to_users_who_share_rooms, errors).

        Sent raw: nio would validate (and log) every 404 body, for a thousand people a run."""
        self.calls["profile"] += 1
        waited = 0.0
        path = f"/_matrix/client/v3/profile/{quote(user_id, safe='')}"
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        for _attempt in range(_MAX_NETWORK_RETRIES + 1):
            try:
                async with self._slots:
                    resp = await self.client.send("GET", path, headers=headers)
                    status = resp.status
                    body = await resp.json(content_type=None) if status == 429 else {}
                    resp.release()
            except _NETWORK_ERRORS:
                await asyncio.sleep(1.0)
                continue
            if status == 429:
                wait = (body or {}).get("retry_after_ms", 1000) / 1000
                waited += wait
                if waited > self.max_wait:
                    return None
                await asyncio.sleep(wait)
                continue
            return True if status == 200 else False if status == 404 else None
        return None

    async def resolve_alias(self, alias: str) -> str | None:
        try:
            resp = await self._call(
                "resolve_alias",
                lambda: self.client.room_resolve_alias(alias),
                RoomResolveAliasResponse,
            )
        except MatrixError as err:
            if err.status == 404 or err.errcode == "M_NOT_FOUND":
                return None
            raise
        return str(resp.room_id)

    async def get_state(self, room_id: str) -> list[dict[str, Any]]:
        resp = await self._call(
            "get_state", lambda: self.client.room_get_state(room_id), RoomGetStateResponse
        )
        return list(resp.events)

    # --- writes -------------------------------------------------------------------------------

    async def create_room(
        self,
        *,
        alias: str,
        name: str | None,
        topic: str | None,
        space: bool,
        room_version: str | None,
        invite: list[str],
        initial_state: list[dict[str, Any]],
    ) -> str:
        resp = await self._call(
            "create_room",
            lambda: self.client.room_create(
                alias=alias,
                name=name,
                topic=topic,
                space=space,
                room_version=room_version,
                preset=RoomPreset.private_chat,
                invite=invite,
                initial_state=initial_state,
            ),
            RoomCreateResponse,
        )
        return str(resp.room_id)

    async def put_state(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = ""
    ) -> None:
        await self._call(
            "put_state",
            lambda: self.client.room_put_state(room_id, event_type, content, state_key=state_key),
            RoomPutStateResponse,
        )

    async def invite(self, room_id: str, user_id: str) -> None:
        await self._call(
            "invite", lambda: self.client.room_invite(room_id, user_id), RoomInviteResponse
        )

    async def kick(self, room_id: str, user_id: str, reason: str | None = None) -> None:
        await self._call(
            "kick", lambda: self.client.room_kick(room_id, user_id, reason), RoomKickResponse
        )

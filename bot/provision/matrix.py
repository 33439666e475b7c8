"""Thin wrappers over the nio calls provisioning makes: bounded concurrency, 429 retry, counts.

The bot's client is built with ``max_limit_exceeded=0`` (nio hands 429s straight back), so the
retry lives here: wait ``retry_after_ms`` and try again, up to a total wait. Every call is
counted by name, so tests can assert that a second run sends no state-changing request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from nio import (
    AsyncClient,
    JoinedRoomsResponse,
    RoomGetStateResponse,
    RoomInviteResponse,
    RoomKickResponse,
    RoomPutStateResponse,
)

log = logging.getLogger(__name__)

STATE_CHANGING = frozenset({"create_room", "put_state", "invite", "kick"})
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
# The request never reached the homeserver: safe to send again even when it makes something.
_NOT_SENT = (aiohttp.ClientConnectorError,)
_MAX_NETWORK_RETRIES = 4
_SETTLE_SECONDS = 60.0
ACCOUNT_PAGE = 1000  # accounts per admin-API listing request


class MatrixError(Exception):
    """A request the homeserver refused (or that never got an answer)."""

    def __init__(
        self,
        op: str,
        errcode: str | None,
        message: str,
        status: int | None = None,
        *,
        unanswered: bool = False,
    ):
        super().__init__(f"{op}: {errcode or status or ''} {message}".strip())
        self.op = op
        self.errcode = errcode
        self.status = status
        # Sent, but the answer was lost: the homeserver may have done it.
        self.unanswered = unanswered


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
        self._creating: set[asyncio.Task[dict[str, Any]]] = set()

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
        status, body = await self._raw("capabilities", "GET", "/_matrix/client/v3/capabilities")
        if status != 200 or not isinstance(body, dict):
            return None
        versions = (body.get("capabilities") or {}).get("m.room_versions") or {}
        default = versions.get("default")
        return str(default) if default else None

    async def has_account(self, user_id: str) -> bool | None:
        """True / False from the public profile (404 = no account); None when the server will
        not say (403 with limit_profile_requests_to_users_who_share_rooms, errors).

        Sent raw: nio would validate (and log) every 404 body, for a thousand people a run."""
        try:
            status, _ = await self._raw(
                "profile", "GET", f"/_matrix/client/v3/profile/{quote(user_id, safe='')}"
            )
        except MatrixError:
            return None
        return True if status == 200 else False if status == 404 else None

    async def local_accounts(self, *, max_pages: int) -> set[str] | None:
        """Every active local account, read through Synapse's admin API (the bot must be a
        server admin), ``ACCOUNT_PAGE`` a request; None when the homeserver will not list them
        (not an admin, not Synapse) or would need more than ``max_pages`` requests.

        Deactivated and locked accounts are left out, as are guests: none can be invited."""
        users: set[str] = set()
        start = 0
        while True:
            path = f"/_synapse/admin/v2/users?from={start}&limit={ACCOUNT_PAGE}&guests=false"
            try:
                status, body = await self._raw("list_accounts", "GET", path)
            except MatrixError:
                return None
            if status != 200 or not isinstance(body, dict):
                return None
            if start == 0 and -(-int(body.get("total") or 0) // ACCOUNT_PAGE) > max_pages:
                return None  # a large homeserver: one lookup per person is cheaper
            page = body.get("users") or []
            users.update(str(u["name"]) for u in page if isinstance(u, dict) and "name" in u)
            token = body.get("next_token")
            if not token or not page:
                return users
            start = int(token)

    async def joined_rooms(self) -> list[str]:
        resp = await self._call("joined_rooms", self.client.joined_rooms, JoinedRoomsResponse)
        return list(resp.rooms)

    async def get_state(self, room_id: str) -> list[dict[str, Any]]:
        resp = await self._call(
            "get_state", lambda: self.client.room_get_state(room_id), RoomGetStateResponse
        )
        return list(resp.events)

    # --- writes -------------------------------------------------------------------------------

    async def create_room(
        self,
        *,
        name: str | None,
        topic: str | None,
        space: bool,
        room_version: str | None,
        invite: list[str],
        initial_state: list[dict[str, Any]],
        creation_content: dict[str, Any],
    ) -> str:
        """createRoom, sent raw: nio cannot add keys to the creation content.

        The public_chat preset with an invite-only join rule in ``initial_state`` makes the same
        room as private_chat minus its ``m.room.guest_access: can_join`` event (absent means
        forbidden, which is what we want): one event less per room. Not sent twice when the
        answer is lost, since that could make a second room; the caller looks for it instead."""
        body: dict[str, Any] = {
            "preset": "public_chat",
            "visibility": "private",
            "invite": invite,
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "invite"}},
                *initial_state,
            ],
            "creation_content": {**creation_content, **({"type": "m.space"} if space else {})},
        }
        if name is not None:
            body["name"] = name
        if topic is not None:
            body["topic"] = topic
        if room_version is not None:
            body["room_version"] = room_version
        # Shielded: a run stopped by an error elsewhere must not drop a createRoom half-sent;
        # settle() waits for these before the next run may look for rooms made but unrecorded.
        task = asyncio.ensure_future(
            self._raw(
                "create_room", "POST", "/_matrix/client/v3/createRoom", body, resend_lost=False
            )
        )
        self._creating.add(task)
        task.add_done_callback(self._creating.discard)
        status, answer = await asyncio.shield(task)
        if status == 200 and isinstance(answer, dict) and "room_id" in answer:
            return str(answer["room_id"])
        answer = answer if isinstance(answer, dict) else {}
        raise MatrixError(
            "create_room", answer.get("errcode"), str(answer.get("error", "")), status
        )

    async def settle(self) -> None:
        """Wait until every createRoom sent has its answer (or failed)."""
        if self._creating:
            await asyncio.wait(set(self._creating), timeout=_SETTLE_SECONDS)

    async def _raw(
        self,
        op: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        resend_lost: bool = True,
    ) -> tuple[int, Any]:
        """A request without nio's response classes, in a slot: 429s and connections that never
        opened are retried; a lost answer is retried only with ``resend_lost`` (else raised as
        ``unanswered``). Returns the status and the JSON body of any other answer."""
        self.calls[op] += 1
        headers = {"Authorization": f"Bearer {self.client.access_token}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        waited = 0.0
        failures = 0
        while True:
            try:
                async with self._slots:
                    resp = await self.client.send(method, path, data, headers=headers)
                    status = resp.status
                    try:
                        answer = await resp.json(content_type=None)
                    except ValueError:  # not JSON (a proxy's error page): status only
                        answer = None
            except _NETWORK_ERRORS as exc:
                if not resend_lost and not isinstance(exc, _NOT_SENT):
                    raise MatrixError(op, None, f"no answer: {exc!r}", unanswered=True) from exc
                failures += 1
                if failures > _MAX_NETWORK_RETRIES:
                    raise MatrixError(op, None, f"no answer: {exc!r}") from exc
                await asyncio.sleep(min(2.0**failures, 30.0))
                continue
            if status == 429:
                wait = (answer if isinstance(answer, dict) else {}).get("retry_after_ms", 1000)
                self.rate_limited += 1
                waited += wait / 1000
                if waited > self.max_wait:
                    raise MatrixError(op, "M_LIMIT_EXCEEDED", "rate limited for too long", 429)
                log.info("%s rate limited; retrying in %.1fs", op, wait / 1000)
                await asyncio.sleep(wait / 1000)
                continue
            return status, answer

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

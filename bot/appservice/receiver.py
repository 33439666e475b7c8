"""The appservice endpoint: ``PUT /_matrix/app/v1/transactions/{txnId}`` into the inbox.

A transaction's events are stored in the same database transaction as its txnId, and the
homeserver gets its 200 only after that commit: a crash before it makes the homeserver send the
transaction again, a repeated txnId is acknowledged without storing anything twice. Storing is
all this does; handling is the inbox consumer's (bot/appservice/feed.py), which may be another
process sharing the database (bot/lease.py). The bot's own membership is recorded on the way
(join points, so nothing from before a join is handled; leaves), as the sync loop does.

Requests must carry the homeserver's token (``hs_token``): none is 401, a wrong one 403. A
database that is away answers 503, and the homeserver retries later.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

from storage import appservice, inbox, rooms
from storage.db import Database, describe, is_unavailable
from storage.inbox import IncomingEvent

log = logging.getLogger(__name__)

# A transaction holds at most 100 events (Synapse) of at most 64 KiB each.
MAX_BODY = 16 * 1024 * 1024
_PREFIXES = ("/_matrix/app/v1", "")  # "" = the legacy unprefixed paths older servers use


def _error(status: int, errcode: str, message: str) -> web.Response:
    return web.json_response({"errcode": errcode, "error": message}, status=status)


def _own_membership(user_id: str, source: dict[str, Any]) -> str | None:
    """ "join" for the bot's (re)join, "leave" for its leave or ban, else None."""
    if source.get("type") != "m.room.member" or source.get("state_key") != user_id:
        return None
    membership = (source.get("content") or {}).get("membership")
    if membership == "join":
        prev = ((source.get("unsigned") or {}).get("prev_content") or {}).get("membership")
        return None if prev == "join" else "join"  # a profile change is not a join
    if membership in ("leave", "ban"):
        return "leave"
    return None


class TransactionReceiver:
    def __init__(
        self,
        db: Database,
        *,
        user_id: str,
        hs_token: str,
        on_stored: Callable[[], None] | None = None,
        role: Callable[[], str] | None = None,
    ) -> None:
        self.db = db
        self.user_id = user_id
        self.hs_token = hs_token
        # Told after each transaction that stored something (wakes this process's consumer).
        self.on_stored = on_stored
        # "active" or "standby", for GET /health.
        self.role = role or (lambda: "active")
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        for prefix in _PREFIXES:
            app.router.add_put(prefix + "/transactions/{txn_id}", self.transaction)
            app.router.add_get(prefix + "/users/{user_id}", self.query)
            app.router.add_get(prefix + "/rooms/{alias}", self.query)
        app.router.add_post("/_matrix/app/v1/ping", self.ping)
        app.router.add_get("/health", self.health)
        return app

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_port=reuse_port or None)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("appservice endpoint listening on %s:%s", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _refused(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else request.query.get("access_token")
        if not token:
            return _error(401, "M_UNAUTHORIZED", "missing the homeserver token")
        if not hmac.compare_digest(token.encode(), self.hs_token.encode()):
            log.warning("appservice request with a wrong token from %s", request.remote)
            return _error(403, "M_FORBIDDEN", "wrong homeserver token")
        return None

    async def transaction(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        txn_id = request.match_info["txn_id"]
        try:
            body = await request.json(loads=json.loads)
        except ValueError:
            return _error(400, "M_NOT_JSON", "the body is not JSON")
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list):
            return _error(400, "M_BAD_JSON", "no events list")
        try:
            stored = await self._store(txn_id, [e for e in events if isinstance(e, dict)])
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning(
                "transaction %s not stored: database unavailable (%s)", txn_id, describe(exc)
            )
            return _error(503, "M_UNKNOWN", "database unavailable; send again later")
        if stored and self.on_stored is not None:
            self.on_stored()
        return web.json_response({})

    async def _store(self, txn_id: str, sources: list[dict[str, Any]]) -> int:
        """Store the transaction's events with its txnId; how many were new (0 if repeated)."""
        batch = [e for s in sources if (e := IncomingEvent.of(s)) is not None]
        async with self.db.transaction() as session:
            if await appservice.seen(session, txn_id):
                log.debug("transaction %s repeated: already stored", txn_id)
                return 0
            appservice.record(session, txn_id, len(batch))
            for event in batch:
                match _own_membership(self.user_id, event.source):
                    case "join":
                        await rooms.record_join(
                            session, event.room_id, event.origin_server_ts, event.event_id
                        )
                    case "leave":
                        await rooms.record_leave(session, event.room_id)
            added = await inbox.store_batch(session, self.user_id, batch, None)
        return len(added)

    async def query(self, request: web.Request) -> web.Response:
        # The bot makes no users or rooms on demand: whatever the homeserver asks about is unknown.
        if (refused := self._refused(request)) is not None:
            return refused
        return _error(404, "M_NOT_FOUND", "not provided by this application service")

    async def ping(self, request: web.Request) -> web.Response:
        if (refused := self._refused(request)) is not None:
            return refused
        return web.json_response({})

    async def health(self, request: web.Request) -> web.Response:
        """Unauthenticated liveness for a supervisor or load balancer: up, and which role."""
        return web.json_response({"status": "ok", "role": self.role()})

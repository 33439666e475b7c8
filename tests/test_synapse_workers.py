"""The multi-process Synapse harness (tests/synapse_workers.py) really splits the work.

Main + generic worker + event persister on PostgreSQL and Redis, behind the routing proxy.
Skipped when PostgreSQL or Redis is away, unless GRIDBOT_REQUIRE_PG=1 (.ci/run starts both).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.synapse_workers import MAIN, PERSISTER, WORKER, SynapseWorkers, route

AS_SENDER = "gridbot_as"
AS_TOKEN = "as-token-" + uuid.uuid4().hex
HS_TOKEN = "hs-token-" + uuid.uuid4().hex


class AppService:
    """A tiny appservice endpoint that records the transactions Synapse pushes."""

    def __init__(self) -> None:
        self.transactions: list[dict[str, Any]] = []
        self.bad_auth = 0
        self.port = 0
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/_matrix/app/v1/transactions/{txn_id}", self._transaction)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _transaction(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {HS_TOKEN}":
            self.bad_auth += 1
            return web.json_response({"errcode": "M_FORBIDDEN"}, status=403)
        body = await request.json()
        async with self._arrived:
            self.transactions.append({"txn_id": request.match_info["txn_id"], **body})
            self._arrived.notify_all()
        return web.json_response({})

    async def wait_for_event(
        self, match: Callable[[dict[str, Any]], bool], within: float = 20
    ) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            for txn in self.transactions:
                for event in txn.get("events", []):
                    if match(event):
                        return event
            return None

        async with self._arrived, asyncio.timeout(within):
            await self._arrived.wait_for(lambda: found() is not None)
        event = found()
        assert event is not None
        return event

    def registration(self) -> dict[str, Any]:
        return {
            "id": "gridbot-test",
            "url": f"http://127.0.0.1:{self.port}",
            "as_token": AS_TOKEN,
            "hs_token": HS_TOKEN,
            "sender_localpart": AS_SENDER,
            "namespaces": {
                "users": [{"regex": "@gridbot_.*:localhost", "exclusive": True}],
                "aliases": [],
                "rooms": [],
            },
            "rate_limited": False,
        }


@pytest.fixture(scope="module")
async def appservice() -> AsyncIterator[AppService]:
    service = AppService()
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture(scope="module")
async def deployment(
    tmp_path_factory: pytest.TempPathFactory, appservice: AppService
) -> AsyncIterator[SynapseWorkers]:
    data_dir: Path = tmp_path_factory.mktemp("synapse-workers")
    registration = data_dir / "appservice.yaml"
    registration.write_text(yaml.safe_dump(appservice.registration()), encoding="utf-8")
    sw = SynapseWorkers(data_dir, extra={"app_service_config_files": [str(registration)]})
    reason = await sw.unavailable()
    if reason is not None:
        if os.environ.get("GRIDBOT_REQUIRE_PG") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    await sw.start()
    try:
        yield sw
    finally:
        await sw.stop()


class Client:
    """Just enough of the client-server API, straight over HTTP to the proxy."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http, self.base, self.token = http, base, token

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.http.request(
            method,
            f"{self.base}/_matrix/client/v3{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as resp:
            got = await resp.json(content_type=None)
            assert resp.status == 200, f"{method} {path}: {resp.status} {got}"
            return got

    async def sync_until(
        self, match: Callable[[dict[str, Any]], bool], within: float = 20
    ) -> dict[str, Any]:
        """Sync (long-polling) until an event in a joined room's timeline matches."""
        since: str | None = None
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            query = "?timeout=1000" + (f"&since={quote(since)}" if since else "")
            got = await self.call("GET", f"/sync{query}")
            since = got["next_batch"]
            for room in got.get("rooms", {}).get("join", {}).values():
                for event in room.get("timeline", {}).get("events", []):
                    if match(event):
                        return event
        raise AssertionError("no matching event within the timeout")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def test_routing_follows_the_workers_docs() -> None:
    room = "/_matrix/client/v3/rooms/%21abc%3Alocalhost"
    assert route("GET", "/_matrix/client/v3/sync") == WORKER
    assert route("PUT", f"{room}/send/m.room.message/t1") == WORKER
    assert route("GET", f"{room}/messages") == WORKER
    assert route("POST", "/_matrix/client/v3/createRoom") == WORKER
    assert route("GET", "/_matrix/client/v3/pushrules/") == WORKER
    # Writes of streams main is the writer of, the admin API and media stay on main.
    assert route("PUT", "/_matrix/client/v3/pushrules/global/override/x") == MAIN
    assert route("PUT", f"{room}/typing/@a:localhost") == MAIN
    assert route("POST", f"{room}/receipt/m.read/$e") == MAIN
    assert route("PUT", "/_matrix/client/v3/sendToDevice/m.x/t1") == MAIN
    assert route("POST", "/_synapse/admin/v1/register") == MAIN
    assert route("POST", "/_matrix/media/v3/upload") == MAIN


@pytest.mark.homeserver
async def test_worker_syncs_and_persister_writes(
    deployment: SynapseWorkers, http: aiohttp.ClientSession
) -> None:
    tag = uuid.uuid4().hex[:6]
    alice_id, alice_token = await deployment.register(f"alice-{tag}", "pw")
    bob_id, bob_token = await deployment.register(f"bob-{tag}", "pw")
    alice = Client(http, deployment.url, alice_token)
    bob = Client(http, deployment.url, bob_token)

    room_id = (await alice.call("POST", "/createRoom", {"invite": [bob_id]}))["room_id"]
    await bob.call("POST", f"/join/{quote(room_id)}", {})
    body = f"hello through the worker {tag}"
    sent = await alice.call(
        "PUT",
        f"/rooms/{quote(room_id)}/send/m.room.message/{tag}",
        {"msgtype": "m.text", "body": body},
    )
    got = await bob.sync_until(lambda e: e.get("content", {}).get("body") == body)
    assert got["event_id"] == sent["event_id"]
    assert got["sender"] == alice_id

    # The proxy sent sync and send to the worker, and the worker's access log shows it served
    # them (everything on main would leave both empty).
    paths = {
        (target, path.split("?")[0].rsplit("/", 1)[-1]) for target, _, path in deployment.proxy_log
    }
    assert (WORKER, "sync") in paths
    assert (WORKER, "createRoom") in paths
    worker_log = deployment.worker(WORKER).log_path.read_text(encoding="utf-8")
    assert "/_matrix/client/v3/sync" in worker_log
    assert f"/send/m.room.message/{tag}" in worker_log

    # Every event of the room was persisted by the event persister (main would write
    # instance_name 'master' or NULL).
    conn = await deployment.pg_connect()
    try:
        writers = await conn.fetch(
            "SELECT DISTINCT instance_name FROM events WHERE room_id = $1", room_id
        )
    finally:
        await conn.close()
    assert [r["instance_name"] for r in writers] == [PERSISTER]


@pytest.mark.homeserver
async def test_appservice_gets_the_invite(
    deployment: SynapseWorkers, appservice: AppService, http: aiohttp.ClientSession
) -> None:
    """Main pushes to appservices (notify_appservices_from_worker is unset) and learns of the
    persister's events only through Redis replication: this is that path end to end."""
    _, token = await deployment.register(f"carol-{uuid.uuid4().hex[:6]}", "pw")
    carol = Client(http, deployment.url, token)
    as_user = deployment.user_id(AS_SENDER)
    room_id = (await carol.call("POST", "/createRoom", {"invite": [as_user]}))["room_id"]

    invite = await appservice.wait_for_event(
        lambda e: (
            e.get("room_id") == room_id
            and e.get("type") == "m.room.member"
            and e.get("state_key") == as_user
        )
    )
    assert invite["content"]["membership"] == "invite"
    assert appservice.bad_auth == 0

"""A multi-process Synapse deployment for tests, laid out as a province would run it.

Processes (all on 127.0.0.1, each in its own session and SIGTERMed if the test process dies):

``main``              synapse.app.homeserver: client listener + HTTP replication listener
``worker1``           synapse.app.generic_worker: client (and federation) listener
``event_persister1``  synapse.app.generic_worker, the ``events`` stream writer: replication
                      listener only
proxy                 an aiohttp reverse proxy (``url``): the client-server endpoints that
                      docs/workers.md lists for ``synapse.app.generic_worker`` go to worker1,
                      everything else (admin API, media, typing, to-device, receipts, ...) to main

They share a fresh PostgreSQL database (created with the C locale Synapse insists on, dropped on
``stop()``) and Redis for replication. Redis pub/sub channels are named after the server name and
are *not* separated by ``dbid`` (that only separates the cache keys), so two deployments with the
same server name on one Redis would hear each other's replication: ``start()`` takes a file lock
per (Redis, server name) and a second deployment waits for the first to stop.

Application services: pushes come from ``main`` (Synapse's default:
``notify_appservices_from_worker`` is not set). Events are persisted by event_persister1, so
main only learns about them through Redis replication: an appservice transaction proves that
path works.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import hashlib
import hmac
import os
import re
import secrets
import signal
import socket
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from bot.sandbox.homeserver import (
    STOP_TIMEOUT,
    Synapse,
    SynapseError,
    free_port,
    spawn,
    wait_answering,
    write_log_config,
)

PG_HOST = os.environ.get("GRIDBOT_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("GRIDBOT_PG_PORT", "5432"))
PG_USER = os.environ.get("GRIDBOT_PG_USER", "postgres")
PG_ADMIN_DB = os.environ.get("GRIDBOT_PG_ADMIN_DB", "postgres")
REDIS_HOST = os.environ.get("GRIDBOT_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("GRIDBOT_REDIS_PORT", "6379"))

# How long a second deployment with the same server name waits for the first one to stop.
LOCK_TIMEOUT = 180.0

MAIN = "main"
WORKER = "worker1"
PERSISTER = "event_persister1"

# docs/workers.md (Synapse 1.157–1.163), "synapse.app.generic_worker": the client-server and
# admin endpoints any generic worker can serve. Left out on purpose: federation (nothing
# federates here), SSO (not configured), and the endpoints of streams main writes (typing,
# to-device, receipts, read markers, presence/push rules/account data writes).
_WORKER_ANY_METHOD = r"""
^/_matrix/client/(r0|v3)/sync$
^/_matrix/client/(api/v1|r0|v3)/events$
^/_matrix/client/(api/v1|r0|v3)/initialSync$
^/_matrix/client/(api/v1|r0|v3)/rooms/[^/]+/initialSync$
^/_matrix/client/(api/v1|r0|v3|unstable)/createRoom$
^/_matrix/client/(api/v1|r0|v3|unstable)/publicRooms$
^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/joined_members$
^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/context/.*$
^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/members$
^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state$
^/_matrix/client/v1/rooms/.*/hierarchy$
^/_matrix/client/(v1|unstable)/rooms/.*/relations/
^/_matrix/client/v1/rooms/.*/threads$
^/_matrix/client/unstable/im.nheko.summary/summary/.*$
^/_matrix/client/v1/room_summary/.*$
^/_matrix/client/(r0|v3|unstable)/account/3pid$
^/_matrix/client/(r0|v3|unstable)/account/whoami$
^/_matrix/client/(r0|v3|unstable)/account/deactivate$
^/_matrix/client/(r0|v3)/delete_devices$
^/_matrix/client/(api/v1|r0|v3|unstable)/devices(/|$)
^/_matrix/client/versions$
^/_matrix/client/(api/v1|r0|v3|unstable)/voip/turnServer$
^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/event/
^/_matrix/client/(api/v1|r0|v3|unstable)/joined_rooms$
^/_matrix/client/v1/rooms/.*/timestamp_to_event$
^/_matrix/client/(api/v1|r0|v3|unstable/.*)/rooms/.*/aliases
^/_matrix/client/(api/v1|r0|v3|unstable)/search$
^/_matrix/client/(r0|v3|unstable)/user/.*/filter(/|$)
^/_matrix/client/(api/v1|r0|v3|unstable)/directory/room/.*$
^/_matrix/client/(r0|v3|unstable)/capabilities$
^/_matrix/client/(r0|v3|unstable)/notifications$
^/_synapse/admin/v1/rooms/[^/]+$
^/_matrix/client/(r0|v3|unstable)/keys/query$
^/_matrix/client/(r0|v3|unstable)/keys/changes$
^/_matrix/client/(r0|v3|unstable)/keys/claim$
^/_matrix/client/(r0|v3|unstable)/room_keys/
^/_matrix/client/(r0|v3|unstable)/keys/upload
^/_matrix/client/(api/v1|r0|v3|unstable)/keys/device_signing/upload$
^/_matrix/client/(api/v1|r0|v3|unstable)/keys/signatures/upload$
^/_matrix/client/(api/v1|r0|v3|unstable)/login$
^/_matrix/client/(r0|v3|unstable)/register$
^/_matrix/client/(r0|v3|unstable)/register/available$
^/_matrix/client/v1/register/m.login.registration_token/validity$
^/_matrix/client/(r0|v3|unstable)/password_policy$
^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/redact
^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/send
^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/state/
^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/(join|invite|leave|ban|unban|kick)$
^/_matrix/client/(api/v1|r0|v3|unstable)/join/
^/_matrix/client/(api/v1|r0|v3|unstable)/knock/
^/_matrix/client/(api/v1|r0|v3|unstable)/profile/
^/_matrix/client/(r0|v3|unstable)/user_directory/search$
^/_matrix/client/unstable/org.matrix.msc4140/delayed_events(/.*/restart)?$
^/_matrix/client/(api/v1|r0|v3|unstable)/rooms/.*/messages$
"""
# "Additionally, the following REST endpoints can be handled for GET requests" (writes go to
# the stream writer, which is main here).
_WORKER_GET_ONLY = r"""
^/_matrix/client/(api/v1|r0|v3|unstable)/pushrules/
^/_matrix/client/(r0|v3|unstable)/.*/tags
^/_matrix/client/(r0|v3|unstable)/.*/account_data
^/_matrix/client/(api/v1|r0|v3|unstable)/presence/
^/_synapse/admin/v2/users/[^/]+$
"""


def _union(patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns.split()))


WORKER_ROUTES = _union(_WORKER_ANY_METHOD)
WORKER_GET_ROUTES = _union(_WORKER_GET_ONLY)

# Not forwarded either way (RFC 9110 §7.6.1), plus what aiohttp recomputes for the new body.
# Bodies pass through as bytes (auto_decompress=False), so Content-Encoding stays valid.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

_LOG_FORMAT = "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s"


def route(method: str, path: str) -> str:
    """Which process serves a request: WORKER or MAIN (path as sent, still percent-encoded)."""
    if WORKER_ROUTES.match(path):
        return WORKER
    if method in ("GET", "HEAD") and WORKER_GET_ROUTES.match(path):
        return WORKER
    return MAIN


def _listener(port: int, names: list[str], *, tag: str, x_forwarded: bool) -> dict[str, Any]:
    return {
        "port": port,
        "bind_addresses": ["127.0.0.1"],
        "type": "http",
        "tls": False,
        "x_forwarded": x_forwarded,
        # The tag names the access logger: synapse.access.http.<tag>.
        "tag": tag,
        "resources": [{"names": names, "compress": False}],
    }


@dataclass
class _Worker:
    """One generic_worker process: its config file, logs and the listener we probe."""

    name: str
    port: int
    listeners: list[dict[str, Any]]
    data_dir: Path
    access_log: bool = False
    proc: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @property
    def config_path(self) -> Path:
        return self.data_dir / f"{self.name}.yaml"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def console_path(self) -> Path:
        return self.data_dir / f"{self.name}.console.log"

    @property
    def log_config_path(self) -> Path:
        return self.data_dir / f"{self.name}.log.config"

    def write_config(self, log_level: str) -> None:
        cfg = {
            "worker_app": "synapse.app.generic_worker",
            "worker_name": self.name,
            "worker_listeners": self.listeners,
            "worker_log_config": str(self.log_config_path),
            "worker_pid_file": str(self.data_dir / f"{self.name}.pid"),
        }
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        # One INFO line per request: the proof that this worker served it.
        loggers = {"synapse.access": {"level": "INFO"}} if self.access_log else {}
        write_log_config(self.log_config_path, self.log_path, log_level, loggers)


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return f"--- {path} (tail) ---\n{tail}" if tail else ""


class SynapseWorkers:
    """Main + generic worker + event persister on PostgreSQL and Redis, behind a routing proxy.

    ``url`` is the proxy: clients and the bot talk to it only. See the module docstring.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        server_name: str = "localhost",
        extra: dict[str, Any] | None = None,
        relaxed_limits: bool = True,
        log_level: str = "WARNING",
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.server_name = server_name
        # Settings merged into the shared homeserver.yaml last (read by every process),
        # e.g. {"app_service_config_files": [path]}.
        self.extra = dict(extra or {})
        self.relaxed_limits = relaxed_limits
        self.log_level = log_level
        self.database = f"gridbot_sw_{uuid.uuid4().hex[:10]}"
        # Separates the external cache's keys only; replication is separated by the lock.
        self.redis_dbid = 1 + zlib.crc32(server_name.encode()) % 15
        self.main: Synapse | None = None
        self.workers: list[_Worker] = []
        self.proxy_port = 0
        # Which process the proxy sent each request to: counts, and the latest requests.
        self.routed: collections.Counter[str] = collections.Counter()
        self.proxy_log: collections.deque[tuple[str, str, str]] = collections.deque(maxlen=2000)
        self._pg_user: str | None = None
        self._lock_fd: int | None = None
        self._runner: web.AppRunner | None = None
        self._upstream: aiohttp.ClientSession | None = None
        self._upstreams: dict[str, str] = {}
        self._http: aiohttp.ClientSession | None = None

    # --- properties -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The reverse proxy: what clients, the bot and appservices use."""
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def main_url(self) -> str:
        assert self.main is not None, "start() first"
        return self.main.url

    @property
    def worker_url(self) -> str:
        return self._upstreams[WORKER]

    @property
    def running(self) -> bool:
        return self.main is not None and self.main.running

    def user_id(self, localpart_or_user_id: str) -> str:
        if localpart_or_user_id.startswith("@"):
            return localpart_or_user_id
        return f"@{localpart_or_user_id}:{self.server_name}"

    def worker(self, name: str) -> _Worker:
        return next(w for w in self.workers if w.name == name)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self._lock_replication_channel()
        try:
            await self._ping_redis()
            await self._create_database()
            main_port, main_repl, worker_port, persister_repl = (free_port() for _ in range(4))
            self.workers = [
                _Worker(
                    WORKER,
                    worker_port,
                    [
                        _listener(
                            worker_port, ["client", "federation"], tag=WORKER, x_forwarded=True
                        )
                    ],
                    self.data_dir,
                    access_log=True,
                ),
                _Worker(
                    PERSISTER,
                    persister_repl,
                    [_listener(persister_repl, ["replication"], tag=PERSISTER, x_forwarded=False)],
                    self.data_dir,
                ),
            ]
            self.main = Synapse(
                self.data_dir,
                port=main_port,
                server_name=self.server_name,
                relaxed_limits=self.relaxed_limits,
                log_level=self.log_level,
                extra={**self._shared_config(main_port, main_repl, persister_repl), **self.extra},
            )
            # Main first: it creates the schema, which workers refuse to do.
            await self.main.start()
            for w in self.workers:
                await asyncio.to_thread(w.write_config, self.log_level)
            await asyncio.gather(*(self._start_worker(w) for w in self.workers))
            self._upstreams = {MAIN: self.main.url, WORKER: f"http://127.0.0.1:{worker_port}"}
            await self._start_proxy()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for session in (self._upstream, self._http):
            if session is not None:
                await session.close()
        self._upstream = self._http = None
        await asyncio.gather(*(self._stop_worker(w) for w in self.workers))
        if self.main is not None:
            await self.main.stop()
        await self._drop_database()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    async def __aenter__(self) -> SynapseWorkers:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _shared_config(self, main_port: int, main_repl: int, persister_repl: int) -> dict[str, Any]:
        """homeserver.yaml settings for all processes (Synapse() applies them over its own)."""
        assert self._pg_user is not None
        return {
            # Main: the client listener the proxy forwards to, and replication for the workers.
            "listeners": [
                _listener(main_port, ["client"], tag=MAIN, x_forwarded=True),
                _listener(main_repl, ["replication"], tag="main-replication", x_forwarded=False),
            ],
            "database": {
                "name": "psycopg2",
                "args": {
                    "user": self._pg_user,
                    "host": PG_HOST,
                    "port": PG_PORT,
                    "dbname": self.database,
                    "cp_min": 1,
                    "cp_max": 5,
                },
            },
            "redis": {
                "enabled": True,
                "host": REDIS_HOST,
                "port": REDIS_PORT,
                "dbid": self.redis_dbid,
            },
            # "main" is the documented name of the main process here (Synapse maps it to
            # "master" internally); every stream writer must be listed too.
            "instance_map": {
                "main": {"host": "127.0.0.1", "port": main_repl},
                PERSISTER: {"host": "127.0.0.1", "port": persister_repl},
            },
            "stream_writers": {"events": [PERSISTER]},
            "worker_replication_secret": secrets.token_hex(16),
        }

    async def _start_worker(self, w: _Worker) -> None:
        console = await asyncio.to_thread(w.console_path.open, "wb")
        try:
            w.proc = await spawn(
                "synapse.app.generic_worker",
                [self.data_dir / "homeserver.yaml", w.config_path],
                cwd=self.data_dir,
                console=console,
            )
        finally:
            console.close()
        # /health is served on every listener, replication-only ones included.
        await self._wait_health(w)

    async def _wait_health(self, w: _Worker) -> None:
        assert w.proc is not None
        await wait_answering(w.proc, f"http://127.0.0.1:{w.port}/health", w.name, self.log_tail)

    async def _stop_worker(self, w: _Worker) -> None:
        proc, w.proc = w.proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    # --- PostgreSQL and Redis ---------------------------------------------------------------

    async def _pg_admin(self) -> asyncpg.Connection:
        errors = []
        # Trust auth: whichever role exists (postgres on a stock server, root in some images).
        for user in dict.fromkeys([self._pg_user or PG_USER, "postgres", "root"]):
            try:
                conn = await asyncpg.connect(
                    host=PG_HOST, port=PG_PORT, user=user, database=PG_ADMIN_DB, timeout=5
                )
            except (OSError, asyncpg.PostgresError) as exc:
                errors.append(f"{user}: {exc}")
                continue
            self._pg_user = user
            return conn
        raise SynapseError(f"PostgreSQL at {PG_HOST}:{PG_PORT} unusable: {'; '.join(errors)}")

    async def _create_database(self) -> None:
        conn = await self._pg_admin()
        try:
            # Synapse refuses any collation/ctype but C; the cluster default here is C.UTF-8,
            # so template0 (template1 would force its own locale).
            await conn.execute(
                f"CREATE DATABASE \"{self.database}\" ENCODING 'UTF8' "
                "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            )
        finally:
            await conn.close()

    async def _drop_database(self) -> None:
        if self._pg_user is None:
            return  # never got as far as creating it
        try:
            conn = await self._pg_admin()
        except SynapseError:
            return
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            await conn.close()

    async def pg_connect(self) -> asyncpg.Connection:
        """A connection to the deployment's database (for tests that look at what Synapse wrote)."""
        assert self._pg_user is not None, "start() first"
        return await asyncpg.connect(
            host=PG_HOST, port=PG_PORT, user=self._pg_user, database=self.database, timeout=5
        )

    async def unavailable(self) -> str | None:
        """Why PostgreSQL or Redis cannot be used (None when both answer): lets tests skip."""
        try:
            await self._ping_redis()
            conn = await self._pg_admin()
        except SynapseError as exc:
            return str(exc)
        await conn.close()
        return None

    async def _ping_redis(self) -> None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(REDIS_HOST, REDIS_PORT), 5
            )
        except (OSError, TimeoutError) as exc:
            raise SynapseError(f"Redis at {REDIS_HOST}:{REDIS_PORT} unreachable: {exc}") from exc
        try:
            writer.write(b"PING\r\n")
            answer = await asyncio.wait_for(reader.readline(), 5)
        finally:
            writer.close()
        if not answer.startswith(b"+PONG"):
            raise SynapseError(f"Redis at {REDIS_HOST}:{REDIS_PORT} answered {answer!r}")

    async def _lock_replication_channel(self) -> None:
        """One deployment per (Redis, server name) at a time, across processes on this machine."""
        name = f"gridbot-synapse-workers-{REDIS_HOST}-{REDIS_PORT}-{self.server_name}.lock"
        path = Path(tempfile.gettempdir()) / re.sub(r"[^\w.-]", "_", name)
        # Read-only is enough for flock, and works on a lock file another user created.
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise SynapseError(
                        f"another deployment for {self.server_name!r} on Redis "
                        f"{REDIS_HOST}:{REDIS_PORT} held {path} for {LOCK_TIMEOUT:.0f} s"
                    ) from None
                await asyncio.sleep(0.2)
                continue
            self._lock_fd = fd
            return

    # --- the reverse proxy ------------------------------------------------------------------

    async def _start_proxy(self) -> None:
        # No total timeout: /sync long-polls.
        self._upstream = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5), auto_decompress=False
        )
        # Media uploads (report workbooks) exceed aiohttp's 1 MiB default.
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # Bind the socket ourselves: no window in which another process takes the port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.proxy_port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._upstream is not None
        path = request.rel_url.raw_path
        target = route(request.method, path)
        self.routed[target] += 1
        self.proxy_log.append((target, request.method, path))
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
        )
        headers["X-Forwarded-For"] = request.remote or "127.0.0.1"
        headers["X-Forwarded-Proto"] = "http"
        body = await request.read()
        url = URL(self._upstreams[target] + request.rel_url.raw_path_qs, encoded=True)
        try:
            async with self._upstream.request(
                request.method, url, headers=headers, data=body or None, allow_redirects=False
            ) as up:
                payload = await up.read()
                out = CIMultiDict(
                    (k, v) for k, v in up.headers.items() if k.lower() not in _HOP_BY_HOP
                )
                return web.Response(status=up.status, body=payload, headers=out)
        except aiohttp.ClientError as exc:
            return web.json_response(
                {"errcode": "M_UNKNOWN", "error": f"proxy: {target} unreachable: {exc}"},
                status=502,
            )

    # --- diagnostics ------------------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of every process's console output and log file."""
        parts = [self.main.log_tail(lines)] if self.main is not None else []
        for w in self.workers:
            parts.extend(filter(None, (_tail(w.console_path, lines), _tail(w.log_path, lines))))
        return "\n".join(parts) or "(no Synapse output)"

    # --- users ------------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._http

    async def register(self, localpart: str, password: str, admin: bool = False) -> tuple[str, str]:
        """Shared-secret registration (admin API, through the proxy to main).

        Returns (user_id, access_token); unlike ``Synapse.register`` an existing user is an
        error, since there is no token to return for it.
        """
        if localpart.startswith("@"):
            localpart = localpart[1:].split(":", 1)[0]
        cfg = yaml.safe_load((self.data_dir / "homeserver.yaml").read_text(encoding="utf-8"))
        secret = str(cfg["registration_shared_secret"])
        url = f"{self.url}/_synapse/admin/v1/register"
        http = self._session()
        async with http.get(url) as resp:
            nonce = (await resp.json())["nonce"]
        mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password):
            mac.update(part.encode())
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        async with http.post(url, json=body) as resp:
            got = await resp.json(content_type=None)
            if resp.status != 200:
                raise SynapseError(
                    f"register {localpart}: HTTP {resp.status} {got}",
                    status=resp.status,
                    errcode=got.get("errcode") if isinstance(got, dict) else None,
                )
        return str(got["user_id"]), str(got["access_token"])


__all__ = ["MAIN", "PERSISTER", "WORKER", "SynapseWorkers", "route"]

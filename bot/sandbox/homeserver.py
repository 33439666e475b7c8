"""A local Synapse homeserver for tests, benchmarks and ``gridbot sandbox``.

It only ever binds 127.0.0.1. The data directory holds everything (config, keys, SQLite
database, media, logs), so a later ``start()`` on the same directory resumes the same server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import hmac
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

CONFIG_NAME = "homeserver.yaml"
LOG_NAME = "homeserver.log"
# Synapse's own stdout/stderr: errors before its logging is set up land here.
CONSOLE_NAME = "homeserver.console.log"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

# Every limit a bot or a test can meet. Key names checked against synapse/config/ratelimiting.py
# (1.163); unknown keys are ignored by Synapse, so listing newer ones is harmless.
_FAST = {"per_second": 1000, "burst_count": 10000}
RELAXED_LIMITS: dict[str, Any] = {
    "rc_message": _FAST,
    "rc_registration": _FAST,
    "rc_registration_token_validity": _FAST,
    "rc_login": {"address": _FAST, "account": _FAST, "failed_attempts": _FAST},
    "rc_admin_redaction": _FAST,
    "rc_joins": {"local": _FAST, "remote": _FAST},
    "rc_joins_per_room": _FAST,
    "rc_key_requests": _FAST,
    "rc_3pid_validation": _FAST,
    # per_user counts against the invitee, so exempting the bot does not lift it.
    "rc_invites": {"per_room": _FAST, "per_user": _FAST, "per_issuer": _FAST},
    "rc_third_party_invite": _FAST,
    "rc_media_create": _FAST,
    "rc_presence": {"per_user": _FAST},
    "rc_delayed_event_mgmt": _FAST,
    "rc_room_creation": _FAST,
    "rc_reports": _FAST,
    "rc_user_directory": _FAST,
    "rc_profile": _FAST,
}

_LOG_FORMAT = "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s"


class SynapseError(RuntimeError):
    """Synapse failed to start, or answered an API call with an error."""

    def __init__(self, message: str, *, status: int | None = None, errcode: str | None = None):
        super().__init__(message)
        self.status = status
        self.errcode = errcode


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Twisted does: otherwise TIME_WAIT leftovers of a just-stopped server count as busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent dies.

    Synapse runs in its own session (so Ctrl-C reaches only us and we can stop the bot first);
    this keeps a crashed or killed parent from leaving an orphaned homeserver behind.
    """
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Resolved in the parent: the child between fork and exec should do as little as possible.
_PRCTL = _load_prctl()


def write_log_config(
    path: Path, log_path: Path, level: str, loggers: dict[str, Any] | None = None
) -> None:
    """A Synapse process's log config: everything at ``level`` into ``log_path``, SQL quiet,
    ``loggers`` (name → settings) on top."""
    cfg = {
        "version": 1,
        "formatters": {"precise": {"format": _LOG_FORMAT}},
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "formatter": "precise",
                "filename": str(log_path),
                "encoding": "utf8",
            }
        },
        "loggers": {"synapse.storage.SQL": {"level": "WARNING"}, **(loggers or {})},
        "root": {"level": level, "handlers": ["file"]},
        "disable_existing_loggers": False,
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


async def spawn(
    app: str, configs: list[Path], *, cwd: Path, console: Any
) -> asyncio.subprocess.Process:
    """Start a Synapse process (``app``: its module) with these config files, in its own
    session, dying with its parent, its output into ``console``."""
    args = [arg for path in configs for arg in ("-c", str(path))]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        app,
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=console,
        stderr=console,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


async def wait_answering(
    proc: asyncio.subprocess.Process, url: str, what: str, log_tail: Callable[[], str]
) -> None:
    """Wait until ``url`` answers 200; raise with ``log_tail()`` if ``proc`` exits first or
    nothing answers within START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while True:
            if proc.returncode is not None:
                raise SynapseError(
                    f"{what} exited with code {proc.returncode} during startup\n" + log_tail()
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise SynapseError(
                    f"{what} did not answer on {url} within {START_TIMEOUT:.0f} s\n" + log_tail()
                )
            await asyncio.sleep(0.1)


class Synapse:
    """One Synapse process with its data directory; see the module docstring."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        server_name: str = "localhost",
        relaxed_limits: bool = True,
        log_level: str = "WARNING",
        limits: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.server_name = server_name
        self.relaxed_limits = relaxed_limits
        # Rate-limit settings applied last (with relaxed_limits=False: Synapse's defaults but
        # these, e.g. logins for a test's own clients).
        self.limits = dict(limits or {})
        # Any other homeserver.yaml settings, applied last (e.g. app_service_config_files).
        self.extra = dict(extra or {})
        self.log_level = log_level
        self.port: int = port or 0
        self.config_path = self.data_dir / CONFIG_NAME
        self.log_path = self.data_dir / LOG_NAME
        self.console_path = self.data_dir / CONSOLE_NAME
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None
        self._shared_secret: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def user_id(self, localpart_or_user_id: str) -> str:
        if localpart_or_user_id.startswith("@"):
            return localpart_or_user_id
        return f"@{localpart_or_user_id}:{self.server_name}"

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.config_path.exists():
            await self._generate_config()
        await asyncio.to_thread(self._write_config)
        if not port_is_free(self.port):
            raise SynapseError(
                f"port {self.port} on 127.0.0.1 is in use (an earlier Synapse for "
                f"{self.data_dir} still running?)"
            )
        console = await asyncio.to_thread(self._open_console)
        try:
            self._proc = await spawn(
                "synapse.app.homeserver", [self.config_path], cwd=self.data_dir, console=console
            )
        finally:
            console.close()
        try:
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def __aenter__(self) -> Synapse:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _generate_config(self) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "synapse.app.homeserver",
            "--server-name",
            self.server_name,
            "--config-path",
            str(self.config_path),
            "--data-directory",
            str(self.data_dir),
            "--generate-config",
            "--report-stats=no",
            cwd=self.data_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0 or not self.config_path.exists():
            raise SynapseError(
                f"synapse --generate-config failed ({proc.returncode}):\n"
                + out.decode(errors="replace")[-2000:]
            )

    def _open_console(self) -> Any:
        return self.console_path.open("wb")  # this start only: its tail goes into errors

    def _write_config(self) -> None:
        """Apply our settings to homeserver.yaml; run on every start so options take effect."""
        cfg: dict[str, Any] = yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {}
        if cfg.get("server_name", self.server_name) != self.server_name:
            raise SynapseError(
                f"{self.config_path} is for server {cfg['server_name']!r}, not {self.server_name!r}"
            )
        d = self.data_dir
        if not self.port:
            # Reuse the port of an earlier start, so URLs handed out stay valid; the freshly
            # generated config's 8008 is not ours to keep (our log.config marks an edited one).
            edited = cfg.get("log_config") == str(d / "log.config")
            old = [lst["port"] for lst in cfg.get("listeners") or [] if lst.get("port")]
            self.port = int(old[0]) if edited and old else free_port()
        cfg.update(
            {
                "server_name": self.server_name,
                "pid_file": str(d / "homeserver.pid"),
                "listeners": [
                    {
                        "port": self.port,
                        "bind_addresses": ["127.0.0.1"],
                        "type": "http",
                        "tls": False,
                        "x_forwarded": False,
                        "resources": [{"names": ["client"], "compress": False}],
                    }
                ],
                "database": {"name": "sqlite3", "args": {"database": str(d / "homeserver.db")}},
                "log_config": str(d / "log.config"),
                "media_store_path": str(d / "media_store"),
                "signing_key_path": str(d / f"{self.server_name}.signing.key"),
                "trusted_key_servers": [],
                "suppress_key_server_warning": True,
                "presence": {"enabled": False},
                "enable_registration": False,
                "report_stats": False,
                # Throw-away and sandbox servers only: every register/login hashes a password,
                # and the default 12 rounds cost ~0.25 s each.
                "bcrypt_rounds": 4,
            }
        )
        if not cfg.get("registration_shared_secret"):
            raise SynapseError(f"{self.config_path} has no registration_shared_secret")
        for key in RELAXED_LIMITS:
            cfg.pop(key, None)
        if self.relaxed_limits:
            cfg.update(RELAXED_LIMITS)
        cfg.update(self.limits)
        cfg.update(self.extra)
        self._shared_secret = str(cfg["registration_shared_secret"])
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        write_log_config(d / "log.config", self.log_path, self.log_level)

    async def _wait_ready(self) -> None:
        assert self._proc is not None
        await wait_answering(
            self._proc, f"{self.url}/_matrix/client/versions", "Synapse", self.log_tail
        )

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of Synapse's console output and log file, for error messages."""
        parts = []
        for path in (self.console_path, self.log_path):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            if tail:
                parts.append(f"--- {path} (tail) ---\n{tail}")
        return "\n".join(parts) or "(no Synapse output)"

    # --- HTTP -------------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._http

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        token: str | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self._session().request(
            method, f"{self.url}{path}", json=json, headers=headers
        ) as resp:
            try:
                body = await resp.json(content_type=None)
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            if resp.status not in ok:
                errcode = body.get("errcode")
                raise SynapseError(
                    f"{method} {path}: HTTP {resp.status} {errcode or ''} {body.get('error', '')}",
                    status=resp.status,
                    errcode=errcode,
                )
            return resp.status, body

    # --- users ------------------------------------------------------------------------------

    async def register(
        self,
        localpart: str,
        password: str,
        *,
        admin: bool = False,
        displayname: str | None = None,
    ) -> str:
        """Register through the shared-secret admin API; an existing user is not an error."""
        if localpart.startswith("@"):
            localpart = localpart[1:].split(":", 1)[0]
        if self._shared_secret is None:
            raise SynapseError("start() the homeserver before registering users")
        _, got = await self._request("GET", "/_synapse/admin/v1/register")
        nonce = got["nonce"]
        mac = hmac.new(self._shared_secret.encode(), digestmod=hashlib.sha1)
        for part in (nonce, localpart, password):
            mac.update(part.encode())
            mac.update(b"\x00")
        mac.update(b"admin" if admin else b"notadmin")
        body: dict[str, Any] = {
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": mac.hexdigest(),
        }
        if displayname:
            body["displayname"] = displayname
        try:
            _, got = await self._request("POST", "/_synapse/admin/v1/register", json=body)
        except SynapseError as exc:
            if exc.errcode == "M_USER_IN_USE":
                return self.user_id(localpart)
            raise
        return str(got["user_id"])

    async def login(
        self, localpart_or_user_id: str, password: str, device_id: str | None = None
    ) -> str:
        """Password login; returns the access token."""
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": self.user_id(localpart_or_user_id)},
            "password": password,
        }
        if device_id:
            body["device_id"] = device_id
        _, got = await self._request("POST", "/_matrix/client/v3/login", json=body)
        return str(got["access_token"])

    async def exempt_from_ratelimit(self, user_id: str, admin_token: str) -> None:
        """Lift every per-user rate limit for user_id (0/0 means "no limit" to Synapse)."""
        await self._request(
            "POST",
            f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/override_ratelimit",
            json={"messages_per_second": 0, "burst_count": 0},
            token=admin_token,
        )

    async def remove_ratelimit_override(self, user_id: str, admin_token: str) -> None:
        """Hold user_id to the configured limits again (undo ``exempt_from_ratelimit``)."""
        await self._request(
            "DELETE",
            f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/override_ratelimit",
            token=admin_token,
        )

    async def ratelimit_override(self, user_id: str, admin_token: str) -> dict[str, Any]:
        """The user's override as Synapse reports it ({} when there is none)."""
        _, got = await self._request(
            "GET",
            f"/_synapse/admin/v1/users/{quote(user_id, safe='')}/override_ratelimit",
            token=admin_token,
        )
        return got

    async def user_exists(self, user_id: str, admin_token: str) -> bool:
        status, _ = await self._request(
            "GET",
            f"/_synapse/admin/v2/users/{quote(self.user_id(user_id), safe='')}",
            token=admin_token,
            ok=(200, 404),
        )
        return status == 200

    async def set_password(self, user_id: str, password: str, admin_token: str) -> None:
        """Reset a password without logging the user's devices out."""
        await self._request(
            "POST",
            f"/_synapse/admin/v1/reset_password/{quote(self.user_id(user_id), safe='')}",
            json={"new_password": password, "logout_devices": False},
            token=admin_token,
        )


__all__ = ["RELAXED_LIMITS", "Synapse", "SynapseError", "free_port", "port_is_free"]

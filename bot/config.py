"""Configuration: a YAML file validated by pydantic; secrets may come from the environment."""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

MXID_RE = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:\d+)?$")

# Environment variables that override secrets in the file, so the file can be committed.
ENV_PASSWORD = "GRIDBOT_PASSWORD"
ENV_ACCESS_TOKEN = "GRIDBOT_ACCESS_TOKEN"
ENV_DATABASE_URL = "GRIDBOT_DATABASE_URL"
ENV_AS_TOKEN = "GRIDBOT_AS_TOKEN"
ENV_HS_TOKEN = "GRIDBOT_HS_TOKEN"


class ConfigError(Exception):
    """A configuration problem, phrased as one line for the operator."""


def _http_url(v: str) -> str:
    if not re.match(r"^https?://[^/\s]+", v):
        raise ValueError("must be an http:// or https:// URL")
    return v.rstrip("/")


# A setting holding an http(s) URL, kept without its trailing slash.
HttpUrlText = Annotated[str, AfterValidator(_http_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Business domains a notice can be filtered by (handlers/notices/options.py maps them to types).
NOTICE_DOMAINS = ("客运", "货运", "港口", "航运", "渡口", "工程")


class CalendarReminder(_Strict):
    """A special-period reminder the bot sends by itself on a set day (春运, 国庆, 汛期…)."""

    date: date
    hour: int = Field(9, ge=0, le=23)
    kind: Literal["holiday", "weather", "special_period"]
    message: str = Field(min_length=1)
    # Empty = every enterprise; else some of NOTICE_DOMAINS.
    domains: list[str] = Field(default_factory=list)
    # Acknowledgement window; None = safety_reminder_hours.
    within_hours: int | None = Field(None, ge=1)

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        for d in v:
            if d not in NOTICE_DOMAINS:
                raise ValueError(f"unknown domain {d!r} (use {'/'.join(NOTICE_DOMAINS)})")
        return v


class NoticeTiming(_Strict):
    """Default acknowledgement deadlines (hours) per notice kind, and reminder points."""

    requirement_hours: int = Field(72, ge=1)
    accident_case_hours: int = Field(72, ge=1)
    inspection_bulletin_hours: int = Field(72, ge=1)
    safety_reminder_hours: int = Field(24, ge=1)
    # Remind unacknowledged rooms when this fraction of the window has passed.
    remind_at_fractions: list[float] = Field(default_factory=lambda: [0.5, 0.9])
    # After the deadline, tell the responsible level-2 member(s) this many hours after it,
    # then the level-2 chief this many hours after it (both in the level-2 room).
    escalate_member_after_hours: int = Field(0, ge=0)
    escalate_chief_after_hours: int = Field(24, ge=0)
    # Fan-outs to at least this many enterprise rooms report progress (25/50/75/100 %).
    progress_min_rooms: int = Field(20, ge=1)
    # Special-period reminders the bot sends by itself (see docs/notices.md).
    calendar: list[CalendarReminder] = Field(default_factory=list)


class VisitTiming(_Strict):
    reminder_days: list[int] = Field(default_factory=lambda: [20, 25])
    reminder_hour: int = Field(9, ge=0, le=23)
    # Day of the next month (at reminder_hour) on which a month's visit gaps, and in the month
    # after a quarter the meetings not held, are reported up.
    summary_day: int = Field(1, ge=1, le=28)
    # Days in the last month of each quarter on which a level-2 chief with no meeting recorded
    # that quarter is reminded.
    meeting_reminder_days: list[int] = Field(default_factory=lambda: [15])

    @field_validator("reminder_days", "meeting_reminder_days")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        for d in v:
            if not 1 <= d <= 28:
                raise ValueError(f"day {d} is not between 1 and 28")
        return v


class EscalationTiming(_Strict):
    """Response deadlines (working hours) for a request at each level."""

    member_hours: int = Field(24, ge=1)
    level2_hours: int = Field(48, ge=1)
    level1_hours: int = Field(72, ge=1)
    hazard_overdue_remind_hours: int = Field(24, ge=1)
    # Working hours after a hazard's deadline before its overdue rectification goes to the chief.
    hazard_overdue_escalate_hours: int = Field(24, ge=1)


_MONTH_DAY = r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$"


class ReportTiming(_Strict):
    """When reports go out by themselves, and when training obligations are listed."""

    # Local hour of every scheduled report and training list.
    hour: int = Field(9, ge=0, le=23)
    # The month's report in each level-1 room on the first working day of the next month.
    monthly: bool = True
    # The quarter's report in each level-2 room on the first working day after the quarter.
    quarterly: bool = True
    # A draft annual work report in each level-1 room on this day (MM-DD): of that year when
    # the day is in July-December, else of the year before. "" turns it off.
    annual_draft: str = Field("12-20", pattern=r"^$|" + _MONTH_DAY)
    # Level-2 chiefs and members not trained this year are listed to the level-1 office
    # ``training_notice_days`` days before this day (MM-DD). "" turns it off.
    training_by: str = Field("11-30", pattern=r"^$|" + _MONTH_DAY)
    training_notice_days: int = Field(30, ge=0, le=180)
    # Weekday (1 = Monday) on which people who took up a level-2 role without any training
    # on record are listed to the level-1 office (new ones and a reminder of earlier ones).
    newcomer_weekday: int = Field(1, ge=1, le=7)


class Timing(_Strict):
    notices: NoticeTiming = Field(default_factory=NoticeTiming)
    visits: VisitTiming = Field(default_factory=VisitTiming)
    reports: ReportTiming = Field(default_factory=ReportTiming)
    escalation: EscalationTiming = Field(default_factory=EscalationTiming)
    conversation_idle_minutes: int = Field(30, ge=1)
    # Messages failing this long (a room refusing the bot's sends): the admin room is told
    # once, and again when sending recovers (handlers/admin/health.py).
    send_failure_alert_minutes: int = Field(15, ge=1)


class VisitSettings(_Strict):
    """How a visit's shared location is judged (storage.visits.siting)."""

    # A visit whose shared location lies within this many metres of the enterprise's
    # coordinates is 现场 (on site); farther is 异地 (away). Default storage.visits.ONSITE_RADIUS_M.
    onsite_radius_m: int = Field(500, ge=10, le=100_000)


# The parts of a score card (年度考核): each a rate from 0 to 1 of the person's year.
MEMBER_PARTS = ("visits", "notices", "hazards", "requests", "training")
CHIEF_PARTS = ("meetings", "visits", "notices", "hazards", "requests", "training")
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "member": {"visits": 40, "notices": 20, "hazards": 20, "requests": 10, "training": 10},
    "chief": {
        "meetings": 30, "visits": 20, "notices": 15, "hazards": 15, "requests": 10, "training": 10
    },
    "county": {
        "meetings": 15, "visits": 30, "notices": 20, "hazards": 20, "requests": 10, "training": 5
    },
}  # fmt: skip


def _check_weights(v: dict[str, float], parts: tuple[str, ...]) -> dict[str, float]:
    for key, w in v.items():
        if key not in parts:
            raise ValueError(f"unknown part {key!r} (use {'/'.join(parts)})")
        if w < 0:
            raise ValueError(f"weight of {key} is negative")
    if not any(v.values()):
        raise ValueError("at least one weight must be above 0")
    return v


class Assessment(_Strict):
    """Weights of the annual assessment (年度考核). A part with nothing due for a person is
    left out and the other weights count in proportion."""

    # level-2 members (二级网格员), level-2 chiefs (二级网格长), counties side by side
    member: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS["member"]))
    chief: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS["chief"]))
    county: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS["county"]))
    # How many members with the best scores are named candidates for 优秀网格员, and the
    # score a candidate needs at least.
    excellent: int = Field(3, ge=0)
    excellent_min_score: float = Field(90, ge=0, le=100)

    @field_validator("member")
    @classmethod
    def _member(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_weights(v, MEMBER_PARTS)

    @field_validator("chief", "county")
    @classmethod
    def _chief(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_weights(v, CHIEF_PARTS)


class Limits(_Strict):
    """What a person may send, and what a roster file may hold. A post repeats their text in
    plain and HTML form inside one Matrix event (at most 65,536 bytes of JSON), so one text is
    held well below half of that."""

    text_bytes: int = Field(24_000, ge=1_000, le=30_000)
    # Roster files (gridbot roster import), checked before a file is parsed: its size on disk,
    # the unpacked size of an .xlsx (the sum of its zip members' sizes) and the rows it may use.
    roster_file_bytes: int = Field(20_000_000, ge=10_000, le=2_000_000_000)
    roster_unpacked_bytes: int = Field(50_000_000, ge=100_000, le=4_000_000_000)
    roster_rows: int = Field(30_000, ge=10, le=1_000_000)


class SyncSettings(_Strict):
    timeout_ms: int = Field(30000, ge=0)
    timeline_limit: int = Field(10, ge=1, le=100)


class EncryptionSettings(_Strict):
    """End-to-end encryption (matrix-nio's e2e layer on vodozemac). ``encryption: false`` (or
    ``true``) in the file is short for ``enabled``."""

    enabled: bool = True
    # The crypto store (olm account, sessions, room keys): a directory. Empty = beside the
    # database (``<database file>.crypto/`` for SQLite, ``./gridbot-crypto/`` otherwise).
    store_path: str = ""
    # Whose devices get the bot's room keys: ``tofu`` = the devices of roster people and admins,
    # trusted the first time they are seen (strangers' devices are blacklisted); ``all`` = every
    # device in the room.
    trust: Literal["tofu", "all"] = "tofu"
    # How long a message whose room key has not arrived waits before its sender is asked to
    # send it again (a key request goes out at once).
    key_wait_seconds: float = Field(90, ge=1, le=86_400)
    # Provisioned grid rooms are created encrypted (only while encryption is enabled).
    encrypted_rooms: bool = True

    @model_validator(mode="before")
    @classmethod
    def _short(cls, v: object) -> object:
        return {"enabled": v} if isinstance(v, bool) else v


class AppserviceSettings(_Strict):
    """Application-service mode (docs/deploy.md): the homeserver pushes events to the bot's
    HTTP endpoint instead of the bot syncing, and the bot acts with the appservice token,
    which its registration exempts from rate limits. ``gridbot appservice registration``
    writes the registration file for the homeserver from these settings."""

    # The registration's id (unique among the homeserver's application services).
    id: str = Field("gridbot", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    # Where the homeserver reaches the bot (the registration's url).
    url: HttpUrlText = "http://127.0.0.1:9009"
    # Where the bot listens: the address and port of ``url`` unless set.
    bind: str = ""
    port: int = Field(0, ge=0, le=65535)
    # The bot's token for the homeserver, and the homeserver's token for the bot
    # (or GRIDBOT_AS_TOKEN / GRIDBOT_HS_TOKEN). Left empty, the registration command makes them.
    as_token: str = ""
    hs_token: str = ""
    # Bot processes sharing one database listen on the same port (SO_REUSEPORT): any of them
    # stores a transaction, the one holding the inbox lease handles it.
    reuse_port: bool = True

    @property
    def listen(self) -> tuple[str, int]:
        """(address, port) to bind: ``bind``/``port``, else those of ``url``."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        default_port = parts.port or (443 if parts.scheme == "https" else 80)
        return (self.bind or parts.hostname or "127.0.0.1", self.port or default_port)


class Config(_Strict):
    homeserver: HttpUrlText
    user_id: str
    password: str | None = None
    access_token: str | None = None
    device_id: str = "GRIDBOT"
    device_name: str = "GridBot 网格通"
    database_url: str = "sqlite+aiosqlite:///gridbot.db"
    language: Literal["zh_CN", "en"] = "zh_CN"
    timezone: str = "Asia/Shanghai"
    admins: list[str] = Field(default_factory=list)
    roster: str | None = None
    timing: Timing = Field(default_factory=Timing)
    visits: VisitSettings = Field(default_factory=VisitSettings)
    assessment: Assessment = Field(default_factory=Assessment)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    limits: Limits = Field(default_factory=Limits)
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    appservice: AppserviceSettings | None = None
    # How long the inbox lease lasts unless renewed (bot/lease.py): a standby bot process takes
    # over within about this many seconds of the active one dying.
    lease_seconds: float = Field(6.0, ge=1.0, le=300.0)

    @model_validator(mode="before")
    @classmethod
    def _appservice_defaults(cls, v: object) -> object:
        # An application service receives no to-device messages (the olm keys encryption needs)
        # without MSC2409/MSC3202, which are not stable: appservice mode runs unencrypted.
        if isinstance(v, dict) and v.get("appservice") is not None and "encryption" not in v:
            return {**v, "encryption": False}
        return v

    @field_validator("user_id")
    @classmethod
    def _user_id(cls, v: str) -> str:
        if not MXID_RE.match(v):
            raise ValueError(f"{v!r} is not a Matrix user id like @gridbot:example.org")
        return v

    @field_validator("admins")
    @classmethod
    def _admins(cls, v: list[str]) -> list[str]:
        for mxid in v:
            if not MXID_RE.match(mxid):
                raise ValueError(f"{mxid!r} is not a Matrix user id like @name:example.org")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("database_url")
    @classmethod
    def _db(cls, v: str) -> str:
        if not v.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return v

    @model_validator(mode="after")
    def _credentials(self) -> Config:
        if self.appservice is not None:
            if self.encryption.enabled:
                raise ValueError(
                    "encryption is not available in appservice mode (set encryption: false)"
                )
            return self
        if not self.password and not self.access_token:
            raise ValueError(
                f"set password or access_token (or the {ENV_PASSWORD} / {ENV_ACCESS_TOKEN} "
                "environment variables)"
            )
        return self

    @property
    def sender_localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]

    @property
    def server_name(self) -> str:
        return self.user_id.split(":", 1)[1]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def crypto_store(self) -> Path:
        """The crypto store's directory: ``encryption.store_path``, or beside the database."""
        if self.encryption.store_path:
            return Path(self.encryption.store_path)
        prefix = "sqlite+aiosqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url.removeprefix(prefix) + ".crypto")
        return Path("gridbot-crypto")


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "missing":
        msg = "is required but missing"
    elif first["type"] == "extra_forbidden":
        msg = "is not a known setting (see bot.example.yaml)"
    return f"{key}: {msg}" if key != "(top level)" else msg


def parse_config(data: object, source: str = "config") -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must be a mapping of settings")
    data = dict(data)
    # Secrets from the environment win over the file.
    if os.environ.get(ENV_PASSWORD):
        data["password"] = os.environ[ENV_PASSWORD]
    if os.environ.get(ENV_ACCESS_TOKEN):
        data["access_token"] = os.environ[ENV_ACCESS_TOKEN]
    if os.environ.get(ENV_DATABASE_URL):
        data["database_url"] = os.environ[ENV_DATABASE_URL]
    for env, key in ((ENV_AS_TOKEN, "as_token"), (ENV_HS_TOKEN, "hs_token")):
        if os.environ.get(env) and isinstance(data.get("appservice"), dict):
            data["appservice"] = {**data["appservice"], key: os.environ[env]}
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{source}: {_format_error(err)}") from None


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found (copy bot.example.yaml to start)") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}: not valid YAML{where}") from None
    return parse_config(data, str(p))

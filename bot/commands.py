"""Declarative commands: name, aliases, bilingual help, argument spec and access rules.

A handler module decorates its functions with :func:`command`; the decorator only attaches the
spec to the function, and a :class:`Router` collects them with ``router.include(module)``. So
there is no module-level registry and two bots in one process never share commands.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from bot.words import clean

if TYPE_CHECKING:
    from bot.context import CommandContext

# A text in each locale, e.g. {"zh_CN": "查看帮助", "en": "show help"}.
Text = dict[str, str]
Handler = Callable[["CommandContext"], Awaitable[None]]

# Room kinds (storage.models.RoomInfo.kind, plus "direct" detected for 1:1 rooms).
DIRECT = "direct"
L1_ROOM = "l1_room"
L2_ROOM = "l2_room"
ENTERPRISE_ROOM = "enterprise_room"
ADMIN_ROOM = "admin_room"
OTHER_ROOM = "other"
GRID_ROOMS = frozenset({L1_ROOM, L2_ROOM, ENTERPRISE_ROOM, ADMIN_ROOM})
ANY_ROOM: frozenset[str] | None = None

# Who may use a command: None = anyone, even people outside the roster; KNOWN = anyone in the
# roster or a configured admin; otherwise a set of role kinds (storage.directory role groups).
ANYONE: frozenset[str] | None = None
KNOWN = frozenset({"*known*"})

_ATTR = "__gridbot_command__"
_PREFIXES = ("/", "／")


def tr(text: Text, locale: str) -> str:
    return text.get(locale) or text.get("zh_CN") or next(iter(text.values()), "")


class ArgError(ValueError):
    """A bad argument; ``reason`` is shown to the user next to the usage line."""

    def __init__(self, reason: Text) -> None:
        super().__init__(reason.get("en", ""))
        self.reason = reason


@dataclass(frozen=True)
class Arg:
    name: Text
    required: bool = True
    # The last argument may take the rest of the line verbatim (multi-line text included).
    rest: bool = False
    parse: Callable[[str], Any] = str
    key: str = ""

    def usage(self, locale: str) -> str:
        label = tr(self.name, locale) + ("…" if self.rest else "")
        return f"<{label}>" if self.required else f"[{label}]"


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    summary: Text
    aliases: tuple[str, ...] = ()
    args: tuple[Arg, ...] = ()
    details: Text = field(default_factory=dict)
    roles: frozenset[str] | None = ANYONE
    rooms: frozenset[str] | None = ANY_ROOM

    def usage(self, locale: str) -> str:
        parts = [f"/{self.name}", *(a.usage(locale) for a in self.args)]
        return " ".join(parts)

    def allowed_for(self, role_kinds: frozenset[str], known: bool) -> bool:
        if self.roles is None:
            return True
        if self.roles == KNOWN:
            return known
        return bool(self.roles & role_kinds)

    def allowed_in(self, room_kind: str) -> bool:
        return self.rooms is None or room_kind in self.rooms

    def parse_args(self, text: str) -> dict[str, Any]:
        """Split ``text`` by the spec; raises ArgError for a missing or unparsable argument."""
        values: dict[str, Any] = {}
        remaining = text.strip()
        for arg in self.args:
            key = arg.key or tr(arg.name, "en")
            if arg.rest:
                token, remaining = remaining, ""
            else:
                pieces = remaining.split(maxsplit=1)
                token = pieces[0] if pieces else ""
                remaining = pieces[1] if len(pieces) > 1 else ""
            if not token:
                if arg.required:
                    raise ArgError(
                        {
                            "zh_CN": f"缺少参数「{tr(arg.name, 'zh_CN')}」",
                            "en": f"missing argument <{tr(arg.name, 'en')}>",
                        }
                    )
                values[key] = None
                continue
            try:
                values[key] = arg.parse(token)
            except ArgError:
                raise
            except ValueError:
                raise ArgError(
                    {
                        "zh_CN": f"参数「{tr(arg.name, 'zh_CN')}」无效：{token}",
                        "en": f"invalid <{tr(arg.name, 'en')}>: {token}",
                    }
                ) from None
        if remaining:
            raise ArgError({"zh_CN": f"多余的参数：{remaining}", "en": f"unexpected: {remaining}"})
        return values


def command(
    name: str,
    *,
    summary: Text,
    aliases: Iterable[str] = (),
    args: Iterable[Arg] = (),
    details: Text | None = None,
    roles: frozenset[str] | None = ANYONE,
    rooms: frozenset[str] | None = ANY_ROOM,
) -> Callable[[Handler], Handler]:
    """Mark a handler as a chat command (collected later by Router.include)."""

    def mark(fn: Handler) -> Handler:
        spec = Command(
            name=name,
            handler=fn,
            summary=summary,
            aliases=tuple(aliases),
            args=tuple(args),
            details=details or {},
            roles=roles,
            rooms=rooms,
        )
        setattr(fn, _ATTR, spec)
        return fn

    return mark


@dataclass(frozen=True)
class Invocation:
    command: Command | None
    invoked_as: str
    arg_text: str


_REPLY_FALLBACK = re.compile(r"^(> .*\n)+\n", re.MULTILINE)


def strip_reply_fallback(body: str) -> str:
    """Drop the quoted '> <@user> …' lines clients put in front of a reply's body."""
    if body.startswith("> "):
        return _REPLY_FALLBACK.sub("", body, count=1)
    return body


class Router:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self._by_name: dict[str, Command] = {}

    def include(self, module: ModuleType) -> None:
        for obj in vars(module).values():
            spec = getattr(obj, _ATTR, None)
            if isinstance(spec, Command):
                self.add(spec)

    def add(self, spec: Command) -> None:
        if self._commands.get(spec.name) is spec:
            return  # the same command seen again through a module that imports it
        for key in (spec.name, *spec.aliases):
            k = key.lower()
            if k in self._by_name:
                raise ValueError(f"command name {key!r} registered twice")
            self._by_name[k] = spec
        self._commands[spec.name] = spec

    @property
    def commands(self) -> list[Command]:
        return list(self._commands.values())

    def get(self, name: str) -> Command | None:
        return self._by_name.get(name.lstrip("/／").lower())

    def parse(self, body: str) -> Invocation | None:
        """Return the invocation in a message body, or None when it is no command at all."""
        text = strip_reply_fallback(body).lstrip()
        if not text.startswith(_PREFIXES):
            return None
        # The name ends at any space, the full-width one of Chinese input methods included.
        head = text[1:].split(maxsplit=1)[0] if text[1:].strip() else ""
        rest = text[1 + len(head) :].lstrip()
        head = clean(head)  # "／ｈｅｌｐ", "/走访\u200b" are commands too
        if not head or text[1:2].isspace():
            return None
        return Invocation(self._by_name.get(head.lower()), head, rest)

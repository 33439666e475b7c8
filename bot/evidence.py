"""Evidence a member sends from the site during a visit, a hazard or an accident report: photos,
voice notes and documents. What is kept and what is refused (the rules, in one place), and the
facts a message shows about a kept item ("语音 0:42 · 38 KB", "文件 整改方案.pdf · 1.2 MB").

A kept item is a dict, as stored on a visit or a case and relayed with
``bot.outgoing.Attachment.from_media``: ``msgtype`` (m.image, m.audio or m.file), ``url`` (an
``mxc://`` URI, nothing else), ``file`` (only for a file sent in an encrypted room: the encrypted
upload's url, key, iv and sha256 hash, so it can be relayed as it is), ``name`` and ``info``
(``mimetype``, ``size`` in bytes, ``duration`` in ms for a voice note, ``w``/``h`` for a
photo). Photos stay where they were kept before (a visit's ``photos`` list of urls, a case's
``photos``); voice notes and documents go in ``files``, and so do a visit's encrypted photos.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PHOTO, VOICE, DOCUMENT = "photo", "voice", "file"
MSGTYPE = {PHOTO: "m.image", VOICE: "m.audio", DOCUMENT: "m.file"}

# Why a file was not taken (the templates word each one).
NOT_MXC = "not_mxc"  # its url is no content-repository URI (javascript:, https:, a number …)
# (An encrypted file whose key, iv or hash is missing is refused as NOT_MXC too.)
UNSUPPORTED = "unsupported"  # a video, an archive, a program …

# Documents: PDF and Office, by the extension of the name and / or the mimetype. Every fact the
# file states must be on this list, and it must state one: "方案.pdf" sent as
# application/octet-stream is a document, "setup.exe" sent as application/pdf is not.
DOCUMENTS: Mapping[str, frozenset[str]] = {
    ".pdf": frozenset({"application/pdf", "application/x-pdf"}),
    ".doc": frozenset({"application/msword"}),
    ".docx": frozenset({"application/vnd.openxmlformats-officedocument.wordprocessingml.document"}),
    ".xls": frozenset({"application/vnd.ms-excel"}),
    ".xlsx": frozenset({"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}),
    ".ppt": frozenset({"application/vnd.ms-powerpoint"}),
    ".pptx": frozenset(
        {"application/vnd.openxmlformats-officedocument.presentationml.presentation"}
    ),
}
DOCUMENT_TYPES = frozenset(t for types in DOCUMENTS.values() for t in types)
# Mimetypes that say nothing about the content (phones send them for Office files): the
# msgtype (or the name's extension) decides.
VAGUE_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})

# mxc://<server name>/<media id>: server names may carry a port or an IPv6 literal; media ids
# are [A-Za-z0-9_-] by the spec, and unreserved URI characters (".", "~") are let through.
_MXC = re.compile(r"^mxc://[A-Za-z0-9.\-:\[\]]+/[A-Za-z0-9._~\-]+$")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,5}$")
_NAME_LIMIT = 200
# Names are shown up to this many characters ("…" after): a message lists many of them.
SHOWN_NAME = 60


@dataclass(frozen=True)
class Evidence:
    """A file taken as evidence: its kind and the item to store."""

    kind: str  # PHOTO, VOICE or DOCUMENT
    item: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.item["url"])


@dataclass(frozen=True)
class Refused:
    """A file that is not taken, and why (NOT_MXC or UNSUPPORTED)."""

    reason: str


def is_mxc(url: object) -> bool:
    """A content-repository URI (``mxc://server/media-id``), the only url a file may have."""
    return isinstance(url, str) and _MXC.match(url) is not None


def extension(name: str) -> str:
    """'整改方案.PDF' → '.pdf'; '' when the name has none ('Voice message')."""
    m = _EXTENSION.search(name.strip())
    return m.group(0).lower() if m else ""


def kind_of(msgtype: str, mimetype: str, name: str) -> str | None:
    """PHOTO, VOICE or DOCUMENT for a file message, or None when it is not taken.

    Photos: m.image, or any file with an image/* type. Voice notes: m.audio (Element's voice
    messages: audio/ogg), or any file with an audio/* type. Documents: the allow-list above.
    Videos are refused (they are heavy for the grid's phones; a photo or a voice note says it).
    """
    mime = mimetype.split(";", 1)[0].strip().lower()
    vague = mime in VAGUE_TYPES
    if msgtype == "m.video" or mime.startswith("video/"):
        return None
    if mime.startswith("image/") or (vague and msgtype == "m.image"):
        return PHOTO
    if mime.startswith("audio/") or (vague and msgtype == "m.audio"):
        return VOICE
    ext = extension(name)
    if ext and ext not in DOCUMENTS:
        return None
    if vague:
        return DOCUMENT if ext else None
    return DOCUMENT if mime in DOCUMENT_TYPES else None


def _count(value: object) -> int | None:
    """A non-negative whole number from an event's info (sizes, durations, pixels), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if value != value or value < 0 or value > 2**53:  # NaN, negative, absurd
        return None
    return int(value)


def take(media: Mapping[str, Any] | None) -> Evidence | Refused:
    """Read a file message (``Incoming.media``: url, msgtype, name, info) as evidence."""
    media = media or {}
    url = media.get("url")
    if not is_mxc(url):
        return Refused(NOT_MXC)
    info = media.get("info")
    info = info if isinstance(info, Mapping) else {}
    msgtype = str(media.get("msgtype") or "m.file")
    mimetype = info.get("mimetype")
    mimetype = mimetype.strip()[:100] if isinstance(mimetype, str) else ""
    name = media.get("name")
    name = " ".join(name.split())[:_NAME_LIMIT] if isinstance(name, str) else ""
    kind = kind_of(msgtype, mimetype, name)
    if kind is None:
        return Refused(UNSUPPORTED)
    kept: dict[str, Any] = {"mimetype": mimetype} if mimetype else {}
    wanted = {PHOTO: ("size", "w", "h"), VOICE: ("size", "duration"), DOCUMENT: ("size",)}[kind]
    for key in wanted:
        number = _count(info.get(key))
        if number is not None:
            kept[key] = number
    item: dict[str, Any] = {"msgtype": MSGTYPE[kind], "url": url, "name": name or kind}
    item["info"] = kept
    file = media.get("file")
    if file is not None:
        enc = encrypted_file(file)
        if enc is None:
            return Refused(NOT_MXC)
        item["file"] = enc
    return Evidence(kind, item)


def encrypted_file(file: object) -> dict[str, Any] | None:
    """The ``file`` object of a file sent in an encrypted room (url, key, iv, hashes, v), as
    kept and relayed; None when a part is missing."""
    if not isinstance(file, Mapping) or not is_mxc(file.get("url")):
        return None
    key, hashes = file.get("key"), file.get("hashes")
    if not (
        isinstance(key, Mapping)
        and isinstance(key.get("k"), str)
        and isinstance(file.get("iv"), str)
        and isinstance(hashes, Mapping)
        and isinstance(hashes.get("sha256"), str)
    ):
        return None
    return {
        "url": file["url"],
        "key": dict(key),
        "iv": file["iv"],
        "hashes": {"sha256": hashes["sha256"]},
        "v": str(file.get("v") or "v2"),
    }


def is_encrypted(item: Mapping[str, Any]) -> bool:
    """A kept item that is an encrypted file (relayed with its ``file`` object)."""
    return isinstance(item.get("file"), Mapping)


# --- how a kept item is shown ------------------------------------------------------------------


def size_text(size: object) -> str | None:
    """38912 → '38 KB', 1258291 → '1.2 MB', 512 → '512 B'; None when unknown."""
    n = _count(size)
    if n is None:
        return None
    if n < 1024:
        return f"{n} B"
    if n < 1024**2:
        return f"{max(1, round(n / 1024))} KB"
    if n < 1024**3:
        return f"{n / 1024**2:.1f} MB"
    return f"{n / 1024**3:.1f} GB"


def duration_text(ms: object) -> str | None:
    """42000 → '0:42', 65400 → '1:05', 3723000 → '1:02:03'; None when unknown or zero."""
    n = _count(ms)
    if not n:
        return None
    seconds = max(1, round(n / 1000))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class Facts:
    """What a message says about a kept voice note or document: its kind and the details
    after the kind's word ('0:42 · 38 KB', '整改方案.pdf · 1.2 MB')."""

    kind: str
    details: str


def facts(item: Mapping[str, Any]) -> Facts:
    info = item.get("info")
    info = info if isinstance(info, Mapping) else {}
    kind = VOICE if item.get("msgtype") == MSGTYPE[VOICE] else DOCUMENT
    name = str(item.get("name") or "")
    if len(name) > SHOWN_NAME:
        name = name[: SHOWN_NAME - 1] + "…"
    parts = [
        name if kind == DOCUMENT else "",
        (duration_text(info.get("duration")) or "") if kind == VOICE else "",
        size_text(info.get("size")) or "",
    ]
    return Facts(kind, " · ".join(p for p in parts if p))


@dataclass(frozen=True)
class Tally:
    voices: int
    documents: int


def tally(files: Iterable[Mapping[str, Any]]) -> Tally:
    """How many voice notes and documents a ``files`` list holds."""
    kinds = [facts(f).kind for f in files]
    return Tally(kinds.count(VOICE), kinds.count(DOCUMENT))

"""Async helpers for end-to-end tests that talk to the test Synapse through nio clients.

Message helpers read a room like a person reads a chat: each client keeps a per-room backlog of
messages that its syncs brought in, and ``wait_for_message`` moves a cursor past the message it
returns. So two bot replies that arrive in one sync batch can still be awaited one after the
other, and a reply that came before the wait started is not missed.
"""

from __future__ import annotations

import asyncio
import io
import struct
import time
import weakref
import zlib
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from nio import (
    AsyncClient,
    JoinedMembersResponse,
    RoomCreateError,
    RoomMessageNotice,
    RoomMessageText,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
    UploadResponse,
)

Message = RoomMessageText | RoomMessageNotice

# Enough that a test never meets a "limited" timeline (Synapse's default is 10 per room).
SYNC_FILTER = {"room": {"timeline": {"limit": 100}}}
_MAX_POLL_MS = 5000

_backlogs: weakref.WeakKeyDictionary[AsyncClient, dict[str, list[Message]]] = (
    weakref.WeakKeyDictionary()
)
_pending_invites: weakref.WeakKeyDictionary[AsyncClient, list[str]] = weakref.WeakKeyDictionary()


def _backlog(client: AsyncClient, room_id: str) -> list[Message]:
    return _backlogs.setdefault(client, {}).setdefault(room_id, [])


async def sync_once(client: AsyncClient, timeout_ms: int = 0) -> SyncResponse:
    """One sync; new messages go to the client's backlogs, new invites to its invite list."""
    resp = await client.sync(timeout=timeout_ms, sync_filter=SYNC_FILTER)
    if not isinstance(resp, SyncResponse):
        raise RuntimeError(f"sync as {client.user_id} failed: {resp}")
    if client.olm is not None:
        await key_upkeep(client)
    for room_id, info in resp.rooms.join.items():
        backlog = _backlog(client, room_id)
        backlog.extend(e for e in info.timeline.events if isinstance(e, Message))
    invites = _pending_invites.setdefault(client, [])
    invites.extend(r for r in resp.rooms.invite if r not in invites)
    return resp


async def key_upkeep(client: AsyncClient) -> None:
    """What nio's sync_forever does after a sync, for a client with encryption on."""
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    if client.should_claim_keys:
        await client.keys_claim(client.get_users_for_key_claiming())
    await client.send_to_device_messages()


def _remaining_ms(deadline: float) -> int:
    return max(0, min(_MAX_POLL_MS, int((deadline - time.monotonic()) * 1000)))


async def wait_for_message(
    client: AsyncClient,
    room_id: str,
    predicate: Callable[[Message], bool] = lambda _e: True,
    timeout: float = 20,  # noqa: ASYNC109 - a deadline across many syncs, per the test API
) -> Message:
    """The next m.text or m.notice in room_id that satisfies predicate.

    Messages before it in the backlog are skipped (consumed); raises TimeoutError.
    """
    deadline = time.monotonic() + timeout
    while True:
        backlog = _backlog(client, room_id)
        for i, event in enumerate(backlog):
            if predicate(event):
                del backlog[: i + 1]
                return event
        if time.monotonic() >= deadline:
            seen = [f"{e.sender}: {e.body[:80]!r}" for e in backlog[-5:]]
            raise TimeoutError(
                f"no matching message in {room_id} for {client.user_id} within {timeout} s; "
                f"last seen: {seen}"
            )
        await sync_once(client, _remaining_ms(deadline))


async def read_messages(client: AsyncClient, room_id: str, sender: str | None) -> list[Message]:
    """Every message from sender (any sender if None) in room_id that the client has not read
    yet, after one more sync; consumes the room's backlog.

    It does not wait: what has been sent (the send call returned) is in that sync. To count
    what a bot sent, first wait until it is idle (``BotUnderTest.messages_when_idle``).
    """
    resp = await sync_once(client)
    joined = resp.rooms.join.get(room_id)
    if joined is not None and joined.timeline.limited:
        raise RuntimeError(f"more than one sync page of new events in {room_id}: count fewer")
    backlog = _backlog(client, room_id)
    got = [e for e in backlog if sender is None or e.sender == sender]
    backlog.clear()
    return got


async def send_text(client: AsyncClient, room_id: str, body: str, *, notice: bool = False) -> str:
    """Send a plain message; returns its event id."""
    content = {"msgtype": "m.notice" if notice else "m.text", "body": body}
    # (ignore_unverified_devices: a client with encryption on shares its keys like Element does)
    resp = await client.room_send(
        room_id, "m.room.message", content, ignore_unverified_devices=True
    )
    if not isinstance(resp, RoomSendResponse):
        raise RuntimeError(f"send to {room_id} as {client.user_id} failed: {resp}")
    return resp.event_id


async def create_room(
    client: AsyncClient,
    invite: Iterable[str] = (),
    is_direct: bool = False,
    *,
    name: str | None = None,
    preset: RoomPreset = RoomPreset.private_chat,
) -> str:
    resp = await client.room_create(
        invite=list(invite), is_direct=is_direct, name=name, preset=preset
    )
    if isinstance(resp, RoomCreateError):
        raise RuntimeError(f"room_create as {client.user_id} failed: {resp}")
    return resp.room_id


async def wait_for_join(
    client: AsyncClient,
    room_id: str,
    user_id: str,
    timeout: float = 20,  # noqa: ASYNC109 - polling deadline, per the test API
) -> None:
    """Poll the room's joined members (as client, who must be in it) until user_id is one."""
    deadline = time.monotonic() + timeout
    while True:
        resp = await client.joined_members(room_id)
        if isinstance(resp, JoinedMembersResponse) and any(
            m.user_id == user_id for m in resp.members
        ):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{user_id} did not join {room_id} within {timeout} s ({resp})")
        await asyncio.sleep(0.1)


async def wait_for_invite(
    client: AsyncClient,
    timeout: float = 20,  # noqa: ASYNC109 - a deadline across many syncs
) -> str:
    """The id of the next room client is invited to (it is not joined)."""
    deadline = time.monotonic() + timeout
    while True:
        invites = _pending_invites.setdefault(client, [])
        if invites:
            return invites.pop(0)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{client.user_id} got no invite within {timeout} s")
        await sync_once(client, _remaining_ms(deadline))


def png_1x1() -> bytes:
    """A valid 1×1 PNG, built rather than pasted."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


async def send_photo(client: AsyncClient, room: str, name: str = "site.png") -> tuple[str, str]:
    """Upload a tiny PNG and post it as m.image; returns (event id, mxc url)."""
    data = png_1x1()
    upload, _keys = await client.upload(
        io.BytesIO(data), content_type="image/png", filename=name, filesize=len(data)
    )
    assert isinstance(upload, UploadResponse), upload
    content = {
        "msgtype": "m.image",
        "body": name,
        "url": upload.content_uri,
        "info": {"mimetype": "image/png", "size": len(data), "w": 1, "h": 1},
    }
    sent = await client.room_send(room, "m.room.message", content)
    assert isinstance(sent, RoomSendResponse), sent
    return sent.event_id, upload.content_uri


def _ogg_crc(data: bytes) -> int:
    """The CRC-32 of an Ogg page (polynomial 0x04C11DB7, not reflected, initial value 0)."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def _ogg_page(packets: list[bytes], granule: int, seq: int, flags: int) -> bytes:
    lacing = b"".join(bytes([255] * (len(p) // 255) + [len(p) % 255]) for p in packets)
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 0x47524944, seq, 0, len(lacing))
    page = header + lacing + b"".join(packets)
    return page[:22] + struct.pack("<I", _ogg_crc(page)) + page[26:]


def ogg_opus_silence(seconds: int = 3) -> bytes:
    """A valid Ogg Opus file of ``seconds`` of silence (mono, 20 ms frames), as a phone's voice
    note is: the identification and comment headers, then the audio on its own page."""
    pre_skip = 312
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, pre_skip, 48000, 0, 0)
    vendor = b"gridbot-tests"
    tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
    frames = [b"\xf8\xff\xfe"] * (seconds * 50)  # CELT 20 ms silence
    return (
        _ogg_page([head], 0, 0, 0x02)
        + _ogg_page([tags], 0, 1, 0x00)
        + _ogg_page(frames, pre_skip + seconds * 48000, 2, 0x04)
    )


async def send_voice(
    client: AsyncClient, room: str, seconds: int = 3
) -> tuple[str, str, dict[str, Any]]:
    """Upload a short OGG voice note and post it as Element does (m.audio with
    ``info.duration`` in ms and ``org.matrix.msc3245.voice``); returns (event id, mxc url,
    content)."""
    data = ogg_opus_silence(seconds)
    upload, _keys = await client.upload(
        io.BytesIO(data), content_type="audio/ogg", filename="voice.ogg", filesize=len(data)
    )
    assert isinstance(upload, UploadResponse), upload
    duration = seconds * 1000
    content = {
        "msgtype": "m.audio",
        "body": "Voice message",
        "url": upload.content_uri,
        "info": {"mimetype": "audio/ogg", "size": len(data), "duration": duration},
        "org.matrix.msc1767.audio": {"duration": duration, "waveform": [0] * 10},
        "org.matrix.msc3245.voice": {},
    }
    sent = await client.room_send(room, "m.room.message", content)
    assert isinstance(sent, RoomSendResponse), sent
    return sent.event_id, upload.content_uri, content


async def notifications(client: AsyncClient, *, only: str | None = None) -> list[dict[str, Any]]:
    """Everything that notified client's user, newest first, every page
    (``GET /_matrix/client/v3/notifications``; nio has no wrapper): each has the ``event``, its
    ``room_id`` and the push rule's ``actions``. ``only="highlight"`` keeps the highlights."""
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        query = {
            "limit": "100",
            **({"from": token} if token else {}),
            **({"only": only} if only else {}),
        }
        resp = await client.send(
            "GET",
            f"/_matrix/client/v3/notifications?{urlencode(query)}",
            headers={"Authorization": f"Bearer {client.access_token}"},
        )
        body = await resp.json()
        if resp.status != 200:
            raise RuntimeError(f"notifications of {client.user_id}: {resp.status} {body}")
        found.extend(body["notifications"])
        token = body.get("next_token")
        if not token or not body["notifications"]:
            return found


def rings_phone(notification: dict[str, Any]) -> bool:
    """Whether a notification sounds on the phone (the push rule set a sound: a mention, or
    any message in a one-to-one room), rather than only counting as unread."""
    return any(
        isinstance(a, dict) and a.get("set_tweak") == "sound" for a in notification["actions"]
    )

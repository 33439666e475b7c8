"""End-to-end encryption around matrix-nio's olm machine: key upkeep after every sync, late
decryption of what the inbox kept encrypted, key requests, whose devices get the room keys, and
encrypted files (download, check, decrypt; encrypt before upload).

The order that keeps "exactly once": nio handles a sync's to-device events (room keys, olm
sessions) inside ``client.sync()`` and writes them to its crypto store (SQLite, committed per
write) before the call returns; only then does :meth:`bot.syncer.SyncLoop.process` commit the
events and the sync token in one transaction. A crash between the two repeats the sync: the
events come again, the room keys are already stored.

What the inbox keeps: what nio gives. An event nio could decrypt during the sync is stored
decrypted (its plaintext ``type`` and ``content``; the bot's database holds what it handled in
plaintext anyway); an event it could not is stored as the ``m.room.encrypted`` source, as
received, and decrypted when the dispatcher handles it (:meth:`Crypto.decrypt`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from nio import (
    AsyncClient,
    DownloadResponse,
    EncryptionError,
    KeysClaimResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    LocalProtocolError,
    MatrixRoom,
    MegolmEvent,
    RoomGetStateEventResponse,
)
from nio.crypto import decrypt_attachment, encrypt_attachment

log = logging.getLogger(__name__)

ENCRYPTED = "m.room.encrypted"
_NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)

# Whether a user's devices may get the bot's room keys (``encryption.trust: tofu``): roster
# people and admins. Returns True for a known person.
IsKnown = Callable[[str], Awaitable[bool]]


class NoKeyYet(Exception):
    """The room key of this event has not arrived (a key request has been sent)."""


class Unreadable(Exception):
    """The event cannot be decrypted, ever (a bad or replayed message)."""


class BadFile(Exception):
    """An encrypted file that could not be fetched or did not match its hash."""


class Crypto:
    def __init__(self, client: AsyncClient, *, trust: str, is_known: IsKnown) -> None:
        self.client = client
        self.trust = trust
        self.is_known = is_known
        self._requested: set[str] = set()  # session ids a key request went out for
        self._keys_lock = asyncio.Lock()
        self._judged: set[tuple[str, str]] = set()  # (user, device) the trust policy has seen

    @property
    def on(self) -> bool:
        return self.client.olm is not None

    # --- after every sync (what nio's sync_forever does) -----------------------------------------

    async def upkeep(self) -> None:
        """Upload one-time keys, query and claim keys, send queued to-device messages."""
        client = self.client
        if client.olm is None:
            return
        try:
            if client.should_upload_keys:
                resp = await client.keys_upload()
                if not isinstance(resp, KeysUploadResponse):
                    log.warning("keys upload failed: %s", resp)
            await self.query_keys()
            if client.should_claim_keys:
                resp = await client.keys_claim(client.get_users_for_key_claiming())
                if not isinstance(resp, KeysClaimResponse):
                    log.warning("keys claim failed: %s", resp)
            if client.outgoing_to_device_messages:
                await client.send_to_device_messages()
        except _NETWORK_ERRORS as exc:
            log.warning("key upkeep failed (%r); again after the next sync", exc)

    async def query_keys(self) -> None:
        """Query the device keys nio wants (new room members, changed devices) and apply the
        trust policy to what came; one query at a time."""
        client = self.client
        if client.olm is None:
            return
        async with self._keys_lock:
            if client.should_query_keys:
                resp = await client.keys_query()
                if not isinstance(resp, KeysQueryResponse):
                    log.warning("keys query failed: %s", resp)
            await self._apply_trust()

    async def _apply_trust(self) -> None:
        """``tofu``: a roster person's or admin's device is verified the first time the bot sees
        it (nio keeps its keys; a device id that comes back with other keys is refused by nio's
        device store); anyone else's device is blacklisted (it gets no room key from the bot).
        ``all``: nothing to do, the sender shares with every device (unverified included)."""
        client = self.client
        if self.trust != "tofu" or client.olm is None:
            return
        for user_id, devices in list(client.device_store.items()):
            if user_id == client.user_id:
                continue
            new = [d for d in devices.values() if (user_id, d.id) not in self._judged]
            if not new:
                continue
            known = await self.is_known(user_id)
            for device in new:
                self._judged.add((user_id, device.id))
                if device.deleted or client.olm.is_device_blacklisted(device):
                    continue
                if known and not client.olm.is_device_verified(device):
                    client.verify_device(device)
                elif not known and not client.olm.is_device_verified(device):
                    client.blacklist_device(device)

    async def ensure_room(self, room_id: str) -> None:
        """nio (with encryption on) sends only into rooms a sync has shown it; the bot may
        speak first (its welcome right after joining). Such a room is added from its state:
        encrypted or not, as m.room.encryption says; the next sync fills in the rest."""
        client = self.client
        if client.olm is None or room_id in client.rooms:
            return
        resp = await client.room_get_state_event(room_id, "m.room.encryption")
        encrypted = isinstance(resp, RoomGetStateEventResponse) and bool(
            (resp.content or {}).get("algorithm")
        )
        if room_id not in client.rooms:
            client.rooms[room_id] = MatrixRoom(room_id, client.user_id, encrypted)
            if encrypted:
                client.encrypted_rooms.add(room_id)

    async def before_send(self, room_id: str) -> None:
        """Before a message goes into an encrypted room: its members known, their devices
        queried and judged, so the room key reaches everyone it should."""
        client = self.client
        room = client.rooms.get(room_id)
        if client.olm is None or room is None or not room.encrypted:
            return
        if not room.members_synced:
            await client.joined_members(room_id)
        await self.query_keys()

    def encrypted(self, room_id: str) -> bool:
        room = self.client.rooms.get(room_id)
        return bool(self.client.olm is not None and room is not None and room.encrypted)

    # --- reading ---------------------------------------------------------------------------------

    def decrypt(self, room_id: str, source: dict[str, Any]) -> dict[str, Any]:
        """The plaintext source of an ``m.room.encrypted`` event; raises :class:`NoKeyYet` (and
        asks for the key, once per session) or :class:`Unreadable`."""
        client = self.client
        if client.olm is None:
            raise Unreadable("encryption is off")
        event = MegolmEvent.from_dict({**source, "room_id": room_id})
        if not isinstance(event, MegolmEvent):
            raise Unreadable(f"not a megolm event: {type(event).__name__}")
        event.room_id = room_id
        have = client.olm.inbound_group_store.get(room_id, event.sender_key, event.session_id)
        if have is None:
            raise NoKeyYet(event.session_id)
        try:
            plain = client.decrypt_event(event)
        except EncryptionError as exc:
            raise Unreadable(str(exc)) from None
        out = dict(plain.source)
        out.setdefault("event_id", source.get("event_id"))
        out.setdefault("sender", source.get("sender"))
        out.setdefault("origin_server_ts", source.get("origin_server_ts"))
        return out

    async def request_key(self, room_id: str, source: dict[str, Any]) -> None:
        """Ask the sender's devices (and the bot's own) for the room key, once per session."""
        client = self.client
        event = MegolmEvent.from_dict({**source, "room_id": room_id})
        if client.olm is None or not isinstance(event, MegolmEvent):
            return
        event.room_id = room_id
        if event.session_id in self._requested:
            return
        self._requested.add(event.session_id)
        try:
            await client.request_room_key(event)
        except (LocalProtocolError, *_NETWORK_ERRORS) as exc:
            log.info("room key request for %s not sent: %r", event.session_id, exc)

    # --- files -----------------------------------------------------------------------------------

    async def fetch_file(self, file: dict[str, Any]) -> bytes:
        """Download an encrypted file (``content.file``), check its sha256, decrypt it."""
        url = str(file.get("url") or "")
        try:
            key = file["key"]["k"]
            iv = file["iv"]
            sha = file["hashes"]["sha256"]
        except (KeyError, TypeError):
            raise BadFile("the file lacks key, iv or hash") from None
        server, _, media_id = url.removeprefix("mxc://").partition("/")
        try:
            resp = await self.client.download(server_name=server, media_id=media_id)
        except _NETWORK_ERRORS as exc:
            raise BadFile(f"download failed: {exc!r}") from None
        if not isinstance(resp, DownloadResponse):
            raise BadFile(f"download failed: {resp}")
        try:
            # (checks the ciphertext against the sha256 hash first)
            return decrypt_attachment(resp.body, key, sha, iv)
        except EncryptionError as exc:
            raise BadFile(str(exc)) from None


def encrypt_file(data: bytes) -> tuple[bytes, dict[str, Any]]:
    """Ciphertext and the ``file`` object (without ``url``) for an encrypted room."""
    ciphertext, keys = encrypt_attachment(data)
    return ciphertext, dict(keys)

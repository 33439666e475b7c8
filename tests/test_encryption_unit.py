"""Encryption without a homeserver: the settings, encrypted files as evidence and as what the bot
relays, and the outbox preparing a file for an encrypted room."""

from __future__ import annotations

from pathlib import Path

from nio.crypto import decrypt_attachment

from bot import evidence
from bot.config import parse_config
from bot.conversation import incoming
from bot.crypto import encrypt_file
from bot.outgoing import Attachment, Outgoing, content_of
from messages import Messages
from storage import outbox
from storage.db import Database

BASE = {"homeserver": "http://hs", "user_id": "@bot:hs", "password": "pw"}
FILE = {
    "url": "mxc://hs/abc",
    "key": {"k": "a" * 43, "alg": "A256CTR", "ext": True, "kty": "oct", "key_ops": ["decrypt"]},
    "iv": "AAAAAAAAAAAAAAAAAAAAAA",
    "hashes": {"sha256": "b" * 43},
    "v": "v2",
}


def test_encryption_settings_default_on_and_short_forms(tmp_path: Path) -> None:
    config = parse_config({**BASE, "database_url": f"sqlite+aiosqlite:///{tmp_path}/g.db"})
    assert config.encryption.enabled and config.encryption.trust == "tofu"
    assert config.crypto_store == Path(f"{tmp_path}/g.db.crypto")
    assert not parse_config({**BASE, "encryption": False}).encryption.enabled
    custom = parse_config({**BASE, "encryption": {"store_path": "/x", "key_wait_seconds": 5}})
    assert custom.crypto_store == Path("/x") and custom.encryption.key_wait_seconds == 5


def test_an_encrypted_photo_is_taken_with_its_key() -> None:
    content = {
        "msgtype": "m.image",
        "body": "a.png",
        "file": FILE,
        "info": {"mimetype": "image/png"},
    }
    msg = incoming("$e", content)
    assert msg is not None and msg.media is not None
    got = evidence.take(msg.media)
    assert isinstance(got, evidence.Evidence) and got.kind == evidence.PHOTO
    assert got.item["file"]["key"]["k"] == FILE["key"]["k"] and got.url == FILE["url"]
    assert evidence.is_encrypted(got.item)
    keyless = {**content, "file": {k: v for k, v in FILE.items() if k != "key"}}
    refused = evidence.take(incoming("$e", keyless).media)  # type: ignore[union-attr]
    assert isinstance(refused, evidence.Refused)


def test_a_relayed_encrypted_file_goes_as_it_came() -> None:
    item = {"msgtype": "m.image", "url": FILE["url"], "file": FILE, "name": "a.png", "info": {}}
    content = content_of(
        Messages(), Outgoing("!r", None, attachment=Attachment.from_media(item)), "zh_CN"
    )
    assert content["file"] == FILE and "url" not in content


def test_encrypt_file_round_trips() -> None:
    data = b"report bytes" * 100
    ciphertext, keys = encrypt_file(data)
    assert ciphertext != data
    assert (
        decrypt_attachment(ciphertext, keys["key"]["k"], keys["hashes"]["sha256"], keys["iv"])
        == data
    )


async def test_the_outbox_prepares_a_file_per_room_kind(sqlite_db: Database) -> None:
    async with sqlite_db.transaction() as s:
        file = outbox.add_file(s, b"csv", "c.csv", "text/csv")
        msg = outbox.enqueue(s, "!r", {"msgtype": "m.file", "body": "c.csv"}, file=file)
    async with sqlite_db.transaction() as s:
        enc = await outbox.prepare(s, msg, encrypted=True)
        assert enc.upload is not None and enc.upload.encrypted
        await outbox.set_file_encrypted(s, enc.upload.file_id, {**FILE})
        plain = await outbox.prepare(s, msg, encrypted=False)
        assert plain.upload is not None and not plain.upload.encrypted
        ready = await outbox.prepare(s, msg, encrypted=True)
        assert ready.content is not None and ready.content["file"] == FILE
        assert "url" not in ready.content

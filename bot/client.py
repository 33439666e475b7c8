"""The matrix-nio client: built once, logged in once, restored from the database afterwards."""

from __future__ import annotations

import json
import logging

from nio import AsyncClient, AsyncClientConfig, LoginResponse, WhoamiResponse

from bot.config import Config
from storage import sessions
from storage.db import Database

log = logging.getLogger(__name__)


class LoginFailed(Exception):
    pass


def sync_filter(timeline_limit: int) -> dict[str, object]:
    """What the bot syncs: room timelines and lazily loaded members; no presence, no typing."""
    return {
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
        "room": {
            "timeline": {"limit": timeline_limit, "lazy_load_members": True},
            "state": {"lazy_load_members": True},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
    }


class CryptoStoreMismatch(Exception):
    """The crypto store does not hold this device's keys: one line saying what to do."""


def build_client(config: Config, *, encryption: bool = False) -> AsyncClient:
    """The bot's client. Only the running bot passes ``encryption=True`` (with
    ``encryption.enabled``): it alone owns the crypto store; other commands (provisioning,
    benches) log in without one."""
    # 0 = nio gives 429s and connection errors straight back: the sync loop and the sender
    # retry themselves, per room and with their own backoff, instead of blocking inside nio.
    client_config = AsyncClientConfig(
        max_limit_exceeded=0,
        max_timeouts=0,
        store_sync_tokens=False,
        encryption_enabled=encryption,
        request_timeout=max(60, config.sync.timeout_ms // 1000 + 30),
    )
    store_path = ""
    if encryption:
        store = config.crypto_store
        store.mkdir(parents=True, exist_ok=True)
        store_path = str(store)
    return AsyncClient(
        config.homeserver,
        config.user_id,
        device_id=config.device_id,
        store_path=store_path,
        config=client_config,
    )


def _reload_store(client: AsyncClient) -> None:
    """Open the crypto store of ``client.device_id`` (after the device id changed)."""
    if client.store_path and client.config.encryption_enabled:
        client.store = None  # type: ignore[assignment]
        client.olm = None
        client.load_store()


async def check_crypto_store(client: AsyncClient, config: Config) -> None:
    """Does the crypto store hold the keys the homeserver has for this device? A store deleted
    while the login was kept (or one made for another device) would leave the bot unable to
    read or be read in encrypted rooms, silently: say so, once, and stop."""
    if client.olm is None:
        return
    resp = await client.send(
        "POST",
        "/_matrix/client/v3/keys/query",
        data=json.dumps({"device_keys": {client.user_id: [client.device_id]}}),
        headers={
            "Authorization": f"Bearer {client.access_token}",
            "Content-Type": "application/json",
        },
    )
    try:
        body = await resp.json()
    finally:
        resp.release()
    if resp.status != 200:
        log.warning("could not check the crypto store against the homeserver: %s", body)
        return
    device = (body.get("device_keys") or {}).get(client.user_id, {}).get(client.device_id)
    server_key = ((device or {}).get("keys") or {}).get(f"ed25519:{client.device_id}")
    ours = client.olm.account.identity_keys["ed25519"]
    shared = client.olm.account.shared
    if server_key is None and not shared:
        return  # a new device: its keys are uploaded after the first sync
    if server_key == ours and shared:
        return
    store = config.crypto_store / f"{client.user_id}_{client.device_id}.db"
    if server_key is None:
        what = (
            "the homeserver has no keys for device {dev} but the crypto store says it uploaded them"
        )
    elif not shared:
        what = (
            "the crypto store for device {dev} is new, but the homeserver holds this device's "
            "keys: the store was lost (deleted, or the database moved without it)"
        )
    else:
        what = "the crypto store holds other keys than the homeserver has for device {dev}"
    raise CryptoStoreMismatch(
        what.format(dev=client.device_id)
        + f" ({store}); encrypted rooms cannot be read with it. Log in a new device: set "
        "device_id in the configuration to a new name (e.g. GRIDBOT-2) and start again, or "
        "restore the store's directory; to run without encryption set encryption: false"
    )


async def login(client: AsyncClient, config: Config, db: Database) -> None:
    """Restore the stored session, or log in once and store it (so the device id stays).
    In appservice mode the appservice token is the bot's login."""
    if config.appservice is not None:
        await _appservice_login(client, config)
        return
    async with db.transaction() as session:
        stored = await sessions.load(session, config.user_id)
    if config.access_token:
        client.restore_login(
            config.user_id, stored.device_id if stored else config.device_id, config.access_token
        )
        who = await client.whoami()
        if not isinstance(who, WhoamiResponse):
            raise LoginFailed(f"access_token rejected by {config.homeserver}: {who}")
        if who.device_id and who.device_id != client.device_id:
            client.device_id = who.device_id
            _reload_store(client)
    elif stored is not None and stored.device_id != config.device_id and config.password:
        # The configuration names another device (e.g. after a lost crypto store): a new login.
        log.info(
            "device_id %s configured (stored: %s): logging in", config.device_id, stored.device_id
        )
        await _password_login(client, config, config.device_id)
    elif stored is not None:
        client.restore_login(stored.user_id, stored.device_id, stored.access_token)
        who = await client.whoami()
        if not isinstance(who, WhoamiResponse):
            log.warning("stored session no longer valid (%s); logging in again", who)
            await _password_login(client, config, stored.device_id)
    else:
        await _password_login(client, config, config.device_id)
    async with db.transaction() as session:
        await sessions.save_login(session, config.user_id, client.device_id, client.access_token)
    log.info("logged in as %s (device %s)", client.user_id, client.device_id)


async def _appservice_login(client: AsyncClient, config: Config) -> None:
    settings = config.appservice
    assert settings is not None
    if not settings.as_token:
        raise LoginFailed(
            "appservice.as_token is empty: run `gridbot appservice registration` and put the "
            "tokens it prints into the configuration"
        )
    client.restore_login(config.user_id, config.device_id, settings.as_token)
    who = await client.whoami()
    if not isinstance(who, WhoamiResponse):
        raise LoginFailed(
            f"{config.homeserver} refused the appservice token ({who}): is the registration "
            "file in the homeserver's app_service_config_files, and was it restarted since?"
        )
    log.info("acting as %s with the appservice token", client.user_id)


async def _password_login(client: AsyncClient, config: Config, device_id: str) -> None:
    if not config.password:
        raise LoginFailed("no stored session and no password in the configuration")
    if client.device_id != device_id:
        client.device_id = device_id
        client.store = None  # type: ignore[assignment]
        client.olm = None
    resp = await client.login(config.password, device_name=config.device_name)
    if not isinstance(resp, LoginResponse):
        raise LoginFailed(f"login as {config.user_id} failed: {getattr(resp, 'message', resp)}")


async def upload_filter(client: AsyncClient, config: Config, db: Database) -> str | None:
    spec = sync_filter(config.sync.timeline_limit)
    resp = await client.upload_filter(
        presence=spec["presence"],  # type: ignore[arg-type]
        account_data=spec["account_data"],  # type: ignore[arg-type]
        room=spec["room"],  # type: ignore[arg-type]
    )
    filter_id = getattr(resp, "filter_id", None)
    if filter_id is None:
        log.warning("could not upload the sync filter (%s); syncing with an inline filter", resp)
        return None
    async with db.transaction() as session:
        await sessions.save_filter(session, config.user_id, filter_id)
    return filter_id

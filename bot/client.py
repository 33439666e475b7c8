"""The matrix-nio client: built once, logged in once, restored from the database afterwards."""

from __future__ import annotations

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


def build_client(config: Config) -> AsyncClient:
    # 0 = nio gives 429s and connection errors straight back: the sync loop and the sender
    # retry themselves, per room and with their own backoff, instead of blocking inside nio.
    client_config = AsyncClientConfig(
        max_limit_exceeded=0,
        max_timeouts=0,
        store_sync_tokens=False,
        encryption_enabled=False,
        request_timeout=max(60, config.sync.timeout_ms // 1000 + 30),
    )
    return AsyncClient(
        config.homeserver, config.user_id, device_id=config.device_id, config=client_config
    )


async def login(client: AsyncClient, config: Config, db: Database) -> None:
    """Restore the stored session, or log in once and store it (so the device id stays)."""
    async with db.transaction() as session:
        stored = await sessions.load(session, config.user_id)
    if config.access_token:
        client.restore_login(
            config.user_id, stored.device_id if stored else config.device_id, config.access_token
        )
        who = await client.whoami()
        if not isinstance(who, WhoamiResponse):
            raise LoginFailed(f"access_token rejected by {config.homeserver}: {who}")
        client.device_id = who.device_id or client.device_id
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


async def _password_login(client: AsyncClient, config: Config, device_id: str) -> None:
    if not config.password:
        raise LoginFailed("no stored session and no password in the configuration")
    client.device_id = device_id
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

"""What every benchmark shares: the password of its throw-away accounts and a plain nio login."""

from __future__ import annotations

from nio import AsyncClient, AsyncClientConfig, LoginResponse

from bot.sandbox.homeserver import Synapse

PASSWORD = "bench-password"


def client_config() -> AsyncClientConfig:
    # No encryption and no token store: each benchmark client starts fresh.
    return AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)


async def login(hs: Synapse, user_id: str, device: str = "bench") -> AsyncClient:
    """A nio client logged in as ``user_id`` (password PASSWORD); the caller closes it."""
    client = AsyncClient(hs.url, user_id, config=client_config())
    resp = await client.login(PASSWORD, device_name=device)
    if not isinstance(resp, LoginResponse):
        await client.close()
        raise RuntimeError(f"login {user_id}: {resp}")
    return client

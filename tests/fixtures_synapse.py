"""Synapse fixtures: one homeserver for the whole test session, users made on demand.

``synapse``        a started :class:`bot.sandbox.homeserver.Synapse` (relaxed rate limits)
``synapse_default_limits``  another one with Synapse's default rate limits, as a homeserver
                   is set up out of the box (only logins relaxed, for the test's own clients);
                   started only for the tests that ask for it (mark them ``homeserver``)
``synapse_admin``  (user_id, access_token) of an admin user on it
``make_user``      ``await make_user("alice")`` → (user_id, password) of a fresh, unique user
``nio_client``     ``await nio_client(user_id, password)`` → a logged-in nio ``AsyncClient``,
                   closed when the test ends
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nio import AsyncClient, AsyncClientConfig, LoginResponse

from bot.sandbox.homeserver import RELAXED_LIMITS, Synapse

MakeUser = Callable[[str], Awaitable[tuple[str, str]]]
NioClientFactory = Callable[..., Awaitable[AsyncClient]]


@pytest.fixture(scope="session")
async def synapse(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Synapse]:
    server = Synapse(tmp_path_factory.mktemp("synapse"), relaxed_limits=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# Synapse's default limits but for logins: five a minute from one address would hold up a
# test's own clients (and the bot logs in only once).
DEFAULT_LIMITS_BUT_LOGIN: dict[str, object] = {"rc_login": RELAXED_LIMITS["rc_login"]}


@pytest.fixture(scope="session")
async def synapse_default_limits(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Synapse]:
    server = Synapse(
        tmp_path_factory.mktemp("synapse-default-limits"),
        relaxed_limits=False,
        limits=DEFAULT_LIMITS_BUT_LOGIN,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
async def synapse_admin(synapse: Synapse) -> tuple[str, str]:
    password = uuid.uuid4().hex
    user_id = await synapse.register("admin", password, admin=True)
    token = await synapse.login(user_id, password)
    return user_id, token


@pytest.fixture(scope="session")
def make_user(synapse: Synapse) -> MakeUser:
    """Session-scoped so that other session fixtures can make users too."""

    async def make(localpart_prefix: str = "user") -> tuple[str, str]:
        # Unique per call: tests share one homeserver, and users outlive tests.
        localpart = f"{localpart_prefix.lower()}-{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        return await synapse.register(localpart, password, displayname=localpart_prefix), password

    return make


def _client_config() -> AsyncClientConfig:
    # No encryption and no token store: tests drive sync themselves and want fresh state.
    return AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False)


async def login_client(synapse: Synapse, user_id: str, password: str) -> AsyncClient:
    """A nio client logged in as user_id; the caller closes it."""
    client = AsyncClient(synapse.url, user_id, config=_client_config())
    resp = await client.login(password, device_name="pytest")
    if not isinstance(resp, LoginResponse):
        await client.close()
        raise RuntimeError(f"login as {user_id} failed: {resp}")
    return client


@pytest.fixture
async def nio_client(synapse: Synapse) -> AsyncIterator[NioClientFactory]:
    """Factory for logged-in nio clients; every client it made is closed after the test."""
    clients: list[AsyncClient] = []

    async def make(user_id: str, password: str) -> AsyncClient:
        client = await login_client(synapse, user_id, password)
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()

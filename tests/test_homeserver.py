"""The Synapse harness and its fixtures work end to end."""

from __future__ import annotations

from bot.sandbox.homeserver import Synapse
from tests.fixtures_synapse import MakeUser, NioClientFactory
from tests.matrix_helpers import (
    create_room,
    read_messages,
    send_text,
    wait_for_invite,
    wait_for_join,
    wait_for_message,
)


async def test_binds_loopback_only(synapse: Synapse) -> None:
    assert synapse.url.startswith("http://127.0.0.1:")
    assert synapse.running


async def test_two_users_exchange_messages(
    make_user: MakeUser, nio_client: NioClientFactory
) -> None:
    alice_id, alice_pw = await make_user("alice")
    bob_id, bob_pw = await make_user("bob")
    alice = await nio_client(alice_id, alice_pw)
    bob = await nio_client(bob_id, bob_pw)

    room_id = await create_room(alice, invite=[bob_id], is_direct=True)
    assert await wait_for_invite(bob) == room_id
    await bob.join(room_id)
    await wait_for_join(alice, room_id, bob_id, timeout=10)

    await send_text(alice, room_id, "你好 bob")
    got = await wait_for_message(bob, room_id, lambda e: e.sender == alice_id, timeout=10)
    assert got.body == "你好 bob"

    # Two replies in quick succession (one sync batch, likely) are awaited one by one,
    # and an m.notice is seen as well as an m.text.
    await send_text(bob, room_id, "one", notice=True)
    await send_text(bob, room_id, "two")
    first = await wait_for_message(alice, room_id, lambda e: e.sender == bob_id, timeout=10)
    second = await wait_for_message(alice, room_id, lambda e: e.sender == bob_id, timeout=10)
    assert (first.body, second.body) == ("one", "two")

    await send_text(alice, room_id, "three")
    # Sent means stored: the next sync has it, and nothing else from alice.
    bodies = [e.body for e in await read_messages(bob, room_id, alice_id)]
    assert bodies == ["three"]


async def test_register_is_idempotent(synapse: Synapse, synapse_admin: tuple[str, str]) -> None:
    _, admin_token = synapse_admin
    first = await synapse.register("twice", "pw-one")
    again = await synapse.register("twice", "pw-two")
    assert first == again == "@twice:localhost"
    assert await synapse.user_exists(first, admin_token)
    assert not await synapse.user_exists("@nobody-here:localhost", admin_token)
    # The second call changed nothing: the first password still logs in.
    assert await synapse.login("twice", "pw-one")


async def test_exempt_from_ratelimit(
    synapse: Synapse, synapse_admin: tuple[str, str], make_user: MakeUser
) -> None:
    _, admin_token = synapse_admin
    user_id, _ = await make_user("busy")
    assert await synapse.ratelimit_override(user_id, admin_token) == {}
    await synapse.exempt_from_ratelimit(user_id, admin_token)
    assert await synapse.ratelimit_override(user_id, admin_token) == {
        "messages_per_second": 0,
        "burst_count": 0,
    }

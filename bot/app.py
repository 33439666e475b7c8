"""GridBot: wires config, database, client, sync loop, dispatcher and sender together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from nio import AsyncClient

import handlers
from bot import lease as lease_mod
from bot.appservice.feed import AppserviceFeed
from bot.appservice.ping import ping_homeserver
from bot.appservice.receiver import TransactionReceiver
from bot.client import (
    CryptoStoreMismatch,
    build_client,
    check_crypto_store,
    login,
    upload_filter,
)
from bot.commands import DIRECT, Router
from bot.config import Config
from bot.context import Services
from bot.conversation import Conversation, ConversationHook
from bot.crypto import Crypto
from bot.dispatcher import Dispatcher, EventHook
from bot.failures import SendFailures
from bot.provision.worker import ProvisionWorker
from bot.scheduler import Scheduler
from bot.sender import Sender
from bot.syncer import SyncLoop
from handlers.basics.invites import InviteHandler
from messages import Messages
from storage import sessions
from storage.db import Database
from storage.directory import identify
from storage.models import InboxEvent
from storage.outbox import ANSWER_ROOMS, QUEUED_ROOMS

log = logging.getLogger(__name__)

STARTUP_DB_WAIT = 60.0  # seconds


class LeaseLost(Exception):
    """Another process took the inbox lease over (this one stalled past it)."""


class Fatal(Exception):
    """The bot cannot go on; the message says why in one line (``gridbot run`` prints it and
    exits non-zero, and a supervisor restarts it: nothing is lost, see docs/deploy.md)."""


# Each module declares its commands, conversations, scheduled jobs and planners; the app
# collects them (no module-level registries). A module may import another's declarations, so
# each is collected once, by identity.
HANDLER_MODULES: tuple[ModuleType, ...] = handlers.feature_modules()


def build_router() -> Router:
    router = Router()
    for module in HANDLER_MODULES:
        router.include(module)
    return router


def collect_conversations(modules: Iterable[ModuleType] = HANDLER_MODULES) -> list[Conversation]:
    found = {
        id(obj): obj
        for module in modules
        for obj in vars(module).values()
        if isinstance(obj, Conversation)
    }
    return list(found.values())


def event_hooks(modules: Iterable[ModuleType] = HANDLER_MODULES) -> list[EventHook]:
    """The dispatcher's hooks, in order. The modules' EVENT_HOOKS come first: they take only
    replies and reactions to the bot's own notice and case posts, so a 收到 in reply to a notice
    acknowledges it even while its sender is half-way through a conversation. Then the open
    conversations take the sender's next message."""
    modules = tuple(modules)
    hooks: list[EventHook] = list(
        {id(h): h for m in modules for h in getattr(m, "EVENT_HOOKS", ())}.values()
    )
    hooks.append(ConversationHook(collect_conversations(modules)))
    return hooks


class DownloadFailed(Exception):
    """The homeserver did not give the bytes of an mxc:// URI."""


class MatrixDownload:
    """``Services.download``: the bytes of an mxc:// URI, through the bot's client."""

    def __init__(self, client: AsyncClient) -> None:
        self.client = client

    async def __call__(self, mxc: str) -> bytes:
        resp = await self.client.download(mxc=mxc)
        body = getattr(resp, "body", None)
        if not isinstance(body, bytes | bytearray):
            raise DownloadFailed(f"{getattr(resp, 'status_code', '')} {resp}".strip())
        return bytes(body)


class GridBot:
    def __init__(self, config: Config, db: Database | None = None) -> None:
        self.config = config
        self._own_db = db is None
        self.db = db or Database(config.database_url)
        self.services = Services(config=config, messages=Messages(), router=build_router())
        self._stopping = asyncio.Event()
        # Set once logged in and the first sync is stored and handled (tests wait for it).
        self.ready = asyncio.Event()
        self.client: AsyncClient | None = None
        self.crypto: Crypto | None = None
        self.sender: Sender | None = None
        self.dispatcher: Dispatcher | None = None
        self.scheduler: Scheduler | None = None
        self._fatal: str | None = None  # why a worker that must not end ended
        self.holder = lease_mod.holder_name()
        self.lease: lease_mod.Lease | None = None  # held while this process is the active one
        self.receiver: TransactionReceiver | None = None
        self.feed: AppserviceFeed | None = None

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        # A database that is not up yet (the machine is booting) is waited for, a while.
        if not await self.db.wait_available(self._stopping, limit=STARTUP_DB_WAIT):
            if self._stopping.is_set():
                return
            raise Fatal(f"the database did not answer for {STARTUP_DB_WAIT:.0f} s")
        await self.db.upgrade()
        receiver = await self._start_receiver()
        try:
            # One process consumes the inbox; another started on this database waits here as
            # a hot standby (templates loaded, endpoint listening) until the lease is free.
            async with lease_mod.hold(
                self.db,
                self._stopping,
                seconds=self.config.lease_seconds,
                holder=self.holder,
                on_wait=self._standing_by,
            ) as lease:
                if lease is None:
                    return
                self.lease = lease
                log.info("holding the inbox lease (%s): handling events", self.holder)
                await self._run_active(lease)
        finally:
            if receiver is not None:
                await receiver.stop()
            if self._own_db:
                await self.db.close()
            log.info("GridBot stopped")

    async def _start_receiver(self) -> TransactionReceiver | None:
        """Appservice mode: the endpoint the homeserver pushes to, listening whatever the lease
        (a standby stores too; see bot/appservice/receiver.py)."""
        settings = self.config.appservice
        if settings is None:
            return None
        if not settings.hs_token:
            raise Fatal("appservice.hs_token is empty: run `gridbot appservice registration`")
        receiver = self.receiver = TransactionReceiver(
            self.db,
            user_id=self.config.user_id,
            hs_token=settings.hs_token,
            on_stored=self._wake_feed,
            role=lambda: "active" if self.lease is not None else "standby",
        )
        host, port = settings.listen
        try:
            await receiver.start(host, port, reuse_port=settings.reuse_port)
        except OSError as exc:
            raise Fatal(f"cannot listen on {host}:{port} for the homeserver: {exc}") from None
        return receiver

    def _standing_by(self, holder: str | None) -> None:
        log.info("standing by: %s holds the inbox lease; taking over when it lapses", holder)

    def _wake_feed(self) -> None:
        if self.feed is not None:
            self.feed.wake()

    async def _run_active(self, lease: lease_mod.Lease) -> None:
        encryption = self.config.encryption
        client = self.client = build_client(self.config, encryption=encryption.enabled)
        try:
            await login(client, self.config, self.db)
            self.services.download = MatrixDownload(client)
            try:
                await check_crypto_store(client, self.config)
            except CryptoStoreMismatch as exc:
                log.critical("crypto store: %s", exc)
                raise Fatal(f"crypto store: {exc}") from None
            crypto = self.crypto = Crypto(client, trust=encryption.trust, is_known=self._known)
            if client.olm is not None:
                log.info(
                    "encryption on: device %s, ed25519 fingerprint %s, store %s",
                    client.device_id,
                    client.olm.account.identity_keys["ed25519"],
                    self.config.crypto_store,
                )
            failures = SendFailures(self.db, self.services)
            sender = self.sender = Sender(client, self.db, on_failed=failures, crypto=crypto)
            self.dispatcher = Dispatcher(
                self.services,
                self.db,
                bot_user_id=self.config.user_id,
                room_kind_hint=self._room_kind_hint,
                crypto=crypto,
                key_wait_seconds=encryption.key_wait_seconds,
            )
            self.dispatcher.hooks.extend(event_hooks())
            scheduler = self.scheduler = Scheduler(self.db, self.services)
            for module in HANDLER_MODULES:
                scheduler.include(module)
            # Whoever commits messages or jobs, the sender and the scheduler hear of it.
            self.db.after_commit[:] = [self._wake_sender, scheduler.after_commit]
            invites = InviteHandler(client, self.db, self.services)
            source = await self._event_source(client, crypto, invites)
            workers = {
                "sender": sender.run(),
                # Re-provisions rooms when a handler asks (e.g. a confirmed staff change).
                "provision": ProvisionWorker(client, self.db, self.services).run(self._stopping),
                "lease": self._watch_lease(lease),
            }
            if self.config.appservice is not None:
                # Also makes Synapse send at once what it held back while the bot was away.
                workers["ping"] = ping_homeserver(client, self.config.appservice.id)
            tasks = [asyncio.create_task(coro, name=name) for name, coro in workers.items()]
            for task in tasks:
                task.add_done_callback(self._on_worker_done)
            try:
                await scheduler.start()
                await source.run(self._stopping)
            finally:
                await scheduler.stop()
                await sender.stop()
                await failures.settle()  # queued for the next start
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    # An error that ended one was logged by _on_worker_done.
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if self._fatal is not None:
                raise Fatal(self._fatal)
        finally:
            await client.close()

    async def _event_source(
        self, client: AsyncClient, crypto: Crypto, invites: InviteHandler
    ) -> SyncLoop | AppserviceFeed:
        """Where events come from: the homeserver's pushes (appservice) or /sync. Everything
        after the inbox is the same for both."""
        if self.config.appservice is not None:
            self.feed = AppserviceFeed(
                self.db,
                user_id=self.config.user_id,
                handle=self._after_store,
                on_invite=invites,
                on_caught_up=self._caught_up,
            )
            return self.feed
        filter_id = await upload_filter(client, self.config, self.db)
        async with self.db.transaction() as session:
            stored = await sessions.load(session, self.config.user_id)
        assert self.sender is not None
        return SyncLoop(
            client,
            self.db,
            timeout_ms=self.config.sync.timeout_ms,
            filter_id=filter_id,
            token=stored.sync_token if stored else None,
            on_invite=invites,
            on_stored=self._after_store,
            on_recovered=self.sender.resume,
            after_sync=crypto.upkeep,
        )

    async def _watch_lease(self, lease: lease_mod.Lease) -> None:
        """A lease lost (another process took over) ends this one: it must not go on handling."""
        await lease.lost.wait()
        raise LeaseLost("the inbox lease was taken over by another process")

    def _on_worker_done(self, task: asyncio.Task[None]) -> None:
        """The sender and the provisioner run until the bot stops; one that ended of an error
        would leave the bot deaf or mute, so the bot stops (non-zero) and is restarted."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.critical("%s stopped: %r", task.get_name(), exc, exc_info=exc)
        if not self._stopping.is_set():
            self._fatal = f"{task.get_name()} stopped: {exc!r}"
            self._stopping.set()

    def _wake_sender(self, info: dict[str, Any]) -> None:
        rooms = info.get(QUEUED_ROOMS)
        if rooms and self.sender is not None:
            self.sender.wake(rooms, answers=info.get(ANSWER_ROOMS))

    async def _after_store(self, added: list[InboxEvent] | None) -> None:
        """Handle what a sync stored; ``None`` (at start) handles everything still pending."""
        assert self.dispatcher is not None
        if added is None:
            await self.dispatcher.drain()
        else:
            if self.sender is not None:
                # An answer to a message the bot is just sending must find its event id.
                await self.sender.settled({e.room_id for e in added})
            await self.dispatcher.handle_new(added)
        # Encrypted events waiting for their room key: it may have come with this sync.
        await self.dispatcher.retry_waiting()
        if self.client is not None and self.client.next_batch:
            self._caught_up()

    def _caught_up(self) -> None:
        if not self.ready.is_set():
            self.ready.set()
            log.info("GridBot ready: handled what was pending")

    async def _known(self, user_id: str) -> bool:
        """A roster person or an admin (whose devices the bot trusts on first use)."""
        async with self.db.transaction() as session:
            return (await identify(session, user_id, self.services.admins)).known

    def _room_kind_hint(self, room_id: str) -> str | None:
        room = self.client.rooms.get(room_id) if self.client else None
        if room is None:
            return None
        # A room of just the bot and one person is a direct chat, whatever its flags say.
        if room.joined_count + room.invited_count <= 2:
            return DIRECT
        return None


async def run_bot(config: Config) -> None:
    """Run until SIGTERM or Ctrl-C; the batch in hand is finished first."""
    bot = GridBot(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, bot.stop)
    try:
        await bot.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

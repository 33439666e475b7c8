"""Faults on the real Synapse, with the real ``gridbot run`` process (tests/process_harness.py).

- SIGKILL at four points: mid-broadcast, mid-reminder run, mid-conversation, mid-sync batch;
- the homeserver stopped for ``OUTAGE_SECONDS`` (a homeserver of the test's own) while people
  keep sending: answering again within ``ANSWER_WITHIN`` seconds of its return (the one timed
  assertion; the figure is printed);
- PostgreSQL (a private instance) restarted while commands are being handled.

After each, what arrived in the rooms is counted once the bot is idle: every command answered
once, every notice once per room, every reminder once, and the process never exited by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from nio import (
    AsyncClient,
    AsyncClientConfig,
    RoomMessagesResponse,
    RoomSendResponse,
    SyncResponse,
)
from sqlalchemy import func, select, update

from bot.sandbox.homeserver import Synapse
from storage import notices as N
from storage.models import InboxEvent, OutboxMessage, RoomInfo, ScheduledJob
from tests.fixtures_synapse import MakeUser, NioClientFactory, login_client
from tests.matrix_helpers import (
    Message,
    create_room,
    read_messages,
    send_text,
    wait_for_join,
    wait_for_message,
)
from tests.notice_seed import seed_notice_grid
from tests.process_harness import ProcessBot, limit_rate, make_process_bot
from tests.roster_seed import SeedPeople, seed_small_grid, set_room

# The outage: 30 s, long past the old backoff's doubling (1+2+4+8+16 s: a bot sleeping
# it out answered some 30 s late). GRIDBOT_OUTAGE_SECONDS shortens it for a quick local run.
OUTAGE_SECONDS = float(os.environ.get("GRIDBOT_OUTAGE_SECONDS", "30"))
ANSWER_WITHIN = 5.0  # seconds after the homeserver is back (the figure)
# A log line: "2026-03-01 08:00:00.123+08:00 INFO name: text" (Asia/Shanghai, the default zone).
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\+08:00 [A-Z]+ \S+: ")


# --- helpers ------------------------------------------------------------------------------------


def from_bot(bot: ProcessBot, *words: str) -> Callable[[Message], bool]:
    return lambda e: e.sender == bot.user_id and all(w in e.body for w in words)


def reply_to(event: Message) -> str | None:
    content: dict[str, Any] = event.source.get("content", {})
    return (content.get("m.relates_to") or {}).get("m.in_reply_to", {}).get("event_id")


async def poll(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 30) -> Any:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not (got := await check()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        await asyncio.sleep(0.05)
    return got


async def people(
    keys: list[str], make_user: MakeUser, nio_client: NioClientFactory
) -> dict[str, AsyncClient]:
    return {k: await nio_client(*await make_user(k.replace("_", "-"))) for k in keys}


async def room_with(
    creator: AsyncClient,
    bot: ProcessBot,
    members: list[AsyncClient],
    name: str,
    *,
    direct: bool = False,
) -> str:
    room = await create_room(
        creator, invite=[bot.user_id, *(m.user_id for m in members)], is_direct=direct, name=name
    )
    for m in members:
        await m.join(room)
    for user in (bot.user_id, *(m.user_id for m in members)):
        await wait_for_join(creator, room, user, timeout=60)
    return room


async def register(bot: ProcessBot, room: str, kind: str, **ids: int) -> None:
    """Say what the room is for, as provisioning would, once the bot has recorded its join."""

    async def joined() -> bool:
        async with bot.db.transaction() as s:
            info = await s.get(RoomInfo, room)
            return info is not None and info.joined_ts is not None

    await poll(joined, f"the bot to record its join of {room}")
    await set_room(bot.db, room, kind, **ids)


async def notice_messages(bot: ProcessBot, part: str) -> dict[str, int]:
    """How many outbox messages of this part of the notice are in each state."""
    async with bot.db.transaction() as s:
        rows = await s.execute(
            select(OutboxMessage.status, func.count())
            .join(N.NoticeDelivery, N.NoticeDelivery.outbox_id == OutboxMessage.id)
            .where(N.NoticeDelivery.part == part)
            .group_by(OutboxMessage.status)
        )
        return {status: int(n) for status, n in rows.all()}


async def handled(bot: ProcessBot, events: list[str]) -> tuple[int, int]:
    """(stored, handled) of these events in the bot's inbox."""
    async with bot.db.transaction() as s:
        rows = (
            await s.execute(select(InboxEvent.handled_at).where(InboxEvent.event_id.in_(events)))
        ).all()
    return len(rows), sum(1 for (h,) in rows if h is not None)


def check_log(bot: ProcessBot) -> None:
    """Every line of every run is a log line in the configured zone (no traceback, nothing
    from APScheduler's per-run INFO chatter)."""
    assert bot.lines, "the bot logged nothing"
    odd = [line for line in bot.lines if not LOG_LINE.match(line)]
    assert not odd, "lines that are not log lines in +08:00:\n" + "\n".join(odd[:10])
    assert not [line for line in bot.lines if " apscheduler" in line]


# --- SIGKILL at four points ---------------------------------------------------------------------

FREIGHT = ["l1_chief", "l2_chief_f", "member_f", "member_f2", "chief_a", "chief_b", "chief_c"]


async def test_sigkill_mid_broadcast_reminder_conversation_and_sync_batch(
    synapse: Synapse,
    synapse_admin: tuple[str, str],
    make_user: MakeUser,
    nio_client: NioClientFactory,
    tmp_path: Path,
) -> None:
    admin_token = synapse_admin[1]
    c = await people(FREIGHT, make_user, nio_client)
    bot = await make_process_bot(synapse, admin_token, tmp_path)
    grid = await seed_notice_grid(bot.db, {k: v.user_id for k, v in c.items()})
    await bot.start()
    try:
        rooms = {
            "A": await room_with(c["chief_a"], bot, [c["member_f"]], "赣西物流 企业群"),
            "B": await room_with(c["chief_b"], bot, [c["member_f"]], "芦溪通达 企业群"),
            "C": await room_with(c["chief_c"], bot, [c["member_f2"]], "萍乡顺达 企业群"),
            "dm": await room_with(c["l1_chief"], bot, [], "", direct=True),
        }
        for key in "ABC":
            await register(bot, rooms[key], "enterprise_room", enterprise_id=grid.enterprises[key])
        chiefs = {"A": c["chief_a"], "B": c["chief_b"], "C": c["chief_c"]}
        for key, chief in chiefs.items():
            await wait_for_message(chief, rooms[key], from_bot(bot))  # the welcome
        issuer, dm = c["l1_chief"], rooms["dm"]
        await wait_for_message(issuer, dm, from_bot(bot))

        # 1. Mid-broadcast: the bot held to three messages a second, killed once some posts are
        # out and some are not.
        await send_text(issuer, dm, "/群发 货运 --within 24h\n春运安全\n各企业：请落实。")
        await wait_for_message(issuer, dm, from_bot(bot, "请确认"), timeout=30)
        await limit_rate(synapse, bot.user_id, admin_token, 3, 1)
        await send_text(issuer, dm, "确认")

        async def some_posts_out() -> dict[str, int] | None:
            got = await notice_messages(bot, N.PART_POST)
            return got if got.get("sent") and got.get("pending") else None

        at_kill = await bot.kill_when(some_posts_out, "some posts sent, some not")
        print(f"killed mid-broadcast: posts {at_kill}")
        async with bot.db.transaction() as s:
            notice = await s.scalar(select(N.Notice))
            assert notice is not None
            code = notice.code
            # 2. Mid-reminder run: the first reminder falls due while the bot is down; it runs
            # at the start, and the bot is killed again when some reminders are out.
            await s.execute(
                update(ScheduledJob)
                .where(ScheduledJob.key == f"notice:{code}:remind:0")
                .values(due_at=datetime.now(UTC))
            )
        await bot.start()

        async def some_reminders_out() -> dict[str, int] | None:
            got = await notice_messages(bot, N.PART_REMINDER)
            return got if got.get("sent") and got.get("pending") else None

        at_kill = await bot.kill_when(some_reminders_out, "some reminders sent, some not")
        print(f"killed mid-reminder run: reminders {at_kill}")
        await limit_rate(synapse, bot.user_id, admin_token, 0, 0)
        await bot.start()
        await bot.wait_idle(timeout=120)
        for key, chief in chiefs.items():
            got = await read_messages(chief, rooms[key], bot.user_id)
            posts = [e for e in got if f"【部署要求】{code}" in e.body]
            reminders = [e for e in got if e.body.split("：")[0].endswith("提醒")]
            assert (len(posts), len(reminders)) == (1, 1), (key, [e.body[:40] for e in got])
        said = await read_messages(issuer, dm, bot.user_id)
        assert len([e for e in said if e.body.startswith(f"已发出 {code}")]) == 1

        # 3. Mid-conversation: killed as soon as the answer to the first question is in the
        # inbox (handled or not); after the restart it is answered once, and the
        # conversation goes on from there.
        chief_b, room_b = c["chief_b"], rooms["B"]
        await send_text(chief_b, room_b, "/隐患")
        await wait_for_message(chief_b, room_b, from_bot(bot, "隐患是什么"), timeout=30)
        bot.freeze()
        answer = await send_text(chief_b, room_b, "仓库消防通道被货物堵塞")
        bot.thaw()
        await bot.kill_when(lambda: _stored(bot, answer), "the answer in the inbox", timeout=30)
        await bot.start()
        got = await bot.messages_when_idle(chief_b, room_b, events=[answer])
        assert len(got) == 1 and "隐患在哪里" in got[0].body, [e.body[:40] for e in got]
        where = await send_text(chief_b, room_b, "3号仓库东侧")
        got = await bot.messages_when_idle(chief_b, room_b, events=[where])
        assert len(got) == 1 and "隐患类别" in got[0].body, [e.body[:40] for e in got]
        cancel = await send_text(chief_b, room_b, "/取消")
        got = await bot.messages_when_idle(chief_b, room_b, events=[cancel])
        assert len(got) == 1 and "已取消" in got[0].body, [e.body[:40] for e in got]

        # 4. Mid-sync batch: twenty commands reach the bot at once; killed when it has handled
        # some of them and not the others.
        senders = [(c["chief_a"], rooms["A"]), (c["chief_c"], rooms["C"])]
        bot.freeze()
        sent: dict[str, list[str]] = {room: [] for _, room in senders}
        for i in range(20):
            client, room = senders[i % 2]
            sent[room].append(await send_text(client, room, "/whoami"))
        bot.thaw()
        commands = [e for ids in sent.values() for e in ids]

        async def half_handled() -> tuple[int, int] | None:
            stored, done = await handled(bot, commands)
            return (stored, done) if stored == len(commands) and 2 <= done < stored else None

        at_kill = await bot.kill_when(half_handled, "a half-handled batch")
        print(f"killed mid-sync batch: (stored, handled) {at_kill}")
        await bot.start()
        await bot.wait_idle(events=commands, timeout=120)
        for client, room in senders:
            got = await read_messages(client, room, bot.user_id)
            assert sorted(reply_to(e) or "" for e in got) == sorted(sent[room])

        assert await bot.stop() == 0
        check_log(bot)
    finally:
        await bot.kill()
        await bot.db.close()


async def _stored(bot: ProcessBot, event_id: str) -> bool:
    stored, _ = await handled(bot, [event_id])
    return stored == 1


# --- people who keep sending --------------------------------------------------------------------


class Talker:
    """Sends ``/whoami`` again and again, as a phone does: a command that could not be sent
    (the homeserver is away) is retried with the same transaction id until it goes through, so
    it is in the room once. ``sent`` lists (time it went through, event id)."""

    def __init__(self, synapse: Synapse, like: AsyncClient, room: str, every: float) -> None:
        config = AsyncClientConfig(
            max_timeouts=0,  # fail at once when the homeserver is away; we retry ourselves
            max_limit_exceeded=0,
            encryption_enabled=False,
            store_sync_tokens=False,
            request_timeout=5,
        )
        self.client = AsyncClient(synapse.url, like.user_id, config=config)
        self.client.restore_login(like.user_id, like.device_id or "", like.access_token)
        self.room, self.every = room, every
        self.sent: list[tuple[float, str]] = []
        self.failures = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> list[str]:
        """Stop after the command in hand went through; the event ids of all it sent."""
        self._stop.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 120)
        await self.client.close()
        return [e for _, e in self.sent]

    async def _run(self) -> None:
        while not self._stop.is_set():
            txn = f"talker-{uuid.uuid4().hex}"
            while True:
                try:
                    resp = await self.client.room_send(
                        self.room, "m.room.message", {"msgtype": "m.text", "body": "/whoami"}, txn
                    )
                except (aiohttp.ClientError, OSError, TimeoutError):
                    resp = None
                if isinstance(resp, RoomSendResponse):
                    self.sent.append((time.time(), resp.event_id))
                    break
                self.failures += 1
                await asyncio.sleep(0.2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every)


async def answered_once(
    bot: ProcessBot, synapse: Synapse, user: tuple[str, str], room: str, commands: list[str]
) -> list[Message]:
    """Once the bot is idle, a fresh device of ``user`` reads the room: exactly one answer to
    each command. Returns the answers."""
    await bot.wait_idle(events=commands, timeout=120)  # (a busy machine: a backlog to work off)
    reader = await login_client(synapse, *user)
    try:
        got = [e for e in await whole_room(reader, room) if e.sender == bot.user_id]
    finally:
        await reader.close()
    answers = [e for e in got if reply_to(e)]
    assert sorted(reply_to(e) or "" for e in answers) == sorted(commands), "each answered once"
    return answers


async def whole_room(client: AsyncClient, room: str) -> list[Message]:
    """Every message in the room, oldest first (paging back from now to its creation)."""
    resp = await client.sync(timeout=0, sync_filter={"room": {"timeline": {"limit": 1}}})
    assert isinstance(resp, SyncResponse), resp
    token: str | None = resp.rooms.join[room].timeline.prev_batch
    found = [e for e in resp.rooms.join[room].timeline.events if isinstance(e, Message)]
    while token:
        page = await client.room_messages(room, start=token, limit=100)
        assert isinstance(page, RoomMessagesResponse), page
        found[:0] = [e for e in reversed(page.chunk) if isinstance(e, Message)]
        if not page.chunk or page.end in (None, token):
            break
        token = page.end
    return found


# --- the homeserver away for OUTAGE_SECONDS ---------------------------------------------------


def homeserver_like(synapse: Synapse, data_dir: Path) -> Synapse:
    """A second, empty homeserver with the first one's generated config and signing key (so
    no ``--generate-config`` run, seconds on a busy machine); its own port, database, media."""
    data_dir.mkdir(parents=True)
    shutil.copy(synapse.config_path, data_dir / synapse.config_path.name)
    for key in synapse.data_dir.glob("*.signing.key"):
        shutil.copy(key, data_dir / key.name)
    return Synapse(data_dir, server_name=synapse.server_name, relaxed_limits=True)


async def test_homeserver_outage_answering_within_5s_of_its_return(
    synapse: Synapse, tmp_path: Path
) -> None:
    """A homeserver of its own: stopped and started again while people keep sending."""
    hs = homeserver_like(synapse, tmp_path / "hs")
    await hs.start()
    bot: ProcessBot | None = None
    try:
        admin_pw = uuid.uuid4().hex
        admin_token = await hs.login(await hs.register("admin", admin_pw, admin=True), admin_pw)
        users = {k: (await hs.register(k, k + "-pw"), k + "-pw") for k in ("member", "other")}
        bot = await make_process_bot(hs, admin_token, tmp_path)
        member = users["member"]
        await seed_small_grid(
            bot.db,
            SeedPeople(
                l1_chief=users["other"][0],
                l2_chief="@l2:localhost",
                member=member[0],
                ent_chief="@ent:localhost",
            ),
        )
        await bot.start()
        watcher = await login_client(hs, *member)
        try:
            room = await room_with(watcher, bot, [], "", direct=True)
            await wait_for_message(watcher, room, from_bot(bot), timeout=30)  # the welcome
            talker = Talker(hs, watcher, room, every=0.5)
            talker.start()
            await poll(lambda: _at_least(len(talker.sent), 3), "three commands before the outage")

            await hs.stop()
            down = time.monotonic()
            await asyncio.sleep(OUTAGE_SECONDS)
            await hs.start()
            up_wall, outage = time.time(), time.monotonic() - down
            first = await poll(
                lambda: _first_after(talker.sent, up_wall), "a command to go through", 60
            )
            answer = await wait_for_message(
                watcher, room, lambda e: e.sender == bot.user_id and reply_to(e) == first, 60
            )
            # Synapse's own clock says when the answer was sent.
            seconds = answer.server_timestamp / 1000 - up_wall
            print(
                f"homeserver away {outage:.1f} s; the bot answered {seconds:.2f} s after it was "
                f"back ({talker.failures} sends failed meanwhile)"
            )
            assert seconds < ANSWER_WITHIN, (
                f"answered {seconds:.2f} s after the homeserver's return"
            )
            more = len(talker.sent) + 3
            await poll(lambda: _at_least(len(talker.sent), more), "three more commands")
            commands = await talker.stop()
        finally:
            await watcher.close()
        await answered_once(bot, hs, member, room, commands)
        assert bot.alive, "the bot exited"
        assert await bot.stop() == 0
        check_log(bot)
        assert any("syncing again after" in line for line in bot.lines)
    finally:
        if bot is not None:
            await bot.kill()
            await bot.db.close()
        await hs.stop()


async def _at_least(value: int, n: int) -> bool:
    return value >= n


async def _first_after(sent: list[tuple[float, str]], since: float) -> str | None:
    return next((e for t, e in sent if t >= since), None)


# --- PostgreSQL restarted: a private, throw-away server ----------------------------------------


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of this test's own (initdb in a temporary directory, 127.0.0.1, a
    free port), so it can be stopped and restarted without touching the shared one. Run as
    the ``postgres`` user when the tests run as root (PostgreSQL refuses root)."""

    bindir: Path
    home: Path
    port: int
    user: str | None

    @property
    def data(self) -> Path:
        return self.home / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _argv(self, tool: str, *args: str) -> list[str]:
        return [str(self.bindir / tool), *args]

    def ctl_args(self, *args: str) -> list[str]:
        return ["-D", str(self.data), "-l", str(self.home / "log"), *args]

    @property
    def options(self) -> str:
        """The server's settings: its port, loopback only, no durability (a throw-away)."""
        return (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.home}"
            " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )

    def run(self, tool: str, *args: str) -> None:
        """Blocking (fixture setup and teardown)."""
        subprocess.run(
            self._argv(tool, *args), check=True, capture_output=True, user=self.user, timeout=60
        )

    async def ctl(self, *args: str) -> None:
        """``pg_ctl`` without blocking the event loop (the test's senders go on meanwhile)."""
        proc = await asyncio.create_subprocess_exec(
            *self._argv("pg_ctl", *self.ctl_args(*args)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            user=self.user,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 0, out.decode(errors="replace")

    async def start(self) -> None:
        await self.ctl("-w", "-o", self.options, "start")

    async def stop(self) -> None:
        """Fast shutdown: every connection is cut, open transactions roll back."""
        await self.ctl("-w", "-m", "fast", "stop")


def _pg_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parent)
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    bindir = _pg_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        if os.environ.get("GRIDBOT_REQUIRE_PG") == "1":
            raise RuntimeError("initdb/pg_ctl not found (PostgreSQL server binaries)")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    user = "postgres" if os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="gridbot-pg-"))
    if user is not None:
        shutil.chown(home, user)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    pg = PrivatePostgres(bindir, home, port, user)
    try:
        pg.run(
            "initdb",
            "-D",
            str(pg.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        pg.run("pg_ctl", *pg.ctl_args("-w", "-o", pg.options, "start"))
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg.run("pg_ctl", *pg.ctl_args("-w", "-m", "immediate", "stop"))
        shutil.rmtree(home, ignore_errors=True)


async def _in_transaction(pg: PrivatePostgres) -> bool:
    """Whether one of the bot's connections is inside a transaction handling an event (or
    storing a sync batch) right now: not the sender's, the scheduler's or the provisioner's."""
    conn = await asyncpg.connect(host="127.0.0.1", port=pg.port, user="postgres", timeout=5)
    try:
        found = await conn.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE pid <> pg_backend_pid() AND state = 'idle in transaction'
                 AND query NOT ILIKE '%outbox%' AND query NOT ILIKE '%provision%'
                 AND query NOT ILIKE '%scheduled_jobs%'"""
        )
    finally:
        await conn.close()
    return bool(found)


async def test_postgresql_restart_while_commands_are_handled(
    synapse: Synapse,
    synapse_admin: tuple[str, str],
    make_user: MakeUser,
    nio_client: NioClientFactory,
    tmp_path: Path,
    private_pg: PrivatePostgres,
) -> None:
    bot = await make_process_bot(synapse, synapse_admin[1], tmp_path, database_url=private_pg.url())
    users = {k: await make_user(k) for k in ("member", "entchief", "l1chief")}
    await seed_small_grid(
        bot.db,
        SeedPeople(
            l1_chief=users["l1chief"][0],
            l2_chief="@l2-nobody:localhost",
            member=users["member"][0],
            ent_chief=users["entchief"][0],
        ),
    )
    await bot.start()
    try:
        talkers: list[tuple[Talker, str, tuple[str, str]]] = []
        for key in ("member", "entchief"):
            client = await nio_client(*users[key])
            room = await room_with(client, bot, [], "", direct=True)
            await wait_for_message(client, room, from_bot(bot), timeout=30)  # the welcome
            talkers.append((Talker(synapse, client, room, every=0.3), room, users[key]))
        for talker, _, _ in talkers:
            talker.start()
        await poll(lambda: _at_least(sum(len(t.sent) for t, _, _ in talkers), 4), "commands")

        # Cut the database while the bot is inside an event's transaction: frozen at that
        # moment, the server stops under it (a fast shutdown: connections cut), then the bot
        # runs on into a database that is away for two seconds, then back.
        deadline = time.monotonic() + 20
        while True:
            bot.freeze()
            caught = await _in_transaction(private_pg)
            if caught or time.monotonic() > deadline:
                break
            bot.thaw()
            await asyncio.sleep(0.01)
        await private_pg.stop()
        bot.thaw()
        print(f"PostgreSQL stopped {'inside' if caught else 'outside'} an event's transaction")
        await asyncio.sleep(2)
        await private_pg.start()
        # And once more while it works, a plain restart.
        await asyncio.sleep(1)
        await private_pg.ctl("-w", "-m", "fast", "-o", private_pg.options, "restart")
        more = sum(len(t.sent) for t, _, _ in talkers) + 6
        await poll(lambda: _at_least(sum(len(t.sent) for t, _, _ in talkers), more), "more")
        for talker, room, user in talkers:
            commands = await talker.stop()
            await answered_once(bot, synapse, user, room, commands)
        assert caught, "the bot was never caught inside a transaction"
        assert bot.alive, "the bot exited:\n" + "\n".join(bot.lines[-20:])
        assert any("database unavailable" in line for line in bot.lines)
        assert await bot.stop() == 0
        check_log(bot)
    finally:
        await bot.kill()
        await bot.db.close()

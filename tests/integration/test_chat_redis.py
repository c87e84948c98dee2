"""The chat demo in broker mode: several server processes sharing one real Redis form one chat.

Each test module run starts its own ``redis-server`` on a free loopback port (no persistence)
and points the demo at it with ``CHAT_BROKER``. Two topologies:

- ``processes``: two separate ``python -m fastws examples.chat:app`` processes on two ports;
  clients are dealt round-robin over the ports, so they are served by different processes.
- ``workers``: one ``python -m fastws examples.chat:app --workers 4``; every client says which
  worker it got (``welcome.worker``, sent in broker mode), and the test checks they spread.

``redis-server`` comes from Debian's ``redis-server`` package (``.ci/run`` installs it) and the
client from the ``redis`` package (the ``test`` extra). Without them these tests fail, unless
FASTWS_SKIP_REDIS=1 is set, which turns the failure into a skip. FASTWS_TEST_SERVER=uvicorn runs
the servers under uvicorn instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from integration.chat_server import (
    HOST,
    RECV_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    ChatServer,
    Event,
    free_port,
    read_log,
    recv_event,
    recv_until,
    stop_process_group,
)

# Redis back -> chat flowing again: the hub's reconnect delay is capped at 5 s (plus jitter),
# then it resubscribes and resyncs. Generous for a loaded CI machine.
RECOVERY_TIMEOUT_S = 30.0
OUTAGE_S = 2.0  # how long Redis stays down: long enough for the backoff to grow
WORKERS = 4
CLIENTS = 12

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

SKIP_ENV = "FASTWS_SKIP_REDIS"


def require_redis(server: bool = True) -> str:
    """The redis-server binary (when `server`) and the redis package; fail if either is missing,
    or skip instead with FASTWS_SKIP_REDIS=1."""
    binary = shutil.which("redis-server") or ""
    problem = None
    if server and not binary:
        problem = (
            "redis-server not found: install Debian's 'redis-server' package "
            "(apt-get install redis-server; .ci/run does)"
        )
    elif importlib.util.find_spec("redis") is None:
        problem = "the 'redis' package is missing: pip install -e '.[test]' (or 'redis>=5')"
    if problem is not None:
        if os.environ.get(SKIP_ENV) == "1":
            pytest.skip(f"{problem}; skipped because {SKIP_ENV}=1")
        pytest.fail(f"{problem}. Set {SKIP_ENV}=1 to skip these tests instead.", pytrace=False)
    return binary


# --- redis-server ---------------------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server on one loopback port: no RDB, no AOF; restartable on that port."""

    def __init__(self, binary: str, port: int, log_path: Path) -> None:
        self.binary = binary
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        assert self.proc is None, "already running"
        command = [self.binary, "--port", str(self.port), "--bind", HOST]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=self.log_path.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.ping():
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"redis-server exited with {code}:\n{read_log(self.log_path)}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server not answering on {self.port}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.05)

    def ping(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as in a crash; everything it held is gone (nothing was persisted)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc, signal.SIGKILL, 10.0)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc, signal.SIGTERM, 10.0)

    def client(self) -> Any:
        import redis

        return redis.Redis(host=HOST, port=self.port, socket_timeout=5, decode_responses=True)


# --- the chat servers -----------------------------------------------------------------------------


class Cluster:
    """One Redis and the chat servers using it; `ports` are where clients may connect."""

    def __init__(self, topology: str, redis: RedisServer, servers: list[ChatServer]) -> None:
        self.topology = topology
        self.redis = redis
        self.servers = servers

    def url(self, i: int, room: str, name: str) -> str:
        """The i-th client's URL: round-robin over the servers."""
        server = self.servers[i % len(self.servers)]
        return f"{server.ws_url}/ws?room={room}&name={quote(name)}"

    def logs(self) -> str:
        return "\n".join(server.log() for server in self.servers)

    @property
    def expected_workers(self) -> int:
        return sum(server.workers for server in self.servers)


def supervisor_available() -> bool:
    return importlib.util.find_spec("fastws.supervisor") is not None


@pytest.fixture(scope="module", params=["processes", "workers"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    binary = require_redis()
    topology = request.param
    if topology == "workers" and not supervisor_available():
        pytest.skip("--workers needs fastws.supervisor, which this checkout does not have yet")
    tmp = tmp_path_factory.mktemp(f"chat-redis-{topology}")
    redis = RedisServer(binary, free_port(), tmp / "redis.log")
    servers: list[ChatServer] = []
    try:
        redis.start()
        if topology == "processes":
            servers = [
                ChatServer(free_port(), tmp / f"server{i}.log", broker=redis.url) for i in (1, 2)
            ]
        else:
            servers = [
                ChatServer(free_port(), tmp / "server.log", broker=redis.url, workers=WORKERS)
            ]
        for server in servers:
            server.start()
        yield Cluster(topology, redis, servers)
    finally:
        for server in servers:
            server.stop()
        redis.stop()
    logs = "\n".join(server.log() for server in servers)
    assert "Traceback" not in logs, logs


# --- client helpers -------------------------------------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def open_ws(url: str) -> Any:
    """`connect` for these tests: bounded handshakes and closes, and no receive-queue limit, so
    that a client holding unread notices still reads the server's close frame at once (with
    websockets' default of 16 queued frames it stops reading and a close waits its timeout)."""
    return connect(url, open_timeout=10, close_timeout=5, max_queue=None)


def say(text: str) -> str:
    return json.dumps({"type": "message", "text": text})


def presence_is(users: list[str]) -> Callable[[Event], bool]:
    expected = sorted(users)
    return lambda e: e["type"] == "presence" and e["users"] == expected


class Client:
    def __init__(self, ws: ClientConnection, name: str, worker: str) -> None:
        self.ws = ws
        self.name = name
        self.worker = worker


async def join_all(
    cluster: Cluster, room: str, names: list[str], present: list[Client] | None = None
) -> list[Client]:
    """Connect one client per name, dealt round-robin over the servers, and wait until each of
    them, and each client already `present` in the room, has seen a roster listing them all.

    The clients connect all at once: with --workers, the kernel hands a trickle of connections
    to whichever worker is idle, often the same one, while a burst keeps several busy.
    """
    present = present or []
    sockets = await asyncio.gather(*(open_ws(cluster.url(i, room, n)) for i, n in enumerate(names)))
    clients = []
    for ws, name in zip(sockets, names, strict=True):
        welcome = await recv_event(ws)
        assert welcome["type"] == "welcome" and welcome["user"] == name, welcome
        assert welcome["room"] == room
        clients.append(Client(ws, name, welcome["worker"]))
    everyone = [c.name for c in present] + names
    for client in present + clients:
        await recv_until(client.ws, presence_is(everyone))
    return clients


async def join_spread(
    cluster: Cluster, room: str, names: list[str], want_workers: int, max_bursts: int = 5
) -> list[Client]:
    """`join_all`, then more bursts of clients while fewer than `want_workers` workers serve
    the room (at most `max_bursts`; the kernel, not the test, decides who accepts)."""
    clients = await join_all(cluster, room, names)
    for burst in range(max_bursts):
        if len({c.worker for c in clients}) >= want_workers:
            break
        more = [f"extra{burst}-{i}" for i in range(WORKERS * 2)]
        clients += await join_all(cluster, room, more, present=clients)
    return clients


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(c.ws.close() for c in clients), return_exceptions=True)


async def everyone_hears_everyone(clients: list[Client], tag: str) -> None:
    """Each client says one line; each client must receive all of them, and nothing else from
    another room."""
    for client in clients:
        await client.ws.send(say(f"{tag} from {client.name}"))
    expected = {f"{tag} from {c.name}" for c in clients}
    for client in clients:
        got: set[str] = set()
        while got != expected:
            event, _ = await recv_until(client.ws, lambda e: e["type"] == "message")
            assert event["text"] in expected, (client.name, event)
            got.add(event["text"])


def worker_pid(worker: str) -> int:
    """``HOST:PID:RANDOM`` -> PID."""
    return int(worker.split(":")[-2])


# --- tests ----------------------------------------------------------------------------------------


def test_one_room_across_workers(cluster: Cluster) -> None:
    room = f"all-{cluster.topology}"
    # One name outside ASCII: rosters are built in Lua (cjson), messages in Python.
    names = [f"user{i:02d}" for i in range(CLIENTS - 1)] + ['zoë ✓/"q"']

    async def scenario() -> None:
        clients = await join_spread(cluster, room, names, cluster.expected_workers)
        try:
            workers = {c.worker for c in clients}
            print(
                f"\n[{cluster.topology}] {len(clients)} clients in one room, served by "
                f"{len(workers)} of {cluster.expected_workers} workers"
            )
            if cluster.topology == "processes":
                # Round-robin over the ports: one worker id per server, alternating.
                assert len(workers) == len(cluster.servers), workers
                assert clients[0].worker != clients[1].worker
            else:
                # One listening socket shared by the workers; the kernel picks who accepts.
                assert len(workers) >= 2, f"all {len(clients)} clients in one worker: {workers}"
                assert len({worker_pid(w) for w in workers}) == len(workers)
            # Redis agrees on who is online and which worker holds each user.
            with contextlib.closing(cluster.redis.client()) as r:
                owners = r.hgetall(f"chat:users:{room}")
            assert owners == {c.name: c.worker for c in clients}

            await everyone_hears_everyone(clients, "hello")
        finally:
            await close_all(clients)

    run(scenario())


def test_same_name_on_two_workers_gets_a_suffix(cluster: Cluster) -> None:
    room = f"twins-{cluster.topology}"

    async def scenario() -> None:
        first = await open_ws(cluster.url(0, room, "sam"))
        try:
            assert (await recv_event(first))["user"] == "sam"  # claimed before the second asks
            second = await open_ws(cluster.url(1, room, "sam"))
            assert (await recv_event(second))["user"] == "sam-2"
            for ws in (first, second):
                await recv_until(ws, presence_is(["sam", "sam-2"]))
            await second.close()
        finally:
            await first.close()

    run(scenario())


def test_rooms_are_isolated_across_workers(cluster: Cluster) -> None:
    red_room, blue_room = f"red-{cluster.topology}", f"blue-{cluster.topology}"

    async def scenario() -> None:
        red = await join_all(cluster, red_room, [f"r{i}" for i in range(4)])
        blue_names = [f"b{i}" for i in range(4)]
        blue = await join_all(cluster, blue_room, blue_names)

        def from_blue(event: Event) -> bool:
            users = {event.get("user"), *event.get("users", ())}
            return event.get("room") == blue_room or not users.isdisjoint(blue_names)

        try:
            await everyone_hears_everyone(blue, "blue")
            # Every blue line has reached every blue client, so Redis has published them all;
            # each worker gets its channels in publish order, so anything misrouted to red
            # would arrive before this marker.
            await red[0].ws.send(say("red marker"))
            for client in red:
                event, before = await recv_until(client.ws, lambda e: e["type"] == "message")
                assert event["text"] == "red marker" and event["room"] == red_room
                # Late red join/presence notices may still be in flight: a roster is read when
                # it is published, so a full one can overtake the last join notice.
                assert [e for e in before if e["type"] == "message" or from_blue(e)] == []
            await everyone_hears_everyone(red, "red")
        finally:
            await close_all(red + blue)

    run(scenario())


def test_a_leave_is_seen_by_everyone(cluster: Cluster) -> None:
    room = f"leave-{cluster.topology}"
    names = [f"u{i}" for i in range(6)]

    async def scenario() -> None:
        clients = await join_all(cluster, room, names)
        try:
            gone = clients.pop(3)
            await gone.ws.close()
            rest = [c.name for c in clients]
            for client in clients:
                event, _ = await recv_until(client.ws, lambda e: e["type"] == "leave")
                assert event == {"type": "leave", "user": gone.name}
                await recv_until(client.ws, presence_is(rest))
            with contextlib.closing(cluster.redis.client()) as r:
                assert sorted(r.hkeys(f"chat:users:{room}")) == sorted(rest)
        finally:
            await close_all(clients)

    run(scenario())


def test_recovers_after_redis_restart(cluster: Cluster) -> None:
    """Kill Redis (all presence gone with it), bring it back: no worker dies, clients stay
    connected, rosters are rebuilt and messages flow again within a bounded time."""
    room = f"restart-{cluster.topology}"
    names = [f"p{i}" for i in range(8)]

    async def scenario() -> float:
        clients = await join_all(cluster, room, names)
        try:
            cluster.redis.kill()
            killed = time.monotonic()
            # While Redis is gone a sender is told its line was not sent...
            await clients[0].ws.send(say("into the void"))
            event, _ = await recv_until(clients[0].ws, lambda e: e["type"] == "error")
            assert "not sent" in event["error"], event
            # ...and a newcomer is closed with 1013 (try again later); the page retries.
            late = await open_ws(cluster.url(1, room, "late"))
            with pytest.raises(ConnectionClosed) as closed:
                await recv_until(late, lambda e: False)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013

            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))
            cluster.redis.start()
            back = time.monotonic()
            # Each worker resubscribes, writes its users back and republishes the roster; the
            # last roster a client sees lists everyone.
            for client in clients:
                remaining = RECOVERY_TIMEOUT_S - (time.monotonic() - back)
                await recv_until(client.ws, presence_is(names), timeout_s=max(remaining, 0.1))
            recovered_s = time.monotonic() - back
            await everyone_hears_everyone(clients, "again")
            with contextlib.closing(cluster.redis.client()) as r:
                assert r.hgetall(f"chat:users:{room}") == {c.name: c.worker for c in clients}
            # Newcomers are welcome again. With --workers the kernel may hand one to a worker
            # that serves nobody here and is still in its backoff: it answers 1013, and the
            # newcomer tries again, as the page does.
            deadline = time.monotonic() + RECOVERY_TIMEOUT_S
            while True:
                async with open_ws(cluster.url(1, room, "later")) as later:
                    try:
                        welcome = await recv_event(later)
                        break
                    except ConnectionClosed as exc:
                        assert exc.rcvd is not None and exc.rcvd.code == 1013, exc
                assert time.monotonic() < deadline, "newcomers still refused"
                await asyncio.sleep(0.1)
            assert welcome["user"] == "later"
            return recovered_s
        finally:
            await close_all(clients)

    recovered_s = run(scenario())
    print(f"\n[{cluster.topology}] chat recovered {recovered_s:.2f} s after Redis came back")
    # Every worker logged the loss and, maybe later if it has no client here to wait for (the
    # kernel may have given it none), its reconnection.
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while True:
        logs = cluster.logs()
        lost = logs.count("chat broker: lost the connection")
        connected = logs.count("chat broker: connected to")
        if lost >= cluster.expected_workers and connected >= 2 * cluster.expected_workers:
            break
        assert time.monotonic() < deadline, logs
        time.sleep(0.1)
    for server in cluster.servers:
        assert server.proc is not None and server.proc.poll() is None, server.log()


# --- the hub in process: crash reaping and a Redis that is not there yet --------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(require_redis(), free_port(), tmp_path / "redis.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


class Recorder:
    """An ASGI `send` that keeps the JSON of every text frame."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.send":
            self.events.append(json.loads(message["text"]))
            self._changed.set()

    async def wait_for(self, match: Callable[[Event], bool], timeout_s: float) -> Event:
        deadline = time.monotonic() + timeout_s
        while True:
            for event in self.events:
                if match(event):
                    return event
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching event within {timeout_s}s: {self.events}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


def test_make_hub_reads_chat_broker(chat_module: ModuleType) -> None:
    require_redis(server=False)
    assert isinstance(chat_module.make_hub(""), chat_module.LocalHub)
    assert isinstance(chat_module.make_hub("  "), chat_module.LocalHub)
    hub = chat_module.make_hub("redis://:s3cret@127.0.0.1:6379/0")
    assert isinstance(hub, chat_module.RedisHub)
    assert chat_module.redact_url(hub.url) == "redis://:***@127.0.0.1:6379/0"
    with pytest.raises(ValueError, match="redis://") as info:
        chat_module.make_hub("http://user:s3cret@example.invalid/")
    assert "s3cret" not in str(info.value)


def test_crashed_workers_users_are_reaped(
    chat_module: ModuleType, redis_server: RedisServer
) -> None:
    """A worker that stops renewing its lease loses its users: another worker removes them
    from the roster and announces their leave."""
    lease_s = 0.6

    async def scenario() -> None:
        alive = chat_module.RedisHub(redis_server.url, lease_s=lease_s)
        doomed = chat_module.RedisHub(redis_server.url, lease_s=lease_s)
        await alive.start()
        await doomed.start()
        watcher = Recorder()
        me = chat_module.Member(watcher, "watcher")
        me.start()
        await alive.join("r", me)
        for nick in ("ghost", "spook"):
            member = chat_module.Member(Recorder(), nick)
            member.start()
            await doomed.join("r", member)
        assert await alive.presence("r") == ["ghost", "spook", "watcher"]

        # Crash: no unregistering, no more heartbeats, connections just dropped.
        doomed._stopping = True
        for task in (doomed._heartbeat, doomed._reconnect, doomed._reader):
            if task is not None:
                task.cancel()
        await doomed._redis.aclose()
        await doomed._pubsub.aclose()
        crashed = time.monotonic()

        for name in ("ghost", "spook"):
            leave = {"type": "leave", "user": name}
            await watcher.wait_for(lambda e: e == leave, 10)  # noqa: B023 - awaited right here
        await watcher.wait_for(lambda e: e == {"type": "presence", "users": ["watcher"]}, 10)
        elapsed = time.monotonic() - crashed
        # Lease expiry plus at most one heartbeat period, plus scheduling slack.
        assert elapsed < lease_s * 2 + 2, elapsed
        assert await alive.presence("r") == ["watcher"]
        await alive.leave("r", me)
        await me.finish()
        await alive.stop()

    run(scenario())


def test_worker_taken_for_dead_puts_its_users_back(
    chat_module: ModuleType, redis_server: RedisServer
) -> None:
    """A worker whose heartbeat stalled past its lease is reaped by the others; once it beats
    again it notices (SADD answers 1) and re-registers its users."""
    lease_s = 0.6

    async def scenario() -> None:
        alive = chat_module.RedisHub(redis_server.url, lease_s=lease_s)
        stalled = chat_module.RedisHub(redis_server.url, lease_s=lease_s)
        await alive.start()
        await stalled.start()
        watcher = Recorder()
        me = chat_module.Member(watcher, "watcher")
        me.start()
        await alive.join("r", me)
        sleeper = chat_module.Member(Recorder(), "sleeper")
        sleeper.start()
        await stalled.join("r", sleeper)

        stalled._heartbeat.cancel()  # as if its event loop were blocked
        await watcher.wait_for(lambda e: e == {"type": "leave", "user": "sleeper"}, 10)
        assert await alive.presence("r") == ["watcher"]
        watcher.events.clear()
        stalled._heartbeat = asyncio.get_running_loop().create_task(stalled._beat_forever())
        await watcher.wait_for(
            lambda e: e == {"type": "presence", "users": ["sleeper", "watcher"]}, 10
        )
        assert await alive.presence("r") == ["sleeper", "watcher"]
        for hub, member in ((alive, me), (stalled, sleeper)):
            await hub.leave("r", member)
            await member.finish()
            await hub.stop()

    run(scenario())


def test_hub_serves_before_redis_is_up_and_connects_later(
    chat_module: ModuleType, tmp_path: Path
) -> None:
    """No Redis at startup does not fail the worker: joins are refused until it appears."""
    redis = RedisServer(require_redis(), free_port(), tmp_path / "redis.log")

    async def scenario() -> None:
        hub = chat_module.RedisHub(redis.url)
        started = time.monotonic()
        await hub.start()  # returns although nothing listens on the port
        assert time.monotonic() - started < 10
        member = chat_module.Member(Recorder(), "early")
        with pytest.raises(chat_module.HubUnavailable):
            await hub.join("r", member)
        with pytest.raises(chat_module.HubUnavailable):
            await hub.publish("r", {"type": "message", "text": "x"})
        await asyncio.to_thread(redis.start)
        deadline = time.monotonic() + RECOVERY_TIMEOUT_S
        while not hub.connected:
            assert time.monotonic() < deadline, "the hub never connected"
            await asyncio.sleep(0.05)
        recorder = Recorder()
        member = chat_module.Member(recorder, "early")
        member.start()
        assert await hub.join("r", member) == ["early"]
        await hub.publish("r", {"type": "message", "text": "made it"})
        await recorder.wait_for(lambda e: e.get("text") == "made it", RECV_TIMEOUT_S)
        await hub.leave("r", member)
        await member.finish()
        await hub.stop()

    try:
        run(scenario())
    finally:
        redis.stop()

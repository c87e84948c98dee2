"""The chat demo on fastws's Redis bridge: servers sharing one real Redis form one chat.

Each test module run starts its own ``redis-server`` on a free loopback port (no persistence)
and serves the demo with ``--pubsub`` pointing at it, as a user would; the demo itself has no
Redis code (examples/chat.py: the rooms are the server's topics). Two topologies:

- ``processes``: two separate ``python -m fastws examples.chat:app --pubsub redis://...`` on two
  ports (two machines in miniature); clients are dealt round-robin over the ports.
- ``workers``: one ``python -m fastws examples.chat:app --workers 3 --pubsub redis://...``; each
  client learns which process serves it from ``welcome.server``, and the tests check they spread.

Presence crosses servers as each server's share of the room, republished every
PRESENCE_REFRESH_S; names are unique per server only. Redis pub/sub is at-most-once
(docs/pubsub.md): killed mid-test, each server's members go on chatting among themselves, what
crosses servers meanwhile is lost, and everything flows again once it is back.

``redis-server`` comes from Debian's ``redis-server`` package (``.ci/run`` installs it) and the
client from the ``redis`` package (the ``test`` extra). Without them these tests fail, unless
FASTWS_SKIP_REDIS=1 is set, which turns the failure into a skip. Under FASTWS_TEST_SERVER=uvicorn
they are skipped: ``--pubsub`` is fastws's, and on uvicorn the demo is one process (test_chat.py
runs it there). RedisServer and require_redis are also test_pubsub_redis.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from websockets.exceptions import ConnectionClosed

from integration.chat_server import (
    HOST,
    STARTUP_TIMEOUT_S,
    ChatClient,
    ChatServer,
    Event,
    chat_client,
    free_port,
    presence_is,
    read_log,
    server_name,
    stop_process_group,
)

# Redis back -> messages crossing servers again: the bridge's reconnect delay is capped at 5 s
# (with jitter), then it subscribes again. Generous for a loaded CI machine.
RECOVERY_TIMEOUT_S = 30.0
OUTAGE_S = 2.0  # how long Redis stays down: long enough for the backoff to grow
ROSTER_TIMEOUT_S = 15.0  # a newcomer learns other servers' members within one refresh (2 s)
WORKERS = 3
CLIENTS = 9

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
    """One Redis and the chat servers using it; clients are dealt round-robin over them."""

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
    if server_name() != "fastws":
        pytest.skip("--pubsub is fastws's; under uvicorn the chat is one process (test_chat.py)")
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
                ChatServer(free_port(), tmp / f"server{i}.log", pubsub=redis.url) for i in (1, 2)
            ]
        else:
            servers = [
                ChatServer(free_port(), tmp / "server.log", pubsub=redis.url, workers=WORKERS)
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


def say(text: str) -> str:
    import json

    return json.dumps({"type": "message", "text": text})


class Client:
    def __init__(self, chat: ChatClient, name: str, server: str) -> None:
        self.chat = chat
        self.name = name
        self.server = server  # welcome.server: the process serving it


class Clients:
    """Clients opened on a cluster, all closed at the end of the block."""

    def __init__(self, stack: contextlib.AsyncExitStack, cluster: Cluster) -> None:
        self.stack = stack
        self.cluster = cluster

    async def open(self, i: int, room: str, name: str) -> Client:
        chat = await self.stack.enter_async_context(chat_client(self.cluster.url(i, room, name)))
        welcome = await chat.recv()
        assert welcome["type"] == "welcome" and welcome["room"] == room, welcome
        return Client(chat, welcome["user"], welcome["server"])

    async def join_all(
        self, room: str, names: list[str], present: list[Client] | None = None, first: int = 0
    ) -> list[Client]:
        """Connect one client per name, dealt round-robin over the servers from the `first`-th,
        and wait until each of them, and each client already `present` in the room, shows a
        roster listing them all (other servers' members arrive with their next refresh).

        The clients connect all at once: with --workers, the kernel hands a trickle of
        connections to whichever worker is idle, often the same one, while a burst keeps
        several busy.
        """
        present = present or []
        clients = await asyncio.gather(
            *(self.open(first + i, room, n) for i, n in enumerate(names))
        )
        for client, name in zip(clients, names, strict=True):
            assert client.name == name, (client.name, name)
        everyone = [c.name for c in present] + names
        for client in present + list(clients):
            await client.chat.until_roster(everyone, ROSTER_TIMEOUT_S)
        return list(clients)

    async def join_spread(
        self, room: str, names: list[str], want: int, max_bursts: int = 5
    ) -> list[Client]:
        """`join_all`, then more bursts while fewer than `want` processes serve the room (at
        most `max_bursts`; with --workers the kernel, not the test, decides who accepts)."""
        clients = await self.join_all(room, names)
        for burst in range(max_bursts):
            if len({c.server for c in clients}) >= want:
                break
            more = [f"extra{burst}-{i}" for i in range(WORKERS * 2)]
            clients += await self.join_all(room, more, present=clients)
        return clients


@contextlib.asynccontextmanager
async def clients_of(cluster: Cluster) -> AsyncIterator[Clients]:
    async with contextlib.AsyncExitStack() as stack:
        yield Clients(stack, cluster)


async def everyone_hears_everyone(clients: list[Client], tag: str) -> None:
    """Each client says one line; each client must receive all of them, and no other line
    (probes aside), in particular none lost during a Redis outage."""
    for client in clients:
        await client.chat.send(say(f"{tag} from {client.name}"))
    expected = {f"{tag} from {c.name}" for c in clients}
    for client in clients:
        got: set[str] = set()
        while got != expected:
            event, _ = await client.chat.recv_until(lambda e: e["type"] == "message")
            if event["text"].startswith("probe"):
                continue
            assert event["text"] in expected, (client.name, event)
            got.add(event["text"])


async def until_delivered(sender: Client, receiver: Client, timeout_s: float) -> None:
    """Send probes from `sender` until `receiver` (on another server) gets one: its server's
    bridge is subscribed again."""
    deadline = time.monotonic() + timeout_s
    i = 0
    while True:
        assert time.monotonic() < deadline, "no message crossed the servers again"
        await sender.chat.send(say(f"probe{i}"))
        i += 1
        with contextlib.suppress(AssertionError):
            await receiver.chat.recv_until(
                lambda e: e["type"] == "message" and e["text"].startswith("probe"), 0.5
            )
            return


# --- tests ----------------------------------------------------------------------------------------


def test_one_room_across_servers(cluster: Cluster) -> None:
    room = f"all-{cluster.topology}"
    names = [f"user{i:02d}" for i in range(CLIENTS - 1)] + ['zoë ✓/"q"']  # one not ASCII

    async def scenario() -> None:
        async with clients_of(cluster) as pool:
            clients = await pool.join_spread(room, names, cluster.expected_workers)
            servers = {c.server for c in clients}
            print(
                f"\n[{cluster.topology}] {len(clients)} clients in one room, served by "
                f"{len(servers)} of {cluster.expected_workers} processes"
            )
            if cluster.topology == "processes":
                # Round-robin over the ports: one server id per server, alternating.
                assert len(servers) == len(cluster.servers), servers
                assert clients[0].server != clients[1].server
            else:
                # One listening socket shared by the workers; the kernel picks who accepts.
                assert len(servers) >= 2, f"all {len(clients)} clients in one worker: {servers}"
                assert len({s.split(":")[-2] for s in servers}) == len(servers)  # PIDs
            # Each client's roster is made of one share per serving process, each listing
            # exactly the clients that process serves.
            for client in clients:
                shares = client.chat.roster.shares
                assert set(shares) == servers
                for server, users in shares.items():
                    assert users == sorted(c.name for c in clients if c.server == server)
            await everyone_hears_everyone(clients, "hello")

    run(scenario())


def test_names_are_unique_per_server(cluster: Cluster) -> None:
    """The documented limit: a name is unique among one server's members; on two servers two
    members may both be "sam", and the roster lists both."""
    room = f"twins-{cluster.topology}"

    async def scenario() -> None:
        async with clients_of(cluster) as pool:
            first = await pool.open(0, room, "sam")
            assert first.name == "sam"
            second = await pool.open(1, room, "sam")
            if second.server == first.server:  # --workers: the same worker may take both
                assert second.name == "sam-2"
            else:
                assert second.name == "sam"
            both = sorted([first.name, second.name])
            for client in (first, second):
                await client.chat.recv_until(presence_is(both), ROSTER_TIMEOUT_S)
            # A third "sam": a suffix exactly when its server has a "sam" already (on two
            # ports: always, the first server has one; --workers: where the kernel puts it).
            third = await pool.open(0, room, "sam")
            taken = [c.name for c in (first, second) if c.server == third.server]
            assert (third.name == "sam") == (not taken), (third.name, taken)
            assert third.name not in taken
            if cluster.topology == "processes":
                assert third.name == "sam-2"

    run(scenario())


def test_rooms_are_isolated_across_servers(cluster: Cluster) -> None:
    red_room, blue_room = f"red-{cluster.topology}", f"blue-{cluster.topology}"

    async def scenario() -> None:
        async with clients_of(cluster) as pool:
            red = await pool.join_all(red_room, [f"r{i}" for i in range(4)])
            blue_names = [f"b{i}" for i in range(4)]
            blue = await pool.join_all(blue_room, blue_names)

            def from_blue(event: Event) -> bool:
                users = {event.get("user"), *event.get("users", ())}
                return event.get("room") == blue_room or not users.isdisjoint(blue_names)

            await everyone_hears_everyone(blue, "blue")
            # Every blue line has reached every blue client, so Redis has published them all;
            # each process gets its channels in publish order, so anything misrouted to red
            # would arrive before this marker.
            await red[0].chat.send(say("red marker"))
            for client in red:
                event, before = await client.chat.recv_until(lambda e: e["type"] == "message")
                assert event["text"] == "red marker" and event["room"] == red_room
                assert [e for e in before if e["type"] == "message" or from_blue(e)] == []
            await everyone_hears_everyone(red, "red")

    run(scenario())


def test_a_leave_is_seen_by_everyone(cluster: Cluster) -> None:
    room = f"leave-{cluster.topology}"
    names = [f"u{i}" for i in range(6)]

    async def scenario() -> None:
        async with clients_of(cluster) as pool:
            clients = await pool.join_all(room, names)
            gone = clients.pop(3)
            await gone.chat.close()
            rest = [c.name for c in clients]
            for client in clients:
                event, _ = await client.chat.recv_until(lambda e: e["type"] == "leave")
                assert event == {"type": "leave", "user": gone.name}
                await client.chat.recv_until(presence_is(rest))
                if gone.server not in {c.server for c in clients}:  # its last member here
                    assert gone.server not in client.chat.roster.shares

    run(scenario())


# Only with two server processes: one of them is stopped (a supervisor would restart a worker).
@pytest.mark.parametrize("cluster", ["processes"], indirect=True)
def test_a_stopped_server_takes_its_members_along(cluster: Cluster) -> None:
    """A graceful stop closes its WebSockets with 1012; each leave (and, for its last member,
    an empty share) still reaches the other server before its bridge closes."""
    room = "stop-processes"
    names = [f"s{i}" for i in range(6)]

    async def scenario() -> None:
        async with clients_of(cluster) as pool:
            clients = await pool.join_all(room, names)
            doomed = cluster.servers[1]
            stopped_server = {c.server for c in clients[1::2]}
            assert len(stopped_server) == 1
            cluster.servers[1].stop(signal.SIGTERM)
            assert doomed.proc is None
            stayed = clients[0::2]
            for client in clients[1::2]:
                with pytest.raises(ConnectionClosed) as closed:
                    await client.chat.recv_until(lambda e: False)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            for client in stayed:
                left: set[str] = set()
                while left != {c.name for c in clients[1::2]}:
                    event, _ = await client.chat.recv_until(lambda e: e["type"] == "leave")
                    left.add(event["user"])
                await client.chat.recv_until(presence_is([c.name for c in stayed]))
                assert set(client.chat.roster.shares) == {stayed[0].server}

    try:
        run(scenario())
    finally:
        if cluster.servers[1].proc is None:
            cluster.servers[1].start()


def test_redis_restart_local_delivery_goes_on(cluster: Cluster) -> None:
    """Kill Redis (at-most-once, docs/pubsub.md): no server dies, clients stay connected, each
    server's members still chat among themselves and newcomers are welcome; what crosses
    servers meanwhile is lost. Once Redis is back, messages cross again and every roster lists
    everyone again, within a bounded time."""
    room = f"restart-{cluster.topology}"
    names = [f"p{i}" for i in range(8)]

    async def scenario() -> float:
        async with clients_of(cluster) as pool:
            clients = await pool.join_spread(room, names, min(2, cluster.expected_workers))
            speaker = clients[0]
            near = [c for c in clients if c.server == speaker.server]
            far = [c for c in clients if c.server != speaker.server]
            assert far, "every client on one process"
            cluster.redis.kill()
            killed = time.monotonic()
            # Local delivery does not wait on Redis: the speaker's server's members hear it.
            await speaker.chat.send(say("lost elsewhere"))
            for client in near:
                event, _ = await client.chat.recv_until(lambda e: e["type"] == "message")
                assert event["text"] == "lost elsewhere", event
            # A newcomer is welcome and sees its own server's members at once.
            late = await pool.open(0, room, "late")
            await late.chat.recv_until(lambda e: "late" in e.get("users", ()))

            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - killed)))
            cluster.redis.start()
            back = time.monotonic()
            await until_delivered(speaker, far[0], RECOVERY_TIMEOUT_S)
            await until_delivered(far[0], speaker, RECOVERY_TIMEOUT_S)
            everyone = [*clients, late]
            for client in everyone:
                remaining = RECOVERY_TIMEOUT_S - (time.monotonic() - back)
                await client.chat.until_roster([c.name for c in everyone], max(remaining, 0.1))
            recovered_s = time.monotonic() - back
            # "lost elsewhere" never reaches the far side: it would fail this.
            await everyone_hears_everyone(everyone, "again")
            return recovered_s

    recovered_s = run(scenario())
    print(f"\n[{cluster.topology}] chat recovered {recovered_s:.2f} s after Redis came back")
    # Every process's bridge logged the loss and its reconnection (fastws.error warnings).
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while True:
        logs = cluster.logs()
        lost = logs.count("unreachable (")
        again = logs.count("reachable again after")
        if lost >= cluster.expected_workers and again >= cluster.expected_workers:
            break
        assert time.monotonic() < deadline, logs
        time.sleep(0.1)
    assert "at-most-once" in logs
    for server in cluster.servers:
        assert server.proc is not None and server.proc.poll() is None, server.log()

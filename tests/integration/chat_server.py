"""The chat demo (examples/chat.py) as a real server process, and the client helpers, shared by
the chat test modules.

``python -m fastws examples.chat:app --port N`` (FASTWS_TEST_SERVER=uvicorn swaps in uvicorn's
CLI; ``--pubsub redis://...`` is fastws's alone), in its own process group, output to a file,
restartable on the same port. On the client side, `ChatClient` reads the chat as the page does:
the presence shares of every server merged into one roster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 30.0  # a cold interpreter on a loaded 2-core CI box
BRIDGE_UP = "pub/sub: connected to Redis"  # fastws's log line (fastws/ws/pubsub_redis.py)


def server_name() -> str:
    server = os.environ.get("FASTWS_TEST_SERVER", "fastws")
    if server not in ("fastws", "uvicorn"):
        raise ValueError(f"FASTWS_TEST_SERVER must be 'fastws' or 'uvicorn', not {server!r}")
    return server


def server_command(port: int, workers: int = 1, pubsub: str | None = None) -> list[str]:
    """The command a user would type; FASTWS_TEST_SERVER=uvicorn swaps in uvicorn's CLI."""
    command = [sys.executable, "-m", server_name(), "examples.chat:app", "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    if pubsub is not None:
        command += ["--pubsub", pubsub]
    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def stop_process_group(proc: subprocess.Popen[bytes], sig: int, timeout_s: float) -> int:
    """Signal the process group, wait for the exit (SIGKILL after `timeout_s`)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait(timeout=timeout_s)


class ChatServer:
    """The chat app in a server subprocess, in its own process group; restartable on one port.

    Args:
        pubsub: fastws's --pubsub (a redis:// URL), or None: topics in the server process.
        workers: --workers; with `pubsub`, start() also waits until every worker's Redis
            bridge has logged its connection (once per start: counted from the log's end).
    """

    def __init__(
        self, port: int, log_path: Path, *, pubsub: str | None = None, workers: int = 1
    ) -> None:
        self.port = port
        self.log_path = log_path
        self.pubsub = pubsub
        self.workers = workers
        self._log_start = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.port}"

    def log(self) -> str:
        return read_log(self.log_path)

    def _ready(self) -> bool:
        if self.pubsub and self.log()[self._log_start :].count(BRIDGE_UP) < self.workers:
            return False
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def start(self) -> None:
        """Start the server and return once it serves (bounded by STARTUP_TIMEOUT_S)."""
        assert self.proc is None, "already running"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}
        self._log_start = len(self.log())
        # A file, not a pipe: nobody drains a pipe while the test runs, and a full pipe would
        # block the server's logging and with it the server.
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                server_command(self.port, self.workers, self.pubsub),
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches any workers too
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._ready():
            if self.proc.poll() is not None:
                code, self.proc = self.proc.returncode, None
                raise RuntimeError(f"server exited with {code} during startup:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"server on {self.port} not ready after {STARTUP_TIMEOUT_S}s:\n{self.log()}"
                )
            # Poll interval that also notices an early exit at once.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int | None:
        """Signal the process group, wait for the exit (SIGKILL after `timeout_s`)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        return stop_process_group(proc, sig, timeout_s)


@contextlib.contextmanager
def running_chat_server(log_path: Path, **kwargs: object) -> Iterator[ChatServer]:
    server = ChatServer(free_port(), log_path, **kwargs)  # type: ignore[arg-type]
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- client side -----------------------------------------------------------------------------

Event = dict[str, Any]
RECV_TIMEOUT_S = 10.0


async def recv_event(ws: ClientConnection, timeout_s: float = RECV_TIMEOUT_S) -> Event:
    """The next server frame, which must be a JSON object in a text frame."""
    frame = await asyncio.wait_for(ws.recv(), timeout_s)
    assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
    event = json.loads(frame)
    assert isinstance(event, dict)
    return event


class Roster:
    """The page's "Online" list: the union of the latest presence share of each server
    (examples/chat.py, "Presence across servers"). Ignores ``ttl``: the page's expiry is the
    browser test's."""

    def __init__(self) -> None:
        self.shares: dict[str, list[str]] = {}

    def feed(self, event: Event) -> None:
        assert set(event) == {"type", "server", "users", "ttl"}, event
        assert isinstance(event["server"], str) and event["ttl"] > 0, event
        assert event["users"] == sorted(event["users"]), event
        if event["users"]:
            self.shares[event["server"]] = event["users"]
        else:
            self.shares.pop(event["server"], None)

    def users(self) -> list[str]:
        return sorted(u for share in self.shares.values() for u in share)


class ChatClient:
    """A real WebSocket client that reads the chat as the page shows it.

    `recv` returns the server's events, except that a ``presence`` share is merged into
    `roster` and returned as ``{"type": "presence", "users": [...]}``, the merged list, and
    only when that list changed (a refresh repeats what is known). Every share received is
    kept in `shares`, raw.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.roster = Roster()
        self.shares: list[Event] = []
        self.welcome: Event | None = None

    async def recv(self, timeout_s: float = RECV_TIMEOUT_S) -> Event:
        deadline = time.monotonic() + timeout_s
        while True:
            event = await recv_event(self.ws, max(deadline - time.monotonic(), 0.001))
            if event["type"] == "welcome":
                self.welcome = event
                self.roster = Roster()
                return event
            if event["type"] != "presence":
                return event
            self.shares.append(event)
            before = self.roster.users()
            self.roster.feed(event)
            if self.roster.users() != before:
                return {"type": "presence", "users": self.roster.users()}

    async def recv_until(
        self, match: Callable[[Event], bool], timeout_s: float = RECV_TIMEOUT_S
    ) -> tuple[Event, list[Event]]:
        """Read until an event matches. Returns it and the events read before it."""
        deadline = time.monotonic() + timeout_s
        skipped: list[Event] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"no matching event within {timeout_s}s; got {skipped}, "
                    f"roster {self.roster.users()}"
                )
            try:
                event = await self.recv(remaining)
            except TimeoutError:
                continue  # the loop reports it, with what came
            if match(event):
                return event, skipped
            skipped.append(event)

    async def until_roster(self, users: list[str], timeout_s: float = RECV_TIMEOUT_S) -> None:
        """Return once the roster lists `users` (at once if it does already), reading on."""
        if self.roster.users() != sorted(users):
            await self.recv_until(presence_is(users), timeout_s)

    async def send(self, text: str | bytes) -> None:
        await self.ws.send(text)

    async def close(self) -> None:
        await self.ws.close()


def presence_is(users: list[str]) -> Callable[[Event], bool]:
    expected = sorted(users)
    return lambda e: e["type"] == "presence" and e["users"] == expected


@contextlib.asynccontextmanager
async def chat_client(url: str, **kwargs: Any) -> AsyncIterator[ChatClient]:
    """`ChatClient` over websockets' ``connect``: bounded handshake and close; no receive-queue
    limit, so that a client holding unread notices still reads the server's close frame at once
    (with websockets' default of 16 queued frames it stops reading and a close waits)."""
    options: dict[str, Any] = {"open_timeout": 10, "close_timeout": 5, "max_queue": None}
    async with connect(url, **{**options, **kwargs}) as ws:
        yield ChatClient(ws)

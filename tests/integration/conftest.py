"""Helpers for the integration suites: a raw loopback connection that speaks HTTP/1.1 and
hand-built WebSocket frames, a cross-thread event recorder, and a server subprocess.

The frame builder and reader here are written from RFC 6455 §5.2 directly and share no code
with fastws, so a codec bug cannot hide behind the same bug in the test client.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# Same reading as tests/conftest.py (a conftest cannot be imported reliably by its siblings).
SERVER_IMPL = os.environ.get("FASTWS_TEST_SERVER", "fastws").strip().lower() or "fastws"
IS_FASTWS = SERVER_IMPL == "fastws"
IS_UVICORN = SERVER_IMPL == "uvicorn"
HOST = "127.0.0.1"

REPO_ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------------------------
# small async utilities
# --------------------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], bool],
    timeout_s: float = 5.0,
    what: str | Callable[[], str] | None = None,
) -> None:
    """Poll ``predicate`` every 50 ms; fail after ``timeout_s`` saying ``what`` (or what it
    returns, e.g. the server's output at that moment; by default the predicate itself)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            said = what() if callable(what) else (what or predicate)
            raise AssertionError(f"not true after {timeout_s} s: {said}")
        time.sleep(0.05)


async def within(awaitable: Any, timeout_s: float = 5.0) -> Any:
    """``await`` with a deadline (asyncio.timeout is 3.11+; the package supports 3.10)."""
    return await asyncio.wait_for(awaitable, timeout_s)


class Recorder:
    """Append-only log shared between an app (server thread) and a test (test thread).

    ``list.append`` is atomic under the GIL; waiting polls, which works across event loops.
    """

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> None:
        self.items.append(item)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.items))

    def __len__(self) -> int:
        return len(self.items)

    async def wait_for(self, predicate: Callable[[Any], bool], timeout_s: float = 5.0) -> Any:
        """First recorded item matching ``predicate``, waiting up to ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for item in list(self.items):
                if predicate(item):
                    return item
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"nothing matching after {timeout_s} s; recorded: {self.items!r}"
                )
            await asyncio.sleep(0.005)

    async def wait_len(self, n: int, timeout_s: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while len(self.items) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(self.items)} of {n} items after {timeout_s} s: {self.items!r}"
                )
            await asyncio.sleep(0.005)
        return list(self.items)


# --------------------------------------------------------------------------------------------
# raw HTTP/1.1
# --------------------------------------------------------------------------------------------


@dataclass
class RawResponse:
    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]  # names lowercased, in order
    body: bytes = b""
    head: bytes = b""  # status line and headers, as received

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name.lower()]


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes
    rsv: int = 0
    masked: bool = False

    @property
    def close_code(self) -> int | None:
        return int.from_bytes(self.payload[:2], "big") if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> str:
        return self.payload[2:].decode("utf-8")


OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MASK_KEY = b"\x37\xfa\x21\x3d"


def mask(payload: bytes, key: bytes = MASK_KEY) -> bytes:
    """RFC 6455 §5.3 masking, one big-integer XOR (fast enough for multi-MiB payloads)."""
    n = len(payload)
    if n == 0:
        return b""
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame(
    opcode: int,
    payload: bytes | str = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    key: bytes = MASK_KEY,
) -> bytes:
    """One client frame (masked unless told otherwise), RFC 6455 §5.2."""
    data = payload.encode() if isinstance(payload, str) else payload
    n = len(data)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = bytes([first, mask_bit | n])
    elif n < 1 << 16:
        head = bytes([first, mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + n.to_bytes(8, "big")
    if masked:
        return head + key + mask(data, key)
    return head + data


def close_frame(code: int | None = 1000, reason: str = "", *, masked: bool = True) -> bytes:
    payload = b"" if code is None else code.to_bytes(2, "big") + reason.encode()
    return frame(OP_CLOSE, payload, masked=masked)


WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example: base64 of 16 bytes
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def upgrade_request(
    path: str = "/",
    *,
    method: str = "GET",
    key: str | None = WS_KEY,
    version: str | None = "13",
    upgrade: str = "websocket",
    connection: str = "Upgrade",
    extra: Sequence[tuple[str, str | bytes]] = (),
) -> bytes:
    """An HTTP/1.1 upgrade request; ``None`` leaves a header out."""
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: {HOST}".encode()]
    lines.append(f"Upgrade: {upgrade}".encode())
    lines.append(f"Connection: {connection}".encode())
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}".encode())
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}".encode())
    for name, value in extra:
        lines.append(
            name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())
        )
    return b"\r\n".join(lines) + b"\r\n\r\n"


class RawConnection:
    """An asyncio stream to the server with HTTP and WebSocket helpers; every read is bounded."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int, *, limit: int = 2**24) -> RawConnection:
        reader, writer = await within(asyncio.open_connection(HOST, port, limit=limit))
        return cls(reader, writer)

    async def __aenter__(self) -> RawConnection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()
        try:
            await within(self.writer.wait_closed(), 2.0)
        except (OSError, asyncio.TimeoutError):
            pass

    @property
    def sockname(self) -> tuple[str, int]:
        return self.writer.get_extra_info("sockname")[:2]  # type: ignore[no-any-return]

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await within(self.writer.drain())

    async def read_exactly(self, n: int, timeout_s: float = 5.0) -> bytes:
        return await within(self.reader.readexactly(n), timeout_s)  # type: ignore[no-any-return]

    async def read_head(self, timeout_s: float = 5.0) -> RawResponse:
        """Status line and headers of the next response (interim ones included)."""
        head = await within(self.reader.readuntil(b"\r\n\r\n"), timeout_s)
        lines = head[:-4].split(b"\r\n")
        version, status, *reason = lines[0].decode("latin-1").split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append(
                (name.decode("latin-1").strip().lower(), value.decode("latin-1").strip())
            )
        return RawResponse(int(status), reason[0] if reason else "", version, headers, head=head)

    async def read_response(self, *, method: str = "GET", timeout_s: float = 5.0) -> RawResponse:
        """The next final response: interim 1xx skipped, body framed per RFC 9112 §6.3."""
        while True:
            resp = await self.read_head(timeout_s)
            if resp.status >= 200 or resp.status == 101:
                break
        if method == "HEAD" or resp.status in (101, 204, 304):
            return resp
        if "chunked" in (resp.header("transfer-encoding") or "").lower():
            resp.body = await self.read_chunked(timeout_s)
        elif resp.header("content-length") is not None:
            resp.body = await self.read_exactly(int(resp.header("content-length") or 0), timeout_s)
        else:
            resp.body = await self.read_to_eof(timeout_s)
        return resp

    async def read_chunked(self, timeout_s: float = 5.0) -> bytes:
        body = bytearray()
        while True:
            size_line = await within(self.reader.readuntil(b"\r\n"), timeout_s)
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                trailer = await within(self.reader.readuntil(b"\r\n"), timeout_s)
                while trailer != b"\r\n":  # skip trailer fields
                    trailer = await within(self.reader.readuntil(b"\r\n"), timeout_s)
                return bytes(body)
            body += await self.read_exactly(size, timeout_s)
            assert await self.read_exactly(2, timeout_s) == b"\r\n", "chunk not followed by CRLF"

    async def read_to_eof(self, timeout_s: float = 5.0) -> bytes:
        """Everything until the server closes; a reset counts as a close."""
        chunks = []
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"connection still open after {timeout_s} s")
            try:
                chunk = await within(self.reader.read(65536), remaining)
            except ConnectionResetError:
                break
            except asyncio.TimeoutError:
                raise AssertionError(f"connection still open after {timeout_s} s") from None
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    async def assert_open(self, for_s: float = 0.3) -> None:
        """Nothing arrives and the connection stays open for ``for_s`` seconds."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), for_s)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"expected silence, got {data!r} (b'' means closed)")

    # WebSocket ------------------------------------------------------------------------------

    async def handshake(self, path: str = "/", **kwargs: Any) -> RawResponse:
        """Send an upgrade request and read the response; assert nothing about it."""
        await self.send(upgrade_request(path, **kwargs))
        return await self.read_response()

    async def read_frame(self, timeout_s: float = 5.0) -> Frame:
        """The next server frame, unmasked as RFC 6455 §5.1 requires of servers."""
        b0, b1 = await self.read_exactly(2, timeout_s)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await self.read_exactly(2, timeout_s), "big")
        elif n == 127:
            n = int.from_bytes(await self.read_exactly(8, timeout_s), "big")
        masked = bool(b1 & 0x80)
        key = await self.read_exactly(4, timeout_s) if masked else b""
        payload = await self.read_exactly(n, timeout_s) if n else b""
        if masked:
            payload = mask(payload, key)
        return Frame(bool(b0 & 0x80), b0 & 0x0F, payload, (b0 >> 4) & 0x7, masked)

    async def read_frame_skipping_pings(self, timeout_s: float = 5.0) -> Frame:
        while True:
            f = await self.read_frame(timeout_s)
            if f.opcode not in (OP_PING, OP_PONG):
                return f

    async def read_close(self, timeout_s: float = 5.0) -> Frame:
        """Read frames until a close frame (data and control frames before it are dropped)."""
        while True:
            f = await self.read_frame(timeout_s)
            if f.opcode == OP_CLOSE:
                return f


async def ws_connect_raw(port: int, path: str = "/", **kwargs: Any) -> RawConnection:
    """A raw connection with a completed (101) WebSocket handshake."""
    conn = await RawConnection.open(port)
    resp = await conn.handshake(path, **kwargs)
    if resp.status != 101:
        await conn.close()
        raise AssertionError(f"handshake failed: {resp.status} {resp.headers} {resp.body!r}")
    assert resp.header("sec-websocket-accept") == ws_accept(kwargs.get("key", WS_KEY))
    return conn


# --------------------------------------------------------------------------------------------
# subprocess server
# --------------------------------------------------------------------------------------------


def cli_command(*args: str) -> list[str]:
    """``python -m fastws ARGS`` (or ``-m uvicorn``) for the server under test."""
    return [sys.executable, "-m", SERVER_IMPL, *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A server started through its CLI in its own process group; output goes to a file so
    that a chatty server can never block on a full pipe."""

    args: list[str]
    env: dict[str, str]
    port: int
    proc: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    def start(self) -> ServerProcess:
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.args,
            cwd=REPO_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")  # type: ignore[no-any-return]

    def wait_listening(self, timeout_s: float = 15.0) -> None:
        """Poll the port until it accepts, with a deadline; fail early if the process exits."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not listening after {timeout_s} s:\n{self.output}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"server still running after {timeout_s} s:\n{self.output}"
            ) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def server_process() -> Iterator[Callable[..., ServerProcess]]:
    """Factory: ``server_process(app_target, *cli_args, env={...}, wait=True)`` runs
    ``python -m <server> app_target --host 127.0.0.1 --port <free> *cli_args``; killed at
    teardown (the whole process group)."""
    started: list[ServerProcess] = []

    def start(
        target: str, *cli_args: str, env: dict[str, str] | None = None, wait: bool = True
    ) -> ServerProcess:
        port = find_free_port()
        args = cli_command(target, "--host", HOST, "--port", str(port), *cli_args)
        sp = ServerProcess(args, subprocess_env(**(env or {})), port)
        started.append(sp)
        sp.start()
        if wait:
            sp.wait_listening()
        return sp

    try:
        yield start
    finally:
        for sp in started:
            sp.kill()


def run_cli(
    *args: str, timeout_s: float = 20.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (``--version``, bad flags, ...), bounded in time."""
    return subprocess.run(
        cli_command(*args),
        cwd=REPO_ROOT,
        env=subprocess_env(**(env or {})),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        start_new_session=True,
    )


@pytest.fixture(scope="module")
def chat_module() -> ModuleType:
    """examples/chat.py loaded as a module, for tests of the demo's hub in process."""
    spec = importlib.util.spec_from_file_location("chat_example", REPO_ROOT / "examples/chat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

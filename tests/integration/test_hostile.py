"""Hostile and unlucky clients against a running server: slowloris, readers that never read,
writers that flood, ping floods, lying lengths, endless fragments, broken UTF-8 mid-message,
clients that vanish at every stage, and silent (half-open) peers.

Every test ends with a leak check: an in-process server's ServerState.tasks and connections
drain to empty (``assert_drained``), a subprocess server's open file descriptors return to their
level before the test (``wait_fds``), both with a bounded wait. Memory is measured on subprocess
servers from /proc/PID/status (VmRSS), so kernel socket buffers do not count.

Related tests elsewhere, not repeated here: the decompression bomb (1009, bounded peak RSS) in
test_deflate.py; one slowloris client and the handshake timeout in test_limits.py; the flooding
writer with in-process tracemalloc and no message lost in test_websocket_errors.py; the basic
unanswered keepalive ping (1011) in test_websocket.py; single protocol errors per RFC section in
test_websocket_errors.py.

What "reasonable" means here (docs/robustness.md): a peer that sends faster than it reads is
throttled by TCP (the server stops reading) and never makes the server buffer without bound; this
holds for pongs too (RFC 6455 §5.5.3 lets a server answer only the latest ping), so a ping flood
gets pongs but costs the server bounded memory.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from typing import Any

import pytest

from . import apps
from .conftest import (
    HOST,
    IS_UVICORN,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RawConnection,
    Recorder,
    close_frame,
    frame,
    upgrade_request,
    within,
    ws_connect_raw,
)

pytestmark = [
    pytest.mark.skipif(IS_UVICORN, reason="fastws's limits, close codes and cleanup"),
    pytest.mark.timeout(60),
]

MIB = 1 << 20


# --------------------------------------------------------------------------------------------
# apps for subprocess servers (`python -m fastws tests.integration.test_hostile:NAME`)
# --------------------------------------------------------------------------------------------


async def blast_app(scope: Any, receive: Any, send: Any) -> None:
    """Accepts, then sends 64 KiB binary messages (up to 256 MiB) as fast as send() allows;
    a text message "ping" from the client is answered with "pong" in between (the app's own
    sends wait while the transport is paused, so this shows the connection is alive)."""
    if scope["type"] != "websocket":
        await apps.text_response(send, "blast")
        return
    await receive()
    await send({"type": "websocket.accept"})
    chunk = bytes(64 * 1024)
    try:
        for _ in range(4096):
            await send({"type": "websocket.send", "bytes": chunk})
    except OSError:
        return
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def slow_consumer_app(scope: Any, receive: Any, send: Any) -> None:
    """Takes 50 ms per binary message (about 1.3 MiB/s of 64 KiB messages) and answers text
    messages at once (with the same text)."""
    if scope["type"] != "websocket":
        await apps.text_response(send, "slow")
        return
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            try:
                await send({"type": "websocket.send", "text": message["text"]})
            except OSError:
                return
        else:
            await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def proc_status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_listing(pid: int) -> list[str]:
    out = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            pass
    return sorted(out)


async def wait_fds(pid: int, baseline: int, timeout_s: float = 5.0) -> None:
    """The server's open descriptors come back to ``baseline`` within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while fd_count(pid) > baseline:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"server holds {fd_count(pid)} fds, {baseline} before the test: {fd_listing(pid)}"
            )
        await asyncio.sleep(0.05)


async def assert_drained(srv: Any, timeout_s: float = 5.0) -> None:
    """An in-process server's tasks and connections sets drain to empty."""
    state = srv.server.server_state
    deadline = time.monotonic() + timeout_s
    while state.tasks or state.connections:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {timeout_s} s: tasks {list(state.tasks)!r}, "
                f"connections {list(state.connections)!r}"
            )
        await asyncio.sleep(0.02)


async def fd_baseline(sp: Any) -> int:
    """Descriptors of an idle subprocess server after one full WebSocket session (anything
    created lazily on the first connection is then counted in)."""
    conn = await ws_connect_raw(sp.port)
    await conn.send(frame(OP_TEXT, "warm"))
    await conn.read_frame_skipping_pings()
    await conn.send(close_frame(1000))
    await conn.read_close()
    await conn.close()
    await asyncio.sleep(0.3)
    return await settled_fd_count(sp.proc.pid)


async def settled_fd_count(pid: int) -> int:
    """The server's descriptors once they stop changing. A burst of accepts (the readiness
    probe's connections can start one) leaves dups of the listening socket open until
    fastws.accept.CALM_TICKS quiet ticks have passed; a baseline taken before they close
    counts them, and a later check of it would then miss as many descriptors."""
    from fastws import accept

    calm_s = accept.CALM_TICKS * 0.1 + 0.3
    deadline = time.monotonic() + 2 * calm_s + 1.0
    count, since = fd_count(pid), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < calm_s:
        await asyncio.sleep(0.1)
        now = fd_count(pid)
        if now != count:
            count, since = now, time.monotonic()
    return count


async def echo_round_trip_s(port: int, text: str = "still here") -> float:
    """Seconds for a fresh connection to handshake and get one echo."""
    start = time.monotonic()
    conn = await ws_connect_raw(port)
    try:
        await conn.send(frame(OP_TEXT, text))
        reply = await conn.read_frame_skipping_pings(timeout_s=5)
        assert reply.payload == text.encode()
        await conn.send(close_frame(1000))
        await conn.read_close()
    finally:
        await conn.close()
    return time.monotonic() - start


def raw_ws_socket(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    """A blocking socket with a completed handshake (the 101 head read, nothing more)."""
    sock = socket.create_connection((HOST, port), timeout=5)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.sendall(upgrade_request())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        assert data, f"closed during the handshake: {head!r}"
        head += data
    assert head.startswith(b"HTTP/1.1 101 "), head
    return sock


def abort(conn: RawConnection) -> None:
    """Close with RST (SO_LINGER 0), as a crashed client or a dropped NAT entry looks."""
    sock = conn.writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.writer.transport.abort()


async def read_close_within(conn: RawConnection, timeout_s: float) -> Any:
    """The server's close frame, which must come within ``timeout_s`` (pings skipped)."""
    start = time.monotonic()
    close = await conn.read_close(timeout_s=timeout_s)
    assert time.monotonic() - start <= timeout_s
    return close


def recording_app(events: Recorder, accept_delay_s: float = 0.0) -> apps.App:
    """Records every event and what send() raised; echoes; accepts after ``accept_delay_s``."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await apps.text_response(send, "plain")
            return
        events.add(await receive())
        if accept_delay_s:
            await asyncio.sleep(accept_delay_s)
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            events.add(("accept raised", type(exc).__name__))
        while True:
            message = await receive()
            events.add(message)
            if message["type"] == "websocket.disconnect":
                return
            try:
                await send(
                    {
                        "type": "websocket.send",
                        **{k: v for k, v in message.items() if k in ("text", "bytes")},
                    }
                )
            except OSError as exc:
                events.add(("send raised", type(exc).__name__))

    return app


async def disconnect_of(events: Recorder, timeout_s: float = 5.0) -> dict:
    return await events.wait_for(  # type: ignore[no-any-return]
        lambda e: isinstance(e, dict) and e.get("type") == "websocket.disconnect", timeout_s
    )


# --------------------------------------------------------------------------------------------
# the opening handshake
# --------------------------------------------------------------------------------------------


async def _trickle(port: int, data: bytes, interval_s: float, closed: list[float]) -> None:
    """Open a connection and send ``data`` a byte at a time; record when the server closes."""
    start = time.monotonic()
    conn = await RawConnection.open(port)
    try:
        for i in range(len(data)):
            try:
                conn.writer.write(data[i : i + 1])
                await conn.writer.drain()
                chunk = await asyncio.wait_for(conn.reader.read(1), interval_s)
            except asyncio.TimeoutError:
                continue
            except (ConnectionError, OSError):
                break
            if not chunk:  # EOF: the server dropped us
                break
        closed.append(time.monotonic() - start)
    finally:
        await conn.close()


@pytest.mark.timeout(40)
async def test_many_slowloris_clients_are_dropped_while_others_are_served(server_process):
    sp = server_process(
        "tests.integration.apps:hello", "--timeout-handshake", "1", "--log-level", "warning"
    )
    baseline = await fd_baseline(sp)
    head = upgrade_request("/ws", extra=[("X-Padding", "p" * 200)])  # ~50 s at 5 bytes/s
    closed: list[float] = []
    tricklers = [asyncio.ensure_future(_trickle(sp.port, head, 0.2, closed)) for _ in range(50)]
    try:
        await asyncio.sleep(0.3)
        # A well-behaved client is served normally while the 50 hold their connections.
        assert await echo_round_trip_s(sp.port) < 2.0
        await within(asyncio.gather(*tricklers), 10.0)
    finally:
        for task in tricklers:
            task.cancel()
        await asyncio.gather(*tricklers, return_exceptions=True)
    assert len(closed) == 50
    print(f"\nslowloris: 50 dropped after {min(closed):.2f}-{max(closed):.2f} s")
    # Dropped by the 1 s handshake timeout (swept twice a second), not after the ~50 s the
    # heads would take.
    assert max(closed) < 4.0, sorted(closed)[-5:]
    await wait_fds(sp.proc.pid, baseline)


@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_client_vanishing_mid_handshake_is_forgotten(running_server, how):
    events = Recorder()
    srv = running_server(recording_app(events))
    for cut in (10, len(upgrade_request()) - 2):
        conn = await RawConnection.open(srv.port)
        await conn.send(upgrade_request()[:cut])
        await asyncio.sleep(0.05)
        if how == "rst":
            abort(conn)
        await conn.close()
    await assert_drained(srv)
    assert list(events) == []  # the app never heard of them


async def test_client_vanishing_before_the_app_accepts(running_server):
    events = Recorder()
    srv = running_server(recording_app(events, accept_delay_s=0.3))
    conn = await RawConnection.open(srv.port)
    await conn.send(upgrade_request())
    await events.wait_len(1)  # websocket.connect delivered; the app is deciding
    abort(conn)
    await conn.close()
    await events.wait_for(lambda e: e == ("accept raised", "ClientDisconnected"))
    assert (await disconnect_of(events))["code"] == 1006
    await assert_drained(srv)


@pytest.mark.parametrize(
    "eager",
    [frame(OP_PING, b"early"), frame(OP_TEXT, "unmasked", masked=False), frame(OP_TEXT, b"\xff")],
    ids=["ping", "protocol-error", "invalid-utf8"],
)
async def test_frames_sent_before_the_101_never_precede_it(running_server, eager):
    """RFC 6455 §4.1 has the client wait for the 101; an eager (or hostile) client that does
    not must still get an HTTP response first: WebSocket bytes before the status line leave
    the client reading garbage, and a server that answers frames before the app accepted has
    spoken WebSocket on a connection the app might still refuse."""
    srv = running_server(apps.hello)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(upgrade_request() + eager)
        first = await _read_some(conn, 5, 3.0)
        assert first.startswith(b"HTTP/"), f"the server's first bytes were {first!r}"
    await assert_drained(srv)


async def _read_some(conn: RawConnection, n: int, timeout_s: float) -> bytes:
    """Up to ``n`` bytes, whatever arrives first (b"" when the server just closes)."""
    data = b""
    deadline = time.monotonic() + timeout_s
    while len(data) < n and time.monotonic() < deadline:
        try:
            chunk = await within(conn.reader.read(n - len(data)), deadline - time.monotonic())
        except (asyncio.TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        data += chunk
    return data


# --------------------------------------------------------------------------------------------
# a reader that never reads, a writer that floods, a ping flood
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(45)
async def test_reader_that_never_reads_is_held_at_the_high_water_mark(running_server):
    """The app sends 64 KiB messages to a client that reads nothing: send() must wait once
    the transport is over its high-water mark, so the server holds about one mark's worth
    (plus the messages being written) for that connection, while others are served normally."""
    sent = Recorder()
    finished = Recorder()
    message = bytes(64 * 1024)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/echo":
            while True:
                m = await receive()
                if m["type"] == "websocket.disconnect":
                    return
                await send({"type": "websocket.send", "text": m["text"]})
        try:
            for i in range(4096):  # 256 MiB if nothing pushed back
                await send({"type": "websocket.send", "bytes": message})
                sent.add(i)
        except OSError as exc:
            finished.add(type(exc).__name__)
        else:
            finished.add("sent everything")

    srv = running_server(app, ws_ping_interval=None)
    sock = raw_ws_socket(srv.port, rcvbuf=64 * 1024)
    try:
        # Let the kernel buffers fill, then the app must be stuck in send().
        await asyncio.sleep(1.0)
        count = len(sent)
        await asyncio.sleep(0.5)
        assert len(sent) == count, "send() kept completing although nothing is read"
        assert count * len(message) < 32 * MIB, f"{count} messages went out unread"
        buffered = await _write_buffer_sizes(srv)
        print(f"\nunread client: send() stuck after {count} messages, buffered {buffered}")
        # One message may cross the mark, and one more is written before send() waits (so
        # that publishes this connection receives meanwhile cannot overtake it, docs/pubsub.md).
        assert buffered and max(buffered) <= 64 * 1024 + 2 * len(message) + 1024, buffered
        # Another connection is unaffected.
        conn = await ws_connect_raw(srv.port, "/echo")
        try:
            start = time.monotonic()
            await conn.send(frame(OP_TEXT, "hello"))
            assert (await conn.read_frame_skipping_pings()).payload == b"hello"
            assert time.monotonic() - start < 1.0
        finally:
            await conn.close()
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    assert await finished.wait_len(1) == ["ClientDisconnected"]
    await assert_drained(srv)


async def _write_buffer_sizes(srv: Any) -> list[int]:
    """get_write_buffer_size() of every WebSocket connection, read on the server's loop."""

    def read() -> list[int]:
        return [
            c.transport.get_write_buffer_size()
            for c in srv.server.server_state.connections
            if type(c).__name__ == "WebSocketProtocol"
        ]

    loop = srv.loop
    assert loop is not None
    future = asyncio.run_coroutine_threadsafe(_call(read), loop)
    return await asyncio.wrap_future(future)


async def _call(func: Any) -> Any:
    return func()


def _flood(sock: socket.socket, payload_frame: bytes, cap_bytes: int, limit_s: float) -> int:
    """Send ``payload_frame`` repeatedly until ``cap_bytes``, a 1 s stall, or ``limit_s``."""
    sock.settimeout(1.0)
    burst = payload_frame * max(1, (256 * 1024) // len(payload_frame))
    sent = 0
    deadline = time.monotonic() + limit_s
    while sent < cap_bytes and time.monotonic() < deadline:
        try:
            sent += sock.send(burst)
        except TimeoutError:
            break
    return sent


@pytest.mark.timeout(60)
async def test_ping_flood_from_a_client_that_never_reads_is_bounded(server_process):
    """256 MiB of pings from a client that reads no pong: the server must not queue a pong per
    ping in its write buffer (it may answer only the latest ping, RFC 6455 §5.5.3, or stop
    reading while it cannot write). Afterwards the connection still works."""
    sp = server_process("tests.integration.apps:hello", "--ws-ping-interval", "0")
    baseline_fds = await fd_baseline(sp)
    pid = sp.proc.pid
    rss_before = proc_status_kib(pid, "VmRSS")
    sock = raw_ws_socket(sp.port)
    try:
        ping = frame(OP_PING, b"p" * 125)
        sent = await asyncio.get_running_loop().run_in_executor(
            None, _flood, sock, ping, 256 * MIB, 20.0
        )
        await asyncio.sleep(0.5)
        grown_mib = (proc_status_kib(pid, "VmRSS") - rss_before) / 1024
        print(f"\nping flood: {sent / MIB:.0f} MiB of pings sent, RSS +{grown_mib:.1f} MiB")
        assert grown_mib < 16, (
            f"server RSS grew by {grown_mib:.0f} MiB after {sent / MIB:.0f} MiB of pings "
            "that were never read"
        )
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    assert await echo_round_trip_s(sp.port) < 2.0
    await wait_fds(pid, baseline_fds)


@pytest.mark.timeout(60)
async def test_ping_flood_gets_pongs(running_server):
    """A client that pings fast but does read gets pongs (for the latest ping at least) and
    the connection stays usable."""
    srv = running_server(apps.hello, ws_ping_interval=None)
    conn = await ws_connect_raw(srv.port)
    try:
        payloads = [b"%d" % i for i in range(2000)]
        for chunk in range(0, len(payloads), 200):
            await conn.send(b"".join(frame(OP_PING, p) for p in payloads[chunk : chunk + 200]))
        await conn.send(frame(OP_TEXT, "after"))
        pongs = []
        while True:
            f = await conn.read_frame(timeout_s=5)
            if f.opcode == OP_PONG:
                pongs.append(f.payload)
            else:
                assert (f.opcode, f.payload) == (OP_TEXT, b"after")
                break
        assert pongs and pongs[-1] == payloads[-1]
        assert all(p in payloads for p in pongs)
        assert pongs == sorted(pongs, key=payloads.index)  # never out of order
    finally:
        await conn.close()
    await assert_drained(srv)


@pytest.mark.timeout(60)
async def test_reader_that_never_reads_bounds_server_rss(server_process):
    """Same as the in-process test, measured as server RSS: the app tries to send 256 MiB."""
    sp = server_process("tests.integration.test_hostile:blast_app", "--ws-ping-interval", "0")
    baseline_fds = await fd_baseline_plain(sp)
    pid = sp.proc.pid
    rss_before = proc_status_kib(pid, "VmRSS")
    sock = raw_ws_socket(sp.port, rcvbuf=64 * 1024)
    try:
        await asyncio.sleep(2.0)
        grown_mib = (proc_status_kib(pid, "VmRSS") - rss_before) / 1024
        print(f"\nunread client: RSS +{grown_mib:.1f} MiB")
        assert grown_mib < 8, f"server RSS grew by {grown_mib:.1f} MiB for one unread client"
        # The server still serves others (HTTP here: blast_app answers plain requests).
        reader, writer = await asyncio.open_connection(HOST, sp.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await within(reader.readuntil(b"\r\n\r\n"), 2.0)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    await wait_fds(pid, baseline_fds)


async def fd_baseline_plain(sp: Any) -> int:
    """fd baseline after one HTTP request (for apps that are not an echo)."""
    reader, writer = await asyncio.open_connection(HOST, sp.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await within(reader.read(), 5.0)
    writer.close()
    await asyncio.sleep(0.3)
    return await settled_fd_count(sp.proc.pid)


@pytest.mark.timeout(60)
async def test_flooding_writer_with_a_slow_app_bounds_server_rss(server_process):
    """64 KiB messages as fast as TCP takes them, to an app that consumes one per 50 ms: reading
    pauses at --ws-max-queue, so server RSS stays near queue x message size, not the 256 MiB
    sent; another connection still gets its echo promptly."""
    sp = server_process(
        "tests.integration.test_hostile:slow_consumer_app",
        "--ws-ping-interval",
        "0",
        "--ws-max-queue",
        "16",
    )
    baseline_fds = await fd_baseline_plain(sp)
    pid = sp.proc.pid
    rss_before = proc_status_kib(pid, "VmRSS")
    sock = raw_ws_socket(sp.port)
    try:
        message = frame(OP_BINARY, bytes(64 * 1024))
        flood = asyncio.get_running_loop().run_in_executor(
            None, _flood, sock, message, 256 * MIB, 6.0
        )
        await asyncio.sleep(1.0)
        assert await echo_round_trip_s(sp.port) < 1.5
        sent = await flood
        grown_mib = (proc_status_kib(pid, "VmRSS") - rss_before) / 1024
        print(f"\nflooding writer: {sent / MIB:.1f} MiB accepted in 6 s, RSS +{grown_mib:.1f} MiB")
        # 16 queued messages are 1 MiB; the read buffer and allocator slack add a few more.
        assert grown_mib < 16, f"RSS grew by {grown_mib:.0f} MiB after {sent / MIB:.0f} MiB"
        # 6 s of the app's pace is 8 MiB; kernel buffers take a few MiB more.
        assert sent < 48 * MIB, f"the server took {sent / MIB:.0f} MiB in 6 s"
    finally:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    await wait_fds(pid, baseline_fds)


# --------------------------------------------------------------------------------------------
# lying lengths, endless fragments, broken UTF-8 mid-message
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length,code",
    [(2**63 - 1, 1009), (2**32, 1009), (2**63, 1002), (2**64 - 1, 1002)],
    ids=["2^63-1", "2^32", "top-bit", "2^64-1"],
)
async def test_huge_declared_length_fails_at_the_header(running_server, length, code):
    """Only the 14-byte header is sent: the server must fail at once (before any payload),
    1009 for a length over ws_max_size, 1002 for the forbidden top bit (RFC 6455 §5.2)."""
    events = Recorder()
    srv = running_server(recording_app(events))
    conn = await ws_connect_raw(srv.port)
    try:
        await conn.send(bytes([0x82, 0xFF]) + length.to_bytes(8, "big") + b"\x01\x02\x03\x04")
        close = await read_close_within(conn, 1.0)
        assert close.close_code == code, close
        assert await conn.read_to_eof(3.0) == b""
    finally:
        await conn.close()
    assert (await disconnect_of(events))["code"] == code
    await assert_drained(srv)


@pytest.mark.timeout(60)
async def test_lying_lengths_within_max_size_cost_no_resident_memory(server_process):
    """200 clients each declare a 16 MiB frame (the default ws_max_size) and send 10 bytes of
    it. The compiled reader allocates the message object for such a frame up front (it is
    filled as the payload arrives), so the server's address space grows by 16 MiB per client
    (VmSize, reported in docs/robustness.md), but none of it is touched: resident memory must
    stay small, and the clients' going away gives everything back."""
    sp = server_process("tests.integration.apps:hello", "--ws-ping-interval", "0")
    pid = sp.proc.pid
    baseline_fds = await fd_baseline(sp)
    rss_before = proc_status_kib(pid, "VmRSS")
    socks = []
    try:
        for _ in range(200):
            sock = raw_ws_socket(sp.port)
            socks.append(sock)
            header = bytes([0x82, 0xFF]) + (16 * MIB).to_bytes(8, "big") + b"\x01\x02\x03\x04"
            sock.sendall(header + b"x" * 10)
        await asyncio.sleep(0.5)
        grown_mib = (proc_status_kib(pid, "VmRSS") - rss_before) / 1024
        print(f"\nlying lengths: RSS +{grown_mib:.1f} MiB")
        assert grown_mib < 16, f"RSS grew by {grown_mib:.0f} MiB for 200 x 10 payload bytes"
        assert await echo_round_trip_s(sp.port) < 2.0
    finally:
        for sock in socks:
            sock.close()
    await wait_fds(pid, baseline_fds)


async def test_fragments_without_end_close_1009_once_over_max_size(running_server):
    limit = 64 * 1024
    events = Recorder()
    srv = running_server(recording_app(events), ws_max_size=limit)
    conn = await ws_connect_raw(srv.port)
    try:
        piece = b"f" * 1024
        await conn.send(frame(OP_BINARY, piece, fin=False))
        for _ in range(limit // len(piece) - 1):
            await conn.send(frame(OP_CONT, piece, fin=False))
        await conn.assert_open(0.3)  # exactly at the limit, and still no end: fine so far
        await conn.send(frame(OP_CONT, b"!", fin=False))  # one byte over
        close = await read_close_within(conn, 1.0)
        assert close.close_code == 1009
    finally:
        await conn.close()
    assert (await disconnect_of(events))["code"] == 1009
    assert [e for e in events if isinstance(e, dict) and e["type"] == "websocket.receive"] == []
    await assert_drained(srv)


@pytest.mark.parametrize("shape", ["fragments", "one-long-frame"])
async def test_invalid_utf8_mid_message_fails_before_the_message_ends(running_server, shape):
    events = Recorder()
    srv = running_server(recording_app(events))
    conn = await ws_connect_raw(srv.port)
    try:
        if shape == "fragments":
            await conn.send(frame(OP_TEXT, "valid start é", fin=False))
            await conn.send(frame(OP_CONT, b"still \xe2\x82", fin=False))
            await conn.assert_open(0.2)  # an incomplete character is not an error yet
            await conn.send(frame(OP_CONT, b"\x41 broken", fin=False))  # never ends
        else:
            # A 1 MiB text frame whose first KiB holds an invalid byte; the rest never comes.
            whole = frame(OP_TEXT, b"a" * 10 + b"\xff" + b"a" * (MIB - 11))
            await conn.send(whole[: 14 + 1024])
        close = await read_close_within(conn, 1.0)
        assert close.close_code == 1007
    finally:
        await conn.close()
    assert (await disconnect_of(events))["code"] == 1007
    await assert_drained(srv)


# --------------------------------------------------------------------------------------------
# clients that vanish
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize(
    "stage", ["mid-header", "mid-payload", "mid-fragments", "between-messages"]
)
async def test_client_vanishing_gives_1006_and_is_cleaned_up(running_server, stage, how):
    events = Recorder()
    srv = running_server(recording_app(events))
    conn = await ws_connect_raw(srv.port)
    await conn.send(frame(OP_TEXT, "hello"))
    assert (await conn.read_frame()).payload == b"hello"
    big = frame(OP_BINARY, bytes(100_000))
    partial = {
        "mid-header": big[:5],
        "mid-payload": big[:50_000],
        "mid-fragments": frame(OP_TEXT, "part", fin=False) + frame(OP_CONT, "more", fin=False),
        "between-messages": b"",
    }[stage]
    if partial:
        await conn.send(partial)
    await asyncio.sleep(0.05)
    if how == "rst":
        abort(conn)
    await conn.close()
    assert (await disconnect_of(events))["code"] == 1006
    received = [e for e in events if isinstance(e, dict) and e["type"] == "websocket.receive"]
    assert [m.get("text") for m in received] == ["hello"]
    await assert_drained(srv)


async def test_client_vanishing_while_the_app_sends_ends_the_app(running_server):
    """The app streams to a client that drops: its next send() raises (ASGI: OSError), the
    task ends, nothing is left behind."""
    events = Recorder()
    started = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        started.set()
        try:
            for _ in range(100_000):
                await send({"type": "websocket.send", "bytes": bytes(4096)})
                await asyncio.sleep(0)
        except OSError as exc:
            events.add(type(exc).__name__)

    srv = running_server(app, ws_ping_interval=None)
    conn = await ws_connect_raw(srv.port)
    await conn.read_frame()
    abort(conn)
    await conn.close()
    assert await events.wait_len(1) == ["ClientDisconnected"]
    await assert_drained(srv)


# --------------------------------------------------------------------------------------------
# half-open peers and the keepalive
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(40)
async def test_silent_peers_are_closed_by_the_keepalive_with_1011(server_process, tmp_path):
    """20 clients that stop answering (a peer whose host vanished looks the same: nothing
    comes back): each is closed with 1011 once its ping goes unanswered, the app hears 1011,
    and the server releases every descriptor although the clients never close."""
    marker = tmp_path / "marker"
    sp = server_process(
        "tests.integration.apps:shutdown_app",
        "--ws-ping-interval",
        "0.3",
        "--ws-ping-timeout",
        "0.3",
        env={"FASTWS_TEST_MARKER": str(marker)},
    )
    baseline = fd_count(sp.proc.pid)
    socks = [raw_ws_socket(sp.port) for _ in range(20)]
    try:
        deadline = time.monotonic() + 10
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = marker.read_text().splitlines() if marker.exists() else []
            if len([x for x in lines if x.startswith("ws-disconnect")]) >= 20:
                break
            await asyncio.sleep(0.05)
        codes = [x for x in lines if x.startswith("ws-disconnect")]
        assert codes == ["ws-disconnect 1011"] * 20, lines
        await wait_fds(sp.proc.pid, baseline)
        # What the silent client would find if it looked: a ping, then a 1011 close frame.
        data = socks[0].recv(65536)
        assert bytes([0x80 | OP_PING]) in data[:2] or bytes([0x80 | OP_CLOSE]) in data
    finally:
        for sock in socks:
            sock.close()


# --------------------------------------------------------------------------------------------
# HTTP: a malformed request pipelined behind a good one
# --------------------------------------------------------------------------------------------


async def test_bad_request_pipelined_behind_expect_100_continue(running_server):
    """Found by the http fuzz target (tests/fuzz/regressions/http/expect-100-continue-then-
    bad-request). The server answers the malformed second request with 400 and half-closes
    (write_eof); the first request's app then calls receive(), which must say
    http.disconnect, not try to write "100 Continue" after write_eof (RuntimeError on
    asyncio's transports, raised into the app, then again from the server's own 500 path)."""
    events = Recorder()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            events.add(await receive())
        except Exception as exc:
            events.add(("receive raised", repr(exc)))

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
            b"hello\x01BAD\r\n\r\n"
        )
        response = await conn.read_response()
        assert response.status == 400
    await events.wait_len(1)
    assert events.items[0] == {"type": "http.disconnect"}, events.items
    await assert_drained(srv)


async def test_upgrade_pipelined_behind_a_slow_request_waits_for_its_response(running_server):
    """Found by the http fuzz target (tests/fuzz/regressions/http/upgrade-pipelined-behind-a-
    request). HTTP/1.1 responses go out in request order (RFC 9112 §9.3.2): an upgrade request
    that arrives while an earlier request is still being answered must wait for that response.
    Upgrading at once puts the 101 and WebSocket frames first and the earlier response's bytes
    into the middle of the WebSocket stream."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await asyncio.sleep(0.2)
            await apps.text_response(send, "ok")
        else:
            await apps.echo_websocket(scope, receive, send)

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(
            b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n" + upgrade_request() + frame(OP_TEXT, "hi")
        )
        first = await conn.read_response()
        assert (first.status, first.body) == (200, b"ok"), first
        assert (await conn.read_response()).status == 101
        assert (await conn.read_frame()).payload == b"hi"
        await conn.send(close_frame(1000))
        await conn.read_close()
    await assert_drained(srv)

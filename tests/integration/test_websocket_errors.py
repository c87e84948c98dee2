"""WebSocket failure paths through a real server, driven by a raw client so that every byte
is chosen by the test: handshake validation (RFC 6455 §4.2.1), frame-level protocol errors
(§5, §7.4.1 close codes), application errors, the closing handshake (§7.1), and
backpressure against a client that floods a server whose app is not reading."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
import tracemalloc

import pytest

from . import apps
from .conftest import (
    IS_UVICORN,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RawConnection,
    Recorder,
    close_frame,
    frame,
    ws_connect_raw,
)

pytestmark = pytest.mark.timeout(20)


def disconnects(events: Recorder) -> list[dict]:
    return [e for e in events if isinstance(e, dict) and e.get("type") == "websocket.disconnect"]


async def wait_disconnect(events: Recorder) -> dict:
    return await events.wait_for(
        lambda e: isinstance(e, dict) and e.get("type") == "websocket.disconnect"
    )


# --------------------------------------------------------------------------------------------
# handshake validation (RFC 6455 §4.2.1)
# --------------------------------------------------------------------------------------------


async def handshake_only(srv, **kwargs):
    """Send one upgrade request; return the response (a rejection must close the connection)."""
    async with await RawConnection.open(srv.port) as conn:
        response = await conn.handshake(**kwargs)
        if response.status != 101:
            assert await conn.read_to_eof(3.0) == b"", (
                "rejected handshake must close the connection"
            )
    return response


@pytest.fixture
def ws_app_calls(running_server):
    """A server whose app records every scope type it is called with."""
    calls = Recorder()

    async def app(scope, receive, send):
        calls.add(scope["type"])
        await apps.hello(scope, receive, send)

    return running_server(app), calls


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_upgrade_with_a_method_other_than_get_is_rejected(ws_app_calls, method):
    srv, calls = ws_app_calls
    response = await handshake_only(srv, method=method)
    if IS_UVICORN:
        # uvicorn (websockets' handshake) answers 405 Method Not Allowed with Allow: GET.
        # fastws treats it as a malformed upgrade (RFC 6455 §4.2.1 item 1) and answers 400.
        assert response.status == 405
        assert response.header("allow") == "GET"
    else:
        assert response.status == 400
    assert "websocket" not in calls.items


@pytest.mark.parametrize(
    "key",
    [
        None,
        "",
        "not-base64!!",
        "AAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAA=",
        "dGhlIHNhbXBsZSBub25jZQ",
    ],
    ids=["missing", "empty", "not-base64", "15-bytes", "17-bytes", "unpadded"],
)
async def test_missing_or_invalid_key_is_400(ws_app_calls, key):
    srv, calls = ws_app_calls
    response = await handshake_only(srv, key=key)
    assert response.status == 400
    assert "websocket" not in calls.items


@pytest.mark.parametrize("version", ["8", "14", "13, 8", None], ids=["8", "14", "list", "missing"])
async def test_unsupported_version_is_rejected(ws_app_calls, version):
    srv, calls = ws_app_calls
    response = await handshake_only(srv, version=version)
    if IS_UVICORN:
        # websockets' handshake answers 400 without a Sec-WebSocket-Version header.
        assert response.status == 400
    elif version is None:
        assert response.status == 400  # not a version we fail to support: no version at all
    else:
        # RFC 6455 §4.4: 426 Upgrade Required, naming the version we speak.
        assert response.status == 426
        assert response.header("sec-websocket-version") == "13"
    assert "websocket" not in calls.items


@pytest.mark.parametrize(
    "upgrade,connection",
    [
        ("WebSocket", "Upgrade"),
        ("websocket", "upgrade"),
        ("WEBSOCKET", "keep-alive, UPGRADE"),
        ("websocket", "keep-alive,Upgrade"),
        ("websocket", "Upgrade, HTTP2-Settings"),
    ],
)
async def test_upgrade_and_connection_tokens_are_case_insensitive_lists(
    ws_app_calls, upgrade, connection
):
    srv, calls = ws_app_calls
    conn = await ws_connect_raw(srv.port, upgrade=upgrade, connection=connection)
    try:
        await conn.send(frame(OP_TEXT, "ok"))
        assert (await conn.read_frame()).payload == b"ok"
    finally:
        await conn.close()
    assert calls.items == ["websocket"]


async def test_upgrade_to_another_protocol_is_served_as_plain_http(ws_app_calls):
    srv, calls = ws_app_calls
    async with await RawConnection.open(srv.port) as conn:
        response = await conn.handshake(upgrade="h2c", connection="Upgrade, HTTP2-Settings")
    assert (response.status, response.body) == (200, b"hello")
    assert calls.items == ["http"]


# --------------------------------------------------------------------------------------------
# protocol errors (RFC 6455 §5, close codes §7.4.1)
# --------------------------------------------------------------------------------------------

PROTOCOL_ERRORS = {
    "unmasked frame": (frame(OP_TEXT, "hi", masked=False), 1002),
    "reserved data opcode 0x3": (frame(0x3, b"x"), 1002),
    "reserved control opcode 0xB": (frame(0xB, b"x"), 1002),
    "rsv1 without extension": (frame(OP_TEXT, "hi", rsv=0b100), 1002),
    "rsv2": (frame(OP_BINARY, b"hi", rsv=0b010), 1002),
    "rsv3": (frame(OP_BINARY, b"hi", rsv=0b001), 1002),
    "invalid utf-8 text": (frame(OP_TEXT, b"ok \xff\xfe"), 1007),
    "invalid utf-8 across fragments": (
        frame(OP_TEXT, b"\xe2\x82", fin=False) + frame(OP_CONT, b"\x41"),
        1007,
    ),
    "truncated utf-8 at end of message": (frame(OP_TEXT, b"abc\xe2\x82"), 1007),
    "fragmented ping": (frame(OP_PING, b"a", fin=False) + frame(OP_CONT, b"b"), 1002),
    "fragmented close": (frame(OP_CLOSE, b"\x03\xe8", fin=False), 1002),
    "ping over 125 bytes": (frame(OP_PING, b"p" * 126), 1002),
    "continuation without start": (frame(OP_CONT, b"orphan"), 1002),
    "new message inside fragmented one": (
        frame(OP_TEXT, "a", fin=False) + frame(OP_TEXT, "b"),
        1002,
    ),
    "close with 1-byte payload": (frame(OP_CLOSE, b"\x03"), 1002),
    "close with invalid code 999": (frame(OP_CLOSE, (999).to_bytes(2, "big")), 1002),
    "close with reserved code 1005": (frame(OP_CLOSE, (1005).to_bytes(2, "big")), 1002),
    "close with invalid utf-8 reason": (frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"\xff"), 1007),
}


@pytest.mark.parametrize("data,code", list(PROTOCOL_ERRORS.values()), ids=list(PROTOCOL_ERRORS))
async def test_protocol_error_closes_with_the_right_code(running_server, data, code):
    events = Recorder()
    srv = running_server(apps.make_recording_ws_app(events.add))
    conn = await ws_connect_raw(srv.port)
    try:
        await conn.send(frame(OP_TEXT, "before"))
        assert (await conn.read_frame()).payload == b"before"  # the connection was healthy
        await conn.send(data)
        close = await conn.read_close()
        assert close.close_code == code, close
        # The server fails the connection: it closes TCP without waiting long for our reply.
        assert await conn.read_to_eof(3.0) == b""
    finally:
        await conn.close()
    disconnect = await wait_disconnect(events)
    assert disconnect["code"] == code
    received = [e for e in events if isinstance(e, dict) and e["type"] == "websocket.receive"]
    assert [(m.get("text"), m.get("bytes")) for m in received] == [("before", None)]


# --------------------------------------------------------------------------------------------
# application errors
# --------------------------------------------------------------------------------------------


async def test_app_exception_after_accept_closes_with_1011(running_server):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await receive()
        raise RuntimeError("app bug")

    srv = running_server(app)
    conn = await ws_connect_raw(srv.port)
    try:
        await conn.send(frame(OP_TEXT, "trigger"))
        if IS_UVICORN:
            # uvicorn drops the TCP connection without a close frame (the client sees 1006,
            # abnormal closure). fastws sends 1011 Internal Error (RFC 6455 §7.4.1), so the
            # client can tell a server failure from a network failure.
            assert await conn.read_to_eof(3.0) == b""
            return
        close = await conn.read_close()
        assert close.close_code == 1011
        assert await conn.read_to_eof(3.0) == b""
    finally:
        await conn.close()


async def test_app_exception_before_accept_is_an_http_500(running_server):
    async def app(scope, receive, send):
        await receive()
        raise RuntimeError("app bug before accept")

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        response = await conn.handshake()
        assert response.status == 500
        assert b"app bug" not in response.body
        assert await conn.read_to_eof(3.0) == b""


async def test_app_returning_after_accept_closes_the_connection(running_server):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})

    srv = running_server(app)
    conn = await ws_connect_raw(srv.port)
    try:
        # Whatever the close code, the connection must not be left open.
        rest = await conn.read_to_eof(3.0)
        assert rest == b"" or rest[0] & 0x0F == OP_CLOSE
    finally:
        await conn.close()


async def test_invalid_message_from_app_fails_the_app_not_the_server(running_server):
    errors = Recorder()

    async def app(scope, receive, send):
        if scope["type"] == "http":
            await apps.text_response(send, "still serving")
            return
        await receive()
        await send({"type": "websocket.accept"})
        try:
            await send({"type": "http.response.start", "status": 200})
        except Exception as exc:  # a RuntimeError in uvicorn
            errors.add(exc)
            raise

    srv = running_server(app)
    conn = await ws_connect_raw(srv.port)
    await conn.close()
    await errors.wait_len(1)
    async with await RawConnection.open(srv.port) as http:
        await http.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await http.read_response()).body == b"still serving"


# --------------------------------------------------------------------------------------------
# closing handshake (RFC 6455 §7.1)
# --------------------------------------------------------------------------------------------


async def test_app_close_waits_for_the_clients_close_then_closes_tcp(running_server):
    events = Recorder()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1001, "reason": "going away"})
        events.add(await receive())

    srv = running_server(app)
    conn = await ws_connect_raw(srv.port)
    try:
        close = await conn.read_frame()
        assert (close.opcode, close.close_code, close.close_reason) == (
            OP_CLOSE,
            1001,
            "going away",
        )
        # §7.1.1: the server waits for the client's close before closing TCP, so that the
        # client is not the one left in TIME_WAIT and no RST races our close frame.
        await conn.assert_open(0.3)
        # Data still arriving after our close is not delivered (the app already closed).
        await conn.send(frame(OP_TEXT, "late") + close_frame(1001))
        assert await conn.read_to_eof(3.0) == b""
    finally:
        await conn.close()
    disconnect = await wait_disconnect(events)
    assert disconnect["code"] in (1001, 1005)  # the app learns the connection is over
    assert all(e.get("type") != "websocket.receive" for e in events)


async def test_client_close_is_echoed_with_the_same_code(running_server):
    events = Recorder()
    srv = running_server(apps.make_recording_ws_app(events.add))
    conn = await ws_connect_raw(srv.port)
    try:
        await conn.send(close_frame(4003, "done here"))
        echo = await conn.read_frame()
        assert (echo.opcode, echo.close_code) == (OP_CLOSE, 4003)
        assert not echo.masked
        assert await conn.read_to_eof(3.0) == b""
    finally:
        await conn.close()
    disconnect = await wait_disconnect(events)
    assert (disconnect["code"], disconnect.get("reason")) == (4003, "done here")


async def test_client_close_without_status_gives_1005(running_server):
    events = Recorder()
    srv = running_server(apps.make_recording_ws_app(events.add))
    conn = await ws_connect_raw(srv.port)
    try:
        await conn.send(close_frame(None))
        echo = await conn.read_frame()
        assert echo.opcode == OP_CLOSE
        assert echo.payload == b""  # §5.5.1: no code received, none echoed (1005 is never sent)
        assert await conn.read_to_eof(3.0) == b""
    finally:
        await conn.close()
    disconnect = await wait_disconnect(events)
    assert disconnect["code"] == 1005


async def test_tcp_close_without_close_frame_gives_1006(running_server):
    events = Recorder()
    srv = running_server(apps.make_recording_ws_app(events.add))
    conn = await ws_connect_raw(srv.port)
    await conn.send(frame(OP_TEXT, "x"))
    await conn.read_frame()
    await conn.close()
    disconnect = await wait_disconnect(events)
    if IS_UVICORN:
        # uvicorn reports 1005 ("no status received") for a connection that simply dropped;
        # 1006 is the code RFC 6455 §7.1.5 reserves for closure without a close frame.
        assert disconnect["code"] == 1005
    else:
        assert disconnect["code"] == 1006


# --------------------------------------------------------------------------------------------
# backpressure
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_flooding_client_is_throttled_and_nothing_is_lost(running_server):
    """The app does not read; the client floods. The server must stop reading (the client's
    writes stall) instead of buffering everything, then deliver every message in order
    once the app reads."""
    msg_size = 64 * 1024
    max_queue = 4
    cap_bytes = 256 * 1024 * 1024  # far above what kernel buffers and a bounded queue hold
    go = threading.Event()
    result = Recorder()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        while not go.is_set():
            await asyncio.sleep(0.01)
        expected = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                result.add(("disconnect", expected))
                return
            if message.get("text") == "end":
                await send({"type": "websocket.send", "text": str(expected)})
                continue
            data = message["bytes"]
            seq = int.from_bytes(data[:8], "big")
            if seq != expected or len(data) != msg_size:
                result.add(("out of order", seq, expected, len(data)))
                await send({"type": "websocket.close", "code": 1011})
                return
            expected += 1

    srv = running_server(app, ws_max_queue=max_queue, ws_max_size=1 << 20)
    conn = await ws_connect_raw(srv.port)
    sock = conn.writer.get_extra_info("socket")
    raw = socket.socket(fileno=sock.fileno())  # blocking sends with a timeout, same fd
    try:
        raw.settimeout(0.5)
        # A small, fixed send buffer (no autotuning) keeps what the kernel absorbs small, so
        # that what got through is mostly what the server read.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        gc.collect()
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        sent = 0
        seq = 0
        pending = b""
        stalled = False
        deadline = time.monotonic() + 30
        while sent < cap_bytes and time.monotonic() < deadline:
            if not pending:
                payload = seq.to_bytes(8, "big") + bytes(msg_size - 8)
                pending = frame(OP_BINARY, payload)
                seq += 1
            try:
                n = raw.send(pending)
            except TimeoutError:
                stalled = True
                break
            sent += n
            pending = pending[n:]
        server_held = tracemalloc.get_traced_memory()[0] - baseline
        tracemalloc.stop()
        assert stalled, f"client sent {sent / 2**20:.0f} MiB without the server pushing back"
        # What the server holds in Python objects is a bounded queue plus a read buffer, not
        # everything the client sent (the rest sits in kernel socket buffers).
        assert server_held < (max_queue + 4) * msg_size + 2**20, (server_held, sent)

        go.set()
        raw.settimeout(10)
        if pending:
            raw.sendall(pending)
        raw.sendall(frame(OP_TEXT, "end"))
        reply = await conn.read_frame_skipping_pings(timeout_s=20)
        assert reply.payload.decode() == str(seq), (reply, result.items)
        await conn.send(close_frame(1000))
        await conn.read_close()
    finally:
        if tracemalloc.is_tracing():
            tracemalloc.stop()
        raw.detach()  # the fd still belongs to the asyncio transport
        await conn.close()
    assert [r for r in result if r[0] != "disconnect"] == []

"""WebSocket through a real server: the ASGI websocket events (asgiref specs/www.rst, spec
2.5) seen from both ends, with the ``websockets`` asyncio client, aiohttp, and a raw client
where frames must be built by hand (fragmentation, pings, unanswered keepalives)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
import threading

import aiohttp
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from . import apps
from .conftest import (
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

pytestmark = pytest.mark.timeout(20)


def connect(url: str, **kwargs):
    """The websockets client, bounded and quiet: no proxy lookup, no client keepalive."""
    kwargs.setdefault("open_timeout", 5)
    kwargs.setdefault("close_timeout", 5)
    kwargs.setdefault("ping_interval", None)
    kwargs.setdefault("proxy", None)
    return ws_connect(url, **kwargs)


def received(events: Recorder, kind: str) -> list[dict]:
    return [e for e in events if isinstance(e, dict) and e.get("type") == kind]


# --------------------------------------------------------------------------------------------
# events and data
# --------------------------------------------------------------------------------------------


async def test_connect_is_the_first_event_and_text_and_bytes_round_trip(running_server):
    events = Recorder()
    srv = running_server(apps.make_recording_ws_app(events.add))
    async with connect(srv.ws_url("/echo")) as ws:
        await within(ws.send("héllo"))
        assert await within(ws.recv()) == "héllo"
        await within(ws.send(b"\x00\x01\xff"))
        assert await within(ws.recv()) == b"\x00\x01\xff"
        await within(ws.send(""))
        assert await within(ws.recv()) == ""
        await within(ws.send(b""))
        assert await within(ws.recv()) == b""
    await events.wait_for(lambda e: isinstance(e, dict) and e["type"] == "websocket.disconnect")
    messages = [e for e in events if isinstance(e, dict)]
    assert messages[0] == {"type": "websocket.connect"}
    data = [(m.get("text"), m.get("bytes")) for m in messages if m["type"] == "websocket.receive"]
    assert data == [("héllo", None), (None, b"\x00\x01\xff"), ("", None), (None, b"")]


async def test_echo_with_aiohttp_client(running_server):
    srv = running_server(apps.hello)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.ws_connect(srv.ws_url("/"), autoping=True) as ws:
            await within(ws.send_str("text"))
            assert (await within(ws.receive())).data == "text"
            await within(ws.send_bytes(b"bin"))
            assert (await within(ws.receive())).data == b"bin"
            await within(ws.close())
            assert ws.close_code == 1000


async def test_accept_with_subprotocol_and_headers(running_server):
    seen = Recorder()

    async def app(scope, receive, send):
        seen.add(scope["subprotocols"])
        await receive()
        chosen = next(p for p in scope["subprotocols"] if p.startswith("chat."))
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": chosen,
                "headers": [(b"x-extra", b"yes"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
            }
        )
        await receive()

    srv = running_server(app)
    async with connect(srv.ws_url(), subprotocols=["other", "chat.v2", "chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert ws.response.headers["x-extra"] == "yes"
        assert ws.response.headers.get_all("set-cookie") == ["a=1", "b=2"]
    assert seen.items == [["other", "chat.v2", "chat.v1"]]


async def test_accept_without_subprotocol_sends_no_protocol_header(running_server):
    srv = running_server(apps.hello)
    async with await RawConnection.open(srv.port) as conn:
        response = await conn.handshake(extra=[("Sec-WebSocket-Protocol", "a, b")])
    assert response.status == 101
    assert response.header("sec-websocket-protocol") is None


async def test_configured_headers_are_sent_on_the_handshake_response(running_server):
    srv = running_server(apps.hello, headers=[("x-a", "b")])
    async with connect(srv.ws_url()) as ws:
        assert ws.response.headers["x-a"] == "b"


async def test_app_close_with_code_and_reason(running_server):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": "last words"})
        await send({"type": "websocket.close", "code": 4001, "reason": "bye now"})

    srv = running_server(app)
    async with connect(srv.ws_url()) as ws:
        assert await within(ws.recv()) == "last words"
        with pytest.raises(ConnectionClosed) as info:
            await within(ws.recv())
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "bye now")


async def test_app_close_without_code_uses_1000(running_server):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})

    srv = running_server(app)
    async with connect(srv.ws_url()) as ws:
        with pytest.raises(ConnectionClosed) as info:
            await within(ws.recv())
    assert info.value.rcvd is not None and info.value.rcvd.code == 1000


async def test_close_before_accept_is_an_http_403(running_server):
    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.close", "code": 4000})

    srv = running_server(app)
    with pytest.raises(InvalidStatus) as info:
        async with connect(srv.ws_url()):
            pass
    assert info.value.response.status_code == 403


async def test_http_response_extension_denies_with_the_apps_response(running_server):
    seen = Recorder()

    async def app(scope, receive, send):
        seen.add(scope.get("extensions") or {})
        await receive()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain"), (b"x-why", b"no token")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"go ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"away"})

    srv = running_server(app)
    with pytest.raises(InvalidStatus) as info:
        async with connect(srv.ws_url()):
            pass
    response = info.value.response
    assert response.status_code == 401
    assert response.headers["x-why"] == "no token"
    assert response.body == b"go away"
    assert "websocket.http.response" in seen.items[0]


async def test_disconnect_carries_the_clients_code_and_reason(running_server):
    events = Recorder()
    srv = running_server(apps.make_recording_ws_app(events.add))
    async with connect(srv.ws_url()) as ws:
        await within(ws.send("hi"))
        await within(ws.recv())
        await within(ws.close(4002, "client says bye"))
        # The server's close frame echoes the client's code (RFC 6455 §5.5.1).
        assert ws.close_code == 4002
    disconnect = await events.wait_for(
        lambda e: isinstance(e, dict) and e["type"] == "websocket.disconnect"
    )
    assert disconnect["code"] == 4002
    assert disconnect.get("reason") == "client says bye"


async def test_send_after_the_client_is_gone_raises_oserror(running_server):
    outcome = Recorder()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        outcome.add(message)
        try:
            await send({"type": "websocket.send", "text": "anyone there?"})
        except BaseException as exc:
            outcome.add(exc)
            raise
        outcome.add("send returned")

    srv = running_server(app)
    async with connect(srv.ws_url()) as ws:
        await within(ws.close(1001))
    await outcome.wait_len(2)
    assert outcome.items[0]["type"] == "websocket.disconnect"
    error = outcome.items[1]
    assert isinstance(error, OSError), f"send() after disconnect: {error!r}"
    assert type(error) is not OSError  # "a server-specific subclass" (ASGI spec 2.4)


async def test_send_after_abrupt_tcp_close_raises_oserror(running_server):
    outcome = Recorder()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        outcome.add("accepted")
        try:
            for _ in range(200):  # keep sending until the server notices the peer is gone
                await send({"type": "websocket.send", "bytes": b"x" * 1024})
                await asyncio.sleep(0.01)
        except BaseException as exc:
            outcome.add(exc)
            raise
        outcome.add("never failed")

    srv = running_server(app)
    conn = await ws_connect_raw(srv.port)
    await outcome.wait_len(1)
    conn.writer.transport.abort()  # RST, no close frame
    await conn.close()
    await outcome.wait_len(2)
    assert isinstance(outcome.items[1], OSError), outcome.items[1]


# --------------------------------------------------------------------------------------------
# scope
# --------------------------------------------------------------------------------------------


async def test_websocket_scope_fields(running_server):
    events = Recorder()
    srv = running_server(apps.make_recording_ws_app(events.add))
    conn = await ws_connect_raw(
        srv.port,
        "/ws/caf%C3%A9/%2F?x=%20y&z=1",
        extra=[
            ("X-Mixed-Case", "Value"),
            ("X-Latin", b"\xe9t\xe9"),
            ("Sec-WebSocket-Protocol", "a, b"),
            ("Sec-WebSocket-Protocol", "c"),
        ],
    )
    client_addr = conn.sockname
    await conn.send(close_frame(1000))
    await conn.read_close()
    await conn.close()
    scope = (await events.wait_for(lambda e: isinstance(e, tuple)))[1]
    assert scope["type"] == "websocket"
    assert scope["asgi"]["version"] == "3.0"
    if IS_UVICORN:
        # uvicorn reports 2.4 although it sends `reason` with websocket.disconnect (2.5).
        assert scope["asgi"]["spec_version"] == "2.4"
    else:
        assert scope["asgi"]["spec_version"] == "2.5"
    assert scope.get("http_version", "1.1") == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/ws/café//"
    assert scope["raw_path"] == b"/ws/caf%C3%A9/%2F"
    assert scope["query_string"] == b"x=%20y&z=1"
    assert scope["root_path"] == ""
    headers = [(bytes(n), bytes(v)) for n, v in scope["headers"]]
    assert (b"x-mixed-case", b"Value") in headers
    assert (b"x-latin", b"\xe9t\xe9") in headers
    assert (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==") in headers
    assert all(n == n.lower() for n, _ in headers)
    assert tuple(scope["client"]) == tuple(client_addr)
    assert tuple(scope["server"]) == ("127.0.0.1", srv.port)
    assert list(scope["subprotocols"]) == ["a", "b", "c"]
    assert scope["state"] == {}
    assert "websocket.http.response" in scope["extensions"]


async def test_websocket_scope_root_path(running_server):
    events = Recorder()
    srv = running_server(apps.make_recording_ws_app(events.add), root_path="/mount")
    async with connect(srv.ws_url("/ws?a=b")):
        pass
    scope = (await events.wait_for(lambda e: isinstance(e, tuple)))[1]
    assert scope["root_path"] == "/mount"
    assert scope["path"] == "/mount/ws"  # as for HTTP: path includes the mount point
    assert scope["raw_path"] == b"/mount/ws"
    assert scope["query_string"] == b"a=b"
    assert list(scope["subprotocols"]) == []


async def test_state_is_a_shallow_copy_per_connection(running_server):
    seen = Recorder()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["counter"] = 0
            scope["state"]["shared"] = []
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        state = scope["state"]
        seen.add((state["counter"], list(state["shared"])))
        state["counter"] += 1  # rebinding a key: private to this connection
        state["shared"].append(len(seen))  # mutating a value: visible to all (shallow copy)
        state["added"] = True
        await receive()
        await send({"type": "websocket.accept"})
        await receive()

    srv = running_server(app, lifespan="on")
    for _ in range(3):
        async with connect(srv.ws_url()):
            pass
    await seen.wait_len(3)
    assert seen.items == [(0, []), (0, [1]), (0, [1, 2])]


# --------------------------------------------------------------------------------------------
# sizes and fragmentation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bytes", "text"])
async def test_one_mib_message_round_trip(running_server, kind):
    srv = running_server(apps.hello)
    payload = bytes(range(256)) * 4096 if kind == "bytes" else "é" + "abcdefgh" * (1 << 17)
    async with connect(srv.ws_url(), max_size=4 << 20) as ws:
        await within(ws.send(payload))
        assert await within(ws.recv()) == payload


async def test_message_over_ws_max_size_closes_1009(running_server):
    events = Recorder()
    limit = 64 * 1024
    srv = running_server(apps.make_recording_ws_app(events.add), ws_max_size=limit)
    async with connect(srv.ws_url(), max_size=None, compression=None) as ws:
        await within(ws.send(b"a" * limit))  # exactly the limit is fine
        assert len(await within(ws.recv())) == limit
        await within(ws.send(b"a" * (limit + 1)))
        with pytest.raises(ConnectionClosed) as info:
            await within(ws.recv())
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    disconnect = await events.wait_for(
        lambda e: isinstance(e, dict) and e["type"] == "websocket.disconnect"
    )
    assert disconnect["code"] == 1009


async def test_fragmented_message_over_ws_max_size_closes_1009(running_server):
    limit = 1000
    srv = running_server(apps.hello, ws_max_size=limit)
    conn = await ws_connect_raw(srv.port)
    try:
        await conn.send(frame(OP_BINARY, b"a" * 600, fin=False))
        # Each frame fits, the message does not.
        await conn.send(frame(OP_CONT, b"a" * 600, fin=True))
        close = await conn.read_close()
        assert close.close_code == 1009
    finally:
        await conn.close()


async def test_fragmented_messages_are_reassembled_with_interleaved_ping(running_server):
    events = Recorder()
    srv = running_server(apps.make_recording_ws_app(events.add))
    conn = await ws_connect_raw(srv.port)
    try:
        text = "fragmented ✓ message"
        raw = text.encode()
        # Split inside the 3-byte UTF-8 sequence of ✓: validity is a message property.
        cut1, cut2 = raw.index("✓".encode()) + 1, raw.index("✓".encode()) + 2
        await conn.send(frame(OP_TEXT, raw[:cut1], fin=False))
        await conn.send(frame(OP_PING, b"mid"))  # control frames may interleave (RFC 6455 §5.4)
        await conn.send(frame(OP_CONT, raw[cut1:cut2], fin=False))
        await conn.send(frame(OP_CONT, raw[cut2:], fin=True))
        await conn.send(frame(OP_BINARY, b"\x01\x02", fin=False) + frame(OP_CONT, b"", fin=False))
        await conn.send(frame(OP_CONT, b"\x03", fin=True))
        pong = await conn.read_frame()
        assert (pong.opcode, pong.payload) == (OP_PONG, b"mid")
        echoed_text = await conn.read_frame()
        assert (echoed_text.opcode, echoed_text.payload.decode()) == (OP_TEXT, text)
        echoed_bytes = await conn.read_frame()
        assert (echoed_bytes.opcode, echoed_bytes.payload) == (OP_BINARY, b"\x01\x02\x03")
        await conn.send(close_frame(1000))
        await conn.read_close()
    finally:
        await conn.close()
    received_msgs = received(events, "websocket.receive")
    assert [(m.get("text"), m.get("bytes")) for m in received_msgs] == [
        (text, None),
        (None, b"\x01\x02\x03"),
    ]


async def test_frames_split_across_tcp_writes_byte_by_byte(running_server):
    srv = running_server(apps.hello)
    conn = await ws_connect_raw(srv.port)
    try:
        data = frame(OP_TEXT, "slow drip") + frame(OP_BINARY, b"x" * 300)
        for i in range(len(data)):
            conn.writer.write(data[i : i + 1])
            if i % 16 == 0:
                await within(conn.writer.drain())
                await asyncio.sleep(0)
        await within(conn.writer.drain())
        assert (await conn.read_frame()).payload == b"slow drip"
        assert (await conn.read_frame()).payload == b"x" * 300
    finally:
        await conn.close()


async def test_many_frames_in_one_write(running_server):
    srv = running_server(apps.hello)
    conn = await ws_connect_raw(srv.port)
    try:
        await conn.send(b"".join(frame(OP_TEXT, f"m{i}") for i in range(500)))
        got = [(await conn.read_frame()).payload for _ in range(500)]
        assert got == [f"m{i}".encode() for i in range(500)]
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------------
# ping / pong / keepalive
# --------------------------------------------------------------------------------------------


async def test_client_ping_gets_pong_with_same_payload(running_server):
    srv = running_server(apps.hello)
    conn = await ws_connect_raw(srv.port)
    try:
        await conn.send(frame(OP_PING, b"are you there"))
        pong = await conn.read_frame()
        assert (pong.fin, pong.opcode, pong.payload) == (True, OP_PONG, b"are you there")
        await conn.send(frame(OP_PING, b""))
        assert (await conn.read_frame()).opcode == OP_PONG
        # An unsolicited pong is allowed and ignored (RFC 6455 §5.5.3).
        await conn.send(frame(OP_PONG, b"unsolicited") + frame(OP_TEXT, "still here"))
        assert (await conn.read_frame()).payload == b"still here"
    finally:
        await conn.close()


async def test_client_ping_with_websockets_client(running_server):
    srv = running_server(apps.hello)
    async with connect(srv.ws_url()) as ws:
        latency = await within(ws.ping(b"x"))
        await within(latency)


async def test_server_sends_keepalive_pings_and_stays_open_when_answered(running_server):
    srv = running_server(apps.hello, ws_ping_interval=0.2, ws_ping_timeout=1.0)
    conn = await ws_connect_raw(srv.port)
    try:
        for _ in range(3):
            ping = await conn.read_frame(timeout_s=3)
            assert ping.opcode == OP_PING
            await conn.send(frame(OP_PONG, ping.payload))
        await conn.send(frame(OP_TEXT, "alive"))
        assert (await conn.read_frame_skipping_pings()).payload == b"alive"
    finally:
        await conn.close()


async def test_unanswered_keepalive_ping_closes_with_1011(running_server):
    events = Recorder()
    srv = running_server(
        apps.make_recording_ws_app(events.add), ws_ping_interval=0.2, ws_ping_timeout=0.3
    )
    conn = await ws_connect_raw(srv.port)
    try:
        ping = await conn.read_frame(timeout_s=3)
        assert ping.opcode == OP_PING
        # Never answer.
        close = await conn.read_close(timeout_s=3)
        assert close.close_code == 1011
        assert await conn.read_to_eof(3.0) == b""
    finally:
        await conn.close()
    disconnect = await events.wait_for(
        lambda e: isinstance(e, dict) and e["type"] == "websocket.disconnect"
    )
    if IS_UVICORN:
        # uvicorn fails the connection with a 1011 frame, but its app hears 1005 ("no status
        # received") from connection_lost. fastws tells the app the code it sent.
        assert disconnect["code"] == 1005
    else:
        assert disconnect["code"] == 1011


async def test_keepalive_disabled_sends_no_pings(running_server):
    srv = running_server(apps.hello, ws_ping_interval=None)
    conn = await ws_connect_raw(srv.port)
    try:
        await conn.assert_open(0.5)
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------------
# concurrency
# --------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_200_concurrent_connections_50_messages_each_in_order(running_server):
    srv = running_server(apps.hello)
    connections, messages = 200, 50

    async def client(i: int) -> list[str]:
        async with connect(srv.ws_url(f"/c/{i}"), compression=None, open_timeout=30) as ws:
            for j in range(messages):
                await ws.send(f"{i}:{j}")
            return [await ws.recv() for _ in range(messages)]

    results = await within(asyncio.gather(*(client(i) for i in range(connections))), 45)
    for i, got in enumerate(results):
        assert got == [f"{i}:{j}" for j in range(messages)]


@pytest.mark.timeout(60)
async def test_messages_to_a_client_that_reads_late_arrive_complete_and_in_order(running_server):
    """The app sends faster than the client reads: small text messages with a large binary
    one every 50th. Once the socket buffers are full, what the kernel does not take waits in
    the transport and send() waits for it to drain; when the client reads again, writes go
    straight out again. Nothing is lost or reordered across those switches (fastws sends
    small frames on the socket itself, but only while the transport holds nothing)."""
    count, small, large = 20_000, 1000, 40_000  # 36 MB: far more than the buffers below take
    done = threading.Event()

    def payload(i: int) -> bytes:
        return (b"%08d" % i).ljust(large if i % 50 == 0 else small, b".")

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(count):
            if i % 50 == 0:
                await send({"type": "websocket.send", "bytes": payload(i)})
            else:
                await send({"type": "websocket.send", "text": payload(i).decode()})
        done.set()
        await send({"type": "websocket.send", "text": "end"})
        await receive()

    srv = running_server(app)
    # Small buffers on the client's side: its stream reader's, and a fixed socket receive
    # buffer (no autotuning up to tcp_rmem's tens of MB).
    conn = await RawConnection.open(srv.port, limit=2**16)
    conn.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2**16)
    assert (await conn.handshake("/")).status == 101
    try:
        await asyncio.sleep(0.5)
        assert not done.is_set(), "the app sent everything to a client that was not reading"
        for i in range(count):
            got = await conn.read_frame()
            opcode = OP_BINARY if i % 50 == 0 else OP_TEXT
            assert (got.opcode, got.payload[:8], got.payload == payload(i)) == (
                opcode,
                b"%08d" % i,
                True,
            ), i
        assert (await conn.read_frame()).payload == b"end"
        await conn.send(close_frame(1000))
        assert (await conn.read_close()).close_code == 1000
    finally:
        await conn.close()


async def test_upgrade_request_on_a_keep_alive_connection_after_http(running_server):
    srv = running_server(apps.hello)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await conn.read_response()).body == b"hello"
        await conn.send(upgrade_request())
        assert (await conn.read_response()).status == 101
        await conn.send(frame(OP_TEXT, "after http"))
        assert (await conn.read_frame()).payload == b"after http"
        await conn.send(close_frame(1000))
        assert (await conn.read_close()).opcode == OP_CLOSE


@pytest.mark.skipif(IS_UVICORN, reason="uvicorn drops bytes that follow the upgrade request")
async def test_frames_sent_with_the_upgrade_request_are_not_lost(running_server):
    # RFC 6455 §4.1 has the client wait for the 101 before sending, so dropping these bytes
    # (uvicorn re-serializes the request for its WebSocket protocol and loses them) is legal.
    # fastws hands the bytes after the upgrade offset to the WebSocket protocol instead of
    # silently discarding data from an eager client.
    srv = running_server(apps.hello)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(upgrade_request() + frame(OP_TEXT, "eager"))
        assert (await conn.read_response()).status == 101
        assert (await conn.read_frame()).payload == b"eager"


# --------------------------------------------------------------------------------------------
# what ASGI allows of receive(), send() and the app itself
# --------------------------------------------------------------------------------------------


async def test_receive_and_send_work_inside_tasks_and_wait_for(running_server):
    # Some apps (Django Channels' dispatch loop, for one) wrap receive() and send() in tasks;
    # whatever awaitables the server returns must work there as coroutines do.
    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return await apps.hello(scope, receive, send)
        assert (await asyncio.create_task(receive()))["type"] == "websocket.connect"
        await asyncio.create_task(send({"type": "websocket.accept"}))
        while True:
            message = await asyncio.wait_for(receive(), 5)
            if message["type"] != "websocket.receive":
                return
            text = message["text"]
            await asyncio.create_task(send({"type": "websocket.send", "text": text}))
            await asyncio.wait_for(send({"type": "websocket.send", "text": text + "!"}), 5)
            await asyncio.ensure_future(send({"type": "websocket.send", "bytes": b"x" * 70000}))

    srv = running_server(app)
    async with connect(srv.ws_url("/")) as ws:
        for text in ("a", "b"):
            await within(ws.send(text))
            assert await within(ws.recv()) == text
            assert await within(ws.recv()) == text + "!"
            assert await within(ws.recv()) == b"x" * 70000


@pytest.mark.skipif(IS_UVICORN, reason="uvicorn sends nothing and raises nothing for this message")
async def test_a_bad_send_raises_where_the_app_awaits_it(running_server):
    events = Recorder()

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return await apps.hello(scope, receive, send)
        await receive()
        await send({"type": "websocket.accept"})
        pending = send({"type": "websocket.send"})  # neither bytes nor text
        untyped = send({})
        events.add("called")
        try:
            await pending
        except RuntimeError as exc:
            events.add(("raised", str(exc)))
        try:
            await untyped
        except KeyError as exc:
            events.add(("raised", repr(exc)))
        await send({"type": "websocket.send", "text": "still open"})
        await receive()

    srv = running_server(app)
    async with connect(srv.ws_url("/")) as ws:
        assert await within(ws.recv()) == "still open"
    # Called first, raised later: nothing was raised by the call itself.
    assert list(events) == [
        "called",
        ("raised", "websocket.send needs 'bytes' or 'text'."),
        ("raised", "KeyError('type')"),
    ]


async def test_an_app_that_returns_an_awaitable_without_being_async(running_server):
    # An ASGI app is any callable returning an awaitable, not necessarily an `async def` (the
    # interface is given: auto-detection, as uvicorn's, would take it for ASGI2).
    def not_async(scope, receive, send):
        return apps.hello(scope, receive, send)

    srv = running_server(not_async, interface="asgi3")
    async with connect(srv.ws_url("/")) as ws:
        await within(ws.send("plain callable"))
        assert await within(ws.recv()) == "plain callable"


async def test_an_app_that_raises_before_returning_an_awaitable_gets_500(running_server):
    def broken(scope, receive, send):
        if scope["type"] == "websocket":
            raise ValueError("broken before any await")
        return apps.hello(scope, receive, send)

    srv = running_server(broken, interface="asgi3")
    with pytest.raises(InvalidStatus) as info:
        async with connect(srv.ws_url("/")):
            pass
    assert info.value.response.status_code == 500


async def test_a_receive_given_up_on_loses_no_message(running_server):
    # A receive() created and dropped, and one cancelled by a timeout, must leave the next
    # message to the receive() that is awaited.
    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return await apps.hello(scope, receive, send)
        await receive()
        await send({"type": "websocket.accept"})
        receive().close()  # created, never awaited (closed: no "never awaited" warning)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(receive(), 0.05)  # nothing sent yet: times out
        await send({"type": "websocket.send", "text": "ready"})
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            await send({"type": "websocket.send", "text": "got " + message["text"]})

    srv = running_server(app)
    async with connect(srv.ws_url("/")) as ws:
        assert await within(ws.recv()) == "ready"
        for text in ("one", "two"):
            await within(ws.send(text))
            assert await within(ws.recv()) == "got " + text


async def test_the_app_resumes_in_its_own_task_and_context(running_server):
    # A receive() may be completed straight from the read callback, or in a batch with the
    # other reads of the loop's pass (fastws.ws.protocol.Wakeups; 40 turns run both ways):
    # the app must still resume as its own task (asyncio.current_task()), in its own context.
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var")

    async def app(scope, receive, send):
        if scope["type"] != "websocket":
            return await apps.hello(scope, receive, send)
        task = asyncio.current_task()
        await receive()
        await send({"type": "websocket.accept"})
        var.set("mine")
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            same = asyncio.current_task() is task
            reply = f"{message['text']} {var.get('lost')} {same}"
            await send({"type": "websocket.send", "text": reply})

    srv = running_server(app)
    async with connect(srv.ws_url("/")) as ws, connect(srv.ws_url("/")) as other:
        for i in range(40):
            text = str(i)
            await within(ws.send(text))
            await within(other.send(text + "!"))
            assert await within(ws.recv()) == f"{text} mine True"
            assert await within(other.recv()) == f"{text}! mine True"

"""Response splitting and the HTTP/1.1 MUSTs on Host, version and framing, on the wire.

An application that puts user input into a header (name or value) must never get a header of
its own choosing onto the wire: every app-supplied header is checked on every path that writes
one (HTTP responses, the WebSocket 101, the ``websocket.http.response`` denial), the app's
send() raises a RuntimeError naming the header, and the client gets a 500 (or, before a 101, a
failed handshake with 500) instead of a dropped connection. docs/robustness.md lists the rules.

Under FASTWS_TEST_SERVER=uvicorn the checks that uvicorn also passes run against it; the rest
are fastws's own (uvicorn serves requests without Host, HTTP/2.0 request lines, and upgrades with
a body, and drops the connection on a header it refuses).
"""

from __future__ import annotations

from typing import Any

import pytest

from . import apps
from .conftest import IS_UVICORN, RawConnection, Recorder, upgrade_request, within

pytestmark = pytest.mark.timeout(20)

fastws_only = pytest.mark.skipif(IS_UVICORN, reason="uvicorn does not do this (module docstring)")

# Header names and values an app might build from user input; each would split the response.
BAD_NAMES = [
    b"x-a\r\nx-injected: 1",
    "x-a\r\nx-injected: 1",
    b"x-a\nx-injected: 1",
    b"x a",
    b"x-a:",
    b"",
    b"x-\x00",
    "x-caf\u00e9",
]
BAD_VALUES = [
    b"v\r\nx-injected: 1",
    "v\r\nx-injected: 1",
    b"v\rx-injected: 1",
    b"v\nx-injected: 1",
    b"v\x00",
    b"v\x1b[31m",
    "\u20ac",  # not latin-1
]


def get(
    path: str = "/", *, version: str = "1.1", host: str | None = "test", extra: str = ""
) -> bytes:
    head = f"GET {path} HTTP/{version}\r\n"
    if host is not None:
        head += f"Host: {host}\r\n"
    return (head + extra + "\r\n").encode()


def assert_not_injected(raw: bytes) -> None:
    assert b"x-injected" not in raw.lower(), raw


def http_app_with_header(record: Recorder, header: tuple[Any, Any]) -> apps.App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [header]})
        except RuntimeError as exc:
            record.add(str(exc))
            raise
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def read_all(port: int, request: bytes) -> bytes:
    async with await RawConnection.open(port) as conn:
        await conn.send(request)
        return await conn.read_to_eof()


# --------------------------------------------------------------------------------------------
# HTTP responses: names and values (defects 1 and 6)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
async def test_bad_http_header_name_is_refused_with_500(running_server, name):
    if IS_UVICORN and isinstance(name, bytes) and b"\r\n" not in name and b"\n" not in name:
        pytest.skip("uvicorn sends names with spaces or colons as given")
    record = Recorder()
    srv = running_server(http_app_with_header(record, (name, b"v")))
    raw = await read_all(srv.port, get(extra="Connection: close\r\n"))
    assert_not_injected(raw)
    if not IS_UVICORN:
        assert raw.startswith(b"HTTP/1.1 500 "), raw
        message = await record.wait_len(1)
        assert "header name" in message[0] or "header" in message[0]


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
async def test_bad_http_header_value_is_refused_with_500(running_server, value):
    record = Recorder()
    srv = running_server(http_app_with_header(record, (b"x-a", value)))
    raw = await read_all(srv.port, get(extra="Connection: close\r\n"))
    assert_not_injected(raw)
    if not IS_UVICORN:
        assert raw.startswith(b"HTTP/1.1 500 "), raw
        (message,) = await record.wait_len(1)
        assert "x-a" in message


@fastws_only
async def test_refused_header_keeps_the_connection_usable_for_the_500(running_server):
    """The 500 is a whole response (content-length, connection: close), not a torn one."""
    record = Recorder()
    srv = running_server(http_app_with_header(record, (b"x-a", b"1\r\n\r\nHTTP/1.1 200 OK")))
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(get())
        response = await conn.read_response()
        assert response.status == 500
        assert response.header("connection") == "close"
        assert response.body == b"Internal Server Error"
        assert await conn.read_to_eof() == b""


@pytest.mark.parametrize(
    "header",
    [
        (b"x-ok", b"tab\tand space and obs-text \xe9\xff"),
        ("X-Str", "str value"),
        (b"x-token!#$%&'*+-.^_`|~09", b"v"),
    ],
    ids=repr,
)
async def test_legal_headers_go_out_as_given(running_server, header):
    if IS_UVICORN and isinstance(header[0], str):
        pytest.skip("str headers are fastws's leniency (ASGI says bytes)")
    record = Recorder()
    srv = running_server(http_app_with_header(record, header))
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(get())
        response = await conn.read_response()
    assert response.status == 200
    name = header[0] if isinstance(header[0], str) else header[0].decode("latin-1")
    value = header[1] if isinstance(header[1], str) else header[1].decode("latin-1")
    assert response.header(name) == value
    assert list(record) == []


# --------------------------------------------------------------------------------------------
# framing (defect 5)
# --------------------------------------------------------------------------------------------


def framing_app(record: Recorder, headers: list[tuple[bytes, bytes]]) -> apps.App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
        except RuntimeError as exc:
            record.add(str(exc))
            raise
        await send({"type": "http.response.body", "body": b"abc"})

    return app


@fastws_only
@pytest.mark.parametrize(
    "headers",
    [
        [(b"content-length", b"3"), (b"transfer-encoding", b"chunked")],
        [(b"transfer-encoding", b"chunked"), (b"content-length", b"3")],
    ],
    ids=["cl-then-te", "te-then-cl"],
)
async def test_content_length_with_chunked_is_refused(running_server, headers):
    record = Recorder()
    srv = running_server(framing_app(record, headers))
    raw = await read_all(srv.port, get())
    assert raw.startswith(b"HTTP/1.1 500 "), raw
    assert b"transfer-encoding" not in raw.lower()
    (message,) = await record.wait_len(1)
    assert "RFC 9112" in message and "content-length" in message


@fastws_only
@pytest.mark.parametrize(
    "headers, words",
    [
        ([(b"content-length", b"3"), (b"content-length", b"4")], "two different content-length"),
        ([(b"content-length", b"3x")], "content-length"),
        ([(b"transfer-encoding", b"gzip")], "transfer-encoding"),
    ],
    ids=["two-lengths", "not-digits", "gzip"],
)
async def test_framing_headers_fastws_cannot_honour_are_refused(running_server, headers, words):
    record = Recorder()
    srv = running_server(framing_app(record, headers))
    raw = await read_all(srv.port, get())
    assert raw.startswith(b"HTTP/1.1 500 "), raw
    (message,) = await record.wait_len(1)
    assert words in message


async def test_repeated_equal_content_length_is_sent_once_framed(running_server):
    record = Recorder()
    srv = running_server(framing_app(record, [(b"content-length", b"3")]))
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(get())
        response = await conn.read_response()
    assert response.status == 200 and response.body == b"abc"
    assert response.header_all("content-length") == ["3"]
    assert response.header("transfer-encoding") is None


# --------------------------------------------------------------------------------------------
# Host (defect 3) and the version (defect 4)
# --------------------------------------------------------------------------------------------


@fastws_only
@pytest.mark.parametrize(
    "request_bytes",
    [
        get(host=None),
        get(extra="Host: other\r\n"),
        get(version="1.0", extra="Host: other\r\n"),
    ],
    ids=["no-host", "two-hosts", "two-hosts-1.0"],
)
async def test_host_must_be_there_exactly_once(running_server, request_bytes):
    srv = running_server(apps.hello)
    raw = await read_all(srv.port, request_bytes)
    assert raw.startswith(b"HTTP/1.1 400 "), raw
    assert b"Host" in raw


async def test_http10_without_host_is_served(running_server):
    srv = running_server(apps.hello)
    raw = await read_all(srv.port, get(version="1.0", host=None))
    assert raw.startswith(b"HTTP/1.1 200 "), raw


@fastws_only
async def test_upgrade_without_host_is_refused(running_server):
    srv = running_server(apps.echo_websocket)
    request = upgrade_request().replace(b"Host: 127.0.0.1\r\n", b"")
    assert b"Host" not in request
    raw = await read_all(srv.port, request)
    assert raw.startswith(b"HTTP/1.1 400 "), raw


@fastws_only
@pytest.mark.parametrize("version", ["2.0", "3.0", "0.9", "1.2"])
async def test_versions_other_than_1_0_and_1_1_get_505(running_server, version):
    srv = running_server(apps.hello)
    raw = await read_all(srv.port, get(version=version))
    assert raw.startswith(b"HTTP/1.1 505 HTTP Version Not Supported\r\n"), raw
    assert raw.endswith(b"HTTP version not supported."), raw


# --------------------------------------------------------------------------------------------
# WebSocket 101 and denial (defects 2 and 6), upgrade with a body (defect 7)
# --------------------------------------------------------------------------------------------


def ws_app(record: Recorder, message: dict[str, Any]) -> apps.App:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        try:
            await send(message)
        except RuntimeError as exc:
            record.add(str(exc))
            raise
        if message["type"] == "websocket.http.response.start":
            await send({"type": "websocket.http.response.body", "body": b"denied"})
        else:
            await send({"type": "websocket.close"})

    return app


@fastws_only
@pytest.mark.parametrize(
    "header",
    [(name, b"v") for name in BAD_NAMES] + [(b"x-a", value) for value in BAD_VALUES],
    ids=repr,
)
async def test_bad_accept_header_fails_the_handshake_with_500(running_server, header):
    record = Recorder()
    srv = running_server(ws_app(record, {"type": "websocket.accept", "headers": [header]}))
    raw = await read_all(srv.port, upgrade_request())
    assert_not_injected(raw)
    assert raw.startswith(b"HTTP/1.1 500 "), raw
    (message,) = await record.wait_len(1)
    assert "header" in message


@fastws_only
@pytest.mark.parametrize(
    "header",
    [(b"x-a\r\nx-injected: 1", b"v"), (b"x-a", b"v\r\nx-injected: 1"), ("x-a", "v\nx-injected")],
    ids=repr,
)
async def test_bad_denial_header_fails_with_500(running_server, header):
    record = Recorder()
    start = {"type": "websocket.http.response.start", "status": 403, "headers": [header]}
    srv = running_server(ws_app(record, start))
    raw = await read_all(srv.port, upgrade_request())
    assert_not_injected(raw)
    assert raw.startswith(b"HTTP/1.1 500 "), raw
    (message,) = await record.wait_len(1)
    assert "header" in message


async def test_good_accept_and_denial_headers_go_out(running_server):
    record = Recorder()
    headers: list[tuple[Any, Any]] = [(b"x-room", b"lobby")]
    if not IS_UVICORN:
        headers.append(("X-Str", "s"))  # fastws's leniency (ASGI says bytes)
    accept = {"type": "websocket.accept", "headers": headers}
    srv = running_server(ws_app(record, accept))
    async with await RawConnection.open(srv.port) as conn:
        response = await conn.handshake()
    assert response.status == 101
    assert response.header("x-room") == "lobby"
    assert response.header("x-str") == (None if IS_UVICORN else "s")
    start = {"type": "websocket.http.response.start", "status": 403, "headers": [(b"x-why", b"no")]}
    srv = running_server(ws_app(record, start))
    raw = await read_all(srv.port, upgrade_request())
    assert raw.startswith(b"HTTP/1.1 403 "), raw
    assert b"x-why: no\r\n" in raw and raw.endswith(b"denied")
    assert list(record) == []


@fastws_only
@pytest.mark.parametrize("subprotocol", ["chat\r\nx-injected: 1", "a b", "", 7])
async def test_subprotocol_that_is_not_a_token_fails_with_500(running_server, subprotocol):
    record = Recorder()
    srv = running_server(ws_app(record, {"type": "websocket.accept", "subprotocol": subprotocol}))
    raw = await read_all(srv.port, upgrade_request())
    assert_not_injected(raw)
    assert raw.startswith(b"HTTP/1.1 500 "), raw
    (message,) = await record.wait_len(1)
    assert "subprotocol" in message.lower()


@fastws_only
@pytest.mark.parametrize(
    "extra, body",
    [
        ([("Content-Length", "5")], b"hello"),
        ([("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n"),
    ],
    ids=["content-length", "chunked"],
)
async def test_upgrade_with_a_body_gets_400(running_server, extra, body):
    record = Recorder()
    srv = running_server(apps.make_recording_ws_app(record.add))
    raw = await read_all(srv.port, upgrade_request(extra=extra) + body)
    assert raw.startswith(b"HTTP/1.1 400 "), raw
    assert list(record) == []  # the app never saw the connection


async def test_upgrade_with_content_length_zero_is_accepted(running_server):
    srv = running_server(apps.echo_websocket)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(upgrade_request(extra=[("Content-Length", "0")]))
        response = await within(conn.read_head())
    assert response.status == 101

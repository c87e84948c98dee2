"""HTTP/1.1 through a real server on loopback: httpx and aiohttp for the ordinary paths, a raw
stream wherever the bytes on the wire are the point (framing, interim responses, malformed
input). Scope fields follow the ASGI HTTP spec (asgiref specs/www.rst)."""

from __future__ import annotations

import asyncio
import email.utils
import time

import aiohttp
import httpx
import pytest

from . import apps
from .conftest import IS_UVICORN, SERVER_IMPL, RawConnection, Recorder, within

pytestmark = pytest.mark.timeout(20)


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=5.0)


def get(path: str = "/", *, version: str = "1.1", headers: str = "") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: test\r\n{headers}\r\n".encode()


def make_scope_recorder(record: Recorder) -> apps.App:
    async def app(scope: apps.Scope, receive: apps.Receive, send: apps.Send) -> None:
        record.add(scope)
        await apps.text_response(send, scope["path"])

    return app


# --------------------------------------------------------------------------------------------
# basics
# --------------------------------------------------------------------------------------------


async def test_simple_get_httpx(running_server):
    srv = running_server(apps.hello)
    async with http_client() as client:
        response = await within(client.get(srv.url("/")))
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.1"
    assert response.text == "hello"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == "5"


async def test_simple_get_aiohttp(running_server):
    srv = running_server(apps.hello)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.get(srv.url("/")) as response:
            assert response.status == 200
            assert await within(response.text()) == "hello"


async def test_keep_alive_serves_two_requests_on_one_connection(running_server):
    seen = Recorder()
    srv = running_server(make_scope_recorder(seen))
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(get("/first"))
        first = await conn.read_response()
        await conn.send(get("/second"))
        second = await conn.read_response()
        client_addr = conn.sockname
    assert (first.status, first.body) == (200, b"/first")
    assert (second.status, second.body) == (200, b"/second")
    assert first.header("connection") != "close"
    # Same TCP connection: the server saw the same client address and port both times.
    assert [s["path"] for s in seen] == ["/first", "/second"]
    assert tuple(seen.items[0]["client"]) == tuple(seen.items[1]["client"]) == tuple(client_addr)


async def test_keep_alive_with_aiohttp_session_reuses_connection(running_server):
    seen = Recorder()
    srv = running_server(make_scope_recorder(seen))
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=5)
    ) as session:
        for path in ("/a", "/b", "/c"):
            async with session.get(srv.url(path)) as response:
                assert await within(response.read()) == path.encode()
    assert len({tuple(s["client"]) for s in seen}) == 1


async def test_pipelined_requests_are_answered_in_order(running_server):
    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            await asyncio.sleep(0.2)  # the second request must still wait for this one
        await apps.text_response(send, scope["path"])

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(get("/slow") + get("/fast") + get("/third"))
        bodies = [(await conn.read_response()).body for _ in range(3)]
    assert bodies == [b"/slow", b"/fast", b"/third"]


async def test_a_pipelined_batch_is_answered_whole_and_in_order(running_server):
    # fastws writes a batch's responses together (HttpProtocol.write); all arrive, in order.
    srv = running_server(make_scope_recorder(Recorder()))
    paths = [f"/p{i}" for i in range(16)]
    async with await RawConnection.open(srv.port) as conn:
        for _ in range(3):
            await conn.send(b"".join(get(p) for p in paths))
            got = [(await conn.read_response()).body for _ in paths]
            assert got == [p.encode() for p in paths]


async def test_a_pipelined_response_is_not_held_behind_a_slow_app(running_server):
    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            await asyncio.sleep(1.0)
        await apps.text_response(send, scope["path"])

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        start = time.monotonic()
        await conn.send(get("/fast") + get("/slow"))
        first = await conn.read_response()
        first_s = time.monotonic() - start
        second = await conn.read_response()
    assert (first.body, second.body) == (b"/fast", b"/slow")
    # Held for a loop pass at most, not until the slow app behind it has answered.
    assert first_s < 0.6


async def test_chunked_request_body_is_dechunked(running_server):
    events = Recorder()

    async def app(scope, receive, send):
        body = b""
        while True:
            message = await receive()
            events.add(message)
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await apps.text_response(send, body)

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(
            b"POST /upload HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
        )
        # The first chunk reaches the app before the request is complete: the body streams.
        await events.wait_for(lambda m: m["type"] == "http.request" and m.get("body"))
        await conn.send(b"6;ext=1\r\n world\r\n")
        await conn.send(b"0\r\n\r\n")
        response = await conn.read_response()
    assert response.body == b"hello world"
    assert all(m["type"] == "http.request" for m in events)
    assert events.items[-1]["more_body"] is False
    assert all(m["more_body"] is True for m in events.items[:-1])


async def test_response_without_content_length_is_chunked(running_server):
    async def app(scope, receive, send):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": True})  # no empty chunk
        await send({"type": "http.response.body", "body": b"defgh", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(get())
        head = await conn.read_head()
        assert head.header("transfer-encoding") == "chunked"
        assert head.header("content-length") is None
        # Exact framing: an empty body message must not emit the terminating 0-chunk early.
        raw = await conn.read_exactly(len(b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"))
        assert raw.lower() == b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"
        # And the connection is still usable.
        await conn.send(get())
        assert (await conn.read_response()).body == b"abcdefgh"


async def test_streamed_response_with_content_length_is_not_chunked(running_server):
    async def app(scope, receive, send):
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"6")]}
        )
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    srv = running_server(app)
    async with http_client() as client:
        response = await within(client.get(srv.url("/")))
    assert response.content == b"abcdef"
    assert "transfer-encoding" not in response.headers


# --------------------------------------------------------------------------------------------
# Expect: 100-continue (RFC 9110 §10.1.1)
# --------------------------------------------------------------------------------------------


async def test_expect_100_continue_is_sent_when_the_app_reads_the_body(running_server):
    reading = Recorder()

    async def app(scope, receive, send):
        await asyncio.sleep(0.3)  # the interim response must wait for the app to ask
        reading.add("receive")
        body = await apps.read_body(receive)
        await apps.text_response(send, b"got " + body)

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(
            b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        await conn.assert_open(0.15)  # nothing yet: the app has not called receive()
        interim = await conn.read_head()
        assert interim.status == 100
        assert reading.items == ["receive"]
        await conn.send(b"hello")
        response = await conn.read_response()
    assert (response.status, response.body) == (200, b"got hello")


async def test_expect_100_continue_is_not_sent_when_the_app_answers_without_reading(running_server):
    async def app(scope, receive, send):
        await apps.text_response(send, b"too large", status=413)

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(
            b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 5000000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        response = await conn.read_response()
    assert response.status == 413
    assert response.body == b"too large"


# --------------------------------------------------------------------------------------------
# HEAD, HTTP/1.0
# --------------------------------------------------------------------------------------------


async def test_head_response_sends_headers_but_no_body(running_server):
    async def app(scope, receive, send):
        await apps.text_response(send, "hello")  # the app sends a body even for HEAD

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(b"HEAD / HTTP/1.1\r\nHost: test\r\n\r\n")
        head = await conn.read_response(method="HEAD")
        assert head.status == 200
        assert head.header("content-length") == "5"
        # Had "hello" been written, it would now sit in front of the next status line.
        await conn.send(get())
        response = await conn.read_response()
    assert response.status == 200
    assert response.body == b"hello"


async def test_http_1_0_connection_is_closed_after_the_response(running_server):
    seen = Recorder()
    srv = running_server(make_scope_recorder(seen))
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(b"GET /old HTTP/1.0\r\n\r\n")
        response = await conn.read_response()
        assert response.body == b"/old"
        assert await conn.read_to_eof(3.0) == b""
    assert seen.items[0]["http_version"] == "1.0"


async def test_http_1_0_keep_alive(running_server):
    srv = running_server(apps.hello)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(get(version="1.0", headers="Connection: keep-alive\r\n"))
        first = await conn.read_response()
        assert first.body == b"hello"
        if IS_UVICORN:
            # uvicorn-httptools closes every HTTP/1.0 connection, keep-alive or not
            # (keep_alive = http_version != "1.0" and ...). fastws honours the HTTP/1.0
            # keep-alive extension (RFC 9112 Appendix C.2.2), as h11-based servers do.
            assert await conn.read_to_eof(3.0) == b""
            return
        assert (first.header("connection") or "").lower() == "keep-alive"
        await conn.send(get(version="1.0", headers="Connection: keep-alive\r\n"))
        second = await conn.read_response()
        assert second.body == b"hello"


# --------------------------------------------------------------------------------------------
# disconnects
# --------------------------------------------------------------------------------------------


async def test_http_disconnect_when_the_client_leaves_mid_body(running_server):
    events = Recorder()

    async def app(scope, receive, send):
        while True:
            message = await receive()
            events.add(message)
            if message["type"] == "http.disconnect":
                return

    srv = running_server(app)
    conn = await RawConnection.open(srv.port)
    try:
        await conn.send(b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n0123456789")
        await events.wait_for(lambda m: m["type"] == "http.request")
    finally:
        await conn.close()
    await events.wait_for(lambda m: m["type"] == "http.disconnect")
    assert events.items[0] == {"type": "http.request", "body": b"0123456789", "more_body": True}
    assert events.items[-1] == {"type": "http.disconnect"}


async def test_http_disconnect_while_long_polling(running_server):
    events = Recorder()

    async def app(scope, receive, send):
        events.add(await receive())  # the (empty) request body
        events.add(await receive())  # blocks until the client goes away

    srv = running_server(app)
    conn = await RawConnection.open(srv.port)
    try:
        await conn.send(get("/poll"))
        await events.wait_len(1)
        await asyncio.sleep(0.1)
        assert len(events) == 1, "receive() must block while the client is still there"
    finally:
        await conn.close()
    await events.wait_len(2)
    assert events.items == [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]


async def test_send_after_http_disconnect(running_server):
    outcome = Recorder()

    async def app(scope, receive, send):
        await receive()
        outcome.add(await receive())  # http.disconnect
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"too late"})
        except BaseException as exc:
            outcome.add(exc)
            raise
        outcome.add("send returned")

    srv = running_server(app)
    conn = await RawConnection.open(srv.port)
    try:
        await conn.send(get())
        await asyncio.sleep(0.1)
    finally:
        await conn.close()
    await outcome.wait_len(2)
    assert outcome.items[0] == {"type": "http.disconnect"}
    if IS_UVICORN:
        # uvicorn (HTTP spec_version "2.3") silently drops sends on a closed connection.
        assert outcome.items[1] == "send returned"
    else:
        # HTTP spec 2.4: send() on a closed connection raises a server-specific OSError.
        assert isinstance(outcome.items[1], OSError), outcome.items[1]
        assert type(outcome.items[1]) is not OSError


# --------------------------------------------------------------------------------------------
# default headers
# --------------------------------------------------------------------------------------------


async def test_date_and_server_headers_are_present_by_default(running_server):
    srv = running_server(apps.hello)
    async with http_client() as client:
        response = await within(client.get(srv.url("/")))
    assert SERVER_IMPL in response.headers["server"].lower()
    date = email.utils.parsedate_to_datetime(response.headers["date"])
    assert abs(date.timestamp() - time.time()) < 5
    assert response.headers["date"].endswith(" GMT")


async def test_date_and_server_headers_can_be_disabled(running_server):
    srv = running_server(apps.hello, server_header=False, date_header=False)
    async with http_client() as client:
        response = await within(client.get(srv.url("/")))
    assert response.status_code == 200
    assert "server" not in response.headers
    assert "date" not in response.headers


async def test_app_server_header_is_kept_when_server_header_is_disabled(running_server):
    async def app(scope, receive, send):
        await apps.text_response(send, "x", headers=[(b"server", b"my-app")])

    srv = running_server(app, server_header=False)
    async with http_client() as client:
        response = await within(client.get(srv.url("/")))
    assert response.headers.get_list("server") == ["my-app"]


async def test_configured_headers_are_added_to_every_response(running_server):
    async def app(scope, receive, send):
        status = 404 if scope["path"] == "/missing" else 200
        await apps.text_response(send, "x", status=status)

    srv = running_server(app, headers=[("x-a", "b"), ("X-Powered-By", "tests")])
    async with http_client() as client:
        for path in ("/", "/missing"):
            response = await within(client.get(srv.url(path)))
            assert response.headers["x-a"] == "b"
            assert response.headers["x-powered-by"] == "tests"


# --------------------------------------------------------------------------------------------
# malformed requests
# --------------------------------------------------------------------------------------------

MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "bad version": b"GET / HTTP/x.y\r\nHost: test\r\n\r\n",
    "space in header name": b"GET / HTTP/1.1\r\nHost: test\r\nBad Header: y\r\n\r\n",
    "header without colon": b"GET / HTTP/1.1\r\nHost: test\r\nNoColonHere\r\n\r\n",
    "non-numeric content-length": b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: abc\r\n\r\n",
    "conflicting content-lengths": (
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ),
    "content-length with chunked": (
        b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n"
    ),
    "bad chunk size": (
        b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n"
    ),
    "NUL in header value": b"GET / HTTP/1.1\r\nHost: test\r\nX-A: a\x00b\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_malformed_request_gets_400_and_connection_closed(running_server, request_bytes):
    async def app(scope, receive, send):
        await apps.read_body(receive)
        await apps.text_response(send, "app reached")

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(request_bytes)
        response = await conn.read_response()
        assert response.status == 400, response
        assert await conn.read_to_eof(3.0) == b""


@pytest.mark.skipif(
    IS_UVICORN, reason="uvicorn-httptools puts no limit on the size of request headers"
)
async def test_oversized_request_headers_get_431(running_server):
    # fastws bounds the header block it buffers (a slow-loris / memory guard); uvicorn with
    # httptools keeps buffering whatever arrives.
    srv = running_server(apps.hello)
    async with await RawConnection.open(srv.port) as conn:
        head = b"GET / HTTP/1.1\r\nHost: test\r\n"
        filler = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 4000) for i in range(256))  # ~1 MiB
        try:
            await conn.send(head + filler + b"\r\n")
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server may stop reading once over the limit; the answer is still there
        response = await conn.read_response()
    assert response.status == 431


# --------------------------------------------------------------------------------------------
# application errors
# --------------------------------------------------------------------------------------------


async def test_app_exception_before_response_gives_500(running_server):
    async def app(scope, receive, send):
        if scope["path"] == "/boom":
            raise RuntimeError("boom")
        await apps.text_response(send, "fine")

    srv = running_server(app)
    async with http_client() as client:
        response = await within(client.get(srv.url("/boom")))
        assert response.status_code == 500
        assert "boom" not in response.text  # no traceback leaks to the client
        # The server is unaffected.
        assert (await within(client.get(srv.url("/")))).text == "fine"


async def test_app_returning_without_response_gives_500(running_server):
    async def app(scope, receive, send):
        return None

    srv = running_server(app)
    async with http_client() as client:
        response = await within(client.get(srv.url("/")))
    assert response.status_code == 500


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_app_exception_mid_body_closes_the_connection(running_server, framing):
    async def app(scope, receive, send):
        headers = [(b"content-length", b"10")] if framing == "content-length" else []
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"hello", "more_body": True})
        raise RuntimeError("mid-body failure")

    srv = running_server(app)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(get())
        head = await conn.read_head()
        assert head.status == 200
        rest = await conn.read_to_eof(3.0)
    # The response is cut short, never completed with made-up bytes.
    if framing == "content-length":
        assert rest == b"hello"
    else:
        assert rest.lower() == b"5\r\nhello\r\n"  # no terminating 0-chunk


# --------------------------------------------------------------------------------------------
# scope
# --------------------------------------------------------------------------------------------


async def test_http_scope_fields(running_server):
    seen = Recorder()
    srv = running_server(make_scope_recorder(seen))
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(
            b"POST /caf%C3%A9/a%20b/%2F?x=1&y=%20z&k=caf%C3%A9 HTTP/1.1\r\n"
            b"Host: test\r\n"
            b"X-Mixed-Case: Value\r\n"
            b"X-Latin: \xe9t\xe9\r\n"
            b"X-Dup: 1\r\n"
            b"X-Dup: 2\r\n"
            b"Content-Length: 0\r\n\r\n"
        )
        response = await conn.read_response()
        client_addr = conn.sockname
    assert response.status == 200
    scope = seen.items[0]
    assert scope["type"] == "http"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["asgi"]["spec_version"].startswith("2.")
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "POST"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/café/a b//"
    assert scope["raw_path"] == b"/caf%C3%A9/a%20b/%2F"
    assert scope["query_string"] == b"x=1&y=%20z&k=caf%C3%A9"
    assert scope["root_path"] == ""
    headers = [(bytes(n), bytes(v)) for n, v in scope["headers"]]
    assert (b"x-mixed-case", b"Value") in headers
    assert (b"x-latin", b"\xe9t\xe9") in headers  # bytes as received, not re-encoded
    assert [v for n, v in headers if n == b"x-dup"] == [b"1", b"2"]
    assert all(n == n.lower() for n, _ in headers)
    assert [n for n, _ in headers][:2] == [b"host", b"x-mixed-case"]  # order preserved
    assert tuple(scope["client"]) == tuple(client_addr)
    assert tuple(scope["server"]) == ("127.0.0.1", srv.port)
    assert scope["state"] == {}


async def test_http_scope_root_path(running_server):
    seen = Recorder()
    srv = running_server(make_scope_recorder(seen), root_path="/api")
    async with http_client() as client:
        response = await within(client.get(srv.url("/items/1?q=2")))
    assert response.status_code == 200
    scope = seen.items[0]
    assert scope["root_path"] == "/api"
    # As in uvicorn (and the spec's WSGI mapping, PATH_INFO = path minus root_path), the
    # mount point is prepended to path and raw_path, so routers can strip it.
    assert scope["path"] == "/api/items/1"
    assert scope["raw_path"] == b"/api/items/1"
    assert scope["query_string"] == b"q=2"

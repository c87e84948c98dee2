"""Resource limits against a live server: ``--limit-concurrency`` (503 for requests and for
upgrades), the request-head timeout (``timeout_handshake``, slowloris), ``--timeout-keep-alive``,
the request head limits (431 / 414) and ``--backlog``. Every wait is bounded; timings use short
limits with generous margins so that a loaded 2-core machine does not make them flaky."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest

from . import apps
from .conftest import (
    HOST,
    IS_UVICORN,
    RawConnection,
    Recorder,
    upgrade_request,
    within,
    ws_connect_raw,
)

pytestmark = pytest.mark.timeout(30)

fastws_only = pytest.mark.skipif(IS_UVICORN, reason="a fastws-only option")


def make_app(record: Recorder, release: threading.Event | None = None) -> apps.App:
    """HTTP: records the path; /hold waits for ``release`` before answering. WebSocket: echo."""

    async def app(scope: apps.Scope, receive: apps.Receive, send: apps.Send) -> None:
        if scope["type"] == "lifespan":
            await apps.run_lifespan(scope, receive, send)
            return
        record.add((scope["type"], scope["path"]))
        if scope["type"] == "websocket":
            await apps.echo_websocket(scope, receive, send)
            return
        if scope["path"] == "/hold" and release is not None:
            deadline = time.monotonic() + 10.0
            while not release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        if scope["path"] == "/slow":
            await asyncio.sleep(1.5)
        await apps.text_response(send, "ok")

    return app


def get(path: str = "/", headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode()


async def closed_within(conn: RawConnection, timeout_s: float) -> float:
    """Seconds until the server closes ``conn`` (EOF or reset); fails after ``timeout_s``."""
    start = time.monotonic()
    try:
        while await within(conn.reader.read(65536), timeout_s):
            pass
    except ConnectionResetError:
        pass
    except asyncio.TimeoutError:
        raise AssertionError(f"connection still open after {timeout_s} s") from None
    return time.monotonic() - start


# --------------------------------------------------------------------------------------------
# --limit-concurrency
# --------------------------------------------------------------------------------------------


async def test_limit_concurrency_answers_503_to_http(running_server):
    record, release = Recorder(), threading.Event()
    # fastws serves up to N connections; uvicorn refuses once N are open, its own included.
    srv = running_server(make_app(record, release), limit_concurrency=2 if IS_UVICORN else 1)
    try:
        async with await RawConnection.open(srv.port) as busy:
            await busy.send(get("/hold"))
            await record.wait_for(lambda item: item == ("http", "/hold"))
            async with await RawConnection.open(srv.port) as extra:
                await extra.send(get("/second"))
                response = await extra.read_response()
            assert response.status == 503
            assert response.body == b"Service Unavailable"
            release.set()
            assert (await busy.read_response()).status == 200
    finally:
        release.set()
    assert ("http", "/second") not in list(record)
    # Capacity is back once the first connection has gone.
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        assert (await within(client.get(srv.url("/third")))).status_code == 200


@fastws_only
async def test_limit_concurrency_answers_503_to_an_upgrade(running_server):
    record = Recorder()
    srv = running_server(make_app(record), limit_concurrency=1)
    first = await ws_connect_raw(srv.port, "/first")
    try:
        async with await RawConnection.open(srv.port) as conn:
            response = await conn.handshake("/second")
            assert response.status == 503
            assert await conn.read_to_eof(3.0) == b""
    finally:
        await first.close()
    assert ("websocket", "/second") not in list(record)
    # Once the first session has ended, an upgrade gets through again.
    deadline = time.monotonic() + 5.0
    while True:
        async with await RawConnection.open(srv.port) as conn:
            if (await conn.handshake("/third")).status == 101:
                break
        assert time.monotonic() < deadline, "upgrade still refused after the first session ended"
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------------------------
# request-head timeout (slowloris)
# --------------------------------------------------------------------------------------------


async def trickle(conn: RawConnection, data: bytes, interval_s: float) -> None:
    """Send ``data`` one byte at a time; stop quietly when the server has closed."""
    for i in range(len(data)):
        try:
            conn.writer.write(data[i : i + 1])
            await conn.writer.drain()
        except (ConnectionError, OSError):
            return
        await asyncio.sleep(interval_s)


@fastws_only
@pytest.mark.parametrize(
    "head",
    [
        get("/", "X-Padding: " + "p" * 200 + "\r\n"),
        upgrade_request("/ws", extra=[("X-Padding", "p" * 200)]),
    ],
    ids=["http", "upgrade"],
)
async def test_slowloris_is_dropped_after_the_handshake_timeout(running_server, head):
    record = Recorder()
    srv = running_server(make_app(record), timeout_handshake=1.0)
    async with await RawConnection.open(srv.port) as conn:
        # One header byte every 0.2 s: the head would take about 50 s to arrive.
        sender = asyncio.ensure_future(trickle(conn, head, 0.2))
        try:
            elapsed = await closed_within(conn, 6.0)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
    assert 0.8 <= elapsed < 4.0, elapsed  # the bytes kept coming; the timeout still applied
    assert list(record) == []


@fastws_only
async def test_silent_connection_is_dropped_after_the_handshake_timeout(running_server):
    srv = running_server(make_app(Recorder()), timeout_handshake=0.5)
    async with await RawConnection.open(srv.port) as conn:
        elapsed = await closed_within(conn, 5.0)
    assert 0.4 <= elapsed < 3.0, elapsed


@fastws_only
async def test_handshake_timeout_does_not_cut_a_slow_app_or_an_open_session(running_server):
    srv = running_server(make_app(Recorder()), timeout_handshake=0.5)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(get("/slow"))  # the app takes 1.5 s
        assert (await conn.read_response(timeout_s=5.0)).status == 200
    ws = await ws_connect_raw(srv.port)
    try:
        await asyncio.sleep(1.0)
        await ws.send(b"\x81\x82" + b"\x00\x00\x00\x00" + b"hi")  # masked text "hi", zero key
        reply = await ws.read_frame_skipping_pings()
        assert reply.payload == b"hi"
    finally:
        await ws.close()


# --------------------------------------------------------------------------------------------
# --timeout-keep-alive
# --------------------------------------------------------------------------------------------


async def test_idle_keep_alive_connection_is_closed_after_the_timeout(running_server):
    srv = running_server(make_app(Recorder()), timeout_keep_alive=1)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(get())
        response = await conn.read_response()
        assert response.status == 200
        assert response.header("connection") != "close"
        start = time.monotonic()
        await conn.assert_open(0.5)  # kept alive for a while...
        await closed_within(conn, 5.0)  # ...then closed
        elapsed = time.monotonic() - start
    assert 0.8 <= elapsed < 4.0, elapsed


async def test_keep_alive_timer_restarts_with_each_request(running_server):
    srv = running_server(make_app(Recorder()), timeout_keep_alive=1)
    async with await RawConnection.open(srv.port) as conn:
        for _ in range(3):  # 3 x 0.6 s idle: longer than the timeout in total, never at once
            await conn.send(get())
            assert (await conn.read_response()).status == 200
            await asyncio.sleep(0.6)
        await conn.send(get())
        assert (await conn.read_response()).status == 200


# --------------------------------------------------------------------------------------------
# request head limits
# --------------------------------------------------------------------------------------------


async def refused(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request``; return the status and what followed (the server then closes)."""
    async with await RawConnection.open(port) as conn:
        try:
            await conn.send(request)
        except (ConnectionResetError, BrokenPipeError):
            pass  # over the limit, the server may stop reading; its answer is still there
        response = await conn.read_response()
        rest = await conn.read_to_eof(3.0) if response.status >= 400 else b""
    return response.status, rest


def headers(n: int) -> str:
    return "".join(f"X-H{i}: v\r\n" for i in range(n))


@fastws_only
async def test_header_count_limit(running_server):
    record = Recorder()
    srv = running_server(make_app(record), limit_request_fields=5)
    assert (await refused(srv.port, get("/ok", headers(4))))[0] == 200  # Host + 4 = 5
    assert await refused(srv.port, get("/no", headers(5))) == (431, b"")
    assert (await refused(srv.port, upgrade_request("/ws")))[0] == 101  # exactly 5 headers
    assert (await refused(srv.port, upgrade_request("/ws", extra=[("X-A", "1")])))[0] == 431
    assert list(record) == [("http", "/ok"), ("websocket", "/ws")]


@fastws_only
async def test_header_field_size_limit(running_server):
    record = Recorder()
    srv = running_server(make_app(record), limit_request_field_size=100)
    fits = "x-fits" + ": " + "v" * (100 - len("x-fits"))  # name + value = 100 bytes
    assert (await refused(srv.port, get("/ok", fits + "\r\n")))[0] == 200
    too_big = "x-big: " + "v" * (101 - len("x-big"))
    assert await refused(srv.port, get("/no", too_big + "\r\n")) == (431, b"")
    upgrade = upgrade_request("/ws", extra=[("X-Big", "v" * 200)])
    assert (await refused(srv.port, upgrade))[0] == 431
    assert list(record) == [("http", "/ok")]


@fastws_only
async def test_request_line_limit(running_server):
    record = Recorder()
    srv = running_server(make_app(record), limit_request_line=200)
    assert (await refused(srv.port, get("/" + "a" * 100)))[0] == 200
    status, rest = await refused(srv.port, get("/" + "a" * 300))
    assert (status, rest) == (414, b"")
    assert (await refused(srv.port, upgrade_request("/" + "a" * 300)))[0] == 414
    assert list(record) == [("http", "/" + "a" * 100)]


def default(name: str) -> int:
    from fastws.config import option_default

    value = option_default(name)
    assert isinstance(value, int)
    return value


@fastws_only
async def test_default_limits_refuse_one_field_past_the_default_count(running_server):
    srv = running_server(make_app(Recorder()))
    limit = default("limit_request_fields")
    assert (await refused(srv.port, get("/", headers(limit - 1))))[0] == 200  # with Host
    assert (await refused(srv.port, get("/", headers(limit))))[0] == 431


@fastws_only
async def test_default_limits_refuse_10000_headers(running_server):
    srv = running_server(make_app(Recorder()))
    assert await refused(srv.port, get("/", headers(10_000))) == (431, b"")


@fastws_only
async def test_limits_are_per_request_on_a_keep_alive_connection(running_server):
    srv = running_server(make_app(Recorder()), limit_request_fields=5)
    async with await RawConnection.open(srv.port) as conn:
        for _ in range(3):  # 3 x 4 headers: counted per request, not per connection
            await conn.send(get("/", headers(4)))
            assert (await conn.read_response()).status == 200


@fastws_only
async def test_unterminated_huge_header_is_refused_before_the_timeout(running_server):
    srv = running_server(make_app(Recorder()), timeout_handshake=3.0)
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: ")
        chunk = b"v" * 65536
        # What the default limits let a whole head take (line + fields x (field + 4)), and
        # 1 MiB more: one field that never ends must not be buffered past that bound.
        bound = default("limit_request_line") + default("limit_request_fields") * (
            default("limit_request_field_size") + 4
        )
        try:
            for _ in range(bound // len(chunk) + 16):
                await conn.send(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass
        response = await conn.read_response(timeout_s=2.0)
    assert response.status == 431


# --------------------------------------------------------------------------------------------
# --backlog
# --------------------------------------------------------------------------------------------


async def test_backlog_reaches_create_server(monkeypatch):
    """Unit-level: the option is what the server passes to loop.create_server."""
    if IS_UVICORN:
        from uvicorn import Config, Server
    else:
        from fastws.config import Config  # type: ignore[assignment]
        from fastws.server import Server  # type: ignore[assignment]

    seen: list[Any] = []
    loop = asyncio.get_running_loop()
    real = loop.create_server

    async def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("backlog"))
        return await real(*args, **kwargs)

    monkeypatch.setattr(loop, "create_server", recording)
    config = Config(apps.hello, host=HOST, port=0, lifespan="off", log_level="warning", backlog=7)
    server = Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        deadline = time.monotonic() + 5.0
        while not server.started:
            assert not task.done(), task
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
    finally:
        server.should_exit = True
        await within(task, 10.0)
    assert seen == [7]


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_backlog_is_the_listen_queue_of_the_socket(running_server):
    """End to end: for a listening socket, ss's Send-Q column is the kernel's accept backlog."""
    srv = running_server(apps.hello, backlog=7)
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{srv.port}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout.split()
    assert out[0] == "LISTEN", out
    assert int(out[2]) == 7, out


def test_backlog_from_the_command_line(server_process):
    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2)")
    sp = server_process("tests.integration.apps:hello", "--backlog", "13")
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{sp.port}"], capture_output=True, text=True, timeout=10
    ).stdout.split()
    assert int(out[2]) == 13, out

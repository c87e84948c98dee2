"""Pipelined HTTP/1.1 requests on one HttpProtocol: the responses of a batch go out together.

While requests wait behind the one being answered, HttpProtocol.write() holds the responses
and writes them in one go once the last of the batch is complete, so a pipelined batch costs
one send() instead of one per response. Held bytes never wait long: the hold is bounded in
size (_HOLD_MAX), ends at a loop pass in which no response completed (an app that waits on
something), and comes before anything else the connection writes or a close. Runs on both
builds of fastws.http.protocol (the `http_protocol` fixture) over the recording FakeTransport.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(30)


def get(path: str, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n".encode()


async def path_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers with the request's path as its body; /big/N with N bytes."""
    path = scope["path"]
    body = b"x" * int(path[5:]) if path.startswith("/big/") else path.encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def run_passes(loop: asyncio.AbstractEventLoop, n: int = 50) -> None:
    for _ in range(n):
        loop.run_until_complete(asyncio.sleep(0))


def bodies(written: bytes) -> list[bytes]:
    """The bodies of the responses in ``written``, in order (each has a content-length)."""
    out = []
    pos = 0
    while pos < len(written):
        end = written.index(b"\r\n\r\n", pos) + 4
        length = int(re.search(rb"content-length: (\d+)", written[pos:end]).group(1))
        out.append(written[end : end + length])
        pos = end + length
    return out


def test_a_pipelined_batch_is_answered_in_one_write(http_protocol, loop, http_connect):
    protocol, transport = http_connect(http_protocol, loop, path_app)
    paths = [f"/r{i}" for i in range(16)]
    transport.feed(b"".join(get(p) for p in paths))
    run_passes(loop)
    assert len(transport.writes) == 1
    assert bodies(transport.written) == [p.encode() for p in paths]
    assert protocol.held is None
    assert not protocol.server_state.tasks  # each request's task has left the set itself


def test_a_request_with_nothing_behind_it_is_written_at_once(http_protocol, loop, http_connect):
    protocol, transport = http_connect(http_protocol, loop, path_app)
    for i in range(3):
        transport.feed(get(f"/one{i}"))
        run_passes(loop, 3)
        assert bodies(transport.written)[-1] == f"/one{i}".encode()
    assert len(transport.writes) == 3


def test_held_responses_are_written_at_the_size_bound(http_protocol, loop, http_connect):
    protocol, transport = http_connect(http_protocol, loop, path_app)
    size = 40_000
    transport.feed(b"".join(get(f"/big/{size}") for _ in range(8)))
    run_passes(loop)
    assert bodies(transport.written) == [b"x" * size] * 8
    # Each write is at most the bound plus the one response that crossed it.
    assert max(len(w) for w in transport.writes) < http_protocol._HOLD_MAX + size + 200
    assert 1 < len(transport.writes) < 8


def test_a_response_is_not_held_behind_an_app_that_waits(http_protocol, loop, http_connect):
    release = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await release.wait()
        await path_app(scope, receive, send)

    protocol, transport = http_connect(http_protocol, loop, app)
    transport.feed(get("/fast") + get("/slow") + get("/after"))
    run_passes(loop, 10)
    # /slow's app waits: /fast's response went out without waiting for it.
    assert bodies(transport.written) == [b"/fast"]
    release.set()
    run_passes(loop)
    assert bodies(transport.written) == [b"/fast", b"/slow", b"/after"]


def test_held_responses_go_out_before_a_close(http_protocol, loop, http_connect):
    protocol, transport = http_connect(http_protocol, loop, path_app)
    transport.feed(get("/a") + get("/b") + get("/c", "Connection: close\r\n"))
    run_passes(loop)
    # FakeTransport refuses a write after close(): everything held was written first.
    assert bodies(transport.written) == [b"/a", b"/b", b"/c"]
    assert transport.calls.count("close") == 1
    assert protocol.held is None


def test_request_tasks_leave_the_server_set_however_the_app_ends(http_protocol, loop, http_connect):
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/raise":
            raise ValueError("app bug")
        if scope["path"] == "/cancel":
            raise asyncio.CancelledError
        await path_app(scope, receive, send)

    protocol, transport = http_connect(http_protocol, loop, app)
    transport.feed(get("/ok"))
    run_passes(loop, 5)
    transport.feed(get("/raise"))
    run_passes(loop, 5)
    assert b" 500 " in transport.writes[-1]
    assert not protocol.server_state.tasks
    protocol2, transport2 = http_connect(http_protocol, loop, app)
    transport2.feed(get("/cancel"))
    run_passes(loop, 5)
    assert not protocol2.server_state.tasks

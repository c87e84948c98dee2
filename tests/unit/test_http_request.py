"""The request side of HttpProtocol on both builds: the scope's path, raw_path and query_string
for each request-target form (RFC 9112 §3.2), and the task each request's app runs in.

Origin-form targets are split without httptools' URL parser; the other forms go through it.
Both must give the scope httptools.parse_url() would. Runs on both builds of
fastws.http.protocol (the `http_protocol` fixture) over the recording FakeTransport.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import httptools
import pytest

pytestmark = pytest.mark.timeout(30)

TARGETS = [
    "/",
    "/a/b",
    "/a?x=1",
    "/a?",
    "/?q",
    "/a?b?c",
    "/a%20b/caf%C3%A9?x=%20",
    "//double//slash",
    "/a;p=1?q=2&r",
    "http://example.com/p?q=1",
    "http://example.com",
    "/frag#ment",
    "/q?x#y",
]


def request(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def run_passes(loop: asyncio.AbstractEventLoop, n: int = 20) -> None:
    for _ in range(n):
        loop.run_until_complete(asyncio.sleep(0))


def recorder(seen: list[dict[str, Any]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append({**scope, "task": asyncio.current_task()})
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


def expected(target: str, root_path: str = "") -> tuple[str, bytes, bytes]:
    """What the scope holds for ``target``, from httptools' own URL parser."""
    parsed = httptools.parse_url(target.encode())
    raw_path = parsed.path or b"/"
    return (
        root_path + urllib.parse.unquote(raw_path.decode("ascii")),
        root_path.encode() + raw_path,
        parsed.query or b"",
    )


@pytest.mark.parametrize("root_path", ["", "/api"])
def test_every_target_form_gives_the_scope_httptools_would(
    http_protocol, loop, http_connect, root_path
):
    seen: list[dict[str, Any]] = []
    protocol, transport = http_connect(http_protocol, loop, recorder(seen), root_path=root_path)
    transport.feed(b"".join(request(t) for t in TARGETS))
    run_passes(loop)
    assert len(seen) == len(TARGETS)
    for target, scope in zip(TARGETS, seen, strict=True):
        got = (scope["path"], scope["raw_path"], scope["query_string"])
        assert got == expected(target, root_path), target
    assert transport.written.count(b"HTTP/1.1 204 ") == len(TARGETS)


def test_origin_form_split_by_hand(http_protocol, loop, http_connect):
    # Written out, so that this test does not only agree with httptools.
    seen: list[dict[str, Any]] = []
    protocol, transport = http_connect(http_protocol, loop, recorder(seen))
    transport.feed(request("/a%2Fb/c?x=1?y#z") + request("/") + request("/p?"))
    run_passes(loop)
    assert [(s["path"], s["raw_path"], s["query_string"]) for s in seen] == [
        ("/a/b/c", b"/a%2Fb/c", b"x=1?y"),
        ("/", b"/", b""),
        ("/p", b"/p", b""),
    ]


def test_each_request_gets_a_scope_of_its_own(http_protocol, loop, http_connect):
    # Scopes start as a copy of the connection's template: what one request's app changes
    # in its scope (keys, and the dicts in it) must not reach the next request's scope.
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append({k: dict(v) if isinstance(v, dict) else v for k, v in scope.items()})
        scope["asgi"]["version"] = "spoiled"
        scope["state"]["spoiled"] = True
        scope["extensions"]["spoiled"] = {}
        scope["spoiled"] = True
        scope["client"] = ("10.0.0.1", 1)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = http_connect(http_protocol, loop, app)
    transport.feed(request("/1") + b"HEAD /2?q HTTP/1.0\r\nHost: test\r\n\r\n")
    run_passes(loop)
    assert len(seen) == 2
    first, second = seen
    assert set(first) == set(second) == {
        "type", "asgi", "http_version", "server", "client", "scheme", "method", "root_path",
        "path", "raw_path", "query_string", "headers", "state", "extensions",
    }  # fmt: skip
    assert None not in first.values() and None not in second.values()
    assert second["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert "spoiled" not in second["state"] and "spoiled" not in second["extensions"]
    assert second["client"] == ("127.0.0.1", 40000)
    assert (first["method"], first["http_version"], first["path"]) == ("GET", "1.1", "/1")
    assert (second["method"], second["http_version"], second["path"]) == ("HEAD", "1.0", "/2")
    assert second["query_string"] == b"q" and first["query_string"] == b""
    assert first["headers"] is not second["headers"]


def test_each_request_runs_in_its_own_named_task(http_protocol, loop, http_connect):
    seen: list[dict[str, Any]] = []
    protocol, transport = http_connect(http_protocol, loop, recorder(seen))
    transport.feed(request("/1") + request("/2"))
    run_passes(loop)
    tasks = [s["task"] for s in seen]
    assert len(tasks) == 2 and tasks[0] is not tasks[1]
    assert [t.get_name() for t in tasks] == ["fastws.http", "fastws.http"]
    assert not protocol.tasks


def test_a_task_factory_the_app_sets_is_used(http_protocol, loop, http_connect):
    made: list[asyncio.Task[Any]] = []

    def factory(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    seen: list[dict[str, Any]] = []
    protocol, transport = http_connect(http_protocol, loop, recorder(seen))
    loop.set_task_factory(factory)
    try:
        transport.feed(request("/"))
        run_passes(loop)
    finally:
        loop.set_task_factory(None)
    assert made and seen[0]["task"] is made[0]
    assert made[0].get_name() == "fastws.http"
    assert b"HTTP/1.1 204 " in transport.written


def test_app_task_of_the_websocket_side(protocol, loop):
    module = protocol  # one build of fastws.ws.protocol

    async def nothing() -> int:
        return 7

    task = module.app_task(loop, nothing(), "fastws.websocket")
    assert type(task) is asyncio.Task and task.get_name() == "fastws.websocket"
    assert loop.run_until_complete(task) == 7

    made: list[Any] = []

    def factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
        made.append(kwargs)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        task = module.app_task(loop, nothing(), "fastws.websocket")
        assert loop.run_until_complete(task) == 7
    finally:
        loop.set_task_factory(None)
    assert made and task.get_name() == "fastws.websocket"

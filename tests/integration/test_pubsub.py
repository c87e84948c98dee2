"""Server-side publish/subscribe on one server (docs/pubsub.md): the ASGI extension with real
clients, ordering, the publisher-excluded option, publishing from HTTP, the slow-subscriber
budget, and no leak over many subscribe/close cycles. Redis: test_pubsub_redis.py."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import os
import threading
import time

import aiohttp
import pytest
from websockets.asyncio.client import connect

from fastws import accept

from . import pubsub_app
from .conftest import IS_FASTWS, REPO_ROOT, frame, ws_connect_raw

EXAMPLE = REPO_ROOT / "examples" / "pubsub_fastapi.py"

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not IS_FASTWS, reason="fastws's own extension"),
]


async def command(ws, **body) -> None:
    await ws.send(json.dumps(body))


async def subscribed(ws, topic: str) -> None:
    await command(ws, sub=topic)
    assert await asyncio.wait_for(ws.recv(), 5) == f"ok:sub:{topic}"


async def test_subscribers_get_publishes_in_order_and_unsubscribe_is_immediate(running_server):
    srv = running_server(pubsub_app.app)
    url = f"ws://127.0.0.1:{srv.port}/"
    async with connect(url) as a, connect(url) as b, connect(url) as publisher:
        await subscribed(a, "news")
        await subscribed(b, "news")
        await subscribed(b, "other")
        await command(publisher, pubbin="news", n=300)
        for ws in (a, b):
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(300)]
            assert got == [b"%d" % i for i in range(300)]
        await command(a, unsub="news")
        assert await asyncio.wait_for(a.recv(), 5) == "ok:unsub:news"
        await command(publisher, pub="news", text="after")
        await command(publisher, pub="other", text="elsewhere")
        assert await asyncio.wait_for(b.recv(), 5) == "after"
        assert await asyncio.wait_for(b.recv(), 5) == "elsewhere"
        # `a` left "news" at once: the next thing it gets is its own answer, not "after".
        await command(a, pid=1)
        assert (await asyncio.wait_for(a.recv(), 5)).startswith("pid:")
    assert srv.server.server_state.hub.topics == {}


async def test_publisher_gets_its_own_message_unless_it_excludes_itself(running_server):
    srv = running_server(pubsub_app.app)
    url = f"ws://127.0.0.1:{srv.port}/"
    async with connect(url) as me, connect(url) as other:
        await subscribed(me, "room")
        await subscribed(other, "room")
        await command(me, pub="room", text="one", exclude=True)
        await command(me, pub="room", text="two")
        assert await asyncio.wait_for(other.recv(), 5) == "one"
        assert await asyncio.wait_for(other.recv(), 5) == "two"
        assert await asyncio.wait_for(me.recv(), 5) == "two"  # "one" was not sent to me


async def test_own_sends_and_received_publishes_keep_issue_order(running_server):
    srv = running_server(pubsub_app.app)
    async with connect(f"ws://127.0.0.1:{srv.port}/") as ws:
        await subscribed(ws, "t")
        for _ in range(20):
            await command(ws, mix="t")
        got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(60)]
        assert got == ["a", "b", "c"] * 20


async def test_http_endpoint_publishes_through_the_helper(running_server):
    srv = running_server(pubsub_app.app)
    async with connect(f"ws://127.0.0.1:{srv.port}/") as ws:
        await subscribed(ws, "feed")
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{srv.port}/publish/feed", data="hello") as r:
                assert r.status == 200
        assert await asyncio.wait_for(ws.recv(), 5) == "hello"


async def test_fastapi_example_publishes_from_http_and_websockets(running_server):
    pytest.importorskip("fastapi")
    spec = importlib.util.spec_from_file_location("pubsub_fastapi", EXAMPLE)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    srv = running_server(example.app, lifespan="on")
    base = f"127.0.0.1:{srv.port}"
    async with connect(f"ws://{base}/ws/lobby") as a, connect(f"ws://{base}/ws/lobby") as b:
        assert await asyncio.wait_for(a.recv(), 5) == "joined lobby"
        assert await asyncio.wait_for(b.recv(), 5) == "joined lobby"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://{base}/rooms/lobby", data="from http") as r:
                assert r.status == 200
            async with http.post(f"http://{base}/rooms/lobby/sync") as r:
                assert r.status == 200
        for ws in (a, b):
            assert await asyncio.wait_for(ws.recv(), 5) == "from http"
            assert await asyncio.wait_for(ws.recv(), 5) == "from a thread"
        await a.send("hi from a")
        assert await asyncio.wait_for(b.recv(), 5) == "hi from a"
        await b.send("hi from b")
        assert await asyncio.wait_for(a.recv(), 5) == "hi from b"  # and not "hi from a"


def _buffered(srv) -> list[int]:
    return [c.transport.get_write_buffer_size() for c in list(srv.server.server_state.connections)]


async def test_slow_subscriber_is_closed_with_1013_and_its_buffer_stays_bounded(running_server):
    budget = 256 * 1024
    srv = running_server(pubsub_app.app, ws_max_write_buffer=budget, ws_close_timeout=30)
    hub = srv.server.server_state.hub
    raw = await ws_connect_raw(srv.port)
    try:
        await raw.send(frame(0x1, json.dumps({"sub": "firehose"}).encode()))
        assert (await raw.read_frame()).payload == b"ok:sub:firehose"
        # A subscriber that stops reading: nothing read from now on (the kernel's buffers still
        # take a few MiB; the publisher sends more than that).
        raw.writer.transport.pause_reading()
        url = f"ws://127.0.0.1:{srv.port}/"
        async with connect(url) as publisher, connect(url, max_queue=None) as fast:
            await subscribed(fast, "firehose")
            # 16 MiB published: 64x the budget. The publisher never waits on the slow one.
            await command(publisher, flood="firehose", n=4096, size=4096)
            got = 0
            while got < 4096:
                assert await asyncio.wait_for(fast.recv(), 10) == b"x" * 4096
                got += 1
            assert await asyncio.wait_for(publisher.recv(), 10) == "done"
            assert max(_buffered(srv)) <= budget + 64
            assert hub.subscribers("firehose") == 1  # the slow one left the topic
        # The slow one reads at last: whatever fitted, then a close frame with 1013.
        raw.writer.transport.resume_reading()
        frames = 0
        while True:
            f = await raw.read_frame(timeout_s=10)
            if f.opcode == 0x8:
                assert f.close_code == 1013
                break
            assert f.opcode == 0x2 and f.payload == b"x" * 4096
            frames += 1
        assert 0 < frames < 4096
    finally:
        await raw.close()


async def test_send_overflow_close_makes_plain_send_never_wait(running_server):
    sent: list[int] = []
    finished = threading.Event()

    async def flooding(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        await receive()  # the client's go
        try:
            for i in range(8192):  # 32 MiB
                await send({"type": "websocket.send", "bytes": b"y" * 4096})
                sent.append(i)
        except OSError:  # ClientDisconnected: closing since the send over budget
            pass
        finally:
            finished.set()

    budget = 128 * 1024
    srv = running_server(flooding, ws_max_write_buffer=budget, ws_send_overflow="close")
    raw = await ws_connect_raw(srv.port)
    try:
        raw.writer.transport.pause_reading()
        await raw.send(frame(0x1, b"go"))
        assert await asyncio.to_thread(finished.wait, 10)
        assert 0 < len(sent) < 8192  # it never waited, and stopped once closed
        assert max(_buffered(srv), default=0) <= budget + 64
        raw.writer.transport.resume_reading()
        while True:
            f = await raw.read_frame(timeout_s=10)
            if f.opcode == 0x8:
                assert f.close_code == 1013
                break
    finally:
        await raw.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(120)
async def test_ten_thousand_subscribe_close_cycles_leak_nothing(running_server):
    from fastws.ws.protocol import _WebSocket

    srv = running_server(pubsub_app.app)
    state = srv.server.server_state
    subscribe = b"".join(frame(0x1, json.dumps({"sub": f"t{i}"}).encode()) for i in range(5))

    async def cycle() -> None:
        raw = await ws_connect_raw(srv.port)
        try:
            await raw.send(subscribe)
            for i in range(5):
                assert (await raw.read_frame()).payload == f"ok:sub:t{i}".encode()
        finally:
            await raw.close()

    async def rounds(n: int) -> None:
        for _ in range(n // 10):
            await asyncio.gather(*(cycle() for _ in range(10)))

    await rounds(100)  # warm up: lazily created objects, allocator pools
    await asyncio.sleep(0.2)
    gc.collect()
    fds = _open_fds()
    alive = sum(isinstance(o, _WebSocket) for o in gc.get_objects())
    await rounds(2000)  # 2,000 connections x 5 topics: 10,000 subscribe/close cycles
    for _ in range(100):
        if not state.connections and not state.hub.topics:
            break
        await asyncio.sleep(0.05)
    gc.collect()
    assert state.hub.topics == {}
    assert not state.connections
    # A burst of accepts registers dups of the listening socket (fastws/accept.py), closed
    # after CALM_TICKS quiet ticks (1 s): wait that long for them, not for a leak.
    deadline = time.monotonic() + 1.0 + accept.CALM_TICKS * 0.1 * 2
    while _open_fds() > fds + 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert _open_fds() <= fds + 2
    assert sum(isinstance(o, _WebSocket) for o in gc.get_objects()) <= alive

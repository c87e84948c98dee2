"""Pub/sub across processes through a real Redis (docs/pubsub.md, "Redis"): two fastws servers
on two ports sharing one redis-server, --workers 2, and Redis killed and restarted mid-test.

The redis-server is the throwaway one of test_chat_redis.py (a free loopback port, no
persistence); FASTWS_SKIP_REDIS=1 turns a missing redis-server or redis package into a skip.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect

from .conftest import IS_FASTWS, find_free_port
from .test_chat_redis import RedisServer, require_redis

APP = "tests.integration.pubsub_app:app"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not IS_FASTWS, reason="fastws's own extension"),
]


@pytest.fixture
def redis_server(tmp_path):
    redis = RedisServer(require_redis(), find_free_port(), tmp_path / "redis.log")
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


async def subscribed(ws, topic: str) -> None:
    await ws.send(json.dumps({"sub": topic}))
    assert await asyncio.wait_for(ws.recv(), 5) == f"ok:sub:{topic}"


async def until_delivered(publisher, receiver, topic: str, timeout_s: float = 30.0) -> None:
    """Publish probes until ``receiver`` gets one (its process's bridge has subscribed to the
    channel, or reconnected), then drain the probes still on the way."""
    deadline = time.monotonic() + timeout_s
    i = 0
    while True:
        assert time.monotonic() < deadline, "no cross-process delivery"
        await publisher.send(json.dumps({"pub": topic, "text": f"probe{i}", "exclude": True}))
        i += 1
        try:
            got = await asyncio.wait_for(receiver.recv(), 0.3)
        except TimeoutError:
            continue
        assert got.startswith("probe")
        break
    await asyncio.sleep(0.5)
    while True:
        try:
            assert (await asyncio.wait_for(receiver.recv(), 0.2)).startswith("probe")
        except TimeoutError:
            return


async def nothing_more(ws) -> None:
    await ws.send(json.dumps({"pid": 1}))
    assert (await asyncio.wait_for(ws.recv(), 5)).startswith("pid:")


async def test_two_servers_share_topics_through_redis_once_each(server_process, redis_server):
    one = server_process(APP, "--pubsub", redis_server.url)
    two = server_process(APP, "--pubsub", redis_server.url)
    async with (
        connect(f"ws://127.0.0.1:{one.port}/") as local,
        connect(f"ws://127.0.0.1:{two.port}/") as remote,
        connect(f"ws://127.0.0.1:{one.port}/") as publisher,
    ):
        await subscribed(local, "t")
        await subscribed(remote, "t")
        await until_delivered(publisher, remote, "t")
        while True:  # the probes `local` got too
            try:
                await asyncio.wait_for(local.recv(), 0.2)
            except TimeoutError:
                break
        await publisher.send(json.dumps({"pubbin": "t", "n": 200}))
        for ws in (local, remote):
            got = [await asyncio.wait_for(ws.recv(), 10) for _ in range(200)]
            assert got == [b"%d" % i for i in range(200)]
            await nothing_more(ws)  # no duplicates: the next frame is the answer


async def test_redis_down_local_delivery_goes_on_and_the_bridge_reconnects(
    server_process, redis_server
):
    one = server_process(APP, "--pubsub", redis_server.url)
    two = server_process(APP, "--pubsub", redis_server.url)
    async with (
        connect(f"ws://127.0.0.1:{one.port}/") as local,
        connect(f"ws://127.0.0.1:{two.port}/") as remote,
        connect(f"ws://127.0.0.1:{one.port}/") as publisher,
    ):
        await subscribed(local, "t")
        await subscribed(remote, "t")
        await until_delivered(publisher, remote, "t")
        redis_server.kill()
        for i in range(20):
            await publisher.send(json.dumps({"pub": "t", "text": f"down{i}"}))
        got = []
        while len(got) < 20:
            message = await asyncio.wait_for(local.recv(), 5)
            if not message.startswith("probe"):
                got.append(message)
        assert got == [f"down{i}" for i in range(20)]
        redis_server.start()
        await until_delivered(publisher, remote, "t", timeout_s=40)
    deadline = time.monotonic() + 10
    while "reachable again" not in one.output and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert "unreachable" in one.output and "reachable again" in one.output


async def test_workers_share_topics_through_redis(server_process, redis_server):
    srv = server_process(APP, "--workers", "2", "--pubsub", redis_server.url)
    url = f"ws://127.0.0.1:{srv.port}/"
    by_pid: dict[str, object] = {}
    spare = []
    try:
        # The kernel deals connections to the workers that are accepting; the second may
        # still be starting when the port first answers, so keep trying for a while.
        deadline = asyncio.get_running_loop().time() + 15
        while len(by_pid) < 2 and asyncio.get_running_loop().time() < deadline:
            if spare:
                await asyncio.sleep(0.05)
            ws = await connect(url)
            await ws.send(json.dumps({"pid": 1}))
            pid = await asyncio.wait_for(ws.recv(), 5)
            if pid in by_pid:
                spare.append(ws)
            else:
                by_pid[pid] = ws
        assert len(by_pid) == 2, "both workers answer"
        a, b = by_pid.values()
        await subscribed(a, "w")
        await subscribed(b, "w")
        await until_delivered(a, b, "w")
        await a.send(json.dumps({"pub": "w", "text": "hello workers"}))
        for ws in (a, b):
            message = await asyncio.wait_for(ws.recv(), 5)
            while message.startswith("probe"):
                message = await asyncio.wait_for(ws.recv(), 5)
            assert message == "hello workers"
            await nothing_more(ws)
    finally:
        for ws in [*by_pid.values(), *spare]:
            await ws.close()

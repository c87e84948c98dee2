"""The broadcast loop every existing app writes (`for ws in room: await ws.send_text(m)`, no
extension): a send() from another task, to a connection whose app waits in receive(), is
corked for the end of the loop pass like a publish (fastws.ws.protocol._hold). Real clients
check that nothing changes for the app: every message arrives, in order, interleaved rightly
with the connection's own sends, and a subscriber that stops reading still stalls the
broadcaster through the transport's flow control instead of growing the server's memory."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect

from .conftest import IS_FASTWS, OP_TEXT, frame, ws_connect_raw

pytestmark = pytest.mark.timeout(60)


class Room:
    """Raw ASGI: /sub registers the connection's send and echoes what it gets ("own:" +
    text); /pub broadcasts each of its messages "N:PREFIX" as N messages "PREFIX-i" to every
    subscriber, in one task step (send() returns at once while writing is not paused), then
    answers "sent"."""

    def __init__(self) -> None:
        self.subscribers: dict[int, Any] = {}
        self.broadcast_sent = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        if scope["path"] == "/sub":
            self.subscribers[id(send)] = send
            await send({"type": "websocket.send", "text": "ok"})
            try:
                while True:
                    message = await receive()
                    if message["type"] == "websocket.disconnect":
                        return
                    await send({"type": "websocket.send", "text": "own:" + message["text"]})
            finally:
                self.subscribers.pop(id(send), None)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            count, prefix = message["text"].split(":", 1)
            for i in range(int(count)):
                for sub in list(self.subscribers.values()):
                    await sub({"type": "websocket.send", "text": f"{prefix}-{i}"})
                    self.broadcast_sent += 1
            await send({"type": "websocket.send", "text": "sent"})


async def test_broadcast_loop_delivers_everything_in_order(running_server):
    room = Room()
    srv = running_server(room)
    url = f"ws://127.0.0.1:{srv.port}"
    subs = [await connect(f"{url}/sub", compression=None) for _ in range(20)]
    for sub in subs:
        assert await asyncio.wait_for(sub.recv(), 5) == "ok"
    async with connect(f"{url}/pub", compression=None) as publisher:
        for round_ in range(5):
            await publisher.send(f"200:r{round_}")
            assert await asyncio.wait_for(publisher.recv(), 10) == "sent"
        for sub in subs:
            got = [await asyncio.wait_for(sub.recv(), 5) for _ in range(1000)]
            assert got == [f"r{r}-{i}" for r in range(5) for i in range(200)]
    for sub in subs:
        await sub.close()


async def test_own_sends_and_broadcasts_keep_the_order_they_were_issued_in(running_server):
    """A subscriber's own echo (its own task) and the broadcasts another task sends it in the
    same loop passes: each side in order, and an echo never overtakes a broadcast issued
    before it (the cork is written before any other write of the connection)."""
    room = Room()
    srv = running_server(room)
    url = f"ws://127.0.0.1:{srv.port}"
    async with connect(f"{url}/sub", compression=None) as sub:
        assert await asyncio.wait_for(sub.recv(), 5) == "ok"
        async with connect(f"{url}/pub", compression=None) as publisher:
            for k in range(50):
                await publisher.send(f"3:b{k}")
                await sub.send(f"e{k}")
            for _ in range(50):
                assert await asyncio.wait_for(publisher.recv(), 10) == "sent"
            got = [await asyncio.wait_for(sub.recv(), 5) for _ in range(200)]
    broadcasts = [m for m in got if not m.startswith("own:")]
    echoes = [m for m in got if m.startswith("own:")]
    assert broadcasts == [f"b{k}-{i}" for k in range(50) for i in range(3)]
    assert echoes == [f"own:e{k}" for k in range(50)]


@pytest.mark.skipif(not IS_FASTWS, reason="reads fastws's connections")
async def test_a_subscriber_that_stops_reading_stalls_the_loop_with_bounded_buffers(
    running_server,
):
    """The cork holds at most _CORK_MAX bytes before it is written, so the transport's flow
    control still sees the bytes: send() to a peer that does not read waits (as on any ASGI
    server), and what the server holds for that peer stays near the transport's high-water
    mark instead of growing with what the broadcaster has."""
    room = Room()
    srv = running_server(room)
    raw = await ws_connect_raw(srv.port, "/sub")
    try:
        assert (await raw.read_frame()).payload == b"ok"
        raw.writer.transport.pause_reading()  # from now on the kernel's buffers fill
        async with connect(f"ws://127.0.0.1:{srv.port}/pub", compression=None) as publisher:
            # 200,000 messages of ~1 KiB (about 200 MiB) for a subscriber that reads nothing.
            await publisher.send("200000:" + "x" * 1000)
            await asyncio.sleep(2.0)
            sent = room.broadcast_sent
            assert sent < 200_000  # the broadcaster waits in send()
            await asyncio.sleep(0.5)
            assert room.broadcast_sent == sent  # and stays waiting
            held = max(
                c.transport.get_write_buffer_size()
                for c in list(srv.server.server_state.connections)
            )
            assert held < 1024 * 1024, held
            # Reading again, the subscriber gets every message in order.
            raw.writer.transport.resume_reading()
            for i in range(2000):
                f = await raw.read_frame(timeout_s=10)
                assert f.opcode == OP_TEXT
                assert f.payload == b"x" * 1000 + b"-%d" % i
            await raw.send(frame(OP_TEXT, b"bye"))
    finally:
        await raw.close()

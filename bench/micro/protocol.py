"""Per-message and per-connection cost of fastws's protocols, without sockets.

Messages (the default): drives fastws.ws.protocol.WebSocketProtocol with an in-memory
transport and a raw ASGI echo app: each round delivers BATCH masked 32-byte text frames in one
read and runs the loop until the app has echoed them all. What it measures is the
Python/Cython work per message (read dispatch, ASGI event dicts, receive/send round trip, frame
encoding), the part a profile of the server under load attributes to fastws rather than to the
kernel.

Connections (--connections N): the lifecycle of `wsload connect` without the kernel: an
HttpProtocol gets the upgrade request, hands over to the WebSocket protocol, the app accepts,
echoes one 32-byte message and the client closes. Measures the per-connection work (request
parsing, handshake, scopes, the app's task), the user-space part of new connections/s.

    .venv/bin/python bench/micro/protocol.py [--messages N] [--batch B] [--loop uvloop|asyncio]
    .venv/bin/python bench/micro/protocol.py --connections 20000
    .venv/bin/python bench/micro/protocol.py --requests 50000 [--batch 1|16]

Requests (--requests N): HTTP keep-alive on one HttpProtocol, the bench app's GET (bench/apps/
echo.py: http.response.start, then one http.response.body), BATCH requests per read (1: one
request per read, as wrk without pipelining; 16: bench/load/pipeline.lua's depth). Measures the
per-request work (parsing callbacks, scope, cycle, the app's task, the response head), the
user-space part of the HTTP scenarios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

from fastws.config import Config
from fastws.http.protocol import HttpProtocol
from fastws.transport import ServerState
from fastws.ws import handshake
from fastws.ws.frames import IMPLEMENTATION, encode_frame
from fastws.ws.protocol import Wakeups, WebSocketProtocol


class MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.frames = 0
        self.closing = False
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        self.written += len(data)
        self.frames += 1

    def writelines(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def get_write_buffer_size(self) -> int:
        return 0  # everything is taken at once

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol


class TCPMemoryTransport(MemoryTransport):
    """What the upgrade path asks of a TCP transport: the two addresses."""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return ("127.0.0.1", 8000)
        if name == "peername":
            return ("127.0.0.1", 50000)
        return default


async def echo(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        reply = {
            "type": "websocket.send",
            "bytes": message.get("bytes"),
            "text": message.get("text"),
        }
        await send(reply)


UPGRADE_REQUEST = (
    b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def feed(protocol: Any, data: bytes) -> None:
    buf = protocol.get_buffer(-1)
    buf[: len(data)] = data
    protocol.buffer_updated(len(data))


def loaded_config() -> Config:
    config = Config(echo, ws_ping_interval=None, access_log=False, log_level="warning")
    config.load()
    return config


GET_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n"  # wrk's request


async def run_requests(requests: int, batch: int) -> float:
    """Seconds per keep-alive request (``batch`` of them pipelined in each read)."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "apps"))
    from echo import app as bench_app  # bench/apps/echo.py: the load benchmarks' app

    config = Config(bench_app, access_log=False, log_level="warning", lifespan="off")
    config.load()
    state = ServerState(Wakeups())
    loop = asyncio.get_running_loop()
    transport = TCPMemoryTransport()
    http = HttpProtocol(config, state, {}, loop)
    transport.protocol = http
    http.connection_made(transport)
    chunk = GET_REQUEST * batch
    sent = 0
    start = time.perf_counter()
    while sent < requests:
        target = state.total_requests + batch
        feed(http, chunk)
        sent += batch
        while state.total_requests < target:
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    transport.closing = True
    http.connection_lost(None)
    await asyncio.sleep(0)
    if state.tasks:
        raise SystemExit(f"leaked: {len(state.tasks)} request tasks still registered")
    return elapsed / sent


async def run(messages: int, batch: int) -> float:
    config = loaded_config()
    state = ServerState(Wakeups())
    transport = MemoryTransport()
    scope = {
        "http_version": "1.1",
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [],
        "state": {},
    }
    offer = handshake.Offer(key=b"dGhlIHNhbXBsZSBub25jZQ==")
    loop = asyncio.get_running_loop()
    proto = WebSocketProtocol(config, state, {}, scope, offer, transport, None, None, loop)
    proto.start(b"")
    while transport.frames < 1:  # the 101 response
        await asyncio.sleep(0)
    chunk = encode_frame(1, "x" * 32, mask=os.urandom(4)) * batch
    sent = 0
    start = time.perf_counter()
    while sent < messages:
        target = transport.frames + batch
        feed(proto, chunk)
        sent += batch
        while transport.frames < target:
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    transport.closing = True
    proto.connection_lost(None)
    await asyncio.sleep(0)
    return elapsed / sent


async def run_connections(connections: int) -> float:
    """Seconds per connection: upgrade, accept, one echoed message, client close."""
    config = loaded_config()
    state = ServerState(Wakeups())
    loop = asyncio.get_running_loop()
    message = encode_frame(1, "x" * 32, mask=os.urandom(4))
    close = encode_frame(8, b"\x03\xe8", mask=os.urandom(4))
    start = time.perf_counter()
    for _ in range(connections):
        transport = TCPMemoryTransport()
        http = HttpProtocol(config, state, {}, loop)
        transport.protocol = http
        http.connection_made(transport)
        feed(http, UPGRADE_REQUEST)
        while transport.frames < 1:  # the 101 response
            await asyncio.sleep(0)
        ws = transport.protocol
        feed(ws, message)
        while transport.frames < 2:  # the echo
            await asyncio.sleep(0)
        feed(ws, close)
        while not transport.closing:  # our close frame, then the transport closed
            await asyncio.sleep(0)
        ws.connection_lost(None)
        transport.protocol = None  # as uvloop's transport does: no cycle left for the GC
        while ws.task in state.tasks:  # the app has returned and its task is done
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - start
    if state.connections or state.tasks:
        raise SystemExit(f"leaked: {len(state.connections)} connections, {len(state.tasks)} tasks")
    return elapsed / connections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--connections", type=int, help="measure whole connections instead (e.g. 20000)"
    )
    parser.add_argument(
        "--requests", type=int, help="measure HTTP keep-alive requests instead (e.g. 50000)"
    )
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        new_loop = uvloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    results = []
    for _ in range(args.rounds):
        loop = new_loop()
        try:
            if args.requests:
                results.append(loop.run_until_complete(run_requests(args.requests, args.batch)))
            elif args.connections:
                results.append(loop.run_until_complete(run_connections(args.connections)))
            else:
                results.append(loop.run_until_complete(run(args.messages, args.batch)))
        finally:
            loop.close()
    med = statistics.median(results)
    if args.requests:
        print(
            f"loop={args.loop} batch={args.batch}: {med * 1e6:.2f} us/request "
            f"(min {min(results) * 1e6:.2f}, max {max(results) * 1e6:.2f}), "
            f"{1 / med:,.0f} requests/s on one core"
        )
        return
    if args.connections:
        print(
            f"codec={IMPLEMENTATION} loop={args.loop}: {med * 1e6:.2f} us/connection "
            f"(min {min(results) * 1e6:.2f}, max {max(results) * 1e6:.2f})"
        )
        return
    print(
        f"codec={IMPLEMENTATION} loop={args.loop} batch={args.batch}: "
        f"{med * 1e6:.2f} us/message (min {min(results) * 1e6:.2f}, max {max(results) * 1e6:.2f}), "
        f"{1 / med:,.0f} messages/s on one core"
    )


if __name__ == "__main__":
    main()

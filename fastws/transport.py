"""What both protocols share with the server: connection state, flow control, disconnects.

Owns ServerState (what every connection of one server's event loop shares), FlowControl (one
connection's reading and writing pauses), BufferedOnly (the asyncio protocol base both
protocols use), ClientDisconnected and how to recognise an exception it caused, and the
interface the server's sweep calls on every connection (Connection), and Stats (the
per-process totals --metrics reports, fastws.metrics). Imports nothing from fastws: the
protocols and the server import it.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from typing import Any, Protocol

SCRATCH_BYTES = 256 * 1024  # the loop's shared read buffer (see fastws/_speedups.pyi, scratch)


class Connection(Protocol):
    """What the server's sweep (Server.on_tick) and shutdown call on each connection."""

    deadline: float  # loop time when expire() is due; 0.0: never

    def expire(self) -> None: ...

    def shutdown(self) -> None: ...


class ServerState:
    """Shared by the connections of one server (one event loop).

    ``wakeups`` (fastws.ws.protocol.Wakeups) wakes the apps' tasks for their messages, and
    ``hub`` (fastws.ws.pubsub.Hub) holds the pub/sub topics; the server makes both, so that this
    module depends on no protocol.
    """

    def __init__(self, wakeups: Any, hub: Any = None, stats: Stats | None = None) -> None:
        self.total_requests = 0
        self.connections: set[Any] = set()  # Connection objects
        self.tasks: set[asyncio.Task[None]] = set()
        self.default_headers: list[tuple[bytes, bytes]] = []
        # One read buffer for every connection of this loop: asyncio calls get_buffer() and the
        # buffer_updated() that consumes it back to back, so an idle connection holds none.
        self.scratch = bytearray(SCRATCH_BYTES)
        self.scratch_view = memoryview(self.scratch)
        self.wakeups = wakeups
        self.hub = hub
        # The "fastws.pubsub" scope extension of every connection of this server: how
        # fastws.pubsub's helpers find this hub from a request or a WebSocket.
        self.pubsub_extension: dict[str, Any] | None = None if hub is None else {"hub": hub}
        # --metrics: what the connections of this loop fold into at their end (None: off).
        self.stats = stats


# Seconds: a keepalive ping's round trip, and an HTTP request from its head to its response.
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Histogram:
    """Counts of observations per bucket (``bounds``: the upper bounds, +Inf implied) and
    their sum: the few lines a histogram needs, for code that observes once per request or
    per pong; fastws.metrics reports it as a Prometheus histogram."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value


class Stats:
    """One process's totals for --metrics (docs/metrics.md), counted where something ends or
    is refused, never per message: a WebSocket's own message and byte counters (C fields of
    the connection) are added here when it closes, and fastws.metrics adds those of the
    connections still open when it reads these."""

    __slots__ = (
        "ws_opened",
        "ws_closed",
        "refused",
        "msgs_in",
        "msgs_out",
        "texts_in",
        "texts_out",
        "bytes_in",
        "bytes_out",
        "overflows",
        "http_status",
        "http_duration",
        "ping_rtt",
    )

    def __init__(self) -> None:
        self.ws_opened = 0
        self.ws_closed: dict[tuple[int, str], int] = {}  # (code, side that closed) -> count
        self.refused: dict[str, int] = {}  # reason -> upgrades refused
        # Of the WebSockets closed so far.
        self.msgs_in = self.msgs_out = self.bytes_in = self.bytes_out = 0
        self.texts_in = self.texts_out = 0  # of those messages, the text ones
        self.overflows = 0  # closed with 1013 for going past --ws-max-write-buffer
        self.http_status = [0] * 6  # responses by status // 100 (1..5 used)
        self.http_duration = Histogram(DURATION_BUCKETS)
        self.ping_rtt = Histogram(RTT_BUCKETS)

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def ws_close(self, code: int, side: str, ws: Any) -> None:
        """A WebSocket that was open has gone: count its close and fold its counters in."""
        key = (code, side)
        self.ws_closed[key] = self.ws_closed.get(key, 0) + 1
        self.msgs_in += ws.msgs_in
        self.msgs_out += ws.msgs_out
        self.texts_in += ws.texts_in
        self.texts_out += ws.texts_out
        self.bytes_in += ws.bytes_in
        self.bytes_out += ws.bytes_out

    def http_response(self, status: int, seconds: float) -> None:
        self.http_status[min(max(status // 100, 0), 5)] += 1
        self.http_duration.observe(seconds)


class ClientDisconnected(OSError):
    """Raised by send() once the client has gone (ASGI spec: an OSError subclass)."""


def caused_by_disconnect(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the ClientDisconnected a send() raised, or was raised while handling
    one (Starlette turns it into ClientDisconnect or WebSocketDisconnect). ASGI spec 2.4: such
    an exception is the client going away, not an application error, and is not logged as one.
    """
    for _ in range(16):  # cause and context chains are short; a cycle must not hang us
        if exc is None:
            return False
        if isinstance(exc, ClientDisconnected):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class BufferedOnly(asyncio.BufferedProtocol):
    """asyncio.BufferedProtocol with a data_received() that no transport calls.

    uvloop looks ``data_received`` up on every protocol a transport is given (at the accept,
    and again at the upgrade's set_protocol), and for a BufferedProtocol, which has none, pays
    for an AttributeError it then ignores: 6,400 instructions per WebSocket connection, 3% of
    the user CPU of a new connection (callgrind on the live server). asyncio's and uvloop's
    transports feed a protocol that has get_buffer() through get_buffer()/buffer_updated()
    only.
    """

    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        raise RuntimeError(
            f"{type(self).__name__} is an asyncio.BufferedProtocol: "
            "the transport must call get_buffer() and buffer_updated(), not data_received()"
        )


class FlowControl:
    """One connection's flow control: pause/resume reading, and waiting while writes are paused.

    The transport calls pause_writing()/resume_writing() around its high-water mark; senders
    await drain() before writing more. Readers pause the transport when the app lags behind.
    """

    __slots__ = ("_transport", "read_paused", "write_paused", "_waiters")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.read_paused = False
        self.write_paused = False
        self._waiters: list[asyncio.Future[None]] = []

    async def drain(self) -> None:
        """Return once the transport's write buffer is below its high-water mark (or gone)."""
        if not self.write_paused:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        """Wake every drain(); also called when the connection is lost."""
        self.write_paused = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

"""What both protocols share with the server: connection state, flow control, disconnects.

Owns ServerState (what every connection of one server's event loop shares), FlowControl (one
connection's reading and writing pauses), BufferedOnly (the asyncio protocol base both
protocols use), ClientDisconnected and how to recognise an exception it caused, and the
interface the server's sweep calls on every connection (Connection). Imports nothing from
fastws: the protocols and the server import it.
"""

from __future__ import annotations

import asyncio
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

    def __init__(self, wakeups: Any, hub: Any = None) -> None:
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

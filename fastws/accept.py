"""Accepting connections in bursts on uvloop: several per loop pass while they queue up.

uvloop's libuv (1.45 and later) accepts one connection per loop pass and listening
descriptor. During a burst of new connections (clients reconnecting after a deploy, a load
test), the others then wait in the kernel's accept queue while each pass of the loop carries
one new connection and little else, so the per-pass costs (the ``epoll_wait``, the ready
queue, a wake-up of the client for each write) are paid once per connection.

Once per tick of the server's housekeeping (0.1 s), ``BurstAccepts`` reads how many
connections wait in each TCP listening socket's accept queue (Linux ``TCP_INFO``). From
``QUEUED`` waiting on, it registers each socket ``ACCEPTS_PER_PASS - 1`` more times with the
loop, as ``dup()``s of it (one socket, one accept queue), so that a pass accepts up to
``ACCEPTS_PER_PASS``; after ``CALM_TICKS`` ticks in a row with fewer waiting it closes them
again. Not always on: when fewer connections wait than there are registrations, each extra one
costs an ``accept()`` that fails with EAGAIN, about 3.6 us of kernel time on this machine (it
allocates and frees a socket), for every connection and, with several workers, in each.

asyncio's own loop already accepts up to the backlog per pass; unix sockets keep one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl as ssl_module
import sys
from collections.abc import Callable, Sequence
from typing import Any

from fastws.loops import loop_name

logger = logging.getLogger("fastws.error")

ACCEPTS_PER_PASS = 4  # registrations of each listening socket during a burst
QUEUED = 2  # connections waiting in an accept queue at a tick that start a burst
CALM_TICKS = 10  # ticks in a row with fewer waiting that end it


class BurstAccepts:
    """The extra registrations of one server's TCP listening sockets, opened and closed by
    ``tick()`` as connections queue up or stop queuing."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], asyncio.BaseProtocol],
        servers: Sequence[asyncio.base_events.Server],
        ssl: ssl_module.SSLContext | None,
        backlog: int,
    ) -> None:
        self.loop = loop
        self.factory = factory
        self.ssl = ssl
        self.backlog = backlog
        self.sockets: list[Any] = []
        if loop_name(loop) == "uvloop" and sys.platform.startswith("linux"):
            self.sockets = [
                sock
                for server in servers
                for sock in server.sockets
                if sock.family in (socket.AF_INET, socket.AF_INET6)
            ]
        self.extra: list[asyncio.base_events.Server] = []  # open during a burst
        self.calm = 0  # ticks in a row below QUEUED while in burst mode

    async def tick(self) -> None:
        """Called once per tick of the server's housekeeping. Never raises: out of file
        descriptors in the middle of a burst (EMFILE), the server goes on with what it has."""
        if not self.sockets:
            return
        try:
            if max(_waiting(sock) for sock in self.sockets) >= QUEUED:
                self.calm = 0
                if not self.extra:
                    await self._open()
            elif self.extra:
                self.calm += 1
                if self.calm >= CALM_TICKS:
                    self.close()
        except OSError as exc:
            logger.debug("Extra accepts for a burst of connections: %s", exc)

    async def _open(self) -> None:
        for sock in self.sockets:
            for _ in range(ACCEPTS_PER_PASS - 1):
                dup = _dup(sock)
                try:
                    server = await self.loop.create_server(
                        self.factory, sock=dup, ssl=self.ssl, backlog=self.backlog
                    )
                except BaseException:
                    dup.close()
                    raise
                self.extra.append(server)

    def close(self) -> None:
        """Close the extra registrations (the listening sockets themselves stay open)."""
        extra, self.extra = self.extra, []
        for server in extra:
            server.close()
        self.calm = 0


def _dup(sock: Any) -> socket.socket:
    return socket.socket(fileno=os.dup(sock.fileno()))


def _waiting(sock: Any) -> int:
    """How many connections wait in a listening socket's accept queue: Linux reports it as
    ``tcpi_unacked`` (bytes 24-28 of ``struct tcp_info``) for a socket in the LISTEN state."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 32)
    return int.from_bytes(info[24:28], sys.byteorder)

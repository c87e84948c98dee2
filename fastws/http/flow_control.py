"""Flow control for one connection: pause/resume reading, and waiting while writes are paused.

The transport calls pause_writing()/resume_writing() around its high-water mark; senders await
drain() before writing more. Readers pause the transport when the application lags behind.
"""

from __future__ import annotations

import asyncio


class FlowControl:
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

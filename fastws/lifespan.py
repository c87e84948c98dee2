"""The ASGI lifespan protocol (``--lifespan auto|on|off``).

Owns running the app's lifespan scope beside the server: startup before listening, shutdown
after the connections are drained, and the ``state`` dict whose shallow copy every http and
websocket scope receives. With ``auto`` an app that raises on the lifespan scope is served
anyway; with ``on`` that is a startup failure.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastws.config import Config

logger = logging.getLogger("fastws.error")


class LifespanOff:
    def __init__(self, config: Config) -> None:
        self.should_exit = False
        self.state: dict[str, Any] = {}

    async def startup(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


class LifespanOn:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.startup_event = asyncio.Event()
        self.shutdown_event = asyncio.Event()
        self.receive_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.error_occurred = False
        self.startup_failed = False
        self.shutdown_failed = False
        self.should_exit = False
        self.state: dict[str, Any] = {}
        self.task: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        logger.info("Waiting for application startup.")
        self.task = asyncio.get_running_loop().create_task(self.main())
        await self.receive_queue.put({"type": "lifespan.startup"})
        await self.startup_event.wait()
        if self.startup_failed or (self.error_occurred and self.config.lifespan == "on"):
            logger.error("Application startup failed. Exiting.")
            self.should_exit = True
        else:
            logger.info("Application startup complete.")

    async def shutdown(self) -> None:
        if self.error_occurred:
            return
        logger.info("Waiting for application shutdown.")
        await self.receive_queue.put({"type": "lifespan.shutdown"})
        await self.shutdown_event.wait()
        if self.shutdown_failed or (self.error_occurred and self.config.lifespan == "on"):
            logger.error("Application shutdown failed. Exiting.")
            self.should_exit = True
        else:
            logger.info("Application shutdown complete.")

    async def main(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.config.loaded_app(scope, self.receive, self.send)
        except BaseException as exc:
            self.error_occurred = True
            if self.startup_failed or self.shutdown_failed:
                return
            if self.config.lifespan == "auto":
                logger.info("ASGI 'lifespan' protocol appears unsupported.")
            else:
                logger.error("Exception in 'lifespan' protocol\n", exc_info=exc)
        finally:
            self.startup_event.set()
            self.shutdown_event.set()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lifespan.startup.complete":
            self._expect_phase(startup=True, kind=kind)
            self.startup_event.set()
        elif kind == "lifespan.startup.failed":
            self._expect_phase(startup=True, kind=kind)
            self.startup_failed = True
            self.startup_event.set()
            if message.get("message"):
                logger.error(message["message"])
        elif kind == "lifespan.shutdown.complete":
            self._expect_phase(startup=False, kind=kind)
            self.shutdown_event.set()
        elif kind == "lifespan.shutdown.failed":
            self._expect_phase(startup=False, kind=kind)
            self.shutdown_failed = True
            self.shutdown_event.set()
            if message.get("message"):
                logger.error(message["message"])
        else:
            raise RuntimeError(f"Unexpected lifespan message type '{kind}'.")

    def _expect_phase(self, *, startup: bool, kind: str) -> None:
        if startup and self.startup_event.is_set():
            raise RuntimeError(f"'{kind}' sent after startup finished.")
        if not startup and (not self.startup_event.is_set() or self.shutdown_event.is_set()):
            raise RuntimeError(f"'{kind}' sent outside shutdown.")

    async def receive(self) -> dict[str, Any]:
        return await self.receive_queue.get()


def make_lifespan(config: Config) -> LifespanOn | LifespanOff:
    return LifespanOff(config) if config.lifespan == "off" else LifespanOn(config)

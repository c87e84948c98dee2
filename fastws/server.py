"""The server process: bind, serve, signals, graceful shutdown.

Owns the listening sockets, the state shared by every connection of one server (a
fastws.transport.ServerState), the once-a-second housekeeping (Date header, the connections'
deadlines), SIGINT/SIGTERM handling and the shutdown order: stop accepting, close WebSockets
with 1012, let in-flight HTTP responses finish, run lifespan shutdown, all within
``--timeout-graceful-shutdown``. Stays out of protocol details, and of the other process
models: ``fastws.main.run()`` picks this, a Supervisor or a ChangeReload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Generator, Sequence
from email.utils import formatdate
from functools import partial
from types import FrameType
from typing import Any

from fastws import malloc
from fastws.accept import BurstAccepts
from fastws.config import Config
from fastws.http.protocol import HttpProtocol
from fastws.lifespan import make_lifespan
from fastws.loops import loop_name, new_event_loop
from fastws.transport import ServerState, Stats
from fastws.ws.protocol import Wakeups
from fastws.ws.pubsub import HUBS, Hub

logger = logging.getLogger("fastws.error")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
ACCEPT_GRACE_S = 0.05  # shutdown: between the last accept and closing idle connections


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server_state = ServerState(Wakeups(), Hub(), Stats() if config.metrics else None)
        # --metrics (fastws.metrics): this process's listener, or (a --workers worker) what
        # pushes its figures to the supervisor's on the tick.
        self.metrics_exporter: Any = None
        self.metrics_pusher: Any = None
        self.started = False
        self.should_exit = False
        self.force_exit = False
        self.servers: list[asyncio.base_events.Server] = []
        self.burst_accepts: BurstAccepts | None = None  # once listening
        # --limit-max-requests plus up to --limit-max-requests-jitter, drawn once per server so
        # that workers started together do not all recycle together.
        self.max_requests: int | None = None
        if config.limit_max_requests is not None:
            self.max_requests = config.limit_max_requests + random.randint(
                0, config.limit_max_requests_jitter
            )
        self._captured_signals: list[int] = []

    def run(self, sockets: Sequence[socket.socket] | None = None) -> None:
        loop = new_event_loop(self.config.loop)
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.serve(sockets=sockets))
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def serve(self, sockets: Sequence[socket.socket] | None = None) -> None:
        with self.capture_signals():
            await self._serve(sockets)

    async def _serve(self, sockets: Sequence[socket.socket] | None) -> None:
        process_id = os.getpid()
        config = self.config
        if not config.loaded:
            config.load()
        self.lifespan = make_lifespan(config)
        tuned = malloc.tune(config.ws_max_size)
        if tuned is not None:
            logger.debug("malloc thresholds: mmap %d, trim %d bytes", *tuned)
        logger.info("Started server process [%d]", process_id)
        await self.startup(sockets=sockets)
        if self.should_exit:
            return
        await self.main_loop()
        await self.shutdown(sockets=sockets)
        logger.info("Finished server process [%d]", process_id)

    async def startup(self, sockets: Sequence[socket.socket] | None = None) -> None:
        hub = self.server_state.hub
        hub.loop = asyncio.get_running_loop()
        # Publishing from outside a WebSocket (HTTP endpoints, background tasks, lifespan):
        # fastws.pubsub finds the hub of the running loop (or the process's only one) here.
        HUBS[hub.loop] = hub
        if self.config.pubsub is not None:
            from fastws.ws.pubsub_redis import RedisBridge

            hub.bridge = RedisBridge(hub, self.config.pubsub)
            hub.bridge.start()
        await self.lifespan.startup()
        if self.lifespan.should_exit:
            self.should_exit = True
            return
        config = self.config
        loop = asyncio.get_running_loop()
        if config.metrics:
            await self._start_metrics()
        self._update_default_headers()
        # Positional: the loop calls this once per accepted connection.
        factory = partial(HttpProtocol, config, self.server_state, self.lifespan.state, loop)
        try:
            if sockets is not None:  # inherited from a supervisor or gunicorn
                for sock in sockets:
                    self.servers.append(
                        await loop.create_server(
                            factory, sock=sock, ssl=config.ssl, backlog=config.backlog
                        )
                    )
            elif config.fd is not None:
                sock = socket.socket(fileno=os.dup(config.fd))  # family read from the fd
                self.servers.append(
                    await loop.create_server(
                        factory, sock=sock, ssl=config.ssl, backlog=config.backlog
                    )
                )
            elif config.uds is not None:
                uds_perms = 0o666
                if os.path.exists(config.uds):
                    uds_perms = os.stat(config.uds).st_mode
                self.servers.append(
                    await loop.create_unix_server(
                        factory, path=config.uds, ssl=config.ssl, backlog=config.backlog
                    )
                )
                os.chmod(config.uds, uds_perms)
            else:
                self.servers.append(
                    await loop.create_server(
                        factory,
                        host=config.host,
                        port=config.port,
                        ssl=config.ssl,
                        backlog=config.backlog,
                    )
                )
        except OSError as exc:
            logger.error(exc)
            await self.lifespan.shutdown()
            sys.exit(1)
        self.burst_accepts = BurstAccepts(
            loop, factory, self.servers, ssl=config.ssl, backlog=config.backlog
        )
        self._log_started(loop)
        self.started = True

    async def _start_metrics(self) -> None:
        from fastws import metrics

        if os.environ.get(metrics.PUSH_ENV) == "1":  # a --workers worker: the supervisor serves
            self.metrics_pusher = metrics.Pusher(self.server_state)
            return
        exporter = metrics.Exporter(self.server_state)
        try:
            host, port = await exporter.start(self.config.metrics_address, self.config.metrics_port)
        except OSError as exc:
            logger.error("--metrics: %s", exc)
            await self.lifespan.shutdown()
            sys.exit(1)
        self.metrics_exporter = exporter
        logger.info("Metrics on http://%s:%d/metrics", host, port)

    def _log_started(self, loop: asyncio.AbstractEventLoop) -> None:
        from fastws.ws.frames import IMPLEMENTATION

        config = self.config
        scheme = "https" if config.is_ssl else "http"
        for server in self.servers:
            for sock in server.sockets:
                name = sock.getsockname()
                if sock.family == socket.AF_INET6:
                    where = f"{scheme}://[{name[0]}]:{name[1]}"
                elif sock.family == socket.AF_INET:
                    where = f"{scheme}://{name[0]}:{name[1]}"
                else:
                    where = f"unix socket {name or config.uds}"
                logger.info("fastws running on %s (Press CTRL+C to quit)", where)
        logger.info(
            "Codec: %s; event loop: %s; Python %s",
            IMPLEMENTATION,
            loop_name(loop),
            platform.python_version(),
        )

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            await asyncio.sleep(0.1)

    async def on_tick(self, counter: int) -> bool:
        if self.burst_accepts is not None:
            await self.burst_accepts.tick()
        if counter % 10 == 0:
            self._update_default_headers()
        if counter % 5 == 0:
            self._expire_connections()
            if self.metrics_pusher is not None:
                self.metrics_pusher.push()
        if self.should_exit:
            return True
        limit = self.max_requests
        if limit is not None and self.server_state.total_requests >= limit:
            logger.warning("Maximum request limit of %d exceeded. Terminating process.", limit)
            return True
        return False

    def _expire_connections(self) -> None:
        """Act on connections past their deadline: HTTP request-head and keep-alive timeouts
        drop the connection, a WebSocket sends its keepalive ping or fails an unanswered one.
        One sweep here instead of a timer armed and cancelled per request or connection."""
        now = asyncio.get_running_loop().time()
        expired = [c for c in self.server_state.connections if 0.0 < c.deadline <= now]
        for connection in expired:
            connection.expire()

    def _update_default_headers(self) -> None:
        headers = list(self.config.encoded_headers)
        if self.config.date_header:
            headers.insert(0, (b"date", formatdate(time.time(), usegmt=True).encode("ascii")))
        # Replace the list's contents in place: protocols hold a reference to it.
        self.server_state.default_headers[:] = headers

    async def shutdown(self, sockets: Sequence[socket.socket] | None = None) -> None:
        logger.info("Shutting down")
        for server in self.servers:
            server.close()
        if self.burst_accepts is not None:
            self.burst_accepts.close()
        for sock in sockets or ():
            sock.close()
        # A connection accepted in the last loop iteration may have its request still unread
        # in the kernel: closing it now as "idle" would reset it (RST) with no answer, about
        # one in a few hundred requests during a rolling restart. Let such reads happen first.
        await asyncio.sleep(ACCEPT_GRACE_S)
        for connection in list(self.server_state.connections):
            connection.shutdown()
        await asyncio.sleep(0.1)
        timeout = self.config.timeout_graceful_shutdown
        try:
            await asyncio.wait_for(self._wait_tasks_to_complete(), timeout=timeout)
        except asyncio.TimeoutError:
            logger.error(
                "Cancel %d running task(s), timeout graceful shutdown exceeded",
                len(self.server_state.tasks),
            )
            for task in list(self.server_state.tasks):
                task.cancel()
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
        if not self.force_exit:
            await self.lifespan.shutdown()
        hub = self.server_state.hub
        HUBS.pop(hub.loop, None)
        if hub.bridge is not None:
            bridge, hub.bridge = hub.bridge, None
            await bridge.close()
        if self.metrics_pusher is not None:
            self.metrics_pusher.push()  # what the drain counted
        if self.metrics_exporter is not None:
            self.metrics_exporter.close()
            self.metrics_exporter = None

    async def _wait_tasks_to_complete(self) -> None:
        state = self.server_state
        if state.connections and not self.force_exit:
            logger.info("Waiting for connections to close. (CTRL+C to force quit)")
            while state.connections and not self.force_exit:
                await asyncio.sleep(0.1)
        if state.tasks and not self.force_exit:
            logger.info("Waiting for background tasks to complete. (CTRL+C to force quit)")
            while state.tasks and not self.force_exit:
                await asyncio.sleep(0.1)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Route SIGINT and SIGTERM to ``handle_exit`` while serving, then put back the
        handlers that were there before.

        ``signal.signal``, as uvicorn does, not ``loop.add_signal_handler``: then
        ``signal.getsignal(SIGTERM)`` is this server's bound ``handle_exit``, which is how
        libraries written for uvicorn find its exit flag (sse-starlette polls
        ``getsignal(SIGTERM).__self__.should_exit`` to end its endless streams, which would
        otherwise hold a graceful shutdown open), and code that chains to the previous
        handler still stops the server. Going through the loop bought nothing: the handler
        only sets flags, which ``main_loop`` reads every 0.1 s tick, and both loops wake on a
        signal anyway (uvloop through its wakeup fd, asyncio's selector with EINTR).
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                # None: the handler before was not set from Python (an embedding host's).
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._captured_signals.append(sig)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

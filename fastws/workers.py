"""A gunicorn worker class: ``gunicorn -k fastws.workers.FastWSWorker module:app``.

gunicorn's arbiter owns the listening sockets, the worker count, restarts, timeouts and
signals to the workers; each worker runs one fastws ``Server`` on gunicorn's sockets. The
worker maps gunicorn's settings onto a ``Config``:

- ``--keep-alive`` -> ``timeout_keep_alive``;
- ``--graceful-timeout`` -> ``timeout_graceful_shutdown``, one second less, so that the
  lifespan shutdown still runs before gunicorn's SIGKILL;
- ``--forwarded-allow-ips`` -> ``forwarded_allow_ips``;
- ``--certfile``, ``--keyfile``, ``--ca-certs``, ``--cert-reqs``, ``--ciphers`` -> the
  ``ssl_*`` options (gunicorn's ``ssl_context`` hook is not consulted);
- ``--backlog`` -> ``backlog``; ``--max-requests`` (plus its jitter) -> ``limit_max_requests``;
- ``--limit-request-line``, ``-fields``, ``-field-size`` -> the ``limit_request_*`` options
  (gunicorn's 0, "unlimited", keeps fastws's default bound);
- ``--timeout``: the worker calls ``notify()`` from its event loop, so a blocked loop gets
  the worker killed and replaced by the arbiter.

Other options (WebSocket limits, ping interval, ...) come from ``CONFIG_KWARGS`` in a
subclass. Signals from the arbiter: SIGTERM is a graceful stop (WebSockets closed with 1012,
connections drained); SIGQUIT (what gunicorn sends on its own SIGINT/SIGQUIT) counts as a
SIGINT, so Ctrl+C in a terminal, which reaches the workers directly as well, stops them
without waiting for their connections; SIGUSR1 reopens gunicorn's log files.

This module imports gunicorn; nothing else in fastws does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from gunicorn.workers.base import Worker  # type: ignore[import-untyped]

from fastws.config import Config
from fastws.logging import ACCESS_LOGGER_NAME, ERROR_LOGGER_NAME
from fastws.server import Server

__all__ = ["FastWSWorker"]

GRACE_MARGIN_S = 1
"""How much earlier than gunicorn's --graceful-timeout a worker stops waiting for connections."""


class _GunicornServer(Server):
    """A ``Server`` that sends gunicorn heartbeats and takes gunicorn's extra signals."""

    def __init__(self, config: Config, worker: FastWSWorker) -> None:
        super().__init__(config)
        self.worker = worker

    async def startup(self, sockets: Sequence[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGQUIT, self.handle_exit, signal.SIGINT, None)
        loop.add_signal_handler(signal.SIGUSR1, self.worker.log.reopen_files)
        # From before the lifespan startup (which may be slow) until the loop closes (the
        # task is cancelled with the others by Server.run), draining included: gunicorn
        # kills a worker whose heartbeat is older than --timeout.
        loop.create_task(self._heartbeat())
        await super().startup(sockets=sockets)

    async def _heartbeat(self) -> None:
        timeout_s = self.worker.timeout
        interval_s = 1.0 if timeout_s <= 0 else min(1.0, max(timeout_s / 4, 0.05))
        orphaned = False
        while True:
            self.worker.notify()
            if not orphaned and os.getppid() != self.worker.ppid:
                orphaned = True
                self.worker.log.info("Parent changed, shutting down: %s", self.worker)
                self.should_exit = True
            await asyncio.sleep(interval_s)


class FastWSWorker(Worker):  # type: ignore[misc]
    """gunicorn worker serving an ASGI app with fastws (see the module docstring).

    Set ``CONFIG_KWARGS`` in a subclass for ``Config`` options gunicorn has no flag for::

        class Worker(FastWSWorker):
            CONFIG_KWARGS = {"ws_max_size": 1 << 20, "ws_ping_interval": 30.0}
    """

    CONFIG_KWARGS: dict[str, Any] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: Config | None = None
        # fastws logs through gunicorn's handlers, at gunicorn's --log-level.
        for name, source in (
            (ERROR_LOGGER_NAME, self.log.error_log),
            (ACCESS_LOGGER_NAME, self.log.access_log),
        ):
            logger = logging.getLogger(name)
            logger.handlers = list(source.handlers)
            logger.setLevel(source.level)
            logger.propagate = False

    def config_kwargs(self) -> dict[str, Any]:
        """``Config`` keyword arguments from gunicorn's settings, then ``CONFIG_KWARGS``."""
        cfg = self.cfg
        graceful_s = cfg.graceful_timeout
        kwargs: dict[str, Any] = {
            "log_config": None,  # gunicorn configured logging
            "access_log": bool(self.log.access_log.handlers),
            "workers": 1,  # this process is one worker; gunicorn counts them
            "timeout_keep_alive": cfg.keepalive,
            "timeout_graceful_shutdown": (
                graceful_s - GRACE_MARGIN_S if graceful_s > GRACE_MARGIN_S else graceful_s
            ),
            "timeout_notify": self.timeout,
            "forwarded_allow_ips": list(cfg.forwarded_allow_ips),
            "backlog": cfg.backlog,
            "limit_max_requests": self.max_requests if cfg.max_requests > 0 else None,
        }
        for name in ("limit_request_line", "limit_request_fields", "limit_request_field_size"):
            value = cfg.settings[name].get()
            if value > 0:  # 0 means "no limit" to gunicorn; fastws keeps its own bound
                kwargs[name] = value
        if cfg.is_ssl:
            kwargs.update(
                ssl_certfile=cfg.certfile,
                ssl_keyfile=cfg.keyfile,
                ssl_ca_certs=cfg.ca_certs,
                ssl_cert_reqs=int(cfg.cert_reqs),
                ssl_ciphers=cfg.ciphers,
            )
        kwargs.update(self.CONFIG_KWARGS)
        return kwargs

    def load_wsgi(self) -> None:
        # Called by init_process() before the worker counts as booted, so an invalid
        # setting stops gunicorn (worker boot error) instead of a restart loop.
        super().load_wsgi()
        self.config = Config(self.wsgi, **self.config_kwargs())

    def init_signals(self) -> None:
        # Undo gunicorn's handlers: fastws's Server installs its own on its event loop
        # (SIGINT, SIGTERM; _GunicornServer adds SIGQUIT and SIGUSR1).
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)

    def run(self) -> None:
        assert self.config is not None
        server = _GunicornServer(self.config, self)
        server.run(sockets=[getattr(s, "sock", s) for s in self.sockets])
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

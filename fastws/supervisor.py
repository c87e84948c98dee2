"""Worker processes for ``--workers N``: spawn, health-check, replace, and fan out signals.

The supervisor (the parent process) owns the listening socket, bound once by
``Config.bind_socket()`` and put in the listening state here, so that it keeps accepting
into its backlog while workers come and go. Each worker is a ``multiprocessing`` *spawn*
child that inherits that socket and runs an ordinary ``Server`` on it; the kernel hands
each new connection to whichever worker accepts it first. Why one inherited socket rather
than ``SO_REUSEPORT``: see docs/deployment.md.

A worker reports to the supervisor through two shared doubles (``_STATE``: starting,
serving, stopping; ``_HEARTBEAT``: ``time.monotonic()`` written from its event loop every
``HEARTBEAT_INTERVAL_S``), never through a pipe that could block its loop. From those and
the workers' exit codes the supervisor's loop, ticking every ``TICK_S``:

- replaces a worker that died (logged), or one that left its main loop by itself
  (``--limit-max-requests``) as soon as it stops accepting;
- kills a worker whose heartbeat is older than ``--timeout-worker-healthcheck``
  (its loop is blocked), then replaces it;
- stops everything and exits with ``STARTUP_FAILURE`` when a worker exits with an error
  before it ever served (the app does not import, lifespan startup failed, bad TLS files):
  every new worker would fail the same way, so restarting would only loop;
- SIGINT/SIGTERM: SIGTERM to every worker (each closes its WebSockets with 1012 and drains
  within ``--timeout-graceful-shutdown``), wait, exit 0; a second SIGINT forces them;
- SIGHUP: rolling restart, one worker at a time: start a new worker, wait until it serves,
  then stop one old worker, so the socket never lacks a serving process;
- SIGTTIN / SIGTTOU: one worker more / one fewer (never fewer than one).

This module stays out of serving itself (that is ``Server``), of binding (``Config``), and
of file watching (``fastws.reload``, which reuses ``run_worker``).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from multiprocessing.context import SpawnProcess
from types import FrameType
from typing import Any

from fastws.config import STARTUP_FAILURE, Config
from fastws.server import Server

__all__ = [
    "HEARTBEAT_INTERVAL_S",
    "WORKER_START_TIMEOUT_S",
    "Supervisor",
    "run_worker",
    "spawn_worker",
]

logger = logging.getLogger("fastws.error")

TICK_S = 0.1
"""How often the supervisor looks at its workers and at the signals it received."""
HEARTBEAT_INTERVAL_S = 0.5
"""How often a serving worker writes its heartbeat (well under the 5 s health-check default)."""
WORKER_START_TIMEOUT_S = 60.0
"""A new worker must be serving within this long (app import plus lifespan startup)."""
STOP_MARGIN_S = 5.0
"""Beyond --timeout-graceful-shutdown, time a stopping worker gets (lifespan shutdown, exit)
before the supervisor kills it."""

_STATE, _HEARTBEAT = 0, 1
_STARTING, _SERVING, _STOPPING = 0.0, 1.0, 2.0

_SPAWN = multiprocessing.get_context("spawn")

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)


# --------------------------------------------------------------------------------------
# worker side


class _WorkerServer(Server):
    """A ``Server`` that reports serving, stopping and a heartbeat through ``status``.

    ``status`` is a shared ``RawArray('d', 2)``; writing a double to it never blocks, so a
    supervisor that stopped reading can never stall this event loop.
    """

    def __init__(self, config: Config, status: Any, parent_pid: int) -> None:
        super().__init__(config)
        self.status = status
        self.parent_pid = parent_pid
        self._heartbeat_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: Sequence[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.status[_HEARTBEAT] = time.monotonic()
            self.status[_STATE] = _SERVING
            # Cancelled with every other task when Server.run() ends.
            self._heartbeat_task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def main_loop(self) -> None:
        await super().main_loop()
        # Set before shutdown() starts draining: the supervisor starts a replacement now
        # rather than after the drain, which may take --timeout-graceful-shutdown.
        self.status[_STATE] = _STOPPING

    async def _heartbeat(self) -> None:
        orphaned = False
        while True:
            self.status[_HEARTBEAT] = time.monotonic()
            # A supervisor killed with SIGKILL cannot stop us; do not serve on unsupervised.
            if not orphaned and os.getppid() != self.parent_pid:
                orphaned = True
                logger.error(
                    "Parent process [%d] is gone; shutting down worker [%d].",
                    self.parent_pid,
                    os.getpid(),
                )
                self.should_exit = True
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)


def run_worker(
    config: Config,
    sockets: list[socket.socket],
    status: Any = None,
    parent_pid: int | None = None,
) -> None:
    """Body of a worker process (spawned by ``Supervisor`` or the reloader).

    Args:
        config: the parent's ``Config`` (unpickled: logging is configured again here).
        sockets: the inherited listening sockets.
        status: the shared ``RawArray('d', 2)`` to report through, or None when the parent
            does not read one (the reloader).
        parent_pid: the supervisor's pid; the worker stops if its parent changes.

    Raises:
        SystemExit: with ``STARTUP_FAILURE`` when the server never started serving.
    """
    config.configure_logging()
    if status is None:
        status = [_STARTING, 0.0]  # nobody reads it; the orphan check still applies
    server = _WorkerServer(config, status, parent_pid or os.getppid())
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        # Ctrl+C reaches the whole process group, before our handlers may be installed;
        # the supervisor is stopping us anyway, a traceback would only be noise.
        return
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def spawn_worker(config: Config, sockets: list[socket.socket], status: Any = None) -> SpawnProcess:
    """Start a spawn-context process running ``run_worker``; returns it started.

    The sockets travel with the pickled arguments: while a spawn child is being started,
    ``multiprocessing`` passes their file descriptors to it directly.
    """
    process = _SPAWN.Process(
        target=run_worker,
        kwargs={
            "config": config,
            "sockets": sockets,
            "status": status,
            "parent_pid": os.getpid(),
        },
        name="fastws-worker",
    )
    process.start()
    return process


def describe_exit(exitcode: int | None) -> str:
    """Describe an exit status for log lines: "exit code 3", "killed by SIGKILL"."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


# --------------------------------------------------------------------------------------
# supervisor side


class _Worker:
    """The supervisor's view of one worker process."""

    def __init__(self, config: Config, sockets: list[socket.socket], generation: int) -> None:
        self.status = _SPAWN.RawArray("d", 2)
        self.generation = generation
        self.started_at = time.monotonic()
        self.stop_deadline: float | None = None
        self.stopping = False  # told to stop, or stopping by itself
        self.killed = False
        self.process = spawn_worker(config, sockets, self.status)
        self.pid: int = self.process.pid or 0

    @property
    def state(self) -> float:
        return float(self.status[_STATE])

    @property
    def heartbeat_age_s(self) -> float:
        return time.monotonic() - float(self.status[_HEARTBEAT])

    @property
    def exitcode(self) -> int | None:
        return self.process.exitcode  # polls waitpid(WNOHANG), reaping the child

    def signal(self, sig: int) -> None:
        if sig == signal.SIGKILL:
            self.killed = True
        if self.process.exitcode is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace_s: float | None) -> None:
        """Ask for a graceful stop (SIGTERM) and note when to give up waiting."""
        self.signal(signal.SIGTERM)
        self.stopping = True
        self.stop_deadline = None if grace_s is None else time.monotonic() + grace_s

    def close(self) -> None:
        self.process.close()
        if os.environ.get("FASTWS_METRICS_PUSH") == "1":  # fastws.metrics.PUSH_ENV
            from fastws.metrics import MultiprocessExporter

            MultiprocessExporter.worker_gone(self.pid)


class Supervisor:
    """Runs ``config.workers`` worker processes on ``sockets`` until told to stop.

    Args:
        config: the server configuration; ``workers`` is the initial worker count.
        sockets: bound listening sockets (``Config.bind_socket()``); the caller owns them.
    """

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.target = config.workers
        self.workers: list[_Worker] = []  # starting or serving; these make up self.target
        self.retiring: list[_Worker] = []  # stopping; waited for, killed past their deadline
        self.candidate: _Worker | None = None  # SIGHUP replacement, not serving yet
        self.generation = 0  # bumped by SIGHUP; older workers get replaced
        self.should_exit = False
        self.exit_code = 0
        self._signals: list[int] = []

    @property
    def grace_s(self) -> float | None:
        """How long a stopping worker may take before it is killed; None: wait."""
        timeout = self.config.timeout_graceful_shutdown
        return None if timeout is None else timeout + STOP_MARGIN_S

    def run(self) -> int:
        """Supervise until SIGINT/SIGTERM or a startup failure; returns the exit status."""
        pid = os.getpid()
        logger.info("Started parent process [%d]", pid)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in HANDLED_SIGNALS}
        exporter = None
        try:
            if self.config.metrics:
                # --metrics: the workers push into a directory, this process serves it.
                from fastws.metrics import MultiprocessExporter

                exporter = MultiprocessExporter()
                host, port = exporter.start(self.config.metrics_address, self.config.metrics_port)
                logger.info("Metrics of every worker on http://%s:%d/metrics", host, port)
            for sock in self.sockets:
                # Listen here, not only in the workers: connections queue in the backlog
                # while no worker is serving yet, or between a worker's exit and its
                # replacement, instead of being refused.
                sock.listen(self.config.backlog)
            while not self.should_exit:
                self._handle_signals()
                if self.should_exit:
                    break
                self._check_workers()
                self._check_candidate()
                self._check_retiring()
                if not self.should_exit:
                    self._scale()
                time.sleep(TICK_S)
            self._stop_all()
        finally:
            if exporter is not None:
                exporter.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("Stopping parent process [%d]", pid)
        return self.exit_code

    # signals --------------------------------------------------------------------------

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._signals.append(sig)  # handled by the loop; a handler should do no work

    def _handle_signals(self) -> None:
        while self._signals:
            sig = self._signals.pop(0)
            if sig in (signal.SIGINT, signal.SIGTERM):
                logger.info("Received %s, stopping the workers.", signal.Signals(sig).name)
                self.should_exit = True
            elif sig == signal.SIGHUP:
                self.generation += 1
                logger.info("Received SIGHUP, replacing the workers one by one.")
            elif sig == signal.SIGTTIN:
                self.target += 1
                logger.info("Received SIGTTIN, increasing the workers to %d.", self.target)
            elif sig == signal.SIGTTOU:
                if self.target <= 1:
                    logger.info("Received SIGTTOU, but one worker is the minimum.")
                else:
                    self.target -= 1
                    logger.info("Received SIGTTOU, decreasing the workers to %d.", self.target)

    # workers ----------------------------------------------------------------------------

    def _spawn(self) -> _Worker:
        worker = _Worker(self.config, self.sockets, self.generation)
        logger.debug("Spawned worker process [%d]", worker.pid)
        return worker

    def _retire(self, worker: _Worker) -> None:
        worker.stop(self.grace_s)
        self.retiring.append(worker)

    def _start_failed(self, worker: _Worker, why: str) -> None:
        logger.error(
            "Worker process [%d] failed to start (%s); stopping the parent process. "
            "Its output above says why.",
            worker.pid,
            why,
        )
        self.exit_code = STARTUP_FAILURE
        self.should_exit = True

    def _check_workers(self) -> None:
        for worker in list(self.workers):
            exitcode = worker.exitcode
            state = worker.state
            if exitcode is not None:
                self.workers.remove(worker)
                worker.close()
                if state == _STARTING and exitcode > 0:
                    self._start_failed(worker, describe_exit(exitcode))
                elif state == _STOPPING and exitcode == 0:
                    logger.info("Worker process [%d] finished; starting another.", worker.pid)
                else:
                    logger.error(
                        "Worker process [%d] died (%s); starting another.",
                        worker.pid,
                        describe_exit(exitcode),
                    )
                continue  # _scale() starts the replacement
            if state == _STARTING:
                if time.monotonic() - worker.started_at > WORKER_START_TIMEOUT_S:
                    worker.signal(signal.SIGKILL)
                    self.workers.remove(worker)
                    self._retire(worker)
                    self._start_failed(
                        worker, f"not serving after {WORKER_START_TIMEOUT_S:g} s; killed"
                    )
            elif state == _STOPPING:
                # It left its main loop by itself (--limit-max-requests, or a SIGTERM sent
                # to it directly): it no longer accepts, so replace it now and let it drain.
                logger.info(
                    "Worker process [%d] stopped accepting connections; starting another.",
                    worker.pid,
                )
                self.workers.remove(worker)
                worker.stopping = True
                grace_s = self.grace_s
                worker.stop_deadline = None if grace_s is None else time.monotonic() + grace_s
                self.retiring.append(worker)
            else:
                self._check_heartbeat(worker)

    def _check_heartbeat(self, worker: _Worker) -> None:
        limit_s = self.config.timeout_worker_healthcheck
        if not worker.killed and worker.state != _STARTING and worker.heartbeat_age_s > limit_s:
            logger.error(
                "Worker process [%d] missed its health check (event loop blocked for more "
                "than %g s); killing it.",
                worker.pid,
                limit_s,
            )
            worker.signal(signal.SIGKILL)

    def _check_candidate(self) -> None:
        """Drive a SIGHUP rolling restart: one new worker serving, then one old one stops."""
        candidate = self.candidate
        if candidate is None:
            if any(w.generation < self.generation for w in self.workers):
                self.candidate = self._spawn()
            return
        exitcode = candidate.exitcode
        failed = None
        if exitcode is not None:
            failed = describe_exit(exitcode)
        elif candidate.state == _STARTING:
            if time.monotonic() - candidate.started_at > WORKER_START_TIMEOUT_S:
                candidate.signal(signal.SIGKILL)
                failed = f"not serving after {WORKER_START_TIMEOUT_S:g} s; killed"
        if failed is not None:
            logger.error(
                "New worker process [%d] failed to start (%s); keeping the running workers.",
                candidate.pid,
                failed,
            )
            for worker in self.workers:
                worker.generation = self.generation  # abandon this rolling restart
            if exitcode is None:
                self._retire(candidate)
            else:
                candidate.close()
            self.candidate = None
            return
        if candidate.state != _SERVING:
            return  # still starting (or stopped at once; _check_workers sees it next)
        self.candidate = None
        old = next((w for w in self.workers if w.generation < self.generation), None)
        if old is None:  # the old workers died meanwhile and were replaced
            self.workers.append(candidate)  # _scale() trims any excess
            return
        logger.info(
            "Worker process [%d] is serving; stopping worker process [%d].",
            candidate.pid,
            old.pid,
        )
        self.workers[self.workers.index(old)] = candidate
        self._retire(old)

    def _check_retiring(self) -> None:
        now = time.monotonic()
        for worker in list(self.retiring):
            exitcode = worker.exitcode
            if exitcode is not None:
                logger.info(
                    "Worker process [%d] stopped (%s).", worker.pid, describe_exit(exitcode)
                )
                self.retiring.remove(worker)
                worker.close()
            elif worker.stop_deadline is not None and now > worker.stop_deadline:
                logger.error("Worker process [%d] did not stop in time; killing it.", worker.pid)
                worker.signal(signal.SIGKILL)
                worker.stop_deadline = None
            else:
                self._check_heartbeat(worker)

    def _scale(self) -> None:
        while len(self.workers) < self.target:
            self.workers.append(self._spawn())
        while len(self.workers) > self.target:
            self._retire(self.workers.pop())  # the newest: it holds the fewest connections

    # stopping ---------------------------------------------------------------------------

    def _stop_all(self) -> None:
        everyone = [*self.workers, *self.retiring]
        if self.candidate is not None:
            everyone.append(self.candidate)
        self.workers, self.retiring, self.candidate = [], [], None
        for worker in everyone:
            worker.stop(self.grace_s)
        forced = False
        while everyone:
            for sig in self._take_signals():
                if sig == signal.SIGINT and not forced:
                    # A second Ctrl+C: the workers stop waiting for their connections.
                    logger.info("Received SIGINT again, forcing the workers to stop.")
                    forced = True
                    for worker in everyone:
                        worker.signal(signal.SIGINT)
            now = time.monotonic()
            for worker in list(everyone):
                exitcode = worker.exitcode
                if exitcode is not None:
                    logger.info(
                        "Worker process [%d] stopped (%s).", worker.pid, describe_exit(exitcode)
                    )
                    everyone.remove(worker)
                    worker.close()
                elif worker.stop_deadline is not None and now > worker.stop_deadline:
                    logger.error(
                        "Worker process [%d] did not stop in time; killing it.", worker.pid
                    )
                    worker.signal(signal.SIGKILL)
                    worker.stop_deadline = None
            if everyone:
                time.sleep(TICK_S)

    def _take_signals(self) -> list[int]:
        taken, self._signals = self._signals, []
        return taken

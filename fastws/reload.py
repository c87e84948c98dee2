"""``--reload``: a reloader process that restarts the server process when source files change.

For development only. The reloader binds the listening socket once and keeps it (so a
request made during a restart waits in the backlog instead of being refused), runs one
server process on it (``fastws.supervisor.run_worker`` in a spawn child, so that every
restart imports the app from scratch), and watches ``--reload-dir`` (default: the current
directory) with ``watchfiles``, an optional dependency (``pip install 'fastws[reload]'``).
On a change to a matching file it stops the server gracefully (WebSockets get 1012) and
starts a new one. A server that fails to start (a syntax error mid-edit) is not retried in
a loop: the reloader waits for the next change.

Which files count: names matching ``--reload-include`` (default ``*.py``) and none of
``--reload-exclude`` (default: dot files, ``*.py[cod]``, editor swap and backup files); an
exclude that names an existing directory excludes everything below it. ``--reload-delay``
is the pause between seeing a change and restarting, so an editor or a ``git checkout``
can finish writing.

This module stays out of serving (``Server``) and of multi-worker supervision.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable
from multiprocessing.context import SpawnProcess
from pathlib import Path
from types import FrameType
from typing import Any

from fastws.config import STARTUP_FAILURE, Config
from fastws.supervisor import STOP_MARGIN_S, describe_exit, spawn_worker

__all__ = ["ChangeReload", "FileFilter"]

logger = logging.getLogger("fastws.error")

DEFAULT_INCLUDES = ("*.py",)
DEFAULT_EXCLUDES = (".*", "*.py[cod]", "*.sw.*", "*~", "~*")
IGNORED_DIRS = frozenset(
    {".git", ".hg", ".svn", ".venv", ".tox", ".nox", "__pycache__", "node_modules"}
    | {".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis"}
)
"""Directories below a watched one whose changes never count (VCS data, caches, venvs)."""
WATCH_TIMEOUT_MS = 500
"""The watcher yields at least this often, so the reloader notices its server exiting."""
MISSING_WATCHFILES = (
    "--reload needs the 'watchfiles' package, which is not installed; "
    "install it with: pip install 'fastws[reload]'"
)


def _as_list(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return list(value)


class FileFilter:
    """Decides whether a changed path should trigger a reload (see the module docstring).

    Callable as watchfiles' ``watch_filter(change, path)``.
    """

    def __init__(
        self,
        includes: Iterable[str] = (),
        excludes: Iterable[str] = (),
        roots: Iterable[str] = (),
    ) -> None:
        includes, excludes = list(includes), list(excludes)
        self.roots = [Path(root).resolve() for root in roots]
        # An explicit include beats a default exclude and vice versa, as in uvicorn.
        self.includes = [p for p in DEFAULT_INCLUDES if p not in excludes] + includes
        self.excludes = [p for p in DEFAULT_EXCLUDES if p not in includes]
        self.exclude_dirs: list[Path] = []
        for pattern in excludes:
            if os.path.isdir(pattern):
                self.exclude_dirs.append(Path(pattern).resolve())
            elif pattern not in self.excludes:
                self.excludes.append(pattern)

    def _inner_dirs(self, path: Path) -> tuple[str, ...]:
        """The directories of ``path`` below the watched root that holds it."""
        for root in self.roots:
            if root in path.parents:
                return path.relative_to(root).parts[:-1]
        return path.parts[:-1]

    @staticmethod
    def _matches(path: Path, pattern: str) -> bool:
        if "/" in pattern:
            return path.match(pattern)
        return fnmatch.fnmatchcase(path.name, pattern)

    def __call__(self, change: Any, path: str) -> bool:
        candidate = Path(path)
        if any(part in IGNORED_DIRS for part in self._inner_dirs(candidate)):
            return False
        if not any(self._matches(candidate, p) for p in self.includes):
            return False
        if any(self._matches(candidate, p) for p in self.excludes):
            return False
        return not any(d == candidate or d in candidate.parents for d in self.exclude_dirs)


class ChangeReload:
    """Runs one server process on ``sockets`` and restarts it when watched files change.

    Args:
        config: the server configuration (``reload_dirs``, ``reload_includes``,
            ``reload_excludes``, ``reload_delay``, ``timeout_graceful_shutdown``).
        sockets: bound listening sockets (``Config.bind_socket()``); the caller owns them.
    """

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        self.config = config
        self.sockets = sockets
        self.should_exit = threading.Event()
        dirs = _as_list(config.reload_dirs) or [os.getcwd()]
        self.reload_dirs = sorted({str(Path(d).resolve()) for d in dirs})
        self.watch_filter = FileFilter(
            _as_list(config.reload_includes),
            _as_list(config.reload_excludes),
            roots=self.reload_dirs,
        )
        self.process: SpawnProcess | None = None
        self._exit_reported = False

    def run(self) -> int:
        """Serve and reload until SIGINT/SIGTERM; returns the exit status."""
        try:
            import watchfiles
        except ImportError:
            logger.error(MISSING_WATCHFILES)
            return STARTUP_FAILURE

        pid = os.getpid()
        logger.info("Will watch for changes in these directories: %s", self.reload_dirs)
        logger.info("Started reloader process [%d] using WatchFiles", pid)
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            for sock in self.sockets:
                sock.listen(self.config.backlog)  # requests wait in the backlog during restarts
            self._start()
            for changes in watchfiles.watch(
                *self.reload_dirs,
                watch_filter=self.watch_filter,
                stop_event=self.should_exit,
                rust_timeout=WATCH_TIMEOUT_MS,
                yield_on_timeout=True,
                raise_interrupt=False,
                ignore_permission_denied=True,
            ):
                if self.should_exit.is_set():
                    break
                self._report_exit()
                if not changes:
                    continue
                paths = sorted({path for _, path in changes})
                logger.warning(
                    "WatchFiles detected changes in %s. Reloading...",
                    ", ".join(repr(_display(p)) for p in paths),
                )
                if self.should_exit.wait(self.config.reload_delay):
                    break
                self._stop()
                if self.should_exit.is_set():
                    break
                self._start()
        finally:
            self._stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("Stopping reloader process [%d]", pid)
        return 0

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit.is_set() and sig == signal.SIGINT and self.process is not None:
            # A second Ctrl+C: let the server stop without waiting for its connections.
            if self.process.exitcode is None and self.process.pid is not None:
                os.kill(self.process.pid, signal.SIGINT)
        self.should_exit.set()

    def _start(self) -> None:
        self.process = spawn_worker(self.config, self.sockets)
        self._exit_reported = False

    def _report_exit(self) -> None:
        process = self.process
        if process is not None and process.exitcode is not None and not self._exit_reported:
            self._exit_reported = True
            logger.error(
                "Server process [%d] exited (%s); waiting for file changes to restart it.",
                process.pid,
                describe_exit(process.exitcode),
            )

    def _stop(self) -> None:
        """Stop the server process gracefully; kill it if it outlives its grace period."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.exitcode is None and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
            timeout = self.config.timeout_graceful_shutdown
            deadline = None if timeout is None else time.monotonic() + timeout + STOP_MARGIN_S
            while process.exitcode is None:
                if deadline is not None and time.monotonic() > deadline:
                    logger.error(
                        "Server process [%d] did not stop in time; killing it.", process.pid
                    )
                    process.kill()
                    process.join(5)
                    break
                process.join(0.1)
        if process.exitcode is not None:
            process.close()


def _display(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path

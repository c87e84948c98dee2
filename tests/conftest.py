"""Fixtures shared by every test directory: which server runs the in-process and subprocess
integration tests, a runner for ``async def`` tests, free loopback ports, and ``running_server``.

``FASTWS_TEST_SERVER`` picks the server: ``fastws`` (the default, what CI runs) or ``uvicorn``
(httptools + its default WebSocket implementation), so that the integration suites, which are
written against the ASGI contract, can be validated on a reference server. ``FASTWS_TEST_LOOP``
picks the event loop of in-process servers: ``asyncio`` (default) or ``uvloop``.

In-process servers run ``Server.serve()`` on their own event loop in a background thread (signal
handlers are only installed on the main thread, so none are), bind 127.0.0.1 port 0, and are
waited on through ``server.started`` with a deadline, never a sleep. Teardown sets
``should_exit`` (a graceful stop), then ``force_exit``, and fails the test if the thread is
still alive after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

SERVER_IMPL = os.environ.get("FASTWS_TEST_SERVER", "fastws").strip().lower() or "fastws"
if SERVER_IMPL not in ("fastws", "uvicorn"):
    raise pytest.UsageError(
        f"FASTWS_TEST_SERVER must be 'fastws' or 'uvicorn', not {SERVER_IMPL!r}"
    )
IS_FASTWS = SERVER_IMPL == "fastws"
IS_UVICORN = SERVER_IMPL == "uvicorn"

LOOP_IMPL = os.environ.get("FASTWS_TEST_LOOP", "asyncio").strip().lower() or "asyncio"

HOST = "127.0.0.1"
# Upper bound for one async test when it carries no pytest `timeout` marker.
ASYNC_TEST_TIMEOUT_S = 30.0
SERVER_START_TIMEOUT_S = 10.0
SERVER_STOP_TIMEOUT_S = 15.0


def pytest_report_header(config: pytest.Config) -> str:
    return f"integration server: {SERVER_IMPL} (FASTWS_TEST_SERVER), in-process loop: {LOOP_IMPL}"


# --------------------------------------------------------------------------------------------
# async def tests
# --------------------------------------------------------------------------------------------


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop, bounded by their timeout marker.

    The bound is slightly under the pytest-timeout marker (or ASYNC_TEST_TIMEOUT_S), so that a
    hung test fails with an asyncio traceback that shows where it was waiting.
    """
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    kwargs = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    marker = pyfuncitem.get_closest_marker("timeout")
    limit_s = ASYNC_TEST_TIMEOUT_S
    if marker is not None and marker.args:
        limit_s = max(1.0, float(marker.args[0]) - 1.0)
    asyncio.run(asyncio.wait_for(func(**kwargs), limit_s))
    return True


# --------------------------------------------------------------------------------------------
# ports
# --------------------------------------------------------------------------------------------


def find_free_port() -> int:
    """A loopback port that was free a moment ago (for subprocess servers, which cannot bind 0
    and report back as easily)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> int:
    return find_free_port()


# --------------------------------------------------------------------------------------------
# in-process server
# --------------------------------------------------------------------------------------------


def server_classes() -> tuple[Any, Any]:
    """(Config, Server) of the server under test, imported when first needed, so that a
    missing fastws.server fails the tests that use it rather than the whole collection."""
    if IS_UVICORN:
        uvicorn = importlib.import_module("uvicorn")
        return uvicorn.Config, uvicorn.Server
    config_mod = importlib.import_module("fastws.config")
    server_mod = importlib.import_module("fastws.server")
    return config_mod.Config, server_mod.Server


def make_config(app: Any, **kwargs: Any) -> Any:
    """A Config for ``app`` on 127.0.0.1 port 0 with quiet logs; ``kwargs`` override."""
    config_cls, _ = server_classes()
    options: dict[str, Any] = {
        "host": HOST,
        "port": 0,
        "log_level": "warning",
        "lifespan": "off",
        # Teardown must not hang on a connection a failing test left open.
        "timeout_graceful_shutdown": 3,
    }
    if IS_UVICORN:
        options["http"] = "httptools"
    options.update(kwargs)
    return config_cls(app, **options)


def _new_loop(impl: str = LOOP_IMPL) -> asyncio.AbstractEventLoop:
    if impl == "uvloop":
        uvloop = importlib.import_module("uvloop")
        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    return asyncio.new_event_loop()


class ServerDidNotStart(Exception):
    """serve() ended (returned or raised) before the server reported ``started``."""

    def __init__(self, error: BaseException | None) -> None:
        super().__init__(f"server did not start: {error!r}")
        self.error = error

    @property
    def exit_code(self) -> int | None:
        """The code of a SystemExit raised by serve() (uvicorn exits with 3 on startup
        failure), None when serve() returned or raised something else."""
        if isinstance(self.error, SystemExit):
            return self.error.code if isinstance(self.error.code, int) else None
        return None


class RunningServer:
    """A server serving on a background thread; see ``running_server``."""

    def __init__(self, app: Any, *, loop_impl: str = LOOP_IMPL, **config_kwargs: Any) -> None:
        _, server_cls = server_classes()
        self.loop_impl = loop_impl  # "asyncio" or "uvloop"; default: FASTWS_TEST_LOOP
        self.config = make_config(app, **config_kwargs)
        self.server = server_cls(self.config)
        self.host = HOST
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="test-server", daemon=True)

    def _run(self) -> None:
        loop = _new_loop(self.loop_impl)
        self.loop = loop
        try:
            loop.run_until_complete(self.server.serve())
        except BaseException as exc:  # SystemExit on startup failure, or a server bug
            self.error = exc
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def start(self) -> RunningServer:
        self._thread.start()
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self.server.started:
            if not self._thread.is_alive():
                raise ServerDidNotStart(self.error)
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"server not started after {SERVER_START_TIMEOUT_S} s")
            time.sleep(0.005)
        self.port = int(self.server.servers[0].sockets[0].getsockname()[1])
        return self

    def stop(self, timeout_s: float = SERVER_STOP_TIMEOUT_S) -> None:
        """Graceful stop (should_exit), then force_exit; raise if the thread survives both."""
        if not self._thread.is_alive():
            return
        self.server.should_exit = True
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(5.0)
        if self._thread.is_alive():
            raise RuntimeError(f"server thread still running {timeout_s + 5} s after should_exit")

    @property
    def stopped(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout_s: float) -> bool:
        """Wait for serve() to end by itself; True if it did."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def ws_url(self, path: str = "/") -> str:
        return f"ws://{self.host}:{self.port}{path}"


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


@contextlib.contextmanager
def serve_in_thread(app: Any, **config_kwargs: Any) -> Iterator[RunningServer]:
    """Context-manager form of ``running_server``."""
    srv = RunningServer(app, **config_kwargs)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def running_server() -> Iterator[Callable[..., RunningServer]]:
    """Factory: ``running_server(app, **config_kwargs)`` starts a server and returns a
    RunningServer (``.host``, ``.port``, ``.url(path)``, ``.ws_url(path)``, ``.server``,
    ``.stop()``); every server started is stopped at teardown.

    ``loop_impl="uvloop"`` or ``"asyncio"`` picks one server's in-process loop (default:
    FASTWS_TEST_LOOP). Config defaults here: 127.0.0.1, port 0, log_level="warning",
    lifespan="off", timeout_graceful_shutdown=3 (and http="httptools" on uvicorn). Raises
    ServerDidNotStart when serve() ends before ``started``; the class is also
    ``running_server.ServerDidNotStart`` (a conftest cannot be imported by tests reliably).
    """
    with contextlib.ExitStack() as stack:

        def start(app: Any, **config_kwargs: Any) -> RunningServer:
            return stack.enter_context(serve_in_thread(app, **config_kwargs))

        start.ServerDidNotStart = ServerDidNotStart  # type: ignore[attr-defined]
        yield start

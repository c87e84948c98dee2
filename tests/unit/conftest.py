"""Fixtures shared by the unit tests: the same test runs on both builds.

`codec` is parametrised over the pure-Python twin (fastws._speedups_py) and the compiled module
(fastws._speedups); `protocol` over fastws/ws/protocol.py run as plain Python and its compiled
module, `http_protocol` the same for fastws/http/protocol.py. A missing compiled module skips
its half of the run, unless FASTWS_REQUIRE_EXTENSIONS is set (as in CI), where the test fails
instead. `FakeTransport` stands in for asyncio's socket transport and records what a protocol
does to it; `loop` is a fresh event loop per test.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

CODEC_MODULES = {"python": "fastws._speedups_py", "cython": "fastws._speedups"}


def _require_extensions() -> bool:
    return os.environ.get("FASTWS_REQUIRE_EXTENSIONS", "") not in ("", "0")


def load_codec(name: str) -> ModuleType:
    """Import one implementation by its IMPLEMENTATION name, or skip when it is not built."""
    try:
        return importlib.import_module(CODEC_MODULES[name])
    except ImportError:
        if _require_extensions():
            raise
        pytest.skip("extension not built")


@pytest.fixture(params=list(CODEC_MODULES))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """One codec implementation; every codec test runs once per implementation."""
    return load_codec(request.param)


@pytest.fixture(scope="session")
def both_codecs() -> tuple[ModuleType, ModuleType]:
    """(pure-Python, compiled), for tests that feed both the same input and compare."""
    return load_codec("python"), load_codec("cython")


PROTOCOL_SOURCE = Path(__file__).resolve().parents[2] / "fastws" / "ws" / "protocol.py"


@functools.cache
def pure_protocol(source: Path = PROTOCOL_SOURCE) -> ModuleType:
    """fastws/ws/protocol.py (or another compiled module's ``source``) run as plain Python,
    beside the compiled module (loaded once)."""
    importlib.import_module("fastws.ws.frames")  # the package and codec, chosen as configured
    name = f"fastws.{source.parent.name}._{source.stem}_source"
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    saved = os.environ.pop("FASTWS_REQUIRE_EXTENSIONS", None)  # it asks for the compiled build
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is not None:
            os.environ["FASTWS_REQUIRE_EXTENSIONS"] = saved
    assert not module.COMPILED
    return module


def load_protocol(name: str, module_name: str = "fastws.ws.protocol") -> ModuleType:
    """A module compiled from its own source (fastws.ws.protocol unless told) as "python" (the
    source run as is) or "cython" (the compiled module)."""
    if name == "python":
        source = PROTOCOL_SOURCE.parents[1].joinpath(*module_name.split(".")[1:])
        return pure_protocol(source.with_suffix(".py"))
    module = importlib.import_module(module_name)
    if not module.COMPILED:
        if _require_extensions():
            pytest.fail(f"{module_name} is not compiled (FASTWS_REQUIRE_EXTENSIONS)")
        pytest.skip(f"{module_name} not compiled here (make build); the pure run covers it")
    return module


@pytest.fixture(params=["python", "cython"], scope="module")
def protocol(request: pytest.FixtureRequest) -> ModuleType:
    """One build of fastws.ws.protocol; every test using it runs once per build."""
    return load_protocol(request.param)


@pytest.fixture(params=["python", "cython"], scope="module")
def http_protocol(request: pytest.FixtureRequest) -> ModuleType:
    """One build of fastws.http.protocol; every test using it runs once per build."""
    return load_protocol(request.param, "fastws.http.protocol")


@pytest.fixture(params=["python", "cython"], scope="module")
def http11_build(request: pytest.FixtureRequest) -> ModuleType:
    """One build of fastws.http11; every test using it runs once per build."""
    return load_protocol(request.param, "fastws.http11")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A new event loop; tasks still running at the end are cancelled before it closes."""
    loop = asyncio.new_event_loop()
    yield loop
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks))
    loop.close()


class FakeTransport(asyncio.Transport):
    """A socket transport that records what its protocol does to it.

    ``writes``: every write (writelines' buffers one by one); ``calls``: the names of the
    close/abort/pause/resume calls in order. close() and abort() deliver connection_lost(None)
    to the protocol set at the time on the next loop pass, as asyncio's transports do (only
    with a ``loop``). ``buffer_size`` is what get_write_buffer_size() answers: set it to make
    the transport look full. No socket: get_extra_info("socket") is None, so a protocol writes
    through write() only.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: Any = None
        self.writes: list[bytes] = []
        self.calls: list[str] = []
        self.closing = False
        self.aborted = False
        self.reading = True
        self.lost = False
        self.buffer_size = 0
        self.limits: tuple[int | None, int | None] = (None, None)

    @property
    def written(self) -> bytes:
        return b"".join(self.writes)

    def feed(self, data: bytes) -> None:
        """Hands ``data`` to the protocol as uvloop does: get_buffer(), then buffer_updated()."""
        buf = self.protocol.get_buffer(-1)
        buf[: len(data)] = data
        self.protocol.buffer_updated(len(data))

    def write(self, data: Any) -> None:
        assert not self.closing, "write() after close()"
        self.writes.append(bytes(data))

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        for data in list_of_data:
            self.write(data)

    def close(self) -> None:
        self.calls.append("close")
        self._lose()

    def abort(self) -> None:
        self.calls.append("abort")
        self.aborted = True
        self._lose()

    def _lose(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.reading = False
        if self.loop is not None:
            self.loop.call_soon(self._lost)

    def _lost(self) -> None:
        self.lost = True
        if self.protocol is not None:
            self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.calls.append("pause_reading")
        self.reading = False

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")
        if not self.closing:
            self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.buffer_size

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = (high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        high, low = self.limits
        return (low or 0, high or 0)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol


@pytest.fixture
def fake_transport() -> type[FakeTransport]:
    """The FakeTransport class (tests/unit is no package: its modules cannot import this one)."""
    return FakeTransport


@pytest.fixture
def http_connect() -> Any:
    """http_connect(module, loop, app, **config): (HttpProtocol of that build, its FakeTransport).

    The connection is made; config overrides the quiet defaults (no access log, no lifespan).
    """
    from fastws.config import Config
    from fastws.transport import ServerState
    from fastws.ws.protocol import Wakeups

    def connect(module: Any, loop: asyncio.AbstractEventLoop, app: Any, **config: Any) -> Any:
        settings: dict[str, Any] = {"access_log": False, "log_level": "warning", "lifespan": "off"}
        cfg = Config(app, **(settings | config))
        cfg.load()
        protocol = module.HttpProtocol(cfg, ServerState(Wakeups()), {}, loop)
        transport = FakeTransport(loop)
        transport.protocol = protocol
        protocol.connection_made(transport)
        return protocol, transport

    return connect

"""sse-starlette's endless event streams end when the server is told to stop.

sse-starlette (3.x) ends its streams on shutdown by polling the exit flag of uvicorn's Server,
which it finds as ``signal.getsignal(signal.SIGTERM).__self__.should_exit`` (its other way,
patching ``uvicorn.main.Server.handle_exit``, only ever reaches uvicorn's class). A server that
installs its handlers with ``loop.add_signal_handler`` leaves asyncio's no-op function there,
so the streams run on and a graceful shutdown without ``--timeout-graceful-shutdown`` never
finishes. ``app`` below is what the server subprocess serves.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from . import apps
from .conftest import HOST, IS_UVICORN, within

pytestmark = pytest.mark.timeout(60)


async def events(request: Request) -> EventSourceResponse:
    async def forever() -> AsyncIterator[dict[str, str]]:
        for n in itertools.count():
            yield {"event": "tick", "data": str(n)}
            await asyncio.sleep(0.05)

    return EventSourceResponse(forever(), ping=1)


app = Starlette(routes=[Route("/events", events)])


def expected_exit_code() -> int:
    # uvicorn re-raises SIGTERM after its graceful shutdown (see test_shutdown.py); fastws
    # finishes with status 0.
    return -signal.SIGTERM if IS_UVICORN else 0


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_sigterm_ends_an_endless_event_stream_and_the_server_exits(server_process, loop):
    # No --timeout-graceful-shutdown: only the stream ending lets the shutdown finish.
    proc = server_process("tests.integration.test_sse_starlette:app", "--loop", loop)
    ticks: list[str] = []
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{proc.port}", trust_env=False) as client:
        async with client.stream("GET", "/events", timeout=10) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.aiter_lines()

            async def until_ticks(n: int) -> None:
                async for line in lines:
                    if line.startswith("data: "):
                        ticks.append(line[len("data: ") :])
                        if len(ticks) >= n:
                            return

            await within(until_ticks(3), 10)  # streaming, and it would go on
            started = time.monotonic()
            proc.signal(signal.SIGTERM)

            async def to_the_end() -> None:
                try:
                    async for line in lines:
                        if line.startswith("data: "):
                            ticks.append(line[len("data: ") :])
                except httpx.RemoteProtocolError:
                    # sse-starlette cancels its stream on shutdown without a last chunk, so
                    # the server closes the unfinished response (uvicorn does the same).
                    pass

            # Within sse-starlette's 0.5 s poll; before the fix it went on until killed.
            await within(to_the_end(), 5)
            ended_s = time.monotonic() - started
    code = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 5)
    assert code == expected_exit_code(), proc.output
    assert ended_s < 3, ended_s
    assert ticks[:3] == ["0", "1", "2"]
    assert [int(t) for t in ticks] == list(range(len(ticks)))  # nothing lost or repeated


@pytest.mark.skipif(IS_UVICORN, reason="fastws's Server (uvicorn re-raises the signal after)")
async def test_sigterm_handler_is_the_servers_bound_handle_exit_while_serving():
    """What sse-starlette (and other code written for uvicorn) reads, on the test's own main
    thread: the handler is the serving server's ``handle_exit``, calling the handler through
    a real SIGTERM stops that server, and the previous handler is back afterwards."""
    from fastws.config import Config
    from fastws.server import Server

    previous_hits: list[int] = []

    def previous(sig: int, frame: Any) -> None:
        previous_hits.append(sig)

    saved = signal.signal(signal.SIGTERM, previous)
    try:
        config = Config(apps.hello, host=HOST, port=0, lifespan="off", log_level="warning")
        server = Server(config)
        serving = asyncio.ensure_future(server.serve())
        deadline = time.monotonic() + 5
        while not server.started:
            assert not serving.done() and time.monotonic() < deadline, "server did not start"
            await asyncio.sleep(0.01)

        handler: Any = signal.getsignal(signal.SIGTERM)
        assert handler.__self__ is server
        assert handler.__func__ is Server.handle_exit
        assert handler.__self__.should_exit is False
        assert signal.getsignal(signal.SIGINT).__self__ is server  # type: ignore[union-attr]

        os.kill(os.getpid(), signal.SIGTERM)
        await within(serving, 5)
        assert server.should_exit is True and server.force_exit is False
        assert signal.getsignal(signal.SIGTERM) is previous
        assert previous_hits == []  # the server took the signal, not the handler before it
    finally:
        signal.signal(signal.SIGTERM, saved)

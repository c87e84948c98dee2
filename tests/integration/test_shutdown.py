"""Graceful shutdown of a server process on SIGTERM / SIGINT: open WebSockets are closed with
1012 (Service Restart), in-flight HTTP responses complete, new connections are refused, the
lifespan shutdown runs, and the process exits within timeout_graceful_shutdown."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from .conftest import HOST, IS_UVICORN, RawConnection, within

pytestmark = pytest.mark.timeout(45)

SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


def expected_exit_code(sig: int) -> int:
    if IS_UVICORN and sig == signal.SIGTERM:
        # uvicorn restores the default handler after its graceful shutdown and re-raises the
        # signal, so the parent sees "killed by SIGTERM". fastws finishes with exit status 0,
        # the status process managers (systemd, Kubernetes) read as a clean stop.
        return -signal.SIGTERM
    return 0


def marker_lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("sig", SIGNALS)
async def test_signal_stops_gracefully(server_process, tmp_path, sig):
    marker = tmp_path / "events.txt"
    graceful_s = 5
    proc = server_process(
        "tests.integration.apps:shutdown_app",
        "--timeout-graceful-shutdown",
        str(graceful_s),
        env={"FASTWS_TEST_MARKER": str(marker), "FASTWS_TEST_SLOW_S": "1.0"},
    )
    ws = await within(
        ws_connect(f"ws://{HOST}:{proc.port}/ws", open_timeout=5, ping_interval=None, proxy=None)
    )
    slow = await RawConnection.open(proc.port)
    try:
        await slow.send(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        head = await slow.read_head()  # the app is now inside the request
        assert head.status == 200

        started = time.monotonic()
        proc.signal(sig)

        with pytest.raises(ConnectionClosed) as info:
            await within(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1012

        # The listening socket is closed once shutdown has begun.
        with pytest.raises(OSError):
            _, writer = await within(asyncio.open_connection(HOST, proc.port), 2)
            writer.close()

        # The in-flight response still completes, then that connection is closed.
        assert await slow.read_chunked(timeout_s=5) == b"start;end"
        assert await slow.read_to_eof(3) == b""

        code = proc.wait(graceful_s + 5)
        elapsed = time.monotonic() - started
    finally:
        await slow.close()
        await within(ws.close(), 5)
    assert code == expected_exit_code(sig), proc.output
    assert elapsed < graceful_s + 1, elapsed
    lines = marker_lines(marker)
    assert lines[0] == "startup"
    assert "ws-disconnect 1012" in lines
    assert lines[-1] == "shutdown"


@pytest.mark.parametrize("sig", SIGNALS)
async def test_graceful_timeout_bounds_shutdown_of_a_stuck_request(server_process, tmp_path, sig):
    marker = tmp_path / "events.txt"
    proc = server_process(
        "tests.integration.apps:shutdown_app",
        "--timeout-graceful-shutdown",
        "1",
        env={"FASTWS_TEST_MARKER": str(marker)},
    )
    stuck = await RawConnection.open(proc.port)
    try:
        await stuck.send(b"GET /forever HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await stuck.read_head()).status == 200
        started = time.monotonic()
        proc.signal(sig)
        code = proc.wait(10)
        elapsed = time.monotonic() - started
        # The stuck response is cut off, never completed.
        rest = await stuck.read_to_eof(3)
        assert not rest.endswith(b"0\r\n\r\n")
    finally:
        await stuck.close()
    assert code == expected_exit_code(sig), proc.output
    assert 0.9 < elapsed < 4, elapsed
    assert marker_lines(marker)[-1] == "shutdown"


async def test_idle_keep_alive_connections_are_closed_at_shutdown(server_process):
    proc = server_process("tests.integration.apps:hello")
    async with await RawConnection.open(proc.port) as idle:
        await idle.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await idle.read_response()).body == b"hello"
        started = time.monotonic()
        proc.signal(signal.SIGTERM)
        assert await idle.read_to_eof(5) == b""
    proc.wait(10)
    assert time.monotonic() - started < 3

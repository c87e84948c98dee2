"""10,000 concurrent idle WebSocket connections on one worker: memory per connection, and every
connection still answers an echo afterwards.

The server runs through its CLI (one worker, default event loop: uvloop when installed) with
keepalive pings off, so that "idle" means no traffic at all. RLIMIT_NOFILE is raised to its hard
limit in this process before the server starts, and the server inherits it. Memory is the
server's VmRSS from /proc (kernel socket buffers are not in it), measured after a warm-up session
and again once every connection is open; the figures are printed and appended to
build/many-connections.jsonl (docs/robustness.md quotes them).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import HOST, IS_UVICORN, REPO_ROOT, frame, upgrade_request, within
from .test_hostile import fd_baseline, fd_count, proc_status_kib, wait_fds

N = int(os.environ.get("FASTWS_MANY_CONNECTIONS", "10000"))
HANDSHAKES_IN_FLIGHT = 200
PER_CONNECTION_KIB_MAX = 24  # measured about 7.6 KiB (docs/robustness.md)


class IdleClient(asyncio.Protocol):
    """A WebSocket client reduced to what the test needs: the handshake, then one text echo."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.opened = loop.create_future()
        self.reply: asyncio.Future[bytes] | None = None
        self.upgraded = False
        self.loop = loop

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(upgrade_request())

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            del self.buf[: end + 4]
            self.upgraded = True
            if head.startswith(b"HTTP/1.1 101 "):
                self.opened.set_result(None)
            else:
                self.opened.set_exception(AssertionError(head[:200]))
        # Server frames are unmasked and short here: [0x81, len] + payload.
        while len(self.buf) >= 2 and len(self.buf) >= 2 + (self.buf[1] & 0x7F):
            n = self.buf[1] & 0x7F
            opcode, payload = self.buf[0] & 0x0F, bytes(self.buf[2 : 2 + n])
            del self.buf[: 2 + n]
            if self.reply is not None and not self.reply.done():
                if opcode == 0x1:
                    self.reply.set_result(payload)
                else:
                    self.reply.set_exception(AssertionError(f"opcode {opcode}: {payload!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self.opened, self.reply):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(f"closed by the server: {exc!r}"))

    def echo(self, text: bytes) -> asyncio.Future[bytes]:
        assert self.transport is not None
        self.reply = self.loop.create_future()
        self.transport.write(frame(0x1, text))
        return self.reply


@pytest.fixture
def raised_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = N + 512
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need} needed for {N} connections")
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else need, hard)
    )
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(IS_UVICORN, reason="measures fastws")
async def test_10000_idle_connections_then_all_echo(server_process, raised_nofile):
    started = time.monotonic()
    sp = server_process(
        "tests.integration.apps:hello",
        "--ws-ping-interval",
        "0",
        "--backlog",
        "4096",
        "--log-level",
        "warning",
        "--no-access-log",
    )
    pid = sp.proc.pid
    baseline_fds = await fd_baseline(sp)
    await asyncio.sleep(0.5)
    rss_before = proc_status_kib(pid, "VmRSS")

    loop = asyncio.get_running_loop()
    rounds: list[dict[str, float]] = []
    for _ in range(2):  # the second round shows whether closed connections left anything
        rounds.append(await _open_idle_echo_close(loop, sp.port, pid, baseline_fds))
    rss_after = rounds[0]["rss_idle_kib"]
    rss_closed = rounds[-1]["rss_after_close_kib"]

    per_conn_kib = (rss_after - rss_before) / N
    figures = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "connections": N,
        "rss_before_kib": rss_before,
        "rss_idle_kib": rss_after,
        "rss_idle_second_round_kib": rounds[1]["rss_idle_kib"],
        "rss_after_close_kib": rss_closed,
        "per_connection_kib": round(per_conn_kib, 2),
        "connect_s": rounds[0]["connect_s"],
        "echo_all_s": rounds[0]["echo_s"],
        "total_s": round(time.monotonic() - started, 1),
        "codec": os.environ.get("FASTWS_NO_EXTENSIONS") and "python" or "cython",
    }
    print("\n" + json.dumps(figures))
    out = Path(REPO_ROOT) / "build" / "many-connections.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(figures) + "\n")
    assert per_conn_kib < PER_CONNECTION_KIB_MAX, figures
    # Closed connections leave nothing behind: a second round of N costs no more than the first
    # (the allocator keeps the freed memory for reuse, so RSS after closing stays high).
    assert rounds[1]["rss_idle_kib"] <= rss_after + max(0.05 * (rss_after - rss_before), 2048), (
        figures
    )


async def _open_idle_echo_close(
    loop: asyncio.AbstractEventLoop, port: int, pid: int, baseline_fds: int
) -> dict[str, float]:
    """Open N connections, let them idle, measure, echo once on each, close all."""
    clients: list[IdleClient] = []
    gate = asyncio.Semaphore(HANDSHAKES_IN_FLIGHT)

    async def open_one() -> None:
        async with gate:
            _, client = await loop.create_connection(lambda: IdleClient(loop), HOST, port)
            clients.append(client)
            await within(client.opened, 30.0)

    try:
        t0 = time.monotonic()
        results = await within(
            asyncio.gather(*(open_one() for _ in range(N)), return_exceptions=True), 120.0
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"{len(errors)} handshakes failed, first: {errors[0]!r}"
        connect_s = time.monotonic() - t0
        await asyncio.sleep(1.0)  # idle: nothing in flight
        rss_idle = proc_status_kib(pid, "VmRSS")
        assert fd_count(pid) >= baseline_fds + N

        t0 = time.monotonic()
        replies = [c.echo(b"n%d" % i) for i, c in enumerate(clients)]
        got = await within(asyncio.gather(*replies), 60.0)
        echo_s = time.monotonic() - t0
        assert got == [b"n%d" % i for i in range(N)]
    finally:
        for c in clients:
            if c.transport is not None:
                c.transport.close()
    await wait_fds(pid, baseline_fds, timeout_s=30.0)
    return {
        "rss_idle_kib": rss_idle,
        "rss_after_close_kib": proc_status_kib(pid, "VmRSS"),
        "connect_s": round(connect_s, 1),
        "echo_s": round(echo_s, 1),
    }

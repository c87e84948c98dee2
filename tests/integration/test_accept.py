"""Accepting connections on uvloop (fastws/accept.py): during a burst of new connections a loop
pass takes several from the listen queue (libuv alone takes one per pass and listening
descriptor), at a calm rate it takes one (no accept() is wasted), every connection is served,
and at shutdown the port stops accepting."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from websockets.asyncio.client import connect as ws_connect

import fastws.accept as accept_mod
from fastws.accept import _waiting

from .apps import echo_websocket
from .conftest import HOST, IS_UVICORN, wait_until, within

pytestmark = [
    pytest.mark.timeout(30),
    pytest.mark.skipif(IS_UVICORN, reason="fastws's accept policy (fastws/accept.py)"),
]

WAITING = 6  # connections queued while the loop is held


@pytest.fixture
def counted(monkeypatch) -> list[int]:
    """One entry per connection the server accepts: uvloop calls the protocol factory as it
    accepts, in the loop's poll phase."""
    import fastws.server as server_mod

    made: list[int] = []

    class CountingProtocol(server_mod.HttpProtocol):  # type: ignore[misc,name-defined]
        def __init__(self, *args: object) -> None:
            made.append(1)
            super().__init__(*args)

    monkeypatch.setattr(server_mod, "HttpProtocol", CountingProtocol)
    return made


def accepted_in_one_pass(srv, made: list[int], hold_s: float = 0.0) -> int:
    """Hold the server's loop while WAITING connections queue up (and for at least
    ``hold_s``), then count how many the next poll phase accepts (read by a callback that runs
    right after it)."""
    loop = srv.loop
    held, queued = threading.Event(), threading.Event()
    first_pass: list[int] = []

    def hold() -> None:
        started = time.monotonic()
        held.set()
        queued.wait(5)
        time.sleep(max(0.0, hold_s - (time.monotonic() - started)))
        before = len(made)
        loop.call_soon(lambda: first_pass.append(len(made) - before))

    before = len(made)
    loop.call_soon_threadsafe(hold)
    assert held.wait(5)
    clients = [socket.create_connection((HOST, srv.port), timeout=5) for _ in range(WAITING)]
    try:
        listener = srv.server.servers[0].sockets[0]
        wait_until(lambda: _waiting(listener) == WAITING)  # all in the kernel's accept queue
        queued.set()
        wait_until(lambda: bool(first_pass))
        wait_until(lambda: len(made) - before == WAITING)  # the rest on the next passes
        return first_pass[0]
    finally:
        for client in clients:
            client.close()


def start_burst(srv, monkeypatch) -> None:
    """Make an empty accept queue count as a burst, and wait for the extra registrations."""
    monkeypatch.setattr(accept_mod, "QUEUED", 0)
    extra = accept_mod.ACCEPTS_PER_PASS - 1
    wait_until(lambda: len(srv.server.burst_accepts.extra) == extra)


def test_out_of_a_burst_a_pass_accepts_one_connection(running_server, counted, monkeypatch):
    monkeypatch.setattr(accept_mod, "QUEUED", 10**6)  # no burst, whenever the ticks run
    srv = running_server(echo_websocket, loop_impl="uvloop")
    assert accepted_in_one_pass(srv, counted) == 1
    assert srv.server.burst_accepts.extra == []  # no extra accept() per connection


def test_connections_waiting_at_a_tick_start_a_burst(running_server, counted):
    srv = running_server(echo_websocket, loop_impl="uvloop")
    assert srv.server.burst_accepts.extra == []
    # Held longer than a tick (0.1 s): the overdue tick runs before the last accepts, and
    # sees them wait.
    assert accepted_in_one_pass(srv, counted, hold_s=0.3) == 1
    wait_until(lambda: len(srv.server.burst_accepts.extra) == accept_mod.ACCEPTS_PER_PASS - 1)


def test_during_a_burst_a_pass_accepts_several(running_server, counted, monkeypatch):
    srv = running_server(echo_websocket, loop_impl="uvloop")
    start_burst(srv, monkeypatch)
    assert accepted_in_one_pass(srv, counted) == min(WAITING, accept_mod.ACCEPTS_PER_PASS)


def test_burst_mode_ends_when_new_connections_calm_down(running_server, monkeypatch):
    srv = running_server(echo_websocket, loop_impl="uvloop")
    monkeypatch.setattr(accept_mod, "CALM_TICKS", 2)
    start_burst(srv, monkeypatch)
    monkeypatch.setattr(accept_mod, "QUEUED", 10**6)
    wait_until(lambda: srv.server.burst_accepts.extra == [])
    with socket.create_connection((HOST, srv.port), timeout=5):
        pass  # the socket itself still listens


async def test_connections_accepted_through_every_registration_are_served(
    running_server, monkeypatch
):
    srv = running_server(echo_websocket, loop_impl="uvloop")
    await asyncio.to_thread(start_burst, srv, monkeypatch)

    async def echo(i: int) -> str:
        async with ws_connect(srv.ws_url()) as ws:
            await ws.send(f"hello {i}")
            return str(await within(ws.recv()))

    n = 40
    replies = await within(asyncio.gather(*(echo(i) for i in range(n))), 15)
    assert replies == [f"hello {i}" for i in range(n)]


inside_request = threading.Event()


async def slow_http(scope, receive, send) -> None:
    if scope["type"] == "websocket":
        await echo_websocket(scope, receive, send)
        return
    inside_request.set()
    await asyncio.sleep(2.0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


def test_once_shutdown_begins_the_port_refuses_connections(running_server, monkeypatch):
    srv = running_server(slow_http, loop_impl="uvloop")
    start_burst(srv, monkeypatch)
    slow = socket.create_connection((HOST, srv.port), timeout=5)
    try:
        inside_request.clear()
        slow.sendall(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n")
        assert inside_request.wait(5)
        srv.server.should_exit = True

        def refused() -> bool:
            try:
                socket.create_connection((HOST, srv.port), timeout=5).close()
            except (ConnectionRefusedError, ConnectionResetError):
                return True  # reset: the attempt raced the listening socket's close
            return False

        wait_until(refused, 1.5)
        assert not srv.stopped  # still shutting down: the slow response is in flight
        assert slow.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        slow.close()


async def test_out_of_descriptors_for_a_burst_the_server_goes_on(running_server, monkeypatch):
    def no_descriptors(sock: object) -> socket.socket:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(accept_mod, "_dup", no_descriptors)
    monkeypatch.setattr(accept_mod, "QUEUED", 0)
    srv = running_server(echo_websocket, loop_impl="uvloop")
    await asyncio.sleep(0.3)  # ticks that try to open the extra registrations, and fail
    assert srv.server.burst_accepts.extra == []
    async with ws_connect(srv.ws_url()) as ws:
        await ws.send("still serving")
        assert await within(ws.recv()) == "still serving"
    assert not srv.stopped

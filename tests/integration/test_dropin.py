"""Third-party apps and clients that work on uvicorn must work on fastws unchanged.

- A client that aborts a download (Starlette's StreamingResponse and FileResponse) is the
  client going away, not an app error: no ERROR and no traceback in the log (ASGI 2.4), on
  either server.
- An app that accepts with a subprotocol the client did not offer: fastws sends it, as uvicorn
  does, so lenient clients (aiohttp, websocket-client) connect; fastws logs one warning naming
  the app's choice and RFC 6455 §4.2.2 (strict clients such as browsers and websockets refuse
  such a 101 on both servers).

Servers run as subprocesses through their CLI (FASTWS_TEST_SERVER=uvicorn for uvicorn's).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time

import aiohttp
import httpx
import pytest
import websocket  # websocket-client

from .conftest import HOST, IS_FASTWS, within

pytestmark = pytest.mark.timeout(60)

APP = "tests.integration.dropin_apps:app"
ABORTS = 5


def abort_download(port: int, path: str) -> None:
    """GET ``path``, read a little of the body, then reset the connection (RST)."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        got = b""
        while len(got) < 200_000:
            data = sock.recv(65536)
            assert data, "server closed before sending a body"
            got += data
        assert got.startswith(b"HTTP/1.1 200 "), got[:200]
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def wait_count(port: int, n: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        done = int(httpx.get(f"http://{HOST}:{port}/count", timeout=5, trust_env=False).text)
        if done >= n:
            return
        assert time.monotonic() < deadline, f"{done} of {n} aborted streams ended"
        time.sleep(0.05)


@pytest.mark.parametrize("path", ["/stream", "/download"])
def test_aborted_downloads_are_not_logged_as_app_errors(server_process, path):
    server = server_process(APP, "--log-level", "debug")
    for _ in range(ABORTS):
        abort_download(server.port, path)
    if path == "/stream":
        wait_count(server.port, ABORTS)  # every aborted stream's app code has ended
    else:
        time.sleep(1.0)  # FileResponse keeps no count: give the server time to see the resets
    # The server still serves, and said nothing alarming about the aborts.
    assert (
        httpx.get(f"http://{HOST}:{server.port}/count", timeout=5, trust_env=False).status_code
        == 200
    )
    output = server.output
    assert "Exception in ASGI application" not in output, output[-4000:]
    assert "Traceback" not in output, output[-4000:]
    assert "ERROR" not in output, output[-4000:]


async def aiohttp_connect(port: int, pick: str, offer: tuple[str, ...]) -> tuple[str | None, str]:
    url = f"ws://{HOST}:{port}/choose?pick={pick}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.ws_connect(url, protocols=offer) as ws:
            message = await within(ws.receive())
            return ws.protocol, message.data


def test_unoffered_subprotocol_is_sent_and_lenient_clients_connect(server_process):
    server = server_process(APP)
    # aiohttp, offering another subprotocol: connects, with no subprotocol agreed.
    protocol, scope_subprotocols = asyncio.run(aiohttp_connect(server.port, "picked", ("mine",)))
    assert protocol is None
    assert scope_subprotocols == "['mine']"
    # websocket-client, offering none: connects, and the 101 names the app's choice.
    for _ in range(3):
        ws = websocket.create_connection(f"ws://{HOST}:{server.port}/choose?pick=picked", timeout=5)
        try:
            assert ws.getheaders()["sec-websocket-protocol"] == "picked"
            assert ws.recv() == "[]"
        finally:
            ws.close()
    if IS_FASTWS:
        time.sleep(0.2)
        warnings = [line for line in server.output.splitlines() if "'picked'" in line]
        assert len(warnings) == 1, server.output  # once per subprotocol, not per connection
        assert "RFC 6455 §4.2.2" in warnings[0] and "WARNING" in warnings[0]


def test_offered_subprotocol_still_agrees_without_a_warning(server_process):
    server = server_process(APP)
    protocol, _ = asyncio.run(aiohttp_connect(server.port, "b", ("a", "b")))
    assert protocol == "b"
    if IS_FASTWS:
        assert "§4.2.2" not in server.output

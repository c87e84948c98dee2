"""Lifespan (asgiref specs/lifespan.rst) through a real server: event order, state handed to
connection scopes, startup failure, and the auto / on / off modes."""

from __future__ import annotations

import signal

import pytest
from websockets.asyncio.client import connect as ws_connect

from . import apps
from .conftest import RawConnection, Recorder, within

pytestmark = pytest.mark.timeout(20)


async def http_get(port: int, path: str = "/") -> bytes:
    async with await RawConnection.open(port) as conn:
        await conn.send(f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n".encode())
        response = await conn.read_response()
    assert response.status == 200, response
    return response.body


def make_lifespan_app(events: Recorder, *, state: dict | None = None):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            events.add(("scope", scope))
            while True:
                message = await receive()
                events.add(message["type"])
                if message["type"] == "lifespan.startup":
                    if state is not None:
                        scope["state"].update(state)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            events.add("http")
            events.add(("http-state", dict(scope.get("state", {}))))
            await apps.text_response(send, "ok")
        else:
            events.add(("ws-state", dict(scope.get("state", {}))))
            await apps.echo_websocket(scope, receive, send)

    return app


async def test_startup_and_shutdown_run_in_order_around_serving(running_server):
    events = Recorder()
    srv = running_server(make_lifespan_app(events), lifespan="on")
    # Startup completes before the server reports started (and so before it accepts).
    assert [e for e in events if isinstance(e, str)] == ["lifespan.startup"]
    await http_get(srv.port)
    srv.stop()
    assert [e for e in events if isinstance(e, str)] == [
        "lifespan.startup",
        "http",
        "lifespan.shutdown",
    ]
    scope = events.items[0][1]
    assert scope["type"] == "lifespan"
    assert scope["asgi"]["version"] == "3.0"
    assert scope["asgi"].get("spec_version", "2.0").startswith("2.")
    assert isinstance(scope["state"], dict)


async def test_state_set_at_startup_reaches_http_and_websocket_scopes(running_server):
    events = Recorder()
    srv = running_server(
        make_lifespan_app(events, state={"db": "connected", "n": 1}), lifespan="on"
    )
    await http_get(srv.port)
    async with ws_connect(srv.ws_url(), open_timeout=5, close_timeout=5, proxy=None) as ws:
        await within(ws.send("x"))
        await within(ws.recv())
    http_state = await events.wait_for(lambda e: isinstance(e, tuple) and e[0] == "http-state")
    ws_state = await events.wait_for(lambda e: isinstance(e, tuple) and e[0] == "ws-state")
    assert http_state[1] == {"db": "connected", "n": 1}
    assert ws_state[1] == {"db": "connected", "n": 1}


async def test_http_state_is_a_copy_per_request(running_server):
    seen = Recorder()

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["hits"] = 0
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen.add(scope["state"]["hits"])
        scope["state"]["hits"] += 1
        await apps.text_response(send, "ok")

    srv = running_server(app, lifespan="on")
    for _ in range(3):
        await http_get(srv.port)
    assert seen.items == [0, 0, 0]


@pytest.mark.parametrize("target", ["startup_failure", "startup_raises"])
def test_startup_failure_means_the_server_does_not_start(running_server, target):
    with pytest.raises(running_server.ServerDidNotStart) as info:
        running_server(getattr(apps, target), lifespan="on")
    # uvicorn's serve() ends with sys.exit(3) (STARTUP_FAILURE); returning is fine too.
    assert info.value.exit_code in (3, None), repr(info.value.error)


async def test_auto_mode_serves_when_the_app_rejects_lifespan(running_server):
    calls = Recorder()

    async def app(scope, receive, send):
        calls.add(scope["type"])
        if scope["type"] == "lifespan":
            raise ValueError("this app knows nothing about lifespan")
        await apps.text_response(send, "served anyway")

    srv = running_server(app, lifespan="auto")
    assert await http_get(srv.port) == b"served anyway"
    srv.stop()
    assert calls.items == ["lifespan", "http"]  # no second lifespan call at shutdown


async def test_on_mode_with_an_app_raising_on_lifespan_does_not_start(running_server):
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            raise ValueError("no lifespan here")
        await apps.text_response(send, "unreachable")

    with pytest.raises(running_server.ServerDidNotStart):
        running_server(app, lifespan="on")


async def test_off_mode_never_calls_the_app_with_lifespan(running_server):
    calls = Recorder()

    async def app(scope, receive, send):
        calls.add(scope["type"])
        assert scope["type"] != "lifespan"
        await apps.text_response(send, "ok")

    srv = running_server(app, lifespan="off")
    await http_get(srv.port)
    srv.stop()
    assert calls.items == ["http"]


@pytest.mark.timeout(30)
def test_startup_failure_exits_with_code_3(server_process):
    proc = server_process("tests.integration.apps:startup_failure", "--lifespan", "on", wait=False)
    code = proc.wait(20)
    assert code == 3, proc.output
    assert "database unreachable" in proc.output  # the app's failure message is logged


@pytest.mark.timeout(30)
def test_lifespan_shutdown_runs_when_the_process_stops(server_process, tmp_path):
    marker = tmp_path / "events.txt"
    proc = server_process("tests.integration.apps:hello", env={"FASTWS_TEST_MARKER": str(marker)})
    assert marker.read_text().splitlines() == ["startup"]
    proc.signal(signal.SIGTERM)
    proc.wait(15)
    assert marker.read_text().splitlines() == ["startup", "shutdown"]

"""``--ws-allowed-origins`` against a live server: allowed origins reach the app, others get
HTTP 403 before the app runs (logged at info), plain HTTP is untouched, and the CLI flag works.
fastws-only: no peer server offers the option."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from . import apps
from .conftest import HOST, IS_UVICORN, RawConnection, Recorder, run_cli, within

pytestmark = [
    pytest.mark.timeout(20),
    pytest.mark.skipif(IS_UVICORN, reason="uvicorn has no --ws-allowed-origins"),
]

ALLOWED = ["https://app.example.com", "https://*.example.org", "http://localhost:3000"]


def make_app(record: Recorder) -> apps.App:
    async def app(scope: apps.Scope, receive: apps.Receive, send: apps.Send) -> None:
        record.add(scope["type"])
        if scope["type"] == "http":
            await apps.text_response(send, "ok")
        else:
            await apps.echo_websocket(scope, receive, send)

    return app


class ErrorRecords:
    """Records of fastws.error from ``attach()`` on; call it once the server has started
    (building a Config applies its logging config, which replaces handlers)."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self.handler = logging.Handler()
        self.handler.emit = self.records.append  # type: ignore[method-assign]

    def attach(self) -> None:
        logging.getLogger("fastws.error").addHandler(self.handler)

    def __iter__(self) -> Iterator[logging.LogRecord]:
        return iter(list(self.records))


@pytest.fixture
def error_records() -> Iterator[ErrorRecords]:
    records = ErrorRecords()
    try:
        yield records
    finally:
        logging.getLogger("fastws.error").removeHandler(records.handler)


async def echo_with_origin(port: int, origin: str) -> str:
    async with ws_connect(f"ws://{HOST}:{port}/", origin=origin, open_timeout=5) as ws:  # type: ignore[arg-type]
        await within(ws.send("ping"))
        reply = await within(ws.recv())
    assert isinstance(reply, str)
    return reply


async def upgrade_status(port: int, origin: str | None) -> tuple[int, bytes]:
    async with await RawConnection.open(port) as conn:
        response = await conn.handshake(extra=[("Origin", origin)] if origin is not None else [])
        if response.status != 101:
            assert await conn.read_to_eof(3.0) == b""  # and the connection is closed
        return response.status, response.body


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.example.com",
        "https://APP.example.com:443",
        "https://chat.example.org",
        "https://eu.chat.example.org",
        "http://localhost:3000",
    ],
)
async def test_allowed_origin_reaches_the_app(running_server, origin):
    record = Recorder()
    srv = running_server(make_app(record), ws_allowed_origins=ALLOWED)
    assert await echo_with_origin(srv.port, origin) == "ping"
    assert list(record) == ["websocket"]


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "null",
        "https://evil.com",
        "https://example.org",  # bare domain of the wildcard
        "https://app.example.com.evil.com",
        "http://app.example.com",  # scheme differs
        "https://app.example.com:8443",  # port differs
        "http://localhost:3001",
        "https://app.example.com/",
    ],
)
async def test_other_origins_get_403_and_the_app_never_runs(running_server, origin):
    record = Recorder()
    srv = running_server(make_app(record), ws_allowed_origins=ALLOWED)
    status, body = await upgrade_status(srv.port, origin)
    assert status == 403
    assert body.endswith(b"\n") and (b"Origin" in body)
    assert list(record) == []


async def test_websockets_client_sees_403(running_server):
    srv = running_server(make_app(Recorder()), ws_allowed_origins=ALLOWED)
    with pytest.raises(InvalidStatus) as info:
        await echo_with_origin(srv.port, "https://evil.com")
    assert info.value.response.status_code == 403


async def test_refusal_is_logged_at_info_with_the_origin(running_server, error_records):
    srv = running_server(make_app(Recorder()), ws_allowed_origins=ALLOWED, log_level="info")
    error_records.attach()
    assert (await upgrade_status(srv.port, "https://evil.com"))[0] == 403
    assert (await upgrade_status(srv.port, None))[0] == 403
    refused = [r for r in error_records if "refused" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.INFO, logging.INFO]
    assert "https://evil.com" in refused[0].getMessage()
    assert "Origin header required" in refused[1].getMessage()


async def test_without_the_option_every_origin_is_accepted(running_server):
    record = Recorder()
    srv = running_server(make_app(record))
    assert await echo_with_origin(srv.port, "https://evil.com") == "ping"
    assert (await upgrade_status(srv.port, None))[0] == 101


async def test_plain_http_is_not_origin_checked(running_server):
    srv = running_server(make_app(Recorder()), ws_allowed_origins=ALLOWED)
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        response = await within(client.get(srv.url("/"), headers={"Origin": "https://evil.com"}))
    assert response.status_code == 200


async def test_malformed_upgrade_still_gets_its_own_error(running_server):
    # Handshake validation runs first: a bad key is a 400 whatever the origin.
    srv = running_server(make_app(Recorder()), ws_allowed_origins=ALLOWED)
    async with await RawConnection.open(srv.port) as conn:
        response = await conn.handshake(key="short", extra=[("Origin", "https://evil.com")])
    assert response.status == 400


async def test_server_keeps_serving_allowed_clients_after_refusals(running_server):
    record = Recorder()
    srv = running_server(make_app(record), ws_allowed_origins=ALLOWED)
    for _ in range(5):
        assert (await upgrade_status(srv.port, "https://evil.com"))[0] == 403
    assert await echo_with_origin(srv.port, "https://app.example.com") == "ping"
    assert list(record) == ["websocket"]


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


async def test_cli_flag_comma_separated_and_repeated(server_process):
    sp = server_process(
        "tests.integration.apps:hello",
        "--ws-allowed-origins", "https://app.example.com,https://*.example.org",
        "--ws-allowed-origins", "http://localhost:3000",
    )  # fmt: skip
    for origin in ("https://app.example.com", "https://x.example.org", "http://localhost:3000"):
        assert await echo_with_origin(sp.port, origin) == "ping"
    assert (await upgrade_status(sp.port, "https://evil.com"))[0] == 403
    assert "WebSocket upgrade refused" in sp.output


def test_cli_bad_pattern_exits_2_naming_the_flag():
    result = run_cli("tests.integration.apps:hello", "--ws-allowed-origins", "https://a.test/x")
    assert result.returncode == 2
    assert "'--ws-allowed-origins'" in result.stderr
    assert "no path" in result.stderr

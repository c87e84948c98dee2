"""``--proxy-headers`` and ``--forwarded-allow-ips`` against a live server: X-Forwarded-For and
X-Forwarded-Proto change ``client`` and ``scheme`` in http and websocket scopes, and in the
access log, only when the connecting peer (always 127.0.0.1 here) is trusted. The negative
cases make 127.0.0.1 untrusted by trusting someone else."""

from __future__ import annotations

import asyncio
import json
import logging
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from . import apps
from .conftest import HOST, IS_UVICORN, RawConnection, Recorder, within, ws_connect_raw

pytestmark = pytest.mark.timeout(20)

ACCESS_LOGGER = "uvicorn.access" if IS_UVICORN else "fastws.access"

FORWARDED = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]


def make_app(record: Recorder) -> apps.App:
    """Records (type, client, scheme) of every http and websocket scope; answers or accepts."""

    async def app(scope: apps.Scope, receive: apps.Receive, send: apps.Send) -> None:
        record.add((scope["type"], tuple(scope["client"] or ()), scope["scheme"]))
        if scope["type"] == "http":
            await apps.text_response(send, "ok")
        else:
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})

    return app


async def http_scope(srv: Any, record: Recorder, headers: list[tuple[str, str]]) -> tuple:
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        response = await within(client.get(srv.url("/"), headers=headers))
    assert response.status_code == 200
    return await record.wait_for(lambda item: item[0] == "http")  # type: ignore[no-any-return]


async def ws_scope(srv: Any, record: Recorder, headers: list[tuple[str, str]]) -> tuple:
    conn = await ws_connect_raw(srv.port, "/ws", extra=headers)
    try:
        await conn.read_close()
    finally:
        await conn.close()
    return await record.wait_for(lambda item: item[0] == "websocket")  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# trusted peer (the default trusts 127.0.0.1 and ::1)
# --------------------------------------------------------------------------------------------


async def test_trusted_peer_sets_http_client_and_scheme(running_server):
    record = Recorder()
    srv = running_server(make_app(record))
    assert await http_scope(srv, record, FORWARDED) == ("http", ("203.0.113.7", 0), "https")


async def test_trusted_peer_sets_websocket_client_and_wss(running_server):
    record = Recorder()
    srv = running_server(make_app(record))
    assert await ws_scope(srv, record, FORWARDED) == ("websocket", ("203.0.113.7", 0), "wss")


@pytest.mark.parametrize(("proto", "scheme"), [("wss", "wss"), ("ws", "ws"), ("http", "ws")])
async def test_websocket_scheme_follows_forwarded_proto(running_server, proto, scheme):
    record = Recorder()
    srv = running_server(make_app(record))
    _, _, seen = await ws_scope(srv, record, [("X-Forwarded-Proto", proto)])
    assert seen == scheme


async def test_without_forwarding_headers_the_peer_is_the_client(running_server):
    record = Recorder()
    srv = running_server(make_app(record))
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await conn.read_response()).status == 200
        local = conn.sockname
    assert await record.wait_for(lambda item: True) == ("http", local, "http")


async def test_proxy_chain_right_most_untrusted_address_is_the_client(running_server):
    record = Recorder()
    srv = running_server(make_app(record), forwarded_allow_ips="127.0.0.1, 10.0.0.0/8")
    headers = [("X-Forwarded-For", "198.51.100.9, 192.0.2.1, 10.1.2.3")]
    _, client, _ = await http_scope(srv, record, headers)
    assert client == ("192.0.2.1", 0)  # 10.1.2.3 is a trusted proxy; 192.0.2.1 is not


@pytest.mark.parametrize("allow", ["127.0.0.0/8", "*", "10.0.0.1,127.0.0.1"])
async def test_cidr_star_and_lists_trust_the_peer(running_server, allow):
    record = Recorder()
    srv = running_server(make_app(record), forwarded_allow_ips=allow)
    assert await ws_scope(srv, record, FORWARDED) == ("websocket", ("203.0.113.7", 0), "wss")


# --------------------------------------------------------------------------------------------
# untrusted peer, or proxy headers off
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("allow", ["10.0.0.1", "10.0.0.0/8,::1"])
async def test_untrusted_peer_headers_are_ignored_for_http(running_server, allow):
    record = Recorder()
    srv = running_server(make_app(record), forwarded_allow_ips=allow)
    kind, client, scheme = await http_scope(srv, record, FORWARDED)
    assert (kind, client[0], scheme) == ("http", HOST, "http")


async def test_untrusted_peer_headers_are_ignored_for_websocket(running_server):
    record = Recorder()
    srv = running_server(make_app(record), forwarded_allow_ips="10.0.0.1")
    kind, client, scheme = await ws_scope(srv, record, FORWARDED)
    assert (kind, client[0], scheme) == ("websocket", HOST, "ws")
    assert client[1] != 0  # the real peer port, not a forwarded one


async def test_no_proxy_headers_ignores_them_even_from_a_trusted_peer(running_server):
    record = Recorder()
    srv = running_server(make_app(record), proxy_headers=False, forwarded_allow_ips="*")
    kind, client, scheme = await ws_scope(srv, record, FORWARDED)
    assert (kind, client[0], scheme) == ("websocket", HOST, "ws")


# --------------------------------------------------------------------------------------------
# access log and command line
# --------------------------------------------------------------------------------------------


class AccessRecords:
    """Collects the access logger's records from ``attach()`` on (call it once the server has
    started: building a Config applies its logging config, which replaces handlers)."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self.handler = logging.Handler()
        self.handler.emit = self.records.append  # type: ignore[method-assign]

    def attach(self) -> None:
        logging.getLogger(ACCESS_LOGGER).addHandler(self.handler)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in list(self.records)]

    async def wait_for(self, prefix: str, timeout_s: float = 5.0) -> list[str]:
        """All messages so far, once one starts with ``prefix``: the server logs a request
        after writing its response, so the client can get there first."""
        deadline = time.monotonic() + timeout_s
        while not any(line.startswith(prefix) for line in self.messages()):
            assert time.monotonic() < deadline, f"no {prefix!r} in {self.messages()}"
            await asyncio.sleep(0.01)
        return self.messages()


@pytest.fixture
def access_records() -> Iterator[AccessRecords]:
    records = AccessRecords()
    try:
        yield records
    finally:
        logging.getLogger(ACCESS_LOGGER).removeHandler(records.handler)


async def test_access_log_shows_the_forwarded_client(running_server, access_records):
    record = Recorder()
    srv = running_server(make_app(record), log_level="info")
    access_records.attach()
    await http_scope(srv, record, FORWARDED)
    await access_records.wait_for('203.0.113.7:0 - "GET / HTTP/1.1" 200')
    if IS_UVICORN:
        return  # uvicorn logs WebSocket sessions on its error logger, in another shape
    await ws_scope(srv, record, FORWARDED)
    lines = await access_records.wait_for('203.0.113.7:0 - "WebSocket /ws HTTP/1.1" 101')
    assert not any(line.startswith(HOST) for line in lines), lines


SCOPE_APP = textwrap.dedent(
    """
    import json

    async def app(scope, receive, send):
        if scope["type"] == "http":
            body = json.dumps([scope["client"], scope["scheme"]]).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send",
                        "text": json.dumps([scope["client"], scope["scheme"]])})
            await send({"type": "websocket.close"})
    """
)


@pytest.mark.parametrize(
    ("args", "env", "trusted"),
    [
        ((), {}, True),
        (("--forwarded-allow-ips", "10.0.0.1"), {}, False),
        ((), {"FORWARDED_ALLOW_IPS": "10.0.0.0/8"}, False),
        (("--forwarded-allow-ips", "127.0.0.0/8"), {"FORWARDED_ALLOW_IPS": "10.0.0.1"}, True),
        (("--forwarded-allow-ips", "*", "--no-proxy-headers"), {}, False),
    ],
)
async def test_cli_forwarded_allow_ips(server_process, tmp_path, args, env, trusted):
    (tmp_path / "scope_app.py").write_text(SCOPE_APP)
    sp = server_process("scope_app:app", "--app-dir", str(tmp_path), *args, env=env)
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        response = await within(client.get(f"http://{HOST}:{sp.port}/", headers=FORWARDED))
    (client_host, _), scheme = json.loads(response.text)
    assert (client_host, scheme) == (("203.0.113.7", "https") if trusted else (HOST, "http"))

    conn = await ws_connect_raw(sp.port, "/", extra=FORWARDED)
    try:
        text = (await conn.read_frame()).payload.decode()
    finally:
        await conn.close()
    (client_host, _), scheme = json.loads(text)
    assert (client_host, scheme) == (("203.0.113.7", "wss") if trusted else (HOST, "ws"))

"""TLS through a real server: https and wss with certificates made by trustme, the ``--ssl-*``
options (client certificates, encrypted keys, ciphers, protocol version), and the scheme the
application sees. Clients trust only the test CA, so every success here is a verified handshake.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

from . import apps
from .conftest import HOST, IS_UVICORN, RawConnection, Recorder, within

pytestmark = pytest.mark.timeout(30)

KEY_PASSWORD = "correct horse"
# What a client may see when the server refuses its handshake: an SSL alert (OSError), a
# connection dropped after a TLS 1.3 handshake that looked complete (httpx/websockets errors).
HANDSHAKE_REFUSED = (OSError, EOFError, httpx.TransportError, WebSocketException)


@dataclass
class TLSFiles:
    ca: trustme.CA
    ca_pem: str
    cert: str  # server certificate chain
    key: str  # server private key, unencrypted
    encrypted_key: str  # the same key, encrypted with KEY_PASSWORD
    client: trustme.LeafCert  # a client certificate issued by the same CA


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    tmp: Path = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server = ca.issue_cert(HOST, "localhost")
    paths = {name: tmp / f"{name}.pem" for name in ("ca", "cert", "key", "encrypted_key")}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    for i, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(paths["cert"]), append=i > 0)
    server.private_key_pem.write_to_path(str(paths["key"]))
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    paths["encrypted_key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(KEY_PASSWORD.encode()),
        )
    )
    return TLSFiles(
        ca=ca,
        ca_pem=str(paths["ca"]),
        cert=str(paths["cert"]),
        key=str(paths["key"]),
        encrypted_key=str(paths["encrypted_key"]),
        client=ca.issue_cert("client@example.test"),
    )


def client_context(tls: TLSFiles, *, with_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    tls.ca.configure_trust(ctx)
    if with_cert:
        tls.client.configure_cert(ctx)
    return ctx


def server_options(tls: TLSFiles, **extra: Any) -> dict[str, Any]:
    return {"ssl_certfile": tls.cert, "ssl_keyfile": tls.key, **extra}


def make_app(record: Recorder) -> apps.App:
    """HTTP: records the scope, answers "ok". WebSocket: records the scope, echoes."""

    async def app(scope: apps.Scope, receive: apps.Receive, send: apps.Send) -> None:
        record.add(dict(scope))
        if scope["type"] == "http":
            await apps.text_response(send, "ok")
        else:
            await apps.echo_websocket(scope, receive, send)

    return app


async def https_get(port: int, ctx: ssl.SSLContext, path: str = "/") -> httpx.Response:
    async with httpx.AsyncClient(verify=ctx, trust_env=False, timeout=5.0) as client:
        return await within(client.get(f"https://{HOST}:{port}{path}"))  # type: ignore[no-any-return]


async def wss_echo(port: int, ctx: ssl.SSLContext, text: str = "hi") -> str:
    async with ws_connect(f"wss://{HOST}:{port}/ws", ssl=ctx, open_timeout=5) as ws:
        await within(ws.send(text))
        reply = await within(ws.recv())
    assert isinstance(reply, str)
    return reply


# --------------------------------------------------------------------------------------------
# https and wss
# --------------------------------------------------------------------------------------------


async def test_https_request_has_https_scheme(running_server, tls):
    record = Recorder()
    srv = running_server(make_app(record), **server_options(tls))
    async with httpx.AsyncClient(verify=client_context(tls), trust_env=False) as client:
        response = await within(client.get(f"https://{HOST}:{srv.port}/path"))
        tls_version = response.extensions["network_stream"].get_extra_info("ssl_object").version()
    assert response.status_code == 200
    assert response.text == "ok"
    assert tls_version in ("TLSv1.2", "TLSv1.3")
    scope = await record.wait_for(lambda s: s["type"] == "http")
    assert scope["scheme"] == "https"
    assert scope["path"] == "/path"


async def test_wss_session_has_wss_scheme(running_server, tls):
    record = Recorder()
    srv = running_server(make_app(record), **server_options(tls))
    assert await wss_echo(srv.port, client_context(tls), "über TLS") == "über TLS"
    scope = await record.wait_for(lambda s: s["type"] == "websocket")
    assert scope["scheme"] == "wss"
    assert scope["path"] == "/ws"


async def test_client_not_trusting_the_ca_fails_verification(running_server, tls):
    # The server really presents the trustme certificate: a client with only the system CAs
    # refuses it.
    srv = running_server(make_app(Recorder()), **server_options(tls))
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        await https_get(srv.port, ssl.create_default_context())


async def test_plain_http_to_the_tls_port_gets_no_http_response(running_server, tls):
    record = Recorder()
    srv = running_server(make_app(record), **server_options(tls))
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        data = await conn.read_to_eof(5.0)
    assert not data.startswith(b"HTTP/")
    assert len(record) == 0


# --------------------------------------------------------------------------------------------
# client certificates (--ssl-cert-reqs, --ssl-ca-certs)
# --------------------------------------------------------------------------------------------


async def test_required_client_certificate_is_enforced(running_server, tls):
    record = Recorder()
    srv = running_server(
        make_app(record),
        **server_options(tls, ssl_cert_reqs=int(ssl.CERT_REQUIRED), ssl_ca_certs=tls.ca_pem),
    )
    with pytest.raises(HANDSHAKE_REFUSED):
        await https_get(srv.port, client_context(tls))
    with pytest.raises(HANDSHAKE_REFUSED):
        await wss_echo(srv.port, client_context(tls))
    assert len(record) == 0  # the app never saw a request without a certificate

    response = await https_get(srv.port, client_context(tls, with_cert=True))
    assert response.status_code == 200
    assert await wss_echo(srv.port, client_context(tls, with_cert=True)) == "hi"


async def test_client_certificate_from_another_ca_is_refused(running_server, tls):
    srv = running_server(
        make_app(Recorder()),
        **server_options(tls, ssl_cert_reqs=int(ssl.CERT_REQUIRED), ssl_ca_certs=tls.ca_pem),
    )
    ctx = client_context(tls)
    trustme.CA().issue_cert("stranger@example.test").configure_cert(ctx)
    with pytest.raises(HANDSHAKE_REFUSED):
        await https_get(srv.port, ctx)


async def test_optional_client_certificate_accepts_both(running_server, tls):
    srv = running_server(
        make_app(Recorder()),
        **server_options(tls, ssl_cert_reqs=int(ssl.CERT_OPTIONAL), ssl_ca_certs=tls.ca_pem),
    )
    assert (await https_get(srv.port, client_context(tls))).status_code == 200
    assert (await https_get(srv.port, client_context(tls, with_cert=True))).status_code == 200


# --------------------------------------------------------------------------------------------
# keys, ciphers
# --------------------------------------------------------------------------------------------


async def test_encrypted_key_with_password(running_server, tls):
    srv = running_server(
        make_app(Recorder()),
        ssl_certfile=tls.cert,
        ssl_keyfile=tls.encrypted_key,
        ssl_keyfile_password=KEY_PASSWORD,
    )
    assert (await https_get(srv.port, client_context(tls))).status_code == 200
    assert await wss_echo(srv.port, client_context(tls)) == "hi"


@pytest.mark.skipif(IS_UVICORN, reason="uvicorn raises the SSLError instead of exiting with 3")
def test_encrypted_key_with_wrong_password_fails_startup(running_server, tls):
    with pytest.raises(running_server.ServerDidNotStart) as info:
        running_server(
            make_app(Recorder()),
            ssl_certfile=tls.cert,
            ssl_keyfile=tls.encrypted_key,
            ssl_keyfile_password="wrong",
        )
    assert info.value.exit_code == 3


def tls12_client(tls: TLSFiles, cipher: str) -> ssl.SSLContext:
    # TLS 1.3 suites are not governed by set_ciphers(); pin TLS 1.2 to see the cipher list work.
    ctx = client_context(tls)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(cipher)
    return ctx


async def test_ssl_ciphers_limit_the_tls12_suites(running_server, tls):
    chosen = "ECDHE-ECDSA-AES128-GCM-SHA256"  # trustme keys are ECDSA
    srv = running_server(make_app(Recorder()), **server_options(tls, ssl_ciphers=chosen))
    ctx = tls12_client(tls, f"{chosen}:ECDHE-ECDSA-AES256-GCM-SHA384")
    async with httpx.AsyncClient(verify=ctx, trust_env=False) as client:
        response = await within(client.get(f"https://{HOST}:{srv.port}/"))
        ssl_object = response.extensions["network_stream"].get_extra_info("ssl_object")
        assert ssl_object.cipher()[0] == chosen
    with pytest.raises(HANDSHAKE_REFUSED):
        await https_get(srv.port, tls12_client(tls, "ECDHE-ECDSA-AES256-GCM-SHA384"))


# --------------------------------------------------------------------------------------------
# the same through the command line
# --------------------------------------------------------------------------------------------


async def test_cli_tls_flags(server_process, tls):
    sp = server_process(
        "tests.integration.apps:hello",
        "--ssl-certfile", tls.cert,
        "--ssl-keyfile", tls.encrypted_key,
        "--ssl-keyfile-password", KEY_PASSWORD,
        "--ssl-cert-reqs", "2",
        "--ssl-ca-certs", tls.ca_pem,
        "--ssl-ciphers", "ECDHE+AESGCM:ECDHE+CHACHA20",
    )  # fmt: skip
    response = await https_get(sp.port, client_context(tls, with_cert=True))
    assert response.text == "hello"
    assert await wss_echo(sp.port, client_context(tls, with_cert=True)) == "hi"
    with pytest.raises(HANDSHAKE_REFUSED):
        await https_get(sp.port, client_context(tls))
    assert f"https://{HOST}:{sp.port}" in sp.output


async def test_cli_ssl_version_pins_the_protocol(server_process, tls):
    sp = server_process(
        "tests.integration.apps:hello",
        "--ssl-certfile", tls.cert,
        "--ssl-keyfile", tls.key,
        "--ssl-version", str(int(ssl.PROTOCOL_TLSv1_2)),
    )  # fmt: skip
    ctx = client_context(tls)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    assert (await https_get(sp.port, ctx)).status_code == 200
    tls13_only = client_context(tls)
    tls13_only.minimum_version = ssl.TLSVersion.TLSv1_3
    with pytest.raises(HANDSHAKE_REFUSED):
        await https_get(sp.port, tls13_only)


@pytest.mark.skipif(IS_UVICORN, reason="uvicorn exits 1 with a traceback")
def test_cli_missing_certificate_file_fails_startup(server_process, tls, tmp_path):
    sp = server_process(
        "tests.integration.apps:hello",
        "--ssl-certfile", str(tmp_path / "missing.pem"),
        wait=False,
    )  # fmt: skip
    assert sp.wait(15.0) == 3
    assert "Error loading TLS settings" in sp.output


async def test_tls_server_keeps_serving_after_a_failed_handshake(running_server, tls):
    srv = running_server(make_app(Recorder()), **server_options(tls))
    reader, writer = await within(asyncio.open_connection(HOST, srv.port))
    writer.write(b"\x16\x03\x01\x00\x05garbage")  # a TLS record header, then nonsense
    await within(reader.read())
    writer.close()
    assert (await https_get(srv.port, client_context(tls))).status_code == 200

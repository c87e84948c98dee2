"""``http.response.pathsend``: Starlette's FileResponse sends the file's path and the server
moves the bytes (os.sendfile without TLS, read and write with it). Real downloads through
httpx, with and without Range, HEAD, keep-alive after a file, the ASGI misuse cases, a slow
reader, and TLS. uvicorn does not advertise the extension (its tests here check Starlette's
fallback gives the same bytes)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route

from .conftest import HOST, IS_UVICORN, RawConnection, Recorder, within
from .test_tls import client_context, server_options, tls  # noqa: F401 - the fixture

pytestmark = pytest.mark.timeout(60)

SIZE = 24 * 1024 * 1024 + 12345  # well past the socket buffers, and not a multiple of a chunk


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pathsend") / "big.bin"
    block = hashlib.sha256(b"fastws").digest() * 2048  # 64 KiB, not all zeros
    with open(path, "wb") as f:
        for i in range(SIZE // len(block)):
            f.write(bytes([i & 0xFF]) + block[1:])
        f.write(block[: SIZE % len(block)])
    assert path.stat().st_size == SIZE
    return path


def file_app(path: Path, record: Recorder | None = None) -> Any:
    async def download(request: Any) -> FileResponse:
        if record is not None:
            record.add(dict(request.scope))
        return FileResponse(path)

    return Starlette(routes=[Route("/f", download, methods=["GET", "HEAD"])])


def client(**kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=30.0, **kwargs)


async def test_file_response_download_is_whole_and_uses_pathsend(running_server, big_file):
    record = Recorder()
    srv = running_server(file_app(big_file, record))
    async with client() as c:
        response = await within(c.get(srv.url("/f")), 30)
        again = await within(c.get(srv.url("/f")), 30)  # same connection, after a file
    expected = big_file.read_bytes()
    assert response.status_code == 200 and again.status_code == 200
    assert response.headers["content-length"] == str(SIZE)
    assert response.content == expected and again.content == expected
    scope = next(iter(record))
    assert ("http.response.pathsend" in scope.get("extensions", {})) is not IS_UVICORN


@pytest.mark.parametrize(
    "range_header, start, end",
    [
        ("bytes=0-99", 0, 99),
        ("bytes=1000000-2000000", 1000000, 2000000),
        (f"bytes=-{7}", SIZE - 7, SIZE - 1),
    ],
)
async def test_range_requests_still_work(running_server, big_file, range_header, start, end):
    srv = running_server(file_app(big_file))
    async with client() as c:
        response = await within(c.get(srv.url("/f"), headers={"range": range_header}), 30)
    assert response.status_code == 206
    assert response.headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
    with open(big_file, "rb") as f:
        f.seek(start)
        assert response.content == f.read(end - start + 1)


async def test_head_gets_the_length_and_no_body(running_server, big_file):
    srv = running_server(file_app(big_file))
    async with await RawConnection.open(srv.port) as conn:
        await conn.send(b"HEAD /f HTTP/1.1\r\nHost: t\r\n\r\n")
        response = await conn.read_response(method="HEAD")
        assert response.status == 200
        assert response.header("content-length") == str(SIZE)
        await conn.send(b"GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n")
        assert (await conn.read_response()).status == 404  # the connection goes on


async def test_slow_reader_gets_every_byte(running_server, big_file):
    """A client that reads in small sips: the server waits for the socket, never spins."""
    srv = running_server(file_app(big_file))
    sock = socket.create_connection((HOST, srv.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, b"GET /f HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    digest, received = hashlib.sha256(), 0
    head = b""
    try:
        while True:
            data = await within(loop.sock_recv(sock, 16384), 20)
            if not data:
                break
            if not head:
                head, _, data = data.partition(b"\r\n\r\n")
            digest.update(data)
            received += len(data)
            if received < 1 << 20:
                await asyncio.sleep(0.001)
    finally:
        sock.close()
    assert head.startswith(b"HTTP/1.1 200 ")
    assert received == SIZE
    assert digest.hexdigest() == hashlib.sha256(big_file.read_bytes()).hexdigest()


async def test_https_download_reads_and_writes(running_server, big_file, tls):  # noqa: F811
    srv = running_server(file_app(big_file), **server_options(tls))
    async with client(verify=client_context(tls)) as c:
        response = await within(c.get(f"https://{HOST}:{srv.port}/f"), 60)
    assert response.status_code == 200
    assert response.content == big_file.read_bytes()


# --------------------------------------------------------------------------------------------
# the raw extension, and its misuse
# --------------------------------------------------------------------------------------------


def raw_pathsend_app(record: Recorder, path: Any, headers: list[tuple[bytes, bytes]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            await send({"type": "http.response.pathsend", "path": path})
        except RuntimeError as exc:
            record.add(str(exc))
            raise

    return app


@pytest.mark.skipif(IS_UVICORN, reason="uvicorn does not implement http.response.pathsend")
async def test_raw_pathsend_without_content_length_gets_one(running_server, big_file):
    record = Recorder()
    srv = running_server(raw_pathsend_app(record, str(big_file), []))
    async with client() as c:
        response = await within(c.get(srv.url("/")), 30)
    assert response.headers["content-length"] == str(SIZE)
    assert "transfer-encoding" not in response.headers
    assert response.content == big_file.read_bytes()
    assert list(record) == []


@pytest.mark.skipif(IS_UVICORN, reason="uvicorn does not implement http.response.pathsend")
async def test_raw_pathsend_with_chunked_framing(running_server, big_file):
    record = Recorder()
    srv = running_server(
        raw_pathsend_app(record, str(big_file), [(b"transfer-encoding", b"chunked")])
    )
    async with client() as c:
        response = await within(c.get(srv.url("/")), 30)
    assert response.headers["transfer-encoding"] == "chunked"
    assert response.content == big_file.read_bytes()


@pytest.mark.skipif(IS_UVICORN, reason="uvicorn does not implement http.response.pathsend")
@pytest.mark.parametrize(
    "path, headers, words",
    [
        ("relative/file.bin", [], "absolute"),
        (None, [], "absolute"),
        ("/nonexistent/fastws/file", [], "cannot open"),
        ("BIG", [(b"content-length", b"5")], "is not the size"),
    ],
    ids=["relative", "missing", "nonexistent", "wrong-length"],
)
async def test_pathsend_misuse_is_a_runtime_error_and_a_500(
    running_server, big_file, path, headers, words
):
    record = Recorder()
    srv = running_server(
        raw_pathsend_app(record, str(big_file) if path == "BIG" else path, headers)
    )
    async with client() as c:
        response = await within(c.get(srv.url("/")), 10)
    assert response.status_code == 500
    (message,) = await record.wait_len(1)
    assert words in message


async def test_file_and_plain_responses_interleave_on_one_connection(running_server, big_file):
    srv = running_server(file_app(big_file))
    expected = big_file.read_bytes()
    async with client() as c:
        for _ in range(3):
            assert (await within(c.get(srv.url("/f")), 30)).content == expected
            assert (await within(c.get(srv.url("/x")), 10)).status_code == 404

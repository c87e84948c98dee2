"""permessage-deflate over real connections (RFC 7692), including the decompression bomb."""

from __future__ import annotations

import zlib

import pytest
import websockets
from websockets.asyncio.client import connect

from integration import apps
from integration.conftest import (
    IS_UVICORN,
    OP_BINARY,
    OP_TEXT,
    RawConnection,
    frame,
    within,
)

pytestmark = pytest.mark.skipif(IS_UVICORN, reason="fastws's deflate limits and defaults")

OFFER = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
RSV1 = 4  # frame(rsv=...) takes the three RSV bits; RSV1 is the high one


def client_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -12)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_deflate_is_negotiated_and_transparent_to_the_app(running_server):
    srv = running_server(apps.echo_websocket)
    async with connect(srv.ws_url("/"), compression="deflate") as ws:
        extensions = ws.response.headers["sec-websocket-extensions"]
        assert extensions.startswith("permessage-deflate")
        for message in ["small", "x" * 5000, "é€𝄞" * 700, b"\x00\x01" * 4000, b""]:
            await within(ws.send(message))
            assert await within(ws.recv()) == message


async def test_large_replies_are_sent_compressed(running_server):
    srv = running_server(apps.echo_websocket)
    async with await RawConnection.open(srv.port) as conn:
        response = await conn.handshake("/", extra=[OFFER])
        assert response.status == 101
        assert response.header("sec-websocket-extensions") == (
            "permessage-deflate; client_max_window_bits=12"
        )
        text = "compress me " * 200
        await conn.send(frame(OP_TEXT, client_deflate(text.encode()), rsv=RSV1))
        reply = await conn.read_frame()
        assert reply.opcode == OP_TEXT and reply.rsv == RSV1
        assert len(reply.payload) < len(text) // 4
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(reply.payload + b"\x00\x00\xff\xff").decode() == text
        # below the threshold the reply is not compressed (RSV1 clear)
        await conn.send(frame(OP_BINARY, client_deflate(b"tiny"), rsv=RSV1))
        reply = await conn.read_frame()
        assert (reply.opcode, reply.rsv, reply.payload) == (OP_BINARY, 0, b"tiny")


async def test_deflate_can_be_turned_off(running_server):
    srv = running_server(apps.echo_websocket, ws_per_message_deflate=False)
    async with await RawConnection.open(srv.port) as conn:
        response = await conn.handshake("/", extra=[OFFER])
        assert response.status == 101
        assert response.header("sec-websocket-extensions") is None
        # without the extension, RSV1 is a protocol error
        await conn.send(frame(OP_TEXT, b"x", rsv=RSV1))
        close = await conn.read_close()
        assert close.close_code == 1002


async def test_offer_with_unsupported_window_is_declined_not_failed(running_server):
    srv = running_server(apps.echo_websocket)
    async with connect(
        srv.ws_url("/"),
        additional_headers={
            "Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=8"
        },
        compression=None,
    ) as ws:
        assert ws.response.headers.get("sec-websocket-extensions") is None
        await ws.send("still works")
        assert await within(ws.recv()) == "still works"


async def test_invalid_compressed_data_closes_with_1007(running_server):
    srv = running_server(apps.echo_websocket)
    async with await RawConnection.open(srv.port) as conn:
        assert (await conn.handshake("/", extra=[OFFER])).status == 101
        await conn.send(frame(OP_BINARY, b"\xff\xff\xff\xff\xff\xff", rsv=RSV1))
        close = await conn.read_close()
        assert close.close_code == 1007
        assert await conn.read_to_eof(3.0) == b""


async def test_decompression_bomb_closes_with_1009_and_memory_stays_bounded(server_process):
    # 256 MiB of zeros in about 256 KiB on the wire, against a 1 MiB message limit.
    c = zlib.compressobj(9, zlib.DEFLATED, -12)
    block = b"\x00" * (1 << 20)
    bomb = b"".join(c.compress(block) for _ in range(256)) + c.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    assert len(bomb) < 1 << 20  # the compressed frame itself is within the limit

    sp = server_process("tests.integration.apps:echo_websocket", "--ws-max-size", str(1 << 20))
    assert sp.proc is not None
    async with await RawConnection.open(sp.port) as conn:
        assert (await conn.handshake("/", extra=[OFFER])).status == 101
        await conn.send(frame(OP_TEXT, client_deflate(b"warm up " * 100), rsv=RSV1))
        await conn.read_frame()
        before = vm_hwm_kib(sp.proc.pid)
        await conn.send(frame(OP_BINARY, bomb, rsv=RSV1))
        close = await conn.read_close()
        assert close.close_code == 1009
        assert await conn.read_to_eof(3.0) == b""
    grown_kib = vm_hwm_kib(sp.proc.pid) - before
    # The limit (1 MiB) plus one inflate chunk and the frame itself, with room for noise;
    # inflating the whole bomb would take 256 MiB.
    assert grown_kib < 16 * 1024, f"peak RSS grew by {grown_kib} KiB"
    # and the server still serves
    async with connect(f"ws://127.0.0.1:{sp.port}/", compression="deflate") as ws:
        await ws.send("after the bomb")
        assert await within(ws.recv()) == "after the bomb"


async def test_compressed_message_over_max_size_after_inflate_is_1009(running_server):
    srv = running_server(apps.echo_websocket, ws_max_size=10_000)
    async with connect(srv.ws_url("/"), compression="deflate", max_size=None) as ws:
        await ws.send("a" * 10_000)  # exactly the limit: fine
        assert await within(ws.recv()) == "a" * 10_000
        await ws.send("a" * 10_001)  # compresses to a few bytes, inflates past the limit
        with pytest.raises(websockets.ConnectionClosed) as info:
            await within(ws.recv())
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009

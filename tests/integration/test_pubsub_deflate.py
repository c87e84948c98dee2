"""Publishes to subscribers that negotiated permessage-deflate (RFC 7692, docs/pubsub.md): the
publish is compressed once for all of them, with or without context takeover, and a
subscriber whose compressor keeps context still decodes its own send()s and the publishes in
between. Raw clients read the frames as they come (RSV1, the compressed bytes); websockets's
client, which keeps context both ways, checks what it decodes."""

from __future__ import annotations

import asyncio
import json
import zlib

import pytest
from websockets.asyncio.client import connect

from . import pubsub_app
from .conftest import IS_FASTWS, OP_TEXT, frame, ws_connect_raw

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not IS_FASTWS, reason="fastws's own extension"),
]

TAIL = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.2: put back before inflating
OFFERS = {
    "takeover": "permessage-deflate",
    "no-takeover": "permessage-deflate; server_no_context_takeover",
    "plain": None,
}


async def raw_subscriber(port: int, offer: str | None):
    extra = [("Sec-WebSocket-Extensions", offer)] if offer else []
    conn = await ws_connect_raw(port, extra=extra)
    await conn.send(frame(OP_TEXT, json.dumps({"sub": "t"})))
    ok = await conn.read_frame()
    assert (ok.rsv, ok.payload) == (0, b"ok:sub:t")  # short: sent uncompressed
    return conn


async def test_a_publish_is_compressed_once_for_every_deflate_subscriber(running_server):
    srv = running_server(pubsub_app.app)
    subs = {name: await raw_subscriber(srv.port, offer) for name, offer in OFFERS.items()}
    texts = [pubsub_app.big(i) for i in range(20)]
    async with connect(f"ws://127.0.0.1:{srv.port}/", compression=None) as publisher:
        for text in texts:
            await publisher.send(json.dumps({"pub": "t", "text": text, "exclude": True}))
        got = {name: [await conn.read_frame() for _ in texts] for name, conn in subs.items()}
    for name in ("takeover", "no-takeover"):
        inflate = zlib.decompressobj(-15)  # one context for the whole connection, as clients do
        for f, text in zip(got[name], texts, strict=True):
            assert (f.opcode, f.rsv) == (OP_TEXT, 4), name  # RSV1: compressed
            assert inflate.decompress(f.payload + TAIL).decode() == text
    # Byte for byte the same frames: compressed once, whatever the subscriber's takeover.
    assert [f.payload for f in got["takeover"]] == [f.payload for f in got["no-takeover"]]
    assert [(f.rsv, f.payload.decode()) for f in got["plain"]] == [(0, t) for t in texts]
    for conn in subs.values():
        await conn.close()


async def test_context_takeover_subscriber_decodes_its_sends_around_publishes(running_server):
    """The connection's own compressor keeps context across its send()s; a shared publish in
    between makes it start afresh, or its next back-reference would point into the publish."""
    srv = running_server(pubsub_app.app)
    async with connect(f"ws://127.0.0.1:{srv.port}/") as ws:  # deflate, context kept both ways
        assert "server_no_context_takeover" not in ws.response.headers["sec-websocket-extensions"]
        await ws.send(json.dumps({"sub": "t"}))
        assert await asyncio.wait_for(ws.recv(), 5) == "ok:sub:t"
        await ws.send(json.dumps({"mixbig": "t", "n": 30}))
        got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(90)]
    want = []
    for i in range(30):
        want += [pubsub_app.big(i), pubsub_app.big(-1 - i), pubsub_app.big(i)]
    assert got == want


async def test_raw_takeover_subscriber_sees_sends_compressed_with_context(running_server):
    """Between publishes, the connection's own send()s keep their context: big(1) right after
    big(0) refers back to it and is smaller than the same big(1) sent after a publish, which
    starts a fresh context."""
    srv = running_server(pubsub_app.app)
    conn = await raw_subscriber(srv.port, OFFERS["takeover"])
    await conn.send(frame(OP_TEXT, json.dumps({"mixbig": "t", "n": 2})))
    frames = [await conn.read_frame() for _ in range(6)]
    inflate = zlib.decompressobj(-15)
    texts = [inflate.decompress(f.payload + TAIL).decode() for f in frames]
    big = pubsub_app.big
    assert texts == [big(0), big(-1), big(0), big(1), big(-2), big(1)]
    with_context, fresh = len(frames[3].payload), len(frames[5].payload)
    assert with_context < fresh * 3 // 4, (with_context, fresh)
    await conn.close()

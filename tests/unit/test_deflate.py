"""permessage-deflate (RFC 7692): negotiation and (de)compression, no sockets."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from fastws.ws import deflate
from fastws.ws.deflate import Agreement, PerMessageDeflate, negotiate


def client_compress(data: bytes, bits: int = 15) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# -- §7.1 negotiation --------------------------------------------------------------------


def test_plain_offer_is_accepted_without_parameters():
    agreement = negotiate(["permessage-deflate"])
    assert agreement == Agreement()
    assert agreement.response() == b"permessage-deflate"


def test_browser_offer_limits_the_client_window():
    agreement = negotiate(["permessage-deflate; client_max_window_bits"])
    assert agreement is not None
    assert agreement.client_max_window_bits == deflate.DEFAULT_WINDOW_BITS
    assert agreement.response() == b"permessage-deflate; client_max_window_bits=12"


def test_all_four_parameters():
    agreement = negotiate(
        [
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10; client_max_window_bits=9"
        ]
    )
    assert agreement == Agreement(True, True, 10, 9)
    assert agreement.response() == (
        b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        b"server_max_window_bits=10; client_max_window_bits=9"
    )


def test_server_window_is_never_larger_than_our_default():
    agreement = negotiate(["permessage-deflate; server_max_window_bits=15"])
    assert agreement is not None and agreement.server_max_window_bits == 12


def test_quoted_values_are_accepted():
    agreement = negotiate(['permessage-deflate; server_max_window_bits="10"'])
    assert agreement is not None and agreement.server_max_window_bits == 10


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; server_max_window_bits=8",  # zlib cannot produce 8-bit windows
        "permessage-deflate; server_max_window_bits",  # value required
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=07x",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover=1",  # takes no value
        "permessage-deflate; foo",  # unknown parameter
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",  # repeated
        "x-webkit-deflate-frame",
    ],
)
def test_offers_we_cannot_honour_are_declined(offer):
    assert negotiate([offer]) is None


def test_first_acceptable_offer_wins():
    agreement = negotiate(
        [
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate",
        ]
    )
    assert agreement == Agreement(server_no_context_takeover=True)


# -- §7.2 compression --------------------------------------------------------------------


@pytest.mark.parametrize("takeover", [True, False])
def test_compressed_messages_decompress_with_a_standard_inflater(takeover):
    pmd = PerMessageDeflate(Agreement(server_no_context_takeover=not takeover))
    inflater = zlib.decompressobj(-15)
    for i in range(5):
        message = (b"hello websocket %d " % i) * 50
        payload = pmd.compress(message)
        assert not payload.endswith(b"\x00\x00\xff\xff")
        if not takeover:
            inflater = zlib.decompressobj(-15)
        assert inflater.decompress(payload + b"\x00\x00\xff\xff") == message


def test_context_takeover_makes_repeats_smaller():
    with_context = PerMessageDeflate(Agreement())
    without = PerMessageDeflate(Agreement(server_no_context_takeover=True))
    message = bytes(range(256)) * 4
    with_context.compress(message)
    without.compress(message)
    assert len(with_context.compress(message)) < len(without.compress(message))


@pytest.mark.parametrize("bits", [9, 12])
def test_compress_alone_inflates_the_same_in_any_history(bits):
    """The pub/sub hub's shared frame: one compressed payload that inflaters with different
    histories (fresh, or deep into a connection's own stream) all turn into the message."""
    message = b"price update " * 40
    shared = deflate.compress_alone(message, bits)
    fresh = zlib.decompressobj(-15)
    busy = zlib.decompressobj(-15)
    pmd = PerMessageDeflate(Agreement())
    for i in range(3):  # the connection's own messages first: history in the inflater
        busy.decompress(pmd.compress(b"own %d " % i * 60) + b"\x00\x00\xff\xff")
    assert fresh.decompress(shared + b"\x00\x00\xff\xff") == message
    assert busy.decompress(shared + b"\x00\x00\xff\xff") == message


def test_forget_history_keeps_a_takeover_stream_decodable_after_a_shared_message():
    """own message, a shared one (the peer's window now ends with it), the own message again:
    only with the compressor's context dropped does the last one decode to what was sent."""
    own = b"<row id=1 value=2/>" * 20

    def stream(forget: bool) -> bytes:
        pmd = PerMessageDeflate(Agreement())
        inflater = zlib.decompressobj(-15)
        inflater.decompress(pmd.compress(own) + b"\x00\x00\xff\xff")
        inflater.decompress(
            deflate.compress_alone(b"something else entirely " * 9, pmd.window_bits)
            + b"\x00\x00\xff\xff"
        )
        if forget:
            pmd.forget_history()
        return inflater.decompress(pmd.compress(own) + b"\x00\x00\xff\xff")

    assert stream(forget=True) == own
    assert stream(forget=False) != own  # what forget_history() is for


@pytest.mark.parametrize("client_takeover", [True, False])
def test_decompress_follows_the_client_stream(client_takeover):
    pmd = PerMessageDeflate(Agreement(client_no_context_takeover=not client_takeover))
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    for i in range(4):
        message = f"message {i} ".encode() * 40
        if not client_takeover:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH)
        assert pmd.decompress(payload[:-4], 1 << 20) == message


def test_output_larger_than_one_chunk_is_complete():
    data = bytes(range(256)) * 2000  # 512000 bytes, several inflate chunks
    pmd = PerMessageDeflate(Agreement())
    assert pmd.decompress(client_compress(data), 1 << 20) == data


def test_exactly_max_size_passes_and_one_more_byte_fails():
    data = b"a" * 100_000
    assert PerMessageDeflate(Agreement()).decompress(client_compress(data), 100_000) == data
    with pytest.raises(deflate.MessageTooBig):
        PerMessageDeflate(Agreement()).decompress(client_compress(data), 99_999)


def test_decompression_bomb_is_refused_with_bounded_memory():
    # 1 GiB of zeros compresses to about 1 MiB; with a 1 MiB limit the inflater must stop
    # after about one chunk past the limit, never producing the gigabyte.
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = b"\x00" * (1 << 20)
    bomb = b"".join(c.compress(block) for _ in range(1024)) + c.flush(zlib.Z_SYNC_FLUSH)
    assert len(bomb) < 2 << 20
    pmd = PerMessageDeflate(Agreement())
    tracemalloc.start()
    try:
        with pytest.raises(deflate.MessageTooBig):
            pmd.decompress(bomb[:-4], 1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(bomb) + (4 << 20), peak


def test_invalid_stream_is_reported():
    with pytest.raises(deflate.InvalidCompressedData):
        PerMessageDeflate(Agreement()).decompress(b"\xff\xff\xff\xff\xff", 1 << 20)


def test_idle_state_is_released_without_context_takeover():
    pmd = PerMessageDeflate(Agreement(True, True))
    pmd.compress(b"x" * 1000)
    pmd.decompress(client_compress(b"y" * 1000), 1 << 20)
    assert pmd._compressor is None and pmd._decompressor is None

"""FrameReader(asgi=True): data messages come out as ready ASGI websocket.receive events."""

from __future__ import annotations

import random

import pytest

K = b"\x11\x22\x33\x44"


def as_tuple(message):
    if type(message) is dict:
        if "text" in message:
            return (1, message["text"])
        return (2, message["bytes"])
    return message


def test_data_messages_are_asgi_events(codec):
    reader = codec.FrameReader(asgi=True)
    out = reader.feed(
        codec.encode_frame(1, "héllo", mask=K) + codec.encode_frame(2, b"\x00\x01", mask=K)
    )
    assert out == [
        {"type": "websocket.receive", "text": "héllo"},
        {"type": "websocket.receive", "bytes": b"\x00\x01"},
    ]
    assert reader.data_only


def test_fragmented_message_is_one_event(codec):
    reader = codec.FrameReader(asgi=True)
    stream = codec.encode_frame(1, "ab", fin=False, mask=K) + codec.encode_frame(0, "cd", mask=K)
    assert reader.feed(stream) == [{"type": "websocket.receive", "text": "abcd"}]
    assert reader.data_only


@pytest.mark.parametrize(
    "extra, expected",
    [
        (lambda c: c.encode_frame(9, b"p", mask=K), (9, b"p")),
        (lambda c: c.encode_frame(10, b"", mask=K), (10, b"")),
        (lambda c: c.encode_close(1000, "bye", mask=K), (8, (1000, "bye"))),
    ],
)
def test_control_frames_stay_tuples_and_clear_data_only(codec, extra, expected):
    reader = codec.FrameReader(asgi=True)
    out = reader.feed(codec.encode_frame(1, "a", mask=K) + extra(codec))
    assert out == [{"type": "websocket.receive", "text": "a"}, expected]
    assert not reader.data_only
    # the flag describes the last call only
    if expected[0] != 8:
        assert reader.feed(codec.encode_frame(2, b"z", mask=K))
        assert reader.data_only


def test_compressed_messages_stay_tuples(codec):
    reader = codec.FrameReader(asgi=True, rsv1_allowed=True)
    out = reader.feed(codec.encode_frame(2, b"raw", rsv1=True, mask=K))
    assert out == [(2 | codec.FLAG_COMPRESSED, b"raw")]
    assert not reader.data_only


def test_an_error_clears_data_only(codec):
    reader = codec.FrameReader(asgi=True)
    out = reader.feed(codec.encode_frame(1, "ok", mask=K) + codec.encode_frame(1, b"\xff", mask=K))
    assert out == [{"type": "websocket.receive", "text": "ok"}]
    assert reader.close_code == 1007
    assert not reader.data_only


def test_data_only_spans_every_chunk_of_a_large_feed(codec):
    # feed() larger than the scratch buffer processes it in several chunks; a ping in the
    # first chunk must still clear the flag for the whole call.
    reader = codec.FrameReader(asgi=True, max_size=0)
    stream = codec.encode_frame(9, b"p", mask=K) + codec.encode_frame(2, bytes(600_000), mask=K)
    out = reader.feed(stream)
    assert [as_tuple(m)[0] for m in out] == [9, 2]
    assert not reader.data_only


@pytest.mark.parametrize("seed", range(40))
def test_asgi_mode_carries_the_same_messages_as_tuple_mode(codec, seed):
    rng = random.Random(seed)
    stream = b""
    for _ in range(rng.randint(1, 30)):
        kind = rng.random()
        if kind < 0.4:
            stream += codec.encode_frame(1, "x€" * rng.randint(0, 100), mask=K)
        elif kind < 0.7:
            stream += codec.encode_frame(2, bytes(rng.randint(0, 70_000)), mask=K)
        elif kind < 0.8:
            stream += codec.encode_frame(9, b"ping", mask=K)
        elif kind < 0.9:
            stream += codec.encode_frame(1, "frag", fin=False, mask=K)
            stream += codec.encode_frame(0, "ment", mask=K)
        else:
            stream += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 6)))
    plain, asgi = codec.FrameReader(max_size=0), codec.FrameReader(max_size=0, asgi=True)
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 5000)
        a = plain.feed(stream[pos : pos + step])
        b = asgi.feed(stream[pos : pos + step])
        pos += step
        assert [as_tuple(m) for m in b] == a
        assert (plain.close_code, plain.close_reason) == (asgi.close_code, asgi.close_reason)
        if asgi.close_code is None:
            assert asgi.data_only == all(type(m) is dict for m in b)


@pytest.mark.parametrize("asgi", [True, False])
def test_texts_counts_the_text_messages_returned(codec, asgi):
    """--metrics' text/binary split: the reader counts the text messages it returns (whole
    ones, however fragmented); binary, control and compressed messages are not counted (the
    caller inflates the compressed ones and counts them itself)."""
    reader = codec.FrameReader(asgi=asgi, rsv1_allowed=True)
    assert reader.texts == 0
    stream = (
        codec.encode_frame(1, "a", mask=K)
        + codec.encode_frame(2, b"b", mask=K)
        + codec.encode_frame(1, "c", fin=False, mask=K)
        + codec.encode_frame(9, b"ping", mask=K)
        + codec.encode_frame(0, "d", mask=K)
        + codec.encode_frame(1, b"\x4b\x04\x00", rsv1=True, mask=K)
    )
    # Any split of the stream gives the same count.
    for i in range(0, len(stream), 3):
        reader.feed(stream[i : i + 3])
    assert reader.texts == 2
    reader.feed(codec.encode_frame(1, "é" * 40_000, mask=K))  # one large text message
    assert reader.texts == 3

"""FrameReader against RFC 6455 (and RFC 7692's RSV1 rule), grouped by RFC section.

Each test puts a few literal frames in and checks the messages, close_code and pending that come
out. Frames are built here by `frame()`, not by the codec's encoder, so that a bug in one side
cannot hide a bug in the other.
"""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap

import pytest

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
FLAG_COMPRESSED = 0x40
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
KEY = b"\x37\xfa\x21\x3d"
MIB = 1024 * 1024


def frame(
    opcode: int,
    payload: bytes | str = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = KEY,
    length: int | None = None,
    encoding: int | None = None,
) -> bytes:
    """One raw frame. `length` overrides the declared length; `encoding` forces 7, 16 or 64 bits."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    if encoding is None:
        encoding = 7 if n < 126 else 16 if n < 65536 else 64
    head = bytearray([(0x80 if fin else 0) | rsv | opcode])
    mbit = 0x80 if mask is not None else 0
    if encoding == 7:
        head.append(mbit | n)
    elif encoding == 16:
        head.append(mbit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mbit | 127)
        head += n.to_bytes(8, "big")
    if mask is None:
        return bytes(head) + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(head) + mask + masked


def close_payload(code: int, reason: bytes | str = b"") -> bytes:
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return code.to_bytes(2, "big") + reason


def read(codec, data: bytes, **kwargs):
    """Feed `data` in one call to a fresh reader; return (reader, messages)."""
    reader = codec.FrameReader(**kwargs)
    return reader, reader.feed(data)


def feed_chunks(reader, data: bytes, cuts) -> list:
    """Feed `data` cut at the sorted positions `cuts`; return all messages."""
    out = []
    prev = 0
    for cut in [*cuts, len(data)]:
        out += reader.feed(data[prev:cut])
        prev = cut
    return out


def feed_via_buffer(reader, data: bytes, chunk: int) -> list:
    """Feed `data` through get_buffer()/buffer_updated(), at most `chunk` bytes per read."""
    out = []
    pos = 0
    while pos < len(data):
        buf = reader.get_buffer(chunk)
        n = min(len(buf), chunk, len(data) - pos)
        assert n > 0
        buf[:n] = data[pos : pos + n]
        out += reader.buffer_updated(n)
        pos += n
    return out


def assert_fails(codec, data: bytes, code: int, **kwargs) -> list:
    reader, messages = read(codec, data, **kwargs)
    assert reader.close_code == code, reader.close_reason
    assert isinstance(reader.close_reason, str) and reader.close_reason
    return messages


# -- §5.1 Overview: which side masks ---------------------------------------------------------


def test_masked_client_frame_is_unmasked(codec):
    reader, messages = read(codec, frame(OP_TEXT, "Hello"))
    assert messages == [(OP_TEXT, "Hello")]
    assert reader.close_code is None
    assert reader.close_reason == ""


def test_unmasked_client_frame_is_protocol_error(codec):
    assert assert_fails(codec, frame(OP_TEXT, "Hello", mask=None), 1002) == []


@pytest.mark.parametrize("opcode", [OP_PING, OP_CLOSE, OP_CONT])
def test_unmasked_control_or_continuation_frame_is_protocol_error(codec, opcode):
    stream = frame(OP_TEXT, "a", fin=False) if opcode == OP_CONT else b""
    stream += frame(opcode, b"", mask=None)
    assert_fails(codec, stream, 1002)


def test_unmasked_server_frame_is_accepted_by_a_client(codec):
    reader, messages = read(codec, frame(OP_TEXT, "Hello", mask=None), expect_mask=False)
    assert messages == [(OP_TEXT, "Hello")]
    assert reader.close_code is None


def test_masked_server_frame_is_protocol_error(codec):
    assert_fails(codec, frame(OP_BINARY, b"x", mask=KEY), 1002, expect_mask=False)


# -- §5.2 Base framing: payload length encodings --------------------------------------------

LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 65537]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
def test_minimal_length_encoding_round_trips(codec, n, masked):
    payload = bytes(i * 7 & 0xFF for i in range(n))
    data = frame(OP_BINARY, payload, mask=KEY if masked else None)
    assert data[1] & 0x7F == (n if n < 126 else 126 if n < 65536 else 127)
    reader, messages = read(codec, data, expect_mask=masked)
    assert messages == [(OP_BINARY, payload)]
    assert type(messages[0][1]) is bytes
    assert reader.pending == 0


@pytest.mark.parametrize("n", [0, 1, 125])
@pytest.mark.parametrize("encoding", [16, 64])
def test_longer_than_needed_length_encoding_is_accepted(codec, n, encoding):
    payload = b"z" * n
    _, messages = read(codec, frame(OP_BINARY, payload, encoding=encoding))
    assert messages == [(OP_BINARY, payload)]


def test_multi_mib_payload(codec):
    payload = bytes(range(256)) * (3 * MIB // 256) + b"tail"
    reader, messages = read(codec, frame(OP_BINARY, payload))
    assert messages == [(OP_BINARY, payload)]
    assert reader.close_code is None


def test_multi_mib_text_payload_fed_in_uneven_chunks(codec):
    text = ("κόσμε 🌍 abc " * (MIB // 8))[: 2 * MIB]
    data = frame(OP_TEXT, text)
    reader = codec.FrameReader()
    messages = feed_chunks(reader, data, range(1, len(data), 65521))
    assert messages == [(OP_TEXT, text)]


def test_64_bit_length_with_most_significant_bit_is_protocol_error(codec):
    data = frame(OP_BINARY, b"", length=1 << 63, encoding=64)
    assert_fails(codec, data, 1002, max_size=0)


def test_64_bit_length_with_most_significant_bit_fails_at_the_header(codec):
    data = frame(OP_BINARY, b"", length=(1 << 63) | 5, encoding=64)
    assert_fails(codec, data, 1002, max_size=0)


# -- §5.2 Base framing: RSV bits and opcodes ------------------------------------------------


@pytest.mark.parametrize(
    "rsv", [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3], ids=["rsv1", "rsv2", "rsv3", "all"]
)
def test_reserved_bit_without_extension_is_protocol_error(codec, rsv):
    assert assert_fails(codec, frame(OP_TEXT, "ok") + frame(OP_TEXT, "x", rsv=rsv), 1002) == [
        (OP_TEXT, "ok")
    ]


@pytest.mark.parametrize("rsv", [RSV2, RSV3], ids=["rsv2", "rsv3"])
def test_rsv2_rsv3_are_protocol_errors_even_with_deflate(codec, rsv):
    assert_fails(codec, frame(OP_TEXT, "x", rsv=rsv), 1002, rsv1_allowed=True)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_unknown_opcode_is_protocol_error(codec, opcode):
    assert assert_fails(codec, frame(OP_BINARY, b"ok") + frame(opcode, b"x"), 1002) == [
        (OP_BINARY, b"ok")
    ]


# -- §5.3 Client-to-server masking ----------------------------------------------------------


def test_each_frame_uses_its_own_key(codec):
    data = frame(OP_TEXT, "first", mask=b"\x01\x02\x03\x04") + frame(
        OP_TEXT, "second", mask=b"\xff\x00\xaa\x55"
    )
    _, messages = read(codec, data)
    assert messages == [(OP_TEXT, "first"), (OP_TEXT, "second")]


@pytest.mark.parametrize("cut", range(6, 6 + 13))
def test_key_phase_continues_across_reads(codec, cut):
    payload = bytes(range(13))
    data = frame(OP_BINARY, payload)
    reader = codec.FrameReader()
    assert feed_chunks(reader, data, [cut, cut + 1 if cut + 1 < len(data) else cut]) == [
        (OP_BINARY, payload)
    ]


def test_key_phase_restarts_for_each_fragment(codec):
    data = frame(OP_BINARY, b"abcde", fin=False) + frame(OP_CONT, b"fghij")
    _, messages = read(codec, data)
    assert messages == [(OP_BINARY, b"abcdefghij")]


# -- §5.4 Fragmentation ---------------------------------------------------------------------


def test_fragmented_text_is_reassembled(codec):
    data = (
        frame(OP_TEXT, "Hel", fin=False)
        + frame(OP_CONT, "lo, ", fin=False)
        + frame(OP_CONT, "world")
    )
    reader, messages = read(codec, data)
    assert messages == [(OP_TEXT, "Hello, world")]
    assert reader.close_code is None


def test_fragmented_binary_is_reassembled(codec):
    data = frame(OP_BINARY, b"\x00\x01", fin=False) + frame(OP_CONT, b"\x02")
    _, messages = read(codec, data)
    assert messages == [(OP_BINARY, b"\x00\x01\x02")]


def test_empty_fragments_are_allowed(codec):
    data = (
        frame(OP_TEXT, "", fin=False)
        + frame(OP_CONT, "", fin=False)
        + frame(OP_CONT, "x", fin=False)
        + frame(OP_CONT, "")
    )
    _, messages = read(codec, data)
    assert messages == [(OP_TEXT, "x")]


def test_fragmented_message_waits_for_final_frame(codec):
    reader, messages = read(codec, frame(OP_TEXT, "abc", fin=False))
    assert messages == []
    assert reader.close_code is None
    assert reader.feed(frame(OP_CONT, "def")) == [(OP_TEXT, "abcdef")]


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG])
def test_ping_and_pong_between_fragments_are_delivered_first(codec, opcode):
    data = (
        frame(OP_TEXT, "Hel", fin=False)
        + frame(opcode, b"ctl")
        + frame(OP_CONT, "lo", fin=False)
        + frame(opcode, b"")
        + frame(OP_CONT, "!")
    )
    reader, messages = read(codec, data)
    assert messages == [(opcode, b"ctl"), (opcode, b""), (OP_TEXT, "Hello!")]
    assert reader.close_code is None


def test_close_between_fragments_ends_the_stream(codec):
    data = (
        frame(OP_TEXT, "Hel", fin=False)
        + frame(OP_CLOSE, close_payload(1000))
        + frame(OP_CONT, "lo")
    )
    reader, messages = read(codec, data)
    assert messages == [(OP_CLOSE, (1000, ""))]
    assert reader.close_code is None


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame_is_protocol_error(codec, opcode):
    payload = close_payload(1000) if opcode == OP_CLOSE else b"x"
    assert_fails(codec, frame(opcode, payload, fin=False), 1002)


def test_fragmented_ping_is_protocol_error(codec):
    assert_fails(codec, frame(OP_PING, b"a", fin=False) + frame(OP_CONT, b"b"), 1002)


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_start_is_protocol_error(codec, fin):
    assert_fails(codec, frame(OP_CONT, b"x", fin=fin), 1002)


def test_continuation_after_complete_message_is_protocol_error(codec):
    data = frame(OP_TEXT, "done") + frame(OP_CONT, "more")
    assert assert_fails(codec, data, 1002) == [(OP_TEXT, "done")]


@pytest.mark.parametrize("first", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("second_fin", [True, False])
def test_new_data_frame_during_fragmented_message_is_protocol_error(
    codec, first, second, second_fin
):
    data = frame(first, b"a", fin=False) + frame(second, b"b", fin=second_fin)
    assert assert_fails(codec, data, 1002) == []


# -- §5.5 Control frames --------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_over_125_bytes_is_protocol_error(codec, opcode):
    payload = close_payload(1000, "r" * 124) if opcode == OP_CLOSE else b"p" * 126
    assert len(payload) == 126
    assert_fails(codec, frame(opcode, payload), 1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_frame_over_125_bytes_fails_at_the_header(codec, opcode):
    reader, messages = read(codec, frame(opcode, b"", length=126, encoding=16))
    assert reader.close_code == 1002


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG])
@pytest.mark.parametrize("n", [0, 1, 125])
def test_ping_and_pong_payloads_are_returned(codec, opcode, n):
    payload = bytes(range(n))
    reader, messages = read(codec, frame(opcode, payload))
    assert messages == [(opcode, payload)]
    assert type(messages[0][1]) is bytes
    assert reader.close_code is None


def test_control_frame_with_16_bit_length_encoding_under_126_is_accepted(codec):
    _, messages = read(codec, frame(OP_PING, b"abc", encoding=16))
    assert messages == [(OP_PING, b"abc")]


@pytest.mark.parametrize("rsv1_allowed", [False, True])
@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_rsv1_on_control_frame_is_protocol_error(codec, opcode, rsv1_allowed):
    assert_fails(codec, frame(opcode, b"", rsv=RSV1), 1002, rsv1_allowed=rsv1_allowed)


# -- §5.5.1 Close ---------------------------------------------------------------------------


def test_empty_close_reports_1005(codec):
    reader, messages = read(codec, frame(OP_CLOSE, b""))
    assert messages == [(OP_CLOSE, (1005, ""))]
    assert reader.close_code is None


def test_close_with_one_byte_payload_is_protocol_error(codec):
    assert_fails(codec, frame(OP_CLOSE, b"\x03"), 1002)


INVALID_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, *range(1007, 1015), 3000, 3999, 4000, 4999]


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_invalid_close_code_is_protocol_error(codec, code):
    assert assert_fails(codec, frame(OP_CLOSE, close_payload(code, "bye")), 1002) == []


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_valid_close_code_is_accepted(codec, code):
    reader, messages = read(codec, frame(OP_CLOSE, close_payload(code)))
    assert messages == [(OP_CLOSE, (code, ""))]
    assert reader.close_code is None


def test_close_reason_is_decoded(codec):
    reason = "κόσμε 🌍" * 5
    _, messages = read(codec, frame(OP_CLOSE, close_payload(1001, reason)))
    assert messages == [(OP_CLOSE, (1001, reason))]


def test_close_with_123_byte_reason_is_accepted(codec):
    reason = "r" * 123
    _, messages = read(codec, frame(OP_CLOSE, close_payload(4000, reason)))
    assert messages == [(OP_CLOSE, (4000, reason))]


@pytest.mark.parametrize(
    "reason",
    [b"\xff", b"abc\xce", b"\xed\xa0\x80", b"\xc0\xaf", b"ok\xf4\x90\x80\x80"],
    ids=["ff", "truncated", "surrogate", "overlong", "above-max"],
)
def test_close_reason_with_invalid_utf8_is_1007(codec, reason):
    assert_fails(codec, frame(OP_CLOSE, close_payload(1000, reason)), 1007)


def test_bytes_after_close_are_ignored(codec):
    data = (
        frame(OP_TEXT, "before")
        + frame(OP_CLOSE, close_payload(1000, "bye"))
        + frame(OP_TEXT, "after")
    )
    reader, messages = read(codec, data)
    assert messages == [(OP_TEXT, "before"), (OP_CLOSE, (1000, "bye"))]
    assert reader.feed(frame(OP_TEXT, "later")) == []
    assert reader.feed(b"\xff\xff\xff") == []
    assert reader.close_code is None
    assert reader.pending == 0


# -- §5.6 Data frames and §8.1 UTF-8 --------------------------------------------------------


def test_text_is_str_and_binary_is_bytes(codec):
    _, messages = read(codec, frame(OP_TEXT, "t") + frame(OP_BINARY, b"b") + frame(OP_TEXT, ""))
    assert messages == [(OP_TEXT, "t"), (OP_BINARY, b"b"), (OP_TEXT, "")]
    assert [type(p) for _, p in messages] == [str, bytes, str]


VALID_UTF8 = [
    "κόσμε",
    "\u0080\u07ff\u0800\uffff",
    "\U00010000\U0010ffff",
    "🌍🚀 mixed ascii",
    "\ud7ff\ue000",
]

INVALID_UTF8 = {
    "lone-continuation": b"\x80",
    "invalid-byte-fe": b"a\xfe",
    "invalid-byte-ff": b"\xff",
    "overlong-2": b"\xc0\xaf",
    "overlong-2-c1": b"\xc1\xbf",
    "overlong-3": b"\xe0\x80\xaf",
    "overlong-4": b"\xf0\x80\x80\xaf",
    "surrogate-low": b"\xed\xa0\x80",
    "surrogate-high": b"\xed\xbf\xbf",
    "above-u10ffff": b"\xf4\x90\x80\x80",
    "f5-lead": b"\xf5\x80\x80\x80",
    "truncated-at-end": b"abc\xe2\x82",
    "truncated-4-at-end": b"\xf0\x9f\x98",
    "missing-continuation": b"\xe2\x28\xa1",
}


@pytest.mark.parametrize("text", VALID_UTF8)
def test_valid_utf8_text_passes(codec, text):
    reader, messages = read(codec, frame(OP_TEXT, text))
    assert messages == [(OP_TEXT, text)]
    assert reader.close_code is None


@pytest.mark.parametrize("raw", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_text_is_1007(codec, raw):
    assert assert_fails(codec, frame(OP_TEXT, "ok") + frame(OP_TEXT, raw), 1007) == [
        (OP_TEXT, "ok")
    ]


@pytest.mark.parametrize("raw", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_in_binary_is_not_checked(codec, raw):
    _, messages = read(codec, frame(OP_BINARY, raw))
    assert messages == [(OP_BINARY, raw)]


@pytest.mark.parametrize("raw", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
def test_invalid_utf8_in_fragmented_text_is_1007(codec, raw):
    data = frame(OP_TEXT, "ok", fin=False) + frame(OP_CONT, raw, fin=False) + frame(OP_CONT, "end")
    assert_fails(codec, data, 1007)


@pytest.mark.parametrize("text", ["κόσμε", "\U0010ffff\u0800", "a🌍b🚀c"])
def test_utf8_chars_split_across_fragments_pass(codec, text):
    raw = text.encode("utf-8")
    for cut in range(len(raw) + 1):
        for cut2 in range(cut, len(raw) + 1):
            data = (
                frame(OP_TEXT, raw[:cut], fin=False)
                + frame(OP_CONT, raw[cut:cut2], fin=False)
                + frame(OP_CONT, raw[cut2:])
            )
            reader, messages = read(codec, data)
            assert messages == [(OP_TEXT, text)], (cut, cut2)
            assert reader.close_code is None


def test_char_split_across_fragments_with_ping_between_passes(codec):
    raw = "🌍".encode()
    data = frame(OP_TEXT, raw[:2], fin=False) + frame(OP_PING, b"") + frame(OP_CONT, raw[2:])
    _, messages = read(codec, data)
    assert messages == [(OP_PING, b""), (OP_TEXT, "🌍")]


def test_truncated_char_at_end_of_fragmented_text_is_1007(codec):
    raw = "🌍".encode()
    data = frame(OP_TEXT, raw[:2], fin=False) + frame(OP_CONT, raw[2:3])
    assert_fails(codec, data, 1007)


AUTOBAHN_6_4 = (
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64"
)


@pytest.mark.parametrize("fragmented", [False, True])
def test_invalid_utf8_fails_fast_in_the_middle_of_a_frame(codec, fragmented):
    """Autobahn 6.4.x: the frame is cut right after \\xf4\\x90, which no byte can complete."""
    data = frame(OP_TEXT, AUTOBAHN_6_4, fin=not fragmented)
    cut = len(data) - len(AUTOBAHN_6_4) + AUTOBAHN_6_4.index(b"\xf4\x90") + 2
    reader = codec.FrameReader()
    assert reader.feed(data[:cut]) == []
    assert reader.close_code == 1007
    assert reader.feed(data[cut:]) == []
    assert reader.close_code == 1007


@pytest.mark.parametrize(
    "prefix",
    [b"\xed\xa0", b"\xc0", b"\xe0\x80", b"\xf0\x8f", b"\xf5", b"\xff", b"ab\x80"],
    ids=["surrogate", "c0", "overlong-3", "overlong-4", "f5", "ff", "continuation"],
)
def test_invalid_utf8_prefix_fails_before_the_frame_is_complete(codec, prefix):
    payload = prefix + b"\x80" * 20
    data = frame(OP_TEXT, payload)
    reader = codec.FrameReader()
    reader.feed(data[: len(data) - 20])
    assert reader.close_code == 1007


def test_invalid_utf8_fails_fast_in_a_later_fragment(codec):
    reader = codec.FrameReader()
    reader.feed(frame(OP_TEXT, "κό", fin=False))
    data = frame(OP_CONT, b"\xce\xbc\xed\xa0\x80more", fin=False)
    reader.feed(data[: len(data) - 5])
    assert reader.close_code == 1007


@pytest.mark.parametrize("prefix", [b"\xce", b"\xe1\xbd", b"\xf0\x9f\x98", b"\xf4\x8f\xbf"])
def test_valid_utf8_prefix_does_not_fail_early(codec, prefix):
    data = frame(OP_TEXT, prefix, fin=False)
    reader = codec.FrameReader()
    assert reader.feed(data) == []
    assert reader.close_code is None


# -- §7.1.7 Fail the connection: what happens after an error --------------------------------


def test_messages_before_error_are_returned(codec):
    data = (
        frame(OP_TEXT, "one")
        + frame(OP_PING, b"p")
        + frame(OP_BINARY, b"two")
        + frame(9, b"x", fin=False)
    )
    assert assert_fails(codec, data, 1002) == [
        (OP_TEXT, "one"),
        (OP_PING, b"p"),
        (OP_BINARY, b"two"),
    ]


def test_bytes_after_error_are_ignored(codec):
    reader, _ = read(codec, frame(OP_TEXT, "x", mask=None) + frame(OP_TEXT, "y"))
    assert reader.close_code == 1002
    reason = reader.close_reason
    assert reader.feed(frame(OP_TEXT, "z")) == []
    assert reader.feed(frame(OP_TEXT, b"\xff")) == []
    assert reader.close_code == 1002
    assert reader.close_reason == reason
    assert reader.pending == 0


# -- §10.4 Implementation-specific limits: max_size -----------------------------------------


@pytest.mark.parametrize("encoding", [7, 16, 64])
def test_declared_length_over_max_size_fails_at_the_header(codec, encoding):
    limit = {7: 100, 16: 1000, 64: 70000}[encoding]
    header = frame(OP_BINARY, b"", length=limit + 1, encoding=encoding)
    reader = codec.FrameReader(max_size=limit)
    assert reader.feed(header) == []
    assert reader.close_code == 1009
    assert reader.close_reason


def test_huge_declared_length_fails_at_the_header(codec):
    reader, _ = read(codec, frame(OP_TEXT, b"", length=(1 << 63) - 1, encoding=64))
    assert reader.close_code == 1009


def test_fragmented_total_over_max_size_is_1009(codec):
    reader = codec.FrameReader(max_size=10)
    assert reader.feed(frame(OP_TEXT, "a" * 6, fin=False)) == []
    assert reader.close_code is None
    assert reader.feed(frame(OP_CONT, "b" * 5, fin=False)[:6]) == []  # header only
    assert reader.close_code == 1009


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_exactly_max_size_passes(codec, opcode):
    payload = "x" * 1000 if opcode == OP_TEXT else b"x" * 1000
    data = (
        frame(opcode, payload)
        + frame(opcode, payload[:400], fin=False)
        + frame(OP_CONT, payload[400:])
    )
    reader, messages = read(codec, data, max_size=1000)
    assert messages == [(opcode, payload), (opcode, payload)]
    assert reader.close_code is None


def test_one_over_max_size_fails(codec):
    data = frame(OP_BINARY, b"x" * 400, fin=False) + frame(OP_CONT, b"x" * 601)
    assert assert_fails(codec, data, 1009, max_size=1000) == []


def test_max_size_applies_per_message(codec):
    data = frame(OP_BINARY, b"x" * 8) * 5
    reader, messages = read(codec, data, max_size=8)
    assert len(messages) == 5
    assert reader.close_code is None


def test_lowered_max_size_applies_to_the_next_fragment(codec):
    """max_size is a public attribute; lowering it below what a message already holds makes the
    next fragment's header fail, like any fragment that takes the message over the limit."""
    reader = codec.FrameReader(max_size=100)
    assert reader.feed(frame(OP_BINARY, b"x" * 50, fin=False)) == []
    reader.max_size = 10
    assert reader.feed(frame(OP_CONT, b"y" * 5)) == []
    assert reader.close_code == 1009


def test_control_frames_between_fragments_do_not_count_towards_max_size(codec):
    data = (
        frame(OP_BINARY, b"x" * 5, fin=False)
        + frame(OP_PING, b"p" * 100)
        + frame(OP_CONT, b"y" * 5)
    )
    reader, messages = read(codec, data, max_size=10)
    assert messages == [(OP_PING, b"p" * 100), (OP_BINARY, b"x" * 5 + b"y" * 5)]


@pytest.mark.parametrize("max_size", [0, -1])
def test_max_size_zero_or_less_means_no_limit(codec, max_size):
    payload = b"\x01" * (2 * MIB)
    reader, messages = read(codec, frame(OP_BINARY, payload), max_size=max_size)
    assert messages == [(OP_BINARY, payload)]
    assert reader.close_code is None
    assert reader.max_size == max_size


def test_default_max_size_is_16_mib(codec):
    reader = codec.FrameReader()
    assert reader.max_size == 16 * MIB
    reader.feed(frame(OP_BINARY, b"", length=16 * MIB + 1))
    assert reader.close_code == 1009


# -- RFC 7692 §6: RSV1 marks a compressed message when permessage-deflate is on -------------


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_rsv1_on_first_frame_gives_compressed_opcode_and_raw_bytes(codec, opcode):
    raw = b"\xf2\x48\xcd\xc9\xc9\x07\x00\xff"  # not UTF-8: compressed text is not checked yet
    reader, messages = read(codec, frame(opcode, raw, rsv=RSV1), rsv1_allowed=True)
    assert messages == [(opcode | FLAG_COMPRESSED, raw)]
    assert type(messages[0][1]) is bytes
    assert reader.close_code is None


def test_fragmented_compressed_message_keeps_the_flag(codec):
    data = (
        frame(OP_TEXT, b"\xff\x00", rsv=RSV1, fin=False)
        + frame(OP_PING, b"")
        + frame(OP_CONT, b"\xfe")
    )
    _, messages = read(codec, data, rsv1_allowed=True)
    assert messages == [(OP_PING, b""), (OP_TEXT | FLAG_COMPRESSED, b"\xff\x00\xfe")]


def test_uncompressed_message_with_deflate_on_is_plain(codec):
    data = frame(OP_TEXT, "plain") + frame(OP_BINARY, b"\x00", rsv=RSV1) + frame(OP_TEXT, "again")
    _, messages = read(codec, data, rsv1_allowed=True)
    assert messages == [
        (OP_TEXT, "plain"),
        (OP_BINARY | FLAG_COMPRESSED, b"\x00"),
        (OP_TEXT, "again"),
    ]


def test_rsv1_on_continuation_frame_is_protocol_error(codec):
    data = frame(OP_TEXT, b"a", rsv=RSV1, fin=False) + frame(OP_CONT, b"b", rsv=RSV1)
    assert_fails(codec, data, 1002, rsv1_allowed=True)


def test_rsv1_on_continuation_of_uncompressed_message_is_protocol_error(codec):
    data = frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"b", rsv=RSV1)
    assert_fails(codec, data, 1002, rsv1_allowed=True)


def test_max_size_bounds_the_compressed_size(codec):
    reader = codec.FrameReader(max_size=4, rsv1_allowed=True)
    assert reader.feed(frame(OP_BINARY, b"1234", rsv=RSV1)) == [
        (OP_BINARY | FLAG_COMPRESSED, b"1234")
    ]
    reader.feed(frame(OP_BINARY, b"12345", rsv=RSV1))
    assert reader.close_code == 1009


# -- Input paths: any split, get_buffer()/buffer_updated(), pending --------------------------


def mixed_stream() -> tuple[bytes, list]:
    """A stream with every kind of message and all three length encodings, and its messages."""
    big = bytes(range(256)) * 300  # 76800 bytes: 64-bit length
    parts = [
        (frame(OP_TEXT, "Hello"), [(OP_TEXT, "Hello")]),
        (frame(OP_BINARY, b""), [(OP_BINARY, b"")]),
        (frame(OP_PING, b"ping!"), [(OP_PING, b"ping!")]),
        (frame(OP_TEXT, "κόσ".encode()[:3], fin=False), []),
        (frame(OP_PONG, b""), [(OP_PONG, b"")]),
        (frame(OP_CONT, "κόσ".encode()[3:] + "🌍".encode()), [(OP_TEXT, "κόσ🌍")]),
        (frame(OP_BINARY, b"m" * 300), [(OP_BINARY, b"m" * 300)]),
        (frame(OP_BINARY, big[:1000], fin=False), []),
        (frame(OP_CONT, big[1000:]), [(OP_BINARY, big)]),
        (frame(OP_CLOSE, close_payload(1001, "gone")), [(OP_CLOSE, (1001, "gone"))]),
    ]
    return b"".join(p for p, _ in parts), [m for _, ms in parts for m in ms]


def small_stream() -> tuple[bytes, list]:
    parts = [
        (frame(OP_TEXT, "Hi"), [(OP_TEXT, "Hi")]),
        (frame(OP_BINARY, b"\x00" * 130), [(OP_BINARY, b"\x00" * 130)]),
        (frame(OP_TEXT, "é".encode()[:1], fin=False), []),
        (frame(OP_PING, b"p"), [(OP_PING, b"p")]),
        (frame(OP_CONT, "é".encode()[1:]), [(OP_TEXT, "é")]),
        (frame(OP_CLOSE, b""), [(OP_CLOSE, (1005, ""))]),
    ]
    return b"".join(p for p, _ in parts), [m for _, ms in parts for m in ms]


def test_byte_by_byte_feed_gives_the_same_messages(codec):
    data, expected = mixed_stream()
    reader = codec.FrameReader()
    assert feed_chunks(reader, data, range(1, len(data))) == expected


def test_every_single_cut_gives_the_same_messages(codec):
    data, expected = small_stream()
    for cut in range(len(data) + 1):
        reader = codec.FrameReader()
        assert feed_chunks(reader, data, [cut]) == expected, cut


@pytest.mark.parametrize("seed", range(20))
def test_random_chunks_give_the_same_messages(codec, seed):
    data, expected = mixed_stream()
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), rng.choice([2, 10, 100, 1000])))
    reader = codec.FrameReader()
    assert feed_chunks(reader, data, cuts) == expected


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_feed_accepts_any_buffer(codec, kind):
    data, expected = small_stream()
    reader = codec.FrameReader()
    assert reader.feed(kind(data)) == expected


def test_feed_of_nothing_returns_nothing(codec):
    reader = codec.FrameReader()
    assert reader.feed(b"") == []
    assert reader.pending == 0


def test_feed_copies_what_it_keeps(codec):
    """The caller may reuse its buffer right after feed(): the reader keeps its own copy."""
    data = frame(OP_TEXT, "Hello, world")
    buf = bytearray(data)
    for cut in (1, 4, 9):
        reader = codec.FrameReader()
        buf[:] = data
        assert reader.feed(memoryview(buf)[:cut]) == []
        buf[:] = b"\xff" * len(buf)
        assert reader.feed(data[cut:]) == [(OP_TEXT, "Hello, world")]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 4096, 1 << 20])
def test_get_buffer_path_equals_feed(codec, chunk):
    data, expected = mixed_stream()
    reader = codec.FrameReader()
    assert feed_via_buffer(reader, data, chunk) == expected
    assert reader.close_code is None


def test_get_buffer_returns_a_writable_memoryview(codec):
    reader = codec.FrameReader()
    buf = reader.get_buffer(100)
    assert isinstance(buf, memoryview)
    assert not buf.readonly
    assert len(buf) > 0


def test_get_buffer_path_reports_errors_like_feed(codec):
    data = frame(OP_TEXT, "ok") + frame(OP_TEXT, b"\xce\xba\xff")
    reader = codec.FrameReader()
    assert feed_via_buffer(reader, data, 5) == [(OP_TEXT, "ok")]
    assert reader.close_code == 1007


@pytest.mark.parametrize("scratch_size", [4096, 256 * 1024])
@pytest.mark.parametrize("chunk", [3, 100, 5000])
def test_shared_scratch_used_by_two_readers_alternately(codec, scratch_size, chunk):
    scratch = bytearray(scratch_size)
    a = codec.FrameReader(scratch=scratch)
    b = codec.FrameReader(scratch=scratch, expect_mask=False)
    data_a, expected_a = mixed_stream()
    data_b = (
        frame(OP_TEXT, "server", mask=None)
        + frame(OP_BINARY, b"\x07" * 9000, mask=None, fin=False)
        + frame(OP_PING, b"!", mask=None)
        + frame(OP_CONT, b"\x08" * 70, mask=None)
    )
    expected_b = [(OP_TEXT, "server"), (OP_PING, b"!"), (OP_BINARY, b"\x07" * 9000 + b"\x08" * 70)]
    out_a, out_b = [], []
    pa = pb = 0
    while pa < len(data_a) or pb < len(data_b):
        for reader, data, out, pos in ((a, data_a, out_a, pa), (b, data_b, out_b, pb)):
            if pos >= len(data):
                continue
            buf = reader.get_buffer(chunk)
            n = min(len(buf), chunk, len(data) - pos)
            buf[:n] = data[pos : pos + n]
            out += reader.buffer_updated(n)
            if reader is a:
                pa += n
            else:
                pb += n
    assert out_a == expected_a
    assert out_b == expected_b
    assert a.close_code is None and b.close_code is None


def test_pending_is_zero_when_idle(codec):
    reader = codec.FrameReader()
    assert reader.pending == 0
    reader.feed(frame(OP_TEXT, "abc") + frame(OP_PING, b""))
    assert reader.pending == 0


@pytest.mark.parametrize("k", range(1, 14))
def test_pending_counts_a_partial_header(codec, k):
    data = frame(OP_BINARY, b"x" * 70000)  # 2 + 8 + 4 = 14-byte header
    reader = codec.FrameReader(max_size=0)
    assert reader.feed(data[:k]) == []
    assert reader.pending == k
    assert reader.close_code is None


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING])
def test_pending_counts_a_partial_payload(codec, opcode):
    data = frame(opcode, b"y" * 100)
    reader = codec.FrameReader()
    reader.feed(data[: 6 + 40])  # a whole header is decoded: only payload bytes are held
    assert reader.pending == 40
    reader.feed(data[6 + 40 : -1])
    assert reader.pending == 99
    assert reader.feed(data[-1:]) == [(opcode, b"y" * 100 if opcode != OP_TEXT else "y" * 100)]
    assert reader.pending == 0


def test_pending_via_get_buffer(codec):
    data = frame(OP_TEXT, "hello")
    reader = codec.FrameReader()
    buf = reader.get_buffer(3)
    buf[:3] = data[:3]
    assert reader.buffer_updated(3) == []
    assert reader.pending == 3
    assert feed_via_buffer(reader, data[3:], 2) == [(OP_TEXT, "hello")]
    assert reader.pending == 0


@pytest.mark.parametrize("size", [1, 13])
def test_undersized_scratch_is_rejected_or_works(codec, size):
    """A scratch smaller than the largest header (14 bytes) must not hang the reader: either the
    constructor refuses it, or feed() still decodes the stream. Run in a child process, because a
    compiled loop that never returns to the interpreter cannot be interrupted by a test timeout."""
    script = textwrap.dedent(
        f"""
        import {codec.__name__} as codec
        try:
            reader = codec.FrameReader(scratch=bytearray({size}), max_size=0)
        except ValueError:
            print("rejected")
        else:
            data = bytes([0x82, 0xFF]) + (70000).to_bytes(8, "big") + b"abcd" + bytes(70000)
            out = reader.feed(data)
            print("decoded" if len(out) == 1 and len(out[0][1]) == 70000 else out)
        """
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=10
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"FrameReader(scratch=bytearray({size})).feed() did not return in 10 s")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() in ("rejected", "decoded")

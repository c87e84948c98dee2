"""encode_frame / encode_close: RFC 6455 §5.7 vectors, round trips through FrameReader, errors."""

from __future__ import annotations

import pytest

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
KEY = bytes.fromhex("37fa213d")
MASKED_HELLO = bytes.fromhex("7f9f4d5158")


# -- §5.7 Examples --------------------------------------------------------------------------


def test_unmasked_text_hello(codec):
    assert codec.encode_frame(OP_TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")


def test_masked_text_hello(codec):
    expected = bytes.fromhex("8185") + KEY + MASKED_HELLO
    assert codec.encode_frame(OP_TEXT, b"Hello", mask=KEY) == expected


def test_fragmented_unmasked_text(codec):
    assert codec.encode_frame(OP_TEXT, b"Hel", fin=False) == bytes.fromhex("010348656c")
    assert codec.encode_frame(OP_CONT, b"lo") == bytes.fromhex("80026c6f")


def test_unmasked_ping_and_masked_pong(codec):
    assert codec.encode_frame(OP_PING, b"Hello") == bytes.fromhex("890548656c6c6f")
    assert (
        codec.encode_frame(OP_PONG, b"Hello", mask=KEY)
        == bytes.fromhex("8a85") + KEY + MASKED_HELLO
    )


def test_256_byte_binary_uses_16_bit_length(codec):
    payload = bytes(range(256))
    out = codec.encode_frame(OP_BINARY, payload)
    assert out[:4] == bytes.fromhex("827e0100")
    assert out[4:] == payload


def test_64_kib_binary_uses_64_bit_length(codec):
    payload = bytes(range(256)) * 256
    out = codec.encode_frame(OP_BINARY, payload)
    assert out[:10] == bytes.fromhex("827f0000000000010000")
    assert out[10:] == payload


@pytest.mark.parametrize(
    "n, header",
    [
        (0, "8200"),
        (1, "8201"),
        (125, "827d"),
        (126, "827e007e"),
        (127, "827e007f"),
        (65535, "827effff"),
        (65536, "827f0000000000010000"),
        (65537, "827f0000000000010001"),
    ],
)
def test_length_encoding_boundaries(codec, n, header):
    out = codec.encode_frame(OP_BINARY, b"\xab" * n)
    head = bytes.fromhex(header)
    assert out[: len(head)] == head
    assert len(out) == len(head) + n


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65536])
def test_mask_bit_and_key_follow_the_length(codec, n):
    out = codec.encode_frame(OP_BINARY, b"\x00" * n, mask=KEY)
    assert out[1] & 0x80
    hlen = 2 + (0 if n < 126 else 2 if n < 65536 else 8)
    assert out[hlen : hlen + 4] == KEY
    assert out[hlen + 4 :] == (KEY * (n // 4 + 1))[:n]  # zeros XOR key = the key repeated


# -- header bits ----------------------------------------------------------------------------


@pytest.mark.parametrize("opcode", range(16))
def test_any_opcode_0_to_15_is_encoded(codec, opcode):
    assert codec.encode_frame(opcode, b"")[0] == 0x80 | opcode


def test_rsv1_and_fin_bits(codec):
    assert codec.encode_frame(OP_TEXT, b"x", rsv1=True)[0] == 0xC1
    assert codec.encode_frame(OP_BINARY, b"x", rsv1=True, fin=False)[0] == 0x42
    assert codec.encode_frame(OP_CONT, b"x", fin=False)[0] == 0x00


def test_result_is_bytes(codec):
    assert type(codec.encode_frame(OP_BINARY, bytearray(b"x"))) is bytes
    assert type(codec.encode_frame(OP_BINARY, memoryview(b"x"), mask=bytearray(KEY))) is bytes
    assert type(codec.encode_close(1000)) is bytes


# -- payload types --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "Hello", "κόσμε", "🌍" * 40, "é" * 70000])
def test_str_payload_is_utf8_encoded(codec, text):
    raw = text.encode("utf-8")
    assert codec.encode_frame(OP_TEXT, text) == codec.encode_frame(OP_TEXT, raw)
    assert codec.encode_frame(OP_TEXT, text, mask=KEY) == codec.encode_frame(OP_TEXT, raw, mask=KEY)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_any_buffer_payload_and_mask(codec, kind):
    expected = bytes.fromhex("8185") + KEY + MASKED_HELLO
    assert codec.encode_frame(OP_TEXT, kind(b"Hello"), mask=kind(KEY)) == expected


def test_payload_is_not_modified_by_masking(codec):
    payload = bytearray(b"unchanged payload")
    codec.encode_frame(OP_BINARY, payload, mask=KEY)
    assert payload == b"unchanged payload"


def test_masked_payload_at_misaligned_offsets(codec):
    backing = bytes(range(200))
    for offset in range(8):
        view = memoryview(backing)[offset : offset + 150]
        out = codec.encode_frame(OP_BINARY, view, mask=KEY)
        expected = bytes(b ^ KEY[i % 4] for i, b in enumerate(view))
        assert out[8:] == expected, offset


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("opcode", [-1, 16, 255, 2**32])
def test_opcode_outside_0_15_is_value_error(codec, opcode):
    with pytest.raises(ValueError):
        codec.encode_frame(opcode, b"")


@pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG, 0xB, 0xF])
def test_control_frame_over_125_bytes_is_value_error(codec, opcode):
    codec.encode_frame(opcode, b"x" * 125)
    with pytest.raises(ValueError):
        codec.encode_frame(opcode, b"x" * 126)
    with pytest.raises(ValueError):
        codec.encode_frame(opcode, "é" * 63)  # 126 bytes once encoded


@pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
def test_fragmented_control_frame_is_value_error(codec, opcode):
    with pytest.raises(ValueError):
        codec.encode_frame(opcode, b"", fin=False)


@pytest.mark.parametrize("mask", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05", bytearray(8)])
def test_mask_not_4_bytes_is_value_error(codec, mask):
    with pytest.raises(ValueError):
        codec.encode_frame(OP_TEXT, b"x", mask=mask)
    with pytest.raises(ValueError):
        codec.encode_close(1000, "x", mask=mask)


# -- encode_close ---------------------------------------------------------------------------


def test_close_with_code_only(codec):
    assert codec.encode_close(1000) == bytes.fromhex("880203e8")


def test_close_with_reason(codec):
    assert codec.encode_close(1001, "bye") == bytes.fromhex("880503e9") + b"bye"


def test_close_1005_has_an_empty_payload(codec):
    assert codec.encode_close(1005) == bytes.fromhex("8800")
    assert codec.encode_close(1005, "ignored") == bytes.fromhex("8800")
    assert codec.encode_close(1005, mask=KEY) == bytes.fromhex("8880") + KEY


def test_masked_close(codec):
    out = codec.encode_close(1000, "ok", mask=KEY)
    payload = b"\x03\xe8ok"
    assert out == bytes([0x88, 0x80 | 4]) + KEY + bytes(
        b ^ KEY[i % 4] for i, b in enumerate(payload)
    )


@pytest.mark.parametrize(
    "reason, kept",
    [
        ("r" * 123, "r" * 123),
        ("r" * 124, "r" * 123),
        ("r" * 500, "r" * 123),
        ("é" * 61 + "x", "é" * 61 + "x"),  # exactly 123 bytes
        ("é" * 62, "é" * 61),  # 124 bytes: the cut would split the 62nd é
        ("x" + "é" * 70, "x" + "é" * 61),  # 123 bytes on a boundary
        ("🌍" * 31, "🌍" * 30),  # 124 bytes: cut inside the 31st character
        ("ab" + "🌍" * 40, "ab" + "🌍" * 30),  # 122 bytes kept, 1 byte of the next dropped
        ("a" + "€" * 50, "a" + "€" * 40),  # 3-byte chars: 121 bytes kept
    ],
)
def test_close_reason_is_cut_to_123_bytes_on_a_character_boundary(codec, reason, kept):
    out = codec.encode_close(4000, reason)
    assert len(out) - 2 <= 125
    assert out[2:4] == b"\x0f\xa0"
    assert out[4:].decode("utf-8") == kept


# -- round trips through FrameReader --------------------------------------------------------

PAYLOADS = [b"", b"x", b"\x00\xff" * 63, bytes(range(256)) * 300, b"\x81" * 65536]


@pytest.mark.parametrize("masked", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: str(len(p)))
def test_binary_round_trip(codec, payload, masked):
    data = codec.encode_frame(OP_BINARY, payload, mask=KEY if masked else None)
    reader = codec.FrameReader(expect_mask=masked)
    assert reader.feed(data) == [(OP_BINARY, payload)]
    assert reader.close_code is None


@pytest.mark.parametrize("masked", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("text", ["", "Hello", "κόσμε 🌍", "🌍" * 20000])
def test_text_round_trip_in_fragments(codec, text, masked):
    mask = KEY if masked else None
    raw = text.encode("utf-8")
    cut = len(raw) // 3 + 1  # probably inside a character
    data = (
        codec.encode_frame(OP_TEXT, raw[:cut], fin=False, mask=mask)
        + codec.encode_frame(OP_PING, b"between", mask=mask)
        + codec.encode_frame(OP_CONT, raw[cut:], mask=mask)
    )
    reader = codec.FrameReader(expect_mask=masked)
    assert reader.feed(data) == [(OP_PING, b"between"), (OP_TEXT, text)]


@pytest.mark.parametrize("masked", [True, False], ids=["client", "server"])
@pytest.mark.parametrize("code", [1000, 1001, 1011, 3000, 4999])
@pytest.mark.parametrize("reason", ["", "bye", "κόσμε" * 30])
def test_close_round_trip(codec, code, reason, masked):
    data = codec.encode_close(code, reason, mask=KEY if masked else None)
    reader = codec.FrameReader(expect_mask=masked)
    [(opcode, (got_code, got_reason))] = reader.feed(data)
    assert (opcode, got_code) == (OP_CLOSE, code)
    assert reason.startswith(got_reason)
    assert len(got_reason.encode("utf-8")) <= 123


@pytest.mark.parametrize("masked", [True, False], ids=["client", "server"])
def test_close_1005_round_trip(codec, masked):
    reader = codec.FrameReader(expect_mask=masked)
    assert reader.feed(codec.encode_close(1005, mask=KEY if masked else None)) == [
        (OP_CLOSE, (1005, ""))
    ]


def test_compressed_round_trip(codec):
    data = codec.encode_frame(OP_BINARY, b"\x01\x02", rsv1=True, mask=KEY)
    reader = codec.FrameReader(rsv1_allowed=True)
    assert reader.feed(data) == [(OP_BINARY | codec.FLAG_COMPRESSED, b"\x01\x02")]


def test_encodings_agree_between_implementations(codec):
    """Both implementations encode the same bytes; the pure one is the reference."""
    from fastws import _speedups_py as ref

    cases = [
        (OP_TEXT, "κόσμε", {}),
        (OP_BINARY, b"\x00" * 70000, {"mask": KEY}),
        (OP_CONT, b"abc", {"fin": False, "rsv1": True}),
        (OP_PING, b"p" * 125, {"mask": b"\xff\xff\xff\xff"}),
    ]
    for opcode, payload, kw in cases:
        assert codec.encode_frame(opcode, payload, **kw) == ref.encode_frame(opcode, payload, **kw)
    assert codec.encode_close(1000, "é" * 100, mask=KEY) == ref.encode_close(
        1000, "é" * 100, mask=KEY
    )

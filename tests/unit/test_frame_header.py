"""encode_frame_header: the header of a server frame, for payloads written without a copy."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 24])
@pytest.mark.parametrize("opcode", [0, 1, 2])
@pytest.mark.parametrize("fin", [True, False])
@pytest.mark.parametrize("rsv1", [True, False])
def test_header_is_the_start_of_the_whole_frame(codec, opcode, length, fin, rsv1):
    payload = bytes(length)
    frame = codec.encode_frame(opcode, payload, fin=fin, rsv1=rsv1)
    header = codec.encode_frame_header(opcode, length, fin=fin, rsv1=rsv1)
    assert frame == header + payload


def test_header_plus_payload_reads_back(codec):
    reader = codec.FrameReader(expect_mask=False, max_size=0)
    payload = bytes(range(256)) * 400
    assert reader.feed(codec.encode_frame_header(2, len(payload)) + payload) == [(2, payload)]


@pytest.mark.parametrize(
    "opcode, length, fin",
    [(16, 0, True), (-1, 0, True), (2, -1, True), (9, 126, True), (8, 0, False)],
)
def test_invalid_headers_are_value_errors(codec, opcode, length, fin):
    with pytest.raises(ValueError):
        codec.encode_frame_header(opcode, length, fin=fin)

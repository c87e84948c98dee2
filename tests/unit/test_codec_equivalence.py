"""Property tests: the compiled codec and its pure-Python twin behave identically.

Hypothesis builds byte streams from well-formed frames, broken frames (bad opcodes, RSV bits,
wrong mask bit, lying lengths, oversized control frames, invalid UTF-8, bad close payloads) and
random junk, cuts each stream at random points and feeds both implementations the same chunks.
After every chunk both must have returned the same messages (same types too) and agree on
close_code, close_reason and pending. Needs the compiled module: skipped when it is not built,
an error when FASTWS_REQUIRE_EXTENSIONS is set.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def xor(data: bytes, key: bytes) -> bytes:
    if not data:
        return b""
    stream = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")).to_bytes(
        len(data), "little"
    )


def raw_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    key: bytes | None = None,
    length: int | None = None,
    encoding: int | None = None,
) -> bytes:
    n = len(payload) if length is None else length
    if encoding is None:
        encoding = 7 if n < 126 else 16 if n < 65536 else 64
    head = bytearray([(0x80 if fin else 0) | rsv | opcode])
    mbit = 0x80 if key is not None else 0
    if encoding == 7:
        head.append(mbit | n)
    elif encoding == 16:
        head += bytes([mbit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mbit | 127]) + n.to_bytes(8, "big")
    if key is None:
        return bytes(head) + payload
    return bytes(head) + key + xor(payload, key)


# -- strategies -----------------------------------------------------------------------------

# Pieces that make UTF-8 interesting: every kind of lead byte, continuation bytes at the edges
# of the RFC 3629 ranges, whole valid characters of each width, surrogates, above U+10FFFF.
UTF8_PIECES = [
    b"a",
    b"\x00",
    b"\x7f",
    b"\x80",
    b"\x8f",
    b"\x90",
    b"\x9f",
    b"\xa0",
    b"\xbf",
    b"\xc0",
    b"\xc1",
    b"\xc2",
    b"\xdf",
    b"\xe0",
    b"\xe1",
    b"\xec",
    b"\xed",
    b"\xee",
    b"\xef",
    b"\xf0",
    b"\xf1",
    b"\xf3",
    b"\xf4",
    b"\xf5",
    b"\xff",
    "é".encode(),
    "€".encode(),
    "🌍".encode(),
    "\U0010ffff".encode(),
    "\ud7ff".encode(),
    b"\xed\xa0\x80",
    b"\xed\x9f\xbf",
    b"\xf4\x90\x80\x80",
    b"\xe0\x9f\xbf",
    b"\xf0\x8f\xbf\xbf",
]

utf8ish = st.lists(
    st.one_of(
        st.sampled_from(UTF8_PIECES),
        st.text(max_size=4).map(lambda s: s.encode("utf-8", "surrogatepass")),
    ),
    max_size=24,
).map(b"".join)

CLOSE_CODES = [
    0,
    999,
    1000,
    1001,
    1002,
    1003,
    1004,
    1005,
    1006,
    1007,
    1011,
    1014,
    1015,
    1016,
    2999,
    3000,
    4999,
    5000,
    65535,
]

close_payloads = st.one_of(
    st.just(b""),
    st.binary(min_size=1, max_size=1),
    st.tuples(st.sampled_from(CLOSE_CODES), utf8ish).map(
        lambda t: t[0].to_bytes(2, "big") + t[1][:123]
    ),
    st.tuples(st.sampled_from(CLOSE_CODES), st.binary(max_size=130)).map(
        lambda t: t[0].to_bytes(2, "big") + t[1]
    ),
)

payloads = st.one_of(
    st.binary(max_size=40),
    utf8ish,
    st.text(max_size=30).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.binary(max_size=40),
    # longer payloads, cheap to build: cross 125/126 and 65535/65536
    st.tuples(st.integers(100, 300), st.binary(min_size=1, max_size=3)).map(
        lambda t: (t[1] * t[0])[: t[0]]
    ),
    st.sampled_from([65535, 65536, 65537, 70001]).map(lambda n: bytes([n & 0xFF]) * n),
)

WELL_FORMED_OPCODES = [OP_TEXT] * 4 + [OP_BINARY] * 4 + [OP_PING, OP_PONG, OP_CLOSE]
# What one_frame() breaks, if anything: about one frame in eight breaks one rule ("encoding"
# only uses a longer length encoding than needed, which is allowed).
BREAKAGES = (
    [None] * 40 + ["opcode", "rsv", "mask", "fin", "near", "huge"] + ["encoding", "utf8"] * 3
)


@st.composite
def one_frame(draw, expect_mask: bool) -> bytes:
    """A frame, mostly well-formed; now and then one rule of §5 is broken."""
    broken = draw(st.sampled_from(BREAKAGES))
    opcode = draw(
        st.integers(0, 15) if broken == "opcode" else st.sampled_from(WELL_FORMED_OPCODES)
    )
    if opcode == OP_CLOSE:
        payload = draw(close_payloads)
    elif opcode == OP_TEXT and broken != "utf8":
        payload = draw(st.text(max_size=30)).encode("utf-8")
    elif opcode >= 8:
        payload = draw(st.binary(max_size=125) if broken != "near" else payloads)
    else:
        payload = draw(payloads)
    fin = broken != "fin"
    rsv = draw(st.sampled_from([0x20, 0x10, 0x70, 0x40])) if broken == "rsv" else 0
    if rsv == 0 and 0 < opcode < 8 and draw(st.integers(0, 19)) == 0:
        rsv = 0x40  # permessage-deflate's bit: fine when rsv1_allowed, else an error
    masked = expect_mask if broken != "mask" else not expect_mask
    key = draw(st.binary(min_size=4, max_size=4)) if masked else None
    encoding = draw(st.sampled_from([16, 64])) if broken == "encoding" else None
    if encoding == 16 and len(payload) > 0xFFFF:
        encoding = 64
    length = None
    if broken == "near":
        length = max(0, len(payload) + draw(st.integers(-3, 3)))
    elif broken == "huge":
        length = draw(
            st.sampled_from([1 << 63, (1 << 63) - 1, (1 << 64) - 1, 16 * 1024 * 1024 + 1])
        )
        encoding = 64
    if length is not None and encoding in (None, 7) and length > 125:
        encoding = 16 if length < 65536 else 64
    if length is not None and encoding == 16 and length > 0xFFFF:
        encoding = 64
    return raw_frame(opcode, payload, fin=fin, rsv=rsv, key=key, length=length, encoding=encoding)


@st.composite
def fragmented_message(draw, expect_mask: bool) -> bytes:
    """A well-formed fragmented message, control frames between fragments, pieces cut anywhere
    (so UTF-8 characters straddle frames)."""
    opcode = draw(st.sampled_from([OP_TEXT, OP_BINARY]))
    valid = st.text(max_size=40).map(lambda s: s.encode("utf-8"))
    data = draw(st.one_of(valid, valid, utf8ish))
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=False)]
    rsv1 = draw(st.sampled_from([0] * 7 + [0x40]))

    def key() -> bytes | None:
        return draw(st.binary(min_size=4, max_size=4)) if expect_mask else None

    out = b""
    for i, piece in enumerate(pieces):
        op = opcode if i == 0 else OP_CONT
        out += raw_frame(op, piece, fin=i == len(pieces) - 1, rsv=rsv1 if i == 0 else 0, key=key())
        if draw(st.integers(0, 3)) == 0:
            ctl = draw(st.sampled_from([OP_PING, OP_PONG]))
            out += raw_frame(ctl, draw(st.binary(max_size=10)), key=key())
    return out


# Items of a stream; junk is rare, since it desynchronises everything after it.
ITEM_KINDS = ["frame"] * 12 + ["fragmented"] * 6 + ["junk"]


@st.composite
def streams(draw):
    """(reader options, stream bytes, cut positions, input path)."""
    expect_mask = draw(st.booleans())
    options = {
        "max_size": draw(
            st.sampled_from([0, -1, 1, 10, 125, 126, 200, 1000, 65536, 70000, 16 * 1024 * 1024])
        ),
        "expect_mask": expect_mask,
        "rsv1_allowed": draw(st.sampled_from([True, True, False])),
    }
    kinds = draw(st.lists(st.sampled_from(ITEM_KINDS), min_size=1, max_size=10))
    items = [
        draw(
            one_frame(expect_mask)
            if kind == "frame"
            else fragmented_message(expect_mask)
            if kind == "fragmented"
            else st.binary(min_size=1, max_size=16)
        )
        for kind in kinds
    ]
    data = b"".join(items)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=30))))
    path = draw(st.sampled_from(["feed", "buffer", "scratch"]))
    return options, data, cuts, path


# -- feeding both ---------------------------------------------------------------------------


class Driver:
    """Feeds one reader through the chosen input path."""

    def __init__(self, codec, options: dict, path: str) -> None:
        self.path = path
        if path == "scratch":
            self.scratch = bytearray(4096)
            self.reader = codec.FrameReader(scratch=self.scratch, **options)
            # a second reader sharing the scratch, used between our reads
            self.other = codec.FrameReader(scratch=self.scratch, expect_mask=False)
            self.other_frame = raw_frame(OP_BINARY, b"\xee" * 9)
        else:
            self.reader = codec.FrameReader(**options)

    def push(self, chunk: bytes) -> list:
        if self.path == "feed":
            return self.reader.feed(chunk)
        out = []
        pos = 0
        while pos < len(chunk):
            buf = self.reader.get_buffer(len(chunk) - pos)
            n = min(len(buf), len(chunk) - pos)
            buf[:n] = chunk[pos : pos + n]
            out += self.reader.buffer_updated(n)
            pos += n
            if self.path == "scratch":
                other = self.other.get_buffer(len(self.other_frame))
                other[: len(self.other_frame)] = self.other_frame
                assert self.other.buffer_updated(len(self.other_frame)) == [
                    (OP_BINARY, b"\xee" * 9)
                ]
        return out


def typed(messages: list) -> list:
    """Messages with the payload's type, so bytes vs str vs bytearray differences show."""
    return [(op, type(payload).__name__, payload) for op, payload in messages]


def state(reader) -> tuple:
    return reader.close_code, reader.close_reason, reader.pending


def run_both(both_codecs, options: dict, data: bytes, cuts: list, path: str) -> list:
    py, cy = (Driver(codec, options, path) for codec in both_codecs)
    prev = 0
    got = []
    for i, cut in enumerate([*cuts, len(data)]):
        chunk = data[prev:cut]
        prev = cut
        a, b = py.push(chunk), cy.push(chunk)
        assert typed(b) == typed(a), f"chunk {i} ({len(chunk)} bytes) of {data[:200].hex()}"
        assert state(cy.reader) == state(py.reader), f"after chunk {i} of {data[:200].hex()}"
        got += a
    # Label the outcome (shown by --hypothesis-show-statistics) to see what the strategies reach.
    event(f"close_code={py.reader.close_code} ({py.reader.close_reason or 'ok'})")
    event(f"messages: {min(len(got), 3)}{'+' if len(got) >= 3 else ''}")
    return got


@SETTINGS
@given(streams())
def test_random_streams_decode_identically(both_codecs, case):
    options, data, cuts, path = case
    run_both(both_codecs, options, data, cuts, path)


@SETTINGS
@given(
    expect_mask=st.booleans(),
    message=st.data(),
    cuts=st.lists(st.integers(1, 400), max_size=20),
)
def test_fragmented_text_is_validated_identically(both_codecs, expect_mask, message, cuts):
    """UTF-8 focus: a fragmented text message of UTF-8-ish bytes. Beyond agreeing with each
    other, both must match Python's own strict decoder on whether the text is valid."""
    data = message.draw(utf8ish)
    frag = sorted(message.draw(st.lists(st.integers(0, len(data)), max_size=4)))
    pieces = [data[a:b] for a, b in zip([0, *frag], [*frag, len(data)], strict=False)]
    key = b"\x11\x22\x33\x44" if expect_mask else None
    stream = b"".join(
        raw_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(pieces) - 1, key=key)
        for i, p in enumerate(pieces)
    )
    cuts = sorted({c for c in cuts if c < len(stream)})
    options = {"max_size": 0, "expect_mask": expect_mask, "rsv1_allowed": False}
    messages = run_both(both_codecs, options, stream, cuts, "feed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        assert messages == []
    else:
        assert messages == [(OP_TEXT, text)]


@SETTINGS
@given(
    data=st.binary(max_size=64),
    cuts=st.lists(st.integers(1, 63), max_size=10),
    options=st.fixed_dictionaries(
        {
            "max_size": st.sampled_from([0, 5, 100]),
            "expect_mask": st.booleans(),
            "rsv1_allowed": st.booleans(),
        }
    ),
)
def test_pure_junk_is_handled_identically(both_codecs, data, cuts, options):
    cuts = sorted({c for c in cuts if c < len(data)})
    run_both(both_codecs, options, data, cuts, "feed")


@SETTINGS
@given(
    opcode=st.integers(0, 15),
    payload=st.one_of(st.binary(max_size=200), st.text(max_size=50)),
    fin=st.booleans(),
    rsv1=st.booleans(),
    mask=st.one_of(st.none(), st.binary(min_size=4, max_size=4), st.binary(max_size=6)),
)
def test_encode_frame_is_identical(both_codecs, opcode, payload, fin, rsv1, mask):
    results = []
    for codec in both_codecs:
        try:
            results.append(
                ("ok", codec.encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask))
            )
        except ValueError:
            results.append(("ValueError", None))
    assert results[0] == results[1]


@SETTINGS
@given(
    code=st.integers(0, 65535),
    reason=st.text(max_size=130),
    mask=st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
)
def test_encode_close_is_identical(both_codecs, code, reason, mask):
    py, cy = both_codecs
    assert cy.encode_close(code, reason, mask=mask) == py.encode_close(code, reason, mask=mask)


@SETTINGS
@given(
    data=st.binary(max_size=300),
    key=st.binary(min_size=4, max_size=4),
    start=st.integers(0, 310),
    length=st.integers(-1, 310),
)
def test_masking_is_identical(both_codecs, data, key, start, length):
    py, cy = both_codecs
    assert cy.apply_mask(data, key) == py.apply_mask(data, key)
    results = []
    for codec in both_codecs:
        buf = bytearray(data)
        try:
            codec.apply_mask_inplace(buf, key, start, length)
            results.append(bytes(buf))
        except ValueError:
            results.append("ValueError")
    assert results[0] == results[1]

"""RFC 6455 §5.3 masking: apply_mask and apply_mask_inplace against a naive reference.

Sizes sit on the edges of the kernels' word loops and of the frame length encodings; start
offsets 0-7 put the data at every alignment relative to an 8-byte word.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SIZES = [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 125, 126, 127]
SIZES += [65535, 65536, 65537, 4 * 1024 * 1024 + 3]
OFFSETS = range(8)
KEY = bytes([0x37, 0xFA, 0x21, 0x3D])


def reference_mask(data: bytes, key: bytes) -> bytes:
    """The RFC's definition, byte by byte: j = i MOD 4; out[i] = data[i] XOR key[j]."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def sample(n: int, seed: int = 0) -> bytes:
    """n deterministic, non-repeating-looking bytes (not a multiple of the key period)."""
    return bytes((i * 131 + seed * 17 + (i >> 8) * 7) & 0xFF for i in range(n))


# The reference is slow in pure Python; compute it once per size.
_EXPECTED: dict[tuple[int, int], bytes] = {}


def expected(n: int, seed: int = 0) -> bytes:
    if (n, seed) not in _EXPECTED:
        _EXPECTED[(n, seed)] = reference_mask(sample(n, seed), KEY)
    return _EXPECTED[(n, seed)]


# -- apply_mask: unmask while copying -------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_apply_mask_matches_reference(codec, n):
    out = codec.apply_mask(sample(n), KEY)
    assert type(out) is bytes
    assert out == expected(n)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_apply_mask_accepts_any_buffer(codec, kind):
    data = sample(100)
    assert codec.apply_mask(kind(data), kind(KEY)) == expected(100)


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 33, 1000])
def test_apply_mask_on_misaligned_view(codec, offset, n):
    backing = bytearray(b"\xaa" * offset) + sample(n) + b"\x55" * 3
    view = memoryview(backing)[offset : offset + n]
    assert codec.apply_mask(view, KEY) == expected(n)
    assert backing[offset : offset + n] == sample(n)  # the input is left alone


def test_apply_mask_twice_is_identity(codec):
    data = sample(1001)
    assert codec.apply_mask(codec.apply_mask(data, KEY), KEY) == data


def test_apply_mask_zero_key_is_copy(codec):
    data = sample(77)
    assert codec.apply_mask(data, b"\0\0\0\0") == data


@pytest.mark.parametrize("key", [b"", b"\x01", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_apply_mask_bad_key_length_is_value_error(codec, key):
    with pytest.raises(ValueError):
        codec.apply_mask(b"abcdef", key)


# -- apply_mask_inplace ---------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_apply_mask_inplace_matches_reference(codec, n):
    buf = bytearray(sample(n))
    assert codec.apply_mask_inplace(buf, KEY) is None
    assert buf == expected(n)


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 63, 64, 65, 127, 65537])
def test_apply_mask_inplace_at_start_offset(codec, offset, n):
    """Key phase follows `start`: byte `start` meets key[0]; bytes around the range are kept."""
    before, after = b"\xaa" * offset, b"\x55" * 5
    buf = bytearray(before + sample(n) + after)
    codec.apply_mask_inplace(buf, KEY, offset, n)
    assert buf == before + expected(n) + after


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("n", [1, 7, 8, 9, 33, 65536])
def test_apply_mask_inplace_on_misaligned_memoryview(codec, offset, n):
    """A memoryview whose first byte is at any alignment, masked from its own start."""
    backing = bytearray(b"\xaa" * offset + sample(n) + b"\x55" * 3)
    view = memoryview(backing)[offset : offset + n]
    codec.apply_mask_inplace(view, KEY)
    assert backing == b"\xaa" * offset + expected(n) + b"\x55" * 3


@pytest.mark.parametrize("start", [0, 1, 2, 3, 5])
def test_apply_mask_inplace_length_minus_one_runs_to_the_end(codec, start):
    buf = bytearray(sample(50))
    codec.apply_mask_inplace(buf, KEY, start, -1)
    assert buf == sample(50)[:start] + reference_mask(sample(50)[start:], KEY)


def test_apply_mask_inplace_keywords(codec):
    buf = bytearray(sample(20))
    codec.apply_mask_inplace(buf, key=KEY, start=4, length=8)
    assert buf == sample(20)[:4] + reference_mask(sample(20)[4:12], KEY) + sample(20)[12:]


def test_apply_mask_inplace_at_end_with_zero_length_is_noop(codec):
    buf = bytearray(sample(10))
    codec.apply_mask_inplace(buf, KEY, 10, -1)
    codec.apply_mask_inplace(buf, KEY, 10, 0)
    codec.apply_mask_inplace(buf, KEY, 3, 0)
    assert buf == sample(10)


def test_apply_mask_inplace_agrees_with_apply_mask(codec):
    data = sample(4099, seed=3)
    buf = bytearray(data)
    codec.apply_mask_inplace(buf, KEY)
    assert bytes(buf) == codec.apply_mask(data, KEY)


@pytest.mark.parametrize(
    "start, length",
    [(-1, 1), (0, 11), (10, 1), (11, -1), (11, 0), (5, 6), (0, -2), (20, -1)],
)
def test_apply_mask_inplace_range_outside_buffer_is_value_error(codec, start, length):
    buf = bytearray(sample(10))
    with pytest.raises(ValueError):
        codec.apply_mask_inplace(buf, KEY, start, length)
    assert buf == sample(10)


@pytest.mark.parametrize(
    "start, length",
    [(1, sys.maxsize), (2**62, 2**62), (sys.maxsize, 1), (0, 2**63), (2**64, -1), (-(2**64), 1)],
    ids=["1+maxsize", "2^62+2^62", "maxsize+1", "len-2^63", "start-2^64", "start--2^64"],
)
def test_apply_mask_inplace_huge_range_is_value_error(codec, start, length):
    """start + length must not wrap around: a range that overflows a C ssize_t is still outside
    the buffer. Run in a child process, since a wrapped bounds check writes outside the buffer."""
    script = textwrap.dedent(
        f"""
        import {codec.__name__} as codec
        buf = bytearray(10)
        try:
            codec.apply_mask_inplace(buf, b"abcd", {start}, {length})
        except ValueError:
            print("ValueError", bytes(buf) == bytes(10))
        except Exception as exc:
            print(type(exc).__name__, exc)
        else:
            print("no error")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"child died with {proc.returncode}: {proc.stderr[-500:]}"
    assert proc.stdout.strip() == "ValueError True"


@pytest.mark.parametrize("key", [b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"])
def test_apply_mask_inplace_bad_key_length_is_value_error(codec, key):
    buf = bytearray(sample(10))
    with pytest.raises(ValueError):
        codec.apply_mask_inplace(buf, key)
    assert buf == sample(10)


@pytest.mark.parametrize(
    "make",
    [bytes, lambda d: memoryview(bytes(d)), lambda d: memoryview(bytearray(d)).toreadonly()],
    ids=["bytes", "memoryview-of-bytes", "readonly-memoryview"],
)
def test_apply_mask_inplace_read_only_buffer_is_an_error(codec, make):
    buf = make(sample(10))
    with pytest.raises((TypeError, ValueError, BufferError)):
        codec.apply_mask_inplace(buf, KEY)
    assert bytes(buf) == sample(10)

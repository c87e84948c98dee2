"""Pure-Python twin of the compiled codec (fastws/_speedups.pyx).

Same API and same behaviour as the compiled module (see fastws/_speedups.pyi for the contract);
used where the extension is not built or when FASTWS_NO_EXTENSIONS is set. Every codec test runs
on both, and a property test feeds both the same byte streams and demands identical output.
Owns RFC 6455 framing only: nothing here knows of sockets, asyncio or ASGI.
"""

from __future__ import annotations

import codecs
import typing as _typing

IMPLEMENTATION = "python"

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
FLAG_COMPRESSED = 0x40

Buffer = bytes | bytearray | memoryview

_SCRATCH_SIZE = 256 * 1024
_SCRATCH_MIN = 1024  # a partial header (13 bytes) plus room to make progress
_MAX_HEADER = 14

# Reasons given with close_code; the compiled reader uses the same strings.
_R_RSV = "reserved bits set"
_R_OPCODE = "unknown opcode"
_R_UNMASKED = "frame not masked"
_R_MASKED = "frame masked"
_R_LENGTH = "invalid payload length"
_R_CTL_LONG = "control frame too long"
_R_CTL_FRAG = "fragmented control frame"
_R_UNEXPECTED_CONT = "unexpected continuation frame"
_R_EXPECTED_CONT = "expected continuation frame"
_R_TOO_BIG = "message too big"
_R_UTF8 = "invalid UTF-8"
_R_CLOSE_LEN = "invalid close frame"
_R_CLOSE_CODE = "invalid close code"
_R_CLOSE_UTF8 = "invalid UTF-8 in close reason"


def _valid_close_code(code: int) -> bool:
    # RFC 6455 §7.4.1 and the IANA registry: 1004-1006 and 1015 must never be sent on the wire.
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _as_key(key: Buffer) -> bytes:
    key = bytes(key)
    if len(key) != 4:
        raise ValueError("mask key must be 4 bytes")
    return key


def _xor(data: Buffer, key: bytes, phase: int = 0) -> bytes:
    """data XOR key, the key rotated so that data[0] meets key[phase]. Big-int XOR runs in C."""
    n = len(data)
    if n == 0:
        return b""
    if phase:
        key = key[phase:] + key[:phase]
    stream = key * (n // 4 + 1)
    value = int.from_bytes(data, "little") ^ int.from_bytes(stream[:n], "little")
    return value.to_bytes(n, "little")


def apply_mask(data: Buffer, key: Buffer) -> bytes:
    return _xor(data, _as_key(key))


def apply_mask_inplace(
    buf: bytearray | memoryview, key: Buffer, start: int = 0, length: int = -1
) -> None:
    k = _as_key(key)
    view = memoryview(buf)
    if view.readonly:
        raise TypeError("buffer is read-only")
    size = view.nbytes
    if length == -1:
        length = size - start
    if start < 0 or length < 0 or start + length > size:
        raise ValueError("range outside the buffer")
    view = view.cast("B")
    view[start : start + length] = _xor(view[start : start + length], k)


def encode_frame(
    opcode: int,
    payload: Buffer | str,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: Buffer | None = None,
) -> bytes:
    if not 0 <= opcode <= 15:
        raise ValueError("opcode must be in 0-15")
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    n = len(data)
    if opcode >= 8 and (n > 125 or not fin):
        raise ValueError("control frames must be unfragmented and at most 125 bytes")
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    mbit = 0x80 if mask is not None else 0
    if n < 126:
        head = bytes((b0, mbit | n))
    elif n <= 0xFFFF:
        head = bytes((b0, mbit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((b0, mbit | 127)) + n.to_bytes(8, "big")
    if mask is None:
        return head + bytes(data)
    key = _as_key(mask)
    return head + key + _xor(data, key)


def encode_frame_header(opcode: int, length: int, *, fin: bool = True, rsv1: bool = False) -> bytes:
    if not 0 <= opcode <= 15:
        raise ValueError("opcode must be in 0-15")
    if length < 0:
        raise ValueError("length must not be negative")
    if opcode >= 8 and (length > 125 or not fin):
        raise ValueError("control frames must be unfragmented and at most 125 bytes")
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        return bytes((b0, length))
    if length <= 0xFFFF:
        return bytes((b0, 126)) + length.to_bytes(2, "big")
    return bytes((b0, 127)) + length.to_bytes(8, "big")


def encode_close(code: int, reason: str = "", *, mask: Buffer | None = None) -> bytes:
    if code == 1005:
        return encode_frame(OP_CLOSE, b"", mask=mask)
    raw = reason.encode("utf-8")
    if len(raw) > 123:
        # Cut on a character boundary: drop continuation bytes (10xxxxxx) left dangling.
        raw = raw[:123].decode("utf-8", "ignore").encode("utf-8")
    return encode_frame(OP_CLOSE, code.to_bytes(2, "big") + raw, mask=mask)


class _Utf8Checker:
    """Incremental strict UTF-8 decoding that fails as soon as no continuation can fix the input.

    CPython's incremental decoder already fails early on every invalid prefix except a lead ED
    followed by A0-BF (an encoded surrogate), which it holds until the third byte; checked here.
    """

    __slots__ = ("_dec", "_parts")

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")("strict")
        self._parts: list[str] = []

    def feed(self, data: Buffer) -> bool:
        try:
            self._parts.append(self._dec.decode(data, False))
        except UnicodeDecodeError:
            return False
        held = self._dec.getstate()[0]
        return not (len(held) >= 2 and held[0] == 0xED and held[1] >= 0xA0)

    def finish(self) -> str | None:
        try:
            self._parts.append(self._dec.decode(b"", True))
        except UnicodeDecodeError:
            return None
        return "".join(self._parts)


class FrameReader:
    __slots__ = (
        "max_size",
        "close_code",
        "data_only",
        "texts",
        "_asgi",
        "close_reason",
        "_expect_mask",
        "_rsv1_allowed",
        "_scratch",
        "_head",
        "_head_len",
        "_done",
        "_in_payload",
        "_fin",
        "_opcode",
        "_key",
        "_phase",
        "_remaining",
        "_ctl",
        "_msg_op",
        "_msg",
        "_utf8",
    )

    def __init__(
        self,
        *,
        max_size: int = 16777216,
        expect_mask: bool = True,
        rsv1_allowed: bool = False,
        scratch: bytearray | None = None,
        asgi: bool = False,
    ) -> None:
        if scratch is not None:
            if type(scratch) is not bytearray:
                raise TypeError("scratch must be a bytearray")
            if len(scratch) < _SCRATCH_MIN:
                raise ValueError(f"scratch must hold at least {_SCRATCH_MIN} bytes")
        self.max_size = max_size
        self._asgi = asgi
        self.data_only = True
        self.texts = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._expect_mask = expect_mask
        self._rsv1_allowed = rsv1_allowed
        self._scratch = scratch
        self._head = b""  # bytes of a frame header not yet complete
        self._head_len = 0  # bytes of _head copied to the scratch start by get_buffer()
        self._done = False
        # current frame, while its payload arrives over several reads
        self._in_payload = False
        self._fin = True
        self._opcode = 0
        self._key: bytes | None = None
        self._phase = 0
        self._remaining = 0
        self._ctl = bytearray()
        # current data message: opcode (| FLAG_COMPRESSED), bytes so far, UTF-8 state for text
        self._msg_op = 0
        self._msg = bytearray()
        self._utf8: _Utf8Checker | None = None

    @property
    def pending(self) -> int:
        return len(self._head) + len(self._msg) + len(self._ctl)

    # -- input ---------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._scratch is None:
            self._scratch = bytearray(_SCRATCH_SIZE)
        h = len(self._head)
        self._scratch[:h] = self._head
        self._head_len = h
        return memoryview(self._scratch)[h:]

    def buffer_updated(self, nbytes: int) -> list[_typing.Any]:
        assert self._scratch is not None, "buffer_updated() without get_buffer()"
        end = self._head_len + nbytes
        self._head = b""
        self._head_len = 0
        self.data_only = True
        out: list[_typing.Any] = []
        if not self._done:
            self._process(memoryview(self._scratch)[:end], out)
        return out

    def feed(self, data: Buffer) -> list[_typing.Any]:
        out: list[_typing.Any] = []
        data_only = True
        view = memoryview(data).cast("B")
        pos, n = 0, len(view)
        while pos < n and not self._done:
            buf = self.get_buffer(n - pos)
            k = min(len(buf), n - pos)
            buf[:k] = view[pos : pos + k]
            out += self.buffer_updated(k)
            data_only = data_only and self.data_only
            pos += k
        self.data_only = data_only
        return out

    # -- the state machine ---------------------------------------------------------------

    def _fail(self, code: int, reason: str) -> None:
        self.close_code = code
        self.close_reason = reason
        self.data_only = False
        self._done = True
        self._msg = bytearray()
        self._ctl = bytearray()

    def _process(self, buf: memoryview, out: list[_typing.Any]) -> None:
        pos, end = 0, len(buf)
        while pos < end and not self._done:
            if self._in_payload:
                take = min(self._remaining, end - pos)
                self._payload_part(buf[pos : pos + take])
                pos += take
                self._remaining -= take
                if self._remaining == 0 and not self._done:
                    self._in_payload = False
                    self._frame_done(out)
                continue
            hlen = self._header(buf, pos, end)
            if hlen == 0:  # header incomplete: keep its bytes for the next read
                self._head = bytes(buf[pos:end])
                return
            if self._done:
                return
            pos += hlen
            n = self._remaining
            if 0 < self._opcode < 8 and self._fin and n <= end - pos:
                # Fast path: a whole single-frame data message is in this read.
                self._remaining = 0
                self._single(buf[pos : pos + n], out)
                pos += n
            elif n == 0:
                self._frame_done(out)
            else:
                self._in_payload = True

    def _header(self, buf: memoryview, pos: int, end: int) -> int:
        """Decode and check one header at buf[pos:]; return its length, or 0 if incomplete."""
        avail = end - pos
        if avail < 2:
            return 0
        b0, b1 = buf[pos], buf[pos + 1]
        masked = b1 & 0x80
        n = b1 & 0x7F
        hlen = 2 + (2 if n == 126 else 8 if n == 127 else 0) + (4 if masked else 0)
        if avail < hlen:
            return 0
        fin = bool(b0 & 0x80)
        opcode = b0 & 0x0F
        if b0 & 0x30 or (b0 & 0x40 and not self._rsv1_allowed):
            self._fail(1002, _R_RSV)
            return hlen
        if opcode > OP_BINARY and opcode not in (OP_CLOSE, OP_PING, OP_PONG):
            self._fail(1002, _R_OPCODE)
            return hlen
        if opcode >= 8:
            if not fin:
                self._fail(1002, _R_CTL_FRAG)
                return hlen
            if b0 & 0x40:
                self._fail(1002, _R_RSV)
                return hlen
        elif opcode == OP_CONT:
            if self._msg_op == 0:
                self._fail(1002, _R_UNEXPECTED_CONT)
                return hlen
            if b0 & 0x40:
                self._fail(1002, _R_RSV)
                return hlen
        elif self._msg_op != 0:
            self._fail(1002, _R_EXPECTED_CONT)
            return hlen
        if bool(masked) != self._expect_mask:
            self._fail(1002, _R_UNMASKED if self._expect_mask else _R_MASKED)
            return hlen
        p = pos + 2
        if n == 126:
            n = int.from_bytes(buf[p : p + 2], "big")
            p += 2
        elif n == 127:
            n = int.from_bytes(buf[p : p + 8], "big")
            p += 8
            if n >> 63:
                self._fail(1002, _R_LENGTH)
                return hlen
        if opcode >= 8:
            if n > 125:
                self._fail(1002, _R_CTL_LONG)
                return hlen
        elif self.max_size > 0 and len(self._msg) + n > self.max_size:
            self._fail(1009, _R_TOO_BIG)
            return hlen
        self._key = bytes(buf[p : p + 4]) if masked else None
        self._phase = 0
        self._fin = fin
        self._opcode = opcode
        self._remaining = n
        if opcode in (OP_TEXT, OP_BINARY):
            self._msg_op = opcode | (FLAG_COMPRESSED if b0 & 0x40 else 0)
            self._utf8 = _Utf8Checker() if self._msg_op == OP_TEXT else None
        return hlen

    def _unmask(self, part: memoryview) -> bytes:
        if self._key is None:
            return bytes(part)
        data = _xor(part, self._key, self._phase)
        self._phase = (self._phase + len(part)) & 3
        return data

    def _payload_part(self, part: memoryview) -> None:
        data = self._unmask(part)
        if self._opcode >= 8:
            self._ctl += data
            return
        self._msg += data
        if self._utf8 is not None and not self._utf8.feed(data):
            self._fail(1007, _R_UTF8)

    def _single(self, part: memoryview, out: list[_typing.Any]) -> None:
        data = self._unmask(part)
        op = self._msg_op
        self._msg_op = 0
        self._utf8 = None
        if op == OP_TEXT:
            try:
                self._emit(out, (OP_TEXT, data.decode("utf-8")))
            except UnicodeDecodeError:
                self._fail(1007, _R_UTF8)
        else:
            self._emit(out, (op, data))

    def _frame_done(self, out: list[_typing.Any]) -> None:
        op = self._opcode
        if op >= 8:
            self._control(op, bytes(self._ctl), out)
            self._ctl = bytearray()
            return
        if not self._fin:
            return
        msg_op, data = self._msg_op, bytes(self._msg)
        utf8 = self._utf8
        self._msg_op = 0
        self._msg = bytearray()
        self._utf8 = None
        if utf8 is not None:
            text = utf8.finish()
            if text is None:
                self._fail(1007, _R_UTF8)
                return
            self._emit(out, (msg_op, text))
        else:
            self._emit(out, (msg_op, data))

    def _emit(self, out: list[_typing.Any], message: tuple[int, _typing.Any]) -> None:
        """Append one message: an ASGI receive event in asgi mode for a plain data message,
        else the (opcode, payload) tuple (and the call no longer returns data only)."""
        op = message[0]
        if op == OP_TEXT:
            self.texts += 1
        if self._asgi and op == OP_TEXT:
            out.append({"type": "websocket.receive", "text": message[1]})
        elif self._asgi and op == OP_BINARY:
            out.append({"type": "websocket.receive", "bytes": message[1]})
        else:
            self.data_only = False
            out.append(message)

    def _control(self, op: int, data: bytes, out: list[_typing.Any]) -> None:
        if op != OP_CLOSE:
            self._emit(out, (op, data))
            return
        if len(data) == 0:
            self._emit(out, (OP_CLOSE, (1005, "")))
            self._done = True
            return
        if len(data) == 1:
            self._fail(1002, _R_CLOSE_LEN)
            return
        code = int.from_bytes(data[:2], "big")
        if not _valid_close_code(code):
            self._fail(1002, _R_CLOSE_CODE)
            return
        try:
            reason = data[2:].decode("utf-8")
        except UnicodeDecodeError:
            self._fail(1007, _R_CLOSE_UTF8)
            return
        self._emit(out, (OP_CLOSE, (code, reason)))
        self._done = True

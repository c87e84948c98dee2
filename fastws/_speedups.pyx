# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, binding=True, initializedcheck=False
"""Compiled RFC 6455 codec: masking, frame decoding with the section 5 rules, UTF-8 checks, encoding.

The contract is fastws/_speedups.pyi; fastws/_speedups_py.py is the pure-Python twin with the
same behaviour (a property test feeds both the same streams). Nothing here knows of sockets,
asyncio or ASGI. A whole read buffer is turned into a list of ready messages in one call, so a
small message costs the Python layer one list item, not one call per header field.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.unicode cimport PyUnicode_Check, PyUnicode_DecodeUTF8
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL

cdef extern from "_mask.h" nogil:
    void fastws_mask(uint8_t* dst, const uint8_t* src, size_t n, const uint8_t* key, unsigned phase)

IMPLEMENTATION = "cython"

cdef enum:
    _OP_CONT = 0x0
    _OP_TEXT = 0x1
    _OP_BINARY = 0x2
    _OP_CLOSE = 0x8
    _OP_PING = 0x9
    _OP_PONG = 0xA
    _FLAG_COMPRESSED = 0x40
    _SCRATCH_SIZE = 262144
    _SCRATCH_MIN = 1024  # a partial header (13 bytes) plus room to make progress

OP_CONT = _OP_CONT
OP_TEXT = _OP_TEXT
OP_BINARY = _OP_BINARY
OP_CLOSE = _OP_CLOSE
OP_PING = _OP_PING
OP_PONG = _OP_PONG
FLAG_COMPRESSED = _FLAG_COMPRESSED

# A single-frame message that spans reads is unmasked straight into its final bytes object when
# its declared length is at most this (1 MiB echo: no extra copy); larger ones grow a buffer as
# their bytes arrive, so a header that lies about its length costs at most 1 MiB up front
# (docs/robustness.md, "lying lengths").
cdef enum:
    _DIRECT_LIMIT = 1048576
    # apply_mask*() release the GIL from this size on; below it the release costs more than the
    # XOR (at several GB/s, 1 MiB takes ~100 us). Not on the reader's path, which keeps the GIL.
    _NOGIL_MIN = 1048576

# Reasons given with close_code; the pure-Python twin uses the same strings.
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


cdef inline bint _valid_close_code(unsigned code) noexcept nogil:
    # RFC 6455 §7.4.1 and the IANA registry: 1004-1006 and 1015 must never be sent on the wire.
    return (1000 <= code <= 1003) or (1007 <= code <= 1014) or (3000 <= code <= 4999)


# -- buffers ------------------------------------------------------------------------------------

cdef inline int _get_read_buffer(object obj, Py_buffer* view, const uint8_t** data, Py_ssize_t* size,
                                 bint allow_str=False) except -1:
    """Borrow obj's bytes; return 1 when a Py_buffer was taken and the caller must
    PyBuffer_Release(view), 0 for bytes and str, which need none. The pointer lives as long as obj."""
    cdef Py_ssize_t n
    if PyBytes_CheckExact(obj):
        data[0] = <const uint8_t*>PyBytes_AS_STRING(obj)
        size[0] = PyBytes_GET_SIZE(obj)
        return 0
    elif allow_str and PyUnicode_Check(obj):
        # The UTF-8 form is cached inside the str object, so this is free for ASCII strings.
        data[0] = <const uint8_t*>PyUnicode_AsUTF8AndSize(obj, &n)
        size[0] = n
        return 0
    else:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
        data[0] = <const uint8_t*>view.buf
        size[0] = view.len
        return 1


cdef inline int _get_key(object key, uint8_t* out) except -1:
    cdef int held
    cdef Py_buffer view
    cdef const uint8_t* p
    cdef Py_ssize_t n
    held = _get_read_buffer(key, &view, &p, &n)
    try:
        if n != 4:
            raise ValueError("mask key must be 4 bytes")
        memcpy(out, p, 4)
    finally:
        if held:
            PyBuffer_Release(&view)
    return 0


def apply_mask(data, key):
    cdef int held
    cdef uint8_t k[4]
    cdef Py_buffer view
    cdef const uint8_t* src
    cdef Py_ssize_t n
    cdef bytes out
    cdef uint8_t* dst
    _get_key(key, k)
    held = _get_read_buffer(data, &view, &src, &n)
    try:
        out = PyBytes_FromStringAndSize(NULL, n)
        dst = <uint8_t*>PyBytes_AS_STRING(out)
        # One pass: read the source, write the XOR-ed bytes into the new object.
        if n >= _NOGIL_MIN:
            with nogil:
                fastws_mask(dst, src, <size_t>n, k, 0)
        else:
            fastws_mask(dst, src, <size_t>n, k, 0)
    finally:
        if held:
            PyBuffer_Release(&view)
    return out


def apply_mask_inplace(buf, key, start=0, length=-1):
    cdef uint8_t k[4]
    cdef Py_buffer view
    cdef uint8_t* p
    cdef Py_ssize_t s, n
    _get_key(key, k)
    try:
        s = start
        n = length
    except OverflowError:
        raise ValueError("range outside the buffer") from None
    if PyUnicode_Check(buf) or PyBytes_CheckExact(buf):
        raise TypeError("buffer is read-only")
    PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE)
    try:
        if n == -1:
            n = view.len - s
        # Written so that nothing can overflow: s and n are each checked against the length.
        if s < 0 or n < 0 or s > view.len or n > view.len - s:
            raise ValueError("range outside the buffer")
        p = <uint8_t*>view.buf + s
        if n >= _NOGIL_MIN:
            with nogil:
                fastws_mask(p, p, <size_t>n, k, 0)
        else:
            fastws_mask(p, p, <size_t>n, k, 0)
    finally:
        PyBuffer_Release(&view)


# -- encoding -----------------------------------------------------------------------------------

cdef inline Py_ssize_t _write_header(uint8_t* h, uint8_t b0, Py_ssize_t n, bint masked) noexcept nogil:
    cdef uint8_t mbit = 0x80 if masked else 0
    cdef uint64_t n64
    cdef int i
    h[0] = b0
    if n < 126:
        h[1] = mbit | <uint8_t>n
        return 2
    if n <= 0xFFFF:
        h[1] = mbit | 126
        h[2] = <uint8_t>(n >> 8)
        h[3] = <uint8_t>n
        return 4
    h[1] = mbit | 127
    n64 = <uint64_t>n
    for i in range(8):
        h[2 + i] = <uint8_t>(n64 >> (56 - 8 * i))
    return 10


def encode_frame(Py_ssize_t opcode, payload, *, bint fin=True, bint rsv1=False, mask=None):
    return _encode(opcode, payload, fin, rsv1, mask)


cdef bytes data_frame(int opcode, object payload):
    """encode_frame(opcode, payload) for compiled callers (declared in _speedups.pxd): a
    final, unmasked frame, without a Python call per frame."""
    return _encode(opcode, payload, True, False, None)


cdef bytes _encode(Py_ssize_t opcode, object payload, bint fin, bint rsv1, object mask):
    cdef int held
    cdef Py_buffer view
    cdef const uint8_t* src
    cdef Py_ssize_t n, hlen
    cdef uint8_t k[4]
    cdef uint8_t head[14]
    cdef uint8_t b0
    cdef bytes out
    cdef uint8_t* dst
    if opcode < 0 or opcode > 15:
        raise ValueError("opcode must be in 0-15")
    if mask is not None:
        _get_key(mask, k)
    held = _get_read_buffer(payload, &view, &src, &n, True)
    try:
        if opcode >= 8 and (n > 125 or not fin):
            raise ValueError("control frames must be unfragmented and at most 125 bytes")
        b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | <uint8_t>opcode
        hlen = _write_header(head, b0, n, mask is not None)
        if mask is not None:
            memcpy(head + hlen, k, 4)
            hlen += 4
        # One allocation for header and payload.
        out = PyBytes_FromStringAndSize(NULL, hlen + n)
        dst = <uint8_t*>PyBytes_AS_STRING(out)
        memcpy(dst, head, hlen)
        if mask is not None:
            fastws_mask(dst + hlen, src, <size_t>n, k, 0)
        elif n:
            memcpy(dst + hlen, src, n)
    finally:
        if held:
            PyBuffer_Release(&view)
    return out


def encode_frame_header(Py_ssize_t opcode, Py_ssize_t length, *, bint fin=True, bint rsv1=False):
    cdef uint8_t head[10]
    cdef Py_ssize_t hlen
    if opcode < 0 or opcode > 15:
        raise ValueError("opcode must be in 0-15")
    if length < 0:
        raise ValueError("length must not be negative")
    if opcode >= 8 and (length > 125 or not fin):
        raise ValueError("control frames must be unfragmented and at most 125 bytes")
    hlen = _write_header(head, (0x80 if fin else 0) | (0x40 if rsv1 else 0) | <uint8_t>opcode,
                         length, False)
    return PyBytes_FromStringAndSize(<char*>head, hlen)


def encode_close(int code, str reason="", *, mask=None):
    cdef bytes raw
    if code == 1005:
        return encode_frame(_OP_CLOSE, b"", mask=mask)
    raw = reason.encode("utf-8")
    if len(raw) > 123:
        # Cut on a character boundary: drop continuation bytes (10xxxxxx) left dangling.
        raw = raw[:123].decode("utf-8", "ignore").encode("utf-8")
    return encode_frame(_OP_CLOSE, code.to_bytes(2, "big") + raw, mask=mask)


# -- decoding -----------------------------------------------------------------------------------

cdef class FrameReader:
    # Fields and C methods: declared in _speedups.pxd.

    def __cinit__(self):
        self._msg = NULL

    def __init__(self, *, Py_ssize_t max_size=16777216, bint expect_mask=True,
                 bint rsv1_allowed=False, scratch=None, bint asgi=False):
        self.max_size = max_size
        self._asgi = asgi
        self.data_only = True
        self.close_code = None
        self.close_reason = ""
        self._expect_mask = expect_mask
        self._rsv1_allowed = rsv1_allowed
        if scratch is not None:
            if type(scratch) is not bytearray:
                raise TypeError("scratch must be a bytearray")
            if len(scratch) < _SCRATCH_MIN:
                raise ValueError(f"scratch must hold at least {_SCRATCH_MIN} bytes")
        self._scratch = scratch
        self._scratch_view = None
        self._u_lo = 0x80
        self._u_hi = 0xBF

    def __dealloc__(self):
        PyMem_Free(self._msg)

    @property
    def pending(self):
        return self._head_n + self._msg_len + self._ctl_n + (
            (len(self._direct) - <Py_ssize_t>self._remaining) if self._direct is not None else 0)

    # -- input ----------------------------------------------------------------------------------

    def get_buffer(self, Py_ssize_t sizehint):
        cdef uint8_t* base
        if self._scratch is None:
            self._scratch = bytearray(_SCRATCH_SIZE)
        if self._scratch_view is None:
            self._scratch_view = memoryview(self._scratch)
        self._head_copied = self._head_n
        if self._head_n == 0:
            return self._scratch_view
        base = <uint8_t*>PyByteArray_AS_STRING(self._scratch)
        memcpy(base, self._head, self._head_n)
        return self._scratch_view[self._head_n:]

    cpdef list buffer_updated(self, Py_ssize_t nbytes):
        cdef list out = []
        cdef Py_ssize_t end = self._head_copied + nbytes
        if self._scratch is None:
            raise RuntimeError("buffer_updated() without get_buffer()")
        if nbytes < 0 or end > PyByteArray_GET_SIZE(self._scratch):
            raise ValueError("nbytes outside the buffer")
        self._head_n = 0
        self._head_copied = 0
        self.data_only = True
        if not self._done:
            # The scratch bytearray is owned by this reader or its loop; it is not resized while
            # we hold its pointer (get_buffer's memoryview pins it anyway).
            self._process(<uint8_t*>PyByteArray_AS_STRING(self._scratch), end, out)
        return out

    def feed(self, data):
        cdef int held
        cdef Py_buffer view
        cdef const uint8_t* src
        cdef Py_ssize_t n, pos = 0, room, k
        cdef list out = []
        cdef uint8_t* base
        held = _get_read_buffer(data, &view, &src, &n)
        self.data_only = True
        try:
            if self._scratch is None:
                self._scratch = bytearray(_SCRATCH_SIZE)
            room = PyByteArray_GET_SIZE(self._scratch)
            while pos < n and not self._done:
                base = <uint8_t*>PyByteArray_AS_STRING(self._scratch)
                memcpy(base, self._head, self._head_n)
                k = min(room - self._head_n, n - pos)
                memcpy(base + self._head_n, src + pos, k)
                pos += k
                k += self._head_n
                self._head_n = 0
                self._process(base, k, out)
        finally:
            if held:
                PyBuffer_Release(&view)
        return out

    # -- the state machine ------------------------------------------------------------------

    cdef int _fail(self, int code, str reason) except -1:
        self.close_code = code
        self.close_reason = reason
        self.data_only = False
        self._done = True
        self._msg_len = 0
        self._ctl_n = 0
        self._direct = None
        return 0

    cdef int _process(self, uint8_t* buf, Py_ssize_t end, list out) except -1:
        # buf: the scratch bytearray's storage, valid for this call (see buffer_updated/feed).
        cdef Py_ssize_t pos = 0, hlen, take
        cdef uint64_t n
        while pos < end and not self._done:
            if self._in_payload:
                take = <Py_ssize_t>min(self._remaining, <uint64_t>(end - pos))
                self._payload_part(buf + pos, take)
                pos += take
                self._remaining -= take
                if self._remaining == 0 and not self._done:
                    self._in_payload = False
                    self._frame_done(out)
                continue
            hlen = self._header(buf + pos, end - pos)
            if hlen == 0:  # header incomplete: keep its bytes for the next read
                memcpy(self._head, buf + pos, end - pos)
                self._head_n = end - pos
                return 0
            if self._done:
                return 0
            pos += hlen
            n = self._remaining
            if 0 < self._opcode < 8 and self._fin and n <= <uint64_t>(end - pos):
                # Fast path: a whole single-frame data message is in this read.
                self._remaining = 0
                self._single(buf + pos, <Py_ssize_t>n, out)
                pos += <Py_ssize_t>n
            elif n == 0:
                self._frame_done(out)
            else:
                self._in_payload = True
                if 0 < self._opcode < 8 and self._fin and n <= _DIRECT_LIMIT:
                    self._direct = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>n)
        return 0

    cdef Py_ssize_t _header(self, uint8_t* p, Py_ssize_t avail) except -1:
        """Decode and check one header at p; return its length, or 0 if incomplete."""
        cdef uint8_t b0, b1
        cdef Py_ssize_t hlen, i
        cdef bint masked, fin
        cdef int opcode
        cdef uint64_t n
        if avail < 2:
            return 0
        b0 = p[0]
        b1 = p[1]
        masked = (b1 & 0x80) != 0
        n = b1 & 0x7F
        hlen = 2 + (2 if n == 126 else (8 if n == 127 else 0)) + (4 if masked else 0)
        if avail < hlen:
            return 0
        fin = (b0 & 0x80) != 0
        opcode = b0 & 0x0F
        if (b0 & 0x30) or ((b0 & 0x40) and not self._rsv1_allowed):
            self._fail(1002, _R_RSV)
            return hlen
        if opcode > _OP_BINARY and opcode != _OP_CLOSE and opcode != _OP_PING and opcode != _OP_PONG:
            self._fail(1002, _R_OPCODE)
            return hlen
        if opcode >= 8:
            if not fin:
                self._fail(1002, _R_CTL_FRAG)
                return hlen
            if b0 & 0x40:
                self._fail(1002, _R_RSV)
                return hlen
        elif opcode == _OP_CONT:
            if self._msg_op == 0:
                self._fail(1002, _R_UNEXPECTED_CONT)
                return hlen
            if b0 & 0x40:
                self._fail(1002, _R_RSV)
                return hlen
        elif self._msg_op != 0:
            self._fail(1002, _R_EXPECTED_CONT)
            return hlen
        if masked != self._expect_mask:
            self._fail(1002, _R_UNMASKED if self._expect_mask else _R_MASKED)
            return hlen
        i = 2
        if n == 126:
            n = (<uint64_t>p[2] << 8) | p[3]
            i = 4
        elif n == 127:
            n = 0
            for i in range(2, 10):
                n = (n << 8) | p[i]
            i = 10
            if n >> 63:
                self._fail(1002, _R_LENGTH)
                return hlen
        if opcode >= 8:
            if n > 125:
                self._fail(1002, _R_CTL_LONG)
                return hlen
        elif self.max_size > 0 and n + <uint64_t>self._msg_len > <uint64_t>self.max_size:
            self._fail(1009, _R_TOO_BIG)
            return hlen
        self._has_key = masked
        if masked:
            memcpy(self._key, p + i, 4)
        self._phase = 0
        self._fin = fin
        self._opcode = opcode
        self._remaining = n
        if opcode == _OP_TEXT or opcode == _OP_BINARY:
            self._msg_op = opcode | (_FLAG_COMPRESSED if (b0 & 0x40) else 0)
            self._utf8_on = self._msg_op == _OP_TEXT
            self._u_need = 0
            self._u_lo = 0x80
            self._u_hi = 0xBF
        return hlen

    cdef void _unmask_into(self, uint8_t* dst, const uint8_t* src, Py_ssize_t n) noexcept nogil:
        if self._has_key:
            fastws_mask(dst, src, <size_t>n, self._key, self._phase)
            self._phase = (self._phase + <unsigned>n) & 3
        elif dst != src:
            memcpy(dst, src, n)

    cdef int _msg_reserve(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self._msg_len + extra, cap
        cdef uint8_t* p
        if need <= self._msg_cap:
            return 0
        cap = max(need, self._msg_cap * 2, 4096)
        p = <uint8_t*>PyMem_Realloc(self._msg, cap)
        if p == NULL:
            raise MemoryError()
        self._msg = p
        self._msg_cap = cap
        return 0

    cdef int _payload_part(self, uint8_t* src, Py_ssize_t n) except -1:
        cdef uint8_t* dst
        cdef Py_ssize_t filled
        if self._opcode >= 8:
            self._unmask_into(self._ctl + self._ctl_n, src, n)
            self._ctl_n += n
            return 0
        if self._direct is not None:
            filled = len(self._direct) - <Py_ssize_t>self._remaining
            dst = <uint8_t*>PyBytes_AS_STRING(self._direct) + filled
        else:
            self._msg_reserve(n)
            dst = self._msg + self._msg_len
            self._msg_len += n
        self._unmask_into(dst, src, n)
        if self._utf8_on and not self._utf8_feed(dst, n):
            self._fail(1007, _R_UTF8)
        return 0

    cdef bint _utf8_feed(self, const uint8_t* p, Py_ssize_t n) noexcept nogil:
        """Advance the UTF-8 state over p[:n]; False as soon as no continuation can make it valid."""
        cdef uint8_t need = self._u_need, lo = self._u_lo, hi = self._u_hi, c
        cdef Py_ssize_t i = 0
        cdef uint64_t w
        while i < n:
            if need == 0:
                while i + 8 <= n:  # ASCII runs, eight bytes per step
                    memcpy(&w, p + i, 8)
                    if w & 0x8080808080808080ULL:
                        break
                    i += 8
                if i >= n:
                    break
                c = p[i]
                i += 1
                if c < 0x80:
                    continue
                elif c < 0xC2:
                    return False
                elif c < 0xE0:
                    need = 1
                elif c == 0xE0:
                    need = 2
                    lo = 0xA0
                elif c == 0xED:
                    need = 2
                    hi = 0x9F
                elif c < 0xF0:
                    need = 2
                elif c == 0xF0:
                    need = 3
                    lo = 0x90
                elif c < 0xF4:
                    need = 3
                elif c == 0xF4:
                    need = 3
                    hi = 0x8F
                else:
                    return False
            else:
                c = p[i]
                i += 1
                if c < lo or c > hi:
                    return False
                need -= 1
                lo = 0x80
                hi = 0xBF
        self._u_need = need
        self._u_lo = lo
        self._u_hi = hi
        return True

    cdef int _emit(self, int op, object payload, list out) except -1:
        """Append one message: an ASGI receive event in asgi mode for a plain data message,
        else an (opcode, payload) tuple (and the call no longer returns data only)."""
        if op == _OP_TEXT:
            self.texts += 1
        if self._asgi and op == _OP_TEXT:
            out.append({"type": "websocket.receive", "text": payload})
        elif self._asgi and op == _OP_BINARY:
            out.append({"type": "websocket.receive", "bytes": payload})
        else:
            self.data_only = False
            out.append((op, payload))
        return 0

    cdef int _single(self, uint8_t* src, Py_ssize_t n, list out) except -1:
        cdef int op = self._msg_op
        cdef bytes data
        self._msg_op = 0
        self._utf8_on = False
        if op == _OP_TEXT:
            # Unmask in place: src is our scratch buffer and these bytes are consumed now.
            self._unmask_into(src, src, n)
            try:
                self._emit(_OP_TEXT, PyUnicode_DecodeUTF8(<char*>src, n, "strict"), out)
            except UnicodeDecodeError:
                self._fail(1007, _R_UTF8)
            return 0
        # One pass: unmask while copying into the message object handed to the app.
        data = PyBytes_FromStringAndSize(NULL, n)
        self._unmask_into(<uint8_t*>PyBytes_AS_STRING(data), src, n)
        self._emit(op, data, out)
        return 0

    cdef int _frame_done(self, list out) except -1:
        cdef int op = self._opcode, msg_op
        cdef object payload
        if op >= 8:
            payload = PyBytes_FromStringAndSize(<char*>self._ctl, self._ctl_n)
            self._ctl_n = 0
            self._control(op, payload, out)
            return 0
        if not self._fin:
            return 0
        msg_op = self._msg_op
        self._msg_op = 0
        if self._direct is not None:
            payload = self._direct
            self._direct = None
            if msg_op == _OP_TEXT:
                if self._u_need:
                    self._utf8_on = False
                    self._fail(1007, _R_UTF8)
                    return 0
                payload = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(payload), len(payload), "strict")
        elif msg_op == _OP_TEXT:
            if self._u_need:
                self._utf8_on = False
                self._fail(1007, _R_UTF8)
                return 0
            payload = PyUnicode_DecodeUTF8(<char*>self._msg, self._msg_len, "strict")
        else:
            payload = PyBytes_FromStringAndSize(<char*>self._msg, self._msg_len)
        self._utf8_on = False
        self._msg_len = 0
        if self._msg_cap > 1048576:
            # Do not keep a big reassembly buffer around on an idle connection.
            PyMem_Free(self._msg)
            self._msg = NULL
            self._msg_cap = 0
        self._emit(msg_op, payload, out)
        return 0

    cdef int _control(self, int op, bytes data, list out) except -1:
        cdef Py_ssize_t n = len(data)
        cdef unsigned code
        cdef const uint8_t* p
        if op != _OP_CLOSE:
            self._emit(op, data, out)
            return 0
        if n == 0:
            self._emit(_OP_CLOSE, (1005, ""), out)
            self._done = True
            return 0
        if n == 1:
            self._fail(1002, _R_CLOSE_LEN)
            return 0
        p = <const uint8_t*>PyBytes_AS_STRING(data)
        code = (<unsigned>p[0] << 8) | p[1]
        if not _valid_close_code(code):
            self._fail(1002, _R_CLOSE_CODE)
            return 0
        try:
            reason = PyUnicode_DecodeUTF8(<char*>p + 2, n - 2, "strict")
        except UnicodeDecodeError:
            self._fail(1007, _R_CLOSE_UTF8)
            return 0
        self._emit(_OP_CLOSE, (code, reason), out)
        self._done = True
        return 0

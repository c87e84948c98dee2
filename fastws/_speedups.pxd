# What other compiled modules (fastws/ws/protocol.py, built by setup.py) call in C, without
# Python calls or lookups: FrameReader's fields and methods and data_frame(). The
# Python-facing contract is _speedups.pyi.

cimport cython
from libc.stdint cimport uint8_t, uint64_t


cdef bytes data_frame(int opcode, object payload)


@cython.final
cdef class FrameReader:
    cdef public Py_ssize_t max_size
    cdef public object close_code
    cdef public str close_reason
    cdef readonly bint data_only     # the last call returned only ASGI receive events
    cdef public long long texts      # text messages returned so far (compressed ones not: the caller inflates)

    cdef bint _asgi

    cdef bint _expect_mask
    cdef bint _rsv1_allowed
    cdef bint _done
    cdef object _scratch            # bytearray; shared by the readers of one loop, or our own
    cdef object _scratch_view       # memoryview of all of _scratch, reused when no header is held
    # Bytes of a frame header not yet complete (at most 13).
    cdef uint8_t _head[16]
    cdef Py_ssize_t _head_n
    cdef Py_ssize_t _head_copied    # _head bytes copied to the scratch start by get_buffer()
    # Current frame, while its payload arrives over several reads.
    cdef bint _in_payload
    cdef bint _fin
    cdef int _opcode
    cdef bint _has_key
    cdef uint8_t _key[4]
    cdef unsigned _phase
    cdef uint64_t _remaining
    cdef uint8_t _ctl[128]
    cdef Py_ssize_t _ctl_n
    # Current data message: opcode (| _FLAG_COMPRESSED); bytes so far in a growable C buffer, or
    # for a single-frame message spanning reads, in its final bytes object (_direct).
    cdef int _msg_op
    cdef uint8_t* _msg
    cdef Py_ssize_t _msg_len
    cdef Py_ssize_t _msg_cap
    cdef object _direct
    # Incremental UTF-8 state for text: continuation bytes still needed, and the allowed range
    # of the next one (RFC 3629 §4 table).
    cdef bint _utf8_on
    cdef uint8_t _u_need
    cdef uint8_t _u_lo
    cdef uint8_t _u_hi

    cpdef list buffer_updated(self, Py_ssize_t nbytes)
    cdef int _fail(self, int code, str reason) except -1
    cdef int _process(self, uint8_t* buf, Py_ssize_t end, list out) except -1
    cdef Py_ssize_t _header(self, uint8_t* p, Py_ssize_t avail) except -1
    cdef void _unmask_into(self, uint8_t* dst, const uint8_t* src, Py_ssize_t n) noexcept nogil
    cdef int _msg_reserve(self, Py_ssize_t extra) except -1
    cdef int _payload_part(self, uint8_t* src, Py_ssize_t n) except -1
    cdef bint _utf8_feed(self, const uint8_t* p, Py_ssize_t n) noexcept nogil
    cdef int _emit(self, int op, object payload, list out) except -1
    cdef int _single(self, uint8_t* src, Py_ssize_t n, list out) except -1
    cdef int _frame_done(self, list out) except -1
    cdef int _control(self, int op, bytes data, list out) except -1

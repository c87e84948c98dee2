# Compiled build of session.py (Cython pure-Python mode): the session's fields as C values, so
# that fastws/ws/protocol.pxd's connection class, a subclass, reads them without lookups.

cdef int _TEXT, _PING, _PONG


cdef class Session:
    cdef public int state
    cdef public bint close_sent
    cdef public object close_code
    cdef public object pending_fail
    cdef public int fail_code
    cdef public str fail_reason
    cdef public object pong_pending
    cdef public object deflate
    cdef public Py_ssize_t max_size
    cdef public Py_ssize_t deflate_min_size
    cdef public double ping_interval
    cdef public double ping_timeout
    cdef public double close_timeout
    cdef public double deadline
    cdef public double ping_at
    cdef public double pong_by
    cdef public double ping_sent

    cpdef opened(self, double now)
    cpdef ping(self, bytes payload, bint write_paused)
    cpdef double pong(self, double now=*)
    cpdef writable(self)
    cpdef close(self, int code, str reason)
    cpdef closed(self, int code, str reason)
    cpdef fail(self, int code, str reason)
    cpdef inflate(self, int opcode, bytes payload)
    cdef _failed(self, int code, str reason)
    cpdef bint compresses(self, Py_ssize_t size) except -1
    cpdef bytes compressed_frame(self, int opcode, object data)
    cpdef keepalive(self, double now, double clock=*)
    cpdef cancel_keepalive(self)
    cdef _set_deadline(self)

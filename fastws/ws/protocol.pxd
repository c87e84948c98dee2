# Compiled build of protocol.py (Cython pure-Python mode): the connection becomes a C struct
# with typed fields, and the helpers below become C methods. Everything the transport, the
# loop (call_later) or the app calls stays a Python method in protocol.py.

from fastws._speedups cimport FrameReader as CompiledReader, data_frame, send_bytes

# Module constants as C values: the per-message comparisons then stay in C.
cdef int _TEXT, _BINARY, _CLOSE, _PING, _PONG
cdef Py_ssize_t _WRITEV_MIN, _EARLY_MAX, _DIRECT_AFTER, _SAMPLE_EVERY
cdef double _FAIL_GRACE_S
cdef int CONNECTING, RESPONDING, OPEN, CLOSING, CLOSED


cdef class Wakeups:
    cdef list pending
    cdef public bint alone
    cdef int countdown
    cdef object run_pending

    cpdef wake(self, object future, object value, object loop)


cdef _run(object callback, object context, object future, object loop)


cdef class _WebSocket:
    cdef public object config
    cdef public object app
    cdef public object loop
    cdef public object server_state
    cdef public object transport
    cdef public object flow
    cdef public object offer
    cdef public object agreement
    cdef public object deflate
    cdef public CompiledReader reader  # a compiled build goes with the compiled codec
    cdef public object get_buffer
    cdef public Py_ssize_t max_queue
    cdef public object queue
    cdef public object waiter
    cdef public int state
    cdef public bint connect_sent
    cdef public object disconnect
    cdef public bint close_sent
    cdef public double deadline
    cdef public double ping_at
    cdef public double pong_by
    cdef public object close_handle
    cdef public object task
    cdef public bint stats
    cdef public double opened_at
    cdef public object close_code
    cdef public long long msgs_in
    cdef public long long msgs_out
    cdef public long long bytes_in
    cdef public long long bytes_out
    cdef public object scope
    cdef public object _response_head
    cdef public object pending_fail
    cdef public object fail_handle
    cdef public object early
    cdef public object pong_pending
    cdef public int fd
    cdef int writes_before_direct
    cdef object is_closing
    cdef object buffered
    cdef Wakeups wakeups
    cdef public object topics  # pub/sub: the set of topics it is subscribed to, or None
    cdef public Py_ssize_t max_write_buffer
    cdef bint send_never_waits

    cdef _dispatch(self, list messages)
    cdef bint _inflate(self, int opcode, object payload, bint closing) except -1
    cdef _fail(self, object code, object reason)
    cdef _close_now(self, object code, object reason)
    cdef _disconnected(self, object code, object reason)
    cdef _wake(self)
    cdef _pop(self)
    cdef _next_event(self)
    cdef bint _send_now(self, dict message) except -1
    cdef _write(self, bytes data)
    cdef _write_frame(self, bytes frame)
    cdef int _deliver(self, bytes frame) except -2
    cdef _overflow(self, Py_ssize_t size)
    cdef bint _topic_message(self, object message, bint strict) except -1
    cdef _app_finished(self)
    cdef _close_finished(self, object code)
    cdef _handshake_message(self, object message)
    cdef _response_body(self, object message)
    cdef _http_error(self, int status, bytes body)
    cdef _send_close(self, object code, object reason)
    cdef _set_deadline(self)
    cdef _ping_timeout(self)
    cdef _cancel_ping(self)
    cdef _cancel_timers(self)
    cdef _log_close(self)
    cdef _log_access(self, int status)


cdef class _Receive:
    cdef _WebSocket ws
    cdef object steps


cdef class _Sent:
    pass

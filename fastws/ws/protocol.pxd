# Compiled build of protocol.py (Cython pure-Python mode): the connection becomes a C struct
# with typed fields (the session's, from session.pxd, first), and the helpers below become C
# methods. Everything the transport, the loop (call_later) or the app calls stays a Python
# method in protocol.py.

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from fastws._speedups cimport FrameReader as CompiledReader, data_frame
from fastws.ws.session cimport Session

# Module constants as C values: the per-message comparisons then stay in C.
cdef int _TEXT, _BINARY, _CLOSE, _PING, _PONG
cdef Py_ssize_t _WRITEV_MIN, _CORK_MAX, _DIRECT_PARTS_MAX, _EARLY_MAX, _DIRECT_AFTER, _SAMPLE_EVERY
cdef double _FAIL_GRACE_S
cdef int CONNECTING, RESPONDING, OPEN, CLOSING, CLOSED


cdef extern from *:
    """
    #include <sys/socket.h>
    #ifndef MSG_NOSIGNAL
    #define MSG_NOSIGNAL 0  /* not everywhere (CPython ignores SIGPIPE anyway) */
    #endif
    """
    ssize_t c_send "send" (int fd, const void* buf, size_t n, int flags) nogil
    int MSG_DONTWAIT
    int MSG_NOSIGNAL


cdef inline Py_ssize_t send_bytes(int fd, bytes data) noexcept:
    # The writer's own socket send (_WebSocket._write): one non-blocking send() of ``data`` on
    # ``fd``; the bytes the kernel took, or -1 (errno says why; the caller hands what is left
    # to its transport, which meets the same condition and deals with it).
    return c_send(fd, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data),
                  MSG_DONTWAIT | MSG_NOSIGNAL)


cdef extern from *:
    """
    #include <string.h>
    #include <sys/uio.h>
    #define FASTWS_IOV_MAX 64
    /* _WebSocket._sendmsg(): one non-blocking sendmsg() of a list of bytes on fd, uncopied.
       Returns the bytes the kernel did not take (0: all of them), or -1 when it took none
       (or the list is longer than FASTWS_IOV_MAX: the caller then joins and writes it). */
    static inline Py_ssize_t fastws_send_frames(int fd, PyObject* frames) {
        struct iovec iov[FASTWS_IOV_MAX];
        struct msghdr msg;
        Py_ssize_t n = PyList_GET_SIZE(frames), total = 0, i;
        ssize_t sent;
        if (n > FASTWS_IOV_MAX) return -1;
        for (i = 0; i < n; i++) {
            PyObject* frame = PyList_GET_ITEM(frames, i);
            iov[i].iov_base = PyBytes_AS_STRING(frame);
            iov[i].iov_len = (size_t)PyBytes_GET_SIZE(frame);
            total += PyBytes_GET_SIZE(frame);
        }
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov;
        msg.msg_iovlen = (size_t)n;
        sent = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        return sent < 0 ? -1 : total - sent;
    }
    """
    Py_ssize_t send_frames "fastws_send_frames" (int fd, list frames)
    # A list that holds bytes only cannot be part of a cycle: off the collector's books.
    void untrack "PyObject_GC_UnTrack" (object obj)


cdef class Wakeups:
    cdef list pending
    cdef public bint alone
    cdef int countdown
    cdef object run_pending

    cpdef wake(self, object future, object value, object loop)


cdef _run(object callback, object context, object future, object loop)
cpdef object app_task(object loop, object coro, str name)


cdef class _WebSocket(Session):
    cdef public object app
    cdef public object loop
    cdef public object server_state
    cdef public object transport
    cdef public object flow
    cdef public object offer
    cdef public object agreement
    cdef public CompiledReader reader  # a compiled build goes with the compiled codec
    cdef public object get_buffer
    cdef public Py_ssize_t max_queue
    cdef public object queue
    cdef public object waiter
    cdef public bint connect_sent
    cdef public object disconnect
    cdef public object close_handle
    cdef public object task
    cdef public bint stats
    cdef public double opened_at
    cdef public long long msgs_in
    cdef public long long msgs_out
    cdef public long long texts_out
    cdef public long long inflated_texts
    cdef public long long bytes_in
    cdef public long long bytes_out
    cdef public object scope
    cdef public object _response_head
    cdef public object fail_handle
    cdef public object early
    cdef public int fd
    cdef int writes_before_direct
    cdef object is_closing
    cdef object buffered
    cdef bint tx_held
    cdef Wakeups wakeups
    cdef public object topics  # pub/sub: the set of topics it is subscribed to, or None
    cdef public object cork
    cdef Py_ssize_t corked
    cdef public Py_ssize_t max_write_buffer
    cdef bint send_never_waits

    cdef _dispatch(self, list messages)
    cdef _fail(self, object code, object reason)
    cdef _close_now(self, object code, object reason)
    cdef _closed(self, object frame, object code, object reason)
    cdef _disconnected(self, object code, object reason)
    cdef _wake(self)
    cdef _pop(self)
    cdef _next_event(self)
    cdef bint _send_now(self, dict message) except -1
    cdef Py_ssize_t _buffered(self) except -1
    cdef _write(self, bytes data)
    cdef bint _direct(self) except -1
    cdef _write_parts(self, bytes header, object data)
    cdef _sendmsg(self, list frames)
    cdef _write_frame(self, bytes frame)
    @cython.final
    cdef inline void _count_out(self, bytes frame) noexcept
    cdef _hold(self, bytes frame)
    cdef bint _cork(self, bytes frame) except -1
    cdef int _deliver(self, bytes frame) except -2
    cdef _uncork(self)
    cdef _overflow(self, Py_ssize_t size)
    cdef bint _topic_message(self, object message, bint strict) except -1
    cdef _app_finished(self)
    cdef _close_finished(self, object code)
    cdef _handshake_message(self, object message)
    cdef _response_body(self, object message)
    cdef _http_error(self, int status, bytes body)
    cdef _send_close(self, object code, object reason)
    cdef _cancel_timers(self)
    cdef tuple _close_side(self)
    cdef _log_close(self)
    cdef _log_access(self, int status)


cdef class _Receive:
    cdef _WebSocket ws
    cdef object steps


cdef class _Sent:
    pass

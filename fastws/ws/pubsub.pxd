# Compiled build of pubsub.py (Cython pure-Python mode): the fan-out loop types each subscriber
# as the connection's C struct, so reading its fields and calling _deliver() stay in C.

cimport cython

from fastws._speedups cimport data_frame
from fastws.ws.protocol cimport _WebSocket

cdef int _TEXT, _BINARY


cdef class Hub:
    cdef public dict topics
    cdef public object bridge
    cdef public object loop
    cdef public long long published
    cdef public long long delivered
    cdef public list corked
    cdef object run_flush

    cdef _remove(self, object ws, object topic)
    cpdef hold(self, object ws)
    cdef _flush_soon(self)
    @cython.locals(ws=_WebSocket)
    cpdef flush(self)
    @cython.locals(ws=_WebSocket, n=Py_ssize_t, done=int, over=list, shared=dict, corked=list,
                   first=bint)
    cdef Py_ssize_t _fan_out(self, dict subscribers, bytes frame, int opcode, object data,
                             object sender) except -1


cdef bytes _deflated(_WebSocket ws, int opcode, object data, bytes frame, dict shared)

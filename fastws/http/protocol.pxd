# Compiled build of protocol.py (Cython pure-Python mode): the connection and each request's
# cycle become C structs with typed fields, and the helpers below become C methods. Everything
# the transport, httptools' parser, the loop (call_later, tasks) or the app calls stays a
# Python method in protocol.py.

cimport cython

cdef class RequestResponseCycle


cdef class _Http:
    cdef public object config
    cdef public object app
    cdef public object loop
    cdef public object server_state
    cdef public object app_state
    cdef public object connections
    cdef public object tasks
    cdef public str root_path
    cdef public object limit_concurrency
    cdef public Py_ssize_t limit_request_line
    cdef public Py_ssize_t limit_request_fields
    cdef public Py_ssize_t limit_request_field_size
    cdef public object timeout_handshake
    cdef public double timeout_keep_alive
    cdef public object asgi_version
    cdef public dict extensions
    cdef public bint access_log
    cdef public bint trace
    cdef public object parser
    cdef public object scratch_view
    cdef public object transport
    cdef public object flow
    cdef public object server
    cdef public object client
    cdef public str scheme
    cdef public object pipeline
    cdef public double deadline
    cdef public Py_ssize_t head_bytes
    cdef public Py_ssize_t max_head_bytes
    cdef public bytes url
    cdef public list headers
    cdef public Py_ssize_t header_bytes
    cdef public dict scope
    cdef public dict scope_template
    cdef public bint expect_100_continue
    cdef public list connection_tokens
    cdef public int hosts
    cdef public RequestResponseCycle cycle
    cdef public RequestResponseCycle running
    cdef public bint upgrade_request
    cdef public bint discarding
    cdef public object pending_upgrade
    cdef public object held
    cdef public Py_ssize_t held_bytes
    cdef public long long responses
    cdef long long held_mark
    cdef bint hold_check_due

    @cython.locals(url=bytes, raw_path=bytes, query=bytes, query_at=Py_ssize_t, path=str)
    cdef _fill_path(self)
    cdef _run(self, RequestResponseCycle cycle, object app)
    cdef _refuse(self, int status, str reason)
    cdef _respond_and_close(self, bytes response)
    cdef _upgrade(self, bytes rest)
    cdef on_response_complete(self)
    cdef _expect_head(self)
    cdef write(self, object data)
    cdef flush(self)


cdef class RequestResponseCycle:
    cdef public dict scope
    cdef public _Http protocol
    cdef public object transport
    cdef public object flow
    cdef public list default_headers
    cdef public object loop
    cdef public object task
    cdef public object waiter
    cdef public bint disconnected
    cdef public bint keep_alive
    cdef public bint waiting_for_100_continue
    cdef public bytes body
    cdef public bint more_body
    cdef public bint request_complete
    cdef public bint response_started
    cdef public bint response_complete
    cdef public object chunked_encoding
    cdef public Py_ssize_t expected_content_length
    cdef public int status
    cdef public bint no_body
    cdef public list _head
    cdef public object stats
    cdef public double started_at

    cdef _send_500(self)
    cdef _end_head(self, list head, object length)
    cdef _complete(self)
    cdef _count(self, Py_ssize_t n)
    cdef _write(self, object data)
    cdef _close(self)
    cdef _start(self, dict message)
    cdef bint _send_message(self, dict message, object message_type) except -1
    cpdef wake(self)


cdef object _content_length(bytes value)
cdef bint _is_chunked(bytes value) except -1

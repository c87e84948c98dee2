# cython: annotation_typing=False
"""WebSocket connections: transport <-> FrameReader <-> ASGI ``websocket`` app.

Owns the ASGI websocket scope and events, the accept/deny handshake response, the close
handshake, keepalive pings, and backpressure both ways. Frame rules live in the codec
(fastws.ws.frames); handshake validation in fastws.ws.handshake. The data path is kept lean
(see bench/): the compiled reader turns a whole read into ready messages, receive() pops a deque
and waits on at most one future, send() encodes in one allocation and writes straight to the
transport unless it is over its high-water mark.

This file is also compiled (setup.py; Cython pure-Python mode, field and helper types in
protocol.pxd): per message, the interpreter then runs only the app's own code. It stays plain
Python that runs as is: FASTWS_NO_EXTENSIONS=1 (fastws/ws/__init__.py) or an unbuilt tree.
"""

from __future__ import annotations

import asyncio
import collections.abc
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from fastws import http11
from fastws.transport import BufferedOnly, ClientDisconnected, FlowControl, caused_by_disconnect
from fastws.ws import deflate, handshake, session
from fastws.ws.frames import (
    FLAG_COMPRESSED,
    CloseCode,
    FrameReader,
    Opcode,
    _flag,
    encode_frame,
    encode_frame_header,
)
from fastws.ws.session import Session

try:
    import cython  # type: ignore[import-untyped,import-not-found,unused-ignore]

    COMPILED: bool = cython.compiled
except ImportError:  # Cython is a build requirement only
    COMPILED = False
if not COMPILED and _flag("FASTWS_REQUIRE_EXTENSIONS") and not _flag("FASTWS_NO_EXTENSIONS"):
    raise ImportError("fastws.ws.protocol is not compiled (FASTWS_REQUIRE_EXTENSIONS): make build")

if TYPE_CHECKING:
    from fastws.config import Config
    from fastws.transport import ServerState

logger = logging.getLogger("fastws.error")
access_logger = logging.getLogger("fastws.access")

_TEXT = int(Opcode.TEXT)
_BINARY = int(Opcode.BINARY)
_CLOSE = int(Opcode.CLOSE)
_PING = int(Opcode.PING)
_PONG = int(Opcode.PONG)
_Future = asyncio.Future
# Round trips are timed on this clock: uvloop's loop.time() is the loop pass's cached
# millisecond, too coarse for a ping over a fast network.
_clock = time.perf_counter
_NO_SETTINGS: dict[str, Any] = {}  # the value of each extension in a websocket scope

_WRITEV_MIN = 16384  # from this size a payload goes out uncopied (16 KiB echo: 18-22 -> 15 us)
# A send() corked for the end of the loop pass (_hold) is written at once past this many bytes
# held, so that an app writing much in one pass still meets the transport's flow control.
_CORK_MAX = 65536
# Large frames up to this size go to the socket itself (_write_parts); above it, through the
# transport's writelines(), which keeps the payload uncopied when the socket is full.
_DIRECT_PARTS_MAX = 262144
_FAIL_GRACE_S = 1.0  # longest wait for the app to read messages preceding a protocol error
_EARLY_MAX = 65536  # bytes held for a connection not accepted yet before reading pauses
# Writes that go through the transport before _write() looks the socket up (a system call) and
# sends on it directly: the 101 and a short session's one message and close never pay for it.
_DIRECT_AFTER = 3

# Connection states (fastws.ws.session's), as C values in the compiled build.
CONNECTING = session.CONNECTING
RESPONDING = session.RESPONDING
OPEN = session.OPEN
CLOSING = session.CLOSING
CLOSED = session.CLOSED


class _WebSocket(Session):
    """The asyncio shell and ASGI adapter around the RFC 6455 session it extends: moves bytes
    between the transport, the session's rules (fastws.ws.session) and the app's receive()
    and send(); WebSocketProtocol adds the asyncio protocol type.

    Compiled builds turn this class into a C struct with typed fields (``protocol.pxd``), the
    session's first, so that the per-message path reads fields and calls methods without
    dictionary lookups, and a connection is one object.
    """

    # Slots, not a __dict__: an idle connection's memory is mostly this object and its scope.
    __slots__ = (
        "app",
        "loop",
        "server_state",
        "transport",
        "flow",
        "offer",
        "agreement",
        "reader",
        "get_buffer",
        "max_queue",
        "queue",
        "waiter",
        "connect_sent",
        "disconnect",
        "close_handle",
        "task",
        "stats",
        "opened_at",
        "msgs_in",
        "msgs_out",
        "texts_out",
        "inflated_texts",
        "bytes_in",
        "bytes_out",
        "scope",
        "_response_head",
        "fail_handle",
        "early",
        "fd",
        "writes_before_direct",
        "is_closing",
        "buffered",
        "tx_held",
        "wakeups",
        "topics",
        "cork",
        "corked",
        "max_write_buffer",
        "send_never_waits",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        scope: dict[str, Any],
        offer: handshake.Offer,
        transport: asyncio.Transport,
        client: tuple[str, int] | None,
        server: tuple[str, int] | None,
        loop: asyncio.AbstractEventLoop,
        flow: FlowControl | None = None,
    ) -> None:
        self.app: Any = config.loaded_app
        self.loop = loop
        self.server_state = server_state
        self.transport = transport
        # The upgraded connection's HTTP side hands over its flow control (same transport).
        self.flow = flow if flow is not None else FlowControl(transport)
        self.offer = offer
        agreement = None
        if config.ws_per_message_deflate and offer.extensions:
            agreement = deflate.negotiate(offer.extensions)
        self.agreement = agreement
        Session.__init__(
            self,
            max_size=config.ws_max_size,
            ping_interval=config.ws_ping_interval,
            ping_timeout=config.ws_ping_timeout,
            close_timeout=config.ws_close_timeout,
            agreement=agreement,
            deflate_min_size=config.ws_deflate_min_size,
        )
        self.reader = FrameReader(
            max_size=config.ws_max_size,
            expect_mask=True,
            rsv1_allowed=agreement is not None,
            scratch=server_state.scratch,
            asgi=True,
        )
        # The transport looks get_buffer up once, when it switches to this protocol: give it
        # the reader's own (compiled) method, saving a Python call per read.
        self.get_buffer: Any = self.reader.get_buffer
        self.max_queue = max(1, config.ws_max_queue)
        self.queue: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[dict[str, Any]] | None = None
        self.connect_sent = False
        self.disconnect: dict[str, Any] | None = None  # set once; returned by every later receive()
        self._response_head: tuple[int, list[tuple[bytes, bytes]]] | None = None
        # Armed while the session holds a pending_fail: fail after _FAIL_GRACE_S even if the
        # app has not read the messages that came before the protocol error.
        self.fail_handle: asyncio.TimerHandle | None = None
        # Bytes that came with the upgrade request: frames are read only once the app has
        # accepted, so that nothing (a pong, a close) can go out before the 101.
        self.early = b""
        self.close_handle: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        # Whether the access log is on (a line at the accept and at the close). The session's
        # message and byte counters below are always counted (C integers in the compiled
        # build), for that close line and for --metrics (fastws.metrics reads them).
        self.stats = config.access_log and access_logger.isEnabledFor(logging.INFO)
        self.opened_at = 0.0  # loop time of the accept; 0.0: never accepted
        self.msgs_in = self.msgs_out = self.bytes_in = self.bytes_out = 0
        # Of those messages, the text ones: sent (texts_out) and received compressed (the
        # reader counts the others); the rest are binary (texts_in below).
        self.texts_out = self.inflated_texts = 0
        # The socket that _write() sends on directly while the transport holds nothing: -1
        # until _write() looks it up, after _DIRECT_AFTER writes through the transport
        # (writes_before_direct counts them down; -1: never, with TLS or in the pure build).
        # The two questions _write() asks the transport each time are bound once.
        self.fd = -1
        self.writes_before_direct = _DIRECT_AFTER if COMPILED and config.ssl is None else -1
        self.is_closing = transport.is_closing
        self.buffered = transport.get_write_buffer_size
        # Whether the transport may hold bytes of ours: set by every write that goes through
        # it, cleared once it says it holds none (_buffered). At first it may hold the HTTP
        # side's.
        self.tx_held = True
        self.wakeups = server_state.wakeups
        # Pub/sub (fastws.ws.pubsub): the topics this connection is subscribed to (None: none,
        # so that a connection that never subscribes costs one pointer), and the budget of
        # bytes waiting to be written past which a publish (or, with --ws-send-overflow close,
        # a send()) closes the connection with 1013 instead of waiting or buffering more.
        self.topics: set[str] | None = None
        # Frames due to this connection in this loop pass, published or sent by another
        # task (_hold), written together by the hub's flush() at the end of it (or before any
        # other write of ours, to keep order): one send() for many ("corking"); one frame
        # as bytes, more in a list (_cork). ``corked``: the bytes waiting to be written, the
        # transport's and the cork's, for the budget.
        self.cork: bytes | list[bytes] | None = None
        self.corked = 0
        self.max_write_buffer = config.ws_max_write_buffer
        self.send_never_waits = config.ws_send_overflow == "close"
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": config.asgi_version, "spec_version": "2.5"},
            "http_version": scope["http_version"],
            "scheme": "wss" if config.is_ssl else "ws",
            "server": server,
            "client": client,
            "root_path": scope["root_path"],
            "path": scope["path"],
            "raw_path": scope["raw_path"],
            "query_string": scope["query_string"],
            "headers": scope["headers"],
            "subprotocols": offer.subprotocols,
            "state": scope["state"],
            # Topics (docs/pubsub.md), with socketify's message names. The extensions' values
            # carry no settings: one empty dict serves every scope (256 bytes less each).
            "extensions": {
                "websocket.http.response": _NO_SETTINGS,
                "websocket.subscribe": _NO_SETTINGS,
                "websocket.unsubscribe": _NO_SETTINGS,
                "websocket.publish": _NO_SETTINGS,
            },
        }
        if server_state.pubsub_extension is not None:  # fastws.pubsub finds the hub here
            self.scope["extensions"]["fastws.pubsub"] = server_state.pubsub_extension

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, rest: bytes) -> None:
        """Begin once the transport uses this protocol; ``rest``: the bytes after the request.

        Frames are decoded only once the app has accepted (RFC 6455 §4.1: a client sends
        frames only after the 101), so nothing the server would answer can precede the
        handshake response; bytes that come earlier wait in ``early``.
        """
        self.server_state.connections.add(self)
        self.early = rest
        # The task runs the app's own coroutine, not a wrapper awaiting it: each time the app
        # is resumed (once per message) there is one frame less to pass through. What must
        # happen when the app ends or fails is done by _app_done().
        try:
            call = self.app(self.scope, self.receive, self.send)
        except BaseException as exc:
            call = _raising(exc)
        if not asyncio.iscoroutine(call):
            call = _awaiting(call)
        self.task = task = app_task(self.loop, call, "fastws.websocket")
        self.server_state.tasks.add(task)
        task.add_done_callback(self._app_done)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self.cork = None
        if self.topics is not None:
            self.server_state.hub.drop(self)
        self._cancel_timers()
        self.state = CLOSED
        if self.disconnect is None:
            self._disconnected(CloseCode.ABNORMAL, "")
        self.flow.resume_writing()
        self._wake()
        if self.opened_at:
            stats = self.server_state.stats
            if stats is not None:
                code, side = self._close_side()
                stats.ws_close(code, side, self)
            if self.stats:
                self._log_close()

    def eof_received(self) -> bool | None:
        return None

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        if self.pong_pending is not None:
            pong = self.writable()
            if pong is not None:
                self._write(pong)
            if len(self.queue) < self.max_queue:
                self.flow.resume_reading()

    def buffer_updated(self, nbytes: int) -> None:
        if not self.opened_at:  # not accepted (yet): keep the bytes, bounded, for later
            if self.state == CONNECTING:
                self.early += self.server_state.scratch_view[:nbytes]
                if len(self.early) >= _EARLY_MAX:
                    self.flow.pause_reading()
            return
        reader = self.reader
        events = reader.buffer_updated(nbytes)
        self.bytes_in += nbytes
        if reader.data_only and not self.close_sent:
            # Fast path: only ready websocket.receive events (bench/micro/protocol.py).
            if events:
                self.msgs_in += len(events)
                waiter = self.waiter
                if waiter is not None and len(events) == 1:
                    # The app waits in receive() (so nothing is queued): hand it the message
                    # (and wake its task, see Wakeups). A waiter is done only if the app's
                    # task was cancelled while waiting.
                    self.waiter = None
                    if not waiter.done():
                        self.wakeups.wake(waiter, events[0], self.loop)
                        return
                queue = self.queue
                queue.extend(events)
                if len(queue) >= self.max_queue:
                    self.flow.pause_reading()
                self._wake()
        else:
            self._dispatch(events)

    def shutdown(self) -> None:
        """Graceful server stop: close with 1012 (service restart)."""
        if self.state == OPEN:
            self._send_close(CloseCode.SERVICE_RESTART, "Server shutting down")
        elif self.state in (CONNECTING, RESPONDING) and not self.transport.is_closing():
            self.transport.close()

    # -- incoming --------------------------------------------------------------------------

    def _dispatch(self, messages: list[Any]) -> None:
        """Everything but the fast path: control frames, compressed messages, errors."""
        queue = self.queue
        closing = self.close_sent  # after our close, data is no longer delivered (§5.5.1)
        for message in messages:
            if type(message) is dict:  # a websocket.receive event
                self.msgs_in += 1
                if not closing:
                    queue.append(message)
                continue
            opcode, payload = message
            if opcode == _PING:
                pong = self.ping(payload, self.flow.write_paused)
                if pong is not None:
                    self._write(pong)
                elif self.pong_pending is not None:
                    # The peer is not reading: one pong is kept for when it does; stop reading
                    # its pings meanwhile, so a ping flood cannot grow our buffers.
                    self.flow.pause_reading()
            elif opcode == _PONG:
                rtt = self.pong(_clock())
                if rtt >= 0.0 and self.server_state.stats is not None:
                    self.server_state.stats.ping_rtt.observe(rtt)
            elif opcode == _CLOSE:
                code, reason = payload
                self._close_now(code, reason)
            elif opcode & FLAG_COMPRESSED:
                self.msgs_in += 1
                data = self.inflate(opcode & 0x0F, payload)
                if data is None:
                    self._fail(self.fail_code, self.fail_reason)
                    break
                if type(data) is str:
                    self.inflated_texts += 1
                if not closing:
                    if type(data) is str:
                        queue.append({"type": "websocket.receive", "text": data})
                    else:
                        queue.append({"type": "websocket.receive", "bytes": data})
        reader = self.reader
        if reader.close_code is not None and self.pending_fail is None:
            if queue and self.state == OPEN and not self.close_sent:
                # Messages that arrived before the bad frame are still delivered, and the
                # app's answers to them go out before our close frame (Autobahn 3.x, 4.x, 5.15
                # "strict"): fail once the app has read them, or after a short grace period.
                self.pending_fail = (reader.close_code, reader.close_reason)
                self.fail_handle = self.loop.call_later(_FAIL_GRACE_S, self._fail_pending)
            else:
                self._fail(reader.close_code, reader.close_reason)
        if len(queue) >= self.max_queue:
            self.flow.pause_reading()
        self._wake()

    def _fail_pending(self) -> None:
        self.fail_handle = None
        if self.pending_fail is not None:
            code, reason = self.pending_fail
            self._fail(code, reason)
            self._wake()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): close frame with ``code``, drop TCP."""
        if self.fail_handle is not None:
            self.fail_handle.cancel()
            self.fail_handle = None
        if self.disconnect is not None:
            self.pending_fail = None
            return
        logger.debug("WebSocket protocol error %d: %s", code, reason)
        self._closed(self.fail(code, reason), code, reason)

    def _close_now(self, code: int, reason: str) -> None:
        """The peer's close frame, or the end now: our close unless it went out already, drop
        TCP, tell the app."""
        self._closed(self.closed(code, reason), code, reason)

    def _closed(self, frame: bytes | None, code: int, reason: str) -> None:
        if frame is not None:
            self._write(frame)
        self.transport.close()
        self._disconnected(code, reason)

    def _disconnected(self, code: int, reason: str) -> None:
        if self.disconnect is None:
            self.disconnect = {"type": "websocket.disconnect", "code": int(code), "reason": reason}
            self.queue.append(self.disconnect)

    def _wake(self) -> None:
        """Something was queued: hand the first event to a receive() that waits for it."""
        waiter = self.waiter
        if waiter is not None and self.queue:
            self.waiter = None
            if not waiter.done():  # else: cancelled with the app's task; the event stays
                waiter.set_result(self._pop())

    def _pop(self) -> dict[str, Any]:
        queue = self.queue
        message: dict[str, Any] = queue.popleft()
        if self.flow.read_paused and len(queue) <= self.max_queue // 2:
            self.flow.resume_reading()
        return message

    def _next_event(self) -> asyncio.Future[dict[str, Any]]:
        """The app's next event as a future: complete already if there is one, else the one
        buffer_updated() or _wake() completes with it."""
        # With the loop given: without it, asyncio.Future() looks up the running loop, which on
        # Python 3.11 costs a getpid() system call per message. Not loop.create_future(): one
        # Python method call less per message (what uvloop's and asyncio's loops return).
        future: asyncio.Future[dict[str, Any]] = _Future(loop=self.loop)
        if not self.connect_sent:
            self.connect_sent = True
            future.set_result({"type": "websocket.connect"})
            return future
        if not self.queue and self.pending_fail is not None:
            # The app has read what came before the protocol error: fail now.
            code, reason = self.pending_fail
            self._fail(code, reason)
        if self.queue:
            future.set_result(self._pop())
        elif self.disconnect is not None:  # delivered once already; say it again
            future.set_result(self.disconnect)
        else:
            self.waiter = future
        return future

    # -- the ASGI side ----------------------------------------------------------------------

    def _app_done(self, task: asyncio.Task[Any]) -> None:
        self.server_state.tasks.discard(task)
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        if caused_by_disconnect(exc):  # the client left; not an app error (ASGI 2.4)
            self._app_finished()
        elif exc is not None:
            logger.error("Exception in ASGI application\n", exc_info=exc)
            if self.state == CONNECTING and self.server_state.stats is not None:
                self.server_state.stats.refuse("app_error")
            if self.state in (CONNECTING, RESPONDING):
                self._http_error(500, b"Internal Server Error")
            else:
                self._close_finished(CloseCode.INTERNAL_ERROR)
        else:
            result = task.result()
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
            if self.state == CONNECTING:
                logger.error("ASGI callable returned without sending handshake.")
                if self.server_state.stats is not None:
                    self.server_state.stats.refuse("app_error")
                self._http_error(500, b"Internal Server Error")
            else:
                self._app_finished()

    def _app_finished(self) -> None:
        if self.state == RESPONDING and not self.transport.is_closing():
            self.transport.close()
        else:
            self._close_finished(CloseCode.NORMAL)

    def _close_finished(self, code: int) -> None:
        """The app is gone: send our close if it is not sent yet, and drop the connection
        without waiting for the peer's (nobody is left to hear it)."""
        if self.state == OPEN:
            self._send_close(code, "")
        if not self.transport.is_closing():
            self.transport.close()

    def receive(self) -> Awaitable[dict[str, Any]]:
        """ASGI receive(): an awaitable for the next event, with no coroutine frame of ours
        between the app and the future it waits on (see _Receive)."""
        return _Receive(self)

    def send(self, message: dict[str, Any]) -> Awaitable[None]:
        """ASGI send(). An uncompressed data frame that can go out now is written during the
        call, which then returns SENT, an awaitable already complete: no coroutine per message
        (32 B echo: -0.2 us/msg). Everything else runs in the _send() coroutine, so its errors
        are raised where the app awaits, as for any ASGI server."""
        if type(message) is dict and self.state == OPEN and self.deflate is None:
            if self._send_now(message):
                return SENT
        return self._send(message)

    def _send_now(self, message: dict[str, Any]) -> bool:
        """Write an uncompressed data frame now if ``message`` is one and writing is not paused
        (typed as a dict in the compiled build: its lookups are C calls)."""
        if self.flow.write_paused:
            return False
        if message.get("type") != "websocket.send":
            # Pub/sub messages are done here too (no coroutine); anything else, or a malformed
            # one, goes to _send(), which raises where the app awaits.
            return self._topic_message(message, False)
        data = message.get("bytes")
        if data is not None:
            opcode = _BINARY
        else:
            data = message.get("text")
            opcode = _TEXT
        if type(data) is str or (type(data) is bytes and len(data) < _WRITEV_MIN):
            if COMPILED:  # the codec's C function (cimported in protocol.pxd)
                frame = data_frame(opcode, data)  # type: ignore[name-defined]  # noqa: F821
            else:
                frame = encode_frame(opcode, data)
            if self.waiter is not None:
                # This connection's app waits in receive(), so another task sends: a
                # broadcast loop (`for ws in room: await ws.send_text(m)`). Corked like a
                # publish, so that what a pass sends to one socket goes out in one send().
                self._hold(frame)
            else:
                self._write_frame(frame)
            return True
        return False

    def _hold(self, frame: bytes) -> None:
        """Cork ``frame`` for the end of this loop pass (the hub's flush, as for publishes),
        or write the cork now when it holds _CORK_MAX bytes. Order is kept: any other write
        of this connection writes the cork first (_write)."""
        if self.cork is None:
            hub = self.server_state.hub
            if hub is None:  # a server state without a hub (tests of the protocol alone)
                self._write_frame(frame)
                return
            self.corked = self._buffered() + len(frame)  # what _deliver()'s budget counts
            self._cork(frame)
            hub.hold(self)
        else:
            self.corked += len(frame)
            self._cork(frame)
        if self.corked >= _CORK_MAX:
            self._uncork()

    def _buffered(self) -> int:
        """The bytes the transport holds for us, asked of it only while it may hold some
        (tx_held): a connection whose writes all went straight to the socket costs no call
        (a fan-out asked each subscriber twice a pass: 4% of the server's time at 5,000)."""
        if not self.tx_held:
            return 0
        n: int = self.buffered()
        if n == 0:
            self.tx_held = False
        return n

    def _write(self, data: bytes) -> None:
        """Write ``data``. While the transport has nothing buffered (so order is kept) and is
        not closing (so the descriptor is still this connection's), one send() on the socket
        itself does it: uvloop's write() path costs about 600 instructions more, and write(2)
        goes through the VFS layer that send(2) skips. What the kernel does not take (a full
        socket buffer, an error) goes to the transport as usual, which buffers it or reports
        the error through connection_lost()."""
        if self.cork is not None:
            self._uncork()
        sent = 0
        if self._direct():
            sent = send_bytes(self.fd, data)  # type: ignore[name-defined]  # noqa: F821
        if sent <= 0:
            self.transport.write(data)
            self.tx_held = True
        elif sent < len(data):
            self.transport.write(data[sent:])
            self.tx_held = True

    def _direct(self) -> bool:
        """Whether a write may go to the socket itself now (see _write()): its descriptor is
        known (looked up after _DIRECT_AFTER writes through the transport) and the transport
        is not closing and holds nothing of ours."""
        if self.fd < 0:
            if self.writes_before_direct > 0:
                self.writes_before_direct -= 1
                return False
            if self.writes_before_direct < 0:
                return False
            self.writes_before_direct = -1
            self.fd = _socket_fd(self.transport)
            if self.fd < 0:
                return False
        return not self.is_closing() and not self._buffered()

    def _write_parts(self, header: bytes, data: Any) -> None:
        """Write a large frame as its header and its payload, uncopied: with _sendmsg() where
        _write() would send on the socket (``data`` bytes, up to _DIRECT_PARTS_MAX), else with
        the transport's writelines() (its writev)."""
        if self.cork is not None:
            self._uncork()
        if COMPILED and type(data) is bytes and len(data) <= _DIRECT_PARTS_MAX and self._direct():
            self._sendmsg([header, data])
        else:
            self.transport.writelines((header, data))
            self.tx_held = True

    def _sendmsg(self, frames: list[bytes]) -> None:
        """One sendmsg() of ``frames`` (bytes) where they are, on the socket itself (compiled
        build, once _direct() said yes; protocol.pxd); what the kernel does not take goes to
        the transport, as in _write()."""
        left = send_frames(self.fd, frames)  # type: ignore[name-defined]  # noqa: F821
        if left != 0:
            data = b"".join(frames)
            self.transport.write(data[len(data) - left :] if left > 0 else data)
            self.tx_held = True

    def _write_frame(self, frame: bytes) -> None:
        self._write(frame)
        self._count_out(frame)

    def _count_out(self, frame: bytes) -> None:
        """Count ``frame`` as a data message sent (msgs_out, bytes_out, texts_out)."""
        self.msgs_out += 1
        self.bytes_out += len(frame)
        if frame[0] & 0x0F == _TEXT:
            self.texts_out += 1

    @property
    def texts_in(self) -> int:
        """Text messages received so far (of msgs_in; the rest were binary)."""
        return self.reader.texts + self.inflated_texts

    async def _send(self, message: dict[str, Any]) -> None:
        if self.state == OPEN:
            message_type = message["type"]
            if message_type == "websocket.send":
                data = message.get("bytes")
                if data is not None:
                    opcode = _BINARY
                else:
                    data = message.get("text")
                    if data is None:
                        raise RuntimeError("websocket.send needs 'bytes' or 'text'.")
                    opcode = _TEXT
                paused = self.flow.write_paused
                if paused and self.send_never_waits:  # --ws-send-overflow close
                    waiting = self._buffered() + len(data)
                    if waiting > self.max_write_buffer:
                        self._overflow(waiting)
                        return
                    paused = False
                # Over the transport's high-water mark the frame is still written at once and
                # only then waited on, so that publishes this connection receives meanwhile
                # cannot overtake it (docs/pubsub.md, "Ordering").
                if self.compresses(len(data)):
                    self._write_frame(self.compressed_frame(opcode, data))
                elif len(data) >= _WRITEV_MIN and type(data) is not str:
                    # Large payload: header and payload as two buffers in one writev, so the
                    # payload is not copied into a frame first (bench: 1 MiB echo).
                    header = encode_frame_header(opcode, len(data))
                    self._write_parts(header, data)
                    self.msgs_out += 1
                    self.bytes_out += len(header) + len(data)
                else:
                    self._write_frame(encode_frame(opcode, data))
                if paused:
                    await self.flow.drain()
                    if self.state != OPEN:
                        raise ClientDisconnected
                return
            if message_type == "websocket.close":
                self._send_close(message.get("code", 1000), message.get("reason") or "")
                return
            if self._topic_message(message, True):
                return
            raise RuntimeError(
                f"Expected 'websocket.send' or 'websocket.close', got '{message_type}'."
            )
        if self.state == CONNECTING:
            self._handshake_message(message)
            return
        if self.state == RESPONDING:
            self._response_body(message)
            return
        # Closing or closed: a publish still reaches the others; an unsubscribe is done.
        if self.opened_at and self._topic_message(message, True):
            return
        raise ClientDisconnected

    # -- pub/sub (fastws.ws.pubsub, docs/pubsub.md) -------------------------------------------

    def _topic_message(self, message: dict[str, Any], strict: bool) -> bool:
        """Do a websocket.subscribe, .unsubscribe or .publish now; False if ``message`` is
        none of them. A malformed one: False, or (``strict``: from _send(), where the app
        awaits) RuntimeError; a subscribe once closing: False, or ClientDisconnected."""
        kind = message.get("type")
        if kind == "websocket.publish":
            topic = _topic_of(message, strict)
            if topic is None:
                return False
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
                if data is None:
                    if strict:
                        raise RuntimeError("websocket.publish needs 'bytes' or 'text'.")
                    return False
            sender = self if message.get("exclude_sender") else None
            self.server_state.hub.publish(topic, data, sender)
            return True
        if kind == "websocket.subscribe":
            topic = _topic_of(message, strict)
            if topic is None:
                return False
            if self.state != OPEN:
                if strict:
                    raise ClientDisconnected
                return False
            self.server_state.hub.subscribe(self, topic)
            return True
        if kind == "websocket.unsubscribe":
            topic = _topic_of(message, strict)
            if topic is None:
                return False
            if self.topics is not None:
                self.server_state.hub.unsubscribe(self, topic)
            return True
        return False

    def _deliver(self, frame: bytes) -> int:
        """Take a published ``frame`` into the cork: 2 when it is the first of this pass (the
        hub then flushes this connection at the end of the pass), 1 when it joined others, 0
        when skipped (our close frame went out: no data after it, RFC 6455 §5.5.1), -1 when
        it would take the bytes waiting to be written past ``max_write_buffer``: then the
        connection is closing with 1013 and the frame is dropped."""
        if self.state != OPEN:
            return 0
        cork = self.cork
        # The transport's buffer cannot change until the cork is written: ask it once a pass.
        waiting = (self.corked if cork is not None else self._buffered()) + len(frame)
        if waiting > self.max_write_buffer:
            self._uncork()  # what this pass took already goes out before the close frame
            self._overflow(waiting)
            return -1
        self.corked = waiting
        return 2 if self._cork(frame) else 1

    def _cork(self, frame: bytes) -> bool:
        """Add ``frame`` to the cork, counted as sent; True when it begins the cork. A lone
        frame is held as it is, more in a list that the compiled build takes off the garbage
        collector's books (it holds bytes only: no cycle): tracked, a broadcast to 5,000
        connections made 5,000 of them, and the full collections their survivors set off
        were the tail of its latency (p99 at 5,000 x 16: 180 -> 80 ms). _uncork() sends the
        list's frames with one sendmsg(), uncopied."""
        self._count_out(frame)
        cork = self.cork
        if cork is None:
            self.cork = frame
            return True
        if type(cork) is bytes:
            self.cork = cork = [cork, frame]
            if COMPILED:
                untrack(cork)  # type: ignore[name-defined]  # noqa: F821
        else:
            cork.append(frame)
        return False

    def _uncork(self) -> None:
        """Write the corked frames, in one send() where the socket takes them."""
        cork = self.cork
        if cork is None:
            return
        self.cork = None
        self.corked = 0
        if type(cork) is bytes:
            self._write(cork)
        elif COMPILED and self._direct():
            self._sendmsg(cork)
        else:
            self._write(b"".join(cork))

    def _overflow(self, size: int) -> None:
        """A publish or send would hold ``size`` bytes for a peer that does not read fast
        enough: close with 1013 (Try Again Later) instead. The close frame waits behind the
        bytes already buffered; _close_timeout() aborts if they are still there by then."""
        client = self.scope["client"]
        logger.warning(
            "WebSocket %s: %d bytes waiting to be written, over --ws-max-write-buffer "
            "(%d): closing with 1013",
            f"{client[0]}:{client[1]}" if client else "-",
            size,
            self.max_write_buffer,
        )
        if self.server_state.stats is not None and not self.close_sent:
            self.server_state.stats.overflows += 1
        self._send_close(CloseCode.TRY_AGAIN_LATER, "slow reader: write buffer full")

    def _handshake_message(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if message_type == "websocket.accept":
            subprotocol = message.get("subprotocol")
            if subprotocol is not None and subprotocol not in self.offer.subprotocols:
                _check_subprotocol(subprotocol)
            # Checked before anything is written: a header the app may not send fails this
            # send() with a RuntimeError, and the handshake with a 500.
            headers = message.get("headers")
            extra = http11.with_defaults(
                http11.check_headers(headers) if headers else [],
                self.server_state.default_headers,
            )
            if self.transport.is_closing():
                raise ClientDisconnected
            self._write(
                handshake.accept_response(
                    self.offer.key,
                    subprotocol,
                    self.agreement.response() if self.agreement else None,
                    extra,
                )
            )
            self.offer = None  # the handshake is done (the scope keeps the subprotocols)
            self.opened_at = self.loop.time()
            self.opened(self.opened_at)
            if self.server_state.stats is not None:
                self.server_state.stats.ws_opened += 1
            self._log_access(101)
            self.flow.resume_reading()
            if self.early:
                early, self.early = self.early, b""
                self.bytes_in += len(early)
                self._dispatch(self.reader.feed(early))
        elif message_type == "websocket.close":
            # Close before accept: HTTP 403 (ASGI websocket spec).
            self._log_access(403)
            if self.server_state.stats is not None:
                self.server_state.stats.refuse("app")
            self._http_error(403, b"Forbidden")
        elif message_type == "websocket.http.response.start":
            status = message["status"]
            http11.check_status(status)
            self.state = RESPONDING
            self._log_access(status)
            if self.server_state.stats is not None:
                self.server_state.stats.refuse("app")
            headers = message.get("headers")
            self._response_head = (status, http11.check_headers(headers) if headers else [])
        else:
            raise RuntimeError(
                "Expected 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start', got '{message_type}'."
            )

    def _response_body(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.http.response.body":
            raise RuntimeError(f"Expected 'websocket.http.response.body', got '{message['type']}'.")
        if self.transport.is_closing():
            raise ClientDisconnected
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        out = []
        if self._response_head is not None:
            status, headers = self._response_head
            self._response_head = None
            out = http11.response_head(
                status, http11.with_defaults(headers, self.server_state.default_headers)
            )
            # Without a content-length the body ends with the connection (RFC 9112 §6.3).
            out.append(b"connection: close\r\n\r\n")
        out.append(body)
        self.transport.write(b"".join(out))
        self.tx_held = True
        if not more_body:
            self.state = CLOSED
            self.transport.close()

    def _http_error(self, status: int, body: bytes) -> None:
        self.state = CLOSED
        if not self.transport.is_closing():
            defaults = self.server_state.default_headers
            self.transport.write(http11.simple_response(status, body, defaults))
            self.tx_held = True
            self.transport.close()

    def _send_close(self, code: int, reason: str) -> None:
        if self.close_sent or self.transport.is_closing():
            return
        frame = self.close(code, reason)
        if frame is not None:
            self._write(frame)
            # Wait (bounded) for the peer's close frame, then drop the connection (§7.1.1).
            self.close_handle = self.loop.call_later(self.close_timeout, self._close_timeout)

    def _close_timeout(self) -> None:
        self.close_handle = None
        if self._buffered():
            # The peer has not even read what we sent (close() would wait for it to: memory
            # held for as long as it likes).
            self.transport.abort()
        elif not self.transport.is_closing():
            self.transport.close()

    # -- keepalive --------------------------------------------------------------------------

    def expire(self) -> None:
        """The server's sweep found the deadline passed: send a ping, or fail the connection
        whose last ping went unanswered for ws_ping_timeout."""
        if self.transport.is_closing():
            self.cancel_keepalive()
            return
        frame = self.keepalive(self.loop.time(), _clock())
        if self.state == CLOSED:
            # Unanswered: the session failed with 1011, and the peer is not answering, so
            # there is no close frame to wait for.
            logger.info("WebSocket keepalive ping timeout; closing with 1011.")
            self._closed(frame, CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self._wake()
        elif frame is not None:
            self._write(frame)

    def _cancel_timers(self) -> None:
        self.cancel_keepalive()
        if self.fail_handle is not None:
            self.fail_handle.cancel()
            self.fail_handle = None
        if self.close_handle is not None:
            self.close_handle.cancel()
            self.close_handle = None

    def _close_side(self) -> tuple[int, str]:
        """The code that describes the ended session, and which side closed first: ours when
        we initiated ("server": the app's close, a protocol error, a budget, shutdown), else
        what the client sent ("client"), else 1006: no close frame at all ("abnormal")."""
        if self.close_code is not None:
            return int(self.close_code), "server"
        code = self.disconnect["code"] if self.disconnect else CloseCode.ABNORMAL
        return int(code), "abnormal" if code == CloseCode.ABNORMAL else "client"

    def _log_close(self) -> None:
        client = self.scope["client"]
        code, side = self._close_side()
        initiated = side == "server"
        access_logger.info(
            '%s - "%s %s HTTP/%s" %d %s',
            f"{client[0]}:{client[1]}" if client else "-",
            "WebSocket",
            self.scope["path"],
            self.scope["http_version"],
            code,
            f"closed by {'server' if initiated else 'client'} "
            f"after {self.loop.time() - self.opened_at:.3f} s; "
            f"in {self.msgs_in} msgs / {_size(self.bytes_in)}, "
            f"out {self.msgs_out} msgs / {_size(self.bytes_out)}",
        )

    def _log_access(self, status: int) -> None:
        # Same argument shape as the HTTP access line, so one formatter serves both.
        if self.stats:
            client = self.scope["client"]
            query = self.scope["query_string"]
            access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                f"{client[0]}:{client[1]}" if client else "-",
                "WebSocket",
                self.scope["path"] + ("?" + query.decode("ascii") if query else ""),
                self.scope["http_version"],
                status,
            )


class WebSocketProtocol(_WebSocket, BufferedOnly):
    """What the transport talks to (asyncio's loop wants a BufferedProtocol instance)."""

    __slots__ = ()


async def _raising(exc: BaseException) -> None:
    raise exc


async def _awaiting(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class _Receive:
    """What receive() returns. Awaiting it awaits the connection's next-event future, taken
    at the first await, so that a receive() never awaited takes no message. It also has the
    coroutine methods: apps that create_task(receive()) (Django Channels does) work as with a
    coroutine."""

    __slots__ = ("ws", "steps")

    def __init__(self, ws: _WebSocket) -> None:
        self.ws = ws
        self.steps: Any = None

    def __await__(self) -> Any:
        # iter(future) is future.__await__() without the method lookup.
        return iter(self.ws._next_event())

    def _steps(self) -> Any:
        if self.steps is None:
            self.steps = iter(self.ws._next_event())
        return self.steps

    def __iter__(self) -> _Receive:
        return self

    def __next__(self) -> Any:
        return self._steps().send(None)

    def send(self, value: object) -> Any:
        return self._steps().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        return self._steps().throw(typ, val, tb)

    def close(self) -> None:
        pass


collections.abc.Coroutine.register(_Receive)


class _Sent:
    """An awaitable that is already complete, with None as its result. It also has the
    coroutine methods, so that create_task(send(...)) works as with a coroutine."""

    __slots__ = ()

    def __await__(self) -> _Sent:
        return self

    def __iter__(self) -> _Sent:
        return self

    def __next__(self) -> None:
        raise StopIteration

    def send(self, value: object) -> None:
        raise StopIteration

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> None:
        raise typ if val is None else val

    def close(self) -> None:
        pass


collections.abc.Coroutine.register(_Sent)
SENT = _Sent()


def app_task(loop: asyncio.AbstractEventLoop, coro: Any, name: str) -> asyncio.Task[Any]:
    """The task that runs an app call (an HTTP request's cycle, a WebSocket's session).

    Where the loop has no task factory, asyncio.Task itself, named: the task loop.create_task()
    would make, without Python 3.11 formatting a "Task-N" name for each (1,450 instructions per
    HTTP request, callgrind). A task factory someone set is used as it is.
    """
    if loop.get_task_factory() is None:
        return _Task(coro, loop=loop, name=name)
    return loop.create_task(coro, name=name)


_Task = asyncio.Task


# In the mode that runs the app at once, every _SAMPLE_EVERY-th read goes through a batch
# instead, to see whether other reads come in the same loop pass.
_SAMPLE_EVERY = 16


class Wakeups:
    """Wakes the tasks of apps waiting in receive(), for all the connections of one loop.

    asyncio's Future schedules its done-callbacks with call_soon(): per message, the loop
    creates a Handle and makes a pass through its ready queue to run the app's task. wake()
    takes the waiting task's wake-up callback off the future instead and runs it itself, in the
    callback's own context (the task's), either

    - at once, in the transport's read callback (where no task runs), while the loop's passes
      carry one read each (one busy client, or clients taking turns): no Handle, no ready-queue
      pass (32 B echo over 1 connection: 16,275 -> 14,474 instructions per message; same-core
      round trips/s +4%), or
    - with the other reads of the same pass, all in one call_soon() callback, when several
      connections are read in one pass: each app then sends after all the reads, as through the
      ready queue. (Running each at once measured 4% fewer msgs/s over 64 connections, its
      kernel time per message up 9%: reads and sends interleaved cost more there.)

    The mode follows the last batch: a batch of one means the passes carry one read. While
    running wake-ups at once, every _SAMPLE_EVERY-th starts a batch instead, which the other
    reads of its pass join.
    """

    __slots__ = ("pending", "alone", "countdown", "run_pending")

    def __init__(self) -> None:
        self.pending: list[Any] = []  # callback, context, future, ... to run on this pass
        self.alone = False
        self.countdown = _SAMPLE_EVERY
        self.run_pending = self.flush  # bound once

    def wake(
        self, future: asyncio.Future[Any], value: Any, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Complete the pending ``future`` with ``value``; its one done-callback (the task's
        wake-up) runs now or with this pass's batch. Other callbacks: plain set_result().
        Only from a transport callback: run now, the task steps inside this call, which
        asyncio refuses while another task is running."""
        callbacks = getattr(future, "_callbacks", None)  # asyncio.Future's, C or Python
        if callbacks is None or len(callbacks) != 1:
            future.set_result(value)
            return
        callback, context = callbacks[0]
        future.remove_done_callback(callback)
        future.set_result(value)
        pending = self.pending
        if not pending:
            if self.alone:
                self.countdown -= 1
                if self.countdown > 0:
                    _run(callback, context, future, loop)
                    return
                self.countdown = _SAMPLE_EVERY
            loop.call_soon(self.run_pending, loop)
        pending.append(callback)
        pending.append(context)
        pending.append(future)

    def flush(self, loop: asyncio.AbstractEventLoop) -> None:
        pending = self.pending
        self.pending = []
        self.alone = len(pending) == 3
        for i in range(0, len(pending), 3):
            _run(pending[i], pending[i + 1], pending[i + 2], loop)


def _run(callback: Any, context: Any, future: Any, loop: asyncio.AbstractEventLoop) -> None:
    """Run a future's done-callback in its context. KeyboardInterrupt and SystemExit (which a
    task lets out) leave the loop from a scheduled callback, as they would have."""
    try:
        context.run(callback, future)
    except BaseException as exc:
        loop.call_soon(_reraise, exc)


def _reraise(exc: BaseException) -> None:
    raise exc


def _topic_of(message: dict[str, Any], strict: bool) -> str | None:
    topic = message.get("topic")
    if type(topic) is str:
        return topic  # type: ignore[no-any-return]
    if type(topic) is bytes:
        return topic.decode("utf-8")  # type: ignore[no-any-return]
    if strict:
        raise RuntimeError(f"{message.get('type')} needs a str 'topic', got {topic!r}.")
    return None


def _socket_fd(transport: asyncio.Transport) -> int:
    """The descriptor of the transport's socket, -1 if it has none."""
    sock = transport.get_extra_info("socket")
    return -1 if sock is None else int(sock.fileno())


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


# Subprotocols accepted though the client did not offer them, warned about once each.
_UNOFFERED_WARNED: set[str] = set()


def _check_subprotocol(subprotocol: Any) -> None:
    """An app accepted with a subprotocol the client did not offer. uvicorn sends it, and
    lenient clients connect; RFC 6455 §4.2.2 lets the server answer only with one of the
    client's values, and strict clients (browsers, websockets) fail such a handshake. Send
    it, as uvicorn does, if it is a token that can go on the wire; warn once per value."""
    if not isinstance(subprotocol, str) or http11.check_token(subprotocol) is None:
        raise RuntimeError(
            f"Invalid subprotocol {subprotocol!r}: expected a str that is an RFC 9110 token."
        )
    if subprotocol not in _UNOFFERED_WARNED and len(_UNOFFERED_WARNED) < 64:
        _UNOFFERED_WARNED.add(subprotocol)
        logger.warning(
            "The app accepted a WebSocket with subprotocol %r, which the client did not offer; "
            "sending it anyway (RFC 6455 §4.2.2 allows only an offered one, and browsers and "
            "other strict clients will fail the handshake).",
            subprotocol,
        )

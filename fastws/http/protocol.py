# cython: annotation_typing=False
"""HTTP/1.1 connections: the asyncio protocol around httptools and the ASGI http cycle.

Owns request parsing (keep-alive, pipelining, chunked bodies, Expect: 100-continue, limits),
the ASGI ``http`` scope and events, and response framing. Detects a WebSocket upgrade, checks
the handshake (fastws.ws.handshake) and hands the already-parsed request and any bytes after it
to fastws.ws.protocol, switching the transport's protocol. Reads land in the loop's shared
scratch buffer (ServerState.scratch), so an idle connection holds no read buffer of its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.parse
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import httptools

from fastws import http11
from fastws.logging import TRACE_LOG_LEVEL
from fastws.transport import BufferedOnly, ClientDisconnected, FlowControl, caused_by_disconnect
from fastws.ws import handshake, origins
from fastws.ws.frames import _flag
from fastws.ws.protocol import SENT, WebSocketProtocol, _raising, app_task

try:
    import cython  # type: ignore[import-untyped,import-not-found,unused-ignore]

    COMPILED: bool = cython.compiled
except ImportError:  # Cython is a build requirement only
    COMPILED = False
if not COMPILED and _flag("FASTWS_REQUIRE_EXTENSIONS") and not _flag("FASTWS_NO_EXTENSIONS"):
    raise ImportError(
        "fastws.http.protocol is not compiled (FASTWS_REQUIRE_EXTENSIONS): make build"
    )

if TYPE_CHECKING:
    from fastws.config import Config
    from fastws.transport import ServerState

logger = logging.getLogger("fastws.error")
access_logger = logging.getLogger("fastws.access")

HIGH_WATER_LIMIT = 65536  # request body bytes buffered for the app before reading pauses
_LINGER_S = 2.0  # after an error response: how long to drain input before closing
_HOLD_MAX = 65536  # held pipelined responses (HttpProtocol.write) are written at this size


class _Http:
    """One HTTP/1.1 connection: httptools' callbacks, the request's scope, the pipeline of
    requests waiting for the response in progress, the deadlines and the upgrade hand-over;
    HttpProtocol adds the asyncio protocol type.

    Compiled builds turn this class and RequestResponseCycle into C structs with typed fields
    (``protocol.pxd``), so that the parser's callbacks and the ASGI calls of each request read
    fields without lookups. A pure-Python build keeps the slots below.
    """

    # Slots: a connection's ~30 fields are set in __init__ without growing a __dict__ (new
    # connections/s), and an idle keep-alive connection is smaller.
    __slots__ = (
        "config",
        "app",
        "loop",
        "server_state",
        "app_state",
        "connections",
        "tasks",
        "root_path",
        "limit_concurrency",
        "limit_request_line",
        "limit_request_fields",
        "limit_request_field_size",
        "timeout_handshake",
        "timeout_keep_alive",
        "asgi_version",
        "extensions",
        "access_log",
        "trace",
        "parser",
        "scratch_view",
        "transport",
        "flow",
        "server",
        "client",
        "scheme",
        "pipeline",
        "deadline",
        "head_bytes",
        "max_head_bytes",
        "url",
        "headers",
        "header_bytes",
        "scope",
        "scope_template",
        "expect_100_continue",
        "connection_tokens",
        "hosts",
        "cycle",
        "running",
        "upgrade_request",
        "discarding",
        "pending_upgrade",
        "held",
        "held_bytes",
        "responses",
        "held_mark",
        "hold_check_due",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.root_path = config.root_path
        self.limit_concurrency = config.limit_concurrency
        # Read once here, not from the Config at every request or header.
        self.limit_request_line = config.limit_request_line
        self.limit_request_fields = config.limit_request_fields
        self.limit_request_field_size = config.limit_request_field_size
        self.timeout_handshake = config.timeout_handshake
        self.timeout_keep_alive = config.timeout_keep_alive
        self.asgi_version = config.asgi_version
        pubsub = server_state.pubsub_extension
        self.extensions: dict[str, Any] = {"http.response.pathsend": _NO_SETTINGS}
        if pubsub is not None:
            self.extensions["fastws.pubsub"] = pubsub
        self.access_log = config.access_log and access_logger.hasHandlers()
        # Checked once per connection, never per request (--log-level trace).
        self.trace = logger.isEnabledFor(TRACE_LOG_LEVEL)
        self.parser = httptools.HttpRequestParser(self)
        self.scratch_view = server_state.scratch_view

        # connection
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.flow: FlowControl = None  # type: ignore[assignment]
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "https" if config.is_ssl else "http"
        self.pipeline: deque[tuple[RequestResponseCycle, Callable[..., Any]]] = deque()
        # When this connection is due to be dropped (loop time; 0: never): a request head must
        # be complete by then (slowloris), or an idle keep-alive connection ends. The server
        # sweeps these twice a second (Server.on_tick), so no timer is armed per request.
        self.deadline = 0.0
        # Bytes of an unfinished request head, or -1 between heads. httptools buffers a header
        # field until it ends, so the per-field limits alone cannot stop one endless field.
        self.head_bytes = -1
        self.max_head_bytes = (
            config.limit_request_line
            + config.limit_request_fields * (config.limit_request_field_size + 4)
            + 4
        )

        # the request being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.header_bytes = 0
        self.scope: dict[str, Any] = {}
        self.scope_template: dict[str, Any] = {}  # set in connection_made()
        self.expect_100_continue = False
        self.connection_tokens: list[bytes] = []
        self.hosts = 0  # Host header fields in the request (RFC 9112 §3.2: exactly one)
        self.cycle: RequestResponseCycle | None = None  # the request parsed last
        self.running: RequestResponseCycle | None = None  # the one the app is answering
        self.upgrade_request = False
        self.discarding = False  # a final error response went out; input is ignored
        self.pending_upgrade: bytes | None = None  # a pipelined upgrade's trailing bytes
        # Responses held while pipelined requests wait behind them (write()), and their size.
        self.held: list[bytes] | None = None
        self.held_bytes = 0
        self.responses = 0  # responses completed on this connection
        self.held_mark = 0  # ``responses`` at the last hold check (_hold_check)
        self.hold_check_due = False

    # -- asyncio protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]
        self.flow = FlowControl(self.transport)
        self.server = _addr(transport.get_extra_info("sockname"))
        self.client = _addr(transport.get_extra_info("peername"))
        # Every request's scope starts as a copy of this: the connection's values, and a
        # placeholder for each key a request fills in (method and the target's parts are
        # always set before the app runs, "http_version" when it is not 1.1).
        self.scope_template = {
            "type": "http",
            "asgi": None,
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": None,
            "root_path": self.root_path,
            "path": None,
            "raw_path": None,
            "query_string": None,
            "headers": None,
            "state": None,
            "extensions": None,
        }
        self._expect_head()
        if self.trace:
            logger.log(TRACE_LOG_LEVEL, "%s - HTTP connection made", _format_client(self.client))

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.held = None
        for cycle in (self.running, self.cycle, *(c for c, _ in self.pipeline)):
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True
                cycle.wake()
        self.deadline = 0.0
        self.flow.resume_writing()
        if self.trace:
            logger.log(TRACE_LOG_LEVEL, "%s - HTTP connection lost", _format_client(self.client))

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.scratch_view

    def buffer_updated(self, nbytes: int) -> None:
        if self.discarding:
            return
        data = self.scratch_view[:nbytes]
        try:
            self.parser.feed_data(data)
            if self.head_bytes >= 0:  # still inside a request head after this read
                self.head_bytes += nbytes
                if self.head_bytes > self.max_head_bytes:
                    self._refuse(431, "Request header fields too large.")
        except httptools.HttpParserUpgrade as exc:
            if self.upgrade_request:
                rest = bytes(data[exc.args[0] :])
                if self.pipeline or (self.running and not self.running.response_complete):
                    # Responses go out in request order (RFC 9112 §9.3.2): the 101 waits for
                    # the responses to the requests before it (see on_response_complete).
                    self.pending_upgrade = rest
                    self.flow.pause_reading()
                else:
                    self._upgrade(rest)
        except httptools.HttpParserError as exc:
            # httptools re-raises a callback's exception as HttpParserCallbackError from it.
            cause = exc.__context__
            if isinstance(cause, _Refusal):
                self._refuse(cause.status, cause.reason)
            elif exc.args == ("Invalid HTTP version",):  # llhttp knows 0.9, 1.0, 1.1, 2.0
                self._refuse(505, "HTTP version not supported.")
            else:
                self._refuse(400, "Invalid HTTP request received.")

    def pause_writing(self) -> None:
        self.flow.pause_writing()

    def resume_writing(self) -> None:
        self.flow.resume_writing()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._expect_head()
        self.url = b""
        self.headers = []
        self.header_bytes = 0
        self.expect_100_continue = False
        self.connection_tokens = []
        self.hosts = 0
        self.upgrade_request = False
        # A copy of the connection's template shares its key table (no inserts, no resize);
        # only what differs per request is set: new dicts and a new headers list each time.
        scope = self.scope_template.copy()
        scope["asgi"] = {"version": self.asgi_version, "spec_version": "2.4"}
        scope["headers"] = self.headers
        scope["state"] = self.app_state.copy()
        scope["extensions"] = self.extensions.copy()
        self.scope = scope

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limit_request_line:
            raise _Refusal(414, "Request line too long.")

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        elif name == b"connection":
            self.connection_tokens += [t.strip() for t in value.lower().split(b",")]
        elif name == b"host":
            self.hosts += 1
        self.headers.append((name, value))
        if len(self.headers) > self.limit_request_fields:
            raise _Refusal(431, "Too many request header fields.")
        if len(name) + len(value) > self.limit_request_field_size:
            raise _Refusal(431, "Request header field too large.")

    def on_headers_complete(self) -> None:
        self.deadline = 0.0
        self.head_bytes = -1
        http_version = self.parser.get_http_version()
        method = self.parser.get_method()
        self.scope["method"] = method.decode("ascii")
        if http_version != "1.1":
            if http_version[:2] != "1.":
                # RFC 9110 §15.6.6: a major version we do not speak.
                raise _Refusal(505, "HTTP version not supported.")
            self.scope["http_version"] = http_version
        # RFC 9112 §3.2: HTTP/1.1 needs exactly one Host field; no version may send two.
        if self.hosts != 1 and (self.hosts or http_version != "1.0"):
            raise _Refusal(400, "Missing or repeated Host header.")
        if self.parser.should_upgrade() and handshake.is_websocket_upgrade(self.headers):
            if _has_body(self.headers):
                # RFC 6455 §4.1: the handshake is a GET without content; bytes after the head
                # are the client's first frames and must not be a body.
                raise _Refusal(400, "WebSocket upgrade request with a body.")
            self.upgrade_request = True
            return
        self._fill_path()
        # Too many connections or tasks: answer 503 instead of calling the app.
        if self.limit_concurrency is not None and (
            len(self.connections) > self.limit_concurrency
            or len(self.tasks) >= self.limit_concurrency
        ):
            app: Callable[..., Any] = service_unavailable
            logger.warning("Exceeded concurrency limit.")
        else:
            app = self.app
        self.cycle = RequestResponseCycle(
            scope=self.scope,
            protocol=self,
            # RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
            keep_alive=(
                b"close" not in self.connection_tokens
                if http_version != "1.0"
                else b"keep-alive" in self.connection_tokens
            ),
            expect_100_continue=self.expect_100_continue,
        )
        if self.running is None or self.running.response_complete:
            self._run(self.cycle, app)
        else:
            # Pipelined request: run it once the response in progress is done.
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, app))

    def on_body(self, body: bytes) -> None:
        if self.upgrade_request or self.cycle is None or self.cycle.response_complete:
            return
        self.cycle.body += body
        if len(self.cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        self.cycle.wake()

    def on_message_complete(self) -> None:
        if self.upgrade_request or self.cycle is None or self.cycle.response_complete:
            return
        self.cycle.more_body = False
        self.cycle.wake()

    # -- helpers ---------------------------------------------------------------------------

    def _fill_path(self) -> None:
        url = self.url
        # Origin form (RFC 9112 §3.2.1), what clients send: the path up to the "?", the query
        # after it, without building httptools' URL object (3,000 instructions a request).
        if url[:1] == b"/" and b"#" not in url:
            query_at = url.find(b"?")
            if query_at < 0:
                raw_path = url
                query = b""
            else:
                raw_path = url[:query_at]
                query = url[query_at + 1 :]
        else:  # absolute form, asterisk form, a fragment
            parsed = httptools.parse_url(url)
            # RFC 9110 §4.2.3: an empty path is "/".
            raw_path = parsed.path or b"/"
            query = parsed.query or b""
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        if self.root_path:
            self.scope["path"] = self.root_path + path
            self.scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        else:
            self.scope["path"] = path
            self.scope["raw_path"] = raw_path
        self.scope["query_string"] = query

    def _run(self, cycle: RequestResponseCycle, app: Callable[..., Any]) -> None:
        self.running = cycle
        # The task leaves ``tasks`` itself, at the end of run_asgi(): no done-callback, so no
        # call_soon() and loop-queue entry per request (-2,300 instructions a request).
        task = cycle.task = app_task(self.loop, cycle.run_asgi(app), "fastws.http")
        self.tasks.add(task)

    def _refuse(self, status: int, reason: str) -> None:
        running = self.running
        if running is not None and not running.response_complete:
            # The app is answering a request whose body turned out malformed: it sees the
            # client as gone; the client gets the error unless a response already started.
            running.disconnected = True
            running.wake()
            if running.response_started:
                self.flush()
                self.transport.close()
                return
        logger.warning(reason)
        self._respond_and_close(
            http11.simple_response(status, reason.encode(), self.server_state.default_headers)
        )

    def _respond_and_close(self, response: bytes) -> None:
        """Write a final response, then close without losing it.

        Closing a socket with unread input makes the kernel send RST, which can destroy the
        response before the client reads it. So: send it, half-close, discard what still
        arrives, and close on the client's EOF or after a short grace period.
        """
        self.discarding = True
        self.deadline = 0.0
        self.flush()
        self.transport.write(response)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_S, self._close_now)
        else:
            self.transport.close()

    def _close_now(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _upgrade(self, rest: bytes) -> None:
        self.flush()  # the responses before it: the WebSocket side writes to the socket itself
        self._fill_path()
        offer = handshake.validate_request(
            self.parser.get_method(), self.scope["http_version"], self.headers
        )
        allowed_origins = self.config.allowed_origins
        if allowed_origins is not None and isinstance(offer, handshake.Offer):
            # --ws-allowed-origins: refuse cross-site upgrades before the app sees them.
            offer = origins.check_origin(self.headers, allowed_origins) or offer
        if isinstance(offer, handshake.Rejection):
            logger.info("WebSocket upgrade refused: %s", offer.reason)
            stats = self.server_state.stats
            if stats is not None:
                stats.refuse(_refusal_reason(offer, allowed_origins is not None))
            self._respond_and_close(
                handshake.rejection_response(offer, self.server_state.default_headers)
            )
            return
        if self.limit_concurrency is not None and (
            len(self.connections) > self.limit_concurrency
            or len(self.tasks) >= self.limit_concurrency
        ):
            logger.warning("Exceeded concurrency limit.")
            if self.server_state.stats is not None:
                self.server_state.stats.refuse("limit")
            self._refuse(503, "Service Unavailable")
            return
        self.connections.discard(self)
        self.deadline = 0.0
        # The WebSocket side takes this flow control over, the transport's write state included.
        self.flow.resume_reading()
        protocol = WebSocketProtocol(
            self.config,
            self.server_state,
            self.app_state,
            self.scope,
            offer,
            self.transport,
            self.client,
            self.server,
            self.loop,
            self.flow,
        )
        self.transport.set_protocol(protocol)
        # The parser holds this protocol for its callbacks: break the cycle now, so that the
        # HTTP side of an upgraded connection is freed at once, not by a later GC pass.
        self.parser = None  # type: ignore[assignment]
        protocol.start(rest)

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        self.responses += 1
        if self.transport.is_closing():
            return
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._run(cycle, app)
        else:
            self.flush()  # the last of a pipelined batch: the held responses go out together
            if self.pending_upgrade is not None:
                rest, self.pending_upgrade = self.pending_upgrade, None
                self._upgrade(rest)
                return
            self.deadline = self.loop.time() + self.timeout_keep_alive
        if self.pending_upgrade is None and self.flow.read_paused:
            self.flow.resume_reading()

    # -- response bytes --------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Every byte of a response goes out through here. While pipelined requests wait
        behind the one being answered, its response is held, and the batch's responses go out
        in one write when the last one is complete (one send() instead of one per response).
        Held bytes never wait long: at _HOLD_MAX they are written, and at the end of a loop
        pass in which no response was completed (the app waits on something) too."""
        held = self.held
        if held is None:
            if not self.pipeline:
                self.transport.write(data)
                return
            held = self.held = []
            self.held_bytes = 0
            if not self.hold_check_due:
                self.hold_check_due = True
                self.held_mark = self.responses
                self.loop.call_soon(self._hold_check)
        held.append(data if type(data) is bytes else bytes(data))
        self.held_bytes += len(data)
        if self.held_bytes >= _HOLD_MAX:
            self.flush()

    def flush(self) -> None:
        """Write the held responses (before anything else reaches the transport)."""
        held = self.held
        if held is not None:
            self.held = None
            self.transport.write(held[0] if len(held) == 1 else b"".join(held))

    def _hold_check(self) -> None:
        # Runs after the tasks the loop pass that scheduled it had queued (the next request's
        # first step among them).
        self.hold_check_due = False
        if self.held is None:
            return
        if self.responses == self.held_mark:
            self.flush()  # no response completed since the last check: nothing to wait for
        else:
            self.hold_check_due = True
            self.held_mark = self.responses
            self.loop.call_soon(self._hold_check)

    def _expect_head(self) -> None:
        self.head_bytes = 0
        timeout = self.timeout_handshake
        self.deadline = self.loop.time() + timeout if timeout else 0.0

    def expire(self) -> None:
        """The deadline passed: a request head took too long, or keep-alive idled out."""
        self.deadline = 0.0
        if not self.transport.is_closing():
            self.flush()
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: close idle connections; finish the response in flight, then close."""
        if self.running is None or self.running.response_complete:
            self.flush()
            self.transport.close()
        else:
            self.running.keep_alive = False


class HttpProtocol(_Http, BufferedOnly):
    """What the transport talks to (asyncio's loop wants a BufferedProtocol instance)."""

    __slots__ = ()


class _Refusal(Exception):
    """Raised from a parser callback: answer ``status`` and close (a limit, a MUST broken)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _refusal_reason(rejection: handshake.Rejection, origins_checked: bool) -> str:
    """--metrics: why an upgrade was refused, as fastws_websocket_handshakes_refused_total's
    ``reason`` label (docs/metrics.md)."""
    if rejection.status == 426:
        return "version"
    if rejection.status == 403 and origins_checked:
        return "origin"
    if "Key" in rejection.reason:
        return "key"
    return "bad_request"


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _addr(info: Any) -> tuple[str, int] | None:
    if isinstance(info, tuple) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


async def service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable"})


class RequestResponseCycle:
    """One request and its response: the ASGI receive() and send() of an http scope."""

    def __init__(
        self,
        scope: dict[str, Any],
        protocol: _Http,
        keep_alive: bool,
        expect_100_continue: bool,
    ) -> None:
        self.scope = scope
        self.protocol = protocol
        self.transport = protocol.transport
        self.flow = protocol.flow
        self.default_headers = protocol.server_state.default_headers
        self.loop = protocol.loop
        self.task: asyncio.Task[None] | None = None  # the task running run_asgi()
        # What receive() awaits when it must wait (for body bytes, or for the client to go or
        # the response to end), made only then; wake() resolves it.
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.keep_alive = keep_alive
        self.waiting_for_100_continue = expect_100_continue
        self.body = b""
        self.more_body = True
        self.request_complete = False  # the last http.request was delivered
        self.response_started = False
        self.response_complete = False
        self.chunked_encoding: bool | None = None
        self.expected_content_length = 0
        self.status = 0
        self.no_body = False
        # An http.response.start's head, until the first body message decides its framing.
        self._head: list[bytes] | None = None
        # --metrics: when the request's head was complete (loop time), for its duration.
        self.stats = protocol.server_state.stats
        # Durations on a fine clock: uvloop's loop.time() is the pass's cached millisecond.
        self.started_at = time.perf_counter() if self.stats is not None else 0.0

    async def run_asgi(self, app: Callable[..., Any]) -> None:
        try:
            result = await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            if caused_by_disconnect(exc):
                logger.debug("Client disconnected during the response: %r", exc)
            else:
                logger.error("Exception in ASGI application\n", exc_info=exc)
            if not self.response_started or self._head is not None:
                # Nothing is on the wire yet (the head waits for the first body message).
                self._head = None
                self._send_500()
            else:
                self._close()
            if not isinstance(exc, Exception):
                raise
        else:
            if result is not None:
                logger.error("ASGI callable should return None, but returned '%s'.", result)
            if not self.response_started and not self.disconnected:
                logger.error("ASGI callable returned without starting response.")
                self._send_500()
            elif not self.response_complete and not self.disconnected:
                logger.error("ASGI callable returned without completing response.")
                self._close()
        finally:
            self.protocol.tasks.discard(self.task)
            self.protocol = None  # type: ignore[assignment]

    def _send_500(self) -> None:
        if self.disconnected or self.transport.is_closing():
            return
        self._write(http11.simple_response(500, b"Internal Server Error", self.default_headers))
        self._close()
        self.response_started = self.response_complete = True
        if self.stats is not None:
            self.stats.http_response(500, time.perf_counter() - self.started_at)

    def send(self, message: dict[str, Any]) -> Awaitable[None]:
        """ASGI send(). A response start or body that can go out now is handled during the
        call, which then returns SENT, an awaitable already complete: no coroutine per message
        (the bench app's GET: -2,200 instructions a request). An error it meets is raised where
        the app awaits, as from a coroutine. Everything else (writing paused, the client gone,
        pathsend) runs in the _send() coroutine."""
        if type(message) is dict and not self.flow.write_paused and not self.disconnected:
            try:
                message_type = message["type"]
                if message_type != "http.response.pathsend":
                    self._send_message(message, message_type)
                    return SENT
            except Exception as exc:
                return _raising(exc)
        return self._send(message)

    async def _send(self, message: dict[str, Any]) -> None:
        message_type = message["type"]
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            raise ClientDisconnected
        if self._send_message(message if type(message) is dict else dict(message), message_type):
            await self._pathsend(message)

    def _send_message(self, message: dict[str, Any], message_type: Any) -> bool:
        """The part of send() that never waits: checks the message against the response's
        state and writes what it can. True for an http.response.pathsend, which the caller
        then awaits (_pathsend)."""
        if not self.response_started:
            if message_type != "http.response.start":
                raise RuntimeError(f"Expected 'http.response.start', got '{message_type}'.")
            self._start(message)
            return False
        if self.response_complete:
            raise RuntimeError(
                f"Unexpected ASGI message '{message_type}' after response completed."
            )
        if message_type != "http.response.body":
            if message_type == "http.response.pathsend":
                return True
            raise RuntimeError(
                f"Expected 'http.response.body' or 'http.response.pathsend', got '{message_type}'."
            )
        body = message.get("body", b"")
        more_body = message.get("more_body", False)
        head = self._head
        if head is not None:
            # First body message: decide the framing now, so that a single-message response
            # goes out with a content-length, in one write.
            self._end_head(head, None if more_body else len(body))
            if self.no_body or not body or self.chunked_encoding:
                self._write(b"".join(head))
            else:
                self._count(len(body))
                head.append(body)
                body = b""
                self._write(b"".join(head))
        if self.no_body:
            pass
        elif self.chunked_encoding:
            if body:
                self._write(b"%x\r\n%b\r\n" % (len(body), body))
            if not more_body:
                self._write(b"0\r\n\r\n")
        elif body:
            self._count(len(body))
            self._write(body)
        if not more_body:
            self._complete()
        return False

    def _end_head(self, head: list[bytes], length: int | None) -> None:
        """Add the framing headers to the head (``length``: the whole body's, if known)."""
        self._head = None
        if self.chunked_encoding is None and not self.no_body:
            if length is not None:
                head.append(b"content-length: %d\r\n" % length)
                self.expected_content_length = length
                self.chunked_encoding = False
            elif self.scope["http_version"] != "1.0":
                head.append(b"transfer-encoding: chunked\r\n")
                self.chunked_encoding = True
            else:  # HTTP/1.0 streaming: the end of the body is the end of the connection
                self.keep_alive = False
                self.expected_content_length = -1
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        elif self.scope["http_version"] == "1.0":
            head.append(b"connection: keep-alive\r\n")
        head.append(b"\r\n")

    def _complete(self) -> None:
        if self.expected_content_length > 0 and not self.no_body:
            raise RuntimeError("Response content shorter than Content-Length")
        self.response_complete = True
        self.wake()
        if self.stats is not None:
            self.stats.http_response(self.status, time.perf_counter() - self.started_at)
        if self.protocol.access_log:
            access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                _format_client(self.scope.get("client")),
                self.scope["method"],
                _quoted_path(self.scope),
                self.scope["http_version"],
                self.status,
            )
        if not self.keep_alive:
            self._close()
        self.protocol.on_response_complete()

    async def _pathsend(self, message: dict[str, Any]) -> None:
        """``http.response.pathsend`` (ASGI extension): the file at ``path`` is the rest of the
        body. Without TLS, os.sendfile() moves it from the page cache to the socket while the
        transport holds nothing; when the socket is full, one chunk goes through the transport
        so that its drained buffer says when to go on. With TLS, or chunked framing, chunks
        are read and written."""
        path = message.get("path")
        if not isinstance(path, str) or not os.path.isabs(path):
            raise RuntimeError(
                f"http.response.pathsend needs an absolute 'path' (str), got {path!r}."
            )
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed in finally, across awaits
        except OSError as exc:
            raise RuntimeError(f"http.response.pathsend cannot open {path!r}: {exc}") from exc
        try:
            size = os.fstat(file.fileno()).st_size
            head = self._head
            if head is not None:
                if self.chunked_encoding is False and self.expected_content_length != size:
                    raise RuntimeError(
                        f"http.response.pathsend: content-length {self.expected_content_length} "
                        f"is not the size of {path!r} ({size} bytes)."
                    )
                self._end_head(head, size)
                self._write(b"".join(head))
            if not self.no_body and size:
                if not self.chunked_encoding:
                    self._count(size)
                if self.chunked_encoding or self.protocol.scheme == "https":
                    await self._copy_file(file, size)
                else:
                    await self._sendfile(file, size)
        finally:
            file.close()
        self._complete()

    async def _copy_file(self, file: Any, size: int) -> None:
        offset = 0
        while offset < size:
            chunk = os.pread(file.fileno(), min(size - offset, _FILE_CHUNK), offset)
            if not chunk:
                raise RuntimeError(_SHRANK)
            offset += len(chunk)
            await self._wait_writable()
            if self.chunked_encoding:
                self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            else:
                self._write(chunk)
        if self.chunked_encoding:
            self._write(b"0\r\n\r\n")

    async def _sendfile(self, file: Any, size: int) -> None:
        self.protocol.flush()  # what is held goes first: sendfile() writes to the socket itself
        transport = self.transport
        sock = transport.get_extra_info("socket")
        out_fd = -1 if sock is None else sock.fileno()
        in_fd = file.fileno()
        offset = 0
        # Paused at any buffered byte, resumed once the buffer is empty: the moment when
        # sending on the socket directly keeps the order.
        limits = transport.get_write_buffer_limits()
        transport.set_write_buffer_limits(high=0)
        try:
            while offset < size:
                await self._wait_writable()
                sent = 0
                if out_fd >= 0 and not transport.get_write_buffer_size():
                    try:
                        sent = os.sendfile(out_fd, in_fd, offset, min(size - offset, 1 << 24))
                    except BlockingIOError:
                        sent = 0
                    except OSError:
                        # The client went away: the transport finds out and reports it.
                        out_fd = -1
                if sent:
                    offset += sent
                    continue
                # The socket is full (or the transport holds bytes, or sendfile() met the
                # file's end early): one chunk through the transport, whose buffer then pauses
                # us until the socket has drained.
                chunk = os.pread(in_fd, min(size - offset, _FILE_CHUNK), offset)
                if not chunk:
                    raise RuntimeError(_SHRANK)
                offset += len(chunk)
                transport.write(chunk)
        finally:
            if not transport.is_closing():
                transport.set_write_buffer_limits(high=limits[1], low=limits[0])

    async def _wait_writable(self) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected or self.transport.is_closing():
            raise ClientDisconnected

    def _write(self, data: bytes) -> None:
        """Response bytes, through the connection's writer (HttpProtocol.write: held behind
        pipelined requests) while the app runs; straight to the transport after."""
        protocol = self.protocol
        if protocol is None:
            self.transport.write(data)
        else:
            protocol.write(data)

    def _close(self) -> None:
        """End the connection after what was written (held responses included)."""
        if self.protocol is not None:
            self.protocol.flush()
        self.transport.close()

    def _count(self, n: int) -> None:
        if self.expected_content_length >= 0:
            if n > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= n

    def _start(self, message: dict[str, Any]) -> None:
        status = message["status"]
        # Everything is checked before the response counts as started, so a header the app
        # may not send fails its send() with a RuntimeError and the client still gets a 500.
        head, headers = http11.start_head(status, message.get("headers"), self.default_headers)
        chunked: bool | None = None
        content_length = 0
        keep_alive = self.keep_alive
        for name, value in headers:
            if name in _FRAMING:
                if name == b"content-length":
                    length = _content_length(value)
                    if chunked is None:
                        content_length = length
                    elif chunked:
                        raise RuntimeError(_BOTH_FRAMINGS)
                    elif length != content_length:
                        raise RuntimeError(
                            f"Response has two different content-length values {content_length} "
                            f"and {length} (RFC 9110 §8.6)."
                        )
                    chunked = False
                elif name == b"transfer-encoding":
                    if not _is_chunked(value):
                        raise RuntimeError(
                            f"Unsupported response transfer-encoding {value!r}: fastws frames the "
                            "body itself; send 'chunked' or no transfer-encoding."
                        )
                    if chunked is False:
                        raise RuntimeError(_BOTH_FRAMINGS)
                    chunked = True
                    content_length = 0
                elif value.lower() == b"close":  # connection
                    keep_alive = False
        self.chunked_encoding = chunked
        self.expected_content_length = content_length
        self.keep_alive = keep_alive
        self.response_started = True
        self.waiting_for_100_continue = False
        self.status = status
        # RFC 9110 §6.4.1: no content after HEAD, 1xx, 204 or 304.
        self.no_body = self.scope["method"] == "HEAD" or status in (204, 304) or status < 200
        self._head = head

    async def receive(self) -> dict[str, Any]:
        if self.waiting_for_100_continue and not self.disconnected:
            if not self.transport.is_closing():
                self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.protocol.flush()  # the client waits for it before it sends the body
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            # Wait for body bytes, or, once the whole body was delivered, for the client to go
            # or the response to end (ASGI: then http.disconnect).
            if (self.more_body and not self.body) or self.request_complete:
                waiter = self.waiter = self.loop.create_future()
                try:
                    await waiter
                finally:
                    self.waiter = None
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        message = {"type": "http.request", "body": self.body, "more_body": self.more_body}
        self.body = b""
        self.request_complete = not self.more_body
        return message

    def wake(self) -> None:
        """Something receive() may be waiting for happened (body bytes, the body's end, the
        client gone, the response complete)."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


_NO_SETTINGS: dict[str, Any] = {}  # the value of an extension that has no settings
_FILE_CHUNK = 256 * 1024  # bytes read per write where a file cannot go by sendfile()


_SHRANK = "http.response.pathsend: the file shrank while being sent."


_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))


def _content_length(value: bytes) -> int:
    if not value.strip().isdigit():
        raise RuntimeError(f"Invalid response content-length {value!r}: expected digits.")
    return int(value)


def _is_chunked(value: bytes) -> bool:
    return value.lower().replace(b" ", b"").replace(b"\t", b"") == b"chunked"


_BOTH_FRAMINGS = (
    "Response has both content-length and transfer-encoding: chunked "
    "(RFC 9112 §6.1: a sender MUST NOT send both); send one of them, or neither."
)


def _format_client(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"


def _quoted_path(scope: dict[str, Any]) -> str:
    query = scope.get("query_string", b"")
    quoted = urllib.parse.quote(scope["path"])
    return f"{quoted}?{query.decode('ascii')}" if query else quoted

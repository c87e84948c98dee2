"""``Config``: every server option, its single default, its validation, and ``load()``.

This is the only place an option's default is written: the CLI reads its click defaults
from ``Config.__init__``'s signature (``option_default``) and validates values with the
same checks (``option_error``), and ``fastws.run()`` builds a ``Config`` from its keyword
arguments. Names, defaults and meanings follow uvicorn's ``Config``; fastws-only options
(``ws_close_timeout``, ``timeout_handshake``, ``limit_request_*``,
``ws_allowed_origins``) carry names uvicorn does not use.

Constructing a ``Config`` is cheap: it validates, loads ``env_file``, configures logging
and resolves values that come from the environment (``workers``, ``forwarded_allow_ips``).
``load()`` does the expensive, fallible part: imports the app, calls a factory, adapts
ASGI2 apps, adds the proxy-headers middleware, builds the TLS context and the default
response headers. This module does not bind listening sockets for the server (apart from
``bind_socket()`` for the worker supervisor), run loops, or speak any protocol.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import Any, Literal, get_args

from fastws.importer import ImportFromStringError, import_from_string
from fastws.logging import (
    ERROR_LOGGER_NAME,
    LOG_LEVELS,
    LOGGING_CONFIG,
    configure_logging,
)
from fastws.loops import LoopType, uvloop_available
from fastws.proxy_headers import (
    ASGI3App,
    ProxyHeadersMiddleware,
    Receive,
    Scope,
    Send,
    parse_trusted_hosts,
    trusted_host_error,
)
from fastws.ws.origins import AllowedOrigins, compile_origins

__all__ = [
    "STARTUP_FAILURE",
    "Config",
    "HTTPProtocolType",
    "InterfaceType",
    "LifespanType",
    "LoopType",
    "WSProtocolType",
    "option_default",
    "option_error",
    "ssl_ciphers_error",
]

HTTPProtocolType = Literal["auto", "h11", "httptools", "zttp"]
"""uvicorn's ``--http`` values; accepted for compatibility, fastws always uses httptools."""
WSProtocolType = Literal["auto", "websockets", "websockets-sansio", "wsproto"]
"""uvicorn's ``--ws`` values; accepted for compatibility, fastws always uses its own."""
LifespanType = Literal["auto", "on", "off"]
InterfaceType = Literal["auto", "asgi3", "asgi2"]
WSSendOverflowType = Literal["wait", "close"]
"""What send() does for a client that reads slower than the app sends (docs/pubsub.md)."""

STARTUP_FAILURE = 3
"""Exit status when the server cannot start (app import, TLS files, bind); uvicorn's value."""

SSL_PROTOCOL_VERSION: int = int(ssl.PROTOCOL_TLS_SERVER)
DEFAULT_FORWARDED_ALLOW_IPS = "127.0.0.1,::1"
SERVER_HEADER = (b"server", b"fastws")

logger = logging.getLogger(ERROR_LOGGER_NAME)

# --------------------------------------------------------------------------------------
# Validation. Each check returns None when the value is fine, else the reason it is not,
# worded to follow "invalid <option>: ". The CLI turns a reason into a usage error for
# the matching flag; Config.__init__ turns it into a ValueError naming the option.

_Check = Callable[[Any], "str | None"]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _int_check(minimum: int, *, optional: bool = False, maximum: int | None = None) -> _Check:
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if not _is_int(value):
            return f"must be an integer, got {value!r}"
        if maximum is not None and not minimum <= value <= maximum:
            return f"must be between {minimum} and {maximum}, got {value}"
        if value < minimum:
            return f"must be at least {minimum}, got {value}"
        return None

    return check


def _seconds_check(*, optional: bool = False, positive: bool = False) -> _Check:
    def check(value: Any) -> str | None:
        if value is None and optional:
            return None
        if not _is_number(value):
            return f"must be a number of seconds, got {value!r}"
        if value < 0 or (positive and value == 0):
            return f"must be {'greater than' if positive else 'at least'} 0, got {value}"
        return None

    return check


def _choice_check(alias: Any) -> _Check:
    choices: tuple[str, ...] = get_args(alias)

    def check(value: Any) -> str | None:
        if value not in choices:
            return f"{value!r} is not one of {', '.join(choices)}"
        return None

    return check


def _check_loop(value: Any) -> str | None:
    reason = _choice_check(LoopType)(value)
    if reason is None and value == "uvloop" and not uvloop_available():
        return "'uvloop' was requested but uvloop is not installed (pip install uvloop)"
    return reason


def _check_pubsub(value: Any) -> str | None:
    if value is None or (
        isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://"))
    ):
        return None
    return f"must be a redis:// (or rediss://, unix://) URL, got {value!r}"


def _check_optional_str(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return None
    return f"must be a non-empty string, got {value!r}"


def _check_path(value: Any) -> str | None:
    if value is None or isinstance(value, (str, os.PathLike)):
        return None
    return f"must be a file path, got {value!r}"


def _check_existing_file(value: Any) -> str | None:
    reason = _check_path(value)
    if reason is None and value is not None and not os.path.isfile(value):
        return f"file {os.fspath(value)!r} does not exist"
    return reason


def _check_log_config(value: Any) -> str | None:
    return None if isinstance(value, dict) else _check_existing_file(value)


def _check_log_level(value: Any) -> str | None:
    if value is None or _is_int(value):
        return None
    if isinstance(value, str) and value.lower() in LOG_LEVELS:
        return None
    return f"{value!r} is not one of {', '.join(LOG_LEVELS)} or a number"


def _check_string_list(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, Sequence) and all(isinstance(item, str) for item in value):
        return None
    return f"must be a comma-separated string or a list of strings, got {value!r}"


# RFC 9110 §5.6.2 token characters, for header names.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


def header_error(name: Any, value: Any) -> str | None:
    """Return why ``(name, value)`` cannot be sent as a response header, or None if it can."""
    if not isinstance(name, str) or not isinstance(value, str):
        return f"header name and value must be strings, got {(name, value)!r}"
    if not _TOKEN.match(name):
        return f"header name {name!r} is not a valid HTTP token"
    # CR, LF or NUL in a value would let it end the header early (RFC 9110 §5.5).
    if any(c in value for c in "\r\n\0"):
        return f"header {name!r} has a CR, LF or NUL in its value"
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return f"header {name!r} has a value that is not latin-1"
    return None


def _check_headers(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        return f"must be a list of (name, value) pairs, got {value!r}"
    for pair in value:
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            return f"must be a list of (name, value) pairs, got item {pair!r}"
        reason = header_error(pair[0], pair[1])
        if reason is not None:
            return reason
    return None


def _check_app(value: Any) -> str | None:
    if isinstance(value, str) or callable(value):
        return None
    return f"must be an ASGI application or a '<module>:<attribute>' string, got {value!r}"


def _check_ssl_cert_reqs(value: Any) -> str | None:
    valid = (ssl.CERT_NONE, ssl.CERT_OPTIONAL, ssl.CERT_REQUIRED)
    if _is_int(value) and value in valid:
        return None
    return f"must be one of {', '.join(str(int(v)) for v in valid)} (see ssl.VerifyMode)"


# The ssl.PROTOCOL_* values a server context can use (PROTOCOL_TLS_CLIENT cannot accept).
_SERVER_SSL_VERSIONS = {
    int(getattr(ssl, name)): name
    for name in ("PROTOCOL_TLS", "PROTOCOL_TLSv1", "PROTOCOL_TLSv1_1", "PROTOCOL_TLSv1_2")
    if hasattr(ssl, name)
} | {SSL_PROTOCOL_VERSION: "PROTOCOL_TLS_SERVER"}


def _check_ssl_version(value: Any) -> str | None:
    if _is_int(value) and value in _SERVER_SSL_VERSIONS:
        return None
    choices = ", ".join(
        f"{number} ({name})" for number, name in sorted(_SERVER_SSL_VERSIONS.items())
    )
    return f"must be one of {choices}, got {value!r}"


def ssl_ciphers_error(value: str) -> str | None:
    """Why OpenSSL refuses the cipher string ``value``, or None when it accepts it.

    Checked only when TLS is on (``ssl_certfile`` given): without it the string is unused,
    as in uvicorn. Both ``Config`` and the CLI call this, so a typo is a usage error rather
    than a failed start.
    """
    # OpenSSL is the only judge of a cipher string; asking it costs a throwaway context.
    try:
        ssl.SSLContext(SSL_PROTOCOL_VERSION).set_ciphers(value)
    except ssl.SSLError:
        return f"OpenSSL accepts no cipher in {value!r}"
    return None


def _split_list(value: str | Sequence[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item.strip()]


def _check_forwarded_allow_ips(value: Any) -> str | None:
    reason = _check_string_list(value)
    if reason is not None or value is None:
        return reason
    for entry in _split_list(value):
        reason = trusted_host_error(entry)
        if reason is not None:
            return reason
    return None


def _check_allowed_origins(value: Any) -> str | None:
    if value is None:
        return None
    reason = _check_string_list(value)
    if reason is not None:
        return reason
    try:
        compile_origins(_split_list(value))
    except ValueError as exc:
        return str(exc)
    return None


def _check_str(value: Any) -> str | None:
    return None if isinstance(value, str) else f"must be a string, got {value!r}"


_CHECKS: dict[str, _Check] = {
    "app": _check_app,
    "host": _check_str,
    "port": _int_check(0, maximum=65535),
    "uds": _check_optional_str,
    "fd": _int_check(0, optional=True),
    "loop": _check_loop,
    "http": _choice_check(HTTPProtocolType),
    "ws": _choice_check(WSProtocolType),
    "ws_max_size": _int_check(1),
    "ws_max_queue": _int_check(1),
    "ws_ping_interval": _seconds_check(optional=True),
    "ws_ping_timeout": _seconds_check(optional=True),
    "ws_close_timeout": _seconds_check(),
    "ws_deflate_min_size": _int_check(0),
    "ws_max_write_buffer": _int_check(1),
    "ws_send_overflow": _choice_check(WSSendOverflowType),
    "pubsub": _check_pubsub,
    "metrics_address": _check_str,
    "metrics_port": _int_check(0, maximum=65535),
    "lifespan": _choice_check(LifespanType),
    "env_file": _check_existing_file,
    "log_config": _check_log_config,
    "log_level": _check_log_level,
    "interface": _choice_check(InterfaceType),
    "reload_dirs": _check_string_list,
    "reload_includes": _check_string_list,
    "reload_excludes": _check_string_list,
    "reload_delay": _seconds_check(),
    "workers": _int_check(1, optional=True),
    "forwarded_allow_ips": _check_forwarded_allow_ips,
    "root_path": _check_str,
    "limit_concurrency": _int_check(1, optional=True),
    "limit_max_requests": _int_check(1, optional=True),
    "limit_max_requests_jitter": _int_check(0),
    "backlog": _int_check(1),
    "timeout_keep_alive": _seconds_check(),
    "timeout_notify": _seconds_check(),
    "timeout_graceful_shutdown": _seconds_check(optional=True),
    "timeout_worker_healthcheck": _seconds_check(positive=True),
    "timeout_handshake": _seconds_check(positive=True),
    "ssl_keyfile": _check_path,
    "ssl_certfile": _check_path,
    "ssl_keyfile_password": _check_optional_str,
    "ssl_version": _check_ssl_version,
    "ssl_cert_reqs": _check_ssl_cert_reqs,
    "ssl_ca_certs": _check_path,
    "ssl_ciphers": _check_optional_str,
    "headers": _check_headers,
    "app_dir": _check_str,
    "h11_max_incomplete_event_size": _int_check(1, optional=True),
    "limit_request_line": _int_check(1),
    "limit_request_fields": _int_check(1),
    "limit_request_field_size": _int_check(1),
    "ws_allowed_origins": _check_allowed_origins,
}


def option_error(name: str, value: Any) -> str | None:
    """Return why ``value`` is invalid for option ``name``, or None when it is acceptable.

    Options without a check (the booleans) accept anything. The CLI uses this in its
    option callbacks, so a bad flag is a usage error before any ``Config`` exists.
    """
    check = _CHECKS.get(name)
    return None if check is None else check(value)


def option_default(name: str) -> Any:
    """Return the default of ``Config`` option ``name`` (read from ``Config.__init__``).

    Raises:
        KeyError: ``name`` is not a ``Config`` option with a default.
    """
    parameter = inspect.signature(Config.__init__).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise KeyError(name)
    return parameter.default


# --------------------------------------------------------------------------------------


class _ASGI2Adapter:
    """Presents an ASGI2 app (``app(scope)`` returning ``instance(receive, send)``) as ASGI3."""

    def __init__(self, app: Callable[[Scope], Any]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        instance = self.app(scope)
        await instance(receive, send)


def _is_asgi3(app: Any) -> bool:
    """Guess the ASGI version of ``app`` the way uvicorn's ``--interface auto`` does.

    A class is ASGI3 when its instances are awaitable (``App(scope, receive, send)`` is
    the coroutine); anything else is ASGI3 when it, or its ``__call__``, is a coroutine
    function. ASGI2 apps are plain callables returning an instance.
    """
    if inspect.isclass(app):
        return hasattr(app, "__await__")
    if inspect.iscoroutinefunction(app):
        return True
    return callable(app) and inspect.iscoroutinefunction(app.__call__)


def _looks_like_factory(app: Any) -> bool:
    """Whether ``app`` is a function or class callable with no arguments.

    No ASGI app fits that shape (ASGI2 takes a scope, ASGI3 three arguments), so such an
    object passed without ``--factory`` is a factory the user forgot to flag.
    """
    if not (inspect.isfunction(app) or inspect.isclass(app)) or inspect.iscoroutinefunction(app):
        return False
    if inspect.isclass(app) and hasattr(app, "__await__"):
        return False
    try:
        inspect.signature(app).bind()
    except (TypeError, ValueError):
        return False
    return True


class Config:
    """Server configuration; see the module docstring for what happens when.

    Every argument after ``app`` is keyword-only and keeps uvicorn's name and default.
    Arguments marked *accepted for compatibility* exist so that uvicorn scripts and
    ``uvicorn.run(...)`` calls keep working; fastws stores them and, where it has no use
    for them, logs that they are ignored.

    Args:
        app: an ASGI application, or ``"<module>:<attribute>"`` naming one.
        host: address to bind; a ``:`` in it means IPv6.
        port: TCP port to bind; 0 picks a free one.
        uds: bind this UNIX domain socket path instead of host/port.
        fd: serve on this already-open socket file descriptor instead.
        loop: event loop, see ``fastws.loops``.
        http: accepted for compatibility; fastws always parses HTTP/1.1 with httptools.
        http2: accepted for compatibility; fastws does not speak HTTP/2.
        ws: accepted for compatibility; fastws always uses its own WebSocket code.
        ws_max_size: largest WebSocket message accepted, in bytes (close 1009 above it).
        ws_max_queue: received messages queued for the app before reading pauses.
        ws_ping_interval: seconds between keepalive pings; None or 0 disables them. Pings
            and their timeouts are checked twice a second (one sweep, no timer per
            connection), so both are kept to within 0.5 s.
        ws_ping_timeout: seconds to wait for a pong before closing; None or 0 waits forever.
        ws_per_message_deflate: negotiate permessage-deflate (RFC 7692) when offered.
        ws_close_timeout: seconds to wait for the peer's close frame after sending ours.
        ws_deflate_min_size: with permessage-deflate, messages shorter than this many bytes
            are sent uncompressed (compressing them costs more than it saves); 0: compress all.
        ws_max_write_buffer: bytes a WebSocket may hold waiting to be written (the client
            reads slower than it is sent to). A publish (docs/pubsub.md) that would go past
            it closes the connection with 1013 instead, and never waits.
        ws_send_overflow: what send() does once the client's buffer is over the transport's
            high-water mark: ``wait`` until it drains (ASGI backpressure), or ``close``: write
            without waiting, closing with 1013 past ``ws_max_write_buffer``, as a publish does.
        pubsub: ``redis://host:port/db``: share pub/sub topics with the other workers and
            servers using that Redis (fastws.ws.pubsub_redis); None: this process alone.
        metrics: serve Prometheus metrics (docs/metrics.md; needs prometheus-client, the
            ``metrics`` extra) on ``metrics_address``:``metrics_port``, an HTTP listener of its
            own; with ``workers``, the supervisor serves every worker's in one scrape.
        metrics_address: the address the metrics listener binds to.
        metrics_port: the port of the metrics listener (0: one the OS picks).
        lifespan: run the ASGI lifespan protocol: auto (if the app supports it), on, off.
        env_file: dotenv file loaded into ``os.environ`` (existing variables win).
        log_config: ``dictConfig`` dict, path of a .json/.yaml/.ini file, or None to
            leave logging alone.
        log_level: level name (``critical`` ... ``trace``) or number for the fastws loggers.
        access_log: False silences ``fastws.access``.
        use_colors: force coloured log output on or off; None decides per stream.
        interface: ASGI version of the app; auto detects it.
        reload: restart the server when watched files change (development; needs watchfiles).
        reload_dirs: directories --reload watches (default: the current directory).
        reload_includes: glob patterns of files --reload watches (default ``*.py``).
        reload_excludes: glob patterns of files --reload ignores.
        reload_delay: seconds to wait after a change before restarting.
        workers: worker processes; None reads ``$WEB_CONCURRENCY``, else 1.
        proxy_headers: apply X-Forwarded-For/-Proto from ``forwarded_allow_ips`` peers.
        server_header: send ``server: fastws`` unless ``headers`` has its own.
        date_header: send a ``date`` header (written by the server).
        forwarded_allow_ips: trusted proxies (IPs, CIDRs, literals, ``*``), as a
            comma-separated string or a list; None reads ``$FORWARDED_ALLOW_IPS``, else
            ``127.0.0.1,::1``.
        root_path: ASGI ``root_path`` for an app mounted below a URL prefix.
        limit_concurrency: connections plus tasks allowed before answering 503.
        limit_max_requests: requests a worker serves before exiting (to be replaced).
        limit_max_requests_jitter: up to this many extra requests, per worker at random,
            so that workers do not all restart at once.
        backlog: listen(2) backlog.
        timeout_keep_alive: seconds an idle keep-alive connection stays open.
        timeout_notify: accepted for compatibility (uvicorn's worker-notify period).
        timeout_graceful_shutdown: seconds to wait for connections on shutdown; None waits.
        timeout_worker_healthcheck: seconds a worker gets to answer a supervisor health check.
        timeout_handshake: seconds a client gets to send a complete request head.
        ssl_keyfile: private key file (PEM); may be omitted when the cert file holds it.
        ssl_certfile: certificate chain file (PEM); enables TLS.
        ssl_keyfile_password: password of an encrypted key file.
        ssl_version: ``ssl.PROTOCOL_*`` constant for the context.
        ssl_cert_reqs: ``ssl.VerifyMode`` for client certificates.
        ssl_ca_certs: CA bundle to verify client certificates with.
        ssl_ciphers: OpenSSL cipher string; None keeps OpenSSL's defaults.
        headers: extra default response headers as ``(name, value)`` pairs.
        factory: ``app`` is a zero-argument callable returning the ASGI app.
        app_dir: directory put first on ``sys.path`` before importing a string ``app``.
        h11_max_incomplete_event_size: accepted for compatibility; see ``limit_request_*``.
        reset_contextvars: accepted for compatibility; ignored.
        limit_request_line: longest request target (path and query), in bytes; 414 above it.
        limit_request_fields: most header fields a request may carry (431 above it).
        limit_request_field_size: longest single header field, name and value, in bytes
            (431 above it). The three defaults serve what real clients send: a 10 KB query
            string or a 9 KB GraphQL GET fits the 16 KiB target, a 12 KB Cookie header the
            16 KiB field (AWS's Application Load Balancer stops at 16 KiB for the request
            line and for one header too, so traffic that came through one always fits), and
            200 fields leave room for what proxies add to 120 application headers.
            gunicorn's and Apache's 8190 / 100 / 8190 refuse all four. A request head as a
            whole may take line + fields x (field + 4) bytes (about 3 MiB; Go's server
            allows 1 MiB, Node's 16 KiB) and must be complete within ``timeout_handshake``.
        ws_allowed_origins: origins allowed to open a WebSocket (a list, or one
            comma-separated string): exact ones (``https://app.example.com``) and wildcards
            (``https://*.example.com``: subdomains only); see
            ``fastws.ws.origins.compile_origins``. An upgrade with a missing or other
            Origin gets 403 before the app is called. None (the default) allows any origin.

    Raises:
        ValueError: an option has an invalid value; the message starts with its name.
    """

    loaded_app: ASGI3App
    """The app as the server calls it (ASGI3, middleware applied); set by ``load()``."""

    def __init__(
        self,
        app: ASGI3App | Callable[..., Any] | str,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        uds: str | None = None,
        fd: int | None = None,
        loop: LoopType = "auto",
        http: HTTPProtocolType = "auto",
        http2: bool = False,
        ws: WSProtocolType = "auto",
        ws_max_size: int = 16 * 1024 * 1024,
        ws_max_queue: int = 32,
        ws_ping_interval: float | None = 20.0,
        ws_ping_timeout: float | None = 20.0,
        ws_per_message_deflate: bool = True,
        ws_close_timeout: float = 10.0,
        ws_deflate_min_size: int = 128,
        ws_max_write_buffer: int = 1024 * 1024,
        ws_send_overflow: WSSendOverflowType = "wait",
        pubsub: str | None = None,
        metrics: bool = False,
        metrics_address: str = "127.0.0.1",
        metrics_port: int = 9090,
        lifespan: LifespanType = "auto",
        env_file: str | os.PathLike[str] | None = None,
        log_config: dict[str, Any] | str | os.PathLike[str] | None = LOGGING_CONFIG,
        log_level: str | int | None = None,
        access_log: bool = True,
        use_colors: bool | None = None,
        interface: InterfaceType = "auto",
        reload: bool = False,
        reload_dirs: list[str] | str | None = None,
        reload_includes: list[str] | str | None = None,
        reload_excludes: list[str] | str | None = None,
        reload_delay: float = 0.25,
        workers: int | None = None,
        proxy_headers: bool = True,
        server_header: bool = True,
        date_header: bool = True,
        forwarded_allow_ips: list[str] | str | None = None,
        root_path: str = "",
        limit_concurrency: int | None = None,
        limit_max_requests: int | None = None,
        limit_max_requests_jitter: int = 0,
        backlog: int = 2048,
        timeout_keep_alive: int = 5,
        timeout_notify: int = 30,
        timeout_graceful_shutdown: int | None = None,
        timeout_worker_healthcheck: int = 5,
        timeout_handshake: float = 10.0,
        ssl_keyfile: str | os.PathLike[str] | None = None,
        ssl_certfile: str | os.PathLike[str] | None = None,
        ssl_keyfile_password: str | None = None,
        ssl_version: int = SSL_PROTOCOL_VERSION,
        ssl_cert_reqs: int = int(ssl.CERT_NONE),
        ssl_ca_certs: str | os.PathLike[str] | None = None,
        ssl_ciphers: str | None = None,
        headers: Sequence[tuple[str, str]] | None = None,
        factory: bool = False,
        app_dir: str = ".",
        h11_max_incomplete_event_size: int | None = None,
        reset_contextvars: bool = False,
        limit_request_line: int = 16 * 1024,
        limit_request_fields: int = 200,
        limit_request_field_size: int = 16 * 1024,
        ws_allowed_origins: list[str] | str | None = None,
    ) -> None:
        given = dict(locals())
        del given["self"]
        for name, value in given.items():
            reason = option_error(name, value)
            if reason is not None:
                raise ValueError(f"invalid {name}: {reason}")
        if ssl_keyfile is not None and ssl_certfile is None:
            raise ValueError("invalid ssl_certfile: required when ssl_keyfile is given")
        if ssl_certfile is not None and ssl_ciphers is not None:
            reason = ssl_ciphers_error(ssl_ciphers)
            if reason is not None:
                raise ValueError(f"invalid ssl_ciphers: {reason}")

        self.app = app
        self.host = host
        self.port = port
        self.uds = uds
        self.fd = fd
        self.loop: LoopType = loop
        self.http: HTTPProtocolType = http
        self.http2 = http2
        self.ws: WSProtocolType = ws
        self.ws_max_size = ws_max_size
        self.ws_max_queue = ws_max_queue
        # 0 cannot mean "ping continuously"; like None, it turns keepalive pings off.
        self.ws_ping_interval: float | None = ws_ping_interval or None
        self.ws_ping_timeout: float | None = ws_ping_timeout or None
        self.ws_per_message_deflate = ws_per_message_deflate
        self.ws_close_timeout = ws_close_timeout
        self.ws_deflate_min_size = ws_deflate_min_size
        self.ws_max_write_buffer = ws_max_write_buffer
        self.ws_send_overflow: WSSendOverflowType = ws_send_overflow
        self.pubsub = pubsub
        self.metrics = metrics
        self.metrics_address = metrics_address
        self.metrics_port = metrics_port
        self.lifespan: LifespanType = lifespan
        self.env_file = env_file
        self.log_config = log_config
        self.log_level = log_level
        self.access_log = access_log
        self.use_colors = use_colors
        self.interface: InterfaceType = interface
        self.reload = reload
        self.reload_dirs = reload_dirs
        self.reload_includes = reload_includes
        self.reload_excludes = reload_excludes
        self.reload_delay = reload_delay
        self.proxy_headers = proxy_headers
        self.server_header = server_header
        self.date_header = date_header
        self.root_path = root_path
        self.limit_concurrency = limit_concurrency
        self.limit_max_requests = limit_max_requests
        self.limit_max_requests_jitter = limit_max_requests_jitter
        self.backlog = backlog
        self.timeout_keep_alive = timeout_keep_alive
        self.timeout_notify = timeout_notify
        self.timeout_graceful_shutdown = timeout_graceful_shutdown
        self.timeout_worker_healthcheck = timeout_worker_healthcheck
        self.timeout_handshake = timeout_handshake
        self.ssl_keyfile = ssl_keyfile
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile_password = ssl_keyfile_password
        self.ssl_version = ssl_version
        self.ssl_cert_reqs = ssl_cert_reqs
        self.ssl_ca_certs = ssl_ca_certs
        self.ssl_ciphers = ssl_ciphers
        self.headers: list[tuple[str, str]] = [(name, value) for name, value in headers or ()]
        self.factory = factory
        self.app_dir = app_dir
        self.h11_max_incomplete_event_size = h11_max_incomplete_event_size
        self.reset_contextvars = reset_contextvars
        self.limit_request_line = limit_request_line
        self.limit_request_fields = limit_request_fields
        self.limit_request_field_size = limit_request_field_size
        self.ws_allowed_origins: list[str] | None = (
            None if ws_allowed_origins is None else _split_list(ws_allowed_origins)
        )

        self.loaded = False
        self.ssl: ssl.SSLContext | None = None
        self.encoded_headers: list[tuple[bytes, bytes]] = []
        self.allowed_origins: AllowedOrigins | None = None
        """``ws_allowed_origins`` compiled by ``load()``, for the upgrade path."""

        self.configure_logging()

        if env_file is not None:
            from dotenv import load_dotenv

            logger.info("Loading environment from '%s'", os.fspath(env_file))
            load_dotenv(dotenv_path=env_file)

        self.workers: int = workers if workers is not None else self._workers_from_env()
        if forwarded_allow_ips is None:
            forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", DEFAULT_FORWARDED_ALLOW_IPS)
        self.forwarded_allow_ips: list[str] = parse_trusted_hosts(forwarded_allow_ips)

        self._log_ignored_options()

    @staticmethod
    def _workers_from_env() -> int:
        raw = os.environ.get("WEB_CONCURRENCY")
        if raw is None:
            return 1
        try:
            workers = int(raw)
        except ValueError:
            workers = 0
        if workers < 1:
            raise ValueError(f"invalid workers: $WEB_CONCURRENCY={raw!r} is not a positive integer")
        return workers

    def _log_ignored_options(self) -> None:
        if self.ws != "auto":
            logger.info(
                "fastws uses its own WebSocket implementation; --ws %s is ignored.", self.ws
            )
        if self.http != "auto":
            logger.info("fastws parses HTTP/1.1 with httptools; --http %s is ignored.", self.http)
        if self.http2:
            logger.warning("fastws does not support HTTP/2; --http2 is ignored.")
        if self.h11_max_incomplete_event_size is not None:
            logger.info(
                "--h11-max-incomplete-event-size is ignored; fastws limits request heads "
                "with --limit-request-line, --limit-request-fields and --limit-request-field-size."
            )
        if self.reset_contextvars:
            logger.info("--reset-contextvars is ignored by fastws.")

    # ----------------------------------------------------------------------------------

    # Cached: every connection reads these two (a property call each time cost ~2,000
    # instructions per connection). load() drops asgi_version when it resolves "auto".
    @functools.cached_property
    def asgi_version(self) -> Literal["2.0", "3.0"]:
        """``scope["asgi"]["version"]``: "2.0" for an ASGI2 app once detected, else "3.0"."""
        return "2.0" if self.interface == "asgi2" else "3.0"

    @functools.cached_property
    def is_ssl(self) -> bool:
        """Whether the server speaks TLS (a certificate file was given)."""
        return self.ssl_certfile is not None

    def configure_logging(self) -> None:
        """Apply ``log_config``, ``log_level``, ``access_log`` and ``use_colors``.

        Called by ``__init__``; call it again in a worker process that did not inherit
        the parent's logging setup.

        Raises:
            ValueError: ``log_config`` could not be applied (the message names the file).
            ImportError: ``log_config`` is a YAML file and PyYAML is missing.
        """
        try:
            configure_logging(
                self.log_config,
                log_level=self.log_level,
                access_log=self.access_log,
                use_colors=self.use_colors,
            )
        except ImportError:
            raise
        except Exception as exc:
            source = "dict" if isinstance(self.log_config, dict) else repr(self.log_config)
            raise ValueError(f"invalid log_config: could not apply {source}: {exc}") from exc

    def load(self) -> None:
        """Import and prepare the app, TLS context and default headers; no-op when loaded.

        Sets ``loaded_app``, ``interface`` (resolved from auto), ``ssl``,
        ``encoded_headers`` and ``allowed_origins``, then ``loaded``. The server calls
        this in each worker, before binding.

        Raises:
            SystemExit: with ``STARTUP_FAILURE`` when the app cannot be imported or
                created, or the TLS files cannot be loaded; the reason (with the
                traceback when the app's own code raised) is logged to ``fastws.error``.
        """
        if self.loaded:
            return
        self.ssl = self._create_ssl_context() if self.is_ssl else None
        self.encoded_headers = self._encode_headers()
        if self.ws_allowed_origins is not None:
            self.allowed_origins = compile_origins(self.ws_allowed_origins)

        app = self._import_app()
        if self.interface == "auto":
            self.interface = "asgi3" if _is_asgi3(app) else "asgi2"
            self.__dict__.pop("asgi_version", None)
        loaded: ASGI3App = _ASGI2Adapter(app) if self.interface == "asgi2" else app
        if self.proxy_headers:
            loaded = ProxyHeadersMiddleware(loaded, trusted_hosts=self.forwarded_allow_ips)
        self.loaded_app = loaded
        self.loaded = True

    def _import_app(self) -> Any:
        if isinstance(self.app, str):
            self._ensure_app_dir_on_path()
        try:
            app = import_from_string(self.app)
        except ImportFromStringError as exc:
            logger.error("Error loading ASGI app. %s", exc)
            sys.exit(STARTUP_FAILURE)
        except Exception:
            logger.error("Error loading ASGI app %r: importing it raised.", self.app, exc_info=True)
            sys.exit(STARTUP_FAILURE)

        if not self.factory and _looks_like_factory(app):
            logger.warning(
                "%r takes no arguments, so it is used as an app factory; "
                "pass --factory (factory=True) to say so explicitly.",
                self.app,
            )
        elif not self.factory:
            return app
        if not callable(app):
            logger.error("Error loading ASGI app factory: %r is not callable.", self.app)
            sys.exit(STARTUP_FAILURE)
        try:
            return app()
        except Exception:
            logger.error(
                "Error loading ASGI app factory %r: calling it raised.", self.app, exc_info=True
            )
            sys.exit(STARTUP_FAILURE)

    def _ensure_app_dir_on_path(self) -> None:
        # The CLI has already put --app-dir first; this covers fastws.run(..., app_dir=...).
        wanted = os.path.abspath(self.app_dir)
        if all(os.path.abspath(entry or os.curdir) != wanted for entry in sys.path):
            sys.path.insert(0, wanted)

    def _create_ssl_context(self) -> ssl.SSLContext:
        assert self.ssl_certfile is not None
        try:
            context = ssl.SSLContext(self.ssl_version)
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, self.ssl_keyfile_password)
            context.verify_mode = ssl.VerifyMode(self.ssl_cert_reqs)
            if self.ssl_ca_certs is not None:
                context.load_verify_locations(self.ssl_ca_certs)
            if self.ssl_ciphers is not None:
                context.set_ciphers(self.ssl_ciphers)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            logger.error("Error loading TLS settings: %s", exc)
            sys.exit(STARTUP_FAILURE)
        # fastws speaks HTTP/1.1 only; saying so lets ALPN clients settle without guessing.
        context.set_alpn_protocols(["http/1.1"])
        return context

    def _encode_headers(self) -> list[tuple[bytes, bytes]]:
        encoded = [
            (name.lower().encode("latin-1"), val.encode("latin-1")) for name, val in self.headers
        ]
        if self.server_header and all(name != b"server" for name, _ in encoded):
            encoded.insert(0, SERVER_HEADER)
        return encoded

    def bind_socket(self) -> socket.socket:
        """Create the listening socket for ``uds``, ``fd`` or ``host:port``, in that order.

        The socket is bound, inheritable (for worker processes) and has SO_REUSEADDR for
        TCP; it is not listening yet (``loop.create_server(sock=..., backlog=...)`` does
        that). Nothing is logged on success: the caller writes the startup line.

        Returns:
            The bound socket; the caller owns it.

        Raises:
            SystemExit: with ``STARTUP_FAILURE`` after logging why binding failed.
        """
        sock: socket.socket | None = None
        try:
            if self.uds is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(self.uds)
                # Like uvicorn: a proxy running as another user must be able to connect.
                os.chmod(self.uds, 0o666)
            elif self.fd is not None:
                # Dup, so closing our socket object leaves the inherited descriptor alone;
                # family and type are read from the descriptor itself.
                sock = socket.socket(fileno=os.dup(self.fd))
            else:
                host = self.host.strip("[]") if self.host.startswith("[") else self.host
                family = socket.AF_INET6 if ":" in host else socket.AF_INET
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((host, self.port))
        except OSError as exc:
            if sock is not None:
                sock.close()
            if self.uds is not None:
                where = self.uds
            elif self.fd is not None:
                where = f"fd {self.fd}"
            else:
                where = f"{self.host}:{self.port}"
            logger.error("Could not bind to %s: %s", where, exc)
            sys.exit(STARTUP_FAILURE)
        sock.set_inheritable(True)
        return sock

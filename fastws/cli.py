"""The ``fastws`` command: uvicorn's flags, parsed with click, handed to ``fastws.main.run``.

Owns flag names, help texts, parsing and usage errors. Flag names and meanings match
uvicorn's so existing scripts keep working; flags uvicorn has and fastws has no use for
are accepted and say so in their help. Defaults are not written here: each option reads
its default from ``Config`` (``option_default``) and validates with ``Config``'s checks
(``option_error``), so a bad value is a usage error (exit 2) naming the flag.

Every option can also come from the environment, as ``FASTWS_<OPTION>`` or, for scripts
written for uvicorn, ``UVICORN_<OPTION>`` (``FASTWS_PORT=9000``; the first one set wins).
This module does not build the ``Config`` or serve; ``run`` does.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from typing import Any, TypeVar, get_args

import click

from fastws import __version__
from fastws.config import (
    HTTPProtocolType,
    InterfaceType,
    LifespanType,
    LoopType,
    WSProtocolType,
    WSSendOverflowType,
    header_error,
    option_default,
    option_error,
    ssl_ciphers_error,
)
from fastws.logging import LOG_LEVELS

F = TypeVar("F", bound=Callable[..., Any])

_IGNORED = "Accepted for uvicorn compatibility and ignored"


def run(app: Any, **options: Any) -> None:
    """Serve ``app`` with ``options``; a seam so tests can patch ``fastws.cli.run``."""
    from fastws.main import run as serve

    serve(app, **options)


def _envvars(dest: str) -> list[str]:
    return [f"FASTWS_{dest.upper()}", f"UVICORN_{dest.upper()}"]


def _validate(dest: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is None and param.default is None:
            return value
        reason = option_error(dest, value)
        if reason is not None:
            raise click.BadParameter(reason, ctx=ctx, param=param)
        return value

    return callback


def _option(
    flags: str,
    help: str,  # noqa: A002 (click's keyword)
    *,
    dest: str | None = None,
    type: Any = None,  # noqa: A002 (click's keyword)
    multiple: bool = False,
    is_flag: bool = False,
    validate: bool = True,
    **kwargs: Any,
) -> Callable[[F], F]:
    """A click option whose default comes from ``Config`` and whose value is checked by it."""
    if dest is None:
        dest = flags.split("/")[0].lstrip("-").replace("-", "_")
    is_flag = is_flag or "/" in flags  # "--x/--no-x" pairs are boolean flags
    if "default" not in kwargs:
        kwargs["default"] = option_default(dest)
    if "show_default" not in kwargs:
        kwargs["show_default"] = kwargs["default"] is not None and not is_flag and not multiple
    if validate and not multiple and not is_flag:
        kwargs["callback"] = _validate(dest)
    if type is not None:
        kwargs["type"] = type
    decorator: Callable[[F], F] = click.option(
        flags,
        dest,
        help=help,
        multiple=multiple,
        is_flag=is_flag,
        envvar=_envvars(dest),
        **kwargs,
    )
    return decorator


def _choice(alias: Any) -> click.Choice[str]:
    return click.Choice(list(get_args(alias)))


def _parse_headers(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    for raw in values:
        name, sep, value = raw.partition(":")
        if not sep:
            raise click.BadParameter(f"{raw!r} is not in 'Name:Value' form", ctx=ctx, param=param)
        # Whitespace around a field value is not part of it (RFC 9110 §5.5).
        name, value = name.strip(), value.strip()
        reason = header_error(name, value)
        if reason is not None:
            raise click.BadParameter(reason, ctx=ctx, param=param)
        headers.append((name, value))
    return headers


def _parse_origins(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> list[str] | None:
    if not values:
        return None  # the option's default: every origin allowed
    origins = [item.strip() for raw in values for item in raw.split(",") if item.strip()]
    reason = option_error("ws_allowed_origins", origins)
    if reason is not None:
        raise click.BadParameter(reason, ctx=ctx, param=param)
    return origins


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from fastws.ws.frames import IMPLEMENTATION

    python = f"{platform.python_implementation()} {platform.python_version()}"
    click.echo(f"fastws {__version__} (codec: {IMPLEMENTATION}; {python} on {platform.system()})")
    ctx.exit()


@click.command(
    "fastws",
    context_settings={"help_option_names": ["--help"], "max_content_width": 100},
)
@click.argument("app", envvar=["FASTWS_APP", "UVICORN_APP"])
@_option("--host", "Address to bind to; one with a ':' is IPv6.")
@_option("--port", "Port to bind to; 0 lets the OS pick a free one.", type=int)
@_option("--uds", "Bind to this UNIX domain socket path instead of --host/--port.")
@_option("--fd", "Serve on the already-open socket with this file descriptor.", type=int)
@_option(
    "--reload",
    "Restart the server when files change (development; needs watchfiles).",
    is_flag=True,
)
@_option(
    "--reload-dir",
    "Directory --reload watches (repeatable; default: the current directory).",
    dest="reload_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
)
@_option(
    "--reload-include",
    "Glob of files --reload watches (repeatable; default *.py).",
    dest="reload_includes",
    multiple=True,
)
@_option(
    "--reload-exclude",
    "Glob of files --reload ignores (repeatable).",
    dest="reload_excludes",
    multiple=True,
)
@_option("--reload-delay", "Seconds to wait after a change before restarting.", type=float)
@_option(
    "--workers",
    "Worker processes to run. Defaults to $WEB_CONCURRENCY when set, otherwise 1.",
    type=int,
)
@_option("--loop", "Event loop; auto uses uvloop when it is installed.", type=_choice(LoopType))
@_option(
    "--http", f"{_IGNORED}: fastws parses HTTP/1.1 with httptools.", type=_choice(HTTPProtocolType)
)
@_option("--http2", f"{_IGNORED}: fastws does not speak HTTP/2.", is_flag=True)
@_option(
    "--ws",
    f"{_IGNORED}: fastws always uses its own WebSocket implementation.",
    type=_choice(WSProtocolType),
)
@_option("--ws-max-size", "Largest WebSocket message accepted, in bytes.", type=int)
@_option(
    "--ws-max-queue",
    "Received WebSocket messages queued for the app before reading pauses.",
    type=int,
)
@_option(
    "--ws-ping-interval", "Seconds between WebSocket keepalive pings; 0 disables them.", type=float
)
@_option(
    "--ws-ping-timeout",
    "Seconds to wait for a pong before closing the connection; 0 waits forever.",
    type=float,
)
@_option(
    "--ws-per-message-deflate",
    "Negotiate WebSocket permessage-deflate compression when the client offers it.",
    type=bool,
)
@_option(
    "--ws-close-timeout",
    "Seconds to wait for the client's close frame after fastws sends its own.",
    type=float,
)
@_option(
    "--ws-deflate-min-size",
    "With permessage-deflate, send messages shorter than this many bytes uncompressed "
    "(0: compress every message).",
    type=int,
)
@_option(
    "--ws-max-write-buffer",
    "Bytes a WebSocket may hold waiting to be written to a slow client: a publish past it "
    "closes the connection with 1013 (see --ws-send-overflow for send()).",
    type=int,
)
@_option(
    "--ws-send-overflow",
    "send() to a client whose buffer is full: wait for it to drain, or close: never wait, "
    "close with 1013 past --ws-max-write-buffer.",
    type=_choice(WSSendOverflowType),
)
@_option(
    "--metrics/--no-metrics",
    "Serve Prometheus metrics (docs/metrics.md; extra 'metrics') on --metrics-address and "
    "--metrics-port, a listener of its own; with --workers, one scrape covers every worker.",
)
@_option("--metrics-address", "Address the --metrics listener binds to.", type=str)
@_option("--metrics-port", "Port of the --metrics listener.", type=int)
@_option(
    "--pubsub",
    "redis://host:port/db: share pub/sub topics across workers and servers through Redis "
    "(extra 'redis').",
    type=str,
)
@_option(
    "--lifespan",
    "ASGI lifespan events: auto runs them if the app supports them.",
    type=_choice(LifespanType),
)
@_option(
    "--interface",
    "ASGI version of the application; auto detects it.",
    type=_choice(InterfaceType),
)
@_option(
    "--env-file",
    "Load environment variables from this dotenv file (variables already set win).",
    type=click.Path(exists=True, dir_okay=False),
)
@_option(
    "--log-config",
    "Logging configuration file: .json or .yaml (dictConfig), or .ini (fileConfig).",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    validate=False,
)
@_option(
    "--log-level",
    "Level of the fastws loggers.  [default: info]",
    type=click.Choice(list(LOG_LEVELS)),
    show_default=False,
)
@_option("--access-log/--no-access-log", "Turn the access log on or off.")
@_option(
    "--use-colors/--no-use-colors", "Force coloured log output on or off (default: when a tty)."
)
@_option(
    "--proxy-headers/--no-proxy-headers",
    "Take the client address and scheme from X-Forwarded-For and X-Forwarded-Proto "
    "when the peer is in --forwarded-allow-ips.",
)
@_option("--server-header/--no-server-header", "Send the default 'server: fastws' header.")
@_option("--date-header/--no-date-header", "Send the default 'date' header.")
@_option(
    "--forwarded-allow-ips",
    "Comma-separated IP addresses, networks (CIDR) or literals whose proxy headers are "
    "trusted; '*' trusts every peer. Defaults to $FORWARDED_ALLOW_IPS when set, "
    "otherwise '127.0.0.1,::1'.",
)
@_option("--root-path", "ASGI 'root_path' for an app mounted below a URL prefix.")
@_option(
    "--limit-concurrency",
    "Connections plus tasks allowed at once; beyond that, requests get HTTP 503.",
    type=int,
)
@_option("--backlog", "Pending connections the listening socket may hold.", type=int)
@_option(
    "--limit-max-requests",
    "Requests a worker serves before it exits (and, with workers, is replaced).",
    type=int,
)
@_option(
    "--limit-max-requests-jitter",
    "Up to this many extra requests per worker, chosen at random, so workers do not "
    "all restart together.",
    type=int,
)
@_option(
    "--timeout-keep-alive",
    "Seconds an idle keep-alive connection is kept open.",
    type=int,
)
@_option(
    "--timeout-graceful-shutdown",
    "Seconds to wait for open connections on shutdown before closing them.",
    type=int,
)
@_option(
    "--timeout-worker-healthcheck",
    "Seconds a worker process gets to answer a health check before it is restarted.",
    type=int,
)
@_option(
    "--timeout-handshake",
    "Seconds a client gets to send a complete request head (HTTP or WebSocket upgrade).",
    type=float,
)
@_option("--ssl-keyfile", "TLS private key file (PEM).")
@_option("--ssl-certfile", "TLS certificate chain file (PEM); turns TLS on.")
@_option("--ssl-keyfile-password", "Password of an encrypted --ssl-keyfile.")
@_option("--ssl-version", "TLS protocol, as an ssl.PROTOCOL_* number.", type=int)
@_option("--ssl-cert-reqs", "Client certificates: 0 none, 1 optional, 2 required.", type=int)
@_option("--ssl-ca-certs", "CA bundle used to verify client certificates.")
@_option("--ssl-ciphers", "OpenSSL cipher list. Defaults to OpenSSL's own.")
@_option(
    "--header",
    "Extra default response header as 'Name:Value'; repeat for more.",
    dest="headers",
    multiple=True,
    callback=_parse_headers,
)
@click.option(
    "--version",
    is_flag=True,
    callback=_print_version,
    expose_value=False,
    is_eager=True,
    help="Print the fastws version, codec and Python, then exit.",
)
@_option(
    "--app-dir",
    "Directory put first on the import path before APP is imported.",
)
@_option(
    "--h11-max-incomplete-event-size",
    f"{_IGNORED}: see --limit-request-line and --limit-request-field-size.",
    type=int,
)
@_option("--reset-contextvars", f"{_IGNORED}.", is_flag=True)
@_option(
    "--factory", "APP names a callable taking no arguments that returns the ASGI app.", is_flag=True
)
@_option(
    "--limit-request-line",
    "Longest request target (path and query) accepted, in bytes; longer: 414.",
    type=int,
)
@_option("--limit-request-fields", "Most header fields a request may carry; more: 431.", type=int)
@_option(
    "--limit-request-field-size",
    "Longest header field (name and value) accepted, in bytes; longer: 431.",
    type=int,
)
@_option(
    "--ws-allowed-origins",
    "Origins allowed to open a WebSocket, comma-separated or repeated: exact "
    "('https://app.example.com') or wildcard ('https://*.example.com', subdomains only). "
    "Upgrades with a missing or other Origin get 403 before the app runs. Default: any origin.",
    multiple=True,
    callback=_parse_origins,
)
def main(app: str, **options: Any) -> None:
    """Serve APP, an ASGI application given as '<module>:<attribute>'."""
    if options["ssl_keyfile"] is not None and options["ssl_certfile"] is None:
        raise click.BadParameter(
            "required when --ssl-keyfile is given", param_hint="'--ssl-certfile'"
        )
    if options["ssl_certfile"] is not None and options["ssl_ciphers"] is not None:
        reason = ssl_ciphers_error(options["ssl_ciphers"])
        if reason is not None:
            raise click.BadParameter(reason, param_hint="'--ssl-ciphers'")
    # Import the app from --app-dir first (uvicorn does the same), whatever sys.path held.
    sys.path.insert(0, options["app_dir"])
    for key in ("reload_dirs", "reload_includes", "reload_excludes", "headers"):
        options[key] = list(options[key]) or None
    if options["log_config"] is None:
        del options["log_config"]  # Config's built-in LOGGING_CONFIG applies
    run(app, **options)

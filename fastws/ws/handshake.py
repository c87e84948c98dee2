"""The opening handshake of RFC 6455 §4: request validation and the bytes of the responses.

Takes headers already parsed by the HTTP side (raw, lowercased names) and says either which
key, subprotocols and extensions the client offered, or which HTTP error to answer with.
Builds the 101 and the rejection responses, and checks the Origin header against
``--ws-allowed-origins`` (cross-site WebSocket hijacking protection). Knows nothing of sockets,
asyncio or ASGI events.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import ipaddress
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from fastws import http11

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

Headers = list[tuple[bytes, bytes]]

# Strict base64 (the alphabet, correct padding, nothing after it). Before Python 3.11 only
# base64.b64decode(validate=True) has it, which checks with a regular expression first.
if sys.version_info >= (3, 11):
    _b64decode_strict = functools.partial(binascii.a2b_base64, strict_mode=True)
else:
    _b64decode_strict = functools.partial(base64.b64decode, validate=True)


@dataclass
class Offer:
    """What a valid upgrade request offered."""

    key: bytes
    subprotocols: list[str] = field(default_factory=list)
    extensions: list[str] = field(default_factory=list)  # raw Sec-WebSocket-Extensions values


@dataclass
class Rejection:
    """An upgrade request the server must refuse with an HTTP error."""

    status: int
    reason: str
    headers: Headers = field(default_factory=list)


def _has_token(value: bytes, token: bytes) -> bool:
    """Whether a comma-separated header value lists ``token`` (lowercase), in any case."""
    value = value.strip().lower()
    # Fast path: a browser sends "websocket" and "Upgrade" alone (new connections/s).
    return value == token or (token in value and token in {t.strip() for t in value.split(b",")})


def _list(values: Iterable[bytes]) -> list[str]:
    out: list[str] = []
    for value in values:
        out += [t.strip() for t in value.decode("latin-1").split(",") if t.strip()]
    return out


def is_websocket_upgrade(headers: Headers) -> bool:
    """True when the request asks for a WebSocket upgrade (Upgrade: websocket, any case)."""
    for name, value in headers:
        if name == b"upgrade" and _has_token(value, b"websocket"):
            return True
    return False


def validate_request(method: bytes, http_version: str, headers: Headers) -> Offer | Rejection:
    """Check an upgrade request against RFC 6455 §4.2.1.

    Args:
        method: the request method, as sent.
        http_version: "1.0" or "1.1".
        headers: raw headers, names lowercased.

    Returns:
        An Offer to hand to the application, or a Rejection: 400 for a malformed request, 426
        (with ``Sec-WebSocket-Version: 13``) for a version other than 13. The caller then writes
        ``accept_response()`` or ``rejection_response()``.
    """
    if method != b"GET":
        return Rejection(400, "WebSocket upgrade requires GET")
    if http_version != "1.1":
        return Rejection(400, "WebSocket upgrade requires HTTP/1.1")
    upgrade = connection = False
    key: bytes | None = None
    keys = 0
    version: bytes | None = None
    protocols: list[bytes] = []
    extensions: list[bytes] = []
    for name, value in headers:
        if name == b"upgrade":
            upgrade = upgrade or _has_token(value, b"websocket")
        elif name == b"connection":
            connection = connection or _has_token(value, b"upgrade")
        elif name == b"sec-websocket-key":
            key = value.strip()
            keys += 1
        elif name == b"sec-websocket-version":
            version = value.strip()
        elif name == b"sec-websocket-protocol":
            protocols.append(value)
        elif name == b"sec-websocket-extensions":
            extensions.append(value)
    if not upgrade:
        return Rejection(400, "missing Upgrade: websocket")
    if not connection:
        return Rejection(400, "missing Connection: Upgrade")
    if version is None:
        return Rejection(400, "missing Sec-WebSocket-Version")
    if version != b"13":
        return Rejection(426, "unsupported WebSocket version", [(b"sec-websocket-version", b"13")])
    if keys != 1 or key is None:
        return Rejection(400, "missing or repeated Sec-WebSocket-Key")
    try:
        raw = _b64decode_strict(key)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        return Rejection(400, "Sec-WebSocket-Key must be 16 bytes, base64-encoded")
    return Offer(
        key, _list(protocols) if protocols else [], _list(extensions) if extensions else []
    )


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a client key (RFC 6455 §4.2.2 step 5.4)."""
    return binascii.b2a_base64(hashlib.sha1(key + _GUID).digest(), newline=False)


def accept_response(
    key: bytes,
    subprotocol: str | None,
    extension: bytes | None,
    headers: Iterable[tuple[bytes, bytes]],
) -> bytes:
    """The 101 response: handshake headers first, then ``headers`` (the application's, checked
    by fastws.http11.check_headers, and the server's defaults, already merged by the caller)."""
    own = [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-accept", accept_key(key)),
    ]
    if subprotocol is not None:
        own.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
    if extension:
        own.append((b"sec-websocket-extensions", extension))
    parts = http11.head(_SWITCHING, [*own, *headers])
    parts.append(b"\r\n")
    return b"".join(parts)


_SWITCHING = http11.STATUS_LINES[101]


def rejection_response(rejection: Rejection, headers: http11.Headers) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection."""
    body = rejection.reason.encode("utf-8") + b"\n"
    return http11.simple_response(rejection.status, body, headers, rejection.headers)


# -- Origin checks (--ws-allowed-origins) -----------------------------------------------------
#
# Browsers let any page open a WebSocket to any server and attach that server's cookies; the
# Origin header (RFC 6454 §7, RFC 6455 §10.2) is the only sign of which site the page came from.
# A server that authenticates WebSocket sessions by cookie must therefore check it, or a
# hostile page can act as the logged-in user (cross-site WebSocket hijacking).

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SCHEME_RE = re.compile(r"[a-z][a-z0-9+.\-]*\Z")
_HOSTNAME_RE = re.compile(r"[a-z0-9_\-]+(?:\.[a-z0-9_\-]+)*\Z")
_PORT_RE = re.compile(r":([0-9]{1,5})\Z")

# (scheme, host, port): lowercased; port None only for a scheme without a default port.
_OriginKey = tuple[str, str, int | None]


@dataclass(frozen=True)
class AllowedOrigins:
    """``--ws-allowed-origins`` compiled by ``compile_origins``: what ``origin_allowed`` reads.

    ``exact`` holds ``(scheme, host, port)`` keys; ``wildcards`` the same with ``host`` the
    suffix a subdomain must end with, dot included (``".example.com"``).
    """

    exact: frozenset[_OriginKey]
    wildcards: tuple[_OriginKey, ...]
    patterns: tuple[str, ...]  # as written, for messages


def _split_origin(text: str) -> tuple[str, str, int | None] | None:
    """Split a serialized origin ``scheme://host[:port]`` (RFC 6454 §6.2) into lowercased
    scheme and host and the port (the scheme's default when absent); None if it is not one.

    The host is a DNS name (letters, digits, ``-``, ``_``, dots), an IPv4 address or a
    bracketed IPv6 address; a path, query, fragment or user info makes it no origin at all.
    """
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or not _SCHEME_RE.match(scheme):
        return None
    port: int | None = _DEFAULT_PORTS.get(scheme)
    if rest.startswith("["):
        end = rest.find("]")
        if end == -1:
            return None
        try:
            address = ipaddress.IPv6Address(rest[1:end])
        except ValueError:
            return None
        host, tail = f"[{address.compressed}]", rest[end + 1 :]
    else:
        host, colon, port_text = rest.partition(":")
        host, tail = host.lower(), colon + port_text
        if not _HOSTNAME_RE.match(host):
            return None
    if tail:
        match = _PORT_RE.match(tail)
        if match is None or int(match.group(1)) > 65535:
            return None
        port = int(match.group(1))
    return scheme, host, port


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def compile_origins(patterns: Iterable[str]) -> AllowedOrigins:
    """Compile ``--ws-allowed-origins`` once, for ``origin_allowed``.

    Args:
        patterns: exact origins (``https://app.example.com``, ``http://127.0.0.1:8000``) or
            wildcards whose first label is ``*`` (``https://*.example.com``: any subdomain at
            any depth, not ``example.com`` itself). Scheme and host compare case-insensitively;
            a missing port is the scheme's default (80 for http/ws, 443 for https/wss), so
            ``https://a.example`` and ``https://a.example:443`` are the same origin.
            Non-ASCII host names are converted to their IDNA (``xn--``) form, which is what
            browsers send.

    Returns:
        The compiled set; keep it and call ``origin_allowed`` per upgrade.

    Raises:
        ValueError: no pattern was given, or one is not of that form; the message quotes it.
    """
    exact: set[_OriginKey] = set()
    wildcards: list[_OriginKey] = []
    written: list[str] = []
    for pattern in patterns:
        text = pattern.strip()
        written.append(text)
        scheme, sep, rest = text.partition("://")
        wildcard = rest.startswith("*.")
        if wildcard:
            rest = rest[2:]
        if not rest.isascii():
            host, colon, port_text = rest.partition(":")
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError(f"{text!r} has a host name that is not valid IDNA") from None
            rest = host + colon + port_text
        parts = _split_origin(scheme + sep + rest)
        if parts is None or "*" in rest:
            if text == "*":
                reason = "'*' is not a pattern; leave the option unset to allow every origin"
            elif text.lower() == "null":
                reason = "the opaque origin 'null' cannot be allowed (any sandboxed page sends it)"
            elif "*" in rest:
                reason = "'*' may only be the whole first label, as in 'https://*.example.com'"
            else:
                reason = (
                    "an origin is scheme://host[:port], with no path, like 'https://example.com'"
                )
            raise ValueError(f"{text!r} is not an allowed-origin pattern: {reason}")
        if wildcard:
            if parts[1].startswith("[") or _is_ipv4(parts[1]):
                raise ValueError(
                    f"{text!r} is not an allowed-origin pattern: '*.' must be followed by a "
                    "domain name, not an IP address"
                )
            wildcards.append((parts[0], "." + parts[1], parts[2]))
        else:
            exact.add(parts)
    if not written:
        raise ValueError("at least one origin is required; leave the option unset to allow any")
    return AllowedOrigins(frozenset(exact), tuple(wildcards), tuple(written))


def origin_allowed(origin: bytes | str | None, allowed: AllowedOrigins) -> bool:
    """Whether a request's ``Origin`` value matches one of the compiled patterns.

    Args:
        origin: the header value as received, or None when the header is absent.
        allowed: from ``compile_origins``.

    Returns:
        False for a missing, malformed or opaque (``null``) origin, or one that matches no
        pattern; True otherwise. Pure: no logging, no state.
    """
    if origin is None:
        return False
    text = origin.decode("latin-1") if isinstance(origin, bytes) else origin
    parts = _split_origin(text.strip())
    if parts is None:
        return False
    if parts in allowed.exact:
        return True
    scheme, host, port = parts
    for w_scheme, suffix, w_port in allowed.wildcards:
        # The regex guarantees non-empty labels, so a match has a subdomain before the suffix.
        if scheme == w_scheme and port == w_port and host.endswith(suffix):
            return True
    return False


def check_origin(headers: Headers, allowed: AllowedOrigins) -> Rejection | None:
    """Refuse an upgrade whose Origin is missing, repeated or not allowed.

    Args:
        headers: raw request headers, names lowercased.
        allowed: from ``compile_origins``.

    Returns:
        None when the request may proceed; else a 403 ``Rejection`` whose reason names the
        origin, for the caller to log and send with ``rejection_response()`` (the application
        is not called).
    """
    origins = [value for name, value in headers if name == b"origin"]
    if not origins:
        return Rejection(403, "Origin header required")
    if len(origins) > 1:  # RFC 6454 §7.3: at most one
        return Rejection(403, "more than one Origin header")
    if origin_allowed(origins[0], allowed):
        return None
    shown = origins[0][:200].decode("latin-1")
    return Rejection(403, f"Origin {shown!r} is not allowed")

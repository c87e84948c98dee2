"""The opening handshake of RFC 6455 §4: request validation and the bytes of the responses.

Takes headers already parsed by the HTTP side (raw, lowercased names) and says either which
key, subprotocols and extensions the client offered, or which HTTP error to answer with.
Builds the 101 and the rejection responses (their bytes joined by fastws.http11). The Origin
policy of ``--ws-allowed-origins`` is fastws.ws.origins. Knows nothing of sockets, asyncio or
ASGI events.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
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

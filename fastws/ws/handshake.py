"""The opening handshake of RFC 6455 §4: request validation and the bytes of the responses.

Takes headers already parsed by the HTTP side (raw, lowercased names) and says either which
key, subprotocols and extensions the client offered, or which HTTP error to answer with.
Builds the 101 and the rejection responses. Knows nothing of sockets, asyncio or ASGI events.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

Headers = list[tuple[bytes, bytes]]


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


def _tokens(value: bytes) -> set[bytes]:
    return {t.strip().lower() for t in value.split(b",")}


def _list(values: Iterable[bytes]) -> list[str]:
    out: list[str] = []
    for value in values:
        out += [t.strip() for t in value.decode("latin-1").split(",") if t.strip()]
    return out


def is_websocket_upgrade(headers: Headers) -> bool:
    """True when the request asks for a WebSocket upgrade (Upgrade: websocket, any case)."""
    return any(name == b"upgrade" and b"websocket" in _tokens(value) for name, value in headers)


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
            upgrade = upgrade or b"websocket" in _tokens(value)
        elif name == b"connection":
            connection = connection or b"upgrade" in _tokens(value)
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
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        return Rejection(400, "Sec-WebSocket-Key must be 16 bytes, base64-encoded")
    return Offer(key, _list(protocols), _list(extensions))


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a client key (RFC 6455 §4.2.2 step 5.4)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def _head(status_line: bytes, headers: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    parts = [status_line]
    for name, value in headers:
        parts += [name, b": ", value, b"\r\n"]
    return parts


def accept_response(
    key: bytes,
    subprotocol: str | None,
    extension: bytes | None,
    headers: Iterable[tuple[bytes, bytes]],
) -> bytes:
    """The 101 response: handshake headers first, then ``headers`` (the application's and the
    server's defaults, already merged by the caller)."""
    parts = _head(
        b"HTTP/1.1 101 Switching Protocols\r\n",
        [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept_key(key)),
        ],
    )
    if subprotocol is not None:
        parts += [b"sec-websocket-protocol: ", subprotocol.encode("latin-1"), b"\r\n"]
    if extension:
        parts += [b"sec-websocket-extensions: ", extension, b"\r\n"]
    parts += _head(b"", headers)
    parts.append(b"\r\n")
    return b"".join(parts)


def rejection_response(rejection: Rejection, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection."""
    body = rejection.reason.encode("utf-8") + b"\n"
    phrase = HTTPStatus(rejection.status).phrase.encode("ascii")
    parts = _head(
        b"HTTP/1.1 %d %s\r\n" % (rejection.status, phrase),
        [
            *rejection.headers,
            *headers,
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode("ascii")),
            (b"connection", b"close"),
        ],
    )
    parts += [b"\r\n", body]
    return b"".join(parts)

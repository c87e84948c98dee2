"""The ``--ws-allowed-origins`` policy: which pages may open a WebSocket to this server.

Browsers let any page open a WebSocket to any server and attach that server's cookies; the
Origin header (RFC 6454 §7, RFC 6455 §10.2) is the only sign of which site the page came from.
A server that authenticates WebSocket sessions by cookie must therefore check it, or a hostile
page can act as the logged-in user (cross-site WebSocket hijacking). Compiles the patterns once
(``compile_origins``) and checks a request's headers against them (``check_origin``, a 403
Rejection of fastws.ws.handshake). Knows nothing of sockets, asyncio or ASGI.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from fastws.ws.handshake import Headers, Rejection

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

"""ASGI middleware applying ``X-Forwarded-For`` / ``X-Forwarded-Proto`` from trusted proxies.

Owns deciding whether the direct peer is a trusted proxy (``--forwarded-allow-ips``) and,
if so, rewriting ``scope["client"]`` and ``scope["scheme"]`` for http and websocket
scopes. It does not parse requests or know about sockets; lifespan scopes pass through.

The scope is updated in place, as uvicorn does, so that the server's own access log
(which reads the same scope after the app is called) shows the forwarded client.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

# Loose on purpose: servers build scopes and messages as plain dicts.
Scope = MutableMapping[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI3App = Callable[[Scope, Receive, Send], Awaitable[None]]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# X-Forwarded-Proto value -> scope["scheme"], per scope type. Other values are ignored:
# an http scope never gets "ws", and a websocket scope never gets "http".
_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def parse_trusted_hosts(value: str | Iterable[str]) -> list[str]:
    """Split a comma-separated ``--forwarded-allow-ips`` value into stripped, non-empty items."""
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item.strip()]


# Looks like an IPv4 address (digits and dots) or an IPv6 one (hex digits with a colon).
_ADDRESS_LIKE = re.compile(r"[0-9.]+|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*")


def trusted_host_error(entry: str) -> str | None:
    """Why ``entry`` of ``--forwarded-allow-ips`` is a mistake, or None when it is usable.

    An entry shaped like an address or a CIDR network that does not parse as one
    (``10.0.0.256``, ``10.0.0.0/33``) would otherwise become a literal that no peer ever
    matches, silently distrusting the proxy; anything else is a valid literal.
    """
    address, _, prefix = entry.partition("/")
    if entry == "*" or not _ADDRESS_LIKE.fullmatch(address):
        return None
    try:
        if prefix:
            ipaddress.ip_network(entry, strict=False)
        else:
            ipaddress.ip_address(entry)
    except ValueError:
        return f"{entry!r} is not a valid IP address or network"
    return None


class TrustedHosts:
    """The set of peers whose forwarding headers are believed.

    Entries are IP addresses (compared as addresses, so ``::1`` and ``0:0::1`` match),
    networks in CIDR form (``10.0.0.0/8``), ``*`` for everyone, or any other literal,
    compared as an exact string (for peers that are not IP addresses, such as a UNIX
    socket path).
    """

    def __init__(self, trusted: str | Iterable[str]) -> None:
        entries = parse_trusted_hosts(trusted)
        self.always_trust = "*" in entries
        self.addresses: set[IPAddress] = set()
        self.networks: list[IPNetwork] = []
        self.literals: set[str] = set()
        for entry in entries:
            try:
                if "/" in entry:
                    self.networks.append(ipaddress.ip_network(entry, strict=False))
                else:
                    self.addresses.add(ipaddress.ip_address(entry))
            except ValueError:
                self.literals.add(entry)
        # Peers repeat (a proxy opens many connections), so remember recent verdicts.
        self._is_trusted = functools.lru_cache(maxsize=1024)(self._check)

    def __contains__(self, host: object) -> bool:
        if self.always_trust:
            return True
        if not isinstance(host, str) or not host or len(host) > 255:
            return False
        return self._is_trusted(host)

    def _check(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return host in self.literals
        return address in self.addresses or any(address in net for net in self.networks)

    def client_from_forwarded_for(self, forwarded_for: str) -> tuple[str, int] | None:
        """Pick the client address from a (joined) ``X-Forwarded-For`` value.

        Each proxy appends the address it received from, so the list is walked from the
        right and the first untrusted entry is the client. When every entry is trusted,
        the left-most one is the best that is known.

        Returns:
            ``(host, port)``, with port 0 when the entry carries none; or ``None`` when
            the header holds no usable entry.
        """
        entries = parse_trusted_hosts(forwarded_for)
        if not entries:
            return None
        if not self.always_trust:
            for entry in reversed(entries):
                host, port = split_host_port(entry)
                if host not in self:
                    return host, port
        return split_host_port(entries[0])


def split_host_port(value: str) -> tuple[str, int]:
    """Split ``"1.2.3.4"``, ``"1.2.3.4:56"``, ``"::1"`` or ``"[::1]:56"`` into host and port.

    Anything else (an obfuscated identifier such as ``"unknown"``) is returned whole with
    port 0, so it can never be mistaken for a trusted address.
    """
    if value.startswith("["):
        end = value.find("]")
        if end != -1:
            host, rest = value[1:end], value[end + 1 :]
            if not rest:
                return host, 0
            if rest.startswith(":") and rest[1:].isdigit():
                return host, int(rest[1:])
        return value, 0
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        if port.isdigit():
            return host, int(port)
    return value, 0


_VERDICTS_MAX = 4096  # peers whose verdict the middleware remembers


class ProxyHeadersMiddleware:
    """Rewrites ``client`` and ``scheme`` from forwarding headers sent by trusted peers.

    Args:
        app: the ASGI3 application to call.
        trusted_hosts: ``--forwarded-allow-ips`` as a comma-separated string or a list.
    """

    def __init__(self, app: ASGI3App, trusted_hosts: str | Iterable[str] = "127.0.0.1") -> None:
        self.app = app
        self.trusted_hosts = TrustedHosts(trusted_hosts)
        # Peer address -> whether it is trusted, read with one dict lookup per request (the
        # middleware is on by default, so this is on every request's path); bounded.
        self._verdicts: dict[Any, bool] = {}

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: it returns the app's, so that every resumption of the app
        # does not pass through one more frame (it is on by default, as in uvicorn).
        scope_type = scope["type"]
        if scope_type == "http" or scope_type == "websocket":
            client = scope.get("client")
            if client is not None:
                trusted = self._verdicts.get(client[0])
                if trusted is None:
                    trusted = self._verdict(client[0])
                if trusted:
                    self._apply_headers(scope, scope_type)
        return self.app(scope, receive, send)

    def _verdict(self, host: Any) -> bool:
        trusted = host in self.trusted_hosts
        verdicts = self._verdicts
        if len(verdicts) >= _VERDICTS_MAX:
            verdicts.clear()
        try:
            verdicts[host] = trusted
        except TypeError:  # an unhashable host from a hand-made scope: asked each time
            pass
        return trusted

    def _apply_headers(self, scope: Scope, scope_type: str) -> None:
        proto: bytes | None = None
        forwarded_for: list[bytes] = []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-for":
                forwarded_for.append(value)

        if proto is not None:
            # A chain of proxies may leave "https, http"; the right-most value is the one
            # our trusted peer set itself.
            last = proto.decode("latin-1").rsplit(",", 1)[-1].strip().lower()
            schemes = _WS_SCHEMES if scope_type == "websocket" else _HTTP_SCHEMES
            scheme = schemes.get(last)
            if scheme is not None:
                scope["scheme"] = scheme

        if forwarded_for:
            # Repeated headers are one comma-separated list (RFC 9110 §5.3).
            joined = b",".join(forwarded_for).decode("latin-1")
            client = self.trusted_hosts.client_from_forwarded_for(joined)
            if client is not None:
                scope["client"] = client

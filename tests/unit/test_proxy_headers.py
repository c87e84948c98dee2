"""fastws.proxy_headers: which peers are trusted, and how client and scheme are rewritten."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fastws.proxy_headers import (
    ProxyHeadersMiddleware,
    TrustedHosts,
    parse_trusted_hosts,
    split_host_port,
)


def make_scope(
    scope_type: str = "http",
    client: tuple[str, int] | None = ("127.0.0.1", 5000),
    headers: list[tuple[bytes, bytes]] | None = None,
) -> dict[str, Any]:
    return {
        "type": scope_type,
        "scheme": "ws" if scope_type == "websocket" else "http",
        "client": client,
        "headers": headers or [],
    }


def seen_by_app(trusted: str | list[str], scope: dict[str, Any]) -> dict[str, Any]:
    """Run the middleware once and return the scope the inner app received."""
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope))

    async def receive() -> dict[str, Any]:
        return {}

    async def send(message: Any) -> None:
        return None

    asyncio.run(ProxyHeadersMiddleware(app, trusted)(scope, receive, send))
    assert len(seen) == 1
    return seen[0]


FORWARDED = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")]


def test_trusted_peer_sets_client_and_scheme() -> None:
    scope = seen_by_app("127.0.0.1", make_scope(headers=FORWARDED))
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "https"


def test_untrusted_peer_leaves_scope_unchanged() -> None:
    original = make_scope(client=("198.51.100.9", 4000), headers=FORWARDED)
    scope = seen_by_app("127.0.0.1", dict(original))
    assert scope["client"] == ("198.51.100.9", 4000)
    assert scope["scheme"] == "http"


def test_cidr_network_is_trusted() -> None:
    scope = seen_by_app("10.0.0.0/8", make_scope(client=("10.1.2.3", 1), headers=FORWARDED))
    assert scope["client"] == ("203.0.113.7", 0)
    outside = seen_by_app("10.0.0.0/8", make_scope(client=("11.0.0.1", 1), headers=FORWARDED))
    assert outside["client"] == ("11.0.0.1", 1)


def test_star_trusts_every_peer_and_takes_left_most_entry() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.7, 10.0.0.1, 10.0.0.2")]
    scope = seen_by_app("*", make_scope(client=("198.51.100.9", 4000), headers=headers))
    assert scope["client"] == ("203.0.113.7", 0)


def test_right_most_untrusted_entry_is_the_client() -> None:
    # The client put a fake address first; our two proxies appended what they saw.
    headers = [(b"x-forwarded-for", b"1.1.1.1, 203.0.113.7, 10.0.0.5")]
    scope = seen_by_app("127.0.0.1, 10.0.0.0/24", make_scope(headers=headers))
    assert scope["client"] == ("203.0.113.7", 0)


def test_all_entries_trusted_falls_back_to_left_most() -> None:
    headers = [(b"x-forwarded-for", b"10.0.0.7, 10.0.0.5")]
    scope = seen_by_app(["127.0.0.1", "10.0.0.0/24"], make_scope(headers=headers))
    assert scope["client"] == ("10.0.0.7", 0)


def test_repeated_forwarded_for_headers_are_one_list() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"10.0.0.5")]
    scope = seen_by_app("127.0.0.1,10.0.0.5", make_scope(headers=headers))
    assert scope["client"] == ("203.0.113.7", 0)


def test_forwarded_for_port_is_kept() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.7:4711")]
    assert seen_by_app("127.0.0.1", make_scope(headers=headers))["client"] == ("203.0.113.7", 4711)
    headers = [(b"x-forwarded-for", b"[2001:db8::1]:4711")]
    assert seen_by_app("127.0.0.1", make_scope(headers=headers))["client"] == ("2001:db8::1", 4711)


def test_empty_forwarded_for_keeps_client() -> None:
    scope = seen_by_app("127.0.0.1", make_scope(headers=[(b"x-forwarded-for", b" ")]))
    assert scope["client"] == ("127.0.0.1", 5000)


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [(b"https", "wss"), (b"wss", "wss"), (b"http", "ws"), (b"ws", "ws"), (b"HTTPS", "wss")],
)
def test_websocket_scheme_maps_to_ws_or_wss(proto: bytes, scheme: str) -> None:
    headers = [(b"x-forwarded-proto", proto)]
    assert seen_by_app("127.0.0.1", make_scope("websocket", headers=headers))["scheme"] == scheme


@pytest.mark.parametrize(
    ("proto", "scheme"), [(b"https", "https"), (b"http", "http"), (b"wss", "https")]
)
def test_http_scheme_stays_http_or_https(proto: bytes, scheme: str) -> None:
    headers = [(b"x-forwarded-proto", proto)]
    assert seen_by_app("127.0.0.1", make_scope("http", headers=headers))["scheme"] == scheme


def test_unknown_proto_is_ignored() -> None:
    headers = [(b"x-forwarded-proto", b"gopher")]
    assert seen_by_app("127.0.0.1", make_scope(headers=headers))["scheme"] == "http"


def test_proto_list_uses_right_most_value() -> None:
    headers = [(b"x-forwarded-proto", b"http, https")]
    assert seen_by_app("127.0.0.1", make_scope(headers=headers))["scheme"] == "https"


def test_websocket_scope_gets_forwarded_client() -> None:
    scope = seen_by_app("127.0.0.1", make_scope("websocket", headers=FORWARDED))
    assert scope["client"] == ("203.0.113.7", 0)
    assert scope["scheme"] == "wss"


def test_lifespan_passes_through() -> None:
    scope = seen_by_app("*", {"type": "lifespan", "asgi": {"version": "3.0"}})
    assert scope == {"type": "lifespan", "asgi": {"version": "3.0"}}


def test_missing_client_is_not_trusted() -> None:
    scope = seen_by_app("127.0.0.1", make_scope(client=None, headers=FORWARDED))
    assert scope["client"] is None
    assert scope["scheme"] == "http"


def test_ipv6_addresses_compare_by_value() -> None:
    hosts = TrustedHosts("::1, 2001:db8::/32")
    assert "0:0:0:0:0:0:0:1" in hosts
    assert "2001:db8:ffff::1" in hosts
    assert "2001:db9::1" not in hosts
    assert "127.0.0.1" not in hosts


def test_non_ip_literal_matches_exactly() -> None:
    hosts = TrustedHosts(["/run/proxy.sock", "127.0.0.1"])
    assert "/run/proxy.sock" in hosts
    assert "/run/other.sock" not in hosts
    assert "" not in hosts


def test_parse_trusted_hosts_strips_and_drops_empty_items() -> None:
    assert parse_trusted_hosts(" 127.0.0.1 , ,10.0.0.0/8,") == ["127.0.0.1", "10.0.0.0/8"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.2.3.4", ("1.2.3.4", 0)),
        ("1.2.3.4:80", ("1.2.3.4", 80)),
        ("::1", ("::1", 0)),
        ("[::1]", ("::1", 0)),
        ("[::1]:80", ("::1", 80)),
        ("unknown", ("unknown", 0)),
        ("1.2.3.4:x", ("1.2.3.4:x", 0)),
    ],
)
def test_split_host_port(value: str, expected: tuple[str, int]) -> None:
    assert split_host_port(value) == expected


def test_remembered_verdicts_are_bounded_and_stay_right() -> None:
    import fastws.proxy_headers as proxy

    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["client"])

    middleware = ProxyHeadersMiddleware(app, "10.0.0.0/8")

    async def run_all() -> None:
        for i in range(proxy._VERDICTS_MAX + 100):
            # Alternate trusted and untrusted peers; each forwards the same client.
            host = f"10.0.{i // 256 % 256}.{i % 256}" if i % 2 else f"198.51.{i // 256}.{i % 256}"
            scope = make_scope(client=(host, 1), headers=FORWARDED)
            await middleware(scope, None, None)  # type: ignore[arg-type]
            assert len(middleware._verdicts) <= proxy._VERDICTS_MAX
        # Asked again after the clear: the verdicts are recomputed, not lost.
        await middleware(make_scope(client=("10.1.2.3", 1), headers=FORWARDED), None, None)  # type: ignore[arg-type]
        await middleware(make_scope(client=("198.51.1.1", 1), headers=FORWARDED), None, None)  # type: ignore[arg-type]

    asyncio.run(run_all())
    forwarded = [c for c in seen if c == ("203.0.113.7", 0)]
    assert len(forwarded) == (proxy._VERDICTS_MAX + 100) // 2 + 1
    assert seen[-1] == ("198.51.1.1", 1)

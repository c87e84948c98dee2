"""fastws.ws.handshake without sockets: RFC 6455 §4.2 request checks and the 101 bytes."""

from __future__ import annotations

import pytest

from fastws.ws import handshake

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example


def request(**overrides: bytes | None) -> list[tuple[bytes, bytes]]:
    fields = {
        b"host": b"example.com",
        b"upgrade": b"websocket",
        b"connection": b"Upgrade",
        b"sec-websocket-key": KEY,
        b"sec-websocket-version": b"13",
    }
    for name, value in overrides.items():
        fields[name.replace("_", "-").encode()] = value  # type: ignore[assignment]
    return [(name, value) for name, value in fields.items() if value is not None]


@pytest.mark.parametrize(
    ("upgrade", "connection"),
    [
        (b"websocket", b"Upgrade"),
        (b"WebSocket", b"upgrade"),
        (b" websocket ", b"keep-alive, Upgrade"),
        (b"h2c, websocket", b"Upgrade,keep-alive"),
    ],
)
def test_upgrade_and_connection_accept_any_case_and_token_lists(
    upgrade: bytes, connection: bytes
) -> None:
    headers = request(upgrade=upgrade, connection=connection)
    assert handshake.is_websocket_upgrade(headers)
    offer = handshake.validate_request(b"GET", "1.1", headers)
    assert isinstance(offer, handshake.Offer) and offer.key == KEY


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"upgrade": b"websockets"}, 400),  # a token, not a substring
        ({"upgrade": b"h2c"}, 400),
        ({"connection": b"keep-alive"}, 400),
        ({"connection": b"upgraded"}, 400),
        ({"sec_websocket_version": b"8"}, 426),
        ({"sec_websocket_version": None}, 400),
        ({"sec_websocket_key": b"short"}, 400),
        ({"sec_websocket_key": None}, 400),
    ],
)
def test_malformed_upgrades_are_rejected(overrides: dict[str, bytes | None], status: int) -> None:
    result = handshake.validate_request(b"GET", "1.1", request(**overrides))
    assert isinstance(result, handshake.Rejection) and result.status == status


def test_only_the_websocket_token_makes_an_upgrade() -> None:
    assert not handshake.is_websocket_upgrade(request(upgrade=b"websocketx, h2c"))
    assert not handshake.is_websocket_upgrade(request(upgrade=None))


def test_accept_response_bytes() -> None:
    response = handshake.accept_response(KEY, "chat", b"permessage-deflate", [(b"server", b"x")])
    assert response == (
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"  # RFC 6455 §1.3
        b"sec-websocket-protocol: chat\r\nsec-websocket-extensions: permessage-deflate\r\n"
        b"server: x\r\n\r\n"
    )

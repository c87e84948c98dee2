"""Both protocols are asyncio BufferedProtocols whose data_received() refuses loudly.

uvloop looks data_received up on every protocol it is given; having one spares it an
AttributeError per connection (fastws.transport.BufferedOnly). No transport may call it:
bytes must arrive through get_buffer()/buffer_updated(), which the rest of the suite drives.
"""

from __future__ import annotations

import asyncio

import pytest

from fastws.http.protocol import HttpProtocol
from fastws.ws.protocol import WebSocketProtocol


@pytest.mark.parametrize("protocol", [HttpProtocol, WebSocketProtocol])
def test_a_transport_calling_data_received_gets_a_clear_error(protocol: type) -> None:
    assert issubclass(protocol, asyncio.BufferedProtocol)
    assert not issubclass(protocol, asyncio.Protocol)  # transports pick the buffered path
    instance = protocol.__new__(protocol)
    with pytest.raises(RuntimeError, match=r"get_buffer\(\) and buffer_updated\(\)"):
        instance.data_received(b"GET / HTTP/1.1\r\n\r\n")

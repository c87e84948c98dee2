"""WebSocket side of fastws: RFC 6455 framing, handshake, deflate and the asyncio protocol."""

"""WebSocket side of fastws: RFC 6455 framing, handshake, connection state and the asyncio protocol."""

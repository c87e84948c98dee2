"""The ASGI application the Autobahn suite runs against: every message is echoed back unchanged.

Raw ASGI, no framework, so that what the suite measures is the server alone: a text message
comes back as text, a binary one as binary, in order, on the connection it arrived on. Every
WebSocket handshake is accepted; plain HTTP requests get a short 404; lifespan is acknowledged.
Run it by hand with ``python -m fastws echo_app:app --app-dir tests/compliance --port 9001``;
``run_autobahn.py`` starts it that way on a free port.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await _echo(receive, send)
    elif scope["type"] == "http":
        await _not_found(receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(receive, send)


async def _echo(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.receive":
            # The ASGI websocket spec sets exactly one of "text" and "bytes" (the other is
            # absent or None); echo with the same one so the frame opcode is preserved.
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        elif kind == "websocket.disconnect":
            return


async def _not_found(receive: Receive, send: Send) -> None:
    body = b"WebSocket echo endpoint for the Autobahn suite\n"
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return

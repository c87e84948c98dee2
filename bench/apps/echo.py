"""The one raw-ASGI app every ASGI server runs in the load benchmarks.

WebSocket: accept, then echo each message back as it came (text as text, bytes as bytes)
until the client disconnects. HTTP: any request gets a 200 with a short plain-text body
(the keep-alive requests/s scenario). Lifespan: acknowledged, nothing to set up.

Deliberately framework-free so that the servers, not a framework, are what is measured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HTTP_BODY = b"Hello, world!"
HTTP_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain"),
        (b"content-length", str(len(HTTP_BODY)).encode()),
    ],
}
HTTP_RESPONSE_BODY: Message = {"type": "http.response.body", "body": HTTP_BODY}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        await websocket_echo(receive, send)
    elif kind == "http":
        await send(HTTP_START)
        await send(HTTP_RESPONSE_BODY)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def websocket_echo(receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":  # websocket.disconnect
            return
        text = message.get("text")
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes")})

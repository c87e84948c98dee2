"""Fan-out benchmark, raw ASGI, the loop every ASGI app writes today (no server extension).

WebSocket path `/sub`: accept, remember the connection's `send`, send the text "ok" (the load
client's signal that this subscriber is registered), then wait for the disconnect.
Path `/pub`: accept; every message received is sent, as it came (text as text, bytes as
bytes), to every subscriber, one `await send(...)` each, in the order they subscribed.
HTTP: 200 (the harness's readiness probe). Lifespan: acknowledged.

Run on fastws, uvicorn and granian through their own command lines (bench/fanout.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# insertion-ordered: delivery order is subscription order, as in a list
subscribers: dict[int, Send] = {}
OK: Message = {"type": "websocket.send", "text": "ok"}
HTTP_START: Message = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
}
HTTP_BODY: Message = {"type": "http.response.body", "body": b"ok"}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "websocket":
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        if scope["path"] == "/pub":
            await publisher(receive)
        else:
            await subscriber(receive, send)
    elif kind == "http":
        await send(HTTP_START)
        await send(HTTP_BODY)
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def subscriber(receive: Receive, send: Send) -> None:
    key = id(send)
    subscribers[key] = send
    try:
        await send(OK)
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        subscribers.pop(key, None)


async def publisher(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        text = message.get("text")
        out: Message = (
            {"type": "websocket.send", "text": text}
            if text is not None
            else {"type": "websocket.send", "bytes": message.get("bytes")}
        )
        for send in list(subscribers.values()):
            try:
                await send(out)
            except Exception:  # a subscriber that is going away; its own task drops it
                pass

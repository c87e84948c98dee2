"""Fan-out benchmark, raw ASGI, through the server's topic extension (fastws; the same
message names as socketify's ASGI): one `websocket.publish` per broadcast, the server
builds the frame once and delivers it to every subscriber of the topic.

`/sub`: accept, `{"type": "websocket.subscribe", "topic": "bench"}`, then the text "ok"
(the load client's signal that the subscription is in place; the server keeps a
connection's sends and the publishes it receives in the order they were issued), then wait
for the disconnect. `/pub`: accept; every message received is published to "bench" as it
came (text as text, bytes as bytes). The publisher is not subscribed, so it never receives
its own messages. HTTP: 200. Lifespan: acknowledged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TOPIC = "bench"
SUBSCRIBE: Message = {"type": "websocket.subscribe", "topic": TOPIC}
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
            while True:
                message = await receive()
                if message["type"] != "websocket.receive":
                    return
                text = message.get("text")
                if text is not None:
                    await send({"type": "websocket.publish", "topic": TOPIC, "text": text})
                else:
                    await send(
                        {"type": "websocket.publish", "topic": TOPIC, "bytes": message["bytes"]}
                    )
        else:
            await send(SUBSCRIBE)
            await send(OK)
            while (await receive())["type"] != "websocket.disconnect":
                pass
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

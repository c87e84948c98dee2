"""An ASGI app for the pub/sub tests (tests/integration/test_pubsub*.py), raw ASGI, no framework.

WebSocket: every text message is a JSON command, answered in order on the same connection:
  {"sub": T} / {"unsub": T}          -> the extension message, then "ok:sub:T" / "ok:unsub:T"
  {"pub": T, "text": X, "exclude": B} -> websocket.publish (exclude_sender when B)
  {"pubbin": T, "n": N}              -> publish N bytes messages b"<i>" (binary)
  {"flood": T, "n": N, "size": S}    -> N publishes of S bytes each (a 2 ms pause after
                                        every 8), then "done"
  {"mix": T}                         -> send "a", publish "b" on T, send "c"
  {"mixbig": T, "n": N}              -> N times: send big(i), publish big(-1 - i) on T, send
                                        big(i) again (messages long enough to be compressed)
  {"pid": 1}                         -> "pid:<worker pid>"
HTTP: POST /publish/<topic> publishes the body (text) through fastws.pubsub from the request.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from fastws import pubsub


def big(i: int) -> str:
    """A message of a few hundred bytes, over --ws-deflate-min-size, that compresses well and
    repeats across calls: a compressor keeping context refers back to earlier ones."""
    return f"message {i}: " + "".join(f"<row id={i * 7 + k} value={k * k}/>" for k in range(16))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        topic = scope["path"].rsplit("/", 1)[-1]
        await pubsub.publish(scope, topic, body.decode())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"published"})
        return
    assert "websocket.publish" in scope["extensions"]
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        command = json.loads(message["text"])
        if "sub" in command:
            await send({"type": "websocket.subscribe", "topic": command["sub"]})
            await send({"type": "websocket.send", "text": f"ok:sub:{command['sub']}"})
        elif "unsub" in command:
            await send({"type": "websocket.unsubscribe", "topic": command["unsub"]})
            await send({"type": "websocket.send", "text": f"ok:unsub:{command['unsub']}"})
        elif "pub" in command:
            await send(
                {
                    "type": "websocket.publish",
                    "topic": command["pub"],
                    "text": command["text"],
                    "exclude_sender": command.get("exclude", False),
                }
            )
        elif "pubbin" in command:
            for i in range(command["n"]):
                await send(
                    {"type": "websocket.publish", "topic": command["pubbin"], "bytes": b"%d" % i}
                )
        elif "flood" in command:
            payload = b"x" * command["size"]
            for i in range(command["n"]):
                await send(
                    {"type": "websocket.publish", "topic": command["flood"], "bytes": payload}
                )
                if i % 8 == 7:
                    await asyncio.sleep(0.002)
            await send({"type": "websocket.send", "text": "done"})
        elif "mix" in command:
            await send({"type": "websocket.send", "text": "a"})
            await send({"type": "websocket.publish", "topic": command["mix"], "text": "b"})
            await send({"type": "websocket.send", "text": "c"})
        elif "mixbig" in command:
            for i in range(command["n"]):
                await send({"type": "websocket.send", "text": big(i)})
                await send(
                    {"type": "websocket.publish", "topic": command["mixbig"], "text": big(-1 - i)}
                )
                await send({"type": "websocket.send", "text": big(i)})
        elif "pid" in command:
            await send({"type": "websocket.send", "text": f"pid:{os.getpid()}"})

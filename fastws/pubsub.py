"""Publish/subscribe for apps: the helpers behind docs/pubsub.md, for Starlette and FastAPI.

The server side is an ASGI extension (messages ``websocket.subscribe``, ``websocket.unsubscribe``
and ``websocket.publish`` sent through a WebSocket's ``send``, advertised in the websocket
scope's ``extensions``); these helpers send those messages for a Starlette ``WebSocket``
(whose own ``send()`` admits only ``websocket.send`` and ``websocket.close``), and publish from
anywhere else (an HTTP endpoint, a background task, lifespan) through the hub of the server
running on the current event loop (or the process's only server, from another thread).

Stays out of delivery itself (fastws.ws.pubsub) and of Redis (fastws.ws.pubsub_redis).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["hub", "publish", "publish_threadsafe", "subscribe", "unsubscribe"]


def _scope(conn: Any) -> dict[str, Any]:
    scope = getattr(conn, "scope", conn)
    if not isinstance(scope, dict):
        raise TypeError(f"expected a Starlette Request/WebSocket or an ASGI scope, got {conn!r}")
    return scope


def hub(conn: Any = None) -> Any:
    """The pub/sub hub of the fastws server that serves ``conn`` (a Request, a WebSocket or a
    scope: its ``fastws.pubsub`` extension), else of the server on the running event loop,
    else (a thread, no ``conn``) of the process's one server. Its ``publish(topic, data)``
    must be called on that server's loop; ``publish_threadsafe()`` works from any thread.

    Raises:
        RuntimeError: no fastws server runs here (or several do, and none on this thread).
    """
    from fastws.ws.pubsub import HUBS

    if conn is not None:
        extension = _scope(conn).get("extensions", {}).get("fastws.pubsub")
        if extension is not None:
            return extension["hub"]
    try:
        found = HUBS.get(asyncio.get_running_loop())
    except RuntimeError:
        found = None
    if found is None and len(HUBS) == 1:
        found = next(iter(HUBS.values()))
    if found is None:
        raise RuntimeError(
            "no fastws server with pub/sub runs on this loop (is the app served by fastws?)"
        )
    return found


async def publish(
    conn: Any, topic: str, data: str | bytes, *, exclude_sender: bool = False
) -> None:
    """Send ``data`` (str: a text message, bytes: binary) to every subscriber of ``topic``, in
    this process and, with ``--pubsub redis://...``, in every other one. Never waits on a slow
    subscriber (docs/pubsub.md, "Slow subscribers").

    Args:
        conn: a ``WebSocket`` (then the message goes through its connection, in order with its
            own sends, and ``exclude_sender`` applies), a ``Request`` or any ASGI scope.
        exclude_sender: do not deliver to ``conn`` itself (WebSockets only).
    """
    scope = _scope(conn) if conn is not None else {}
    if scope.get("type") == "websocket" and hasattr(conn, "_send"):
        message: dict[str, Any] = {"type": "websocket.publish", "topic": topic}
        message["bytes" if isinstance(data, (bytes, bytearray, memoryview)) else "text"] = data
        if exclude_sender:
            message["exclude_sender"] = True
        await conn._send(message)  # Starlette's raw ASGI send
        return
    publish_threadsafe(conn, topic, data)


def publish_threadsafe(conn: Any, topic: str, data: str | bytes) -> None:
    """``publish()`` for code that is not a coroutine: a sync endpoint in the thread pool, a
    thread of the app's own, a callback. On the server's loop it publishes at once, from any
    other thread it hands the publish to the loop (call_soon_threadsafe) and returns."""
    found = hub(conn)
    loop = found.loop
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        found.publish(topic, data)
    else:  # the hub belongs to the loop's thread alone
        loop.call_soon_threadsafe(found.publish, topic, data)


async def subscribe(websocket: Any, topic: str) -> None:
    """Subscribe a Starlette/FastAPI ``WebSocket`` (accepted) to ``topic``; it leaves every
    topic when it closes."""
    await websocket._send({"type": "websocket.subscribe", "topic": topic})


async def unsubscribe(websocket: Any, topic: str) -> None:
    """Unsubscribe ``websocket`` from ``topic``; takes effect at once."""
    await websocket._send({"type": "websocket.unsubscribe", "topic": topic})

"""ASGI applications for the integration suites.

Module-level apps are what subprocess servers load (``python -m fastws
tests.integration.apps:NAME``); ``make_*`` factories build apps for in-process servers that
report what they saw through a ``record`` callable. Only the standard library is imported at
module level, so a subprocess server starts fast; the framework apps are factories
(``--factory``) that import Starlette / FastAPI when called.

Environment read by the subprocess apps:
  FASTWS_TEST_MARKER  a file the app appends event lines to ("startup", "shutdown", ...)
  FASTWS_TEST_SLOW_S  how long /slow takes (default 1.0)

No ``from __future__ import annotations`` here: FastAPI reads endpoint annotations at runtime
and resolves string annotations in the module's globals, where the factory-local imports of
``fastapi_app`` are not (its WebSocket route would then 403).
"""

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]
Record = Callable[[Any], None]


def _mark(line: str) -> None:
    path = os.environ.get("FASTWS_TEST_MARKER")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


async def text_response(
    send: Send, body: bytes | str, status: int = 200, headers: list[Any] | None = None
) -> None:
    data = body.encode() if isinstance(body, str) else body
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(data)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client went away while sending the body")
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def run_lifespan(
    scope: Scope, receive: Receive, send: Send, record: Record | None = None
) -> None:
    """A well-behaved lifespan handler: startup and shutdown complete, events recorded."""
    while True:
        message = await receive()
        if record is not None:
            record(message["type"])
        if message["type"] == "lifespan.startup":
            _mark("startup")
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            _mark("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def echo_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, echo every message with its type, stop at disconnect."""
    message = await receive()
    assert message["type"] == "websocket.connect", message
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


# --------------------------------------------------------------------------------------------
# subprocess apps
# --------------------------------------------------------------------------------------------


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    """GET anything -> "hello"; WebSocket -> echo; lifespan supported."""
    if scope["type"] == "lifespan":
        await run_lifespan(scope, receive, send)
    elif scope["type"] == "http":
        await text_response(send, "hello")
    else:
        await echo_websocket(scope, receive, send)


async def shutdown_app(scope: Scope, receive: Receive, send: Send) -> None:
    """For graceful-shutdown tests.

    /slow streams a response: headers and b"start;" at once, b"end" after FASTWS_TEST_SLOW_S.
    /forever starts a response and never finishes it. A WebSocket is accepted and held open
    until the peer goes away; its disconnect code is marked. Lifespan events are marked.
    """
    if scope["type"] == "lifespan":
        await run_lifespan(scope, receive, send)
    elif scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"start;", "more_body": True})
        if scope["path"] == "/forever":
            await asyncio.sleep(3600)
        await asyncio.sleep(float(os.environ.get("FASTWS_TEST_SLOW_S", "1.0")))
        await send({"type": "http.response.body", "body": b"end"})
    else:
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                _mark(f"ws-disconnect {message.get('code')}")
                return


async def startup_failure(scope: Scope, receive: Receive, send: Send) -> None:
    """Reports lifespan.startup.failed."""
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
        return
    await text_response(send, "should never be served", status=500)


async def startup_raises(scope: Scope, receive: Receive, send: Send) -> None:
    """Raises during lifespan startup."""
    if scope["type"] == "lifespan":
        await receive()
        raise RuntimeError("startup exploded")
    await text_response(send, "should never be served", status=500)


# --------------------------------------------------------------------------------------------
# in-process app factories
# --------------------------------------------------------------------------------------------


def make_recording_ws_app(record: Record, *, reply: bool = True) -> App:
    """Records ("scope", scope) then every received event; accepts and echoes if ``reply``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await run_lifespan(scope, receive, send)
            return
        record(("scope", scope))
        if scope["type"] == "http":
            await text_response(send, "plain http")
            return
        while True:
            message = await receive()
            record(message)
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif message["type"] == "websocket.disconnect":
                return
            elif reply:
                await send(
                    {
                        "type": "websocket.send",
                        **{k: v for k, v in message.items() if k in ("text", "bytes")},
                    }
                )

    return app


# --------------------------------------------------------------------------------------------
# frameworks (factories: they import the framework when called)
# --------------------------------------------------------------------------------------------


def starlette_app() -> Any:
    """Starlette: GET / (text), GET /json?name= (JSON, with lifespan state), WS /ws (text echo),
    WS /ws-json (JSON echo with a server-added field)."""
    import contextlib

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello from starlette")

    async def as_json(request: Request) -> JSONResponse:
        return JSONResponse(
            {"name": request.query_params.get("name"), "greeting": request.state.greeting}
        )

    async def ws_text(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text("echo:" + await websocket.receive_text())
        except WebSocketDisconnect:
            pass

    async def ws_json(websocket: WebSocket) -> None:
        await websocket.accept(subprotocol=(websocket.scope["subprotocols"] or [None])[0])
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({**data, "seen_by": "starlette"})
        except WebSocketDisconnect:
            pass

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        yield {"greeting": "hi"}

    return Starlette(
        routes=[
            Route("/", home),
            Route("/json", as_json),
            WebSocketRoute("/ws", ws_text),
            WebSocketRoute("/ws-json", ws_json),
        ],
        lifespan=lifespan,
    )


def fastapi_app() -> Any:
    """FastAPI: GET /items/{item_id} (validated path/query params), POST /items (JSON body),
    WS /ws/{room} (JSON echo with the room), WS /ws-reject (closes before accept)."""
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect, status

    app = FastAPI()

    @app.get("/items/{item_id}")
    async def get_item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    @app.post("/items")
    async def post_item(item: dict[str, Any]) -> dict[str, Any]:
        return {"received": item, "size": len(json.dumps(item))}

    @app.websocket("/ws/{room}")
    async def ws_room(websocket: WebSocket, room: str) -> None:
        await websocket.accept()
        try:
            while True:
                data = await websocket.receive_json()
                await websocket.send_json({"room": room, "data": data})
        except WebSocketDisconnect:
            pass

    @app.websocket("/ws-reject")
    async def ws_reject(websocket: WebSocket) -> None:
        await websocket.close(code=status.WS_1008_POLICY_VIOLATION)

    return app


async def close_1013(scope: Scope, receive: Receive, send: Send) -> None:
    """WebSocket: accept, then close at once with 1013 (try again later)."""
    if scope["type"] == "lifespan":
        await run_lifespan(scope, receive, send)
        return
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 1013, "reason": "busy"})
    while (await receive())["type"] != "websocket.disconnect":
        pass

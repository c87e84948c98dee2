"""Starlette apps for tests/integration/test_dropin.py, served by a subprocess server:
``python -m fastws tests.integration.dropin_apps:app`` (or uvicorn's CLI)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.responses import FileResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

CHUNK = b"x" * 65536
FILE_SIZE = 64 << 20  # far more than the socket buffers hold, so an abort lands mid-response
finished = {"stream": 0}


def _big_file() -> str:
    path = os.path.join(tempfile.gettempdir(), f"fastws-dropin-{os.getpid()}.bin")
    if not os.path.exists(path) or os.path.getsize(path) != FILE_SIZE:
        with open(path, "wb") as f:
            f.truncate(FILE_SIZE)
    return path


async def stream(request: Any) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        try:
            for _ in range(FILE_SIZE // len(CHUNK)):
                yield CHUNK
        finally:
            finished["stream"] += 1

    return StreamingResponse(body(), media_type="application/octet-stream")


async def download(request: Any) -> FileResponse:
    return FileResponse(_big_file(), filename="big.bin")


async def count(request: Any) -> PlainTextResponse:
    return PlainTextResponse(str(finished["stream"]))


async def chooser(websocket: WebSocket) -> None:
    """Accepts with the subprotocol named in the query, offered by the client or not."""
    await websocket.accept(subprotocol=websocket.query_params.get("pick"))
    await websocket.send_text(websocket.scope["subprotocols"].__repr__())
    await websocket.close()


app = Starlette(
    routes=[
        Route("/stream", stream),
        Route("/download", download),
        Route("/count", count),
        WebSocketRoute("/choose", chooser),
    ]
)

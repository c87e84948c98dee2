"""Fan-out benchmark, FastAPI: the `ConnectionManager` of FastAPI's WebSockets guide
("Handling disconnections and multiple clients"), as users copy it.

`/sub`: `manager.connect()` (accept and append), send the text "ok" (the load client's
signal that the subscriber is registered), then read until the disconnect. `/pub`: every
text message received is `manager.broadcast()`: one `await send_text()` per subscriber.
`GET /`: 200 (readiness probe). Run on fastws and on uvicorn.
"""

from __future__ import annotations

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse


class ConnectionManager:
    def __init__(self) -> None:
        self.active_connections: list[WebSocket] = []

    async def connect(self, websocket: WebSocket) -> None:
        await websocket.accept()
        self.active_connections.append(websocket)

    def disconnect(self, websocket: WebSocket) -> None:
        self.active_connections.remove(websocket)

    async def broadcast(self, message: str) -> None:
        for connection in self.active_connections:
            await connection.send_text(message)


manager = ConnectionManager()
app = FastAPI()


@app.get("/")
async def root() -> PlainTextResponse:
    return PlainTextResponse("ok")


@app.websocket("/sub")
async def sub(websocket: WebSocket) -> None:
    await manager.connect(websocket)
    await websocket.send_text("ok")
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        manager.disconnect(websocket)


@app.websocket("/pub")
async def pub(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await manager.broadcast(await websocket.receive_text())
    except WebSocketDisconnect:
        pass

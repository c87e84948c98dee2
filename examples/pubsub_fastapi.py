"""Pub/sub with FastAPI on fastws: rooms as topics, published from WebSockets and HTTP.

    fastws examples.pubsub_fastapi:app                       # one process
    fastws examples.pubsub_fastapi:app --workers 4 --pubsub redis://127.0.0.1:6379/0

- ``/ws/{room}``: a WebSocket subscribed to the topic ``room``; what it sends is published to
  the room, not back to itself (``exclude_sender``). The server writes each publish to every
  subscriber from compiled code (no ``for ws in room: await ws.send_text(...)`` in the app),
  and a subscriber too slow to keep up is closed with 1013 instead of holding memory.
- ``POST /rooms/{room}``: publishes the request body (text) to the room from an HTTP endpoint;
  ``POST /rooms/{room}/sync`` does it from a sync endpoint (a thread pool thread).

With ``--pubsub redis://...`` every worker and every server on that Redis shares the rooms.
See docs/pubsub.md.
"""

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

from fastws import pubsub

app = FastAPI()


@app.websocket("/ws/{room}")
async def room(websocket: WebSocket, room: str) -> None:
    await websocket.accept()
    await pubsub.subscribe(websocket, room)
    await websocket.send_text(f"joined {room}")
    try:
        while True:
            text = await websocket.receive_text()
            await pubsub.publish(websocket, room, text, exclude_sender=True)
    except WebSocketDisconnect:
        pass  # it left every topic as it closed


@app.post("/rooms/{room}")
async def post(room: str, request: Request) -> dict:
    await pubsub.publish(request, room, (await request.body()).decode())
    return {"published": room}


@app.post("/rooms/{room}/sync")
def post_sync(room: str, request: Request) -> dict:
    # A sync endpoint runs in a worker thread: the helper hands the publish to the loop.
    pubsub.publish_threadsafe(request, room, "from a thread")
    return {"published": room}

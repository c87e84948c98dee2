"""Fan-out benchmark for picows (frame-level, no ASGI): its native loop, one
`transport.send()` per subscriber from the publisher's frame callback.

`/sub`: on connect, remember the transport and send the text "ok"; forget it on
disconnect. `/pub`: each data frame's payload goes to every subscriber with the same opcode
(the load client sends unfragmented messages). A plain HTTP request gets a 200.

    python fanout_picows.py --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import argparse

import uvloop
from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

subscribers: dict[int, WSTransport] = {}

# Bound at import, as in picows_echo.py (each `WSMsgType.X` is ~850 instructions on 3.11).
_TEXT = WSMsgType.TEXT
_CLOSE = WSMsgType.CLOSE
_DATA = (WSMsgType.TEXT, WSMsgType.BINARY)


class Subscriber(WSListener):  # type: ignore[misc]
    def on_ws_connected(self, transport: WSTransport) -> None:
        subscribers[id(self)] = transport
        transport.send(_TEXT, b"ok")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        subscribers.pop(id(self), None)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()


class Publisher(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is _CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif msg_type in _DATA:
            payload = frame.get_payload_as_bytes()
            for sub in subscribers.values():
                sub.send(msg_type, payload)


def route(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return WSUpgradeResponseWithListener(WSUpgradeResponse.create_ok_response(b"ok"), None)
    path = request.path
    return Publisher() if path in ("/pub", b"/pub") else Subscriber()


async def serve(host: str, port: int) -> None:
    server = await ws_create_server(
        route, host, port, max_frame_size=16 * 1024 * 1024, backlog=4096
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))

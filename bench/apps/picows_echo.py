"""The benchmark echo for picows, a frame-level WebSocket library with no ASGI layer.

It is the "how fast can Python go" reference: picows hands the listener each frame as a
view into its read buffer, and this listener sends the payload straight back with the
same opcode and FIN bit, so text is echoed as text and bytes as bytes. Unlike the ASGI
servers it does not check UTF-8 or reassemble fragmented messages; picows does neither
unless the application asks. A plain HTTP request gets a 200 with the same short body,
then picows closes the connection (it has no HTTP keep-alive), so the HTTP scenario
skips picows.

    python picows_echo.py --host 127.0.0.1 --port 8000

One process, uvloop, no auto-ping (uvicorn pings only every 20 s), frames up to 16 MiB.
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

HTTP_BODY = b"Hello, world!"


# Bound at import: on Python 3.11 an attribute of an enum class goes through
# EnumType.__getattr__, about 850 instructions per `WSMsgType.X` (callgrind); four of them per
# frame were over a quarter of picows's work per 32 B message. The reference is picows at its best.
_CLOSE = WSMsgType.CLOSE
_DATA = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)  # `in`: identity first


class EchoListener(WSListener):  # type: ignore[misc]
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type is _CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif msg_type in _DATA:
            transport.send(msg_type, frame.get_payload_as_memoryview(), frame.fin)


def route(request: WSUpgradeRequest) -> EchoListener | WSUpgradeResponseWithListener:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return WSUpgradeResponseWithListener(WSUpgradeResponse.create_ok_response(HTTP_BODY), None)
    return EchoListener()


async def serve(host: str, port: int) -> None:
    server = await ws_create_server(
        route, host, port, max_frame_size=16 * 1024 * 1024, backlog=2048
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    try:
        uvloop.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

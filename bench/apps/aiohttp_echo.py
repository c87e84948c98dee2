"""The benchmark echo for aiohttp's own server (aiohttp.web), on uvloop.

Same behaviour as echo.py: a WebSocket upgrade on any path echoes text as text and bytes
as bytes; a plain HTTP request gets a 200 with the same short body. Started the way an
aiohttp user starts a server, ``web.run_app``:

    python aiohttp_echo.py --host 127.0.0.1 --port 8000

Access log off, one process, uvloop, limits matched to uvicorn's defaults (16 MiB
messages, backlog 2048); aiohttp's own defaults otherwise (permessage-deflate accepted
when offered, no heartbeat).
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import WSMsgType, web

HTTP_BODY = b"Hello, world!"

# Bound at import, as in picows_echo.py: on Python 3.11 each `WSMsgType.X` goes through
# EnumType.__getattr__ (about 850 instructions), which is no part of aiohttp's own cost.
_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY


async def handle(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return web.Response(body=HTTP_BODY, content_type="text/plain")
    ws = web.WebSocketResponse(max_msg_size=16 * 1024 * 1024)
    await ws.prepare(request)
    async for msg in ws:
        kind = msg.type
        if kind is _TEXT:
            await ws.send_str(msg.data)
        elif kind is _BINARY:
            await ws.send_bytes(msg.data)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        backlog=2048,
        shutdown_timeout=1.0,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()

"""Server CPU per pub/sub delivery, without sockets: what permessage-deflate costs a publish.

N WebSocket connections over in-memory transports (fastws.ws.protocol.WebSocketProtocol, the
server's own class, accepted by a raw ASGI app that subscribes them to one topic) receive
--publishes publishes of one --size message, published from outside any connection
(hub.publish, what fastws.pubsub.publish does). Each publish builds its frame once; the hub
corks it into every subscriber and writes each subscriber's cork at the end of the loop pass.
Three kinds of subscribers, in interleaved rounds, medians reported:

- plain: no permessage-deflate (the frame is shared by all);
- deflate-no-takeover: permessage-deflate with server_no_context_takeover agreed;
- deflate-takeover: permessage-deflate with context takeover (what browsers agree to). The
  publish is compressed once for these too (fastws.ws.pubsub._deflated): before that, each
  subscriber's compressor compressed it with its own history, one zlib pass per subscriber
  (30.7 us CPU per 1 KiB delivery, 56x plain, bench/README.md).

The messages are JSON-like text (price-feed updates), each different, so they compress as
real payloads do (an identical message repeated would shrink to a few bytes with context
takeover and flatter it).

    .venv/bin/python bench/micro/pubsub.py [--subscribers 1000] [--publishes 200] [--size 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from typing import Any

import uvloop
from protocol import MemoryTransport  # bench/micro/protocol.py, beside this file

from fastws.config import Config
from fastws.transport import ServerState
from fastws.ws import handshake
from fastws.ws.frames import IMPLEMENTATION
from fastws.ws.protocol import Wakeups, WebSocketProtocol
from fastws.ws.pubsub import Hub

TOPIC = "prices"
KINDS = {
    "plain": [],
    "deflate-no-takeover": ["permessage-deflate; server_no_context_takeover"],
    "deflate-takeover": ["permessage-deflate"],
}


async def subscriber(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.subscribe", "topic": TOPIC})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def message(size: int, seed: int) -> str:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    while len(json.dumps(rows)) < size:
        rows.append({"s": f"SYM{rng.randrange(500)}", "p": round(rng.uniform(1, 999), 2)})
    return json.dumps(rows)[:size]


async def run(kind: str, subscribers: int, texts: list[str]) -> tuple[float, int]:
    """CPU seconds per delivery, and the bytes written per delivery."""
    config = Config(subscriber, ws_ping_interval=None, access_log=False, log_level="warning")
    config.load()
    hub = Hub()
    state = ServerState(Wakeups(), hub=hub)
    loop = asyncio.get_running_loop()
    scope = {
        "http_version": "1.1",
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [],
        "state": {},
    }
    conns = []
    for _ in range(subscribers):
        transport = MemoryTransport()
        offer = handshake.Offer(key=b"dGhlIHNhbXBsZSBub25jZQ==", extensions=list(KINDS[kind]))
        proto = WebSocketProtocol(
            config, state, {}, dict(scope), offer, transport, None, None, loop
        )
        proto.start(b"")
        conns.append((proto, transport))
    for _ in range(100):  # accept and subscribe
        await asyncio.sleep(0)
    if len(hub.topics.get(TOPIC, ())) != subscribers:
        raise SystemExit(f"{kind}: only {len(hub.topics.get(TOPIC, ()))} subscribed")
    before = sum(t.written for _, t in conns)
    start = time.process_time()
    for text in texts:
        hub.publish(TOPIC, text)
        await asyncio.sleep(0)  # the pass ends: the corks are written
    elapsed = time.process_time() - start
    written = sum(t.written for _, t in conns) - before
    for proto, transport in conns:
        transport.closing = True
        proto.connection_lost(None)
    await asyncio.sleep(0)
    deliveries = subscribers * len(texts)
    return elapsed / deliveries, written // deliveries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publishes", type=int, default=200)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    texts = [message(args.size, seed) for seed in range(args.publishes)]  # each its own
    results: dict[str, list[float]] = {kind: [] for kind in KINDS}
    sizes: dict[str, int] = {}
    for _ in range(args.rounds):
        for kind in KINDS:  # interleaved
            loop = uvloop.new_event_loop()
            try:
                per, sizes[kind] = loop.run_until_complete(run(kind, args.subscribers, texts))
            finally:
                loop.close()
            results[kind].append(per)
    plain = statistics.median(results["plain"])
    print(
        f"codec={IMPLEMENTATION} subscribers={args.subscribers} publishes={args.publishes} "
        f"messages of {args.size} B text, {args.rounds} rounds (medians):"
    )
    for kind, values in results.items():
        med = statistics.median(values)
        print(
            f"  {kind:24} {med * 1e6:7.2f} us CPU/delivery  {1 / med:>12,.0f} deliveries/CPU-s  "
            f"{med / plain:6.2f}x plain  {sizes[kind]:5d} B/frame"
        )


if __name__ == "__main__":
    main()

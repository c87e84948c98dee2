# cython: annotation_typing=False
"""Topics of the ASGI publish/subscribe extension: who listens to what, and the fan-out.

Owns one server process's map of topic -> subscribed connections, and the publish that
writes one message to all of them: the frame is encoded once, then a loop over the
subscribers hands it to each connection's _deliver() (its write budget, then a direct send
or the transport's buffer). Compiled (setup.py; types in pubsub.pxd) that loop is C calling a
C method per subscriber, with no Python call per subscriber (bench/: fan-out).

Stays out of: the ASGI messages (fastws.ws.protocol turns websocket.subscribe/unsubscribe/
publish into the calls below), sockets and budgets (the connection's), and other processes
(a bridge, fastws.ws.pubsub_redis, is told of first/last local subscribers and of each publish).
The event loop's thread only: fastws.pubsub hops threads for apps that publish from others.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastws.ws.deflate import compress_alone
from fastws.ws.frames import Opcode, _flag, encode_frame

try:
    import cython  # type: ignore[import-untyped,import-not-found,unused-ignore]

    COMPILED: bool = cython.compiled
except ImportError:  # Cython is a build requirement only
    COMPILED = False
if not COMPILED and _flag("FASTWS_REQUIRE_EXTENSIONS") and not _flag("FASTWS_NO_EXTENSIONS"):
    raise ImportError("fastws.ws.pubsub is not compiled (FASTWS_REQUIRE_EXTENSIONS): make build")

_TEXT = int(Opcode.TEXT)
_BINARY = int(Opcode.BINARY)

# The hub of each running server, by its event loop (server.py startup/shutdown): where
# fastws.pubsub finds it for code outside any WebSocket.
HUBS: dict[Any, Hub] = {}


class Hub:
    """One process's topics. ``topics[topic]`` is a dict used as an ordered set of the
    connections subscribed (insertion order, O(1) removal); each connection keeps the set of
    its own topics (``ws.topics``), so that a closed connection leaves all of them at once."""

    __slots__ = ("topics", "bridge", "loop", "published", "delivered", "corked", "run_flush")

    def __init__(self) -> None:
        self.topics: dict[str, dict[Any, None]] = {}
        # Told of a topic's first and last local subscriber (listen/unlisten) and of every
        # publish (forward); None: this process alone.
        self.bridge: Any = None
        self.loop: Any = None  # the loop it runs on, set by the server at startup
        self.published = 0  # publishes (local and from the bridge)
        self.delivered = 0  # frames handed to subscribers
        # Connections holding corked frames, flushed once at the end of the loop pass in which
        # the first was corked: what is due to one socket in a pass goes out in one send().
        self.corked: list[Any] = []
        self.run_flush = self.flush  # bound once

    def subscribe(self, ws: Any, topic: str) -> bool:
        """Add ``ws`` to ``topic``. Returns False when it was subscribed already."""
        subscribers = self.topics.get(topic)
        if subscribers is None:
            subscribers = self.topics[topic] = {}
            if self.bridge is not None:
                self.bridge.listen(topic)
        elif ws in subscribers:
            return False
        subscribers[ws] = None
        mine = ws.topics
        if mine is None:
            ws.topics = mine = set()
        mine.add(topic)
        return True

    def unsubscribe(self, ws: Any, topic: str) -> bool:
        """Remove ``ws`` from ``topic`` at once. Returns False when it was not subscribed."""
        mine = ws.topics
        if mine is None or topic not in mine:
            return False
        mine.discard(topic)
        self._remove(ws, topic)
        return True

    def drop(self, ws: Any) -> None:
        """Remove ``ws`` from every topic (its connection is closed or closing)."""
        mine = ws.topics
        if mine is None:
            return
        ws.topics = None
        for topic in mine:
            self._remove(ws, topic)

    def _remove(self, ws: Any, topic: str) -> None:
        subscribers = self.topics.get(topic)
        if subscribers is None:
            return
        subscribers.pop(ws, None)
        if not subscribers:
            del self.topics[topic]
            if self.bridge is not None:
                self.bridge.unlisten(topic)

    def subscribers(self, topic: str) -> int:
        """How many connections of this process are subscribed to ``topic``."""
        subscribers = self.topics.get(topic)
        return 0 if subscribers is None else len(subscribers)

    def publish(self, topic: str, data: Any, sender: Any = None) -> int:
        """Send ``data`` (str: a text message, bytes-like: binary) to every subscriber of
        ``topic`` in this process except ``sender``, and hand it to the bridge, if any, for
        the other processes. Never waits: a subscriber over its write budget is closed with
        1013 instead. Returns the number of local subscribers it was written to."""
        if type(data) is str:
            opcode = _TEXT
        elif type(data) is bytes:
            opcode = _BINARY
        elif isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
            opcode = _BINARY
        else:
            raise TypeError(f"a publish needs str or bytes data, not {type(data).__name__}")
        n = self.deliver(topic, opcode, data, sender)
        if self.bridge is not None:
            self.bridge.forward(topic, opcode, data)
        return n

    def deliver(self, topic: str, opcode: int, data: Any, sender: Any) -> int:
        """Local delivery only (the bridge calls it for messages from other processes)."""
        self.published += 1
        subscribers = self.topics.get(topic)
        if not subscribers:
            return 0
        if COMPILED:  # the codec's C function (cimported in pubsub.pxd)
            frame = data_frame(opcode, data)  # type: ignore[name-defined]  # noqa: F821
        else:
            frame = encode_frame(opcode, data)
        return self._fan_out(subscribers, frame, opcode, data, sender)

    def _fan_out(
        self, subscribers: dict[Any, None], frame: bytes, opcode: int, data: Any, sender: Any
    ) -> int:
        # Compiled: `ws` is typed _WebSocket (pubsub.pxd), so deflate/_deliver are C struct
        # reads and a C call; the loop iterates the dict in C. Nothing here may add to or
        # remove from `subscribers` (a connection over budget only closes; it leaves the
        # topics below, after the loop).
        n = 0
        corked = self.corked
        first = not corked
        over = None
        shared = None  # the publish compressed for deflate subscribers, by window (_deflated)
        for ws in subscribers:
            if ws is sender:
                continue
            if ws.deflate is None:
                done = ws._deliver(frame)
            else:
                if shared is None:
                    shared = {}
                done = ws._deliver(_deflated(ws, opcode, data, frame, shared))
            if done > 0:
                n += 1
                if done == 2:
                    corked.append(ws)
            elif done < 0:
                if over is None:
                    over = []
                over.append(ws)
        if over is not None:
            for ws in over:
                self.drop(ws)
        self.delivered += n
        if first and corked:
            self._flush_soon()
        return n

    def hold(self, ws: Any) -> None:
        """``ws`` has begun a cork outside a publish (a send() from another task, see
        _WebSocket._hold): flush it with the publishes' at the end of this pass."""
        if not self.corked:
            self._flush_soon()
        self.corked.append(ws)

    def _flush_soon(self) -> None:
        """The first cork of this pass: flush() once the pass is over."""
        loop = self.loop
        if loop is None:
            loop = asyncio.get_running_loop()
        loop.call_soon(self.run_flush)

    def flush(self) -> None:
        """Write every connection's corked frames (end of the loop pass that corked them)."""
        corked = self.corked
        self.corked = []
        for ws in corked:
            ws._uncork()


def _deflated(ws: Any, opcode: int, data: Any, frame: bytes, shared: dict[int, bytes]) -> bytes:
    """The frame for a subscriber that negotiated permessage-deflate (RFC 7692): compressed
    once per publish and window size, shared by every such subscriber (``shared``: window bits
    -> frame), with or without context takeover.

    The shared frame refers to no earlier message (deflate.compress_alone()), so every
    subscriber's decompressor inflates it the same. A subscriber whose compressor keeps
    context (the default of most clients, browsers included) then starts a fresh context at
    its next send(): its client's window now ends with the publish, not with what that
    compressor wrote (docs/pubsub.md, "permessage-deflate").
    """
    if not ws.compresses(len(data)):
        return frame
    deflate = ws.deflate
    bits = deflate.window_bits
    out = shared.get(bits)
    if out is None:
        payload = data.encode("utf-8") if type(data) is str else data
        out = shared[bits] = encode_frame(opcode, compress_alone(payload, bits), rsv1=True)
    deflate.forget_history()
    return out  # type: ignore[no-any-return]

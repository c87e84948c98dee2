"""The Redis bridge of the pub/sub hub (``--pubsub redis://host:port/db``): topics shared by
every worker and server that uses the same Redis.

Owns one process's Redis connections (one for PUBLISH, one subscribed), which channels it is
subscribed to, and reconnecting. Stays out of delivery to local subscribers (the Hub's) and of
the ASGI messages (fastws.ws.protocol's).

- A topic's channel is ``fastws:<topic>``. The process is subscribed to the channels of the
  topics that have local subscribers, and only those (Hub.subscribe/unsubscribe call listen/
  unlisten on a topic's first and last local subscriber).
- A publish is delivered to this process's subscribers at once (Hub.publish), then forwarded to
  Redis once. Each message carries the publishing process's random id, and a process drops its
  own messages when Redis echoes them back: every subscriber gets each message once, local
  subscribers without the Redis round trip, and local delivery does not depend on Redis being
  up. Message: ``origin (8 bytes) + opcode (1 byte) + payload``.
- Redis pub/sub is at-most-once: while Redis is unreachable, local delivery goes on, publishes
  from this process are not forwarded (counted and logged), messages from other processes are
  lost, and the bridge reconnects with exponential backoff (0.1 s to 5 s, with jitter), then
  subscribes again to the channels of the topics that have local subscribers by then.
- The publisher never waits: forward() appends to a bounded queue that one task sends, many
  commands per round trip (a pipeline).

Needs the ``redis`` package (``pip install 'fastws[redis]'``, redis>=5, its asyncio client).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import urllib.parse
from collections import deque
from typing import Any

logger = logging.getLogger("fastws.error")

PREFIX = b"fastws:"
_ORIGIN_BYTES = 8
MAX_QUEUED = 100_000  # publishes waiting for Redis before the oldest are dropped (counted)
_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 5.0


def redacted(url: str) -> str:
    """``url`` with its password (and user name) replaced by ``***``, for log lines."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = "***@" + host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class RedisBridge:
    """Connects one Hub to Redis. Created and started by the server (server.py startup), closed
    at shutdown; every worker of --workers has its own."""

    def __init__(self, hub: Any, url: str) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(
                "--pubsub needs the 'redis' package: pip install 'fastws[redis]'"
            ) from exc
        self.hub = hub
        self.url = url
        self.shown_url = redacted(url)  # for the log: never the password
        self.origin = os.urandom(_ORIGIN_BYTES)
        # A channel of its own keeps the subscribed connection subscribed (and listen()
        # running) while no topic has local subscribers.
        self.own_channel = b"fastws-bridge:" + self.origin.hex().encode("ascii")
        self.channels: set[bytes] = set()  # what we should be subscribed to
        self.queue: deque[tuple[bytes, bytes]] = deque()
        self.wakeup = asyncio.Event()
        self.connected = False
        self.down_since: float | None = None
        self.missed = 0  # local publishes not forwarded during the current outage
        self.forwarded = 0
        self.received = 0
        self.task: asyncio.Task[None] | None = None
        self.closing = False

    # -- the Hub's side (synchronous, never waits) ------------------------------------------

    def listen(self, topic: str) -> None:
        self.channels.add(PREFIX + topic.encode("utf-8"))
        self.wakeup.set()

    def unlisten(self, topic: str) -> None:
        self.channels.discard(PREFIX + topic.encode("utf-8"))
        self.wakeup.set()

    def forward(self, topic: str, opcode: int, data: Any) -> None:
        if not self.connected:
            self.missed += 1
            return
        payload = data.encode("utf-8") if type(data) is str else data
        queue = self.queue
        if len(queue) >= MAX_QUEUED:
            queue.popleft()
            self.missed += 1
        queue.append((PREFIX + topic.encode("utf-8"), self.origin + bytes((opcode,)) + payload))
        if len(queue) == 1:
            self.wakeup.set()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="fastws-pubsub")

    async def close(self) -> None:
        self.closing = True
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = _BACKOFF_MIN_S
        while not self.closing:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the redis package's errors, OSError...
                if self.connected or self.down_since is None:
                    logger.warning(
                        "pub/sub: Redis at %s unreachable (%s); local delivery goes on, "
                        "reconnecting",
                        self.shown_url,
                        exc or type(exc).__name__,
                    )
                    self.down_since = loop.time()
                if self.connected:
                    delay = _BACKOFF_MIN_S
                self.connected = False
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _BACKOFF_MAX_S)

    async def _session(self) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2.0)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        reader = writer = None
        try:
            await client.ping()
            subscribed = {self.own_channel} | self.channels
            await pubsub.subscribe(*subscribed)
            self.queue.clear()
            self.connected = True
            loop = asyncio.get_running_loop()
            if self.down_since is not None:
                logger.warning(
                    "pub/sub: Redis at %s reachable again after %.1f s: %d publish(es) from "
                    "this process were not forwarded, and what other processes published "
                    "meanwhile is lost (Redis pub/sub is at-most-once)",
                    self.shown_url,
                    loop.time() - self.down_since,
                    self.missed,
                )
            else:
                logger.info("pub/sub: connected to Redis at %s", self.shown_url)
            self.down_since = None
            self.missed = 0
            reader = loop.create_task(self._read(pubsub))
            writer = loop.create_task(self._write(client, pubsub, subscribed))
            done, _ = await asyncio.wait((reader, writer), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended the session
            raise ConnectionError("pub/sub session ended")
        finally:
            self.connected = False
            self.missed += len(self.queue)  # taken, never sent
            self.queue.clear()
            for task in (reader, writer):
                if task is not None and not task.done():
                    task.cancel()
                    try:
                        await task
                    except (asyncio.CancelledError, Exception):
                        pass
            for closing in (pubsub.aclose(), client.aclose()):
                try:
                    await closing
                except Exception:
                    pass

    async def _read(self, pubsub: Any) -> None:
        origin = self.origin
        skip = len(PREFIX)
        deliver = self.hub.deliver
        async for message in pubsub.listen():
            if message["type"] != "message":
                continue
            data = message["data"]
            if data[:_ORIGIN_BYTES] == origin:
                continue  # our own publish, delivered locally already
            self.received += 1
            topic = message["channel"][skip:].decode("utf-8", "replace")
            deliver(topic, data[_ORIGIN_BYTES], data[_ORIGIN_BYTES + 1 :], None)
        raise ConnectionError("pub/sub connection closed")

    async def _write(self, client: Any, pubsub: Any, subscribed: set[bytes]) -> None:
        own = self.own_channel
        queue = self.queue
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            wanted = self.channels
            new = wanted - subscribed
            gone = subscribed - wanted - {own}
            if new:
                await pubsub.subscribe(*new)
                subscribed |= new
            if gone:
                await pubsub.unsubscribe(*gone)
                subscribed -= gone
            while queue:
                batch = [queue.popleft() for _ in range(min(len(queue), 1000))]
                async with client.pipeline(transaction=False) as pipe:
                    for channel, payload in batch:
                        pipe.publish(channel, payload)
                    await pipe.execute()
                self.forwarded += len(batch)

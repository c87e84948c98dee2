"""Multi-room chat demo: a raw ASGI app, no framework.

Serve it with ``fastws examples.chat:app`` (or any ASGI server) and open http://127.0.0.1:8000/.

Routes:
    GET /                                 the page (``chat.html``, read once at import)
    WebSocket /ws?room=NAME&name=NICK     the chat; ``room`` defaults to "lobby"
    anything else                         404

Wire protocol (JSON text frames). The client sends ``{"type": "message", "text": ...}``. The server
sends ``welcome`` (once, to the new member: its room and the nickname it got), ``message``
(``room``, ``user``, ``text``, ``ts`` in Unix seconds) to everyone in the room including the
sender, ``join`` / ``leave`` notices, ``presence`` (``users``: who is online in the room) on every
join and leave, and ``error`` (``error``: what was wrong) to a client that sent something invalid.

The chat logic talks to its hub only through the `Hub` interface (``start``/``stop``,
``join``/``leave``/``publish``/``presence``). The environment variable ``CHAT_BROKER`` picks it:
unset or empty, a `LocalHub` keeps the rooms in memory in this process (so run one worker); a
Redis URL (``CHAT_BROKER=redis://127.0.0.1:6379/0``) gives a `RedisHub`, which fans events out
through Redis pub/sub and keeps presence in Redis, so that any number of workers on any number of
machines serve one chat. In that mode ``welcome`` also carries ``worker``, the id of the process
serving the connection. Each member has its own bounded outbox drained by its own writer task, so
a slow or vanished client costs the broadcaster one ``put_nowait``, never a wait or an error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import re
import secrets
import socket
import sys
import time
import unicodedata
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit, urlunsplit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PAGE = (Path(__file__).with_name("chat.html")).read_bytes()

DEFAULT_ROOM = "lobby"
ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")  # also the page's `pattern`; keep the two in step
MAX_NAME_CHARS = 32
MAX_TEXT_CHARS = 2000
OUTBOX_LIMIT = 256  # queued frames per member before it counts as too slow and is dropped

# RFC 6455 §7.4.1 close codes used here.
CLOSE_POLICY_VIOLATION = 1008  # bad room or nickname; before accept, ASGI turns it into HTTP 403
CLOSE_TRY_AGAIN_LATER = 1013  # the member's outbox overflowed, or the broker is unreachable

# RedisHub timing.
BROKER_CONNECT_TIMEOUT_S = 2.0  # TCP connect to Redis; also how long startup waits for it
BROKER_COMMAND_TIMEOUT_S = 5.0  # one command's reply, or a SUBSCRIBE's confirmation
BACKOFF_MIN_S = 0.1  # first reconnect delay; doubles per failed try...
BACKOFF_MAX_S = 5.0  # ...up to this

logger = logging.getLogger("chat")


def ensure_log_handler() -> None:
    """Make the ``chat`` logger's INFO lines visible when nothing else would show them.

    fastws and uvicorn configure only their own loggers, so without this the broker's
    "reconnected" line would be dropped and its warnings printed without a level.
    """
    if logger.hasHandlers():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:     [chat] %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def describe(exc: BaseException) -> str:
    """A one-line description of an exception, for log lines."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Member:
    """One WebSocket connection in a room: a bounded outbox and the task that drains it.

    `deliver` never blocks and never raises, which is what keeps one bad peer from stalling or
    breaking a broadcast. Frames go out in the order they were delivered.
    """

    def __init__(self, send: Send, nick: str, *, outbox_limit: int = OUTBOX_LIMIT) -> None:
        self.nick = nick  # asked for; `name` is what the hub granted
        self.name = nick
        self._send = send
        self._outbox: asyncio.Queue[Message] = asyncio.Queue(maxsize=outbox_limit)
        self._open = True
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._drain())

    def deliver(self, text: str) -> bool:
        """Queue one text frame. Returns False if the member is gone or was just dropped."""
        if not self._open:
            return False
        if self._outbox.full():
            # Too slow to keep up: drop its backlog and tell it to come back later. The server
            # then reports websocket.disconnect to the session, which runs the leave.
            self._open = False
            while not self._outbox.empty():
                self._outbox.get_nowait()
            self._outbox.put_nowait({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER})
            return False
        self._outbox.put_nowait({"type": "websocket.send", "text": text})
        return True

    async def finish(self) -> None:
        """Stop the writer. Call once the connection is over; an unsent backlog has no reader."""
        self._open = False
        writer = self._writer
        if writer is None:
            return
        writer.cancel()
        await asyncio.wait([writer])  # unlike `await writer`, leaves our own cancellation alone
        error = None if writer.cancelled() else writer.exception()
        if error is not None:
            raise error  # a bug in the writer, not a peer problem: surface it

    async def _drain(self) -> None:
        while True:
            message = await self._outbox.get()
            try:
                await self._send(message)
            except (OSError, RuntimeError):
                # Gone (servers raise an OSError subclass, e.g. uvicorn's ClientDisconnected) or
                # already closed (RuntimeError per the ASGI spec). The receive side sees the
                # websocket.disconnect and runs the leave.
                self._open = False
                return
            if message["type"] == "websocket.close":
                return


class HubUnavailable(RuntimeError):
    """The hub's broker cannot be reached right now; the message says what to do."""


class Hub(Protocol):
    """Room membership and fan-out; the seam where a broker (Redis pub/sub: `RedisHub`) plugs in.

    Events are JSON-ready dicts; a hub serialises them once per publish, not once per member.
    Only a broker hub raises `HubUnavailable` (from `join`, `publish` and `presence`, never from
    `leave`, which must always succeed locally); `LocalHub` never does.
    """

    async def start(self) -> None:
        """Called at lifespan startup (connect to the broker, subscribe)."""

    async def stop(self) -> None:
        """Called at lifespan shutdown."""

    async def join(self, room: str, member: Member) -> list[str]:
        """Add `member` to `room`, set `member.name` to a name unique in the room.

        Returns:
            The users now in the room, sorted.
        """

    async def leave(self, room: str, member: Member) -> list[str]:
        """Remove `member` from `room` (no-op if absent). Returns the users left, sorted."""

    async def publish(self, room: str, event: dict[str, Any]) -> None:
        """Deliver `event` to every member of `room`, in every process sharing the hub."""

    async def presence(self, room: str) -> list[str]:
        """The users in `room`, in every process sharing the hub, sorted."""


class LocalHub:
    """In-memory `Hub` for a single process (one worker)."""

    def __init__(self) -> None:
        self.rooms: dict[str, dict[str, Member]] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def join(self, room: str, member: Member) -> list[str]:
        members = self.rooms.setdefault(room, {})
        name, n = member.nick, 1
        while name in members:
            n += 1
            name = f"{member.nick}-{n}"
        member.name = name
        members[name] = member
        return sorted(members)

    async def leave(self, room: str, member: Member) -> list[str]:
        members = self.rooms.get(room, {})
        if members.get(member.name) is member:
            del members[member.name]
        if not members:
            self.rooms.pop(room, None)
        return sorted(members)

    async def publish(self, room: str, event: dict[str, Any]) -> None:
        text = json.dumps(event, ensure_ascii=False)
        for member in list(self.rooms.get(room, {}).values()):
            member.deliver(text)

    async def presence(self, room: str) -> list[str]:
        return sorted(self.rooms.get(room, {}))


# --- RedisHub: rooms shared by every worker through Redis ----------------------------------------
#
# Keys, under the prefix P ("chat" unless told otherwise):
#   P:room:ROOM            pub/sub channel: every event of the room, JSON, serialised once
#   P:users:ROOM           hash: user name -> id of the worker holding that connection
#   P:workers              set: ids of the workers that registered
#   P:lease:WORKER         string with a TTL of `lease_s`, renewed every lease_s / 3: alive
#   P:rooms:WORKER         set: rooms where that worker holds (or held) users; for the reaper
# Every change to the hash runs in one Lua script, so name claims, ownership checks and the
# rooms set move together (EVALSHA; redis-py reloads a script that a restarted Redis forgot).

# KEYS: users hash, this worker's rooms set. ARGV: nick, worker id, room.
# Returns the granted name followed by everyone now in the room.
_JOIN_LUA = """
local name, n = ARGV[1], 1
while redis.call('HSETNX', KEYS[1], name, ARGV[2]) == 0 do
  n = n + 1
  name = ARGV[1] .. '-' .. n
end
redis.call('SADD', KEYS[2], ARGV[3])
local out = redis.call('HKEYS', KEYS[1])
table.insert(out, 1, name)
return out
"""

# KEYS: users hash, this worker's rooms set. ARGV: name, worker id, room.
# Deletes the name only if this worker holds it (a reaper may have given it away meanwhile).
_LEAVE_LUA = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
local all, mine = redis.call('HGETALL', KEYS[1]), false
for i = 2, #all, 2 do
  if all[i] == ARGV[2] then mine = true break end
end
if not mine then redis.call('SREM', KEYS[2], ARGV[3]) end
local users = {}
for i = 1, #all, 2 do users[#users + 1] = all[i] end
return users
"""

# KEYS: users hash, the worker's rooms set. ARGV: worker id, room, then the names the worker
# holds in the room (none: it is dead, or has nobody left there). Makes the hash agree: drops
# the worker's other names, claims these. Returns {names dropped, names held by someone else}.
_SYNC_LUA = """
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local all, dropped, clashed = redis.call('HGETALL', KEYS[1]), {}, {}
for i = 1, #all, 2 do
  if all[i + 1] == ARGV[1] and not keep[all[i]] then
    redis.call('HDEL', KEYS[1], all[i])
    dropped[#dropped + 1] = all[i]
  end
end
for i = 3, #ARGV do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[1]) == 0
      and redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[1] then
    clashed[#clashed + 1] = ARGV[i]
  end
end
if #ARGV > 2 then redis.call('SADD', KEYS[2], ARGV[2]) else redis.call('SREM', KEYS[2], ARGV[2]) end
return {dropped, clashed}
"""

# KEYS: users hash. ARGV: channel. Reads the roster and publishes it in one atomic step, so
# the last presence event of a room always lists every user who joined before it was sent,
# even when workers publish concurrently (a list read in Python could arrive stale, last).
# cjson encodes an empty table as {}, hence the literal [].
_PRESENCE_LUA = """
local users = redis.call('HKEYS', KEYS[1])
table.sort(users)
local list = '[]'
if #users > 0 then list = cjson.encode(users) end
return redis.call('PUBLISH', ARGV[1], '{"type": "presence", "users": ' .. list .. '}')
"""


def redact_url(url: str) -> str:
    """`url` without its password, for log lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class RedisHub:
    """`Hub` over Redis: any number of workers, on any number of machines, form one chat.

    Fan-out: `publish` serialises an event once and PUBLISHes it on the room's channel. Each
    worker SUBSCRIBEs to the rooms where it has members (and unsubscribes when the last one
    leaves), and its reader task hands each message, as received, to its local members. A
    member's own worker receives its messages back through Redis like everyone else's, so all
    members of a room see the same order.

    Presence: the hash ``P:users:ROOM`` maps each name to the worker holding it. Names are
    claimed with HSETNX, so a name is unique across workers. Ownership is what makes a crash
    recoverable: every worker renews a lease key (TTL `lease_s`) every `lease_s` / 3, and the
    worker that finds another's lease expired (and wins the SREM from ``P:workers``) deletes
    that worker's names and announces their leave. Users of a crashed worker therefore vanish
    from the roster within about `lease_s` + `lease_s` / 3. A plain per-user TTL would need one
    refresh per user instead of one per worker, and would not say who left.

    Redis down: the first failed command or the subscriber's EOF logs one warning; a task
    reconnects with exponential backoff (0.1 s doubling to 5 s, equal jitter) and logs each
    failed try. Meanwhile `join` and `publish` raise `HubUnavailable` at once (the app closes a
    newcomer with 1013 and tells a sender its message was not sent) and `leave` only updates
    the local rooms. Once Redis answers, the hub resubscribes, re-registers, rewrites its share
    of every roster (a restarted Redis may have lost them all; users who left meanwhile are
    dropped and their leave announced), logs that it is back, and publishes a fresh presence for
    each of its rooms. No exception from Redis ever reaches the server.
    """

    def __init__(self, url: str, *, prefix: str = "chat", lease_s: float = 10.0) -> None:
        try:
            # Imported here, not at the top: the in-memory demo needs no redis package.
            import redis.asyncio  # noqa: F401
            import redis.exceptions
        except ImportError:
            raise RuntimeError(
                "CHAT_BROKER is set, but the 'redis' package is missing: pip install 'redis>=5'"
            ) from None
        # What a lost or refusing broker raises; anything else is a bug and propagates.
        self._errors: tuple[type[BaseException], ...] = (
            OSError,
            asyncio.TimeoutError,
            redis.exceptions.RedisError,
        )
        self.url = url
        self.prefix = prefix
        self.lease_s = lease_s
        # Hostname and PID for people reading logs and rosters; the random part keeps two
        # containers whose workers share a PID (and a hostname) apart.
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.local: dict[str, dict[str, Member]] = {}  # room -> name -> member in this process
        self._interest: dict[str, int] = {}  # room -> members joined or joining here
        self._subscribed: dict[str, asyncio.Future[None]] = {}  # room -> SUBSCRIBE confirmed
        self._pending: dict[str, collections.deque[asyncio.Future[None]]] = {}  # per channel
        self._redis: Any = None
        self._pubsub: Any = None
        # SUBSCRIBE and UNSUBSCRIBE go out in the order they take this lock, each after a fresh
        # look at `_interest`, so a quick leave-and-rejoin cannot end unsubscribed.
        self._pubsub_lock = asyncio.Lock()
        self._scripts: dict[str, Any] = {}
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._reconnect: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._connected = False
        self._stopping = False

    # -- keys

    def _channel(self, room: str) -> str:
        return f"{self.prefix}:room:{room}"

    def _users_key(self, room: str) -> str:
        return f"{self.prefix}:users:{room}"

    def _rooms_key(self, worker: str) -> str:
        return f"{self.prefix}:rooms:{worker}"

    def _lease_key(self, worker: str) -> str:
        return f"{self.prefix}:lease:{worker}"

    @property
    def _workers_key(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def connected(self) -> bool:
        return self._connected

    # -- lifecycle

    async def start(self) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        ensure_log_handler()
        # No retries inside redis-py: its default (ten, with backoff) would hold a publish for
        # seconds during an outage, and its pub/sub would resubscribe behind our back, skipping
        # the roster resync. This hub does its own reconnecting.
        self._redis = Redis.from_url(
            self.url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=BROKER_CONNECT_TIMEOUT_S,
            socket_timeout=BROKER_COMMAND_TIMEOUT_S,
            client_name=f"{self.prefix}:{self.worker_id}",
        )
        self._scripts = {
            name: self._redis.register_script(lua)
            for name, lua in (
                ("join", _JOIN_LUA),
                ("leave", _LEAVE_LUA),
                ("sync", _SYNC_LUA),
                ("presence", _PRESENCE_LUA),
            )
        }
        self._stopping = False
        logger.info("chat broker: %s, worker %s", redact_url(self.url), self.worker_id)
        # Not reachable yet is no reason to fail the worker's startup: serve, and connect when
        # Redis comes up (newcomers are told to try again later until then). A reachable Redis
        # is connected before the first client can arrive.
        self._lost(None)
        assert self._reconnect is not None
        await asyncio.wait([self._reconnect], timeout=BROKER_CONNECT_TIMEOUT_S)
        self._heartbeat = asyncio.get_running_loop().create_task(self._beat_forever())

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._heartbeat, self._reconnect):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        self._heartbeat = self._reconnect = None
        if self._connected:
            # Leave the rosters tidy, so nobody waits for our lease to expire; bounded, because
            # shutdown must not hang on a Redis that stopped answering.
            try:
                await asyncio.wait_for(self._unregister(), BROKER_COMMAND_TIMEOUT_S)
            except Exception as exc:  # best effort: our lease expires and we get reaped anyway
                logger.warning("chat broker: could not unregister cleanly: %s", describe(exc))
        self._connected = False
        if self._background:
            await asyncio.wait(self._background, timeout=BROKER_COMMAND_TIMEOUT_S)
        await self._close_pubsub()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # -- the Hub interface

    async def join(self, room: str, member: Member) -> list[str]:
        if not self._connected:
            raise HubUnavailable("the chat broker is unreachable; try again shortly")
        self._interest[room] = self._interest.get(room, 0) + 1
        try:
            await self._ensure_subscribed(room)
            out = await self._scripts["join"](
                keys=[self._users_key(room), self._rooms_key(self.worker_id)],
                args=[member.nick, self.worker_id, room],
            )
        except BaseException as exc:
            self._release(room)
            if isinstance(exc, self._errors):
                self._lost(exc)
                raise HubUnavailable("the chat broker is unreachable; try again shortly") from exc
            raise
        name, users = out[0].decode(), [u.decode() for u in out[1:]]
        # Local from here on: events published after the claim reach the member, none before.
        member.name = name
        self.local.setdefault(room, {})[name] = member
        return sorted(users)

    async def leave(self, room: str, member: Member) -> list[str]:
        members = self.local.get(room, {})
        if members.get(member.name) is not member:
            return sorted(members)
        del members[member.name]
        if not members:
            del self.local[room]
        self._release(room)
        if not self._connected:
            return sorted(members)  # the resync after reconnecting drops the name from Redis
        try:
            users = await self._scripts["leave"](
                keys=[self._users_key(room), self._rooms_key(self.worker_id)],
                args=[member.name, self.worker_id, room],
            )
        except self._errors as exc:
            self._lost(exc)
            return sorted(members)
        return sorted(u.decode() for u in users)

    async def publish(self, room: str, event: dict[str, Any]) -> None:
        """Send `event` to the room in every worker.

        A ``presence`` event's ``users`` is ignored: the roster is read from Redis and published
        in one step (see `_PRESENCE_LUA`).

        Raises:
            HubUnavailable: Redis cannot be reached; nothing was sent.
        """
        if not self._connected:
            raise HubUnavailable("the chat broker is unreachable; try again shortly")
        try:
            if event.get("type") == "presence":
                await self._publish_presence(room)
            else:
                await self._redis.publish(
                    self._channel(room), json.dumps(event, ensure_ascii=False)
                )
        except self._errors as exc:
            self._lost(exc)
            raise HubUnavailable("the chat broker is unreachable; try again shortly") from exc

    async def presence(self, room: str) -> list[str]:
        if not self._connected:
            raise HubUnavailable("the chat broker is unreachable; try again shortly")
        try:
            users = await self._redis.hkeys(self._users_key(room))
        except self._errors as exc:
            self._lost(exc)
            raise HubUnavailable("the chat broker is unreachable; try again shortly") from exc
        return sorted(u.decode() for u in users)

    # -- subscriptions

    async def _ensure_subscribed(self, room: str) -> None:
        async with self._pubsub_lock:
            ready = self._subscribed.get(room)
            if ready is None:
                if self._pubsub is None:
                    raise HubUnavailable("the chat broker is unreachable; try again shortly")
                ready = self._expect_subscribe(room)
                await self._pubsub.subscribe(self._channel(room))
        # SUBSCRIBE only counts once Redis confirms it: a PUBLISH on another connection could
        # otherwise overtake it, and the newcomer would miss its own join.
        await asyncio.wait([ready], timeout=BROKER_COMMAND_TIMEOUT_S)
        if not ready.done() or ready.cancelled():
            raise asyncio.TimeoutError(f"SUBSCRIBE {self._channel(room)} not confirmed")

    def _expect_subscribe(self, room: str) -> asyncio.Future[None]:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._subscribed[room] = ready
        # Redis confirms SUBSCRIBEs in the order they were sent on the connection.
        self._pending.setdefault(self._channel(room), collections.deque()).append(ready)
        return ready

    def _release(self, room: str) -> None:
        count = self._interest.get(room, 0) - 1
        if count > 0:
            self._interest[room] = count
            return
        self._interest.pop(room, None)
        self._subscribed.pop(room, None)
        if self._connected and self._pubsub is not None:
            task = asyncio.get_running_loop().create_task(self._unsubscribe(room))
            self._background.add(task)  # a strong reference until it is done
            task.add_done_callback(self._background.discard)

    async def _unsubscribe(self, room: str) -> None:
        async with self._pubsub_lock:
            if room in self._interest or self._pubsub is None:
                return  # somebody joined meanwhile, or the connection is gone anyway
            # A failure here also reaches the reader, which reports the lost connection.
            with contextlib.suppress(*self._errors):
                await self._pubsub.unsubscribe(self._channel(room))

    async def _read(self, pubsub: Any) -> None:
        """Hand every message of a subscribed room to the local members; note confirmations."""
        prefix = f"{self.prefix}:room:".encode()
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                kind, channel = message["type"], message["channel"]
                if kind == "message":
                    members = self.local.get(channel[len(prefix) :].decode())
                    if members:
                        text = message["data"].decode()  # once per worker, not per member
                        for member in list(members.values()):
                            member.deliver(text)
                elif kind == "subscribe":
                    pending = self._pending.get(channel.decode())
                    if pending:
                        ready = pending.popleft()
                        if not ready.done():
                            ready.set_result(None)
        except Exception as exc:
            if not isinstance(exc, self._errors):
                logger.exception("chat broker: unexpected error in the subscriber")
            if pubsub is self._pubsub:
                self._lost(exc)  # reconnecting also replaces this reader

    async def _close_pubsub(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and reader is not asyncio.current_task():
            reader.cancel()
            await asyncio.wait([reader])
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(*self._errors):
                await pubsub.aclose()
        for pending in self._pending.values():
            for ready in pending:
                ready.cancel()
        self._pending.clear()
        self._subscribed.clear()

    # -- connection loss and recovery

    def _lost(self, exc: BaseException | None) -> None:
        """Note that Redis is gone (or not there yet) and start reconnecting, once."""
        if self._stopping:
            return
        self._connected = False
        if self._reconnect is not None and not self._reconnect.done():
            return
        if exc is not None:
            logger.warning(
                "chat broker: lost the connection to %s (%s); chat is paused in this worker, "
                "reconnecting",
                redact_url(self.url),
                describe(exc),
            )
        self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_forever())

    async def _reconnect_forever(self) -> None:
        loop = asyncio.get_running_loop()
        started, attempt, step_s = loop.time(), 0, BACKOFF_MIN_S
        while True:
            attempt += 1
            await self._close_pubsub()
            # Drop every pooled connection too: after a Redis restart they are all dead, and
            # the pool would only find out on each one's next command, one lost-connection
            # cycle at a time.
            await self._redis.connection_pool.disconnect()
            try:
                await asyncio.wait_for(self._connect(), BROKER_CONNECT_TIMEOUT_S * 3)
            except Exception as exc:
                self._connected = False
                if not isinstance(exc, self._errors):
                    # A bug, not the network: say so loudly, but keep the worker serving.
                    logger.exception("chat broker: unexpected error while connecting")
                # "Equal jitter", like the page: between half and all of the current step.
                delay_s = step_s / 2 + random.uniform(0, step_s / 2)
                # The first tries, then about once a minute once the delay is at its cap.
                if attempt <= 3 or attempt % 12 == 0:
                    logger.warning(
                        "chat broker: %s unreachable (attempt %d: %s); next try in %.1f s",
                        redact_url(self.url),
                        attempt,
                        describe(exc),
                        delay_s,
                    )
                await asyncio.sleep(delay_s)
                step_s = min(step_s * 2, BACKOFF_MAX_S)
                continue
            logger.info(
                "chat broker: connected to %s (after %d attempt%s, %.1f s); %d room(s) here",
                redact_url(self.url),
                attempt,
                "" if attempt == 1 else "s",
                loop.time() - started,
                len(self.local),
            )
            return

    async def _connect(self) -> None:
        await self._redis.ping()
        pubsub = self._redis.pubsub()
        await pubsub.connect()
        self._pubsub = pubsub
        self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))
        rooms = list(self._interest)
        if rooms:
            waits = [self._expect_subscribe(room) for room in rooms]
            await pubsub.subscribe(*(self._channel(room) for room in rooms))
            await asyncio.wait(waits, timeout=BROKER_COMMAND_TIMEOUT_S)
            if not all(w.done() and not w.cancelled() for w in waits):
                raise asyncio.TimeoutError("resubscribing was not confirmed")
        await self._redis.set(self._lease_key(self.worker_id), b"1", px=self._lease_ms)
        await self._redis.sadd(self._workers_key, self.worker_id)
        changes = await self._sync_rooms()
        self._connected = True
        await self._announce(changes)
        await self._beat()  # also reaps workers that died while nobody was watching

    async def _sync_rooms(self) -> dict[str, list[str]]:
        """Make Redis hold exactly this worker's local users. Returns room -> names dropped."""
        rooms = {r.decode() for r in await self._redis.smembers(self._rooms_key(self.worker_id))}
        changes = {}
        for room in rooms | set(self.local):
            names = list(self.local.get(room, {}))
            dropped, clashed = await self._scripts["sync"](
                keys=[self._users_key(room), self._rooms_key(self.worker_id)],
                args=[self.worker_id, room, *names],
            )
            for name in clashed:
                logger.warning(
                    "chat broker: %r in #%s was taken by another worker while this one was "
                    "cut off; both users keep it",
                    name.decode(),
                    room,
                )
            if names or dropped:
                changes[room] = [d.decode() for d in dropped]
        return changes

    async def _announce(self, changes: dict[str, list[str]]) -> None:
        """Publish leave notices for dropped names and a fresh roster for each room."""
        for room, dropped in changes.items():
            for name in dropped:
                await self._redis.publish(
                    self._channel(room), json.dumps({"type": "leave", "user": name})
                )
            await self._publish_presence(room)

    async def _publish_presence(self, room: str) -> None:
        await self._scripts["presence"](keys=[self._users_key(room)], args=[self._channel(room)])

    # -- liveness: leases, and reaping workers that stopped renewing theirs

    @property
    def _lease_ms(self) -> int:
        return max(1, round(self.lease_s * 1000))

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            if not self._connected:
                continue
            try:
                await self._beat()
            except self._errors as exc:
                self._lost(exc)
            except Exception:
                logger.exception("chat broker: unexpected error in the heartbeat")

    async def _beat(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._lease_key(self.worker_id), b"1", px=self._lease_ms)
            pipe.sadd(self._workers_key, self.worker_id)
            pipe.smembers(self._workers_key)
            _, added, workers = await pipe.execute()
        if added:
            # Another worker found our lease expired (this loop was blocked, or Redis was
            # unreachable from here only) and removed our users: put them back.
            logger.warning("chat broker: this worker was taken for dead; re-registering its users")
            await self._announce(await self._sync_rooms())
        others = sorted(w.decode() for w in workers if w.decode() != self.worker_id)
        if not others:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for worker in others:
                pipe.exists(self._lease_key(worker))
            alive = await pipe.execute()
        for worker, is_alive in zip(others, alive, strict=True):
            # SREM answers 1 to exactly one worker: only that one reaps and announces.
            if not is_alive and await self._redis.srem(self._workers_key, worker):
                await self._reap(worker)

    async def _reap(self, worker: str) -> None:
        rooms_key = self._rooms_key(worker)
        total, changes = 0, {}
        for raw in await self._redis.smembers(rooms_key):
            room = raw.decode()
            dropped, _ = await self._scripts["sync"](
                keys=[self._users_key(room), rooms_key], args=[worker, room]
            )
            if dropped:
                changes[room] = [d.decode() for d in dropped]
                total += len(dropped)
        await self._redis.delete(rooms_key)
        logger.warning(
            "chat broker: worker %s stopped renewing its lease; removed its %d user(s) from %d "
            "room(s)",
            worker,
            total,
            len(changes),
        )
        await self._announce(changes)

    async def _unregister(self) -> None:
        rooms_key = self._rooms_key(self.worker_id)
        changes = {}
        for raw in await self._redis.smembers(rooms_key):
            room = raw.decode()
            dropped, _ = await self._scripts["sync"](
                keys=[self._users_key(room), rooms_key], args=[self.worker_id, room]
            )
            if dropped:
                changes[room] = [d.decode() for d in dropped]
        await self._announce(changes)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.srem(self._workers_key, self.worker_id)
            pipe.delete(self._lease_key(self.worker_id), rooms_key)
            await pipe.execute()


def make_hub(broker: str | None = None) -> Hub:
    """The hub that ``CHAT_BROKER`` (or `broker`) asks for.

    Empty or unset: a `LocalHub` (one process). ``redis://``, ``rediss://`` or ``unix://`` URL:
    a `RedisHub`, so that every worker and machine using the same Redis serves one chat.

    Raises:
        ValueError: any other value (the message shows only the scheme, not a password).
    """
    url = (os.environ.get("CHAT_BROKER", "") if broker is None else broker).strip()
    if not url:
        return LocalHub()
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            "CHAT_BROKER must be empty (rooms in memory, one worker) or a redis://, rediss:// "
            f"or unix:// URL, e.g. redis://127.0.0.1:6379/0; got a {scheme or 'schemeless'!r} URL"
        )
    return RedisHub(url)


class BadRequest(ValueError):
    """A query parameter or client frame the chat refuses; the message goes back to the client."""


def parse_query(query_string: bytes) -> tuple[str, str]:
    """Read and validate ``room`` and ``name`` from a WebSocket query string.

    Returns:
        ``(room, nick)``; an empty or missing nickname becomes ``guest-XXXX``.

    Raises:
        BadRequest: the room name or nickname is not acceptable.
    """
    query = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    room = (query.get("room") or [""])[0].strip() or DEFAULT_ROOM
    if not ROOM_RE.fullmatch(room):
        raise BadRequest("room must be 1-32 letters, digits, '_' or '-'")
    nick = " ".join((query.get("name") or [""])[0].split())  # collapse whitespace runs
    if len(nick) > MAX_NAME_CHARS:
        raise BadRequest(f"name must be at most {MAX_NAME_CHARS} characters")
    if any(unicodedata.category(c).startswith("C") for c in nick):
        raise BadRequest("name must not contain control or format characters")
    return room, nick or f"guest-{secrets.token_hex(2)}"


def parse_client_message(text: str) -> str:
    """Validate one client frame.

    Returns:
        The chat text to broadcast.

    Raises:
        BadRequest: not JSON, not a ``message`` object, or the text is empty or too long.
    """
    try:
        data = json.loads(text)
    except ValueError:
        raise BadRequest("malformed JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("expected a JSON object")
    if data.get("type") != "message":
        raise BadRequest(f"unknown message type: {str(data.get('type'))[:40]!r}")
    body = data.get("text")
    if not isinstance(body, str) or not body.strip():
        raise BadRequest("'text' must be a non-empty string")
    if len(body) > MAX_TEXT_CHARS:
        raise BadRequest(f"'text' must be at most {MAX_TEXT_CHARS} characters")
    return body


def error_frame(reason: str) -> str:
    return json.dumps({"type": "error", "error": reason})


class ChatApp:
    """The ASGI application: HTTP routes, lifespan and the chat session, over one `Hub`."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, send)
        elif kind == "websocket":
            await self.websocket(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        else:
            raise RuntimeError(f"unsupported ASGI scope type {kind!r}")

    async def lifespan(self, receive: Receive, send: Send) -> None:
        # ASGI lifespan spec: answer each event with .complete, or .failed plus a message.
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                try:
                    await self.hub.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                try:
                    await self.hub.stop()
                except Exception as exc:
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def http(self, scope: Scope, send: Send) -> None:
        if scope["path"] != "/":
            await respond(send, 404, b"Not Found\n")
        elif scope["method"] not in ("GET", "HEAD"):
            await respond(send, 405, b"Method Not Allowed\n", [(b"allow", b"GET, HEAD")])
        else:
            # Cache-Control: no-cache, so a restarted server's new page is picked up on reload.
            body = b"" if scope["method"] == "HEAD" else PAGE
            headers = [(b"cache-control", b"no-cache")]
            await respond(send, 200, body, headers, "text/html; charset=utf-8", len(PAGE))

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            if scope["path"] != "/ws":
                raise BadRequest("no such endpoint")
            room, nick = parse_query(scope.get("query_string", b""))
        except BadRequest:
            # Closing before accept: the server answers the handshake with HTTP 403.
            await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
            return
        await send({"type": "websocket.accept"})

        member = Member(send, nick)
        member.start()
        try:
            users = await self.hub.join(room, member)
        except HubUnavailable as exc:
            # RFC 6455 §7.4.1 1013: the page reconnects with backoff, as it should.
            await member.finish()
            await send(
                {"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER, "reason": str(exc)}
            )
            return
        welcome = {"type": "welcome", "room": room, "user": member.name}
        worker = getattr(self.hub, "worker_id", None)
        if worker is not None:  # a broker hub: say which worker serves this connection
            welcome["worker"] = worker
        member.deliver(json.dumps(welcome))
        await self.announce(room, {"type": "join", "user": member.name})
        await self.announce(room, {"type": "presence", "users": users})
        try:
            await self.session(room, member, receive)
        finally:
            users = await self.hub.leave(room, member)
            await self.announce(room, {"type": "leave", "user": member.name})
            await self.announce(room, {"type": "presence", "users": users})
            await member.finish()

    async def announce(self, room: str, event: dict[str, Any]) -> None:
        """Publish a join, leave or presence notice; skipped while the broker is unreachable.

        A broker hub republishes each room's presence once it is back, so nobody is left with a
        stale roster; the notices themselves are not worth holding a session for.
        """
        with contextlib.suppress(HubUnavailable):
            await self.hub.publish(room, event)

    async def session(self, room: str, member: Member, receive: Receive) -> None:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            if event["type"] != "websocket.receive":
                continue
            text = event.get("text")
            if text is None:
                member.deliver(error_frame("binary frames are not supported; send JSON text"))
                continue
            try:
                body = parse_client_message(text)
            except BadRequest as exc:
                member.deliver(error_frame(str(exc)))
                continue
            event = {
                "type": "message",
                "room": room,
                "user": member.name,
                "text": body,
                "ts": round(time.time(), 3),
            }
            try:
                await self.hub.publish(room, event)
            except HubUnavailable as exc:
                member.deliver(error_frame(f"message not sent: {exc}"))


async def respond(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: str = "text/plain; charset=utf-8",
    content_length: int | None = None,
) -> None:
    length = len(body) if content_length is None else content_length
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(length).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# CHAT_BROKER picks the hub (see make_hub); fastws's CLI has no broker option, on purpose.
app = ChatApp(make_hub())

"""Multi-room chat demo: a raw ASGI app, no framework; each room is a pub/sub topic.

Serve it with ``fastws examples.chat:app`` (or any ASGI server) and open http://127.0.0.1:8000/.
With ``fastws examples.chat:app --pubsub redis://127.0.0.1:6379/0`` any number of workers and
servers on that Redis serve one chat.

Routes:
    GET /                                 the page (``chat.html``, read once at import)
    WebSocket /ws?room=NAME&name=NICK     the chat; ``room`` defaults to "lobby"
    anything else                         404

Wire protocol (JSON text frames). The client sends ``{"type": "message", "text": ...}``. The server
sends ``welcome`` (once, to the new member: its ``room``, the nickname it got as ``user``, and
``server``, the id of the process serving it), ``message`` (``room``, ``user``, ``text``, ``ts`` in
Unix seconds) to everyone in the room including the sender, ``join`` / ``leave`` notices,
``presence`` (below), and ``error`` (``error``: what was wrong) to a client that sent something
invalid.

Which path runs where. The room ``R`` is the topic ``chat:R``. Where the websocket scope's
``extensions`` advertise ``websocket.publish`` (fastws, docs/pubsub.md), the app subscribes each
connection to its room's topic and publishes every event through the connection's ``send()``:
the server encodes each event once, writes it to every local subscriber from compiled code, closes
a subscriber that stops reading with 1013 (``--ws-max-write-buffer``), and with ``--pubsub
redis://...`` forwards it to every other worker and server on that Redis. Anywhere else (uvicorn,
hypercorn...) `LocalTopics`, a small in-process fan-out, does the same for one process: a bounded
outbox and a writer task per member, so a slow peer costs a broadcast one ``put_nowait``; run one
worker there (``--workers 4`` under uvicorn gives four separate chats).

Presence across servers: each process knows only its own members, so ``presence`` is one
process's share of the room, ``{"type": "presence", "server": ID, "users": [...], "ttl": S}``,
published on the room's topic on every local join and leave and again every
`PRESENCE_REFRESH_S` seconds while the process has members there (so a newcomer elsewhere learns
of them within one period). A client shows the union of the latest share of each server, drops a
share that is empty, and forgets one not refreshed within ``ttl`` seconds (a server that crashed
or lost Redis). Names are unique per process (``sam``, ``sam-2``); two servers may each have a
``sam``, and the roster then lists ``sam`` twice. Redis pub/sub is at-most-once: while it is
down, each server's members still chat among themselves and what crosses servers is lost; the
refresh rebuilds every roster once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import socket
import time
import unicodedata
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PAGE = (Path(__file__).with_name("chat.html")).read_bytes()

DEFAULT_ROOM = "lobby"
ROOM_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")  # also the page's `pattern`; keep the two in step
MAX_NAME_CHARS = 32
MAX_TEXT_CHARS = 2000
OUTBOX_LIMIT = 256  # LocalTopics: queued frames per member before it counts as too slow
PRESENCE_REFRESH_S = 2.0  # how often a process republishes its share of each room's roster
PRESENCE_TTL_S = 7.0  # how long a client keeps a share that is not refreshed: 3 periods + slack

# RFC 6455 §7.4.1 close codes used here.
CLOSE_POLICY_VIOLATION = 1008  # bad room or nickname; before accept, ASGI turns it into HTTP 403
CLOSE_TRY_AGAIN_LATER = 1013  # LocalTopics: the member's outbox overflowed

# What a send to a gone peer raises: an OSError subclass (fastws's and uvicorn's
# ClientDisconnected), or RuntimeError after a close, per the ASGI spec.
GONE = (OSError, RuntimeError)


def topic_of(room: str) -> str:
    return f"chat:{room}"


class Member:
    """One WebSocket connection in a room, as the app sees it: frames for it alone go straight
    through its ``send()`` (`tell`); what goes to the room goes through `topics`."""

    def __init__(self, send: Send, nick: str, topics: Topics) -> None:
        self.nick = nick  # asked for; `name` is what the app granted
        self.name = nick
        self.send = send
        self.topics = topics

    def start(self) -> None:
        """Called once the connection is accepted."""

    async def tell(self, text: str) -> None:
        """Send one text frame to this member only."""
        await self.send({"type": "websocket.send", "text": text})

    async def finish(self) -> None:
        """Called once the connection is over."""


class QueuedMember(Member):
    """A member of `LocalTopics`: a bounded outbox and the task that drains it.

    `deliver` never blocks and never raises, which is what keeps one bad peer from stalling or
    breaking a broadcast. Frames go out in the order they were delivered.
    """

    def __init__(
        self, send: Send, nick: str, topics: Topics, *, outbox_limit: int = OUTBOX_LIMIT
    ) -> None:
        super().__init__(send, nick, topics)
        self._outbox: asyncio.Queue[Message] = asyncio.Queue(maxsize=outbox_limit)
        self._open = True
        self._writer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._drain())

    async def tell(self, text: str) -> None:
        # Through the outbox too, so that it keeps its place among the room's events.
        self.deliver(text)

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
                await self.send(message)
            except GONE:
                # Gone, or already closed. The receive side sees the websocket.disconnect and
                # runs the leave.
                self._open = False
                return
            if message["type"] == "websocket.close":
                return


class Topics(Protocol):
    """Who hears a room: the server's topics (`ServerTopics`) or this process's (`LocalTopics`).

    Every call names the member whose connection does it: a publish goes through the
    publisher's own connection (still possible once it is closing, for its leave notice).
    """

    def member(self, send: Send, nick: str) -> Member:
        """A `Member` for a new connection."""

    async def subscribe(self, member: Member, topic: str) -> None: ...

    async def unsubscribe(self, member: Member, topic: str) -> None: ...

    async def publish(self, member: Member, topic: str, text: str) -> None:
        """Deliver `text` to every subscriber of `topic`, `member` included if subscribed."""


class ServerTopics:
    """`Topics` through the server's pub/sub extension (fastws; docs/pubsub.md).

    Subscribing, unsubscribing and publishing are ASGI messages sent through the member's
    ``send()``; none of them waits. Fan-out, the slow-subscriber budget and Redis (``--pubsub``)
    are the server's.
    """

    def member(self, send: Send, nick: str) -> Member:
        return Member(send, nick, self)

    async def subscribe(self, member: Member, topic: str) -> None:
        await member.send({"type": "websocket.subscribe", "topic": topic})

    async def unsubscribe(self, member: Member, topic: str) -> None:
        await member.send({"type": "websocket.unsubscribe", "topic": topic})

    async def publish(self, member: Member, topic: str, text: str) -> None:
        await member.send({"type": "websocket.publish", "topic": topic, "text": text})


class LocalTopics:
    """`Topics` kept in this process, for servers without the extension: one process's chat."""

    def __init__(self, *, outbox_limit: int = OUTBOX_LIMIT) -> None:
        self.topics: dict[str, dict[QueuedMember, None]] = {}  # dicts as ordered sets
        self.outbox_limit = outbox_limit

    def member(self, send: Send, nick: str) -> Member:
        return QueuedMember(send, nick, self, outbox_limit=self.outbox_limit)

    async def subscribe(self, member: Member, topic: str) -> None:
        assert isinstance(member, QueuedMember)
        self.topics.setdefault(topic, {})[member] = None

    async def unsubscribe(self, member: Member, topic: str) -> None:
        subscribers = self.topics.get(topic, {})
        subscribers.pop(member, None)  # type: ignore[call-overload]
        if not subscribers:
            self.topics.pop(topic, None)

    async def publish(self, member: Member, topic: str, text: str) -> None:
        for subscriber in list(self.topics.get(topic, ())):
            subscriber.deliver(text)


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


def has_topics(scope: Scope) -> bool:
    """Whether the server offers the pub/sub extension on this connection (docs/pubsub.md)."""
    return "websocket.publish" in (scope.get("extensions") or {})


class ChatApp:
    """The ASGI application: HTTP routes, lifespan and the chat session.

    ``rooms`` holds this process's members only (room -> name -> member); names are unique in
    it. Everything the room should hear is published on the room's topic.
    """

    def __init__(self, local_topics: LocalTopics | None = None) -> None:
        self.server_topics = ServerTopics()
        self.local_topics = local_topics or LocalTopics()
        self.rooms: dict[str, dict[str, Member]] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._id = ""
        self._id_pid = -1

    @property
    def server_id(self) -> str:
        """``host:pid:random``, this process's id in presence; a worker forked after the import
        gets its own."""
        if self._id_pid != os.getpid():
            # The random part keeps two containers whose workers share a PID apart.
            self._id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
            self._id_pid = os.getpid()
        return self._id

    def topics_for(self, scope: Scope) -> Topics:
        return self.server_topics if has_topics(scope) else self.local_topics

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
        # ASGI lifespan spec: answer each event with .complete.
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                self.start_refresher()
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await self.stop_refresher()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- presence: this process's share of each room, refreshed

    def start_refresher(self) -> None:
        """Start the presence refresh on the running loop, unless it runs there already (also
        called on each join, for servers run without lifespan)."""
        loop = asyncio.get_running_loop()
        task = self._refresher
        if task is None or task.done() or task.get_loop() is not loop:
            self._refresher = loop.create_task(self._refresh_forever())

    async def stop_refresher(self) -> None:
        task, self._refresher = self._refresher, None
        if task is not None and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait([task])

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_REFRESH_S)
            for room, members in list(self.rooms.items()):
                for via in list(members.values())[:1]:
                    with contextlib.suppress(OSError):  # its connection is gone: next period
                        await self.publish_presence(room, via)

    def presence_event(self, room: str) -> dict[str, Any]:
        return {
            "type": "presence",
            "server": self.server_id,
            "users": sorted(self.rooms.get(room, {})),
            "ttl": PRESENCE_TTL_S,
        }

    async def publish_presence(self, room: str, via: Member) -> None:
        await self.publish(room, via, self.presence_event(room))

    async def publish(self, room: str, via: Member, event: dict[str, Any]) -> None:
        """Publish `event` to the room, through the connection of `via`."""
        text = json.dumps(event, ensure_ascii=False)  # once per event, not per member
        await via.topics.publish(via, topic_of(room), text)

    # -- membership in this process

    def join(self, room: str, member: Member) -> None:
        """Add `member` to `room` here, under a name unique in this process's share of it."""
        members = self.rooms.setdefault(room, {})
        name, n = member.nick, 1
        while name in members:
            n += 1
            name = f"{member.nick}-{n}"
        member.name = name
        members[name] = member

    def leave(self, room: str, member: Member) -> None:
        members = self.rooms.get(room, {})
        if members.get(member.name) is member:
            del members[member.name]
        if not members:
            self.rooms.pop(room, None)

    # -- HTTP and WebSocket

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

        topics = self.topics_for(scope)
        member = topics.member(send, nick)
        member.start()
        self.join(room, member)
        self.start_refresher()
        topic = topic_of(room)
        try:
            # Welcome first, subscribe next: nothing of the room's can come before the welcome,
            # and the member hears its own join.
            welcome = {"type": "welcome", "room": room, "user": member.name}
            await member.tell(json.dumps({**welcome, "server": self.server_id}))
            await topics.subscribe(member, topic)
            await self.publish(room, member, {"type": "join", "user": member.name})
            await self.publish_presence(room, member)
            await self.session(room, member, receive)
        except OSError:
            pass  # gone mid-send (the server's ClientDisconnected): leave as for a disconnect
        finally:
            self.leave(room, member)
            # After a disconnect, fastws still takes an unsubscribe, and a publish reaches the
            # others; a member of LocalTopics never raises.
            with contextlib.suppress(OSError):
                await topics.unsubscribe(member, topic)
                await self.publish(room, member, {"type": "leave", "user": member.name})
                await self.publish_presence(room, member)
            await member.finish()

    async def session(self, room: str, member: Member, receive: Receive) -> None:
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            if event["type"] != "websocket.receive":
                continue
            text = event.get("text")
            if text is None:
                await member.tell(error_frame("binary frames are not supported; send JSON text"))
                continue
            try:
                body = parse_client_message(text)
            except BadRequest as exc:
                await member.tell(error_frame(str(exc)))
                continue
            event = {
                "type": "message",
                "room": room,
                "user": member.name,
                "text": body,
                "ts": round(time.time(), 3),
            }
            await self.publish(room, member, event)


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


app = ChatApp()

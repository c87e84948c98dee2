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

Rooms live in a `LocalHub`, in memory in this process. The chat logic talks to the hub only
through the `Hub` interface (``start``/``stop``, ``join``/``leave``/``publish``), so a broker hub
(Redis pub/sub fanning events out across worker processes, presence kept in Redis) can replace it
without touching `ChatApp`. Each member has its own bounded outbox drained by its own writer task,
so a slow or vanished client costs the broadcaster one ``put_nowait``, never a wait or an error.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
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
OUTBOX_LIMIT = 256  # queued frames per member before it counts as too slow and is dropped

# RFC 6455 §7.4.1 close codes used here.
CLOSE_POLICY_VIOLATION = 1008  # bad room or nickname; before accept, ASGI turns it into HTTP 403
CLOSE_TRY_AGAIN_LATER = 1013  # the member's outbox overflowed


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


class Hub(Protocol):
    """Room membership and fan-out; the seam where a broker (e.g. Redis pub/sub) plugs in.

    Events are JSON-ready dicts; a hub serialises them once per publish, not once per member.
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
        users = await self.hub.join(room, member)
        member.deliver(json.dumps({"type": "welcome", "room": room, "user": member.name}))
        await self.hub.publish(room, {"type": "join", "user": member.name})
        await self.hub.publish(room, {"type": "presence", "users": users})
        try:
            await self.session(room, member, receive)
        finally:
            users = await self.hub.leave(room, member)
            await self.hub.publish(room, {"type": "leave", "user": member.name})
            await self.hub.publish(room, {"type": "presence", "users": users})
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
                member.deliver(error_frame("binary frames are not supported; send JSON text"))
                continue
            try:
                body = parse_client_message(text)
            except BadRequest as exc:
                member.deliver(error_frame(str(exc)))
                continue
            await self.hub.publish(
                room,
                {
                    "type": "message",
                    "room": room,
                    "user": member.name,
                    "text": body,
                    "ts": round(time.time(), 3),
                },
            )


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


app = ChatApp(LocalHub())

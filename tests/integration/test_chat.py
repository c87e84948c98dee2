"""The chat demo (examples/chat.py) under a real server process, driven by real WebSocket clients.

The server runs as ``python -m fastws examples.chat:app --port N``; set FASTWS_TEST_SERVER=uvicorn
to run the same tests under ``python -m uvicorn`` instead. The in-process tests at the end cover
what a socket test cannot make happen on demand: a peer whose sends block or fail mid-broadcast.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import re
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from integration.chat_server import (
    HOST,
    REPO_ROOT,
    ChatServer,
    Event,
    recv_event,
    recv_until,
    running_chat_server,
)

pytestmark = pytest.mark.timeout(120)


# --- server process ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    # One server for the module; each test uses its own room names.
    with running_chat_server(tmp_path_factory.mktemp("chat") / "server.log") as server:
        yield server
    assert "Traceback" not in server.log(), server.log()


# --- client helpers ------------------------------------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def recv_events(ws: ClientConnection, n: int) -> list[Event]:
    return [await recv_event(ws) for _ in range(n)]


def chat_url(server: ChatServer, room: str | None, name: str | None) -> str:
    query = "&".join(f"{k}={v}" for k, v in (("room", room), ("name", name)) if v is not None)
    return f"{server.ws_url}/ws?{query}"


@contextlib.asynccontextmanager
async def member(server: ChatServer, room: str | None, name: str | None) -> Any:
    """A connected client whose welcome/join/presence greeting has been read already."""
    async with connect(chat_url(server, room, name), open_timeout=10, close_timeout=5) as ws:
        welcome = await recv_event(ws)
        assert welcome["type"] == "welcome", welcome
        await recv_until(ws, lambda e: e["type"] == "presence")
        yield ws


def say(text: str) -> str:
    return json.dumps({"type": "message", "text": text})


def http_get(server: ChatServer, path: str, method: str = "GET") -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.getheader("content-type", ""), resp.read()
    finally:
        conn.close()


# --- HTTP ----------------------------------------------------------------------------------------


def test_root_serves_the_page(chat_server: ChatServer) -> None:
    status, content_type, body = http_get(chat_server, "/")
    assert status == 200
    assert content_type.startswith("text/html")
    assert body == (REPO_ROOT / "examples" / "chat.html").read_bytes()
    # Self-contained: nothing loaded from another origin.
    assert not re.search(rb"""(src|href)\s*=\s*["']?(https?:)?//""", body)


@pytest.mark.parametrize("path", ["/nope", "/index.html", "/ws"])
def test_other_paths_are_404(chat_server: ChatServer, path: str) -> None:
    status, _, _ = http_get(chat_server, path)
    assert status == 404


def test_post_to_root_is_405(chat_server: ChatServer) -> None:
    status, _, _ = http_get(chat_server, "/", method="POST")
    assert status == 405


# --- WebSocket -----------------------------------------------------------------------------------


def test_join_sends_welcome_join_and_presence(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with connect(chat_url(chat_server, "greet", "alice")) as alice:
            assert await recv_events(alice, 3) == [
                {"type": "welcome", "room": "greet", "user": "alice"},
                {"type": "join", "user": "alice"},
                {"type": "presence", "users": ["alice"]},
            ]

    run(scenario())


def test_two_clients_see_each_others_messages(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with member(chat_server, "talk", "alice") as alice:
            async with member(chat_server, "talk", "bob") as bob:
                await recv_until(
                    alice, lambda e: e == {"type": "presence", "users": ["alice", "bob"]}
                )

                await alice.send(say("hi bob"))
                for ws in (alice, bob):  # the sender gets its own message back too
                    event = await recv_event(ws)
                    assert isinstance(event.pop("ts"), float)
                    assert event == {
                        "type": "message",
                        "room": "talk",
                        "user": "alice",
                        "text": "hi bob",
                    }

                await bob.send(say("hello alice ✓"))
                for ws in (bob, alice):
                    event = await recv_event(ws)
                    assert (event["user"], event["text"]) == ("bob", "hello alice ✓")
                    assert abs(event["ts"] - time.time()) < 60

    run(scenario())


def test_join_leave_and_presence_notices(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with member(chat_server, "notices", "alice") as alice:
            async with member(chat_server, "notices", "bob") as bob:
                assert await recv_events(alice, 2) == [
                    {"type": "join", "user": "bob"},
                    {"type": "presence", "users": ["alice", "bob"]},
                ]
                async with member(chat_server, "notices", "carol"):
                    for ws in (alice, bob):
                        assert await recv_events(ws, 2) == [
                            {"type": "join", "user": "carol"},
                            {"type": "presence", "users": ["alice", "bob", "carol"]},
                        ]
                for ws in (alice, bob):
                    assert await recv_events(ws, 2) == [
                        {"type": "leave", "user": "carol"},
                        {"type": "presence", "users": ["alice", "bob"]},
                    ]
            assert await recv_events(alice, 2) == [
                {"type": "leave", "user": "bob"},
                {"type": "presence", "users": ["alice"]},
            ]

    run(scenario())


def test_duplicate_nickname_gets_a_suffix(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with member(chat_server, "twins", "sam") as first:
            async with connect(chat_url(chat_server, "twins", "sam")) as second:
                welcome = await recv_event(second)
                assert welcome == {"type": "welcome", "room": "twins", "user": "sam-2"}
            await recv_until(first, lambda e: e == {"type": "presence", "users": ["sam"]})

    run(scenario())


def test_rooms_are_isolated(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with member(chat_server, "red", "alice") as alice:
            async with member(chat_server, "blue", "carol") as carol:
                await alice.send(say("for red only"))
                await recv_until(alice, lambda e: e.get("text") == "for red only")
                # alice has her echo, so the broadcast to "red" is done. Anything it had queued
                # for carol would reach her before the echo of her own later message.
                await carol.send(say("blue here"))
                echo, before = await recv_until(carol, lambda e: e["type"] == "message")
                assert echo["text"] == "blue here" and echo["room"] == "blue"
                assert before == []
                await alice.send(say("still red"))
                event, before = await recv_until(alice, lambda e: e["type"] == "message")
                assert (event["text"], before) == ("still red", [])

    run(scenario())


def test_default_room_is_lobby(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with connect(chat_url(chat_server, None, "dora")) as ws:
            assert await recv_event(ws) == {"type": "welcome", "room": "lobby", "user": "dora"}

    run(scenario())


def test_missing_nickname_gets_a_guest_name(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with connect(chat_url(chat_server, "guests", None)) as ws:
            welcome = await recv_event(ws)
            assert re.fullmatch(r"guest-[0-9a-f]{4}", welcome["user"]), welcome

    run(scenario())


@pytest.mark.parametrize(
    "room, name",
    [
        ("no spaces", "x"),
        ("semi;colon", "x"),
        ("r" * 33, "x"),
        ("ok", "n" * 33),
        ("ok", "bell%07"),
    ],
)
def test_bad_room_or_name_is_rejected_before_accept(
    chat_server: ChatServer, room: str, name: str
) -> None:
    async def scenario() -> None:
        url = f"{chat_server.ws_url}/ws?room={room.replace(' ', '%20')}&name={name}"
        with pytest.raises(InvalidStatus) as info:
            async with connect(url):
                pass
        # ASGI: websocket.close before websocket.accept becomes HTTP 403.
        assert info.value.response.status_code == 403

    run(scenario())


def test_websocket_on_another_path_is_rejected(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{chat_server.ws_url}/chat"):
                pass
        assert info.value.response.status_code == 403

    run(scenario())


@pytest.mark.parametrize(
    "frame, error",
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"type": "shout", "text": "x"}', "unknown message type"),
        ('{"type": "message"}', "'text' must be a non-empty string"),
        ('{"type": "message", "text": "   "}', "'text' must be a non-empty string"),
        ('{"type": "message", "text": 5}', "'text' must be a non-empty string"),
        (json.dumps({"type": "message", "text": "x" * 2001}), "at most 2000"),
        (b"\x00binary", "binary frames are not supported"),
    ],
)
def test_bad_client_frame_gets_an_error_reply(
    chat_server: ChatServer, frame: str | bytes, error: str
) -> None:
    async def scenario() -> None:
        async with member(chat_server, "errors", "mallory") as ws:
            await ws.send(frame)
            reply = await recv_event(ws)
            assert reply["type"] == "error" and error in reply["error"], reply
            # The connection survives and the next valid message goes through.
            await ws.send(say("sorry"))
            event = await recv_event(ws)
            assert (event["type"], event["text"]) == ("message", "sorry")

    run(scenario())


def test_vanished_peer_does_not_break_the_broadcast(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with member(chat_server, "vanish", "alice") as alice:
            async with member(chat_server, "vanish", "bob") as bob:
                ghost = await connect(chat_url(chat_server, "vanish", "ghost"))
                await recv_until(bob, lambda e: e == {"type": "join", "user": "ghost"})
                ghost.transport.abort()  # RST, no close frame
                await ghost.wait_closed()
                for i in range(20):
                    await alice.send(say(f"m{i}"))
                ghost_gone = {"type": "presence", "users": ["alice", "bob"]}
                for ws in (alice, bob):
                    seen: list[Event] = []
                    for i in range(20):
                        event, skipped = await recv_until(ws, lambda e: e["type"] == "message")
                        assert event["text"] == f"m{i}"
                        seen += skipped
                    # The leave races the messages; it comes before, between or after them.
                    if ghost_gone not in seen:
                        await recv_until(ws, lambda e: e == ghost_gone)

    run(scenario())


# --- the hub in process: peers whose sends block or fail -----------------------------------------


class Recorder:
    """An ASGI `send` that records, blocks forever, or fails like a vanished peer."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.sent: list[dict[str, Any]] = []
        self.blocked = asyncio.Event()
        self._changed = asyncio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.mode == "block" and message["type"] == "websocket.send":
            self.blocked.set()
            await asyncio.Event().wait()
        if self.mode == "fail":
            raise ConnectionResetError("peer gone")
        self.sent.append(message)
        self._changed.set()

    async def wait_sent(self, n: int, timeout_s: float = 5.0) -> None:
        """Return once `n` messages were sent; fail after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while len(self.sent) < n:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - time.monotonic()))

    def texts(self) -> list[str]:
        return [json.loads(m["text"])["text"] for m in self.sent if m["type"] == "websocket.send"]


def test_slow_and_failing_peers_do_not_hold_up_the_others(chat_module: ModuleType) -> None:
    limit = 8

    async def scenario() -> None:
        hub = chat_module.LocalHub()
        good, slow, gone = Recorder(), Recorder("block"), Recorder("fail")
        members = {}
        for name, send in (("good", good), ("slow", slow), ("gone", gone)):
            members[name] = chat_module.Member(send, name, outbox_limit=limit)
            members[name].start()
            await hub.join("r", members[name])

        for i in range(limit * 3):
            await asyncio.wait_for(hub.publish("r", {"type": "message", "text": f"{i}"}), 1)
        await asyncio.wait_for(slow.blocked.wait(), 5)
        await good.wait_sent(limit * 3)
        assert good.texts() == [str(i) for i in range(limit * 3)]
        assert gone.sent == []
        for m in members.values():
            await asyncio.wait_for(m.finish(), 5)

    run(scenario())


def test_overflowing_member_is_closed_with_1013(chat_module: ModuleType) -> None:
    async def scenario() -> None:
        sent = Recorder()
        m = chat_module.Member(sent, "slowpoke", outbox_limit=4)
        # Writer not started: nothing drains, as with a peer that stopped reading.
        assert all(m.deliver(json.dumps({"text": str(i)})) for i in range(4))
        assert m.deliver(json.dumps({"text": "overflow"})) is False
        assert m.deliver(json.dumps({"text": "after"})) is False
        m.start()
        await sent.wait_sent(1)
        assert sent.sent == [{"type": "websocket.close", "code": 1013}]
        await asyncio.wait_for(m.finish(), 5)

    run(scenario())


def test_lifespan_startup_and_shutdown(chat_module: ModuleType) -> None:
    async def scenario() -> None:
        inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        outbox: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: dict[str, Any]) -> None:
            outbox.append(message)

        app = chat_module.ChatApp(chat_module.LocalHub())
        await asyncio.wait_for(
            app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send), 5
        )
        assert outbox == [
            {"type": "lifespan.startup.complete"},
            {"type": "lifespan.shutdown.complete"},
        ]

    run(scenario())

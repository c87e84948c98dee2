"""The chat demo (examples/chat.py) under a real server process, driven by real WebSocket clients.

The server runs as ``python -m fastws examples.chat:app --port N``, where the rooms are the
server's topics (the pub/sub extension); set FASTWS_TEST_SERVER=uvicorn to run the same tests
under ``python -m uvicorn`` instead, where the app's own in-process fallback (`LocalTopics`) does
the fan-out. The in-process tests at the end cover what a socket test cannot make happen on
demand: a peer whose sends block or fail mid-broadcast, and which path the app picks.
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
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from integration.chat_server import (
    HOST,
    REPO_ROOT,
    ChatClient,
    ChatServer,
    Event,
    chat_client,
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


async def recv_events(client: ChatClient, n: int) -> list[Event]:
    return [await client.recv() for _ in range(n)]


def is_welcome(event: Event, room: str, user: str) -> bool:
    """The welcome, whose ``server`` is the serving process's ``host:pid:random``."""
    rest = dict(event)
    server = rest.pop("server", None)
    assert isinstance(server, str) and re.fullmatch(r".+:\d+:[0-9a-f]{6}", server), event
    return rest == {"type": "welcome", "room": room, "user": user}


def chat_url(server: ChatServer, room: str | None, name: str | None) -> str:
    query = "&".join(f"{k}={v}" for k, v in (("room", room), ("name", name)) if v is not None)
    return f"{server.ws_url}/ws?{query}"


@contextlib.asynccontextmanager
async def member(server: ChatServer, room: str | None, name: str | None) -> Any:
    """A connected client whose welcome/join/presence greeting has been read already."""
    async with chat_client(chat_url(server, room, name)) as client:
        welcome = await client.recv()
        assert welcome["type"] == "welcome", welcome
        await client.recv_until(lambda e: e["type"] == "presence")
        yield client


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
        async with chat_client(chat_url(chat_server, "greet", "alice")) as alice:
            welcome, *rest = await recv_events(alice, 3)
            assert is_welcome(welcome, "greet", "alice")
            assert rest == [
                {"type": "join", "user": "alice"},
                {"type": "presence", "users": ["alice"]},
            ]
            # The share behind that list: this server's members, from this server.
            assert alice.shares == [
                {"type": "presence", "server": welcome["server"], "users": ["alice"], "ttl": 7.0}
            ]

    run(scenario())


def test_two_clients_see_each_others_messages(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with member(chat_server, "talk", "alice") as alice:
            async with member(chat_server, "talk", "bob") as bob:
                await alice.recv_until(
                    lambda e: e == {"type": "presence", "users": ["alice", "bob"]}
                )

                await alice.send(say("hi bob"))
                for ws in (alice, bob):  # the sender gets its own message back too
                    event = await ws.recv()
                    assert isinstance(event.pop("ts"), float)
                    assert event == {
                        "type": "message",
                        "room": "talk",
                        "user": "alice",
                        "text": "hi bob",
                    }

                await bob.send(say("hello alice ✓"))
                for ws in (bob, alice):
                    event = await ws.recv()
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
            async with chat_client(chat_url(chat_server, "twins", "sam")) as second:
                assert is_welcome(await second.recv(), "twins", "sam-2")
                await first.recv_until(
                    lambda e: e == {"type": "presence", "users": ["sam", "sam-2"]}
                )
            await first.recv_until(lambda e: e == {"type": "presence", "users": ["sam"]})

    run(scenario())


def test_rooms_are_isolated(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with member(chat_server, "red", "alice") as alice:
            async with member(chat_server, "blue", "carol") as carol:
                await alice.send(say("for red only"))
                await alice.recv_until(lambda e: e.get("text") == "for red only")
                # alice has her echo, so the broadcast to "red" is done. Anything it had queued
                # for carol would reach her before the echo of her own later message.
                await carol.send(say("blue here"))
                echo, before = await carol.recv_until(lambda e: e["type"] == "message")
                assert echo["text"] == "blue here" and echo["room"] == "blue"
                assert before == []
                await alice.send(say("still red"))
                event, before = await alice.recv_until(lambda e: e["type"] == "message")
                assert (event["text"], before) == ("still red", [])

    run(scenario())


def test_default_room_is_lobby(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with chat_client(chat_url(chat_server, None, "dora")) as ws:
            assert is_welcome(await ws.recv(), "lobby", "dora")

    run(scenario())


def test_missing_nickname_gets_a_guest_name(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with chat_client(chat_url(chat_server, "guests", None)) as ws:
            welcome = await ws.recv()
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
            reply = await ws.recv()
            assert reply["type"] == "error" and error in reply["error"], reply
            # The connection survives and the next valid message goes through.
            await ws.send(say("sorry"))
            event = await ws.recv()
            assert (event["type"], event["text"]) == ("message", "sorry")

    run(scenario())


def test_vanished_peer_does_not_break_the_broadcast(chat_server: ChatServer) -> None:
    async def scenario() -> None:
        async with member(chat_server, "vanish", "alice") as alice:
            async with member(chat_server, "vanish", "bob") as bob:
                ghost = await connect(chat_url(chat_server, "vanish", "ghost"))
                await bob.recv_until(lambda e: e == {"type": "join", "user": "ghost"})
                ghost.transport.abort()  # RST, no close frame
                await ghost.wait_closed()
                for i in range(20):
                    await alice.send(say(f"m{i}"))
                ghost_gone = {"type": "presence", "users": ["alice", "bob"]}
                for ws in (alice, bob):
                    seen: list[Event] = []
                    for i in range(20):
                        event, skipped = await ws.recv_until(lambda e: e["type"] == "message")
                        assert event["text"] == f"m{i}"
                        seen += skipped
                    # The leave races the messages; it comes before, between or after them.
                    if ghost_gone not in seen:
                        await ws.recv_until(lambda e: e == ghost_gone)

    run(scenario())


def test_each_server_refreshes_its_presence_share(chat_server: ChatServer) -> None:
    """A share is published again every PRESENCE_REFRESH_S while the room has members here:
    how a newcomer on another server learns of them, and how a page notices a server gone."""

    async def scenario() -> None:
        async with member(chat_server, "refresh", "rita") as rita:
            assert len(rita.shares) == 1
            started = time.monotonic()
            with pytest.raises(AssertionError, match="no matching event"):
                await rita.recv_until(lambda e: True, timeout_s=5.0)  # a repeat changes nothing
            assert len(rita.shares) >= 2, rita.shares
            assert all(s == rita.shares[0] for s in rita.shares), rita.shares
            assert time.monotonic() - started >= 1.5

    run(scenario())


# --- the app in process: peers whose sends block or fail, and which path it takes -----------------


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
        topics = chat_module.LocalTopics(outbox_limit=limit)
        good, slow, gone = Recorder(), Recorder("block"), Recorder("fail")
        members = []
        for name, send in (("good", good), ("slow", slow), ("gone", gone)):
            m = topics.member(send, name)
            m.start()
            await topics.subscribe(m, "r")
            members.append(m)

        for i in range(limit * 3):
            text = json.dumps({"type": "message", "text": f"{i}"})
            await asyncio.wait_for(topics.publish(members[0], "r", text), 1)
        await asyncio.wait_for(slow.blocked.wait(), 5)
        await good.wait_sent(limit * 3)
        assert good.texts() == [str(i) for i in range(limit * 3)]
        assert gone.sent == []
        for m in members:
            await asyncio.wait_for(m.finish(), 5)

    run(scenario())


def test_overflowing_member_is_closed_with_1013(chat_module: ModuleType) -> None:
    async def scenario() -> None:
        sent = Recorder()
        m = chat_module.LocalTopics(outbox_limit=4).member(sent, "slowpoke")
        # Writer not started: nothing drains, as with a peer that stopped reading.
        assert all(m.deliver(json.dumps({"text": str(i)})) for i in range(4))
        assert m.deliver(json.dumps({"text": "overflow"})) is False
        assert m.deliver(json.dumps({"text": "after"})) is False
        m.start()
        await sent.wait_sent(1)
        assert sent.sent == [{"type": "websocket.close", "code": 1013}]
        await asyncio.wait_for(m.finish(), 5)

    run(scenario())


def session_messages(chat_module: ModuleType, extensions: dict[str, Any] | None) -> list[Any]:
    """What the app sends for one connection that joins room "r" as "ann", says "hi" and
    leaves, under a server whose scope offers `extensions`."""
    scope: dict[str, Any] = {"type": "websocket", "path": "/ws", "query_string": b"room=r&name=ann"}
    if extensions is not None:
        scope["extensions"] = extensions
    app = chat_module.ChatApp()

    async def scenario() -> list[Any]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for event in (
            {"type": "websocket.connect"},
            {"type": "websocket.receive", "text": json.dumps({"type": "message", "text": "hi"})},
        ):
            inbox.put_nowait(event)
        sent = Recorder()

        async def receive() -> dict[str, Any]:
            if inbox.empty():  # disconnect once "hi" went out
                deadline = time.monotonic() + 5
                while not any('"hi"' in str(m.get("text")) for m in sent.sent):
                    assert time.monotonic() < deadline, sent.sent
                    await sent.wait_sent(len(sent.sent) + 1)
                return {"type": "websocket.disconnect", "code": 1000}
            return await inbox.get()

        await asyncio.wait_for(app(scope, receive, sent), 10)
        await app.stop_refresher()
        return sent.sent

    messages = run(scenario())
    assert app.rooms == {}
    out = []
    for m in messages:
        m = dict(m)
        if "text" in m:  # what varies from run to run
            data = json.loads(m["text"])
            for key in ("ts", "ttl", "server"):
                data.pop(key, None)
            m["text"] = data
        out.append(m)
    return out


def test_app_uses_the_servers_topics_when_offered(chat_module: ModuleType) -> None:
    """With the extension in the scope (fastws) the room is the topic chat:r: subscribe, then
    every room event is a websocket.publish through the connection, leave included."""
    offered = {"websocket.subscribe": {}, "websocket.unsubscribe": {}, "websocket.publish": {}}
    topic = "chat:r"
    assert session_messages(chat_module, offered) == [
        {"type": "websocket.accept"},
        {"type": "websocket.send", "text": {"type": "welcome", "room": "r", "user": "ann"}},
        {"type": "websocket.subscribe", "topic": topic},
        {"type": "websocket.publish", "topic": topic, "text": {"type": "join", "user": "ann"}},
        {
            "type": "websocket.publish",
            "topic": topic,
            "text": {"type": "presence", "users": ["ann"]},
        },
        {
            "type": "websocket.publish",
            "topic": topic,
            "text": {"type": "message", "room": "r", "user": "ann", "text": "hi"},
        },
        {"type": "websocket.unsubscribe", "topic": topic},
        {"type": "websocket.publish", "topic": topic, "text": {"type": "leave", "user": "ann"}},
        {"type": "websocket.publish", "topic": topic, "text": {"type": "presence", "users": []}},
    ]


@pytest.mark.parametrize("extensions", [None, {}, {"websocket.http.response": {}}])
def test_app_fans_out_itself_without_the_extension(
    chat_module: ModuleType, extensions: dict[str, Any] | None
) -> None:
    """Without it (uvicorn) only plain websocket.send frames go out: the app's LocalTopics."""
    assert session_messages(chat_module, extensions) == [
        {"type": "websocket.accept"},
        {"type": "websocket.send", "text": {"type": "welcome", "room": "r", "user": "ann"}},
        {"type": "websocket.send", "text": {"type": "join", "user": "ann"}},
        {"type": "websocket.send", "text": {"type": "presence", "users": ["ann"]}},
        {
            "type": "websocket.send",
            "text": {"type": "message", "room": "r", "user": "ann", "text": "hi"},
        },
    ]


def test_lifespan_startup_and_shutdown(chat_module: ModuleType) -> None:
    async def scenario() -> None:
        inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        outbox: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: dict[str, Any]) -> None:
            outbox.append(message)

        app = chat_module.ChatApp()
        await asyncio.wait_for(
            app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send), 5
        )
        assert outbox == [
            {"type": "lifespan.startup.complete"},
            {"type": "lifespan.shutdown.complete"},
        ]
        assert app._refresher is None

    run(scenario())

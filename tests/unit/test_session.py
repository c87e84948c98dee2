"""The RFC 6455 session rules without a socket: bytes in, ASGI events and bytes out.

Each test builds a connection as fastws/http/protocol.py's _upgrade() does (a loaded Config, a
ServerState, the handshake's Offer, the scope, then start()) on a recording FakeTransport,
drives it as asyncio would (get_buffer()/buffer_updated(), pause_writing()/resume_writing(),
connection_lost(), the server sweep's expire(), shutdown()) and checks what the transport saw
(frames written, close, abort, pause/resume), what the app received and what its send() raised.

Only the protocol object's public surface is used, so that the session's rules, once carved
out of fastws/ws/protocol.py, are checked by tests that already pass. Client frames are built
and server frames parsed here, from the RFC, not with fastws's codec. Every test runs on the
pure-Python and the compiled build of fastws.ws.protocol (the `protocol` fixture).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from types import ModuleType
from typing import Any

import pytest

from fastws.config import Config
from fastws.transport import ClientDisconnected, ServerState
from fastws.ws.handshake import Offer, validate_request

pytestmark = pytest.mark.timeout(30)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MASK_KEY = b"\x37\xfa\x21\x3d"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example, and its accept value
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
ACCEPT_MESSAGE = {"type": "websocket.accept"}


# -- client frames (RFC 6455 §5.2, §5.3) and the server's, read back -------------------------


def mask(payload: bytes, key: bytes = MASK_KEY) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def frame(
    opcode: int, payload: bytes | str = b"", *, fin: bool = True, rsv: int = 0, masked: bool = True
) -> bytes:
    """One client frame, masked unless told otherwise."""
    data = payload.encode() if isinstance(payload, str) else payload
    n = len(data)
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes([first, bit | n])
    elif n < 1 << 16:
        head = bytes([first, bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, bit | 127]) + n.to_bytes(8, "big")
    return head + MASK_KEY + mask(data) if masked else head + data


def close_payload(code: int, reason: bytes | str = b"") -> bytes:
    return code.to_bytes(2, "big") + (reason.encode() if isinstance(reason, str) else reason)


def close_frame(code: int | None = 1000, reason: bytes | str = b"") -> bytes:
    return frame(OP_CLOSE, b"" if code is None else close_payload(code, reason))


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Server frames as (opcode, payload): each must be final, unmasked, without RSV bits."""
    frames = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 2, f"truncated frame header: {data[pos:]!r}"
        b0, b1 = data[pos], data[pos + 1]
        assert b0 & 0x80, "a server frame that is not final"
        assert not b0 & 0x70, "a server frame with RSV bits (no extension negotiated)"
        assert not b1 & 0x80, "a masked server frame (RFC 6455 §5.1)"
        n = b1 & 0x7F
        pos += 2
        if n >= 126:
            width = 2 if n == 126 else 8
            n = int.from_bytes(data[pos : pos + width], "big")
            pos += width
        assert pos + n <= len(data), "truncated frame payload"
        frames.append((b0 & 0x0F, data[pos : pos + n]))
        pos += n
    return frames


def close_code(payload: bytes) -> int:
    assert len(payload) >= 2, f"close frame without a code: {payload!r}"
    return int.from_bytes(payload[:2], "big")


def parse_head(data: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """An HTTP/1.1 response: (status line, headers by lowercase name, what follows)."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data!r}"
    status, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


# -- the app and the connection --------------------------------------------------------------


class App:
    """The ASGI app: takes websocket.connect, sends ``handshake`` (None: the test sends it),
    then, with ``read``, records every event until the disconnect, sending each message back
    with ``echo``. It then stays until cancelled, so that its end does not close anything."""

    def __init__(
        self,
        handshake: Iterable[dict[str, Any]] | None = (ACCEPT_MESSAGE,),
        *,
        read: bool = True,
        echo: bool = False,
    ) -> None:
        self.handshake = handshake
        self.read = read
        self.echo = echo
        self.events: list[dict[str, Any]] = []
        self.scope: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        self.events.append(await receive())
        for message in self.handshake or ():
            await send(message)
        while self.read:
            event = await receive()
            self.events.append(event)
            if event["type"] == "websocket.disconnect":
                break
            if self.echo:
                await send({**event, "type": "websocket.send"})
        await asyncio.get_running_loop().create_future()

    @property
    def received(self) -> list[dict[str, Any]]:
        """What came after websocket.connect."""
        assert self.events and self.events[0] == {"type": "websocket.connect"}
        return self.events[1:]


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _passes(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def text(data: str) -> dict[str, Any]:
    return {"type": "websocket.receive", "text": data}


def binary(data: bytes) -> dict[str, Any]:
    return {"type": "websocket.receive", "bytes": data}


def disconnect(code: int, reason: str = "") -> dict[str, Any]:
    return {"type": "websocket.disconnect", "code": code, "reason": reason}


class Conn:
    """One upgraded connection, built as HttpProtocol._upgrade() builds it, on a FakeTransport.

    ``settings`` are Config keywords; keepalive pings are off unless a test turns them on.
    """

    def __init__(
        self,
        protocol: ModuleType,
        loop: asyncio.AbstractEventLoop,
        transport: type[Any],
        app: Any = None,
        *,
        rest: bytes = b"",
        headers: Iterable[tuple[bytes, bytes]] = (),
        **settings: Any,
    ) -> None:
        self.loop = loop
        self.app = App() if app is None else app
        settings.setdefault("ws_ping_interval", None)
        config = Config(
            app=self.app,
            interface="asgi3",
            lifespan="off",
            log_level="critical",
            access_log=False,
            **settings,
        )
        config.load()
        state = ServerState(protocol.Wakeups())  # this build's
        request_headers = [
            (b"host", b"example.com"),
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", KEY),
            (b"sec-websocket-version", b"13"),
            *headers,
        ]
        offer = validate_request(b"GET", "1.1", request_headers)
        assert isinstance(offer, Offer), offer
        scope = {
            "type": "http",
            "http_version": "1.1",
            "root_path": "",
            "path": "/chat",
            "raw_path": b"/chat",
            "query_string": b"room=1",
            "headers": request_headers,
            "state": {},
        }
        self.transport = transport(loop)
        self.ws = protocol.WebSocketProtocol(
            config,
            state,
            {},
            scope,
            offer,
            self.transport,
            ("127.0.0.1", 40000),
            ("127.0.0.1", 8000),
            loop,
        )
        self.transport.set_protocol(self.ws)
        self.ws.start(rest)
        self.run()

    # driving it

    def run(self, passes: int = 8) -> None:
        self.loop.run_until_complete(_passes(passes))

    def wait(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    def wait_until(self, when: float) -> None:
        """Run the loop until its clock has passed ``when``."""
        while self.loop.time() <= when:
            self.wait(when - self.loop.time() + 0.002)

    def feed(self, data: bytes, passes: int = 8) -> None:
        """One read, delivered as asyncio's transports do (buffer by buffer)."""
        assert self.transport.reading, "fed while the protocol has reading paused"
        view = memoryview(data)
        while view:
            buf = self.ws.get_buffer(len(view))
            n = min(len(buf), len(view))
            assert n > 0
            buf[:n] = view[:n]
            del buf
            self.ws.buffer_updated(n)
            view = view[n:]
        self.run(passes)

    def send(self, message: dict[str, Any]) -> None:
        """The ASGI send(), awaited (its exceptions come out here)."""
        self.loop.run_until_complete(_wait(self.ws.send(message)))
        self.run()

    def receive(self) -> dict[str, Any]:
        """The ASGI receive(), awaited: only with an app that does not read itself."""
        event: dict[str, Any] = self.loop.run_until_complete(
            asyncio.wait_for(_wait(self.ws.receive()), 1.0)
        )
        return event

    def expire(self) -> None:
        """What the server's sweep does once the deadline has passed."""
        self.ws.expire()
        self.run()

    def lose(self) -> None:
        """The socket went away under us: asyncio calls connection_lost()."""
        self.transport.closing = True
        self.ws.connection_lost(None)
        self.run()

    # what came out

    @property
    def response(self) -> bytes:
        """The HTTP response (the 101, or a refusal) written before any frame."""
        status, _, rest = parse_head(self.transport.written)
        return self.transport.written[: len(self.transport.written) - len(rest)]

    def frames(self) -> list[tuple[int, bytes]]:
        """Every frame written after the 101."""
        written = self.transport.written
        if written.startswith(b"HTTP/"):
            _, _, written = parse_head(written)
        return parse_frames(written)

    @property
    def closed(self) -> bool:
        return "close" in self.transport.calls or "abort" in self.transport.calls


@pytest.fixture
def connect(
    protocol: ModuleType, loop: asyncio.AbstractEventLoop, fake_transport: type[Any]
) -> Callable[..., Conn]:
    """connect(app=None, **options): a new connection on this test's build and loop."""

    def connect(app: Any = None, **options: Any) -> Conn:
        return Conn(protocol, loop, fake_transport, app, **options)

    return connect


def deadline(conn: Conn) -> float:
    """The loop time by which the server's sweep must call expire() (0.0: none): the one field
    the sweep reads, so the one the session's shell must keep under this name."""
    value: float = conn.ws.deadline
    return value


# -- RFC 6455 §5.5: control frames --------------------------------------------------------


class TestControlFrames:
    @pytest.mark.parametrize("payload", [b"", b"x", b"\x00\xff" * 3, b"p" * 125])
    def test_ping_gets_a_pong_with_the_same_payload(self, connect, payload):
        conn = connect()
        conn.feed(frame(OP_PING, payload))
        assert conn.frames() == [(OP_PONG, payload)]
        assert conn.app.received == []
        assert not conn.closed

    def test_each_ping_of_one_read_gets_its_pong_in_order(self, connect):
        conn = connect()
        conn.feed(frame(OP_PING, b"1") + frame(OP_PING, b"2") + frame(OP_PING, b"3"))
        assert conn.frames() == [(OP_PONG, b"1"), (OP_PONG, b"2"), (OP_PONG, b"3")]

    def test_unsolicited_pong_is_ignored(self, connect):
        conn = connect()
        conn.feed(frame(OP_PONG, b"unasked"))
        conn.feed(frame(OP_TEXT, "after"))
        assert conn.frames() == []
        assert conn.app.received == [text("after")]
        assert not conn.closed

    def test_ping_while_writes_paused_keeps_only_the_latest_pong_until_resume(self, connect):
        conn = connect()
        conn.ws.pause_writing()
        conn.feed(frame(OP_PING, b"old") + frame(OP_PING, b"new"))
        assert conn.frames() == []
        assert not conn.transport.reading, "a ping flood must not grow our buffers"
        conn.ws.resume_writing()
        conn.run()
        assert conn.frames() == [(OP_PONG, b"new")]
        assert conn.transport.reading
        assert conn.transport.calls == ["pause_reading", "resume_reading"]

    def test_ping_in_a_fragmented_message_is_answered_and_the_message_kept(self, connect):
        conn = connect()
        conn.feed(
            frame(OP_TEXT, "frag", fin=False)
            + frame(OP_PING, b"mid")
            + frame(OP_CONT, "mented", fin=True)
        )
        assert conn.frames() == [(OP_PONG, b"mid")]
        assert conn.app.received == [text("fragmented")]

    @pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
    def test_control_frame_over_125_bytes_is_protocol_error(self, connect, opcode):
        conn = connect()
        payload = close_payload(1000, "r" * 124) if opcode == OP_CLOSE else b"p" * 126
        conn.feed(frame(opcode, payload))
        (op, close), *more = conn.frames()
        assert (op, close_code(close), more) == (OP_CLOSE, 1002, [])
        assert conn.closed
        assert conn.app.received[-1]["code"] == 1002

    @pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
    def test_fragmented_control_frame_is_protocol_error(self, connect, opcode):
        conn = connect()
        conn.feed(frame(opcode, b"", fin=False))
        [(op, close)] = conn.frames()
        assert (op, close_code(close)) == (OP_CLOSE, 1002)
        assert conn.closed

    @pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
    def test_reserved_opcode_is_protocol_error(self, connect, opcode):
        conn = connect()
        conn.feed(frame(opcode, b"?"))
        [(op, close)] = conn.frames()
        assert (op, close_code(close)) == (OP_CLOSE, 1002)
        assert conn.closed


# -- RFC 6455 §5.2-5.7: data frames, as the app sees them ------------------------------------


class TestDataFraming:
    def test_text_and_binary_are_delivered_as_websocket_receive(self, connect):
        conn = connect()
        conn.feed(frame(OP_TEXT, "héllo"))
        conn.feed(frame(OP_BINARY, b"\x00\x01\xff"))
        conn.feed(frame(OP_TEXT, ""))
        assert conn.app.received == [text("héllo"), binary(b"\x00\x01\xff"), text("")]
        assert conn.frames() == []

    def test_messages_of_one_read_are_delivered_in_order(self, connect):
        conn = connect()
        conn.feed(b"".join(frame(OP_TEXT, str(i)) for i in range(10)))
        assert conn.app.received == [text(str(i)) for i in range(10)]

    @pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 300_000])
    def test_payload_lengths_at_the_encoding_edges(self, connect, size):
        conn = connect()
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        conn.feed(frame(OP_BINARY, payload))
        assert conn.app.received == [binary(payload)]

    def test_a_frame_split_over_many_reads_is_delivered_once_complete(self, connect):
        conn = connect()
        data = frame(OP_TEXT, "split" * 40)
        for i in range(len(data) - 1):
            conn.feed(data[i : i + 1], passes=1)
        assert conn.app.received == []
        conn.feed(data[-1:])
        assert conn.app.received == [text("split" * 40)]

    def test_fragmented_message_is_reassembled(self, connect):
        conn = connect()
        conn.feed(frame(OP_BINARY, b"ab", fin=False))
        conn.feed(frame(OP_CONT, b"", fin=False))
        assert conn.app.received == []
        conn.feed(frame(OP_CONT, b"cd", fin=True))
        assert conn.app.received == [binary(b"abcd")]

    def test_utf8_character_split_across_fragments_is_valid(self, connect):
        conn = connect()
        euro = "€".encode()
        conn.feed(frame(OP_TEXT, euro[:1], fin=False) + frame(OP_CONT, euro[1:]))
        assert conn.app.received == [text("€")]
        assert not conn.closed

    @pytest.mark.parametrize(
        "data",
        [
            frame(OP_TEXT, b"\xff"),
            frame(OP_TEXT, b"ok\xc3"),  # ends inside a character
            frame(OP_TEXT, b"\xed\xa0\x80"),  # an encoded surrogate
            frame(OP_TEXT, b"\xce\xba", fin=False) + frame(OP_CONT, b"\xe1\x80"),
        ],
    )
    def test_invalid_utf8_text_is_1007(self, connect, data):
        conn = connect()
        conn.feed(data)
        [(op, close)] = conn.frames()
        assert (op, close_code(close)) == (OP_CLOSE, 1007)
        assert conn.closed
        assert conn.app.received == [disconnect(1007, "invalid UTF-8")]

    def test_message_over_max_size_is_1009(self, connect):
        conn = connect(ws_max_size=16)
        conn.feed(frame(OP_BINARY, b"x" * 16))
        assert conn.app.received == [binary(b"x" * 16)]
        conn.feed(frame(OP_BINARY, b"x" * 17))
        [(op, close)] = conn.frames()
        assert (op, close_code(close)) == (OP_CLOSE, 1009)
        assert conn.closed
        assert conn.app.received[-1]["code"] == 1009

    def test_fragmented_message_over_max_size_is_1009(self, connect):
        conn = connect(ws_max_size=16)
        conn.feed(frame(OP_TEXT, "x" * 10, fin=False))
        conn.feed(frame(OP_CONT, "x" * 10))
        [(op, close)] = conn.frames()
        assert (op, close_code(close)) == (OP_CLOSE, 1009)
        assert conn.app.received == [disconnect(1009, "message too big")]

    @pytest.mark.parametrize(
        "data",
        [
            frame(OP_TEXT, "bare", masked=False),
            frame(OP_TEXT, "x", rsv=4),  # RSV1 without permessage-deflate
            frame(OP_TEXT, "x", rsv=1),
            frame(OP_CONT, "orphan"),
            frame(OP_TEXT, "a", fin=False) + frame(OP_TEXT, "b"),
        ],
        ids=["unmasked", "rsv1", "rsv3", "continuation-first", "data-inside-fragments"],
    )
    def test_bad_data_frame_is_protocol_error(self, connect, data):
        conn = connect()
        conn.feed(data)
        [(op, close)] = conn.frames()
        assert (op, close_code(close)) == (OP_CLOSE, 1002)
        assert conn.closed
        assert conn.app.received[-1]["type"] == "websocket.disconnect"
        assert conn.app.received[-1]["code"] == 1002

    def test_messages_before_a_bad_frame_are_delivered_and_answered_before_the_close(self, connect):
        conn = connect(App(echo=True))
        conn.feed(frame(OP_TEXT, "a") + frame(OP_TEXT, "b") + frame(OP_TEXT, "c", masked=False))
        assert conn.app.received[:2] == [text("a"), text("b")]
        assert conn.app.received[2]["code"] == 1002
        frames = conn.frames()
        assert frames[:2] == [(OP_TEXT, b"a"), (OP_TEXT, b"b")]
        assert [(op, close_code(p)) for op, p in frames[2:]] == [(OP_CLOSE, 1002)]
        assert conn.closed

    def test_app_text_and_bytes_go_out_as_one_unmasked_frame_each(self, connect):
        conn = connect(App(read=False))
        big = bytes(range(256)) * 100  # past the size that goes out as header + payload
        conn.send({"type": "websocket.send", "text": "hi"})
        conn.send({"type": "websocket.send", "bytes": b"\x00"})
        conn.send({"type": "websocket.send", "bytes": big})
        assert conn.frames() == [(OP_TEXT, b"hi"), (OP_BINARY, b"\x00"), (OP_BINARY, big)]

    def test_send_without_text_or_bytes_raises(self, connect):
        conn = connect(App(read=False))
        with pytest.raises(RuntimeError):
            conn.send({"type": "websocket.send"})
        assert conn.frames() == []


# -- RFC 6455 §7: the close handshake ---------------------------------------------------------


class TestCloseHandshake:
    def test_client_close_is_echoed_and_the_app_told(self, connect):
        conn = connect()
        conn.feed(close_frame(1000, "bye"))
        assert conn.frames() == [(OP_CLOSE, close_payload(1000, "bye"))]
        assert conn.transport.calls == ["close"]
        assert conn.app.received == [disconnect(1000, "bye")]

    @pytest.mark.parametrize("code", [1001, 1003, 1011, 1014, 3000, 4999])
    def test_client_close_code_is_echoed(self, connect, code):
        conn = connect()
        conn.feed(close_frame(code))
        assert conn.frames() == [(OP_CLOSE, close_payload(code))]
        assert conn.app.received == [disconnect(code)]

    def test_empty_client_close_gets_an_empty_close_and_the_app_1005(self, connect):
        conn = connect()
        conn.feed(close_frame(None))
        assert conn.frames() == [(OP_CLOSE, b"")]
        assert conn.closed
        assert conn.app.received == [disconnect(1005)]

    def test_frames_after_the_client_close_are_ignored(self, connect):
        conn = connect()
        conn.feed(close_frame(1000) + frame(OP_TEXT, "late") + frame(OP_PING, b"late"))
        assert conn.frames() == [(OP_CLOSE, close_payload(1000))]
        assert conn.app.received == [disconnect(1000)]

    def test_app_close_sends_a_close_frame_and_waits_for_the_peer(self, connect):
        conn = connect()
        conn.send({"type": "websocket.close", "code": 4000, "reason": "done"})
        assert conn.frames() == [(OP_CLOSE, close_payload(4000, "done"))]
        assert not conn.closed
        assert conn.app.received == []
        conn.feed(close_frame(4000, "ok"))
        assert conn.frames() == [(OP_CLOSE, close_payload(4000, "done"))], "one close frame"
        assert conn.transport.calls == ["close"]
        assert conn.app.received == [disconnect(4000, "ok")]

    def test_app_close_without_a_code_is_1000(self, connect):
        conn = connect()
        conn.send({"type": "websocket.close"})
        assert conn.frames() == [(OP_CLOSE, close_payload(1000))]

    def test_no_peer_close_within_the_close_timeout_closes_the_transport(self, connect):
        conn = connect(ws_close_timeout=0.05)
        conn.send({"type": "websocket.close"})
        assert not conn.closed
        conn.wait(0.1)
        assert conn.transport.calls == ["close"]
        assert conn.app.received == [disconnect(1006)]

    def test_close_timeout_aborts_when_the_peer_has_not_read_our_bytes(self, connect):
        conn = connect(ws_close_timeout=0.05)
        conn.send({"type": "websocket.close"})
        conn.transport.buffer_size = 4096
        conn.wait(0.1)
        assert conn.transport.calls == ["abort"]

    def test_data_after_our_close_is_not_delivered_nor_answered(self, connect):
        conn = connect()
        conn.send({"type": "websocket.close"})
        conn.feed(frame(OP_TEXT, "late") + frame(OP_BINARY, b"late") + frame(OP_PING, b"p"))
        assert conn.app.received == []
        assert conn.frames() == [(OP_CLOSE, close_payload(1000))]
        conn.feed(close_frame(1000))
        assert conn.app.received == [disconnect(1000)]

    def test_send_after_our_close_raises_client_disconnected(self, connect):
        conn = connect()
        conn.send({"type": "websocket.close"})
        with pytest.raises(ClientDisconnected):
            conn.send({"type": "websocket.send", "text": "late"})
        assert conn.frames() == [(OP_CLOSE, close_payload(1000))]

    def test_a_second_app_close_sends_nothing(self, connect):
        conn = connect()
        conn.send({"type": "websocket.close"})
        with pytest.raises(ClientDisconnected):
            conn.send({"type": "websocket.close", "code": 1001})
        assert conn.frames() == [(OP_CLOSE, close_payload(1000))]


# -- RFC 6455 §7.1.7: failing the connection on a bad close frame ----------------------------


class TestFailing:
    @pytest.mark.parametrize(
        ("payload", "code"),
        [
            (b"\x03", 1002),  # one byte: no room for a code
            (close_payload(999), 1002),
            (close_payload(1004), 1002),
            (close_payload(1005), 1002),  # may never be sent on the wire
            (close_payload(1006), 1002),
            (close_payload(1015), 1002),
            (close_payload(2999), 1002),
            (close_payload(5000), 1002),
            (close_payload(1000, b"\xff"), 1007),
            (close_payload(1000, b"ok\xe2\x82"), 1007),
        ],
        ids=["1-byte", "999", "1004", "1005", "1006", "1015", "2999", "5000", "ff", "cut"],
    )
    def test_bad_close_frame_fails_the_connection(self, connect, payload, code):
        conn = connect()
        conn.feed(frame(OP_CLOSE, payload))
        [(op, close)] = conn.frames()
        assert (op, close_code(close)) == (OP_CLOSE, code)
        assert conn.transport.calls == ["close"]
        [event] = conn.app.received
        assert (event["type"], event["code"]) == ("websocket.disconnect", code)

    def test_nothing_is_read_after_a_protocol_error(self, connect):
        conn = connect()
        conn.feed(frame(OP_PING, b"x" * 126) + frame(OP_TEXT, "after") + frame(OP_PING, b"p"))
        [(op, close)] = conn.frames()
        assert (op, close_code(close)) == (OP_CLOSE, 1002)
        assert [e["type"] for e in conn.app.received] == ["websocket.disconnect"]


# -- RFC 6455 §7.1.5 and the ASGI spec: the connection goes away -----------------------------


class TestConnectionLost:
    def test_connection_lost_without_a_close_is_1006(self, connect):
        conn = connect()
        conn.lose()
        assert conn.app.received == [disconnect(1006)]
        assert conn.frames() == []

    def test_send_after_the_disconnect_raises_an_oserror(self, connect):
        conn = connect()
        conn.lose()
        with pytest.raises(ClientDisconnected) as caught:
            conn.send({"type": "websocket.send", "text": "late"})
        assert isinstance(caught.value, OSError)
        assert conn.frames() == []

    def test_receive_after_the_disconnect_returns_it_again(self, connect):
        conn = connect(App(read=False))
        conn.lose()
        assert conn.receive() == disconnect(1006)
        assert conn.receive() == disconnect(1006)

    def test_messages_read_before_the_loss_come_first(self, connect):
        conn = connect(App(read=False))
        conn.feed(frame(OP_TEXT, "1") + frame(OP_TEXT, "2"))
        conn.lose()
        assert [conn.receive() for _ in range(3)] == [text("1"), text("2"), disconnect(1006)]

    def test_the_close_handshake_ends_with_connection_lost_once(self, connect):
        conn = connect()
        conn.feed(close_frame(1001))
        assert conn.transport.lost  # the transport's connection_lost() ran
        assert conn.app.received == [disconnect(1001)]


# -- keepalive (RFC 6455 §5.5.2-5.5.3, driven by the server's sweep) -------------------------


class TestKeepalive:
    def test_no_deadline_before_the_accept_or_without_pings(self, connect):
        conn = connect(App(None, read=False), ws_ping_interval=5.0)
        assert deadline(conn) == 0.0
        conn.send(ACCEPT_MESSAGE)
        assert 0 < deadline(conn) - conn.loop.time() <= 5.0
        assert deadline(connect()) == 0.0

    def test_expire_after_the_ping_time_writes_a_ping(self, connect):
        conn = connect(ws_ping_interval=0.2, ws_ping_timeout=1.0)
        first = deadline(conn)
        conn.expire()  # early: nothing due yet
        assert conn.frames() == []
        conn.wait_until(first)
        conn.expire()
        [(op, payload)] = conn.frames()
        assert op == OP_PING
        assert deadline(conn) > first
        assert not conn.closed

    def test_a_pong_clears_the_ping_timeout(self, connect):
        conn = connect(ws_ping_interval=0.05, ws_ping_timeout=0.02)
        conn.wait_until(deadline(conn))
        conn.expire()
        [(_, ping)] = conn.frames()
        timeout_at = deadline(conn)
        conn.feed(frame(OP_PONG, ping))
        assert deadline(conn) > timeout_at, "only the next ping is due now"
        conn.wait_until(deadline(conn))
        conn.expire()
        assert [op for op, _ in conn.frames()] == [OP_PING, OP_PING]
        assert not conn.closed
        assert conn.app.received == []

    def test_no_pong_by_the_ping_timeout_closes_with_1011(self, connect):
        conn = connect(ws_ping_interval=0.05, ws_ping_timeout=0.02)
        conn.wait_until(deadline(conn))
        conn.expire()
        conn.wait_until(deadline(conn))
        conn.expire()
        (ping_op, _), (op, close) = conn.frames()
        assert (ping_op, op, close_code(close)) == (OP_PING, OP_CLOSE, 1011)
        assert conn.transport.calls == ["close"], "the peer is not answering: no waiting"
        assert conn.app.received == [disconnect(1011, "keepalive ping timeout")]
        assert deadline(conn) == 0.0

    def test_the_pings_stop_once_closing(self, connect):
        conn = connect(ws_ping_interval=0.05)
        conn.send({"type": "websocket.close"})
        assert deadline(conn) == 0.0
        conn.wait(0.06)
        conn.expire()
        assert conn.frames() == [(OP_CLOSE, close_payload(1000))]


# -- backpressure ------------------------------------------------------------------------------


class TestBackpressure:
    def test_reading_pauses_at_max_queue_and_resumes_when_half_drained(self, connect):
        conn = connect(App(read=False), ws_max_queue=4)
        for i in range(3):
            conn.feed(frame(OP_TEXT, str(i)))
        assert conn.transport.reading
        conn.feed(frame(OP_TEXT, "3"))
        assert not conn.transport.reading
        assert conn.receive() == text("0")
        assert not conn.transport.reading
        assert conn.receive() == text("1")
        assert conn.transport.reading
        assert conn.transport.calls == ["pause_reading", "resume_reading"]
        assert [conn.receive() for _ in range(2)] == [text("2"), text("3")]

    def test_max_queue_counts_messages_of_one_read(self, connect):
        conn = connect(App(read=False), ws_max_queue=4)
        conn.feed(b"".join(frame(OP_TEXT, str(i)) for i in range(6)))
        assert not conn.transport.reading
        assert [conn.receive() for _ in range(6)] == [text(str(i)) for i in range(6)]
        assert conn.transport.reading

    def test_a_reading_app_never_pauses_reading(self, connect):
        conn = connect(ws_max_queue=2)
        for i in range(10):
            conn.feed(frame(OP_TEXT, str(i)))
        assert conn.transport.calls == []
        assert len(conn.app.received) == 10

    def test_send_while_writes_are_paused_writes_then_waits_for_resume(self, connect):
        conn = connect(App(read=False))
        conn.ws.pause_writing()
        task = conn.loop.create_task(_wait(conn.ws.send({"type": "websocket.send", "text": "x"})))
        conn.run()
        assert conn.frames() == [(OP_TEXT, b"x")], "written at once, in order"
        assert not task.done()
        conn.ws.resume_writing()
        conn.run()
        assert task.done() and task.result() is None

    def test_send_waiting_on_paused_writes_raises_when_the_connection_is_lost(self, connect):
        conn = connect(App(read=False))
        conn.ws.pause_writing()
        task = conn.loop.create_task(_wait(conn.ws.send({"type": "websocket.send", "text": "x"})))
        conn.run()
        conn.lose()
        assert task.done()
        assert isinstance(task.exception(), ClientDisconnected)


# -- RFC 6455 §4, the ASGI side: accept, deny, the app's own response -------------------------


class TestHandshake:
    def test_scope_is_the_websocket_scope(self, connect):
        conn = connect(headers=[(b"sec-websocket-protocol", b"chat, superchat")])
        scope = conn.app.scope
        assert (scope["type"], scope["scheme"], scope["path"]) == ("websocket", "ws", "/chat")
        assert scope["query_string"] == b"room=1"
        assert scope["subprotocols"] == ["chat", "superchat"]
        assert scope["client"] == ("127.0.0.1", 40000)
        assert "websocket.http.response" in scope["extensions"]

    def test_accept_writes_the_101(self, connect):
        conn = connect()
        status, headers, rest = parse_head(conn.transport.written)
        assert status == b"HTTP/1.1 101 Switching Protocols"
        assert headers[b"upgrade"].lower() == b"websocket"
        assert headers[b"connection"].lower() == b"upgrade"
        assert headers[b"sec-websocket-accept"] == ACCEPT
        assert b"sec-websocket-protocol" not in headers
        assert rest == b""
        assert conn.app.events == [{"type": "websocket.connect"}]
        assert not conn.closed

    def test_accept_with_subprotocol_and_headers(self, connect):
        accept = {
            "type": "websocket.accept",
            "subprotocol": "superchat",
            "headers": [(b"x-room", b"1")],
        }
        conn = connect(
            App([accept]),
            headers=[(b"sec-websocket-protocol", b"chat, superchat")],
        )
        _, headers, _ = parse_head(conn.transport.written)
        assert headers[b"sec-websocket-protocol"] == b"superchat"
        assert headers[b"x-room"] == b"1"

    def test_close_before_accept_is_403(self, connect):
        conn = connect(App([{"type": "websocket.close"}], read=False))
        status, _, _ = parse_head(conn.transport.written)
        assert status.startswith(b"HTTP/1.1 403")
        assert conn.transport.calls == ["close"]

    def test_http_response_extension_sends_that_response(self, connect):
        start = {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain")],
        }
        body1 = {"type": "websocket.http.response.body", "body": b"not ", "more_body": True}
        body2 = {"type": "websocket.http.response.body", "body": b"allowed"}
        conn = connect(App([start, body1], read=False))
        status, headers, body = parse_head(conn.transport.written)
        assert status.startswith(b"HTTP/1.1 401")
        assert headers[b"content-type"] == b"text/plain"
        assert headers[b"connection"] == b"close"
        assert body == b"not "
        assert not conn.closed
        conn.send(body2)
        assert parse_head(conn.transport.written)[2] == b"not allowed"
        assert conn.transport.calls == ["close"]

    def test_frames_sent_with_the_upgrade_are_processed_only_after_accept(self, connect):
        conn = connect(App(None), rest=frame(OP_PING, b"early") + frame(OP_TEXT, "1"))
        conn.feed(frame(OP_TEXT, "2"))  # before the accept too
        assert conn.transport.written == b""
        assert conn.app.events == [{"type": "websocket.connect"}]
        conn.send(ACCEPT_MESSAGE)
        status, _, _ = parse_head(conn.transport.written)
        assert status == b"HTTP/1.1 101 Switching Protocols", "nothing goes out before the 101"
        assert conn.frames() == [(OP_PONG, b"early")]
        assert conn.app.received == [text("1"), text("2")]

    def test_early_close_frame_is_answered_after_accept(self, connect):
        conn = connect(App(None), rest=close_frame(1001))
        assert conn.transport.written == b""
        conn.send(ACCEPT_MESSAGE)
        assert conn.frames() == [(OP_CLOSE, close_payload(1001))]
        assert conn.app.received == [disconnect(1001)]
        assert conn.closed

    def test_send_before_accept_raises(self, connect):
        conn = connect(App(None, read=False))
        with pytest.raises(RuntimeError):
            conn.send({"type": "websocket.send", "text": "too soon"})
        assert conn.transport.written == b""

    def test_app_returning_without_handshake_is_500(self, connect):
        async def app(scope, receive, send):
            await receive()

        conn = connect(app)
        status, _, _ = parse_head(conn.transport.written)
        assert status.startswith(b"HTTP/1.1 500")
        assert conn.transport.calls == ["close"]

    def test_app_error_before_accept_is_500(self, connect):
        async def app(scope, receive, send):
            raise ValueError("app bug")

        conn = connect(app)
        assert parse_head(conn.transport.written)[0].startswith(b"HTTP/1.1 500")
        assert conn.closed

    def test_app_error_after_accept_closes_with_1011(self, connect):
        async def app(scope, receive, send):
            await receive()
            await send(ACCEPT_MESSAGE)
            await receive()
            raise ValueError("app bug")

        conn = connect(app)
        conn.feed(frame(OP_TEXT, "boom"))
        [(op, close)] = conn.frames()
        assert (op, close_code(close)) == (OP_CLOSE, 1011)
        assert conn.transport.calls == ["close"]

    def test_app_returning_after_accept_closes_with_1000(self, connect):
        async def app(scope, receive, send):
            await receive()
            await send(ACCEPT_MESSAGE)

        conn = connect(app)
        assert conn.frames() == [(OP_CLOSE, close_payload(1000))]
        assert conn.transport.calls == ["close"]


# -- server shutdown --------------------------------------------------------------------------


class TestShutdown:
    def test_shutdown_of_an_open_connection_closes_with_1012(self, connect):
        conn = connect()
        conn.ws.shutdown()
        conn.run()
        [(op, close)] = conn.frames()
        assert (op, close_code(close)) == (OP_CLOSE, 1012)
        assert not conn.closed, "it waits for the peer's close"
        conn.feed(close_frame(1012))
        assert conn.transport.calls == ["close"]
        assert conn.app.received == [disconnect(1012)]

    def test_shutdown_before_accept_drops_the_connection(self, connect):
        conn = connect(App(None, read=False))
        conn.ws.shutdown()
        conn.run()
        assert conn.transport.written == b""
        assert conn.transport.calls == ["close"]

    def test_shutdown_while_closing_sends_nothing_more(self, connect):
        conn = connect()
        conn.send({"type": "websocket.close"})
        conn.ws.shutdown()
        assert conn.frames() == [(OP_CLOSE, close_payload(1000))]


# -- pub/sub corking (fastws.ws.pubsub) --------------------------------------------------------


def hub_for(protocol: ModuleType) -> Any:
    """A Hub of the same build as ``protocol`` (the compiled hub types its subscribers as the
    compiled connection)."""
    if protocol.COMPILED:
        from fastws.ws.pubsub import Hub

        return Hub()
    import importlib.util
    import os
    from pathlib import Path

    source = Path(protocol.__file__).with_name("pubsub.py")
    spec = importlib.util.spec_from_file_location("fastws.ws._pubsub_source", source)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    saved = os.environ.pop("FASTWS_REQUIRE_EXTENSIONS", None)
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is not None:
            os.environ["FASTWS_REQUIRE_EXTENSIONS"] = saved
    return module.Hub()


class TestCorking:
    def subscribed(
        self, protocol: ModuleType, connect: Callable[..., Conn], n: int
    ) -> tuple[Any, list[Conn]]:
        conns = [connect() for _ in range(n)]
        hub = hub_for(protocol)
        for conn in conns:
            conn.ws.server_state.hub = hub
            hub.subscribe(conn.ws, "room")
            conn.transport.writes.clear()
        return hub, conns

    def test_what_one_pass_publishes_goes_out_in_one_write(self, protocol, connect):
        hub, conns = self.subscribed(protocol, connect, 3)
        loop = conns[0].loop

        def publish_three() -> None:
            for i in range(3):
                assert hub.publish("room", f"m{i}") == 3

        loop.call_soon(publish_three)
        conns[0].run()
        for conn in conns:
            assert len(conn.transport.writes) == 1, conn.transport.writes
            assert conn.frames() == [(0x1, b"m0"), (0x1, b"m1"), (0x1, b"m2")]

    def test_a_send_after_publishes_in_the_same_pass_comes_after_them(self, protocol, connect):
        hub, conns = self.subscribed(protocol, connect, 1)
        conn = conns[0]

        async def publish_then_send() -> None:
            hub.publish("room", "published")
            await conn.ws.send({"type": "websocket.send", "text": "sent"})

        conn.loop.run_until_complete(publish_then_send())
        conn.run()
        assert conn.frames() == [(0x1, b"published"), (0x1, b"sent")]

    def test_a_close_frame_comes_after_the_corked_frames(self, protocol, connect):
        hub, conns = self.subscribed(protocol, connect, 1)
        conn = conns[0]

        async def publish_then_close() -> None:
            hub.publish("room", "last words")
            await conn.ws.send({"type": "websocket.close", "code": 1000})

        conn.loop.run_until_complete(publish_then_close())
        conn.run()
        assert [op for op, _ in conn.frames()] == [0x1, 0x8]

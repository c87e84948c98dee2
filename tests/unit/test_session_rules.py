"""fastws.ws.session on its own: the RFC 6455 session rules as plain values in, bytes out.

No transport, no loop, no app: each test builds a Session from plain values, tells it what
happened and checks the bytes it returns (read by a small reader written from RFC 6455 §5.2
here, not fastws's codec) and the state it is left in. Grouped by RFC section, on both builds
(session.py as plain Python, and its compiled module). tests/unit/test_session.py checks the
same rules through the connection that extends the session.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import struct
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fastws.ws import deflate

pytestmark = pytest.mark.timeout(10)

SOURCE = Path(__file__).resolve().parents[2] / "fastws" / "ws" / "session.py"


def _pure_session() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastws.ws._session_source", SOURCE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["python", "cython"], scope="module")
def session(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "python":
        return _pure_session()
    module = importlib.import_module("fastws.ws.session")
    if not str(module.__file__).endswith((".so", ".pyd")):
        if os.environ.get("FASTWS_REQUIRE_EXTENSIONS", "") not in ("", "0"):
            pytest.fail("fastws.ws.session is not compiled (FASTWS_REQUIRE_EXTENSIONS)")
        pytest.skip("fastws.ws.session not compiled here (make build)")
    return module


def new(session: ModuleType, **values: Any) -> Any:
    values.setdefault("max_size", 1 << 20)
    values.setdefault("ping_interval", None)
    values.setdefault("ping_timeout", None)
    values.setdefault("close_timeout", 10.0)
    return session.Session(**values)


def frame_of(data: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of one unmasked server frame with FIN set, the whole of ``data``."""
    b0, b1 = data[0], data[1]
    assert b0 & 0x80, "FIN"
    assert not b1 & 0x80, "a server frame is not masked"
    n, pos = b1 & 0x7F, 2
    if n == 126:
        (n,) = struct.unpack("!H", data[2:4])
        pos = 4
    elif n == 127:
        (n,) = struct.unpack("!Q", data[2:10])
        pos = 10
    assert len(data) == pos + n, "one frame, exactly"
    return b0 & 0x0F, data[pos:]


def close_of(data: bytes) -> tuple[int, str]:
    opcode, payload = frame_of(data)
    assert opcode == 0x8
    (code,) = struct.unpack("!H", payload[:2])
    return code, payload[2:].decode("utf-8")


# --------------------------------------------------------------------------------------------
# §5.5 control frames
# --------------------------------------------------------------------------------------------


class TestControlFrames:
    @pytest.mark.parametrize("payload", [b"", b"x", b"12345", b"p" * 125])
    def test_ping_is_answered_with_a_pong_of_the_same_payload(self, session, payload):
        s = new(session)
        s.opened(0.0)
        assert frame_of(s.ping(payload, False)) == (0xA, payload)

    def test_no_pong_after_our_close_frame(self, session):
        s = new(session)
        s.opened(0.0)
        s.close(1000, "")
        assert s.ping(b"late", False) is None
        assert s.pong_pending is None

    def test_while_writes_are_paused_only_the_latest_ping_is_kept(self, session):
        s = new(session)
        s.opened(0.0)
        assert s.ping(b"first", True) is None
        assert s.ping(b"second", True) is None
        assert s.pong_pending == b"second"
        assert frame_of(s.writable()) == (0xA, b"second")
        assert s.pong_pending is None
        assert s.writable() is None

    def test_a_held_pong_is_dropped_once_we_closed(self, session):
        s = new(session)
        s.opened(0.0)
        s.ping(b"held", True)
        s.close(1001, "")
        assert s.writable() is None

    def test_unsolicited_pong_changes_nothing(self, session):
        s = new(session, ping_interval=5.0, ping_timeout=2.0)
        s.opened(100.0)
        assert s.pong(101.0) == -1.0  # no keepalive ping waits for it: no round trip
        assert (s.deadline, s.ping_at, s.pong_by) == (105.0, 105.0, 0.0)

    def test_pong_gives_the_keepalive_round_trip(self, session):
        s = new(session, ping_interval=5.0, ping_timeout=2.0)
        s.opened(100.0)
        assert frame_of(s.keepalive(105.0))[0] == 0x9
        assert s.pong(105.25) == pytest.approx(0.25)
        assert s.pong(105.5) == -1.0  # answered already
        # Timed from the oldest unanswered ping when a second goes out before the pong.
        s.keepalive(110.0)
        s.keepalive(111.0)  # not due yet: no ping, the first one still times the trip
        assert s.pong(110.5) == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------
# §7 the closing handshake
# --------------------------------------------------------------------------------------------


class TestClosingHandshake:
    def test_our_close_sends_one_frame_and_waits(self, session):
        s = new(session, ping_interval=5.0, close_timeout=3.5)
        s.opened(0.0)
        assert close_of(s.close(1000, "bye")) == (1000, "bye")
        assert (s.state, s.close_sent, s.close_code) == (session.CLOSING, True, 1000)
        assert s.deadline == 0.0  # no keepalive while closing
        assert s.close_timeout == 3.5  # how long the shell waits for the reply
        assert s.close(1001, "again") is None
        assert s.close_code == 1000

    def test_the_peers_reply_to_our_close_ends_the_session_without_another_frame(self, session):
        s = new(session)
        s.opened(0.0)
        s.close(1000, "")
        assert s.closed(1000, "") is None
        assert s.state == session.CLOSED

    def test_the_peers_close_is_echoed_with_its_code(self, session):
        s = new(session)
        s.opened(0.0)
        assert close_of(s.closed(4000, "done")) == (4000, "done")
        assert s.state == session.CLOSED
        assert s.close_code is None  # the peer closed first


# --------------------------------------------------------------------------------------------
# §7.1.7 failing the connection
# --------------------------------------------------------------------------------------------


class TestFailing:
    @pytest.mark.parametrize("code", [1002, 1007, 1009, 1011])
    def test_failing_sends_the_code_once_and_ends(self, session, code):
        s = new(session)
        s.opened(0.0)
        s.pending_fail = (code, "why")
        assert close_of(s.fail(code, "why")) == (code, "why")
        assert (s.state, s.close_code, s.pending_fail) == (session.CLOSED, code, None)
        assert s.fail(1002, "again") is None
        assert s.close_code == code

    def test_failing_after_our_close_keeps_our_code(self, session):
        s = new(session)
        s.opened(0.0)
        s.close(1000, "")
        assert s.fail(1002, "late error") is None
        assert (s.state, s.close_code) == (session.CLOSED, 1000)


# --------------------------------------------------------------------------------------------
# keepalive
# --------------------------------------------------------------------------------------------


class TestKeepalive:
    def test_no_interval_means_no_deadline(self, session):
        s = new(session)
        s.opened(100.0)
        assert s.deadline == 0.0
        assert s.keepalive(1e9) is None

    def test_ping_then_pong_then_ping(self, session):
        s = new(session, ping_interval=5.0, ping_timeout=2.0)
        s.opened(100.0)
        assert s.deadline == 105.0
        assert s.keepalive(104.0) is None  # not due yet
        opcode, payload = frame_of(s.keepalive(105.0))
        assert (opcode, len(payload)) == (0x9, 4)
        assert (s.ping_at, s.pong_by, s.deadline) == (110.0, 107.0, 107.0)
        s.pong()
        assert (s.pong_by, s.deadline) == (0.0, 110.0)
        assert frame_of(s.keepalive(110.0))[0] == 0x9
        assert s.deadline == 112.0

    def test_a_ping_unanswered_for_the_timeout_fails_with_1011_at_once(self, session):
        s = new(session, ping_interval=5.0, ping_timeout=2.0)
        s.opened(0.0)
        s.keepalive(5.0)
        frame = s.keepalive(7.0)
        assert close_of(frame) == (1011, "keepalive ping timeout")
        assert (s.state, s.close_code, s.deadline) == (session.CLOSED, 1011, 0.0)

    def test_without_a_timeout_pings_go_on(self, session):
        s = new(session, ping_interval=1.0)
        s.opened(0.0)
        for now in (1.0, 2.0, 3.0):
            assert frame_of(s.keepalive(now))[0] == 0x9
        assert s.pong_by == 0.0 and s.state == session.OPEN

    def test_keepalive_stops_once_closing(self, session):
        s = new(session, ping_interval=1.0, ping_timeout=1.0)
        s.opened(0.0)
        s.close(1000, "")
        assert s.keepalive(5.0) is None
        assert s.deadline == 0.0 and s.state == session.CLOSING


# --------------------------------------------------------------------------------------------
# RFC 7692 permessage-deflate limits
# --------------------------------------------------------------------------------------------


def compressed(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


class TestDeflate:
    @pytest.fixture
    def agreement(self) -> deflate.Agreement:
        agreement = deflate.negotiate(["permessage-deflate"])
        assert agreement is not None
        return agreement

    def test_text_and_binary_are_inflated(self, session, agreement):
        s = new(session, agreement=agreement)
        assert s.inflate(0x1, compressed("héllo".encode())) == "héllo"
        assert s.inflate(0x2, compressed(b"\x00\xff" * 100)) == b"\x00\xff" * 100

    @pytest.mark.parametrize(
        "opcode, payload, code, reason",
        [
            (0x2, b"\xff\xff\xff\xff", 1007, "invalid compressed data"),
            (0x1, None, 1007, "invalid UTF-8"),
            (0x2, "big", 1009, "message too big"),
        ],
    )
    def test_what_cannot_be_inflated_names_its_close_code(
        self, session, agreement, opcode, payload, code, reason
    ):
        s = new(session, agreement=agreement, max_size=1000)
        if payload is None:
            payload = compressed(b"\xc3\x28")
        elif payload == "big":
            payload = compressed(bytes(5000))
        assert s.inflate(opcode, payload) is None
        assert (s.fail_code, s.fail_reason) == (code, reason)

    def test_messages_under_the_minimum_go_out_uncompressed(self, session, agreement):
        s = new(session, agreement=agreement, deflate_min_size=128)
        assert not s.compresses(127) and s.compresses(128)
        assert not new(session).compresses(10_000)  # nothing negotiated

    def test_a_compressed_frame_has_rsv1_and_inflates_back(self, session, agreement):
        s = new(session, agreement=agreement)
        data = "abc" * 200
        out = s.compressed_frame(0x1, data)
        assert out[0] == 0x80 | 0x40 | 0x1  # FIN, RSV1, text
        _, payload = frame_of(bytes([out[0] & ~0x40]) + out[1:])
        assert (
            zlib.decompressobj(wbits=-15).decompress(payload + b"\x00\x00\xff\xff") == data.encode()
        )

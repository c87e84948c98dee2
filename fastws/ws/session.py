# cython: annotation_typing=False
"""The RFC 6455 server session: what each event means for the connection, and what to write.

Holds RFC 6455 session state; knows nothing of sockets, asyncio or ASGI. Built from plain
values (max message size, keepalive interval and timeout, close timeout, the permessage-deflate
agreement), it takes what happened (a control frame from the peer, a protocol error, the app's
close, the clock) and returns the bytes to write, or None. The shell (fastws.ws.protocol) writes
them, drops the TCP connection once ``state`` is CLOSED, and arms the one timer the session
asks for (``close_timeout`` after our close frame).

The rules, by RFC 6455 section: §5.5.2-3 a ping gets a pong with its payload, and while our
writes are paused only the latest one is kept; §5.5.1 nothing after our close frame; §7.1.2
the peer's close is answered with its code; §7.1.7 failing sends the error's code once; and
the keepalive (a ping every ``ping_interval``, failing with 1011 when one goes unanswered for
``ping_timeout``). Frame-level rules (masking, lengths, UTF-8, close codes) are the codec's
FrameReader; RFC 7692 decompression limits are here.

Compiled like fastws.ws.protocol (session.pxd); the connection class there subclasses this one,
so that a connection stays a single C struct.
"""

from __future__ import annotations

import os

from fastws.ws import deflate
from fastws.ws.frames import CloseCode, Opcode, encode_close, encode_frame

# Connection states.
CONNECTING, RESPONDING, OPEN, CLOSING, CLOSED = range(5)

_TEXT = int(Opcode.TEXT)
_PING = int(Opcode.PING)
_PONG = int(Opcode.PONG)


class Session:
    """One server-side WebSocket session's state and rules (see the module docstring)."""

    __slots__ = (
        "state",
        "close_sent",
        "close_code",
        "pending_fail",
        "fail_code",
        "fail_reason",
        "pong_pending",
        "deflate",
        "max_size",
        "deflate_min_size",
        "ping_interval",
        "ping_timeout",
        "close_timeout",
        "deadline",
        "ping_at",
        "pong_by",
        "ping_sent",
    )

    def __init__(
        self,
        *,
        max_size: int,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
        agreement: deflate.Agreement | None = None,
        deflate_min_size: int = 0,
    ) -> None:
        self.state = CONNECTING
        self.close_sent = False
        self.close_code: int | None = None  # the code of the first close frame we sent
        # A protocol error found after messages the app has not read yet: (code, reason),
        # for the shell to fail with once they are read (or after its grace period).
        self.pending_fail: tuple[int, str] | None = None
        # Why the last inflate() failed (code, reason), for the fail() that follows.
        self.fail_code = 0
        self.fail_reason = ""
        # A ping answered while our writes are paused: only the latest needs a pong (§5.5.3).
        self.pong_pending: bytes | None = None
        self.deflate = deflate.PerMessageDeflate(agreement) if agreement else None
        self.max_size = max_size
        self.deflate_min_size = deflate_min_size
        self.ping_interval = ping_interval or 0.0
        self.ping_timeout = ping_timeout or 0.0
        self.close_timeout = close_timeout
        # Keepalive, on the caller's clock (0.0: not due). No timer of its own: the server's
        # sweep calls the shell's expire() once `deadline`, the earlier of the two, has passed.
        self.deadline = 0.0
        self.ping_at = 0.0  # when the next ping goes out
        self.pong_by = 0.0  # when an unanswered ping fails the connection
        self.ping_sent = 0.0  # when the keepalive ping awaiting its pong went out; 0.0: none

    # -- opening ----------------------------------------------------------------------------

    def opened(self, now: float) -> None:
        """The handshake response went out: the session is open from ``now``."""
        self.state = OPEN
        if self.ping_interval:
            self.ping_at = now + self.ping_interval
            self._set_deadline()

    # -- control frames from the peer (§5.5) -----------------------------------------------

    def ping(self, payload: bytes, write_paused: bool) -> bytes | None:
        """The pong to write now for the peer's ping, or None: after our close frame nothing
        answers it; while our writes are paused it is kept in ``pong_pending`` (the latest
        ping only, §5.5.3) for writable(), and the shell stops reading pings meanwhile."""
        if self.close_sent:
            return None
        if write_paused:
            self.pong_pending = payload
            return None
        return encode_frame(_PONG, payload)

    def pong(self, now: float = 0.0) -> float:
        """The peer's pong at ``now``: the keepalive ping was answered. Returns the ping's
        round-trip time, or -1.0 when no keepalive ping was waiting for it (an unsolicited
        pong, RFC 6455 §5.5.3) or ``now`` is not given."""
        rtt = -1.0
        if self.ping_sent and now:
            rtt = now - self.ping_sent
        self.ping_sent = 0.0
        if self.pong_by:
            self.pong_by = 0.0
            self._set_deadline()
        return rtt

    def writable(self) -> bytes | None:
        """Our writes may go on: the held pong to write, if there is one and no close went out."""
        pong, self.pong_pending = self.pong_pending, None
        if pong is None or self.close_sent:
            return None
        return encode_frame(_PONG, pong)

    # -- closing (§7) ----------------------------------------------------------------------

    def close(self, code: int, reason: str) -> bytes | None:
        """Start the closing handshake (the app's close, a server shutdown, a budget): our
        close frame, or None if one went out already. The shell then waits up to
        ``close_timeout`` for the peer's reply (§7.1.1)."""
        if self.close_sent:
            return None
        self.close_sent = True
        self.close_code = code
        self.state = CLOSING
        self.cancel_keepalive()
        return encode_close(code, reason)

    def closed(self, code: int, reason: str) -> bytes | None:
        """The peer's close frame arrived (§7.1.2), or the session ends now: our close frame
        with the same code unless one went out already; the session is CLOSED and the shell
        drops the TCP connection."""
        frame = None
        if not self.close_sent:
            self.close_sent = True
            frame = encode_close(code, reason)
        self.state = CLOSED
        return frame

    def fail(self, code: int, reason: str) -> bytes | None:
        """Fail the connection (§7.1.7): a close frame with ``code`` unless one went out
        already; the session is CLOSED."""
        self.pending_fail = None
        if not self.close_sent:
            self.close_code = code
        return self.closed(code, reason)

    # -- data (RFC 7692) -------------------------------------------------------------------

    def inflate(self, opcode: int, payload: bytes) -> object:
        """A compressed message's data: str for text, bytes for binary; None when it cannot be
        had (too big, bad deflate data, bad UTF-8), ``fail_code`` and ``fail_reason`` then say
        which, for fail()."""
        assert self.deflate is not None  # the reader flags compression only when negotiated
        try:
            data = self.deflate.decompress(payload, self.max_size)
        except deflate.MessageTooBig:
            return self._failed(CloseCode.MESSAGE_TOO_BIG, "message too big")
        except deflate.InvalidCompressedData:
            return self._failed(CloseCode.INVALID_DATA, "invalid compressed data")
        if opcode == _TEXT:
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return self._failed(CloseCode.INVALID_DATA, "invalid UTF-8")
        return data

    def _failed(self, code: int, reason: str) -> None:
        self.fail_code = code
        self.fail_reason = reason
        return None

    def compresses(self, size: int) -> bool:
        """Whether a message of ``size`` bytes goes out compressed."""
        return self.deflate is not None and size >= self.deflate_min_size

    def compressed_frame(self, opcode: int, data: object) -> bytes:
        """A data frame with ``data`` compressed (RSV1 set, RFC 7692 §6)."""
        assert self.deflate is not None
        if opcode == _TEXT:
            data = data.encode("utf-8")  # type: ignore[attr-defined]
        return encode_frame(opcode, self.deflate.compress(data), rsv1=True)

    # -- keepalive -------------------------------------------------------------------------

    def keepalive(self, now: float, clock: float = 0.0) -> bytes | None:
        """The clock says ``now`` and ``deadline`` has passed: the ping to write, or None.
        ``clock``: the finer clock pong() gets, from which the ping's round trip is timed
        (``now`` when not given).
        A ping unanswered for ``ping_timeout`` fails the session instead: the 1011 close frame
        is returned and the session is CLOSED at once (the peer is not answering, so there
        is no reply to wait for)."""
        if self.state != OPEN:
            self.cancel_keepalive()
            return None
        if self.pong_by and now >= self.pong_by:
            frame = self.close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            self.state = CLOSED
            return frame
        frame = None
        if self.ping_at and self.ping_interval and now >= self.ping_at:
            frame = encode_frame(_PING, os.urandom(4))
            self.ping_at = now + self.ping_interval
            if not self.ping_sent:  # the round trip is timed from the oldest unanswered ping
                self.ping_sent = clock or now
            if self.ping_timeout and not self.pong_by:
                self.pong_by = now + self.ping_timeout
        self._set_deadline()
        return frame

    def cancel_keepalive(self) -> None:
        self.deadline = self.ping_at = self.pong_by = self.ping_sent = 0.0

    def _set_deadline(self) -> None:
        ping_at, pong_by = self.ping_at, self.pong_by
        self.deadline = min(ping_at, pong_by) if ping_at and pong_by else ping_at or pong_by

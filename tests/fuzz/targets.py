"""Fuzz targets: each takes one input (bytes) and raises ``Violation`` (or any other exception)
when fastws misbehaves on it. They run under atheris/libFuzzer (run_fuzzer.py), under the
bounded session of the test suite (test_fuzz_session.py), and replay saved inputs in-process.

``frames``     the FrameReader of both codec implementations fed the same byte stream, cut at the
               same points, through ``feed()`` or ``get_buffer()/buffer_updated()``, with
               ``asgi`` off/on and RSV1 (permessage-deflate) off/on; compressed messages go through
               ``PerMessageDeflate.decompress`` with a size limit. Invariants: the two readers
               agree on every call (messages, types, close_code, close_reason, pending,
               data_only); errors are 1002/1007/1009 only; nothing over max_size is returned or
               held; a failing call never reports ``data_only``; nothing comes after a close or
               an error; any cut gives the messages of a single feed.
``http``       fastws.http.protocol.HttpProtocol driven through an in-memory transport (the real
               asyncio call order: get_buffer, buffer_updated, set_protocol on upgrade,
               eof_received, connection_lost) with an echo app. Invariants: every response is
               101/200 or 400/414/426/431 (and 100 Continue); after a 101 the server's frames are
               valid, its close code is the one an independent reader of the client's bytes
               predicts (1002/1007/1009, or the client's own), the app receives exactly the
               messages before the error and then that code (1006 when the client just went
               away), every ping gets its pong; reading is never left paused while the app waits;
               no write after write_eof; when the connection is gone every task and connection
               is released.
``handshake``  fastws.ws.handshake.validate_request with arbitrary method, version and headers,
               plus deflate.negotiate and the Origin check. Invariants: an Offer has a valid
               16-byte key, a Rejection is 400 or 426, both responses serialize, negotiate never
               raises and is idempotent on its own response.
``response_headers``  app-supplied header names and values from the fuzzer on the three paths
               that write them (http.response.start, websocket.accept, the denial response).
               Invariants: a refused header means a RuntimeError in the app and a whole 500
               with the server's headers only; otherwise every app header is on the wire
               unchanged and no header line is there that the app did not ask for.

Inputs are plain bytes read front to back by ``Input``: a few option bytes, then the stream
(raw, or frame/request "specs" turned into bytes by the builders here, which reach deep states
far sooner than raw mutation of masked frames can).
"""

from __future__ import annotations

import asyncio
import base64
import os
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import httptools

from fastws import _speedups_py as pure
from fastws.ws import deflate, handshake
from fastws.ws import origins as origin_policy

try:
    from fastws import _speedups as compiled
except ImportError:  # pragma: no cover - exercised by the pure-Python wheel only
    if os.environ.get("FASTWS_REQUIRE_EXTENSIONS", "") not in ("", "0"):
        raise
    compiled = None  # type: ignore[assignment]

IMPLEMENTATIONS = [m for m in (pure, compiled) if m is not None]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
FLAG_COMPRESSED = 0x40
ERROR_CODES = (1002, 1007, 1009)
HTTP_STATUSES = (100, 101, 200, 400, 414, 426, 431, 505)
MAX_STREAM = 1 << 16  # bytes a builder produces at most from one input
# Known fastws bugs to step over in exploratory runs (comma-separated names, see the checks
# that read it); never set by the test suite or `make fuzz`, so those fail while a bug is open.
TOLERATE = set(filter(None, os.environ.get("FASTWS_FUZZ_TOLERATE", "").split(",")))


class Violation(AssertionError):
    """An invariant of the target does not hold for this input."""


class EarlyFrames(Violation):
    """The server wrote something other than an HTTP response where one was due."""


def check(condition: object, message: str, *details: object) -> None:
    if not condition:
        raise Violation(message + ("" if not details else ": " + repr(details)[:2000]))


class Input:
    """Reads an input front to back; reads past the end give zeros / empty bytes."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n).ljust(n, b"\x00"), "big")

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        return self.take(self.remaining)


def xor(data: bytes, key: bytes) -> bytes:
    """RFC 6455 §5.3 masking, written here so that the builders share no code with fastws."""
    if not data:
        return b""
    stream = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


# ---------------------------------------------------------------------------------------------
# frame builder
# ---------------------------------------------------------------------------------------------

# Low nibble of a spec's first byte -> opcode: the six real ones twice, then reserved ones.
_OPCODES = (0, 1, 2, 8, 9, 10, 0, 1, 2, 8, 9, 10, 3, 7, 11, 15)
# Declared lengths for lying headers: top bit set, 2^63-1, >4 GiB, boundaries.
_LIES = (2**63 - 1, 2**63, 2**64 - 1, 2**32 + 1, 2**31, 1 << 24, 65536, 65535, 126, 125, 0)


def build_frames(inp: Input, *, masked: bool, compress: bool) -> bytes:
    """Frames from specs: [b0][ctl][len][payload][key] ... until the input ends.

    b0: FIN/RSV bits as given, opcode from _OPCODES[b0 & 15]. ctl: bits 0-1 length encoding
    (0-1 shortest, 2 longer than needed, 3 a lie from _LIES or off by a little), bit 2+3 the
    wrong mask bit, bit 4 deflate the payload (client context kept unless bit 5), bit 6 a 2-byte
    length, bit 7 turn the payload into valid UTF-8.
    """
    out = bytearray()
    wbits = 9 + inp.byte() % 7 if compress else 15
    compressor: Any = None
    while inp.remaining and len(out) < MAX_STREAM:
        b0 = inp.byte()
        ctl = inp.byte()
        first = (b0 & 0xF0) | _OPCODES[b0 & 15]
        n = inp.uint(2) % 4096 if ctl & 0x40 else inp.byte()
        payload = inp.take(n)
        if ctl & 0x80:
            payload = payload.decode("latin-1").encode("utf-8")
        if compress and ctl & 0x10:
            if compressor is None or ctl & 0x20:
                compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
            payload = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
            if payload.endswith(b"\x00\x00\xff\xff"):
                payload = payload[:-4]
        declared = len(payload)
        encoding = ctl & 3
        if encoding == 3:
            pick = inp.byte()
            if pick < 128:
                declared = _LIES[pick % len(_LIES)]
            else:
                declared = max(0, declared + (pick & 63) - 32)
        frame_masked = masked != ((ctl & 0x0C) == 0x0C)
        mbit = 0x80 if frame_masked else 0
        if encoding == 2:
            wide = declared > 0xFFFF or inp.byte() & 1
            head = (
                bytes([first, mbit | 127]) + declared.to_bytes(8, "big")
                if wide
                else bytes([first, mbit | 126]) + declared.to_bytes(2, "big")
            )
        elif declared < 126:
            head = bytes([first, mbit | declared])
        elif declared <= 0xFFFF:
            head = bytes([first, mbit | 126]) + declared.to_bytes(2, "big")
        else:
            head = bytes([first, mbit | 127]) + declared.to_bytes(8, "big")
        out += head
        if frame_masked:
            key = inp.take(4).ljust(4, b"\x00")
            out += key + xor(payload, key)
        else:
            out += payload
    return bytes(out)


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """A well-formed masked client frame (for seeds)."""
    key = b"\x12\x34\x56\x78"
    n = len(payload)
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n <= 0xFFFF:
        head = bytes([first, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + key + xor(payload, key)


def client_deflate(data: bytes, wbits: int = 12) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    return (c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


# ---------------------------------------------------------------------------------------------
# frames: the two readers side by side
# ---------------------------------------------------------------------------------------------


def _norm(messages: list[Any]) -> list[Any]:
    """Messages with their types spelled out (b"a" == bytearray(b"a"), but not for us)."""
    out = []
    for m in messages:
        if type(m) is dict:
            out.append(("dict", sorted((k, type(v).__name__, v) for k, v in m.items())))
        else:
            check(type(m) is tuple and len(m) == 2, "message is not an (opcode, payload) tuple", m)
            op, payload = m
            out.append(("tuple", type(op).__name__, op, type(payload).__name__, payload))
    return out


def _check_messages(
    messages: list[Any], *, asgi: bool, rsv1: bool, max_size: int, expect_mask: bool
) -> None:
    for m in messages:
        if type(m) is dict:
            check(asgi, "ASGI event from a reader with asgi=False", m)
            check(m.get("type") == "websocket.receive", "bad event type", m)
            keys = set(m) - {"type"}
            check(keys in ({"text"}, {"bytes"}), "event must carry text or bytes", m)
            value = m.get("text", m.get("bytes"))
            check(type(value) is (str if "text" in m else bytes), "payload type", m)
            size = len(value.encode("utf-8", "surrogatepass")) if "text" in m else len(value)
            check(max_size <= 0 or size <= max_size, "message over max_size", size, max_size)
            continue
        op, payload = m
        if op == OP_TEXT:
            check(not asgi, "plain text tuple in asgi mode", m)
            check(type(payload) is str, "text payload is not str", m)
            size = len(payload.encode("utf-8"))
            check(max_size <= 0 or size <= max_size, "text over max_size", size, max_size)
        elif op == OP_BINARY:
            check(not asgi, "plain binary tuple in asgi mode", m)
            check(type(payload) is bytes, "binary payload is not bytes", m)
            check(max_size <= 0 or len(payload) <= max_size, "binary over max_size")
        elif op in (OP_TEXT | FLAG_COMPRESSED, OP_BINARY | FLAG_COMPRESSED):
            check(rsv1, "compressed message without rsv1_allowed", m)
            check(type(payload) is bytes, "compressed payload is not bytes", m)
            check(max_size <= 0 or len(payload) <= max_size, "compressed over max_size")
        elif op in (OP_PING, OP_PONG):
            check(type(payload) is bytes and len(payload) <= 125, "bad control payload", m)
        elif op == OP_CLOSE:
            check(type(payload) is tuple and len(payload) == 2, "close payload shape", m)
            code, reason = payload
            check(type(code) is int and type(reason) is str, "close payload types", m)
            check(
                code == 1005
                or 1000 <= code <= 1003
                or 1007 <= code <= 1014
                or 3000 <= code <= 4999,
                "close code that may not be on the wire was accepted",
                code,
            )
            check(code != 1005 or reason == "", "1005 with a reason", m)
            check(len(reason.encode("utf-8")) <= 123, "close reason too long", m)
        else:
            check(False, "unknown opcode in output", m)


def _drive(reader: Any, chunk: bytes) -> tuple[list[Any], bool]:
    """Deliver ``chunk`` as an asyncio.BufferedProtocol transport does: get_buffer(), fill,
    buffer_updated(), until it is all in. Returns the messages and whether every call
    reported data_only."""
    out: list[Any] = []
    data_only = True
    view = memoryview(chunk)
    pos = 0
    while True:
        buf = reader.get_buffer(len(chunk) - pos)
        check(len(buf) > 0, "get_buffer returned an empty buffer")
        k = min(len(buf), len(chunk) - pos)
        buf[:k] = view[pos : pos + k]
        del buf
        out += reader.buffer_updated(k)
        data_only = data_only and reader.data_only
        pos += k
        if pos >= len(chunk):
            return out, data_only


def frames(data: bytes, *, asgi: bool | None = None, deflate_on: bool | None = None) -> None:
    """One input through both FrameReaders; see the module docstring for the invariants."""
    inp = Input(data)
    flags = inp.byte()
    misc = inp.byte()
    asgi = bool(flags & 1) if asgi is None else asgi
    rsv1 = bool(flags & 2) if deflate_on is None else deflate_on
    expect_mask = (flags & 0x0C) != 0x0C
    structured = bool(flags & 0x10)
    via_buffer = bool(flags & 0x20)
    size_class = flags >> 6
    max_size = (0, 1 + inp.byte(), 1 + inp.uint(2), 16 * 1024 * 1024)[size_class]
    n_splits = misc & 7
    share_scratch = bool(misc & 8)
    change_size = bool(misc & 0x10)
    scratch_sel = misc >> 5
    splits = sorted(inp.uint(2) for _ in range(n_splits))
    new_size, change_at = (inp.byte(), inp.byte() % 8) if change_size else (0, 99)
    agreement = deflate.Agreement()
    if rsv1:
        sel = inp.byte()
        agreement.client_no_context_takeover = bool(sel & 1)
        bits = (sel >> 1) & 7
        agreement.client_max_window_bits = 8 + bits if bits else None
    stream = build_frames(inp, masked=expect_mask, compress=rsv1) if structured else inp.rest()

    cuts = [min(s, len(stream)) for s in splits]
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    chunks = [c for c in chunks if c] or [b""]

    def scratch() -> bytearray | None:
        return None if scratch_sel == 0 else bytearray(1024 + (scratch_sel - 1) * 700)

    shared = scratch()
    readers = [
        impl.FrameReader(
            max_size=max_size,
            expect_mask=expect_mask,
            rsv1_allowed=rsv1,
            scratch=shared if share_scratch else scratch(),
            asgi=asgi,
        )
        for impl in IMPLEMENTATIONS
    ]
    all_messages: list[Any] = []
    finished = False
    size_changed = False
    for index, chunk in enumerate(chunks):
        if index == change_at:
            size_changed = True
            max_size = new_size
            for reader in readers:
                reader.max_size = new_size
        results = []
        for reader in readers:
            before = reader.close_code
            if via_buffer:
                out, data_only = _drive(reader, chunk)
            else:
                out = reader.feed(chunk)
                data_only = reader.data_only
            results.append((out, data_only, reader.close_code, reader.close_reason, reader.pending))
            code = reader.close_code
            check(code in (None, *ERROR_CODES), "close_code outside 1002/1007/1009", code)
            check(before is None or before == code, "close_code changed", before, code)
            if code is not None:
                check(reader.close_reason, "close_code without a reason")
            if finished or before is not None:
                check(out == [], "messages after a close frame or an error", out)
            if data_only:
                check(all(type(m) is dict for m in out), "data_only with a non-event", out)
                check(before is not None or code is None, "data_only on the call that failed")
            limit = max_size if max_size > 0 and not size_changed else 0
            if limit:
                check(
                    reader.pending <= limit + 125 + 14,
                    "reader holds more than max_size",
                    reader.pending,
                    limit,
                )
            _check_messages(out, asgi=asgi, rsv1=rsv1, max_size=limit, expect_mask=expect_mask)
        first = results[0]
        for other in results[1:]:
            check(
                _norm(first[0]) == _norm(other[0]),
                "implementations return different messages",
                index,
                first[0],
                other[0],
            )
            check(
                first[1:] == other[1:],
                "implementations disagree on (data_only, close_code, close_reason, pending)",
                index,
                first[1:],
                other[1:],
            )
        out = first[0]
        all_messages += out
        if any(type(m) is tuple and m[0] == OP_CLOSE for m in out):
            finished = True

    if not size_changed:
        # Any split of the stream gives the same messages (the .pyi's promise).
        for impl in IMPLEMENTATIONS:
            whole = impl.FrameReader(
                max_size=max_size, expect_mask=expect_mask, rsv1_allowed=rsv1, asgi=asgi
            )
            single = whole.feed(stream)
            check(
                _norm(single) == _norm(all_messages),
                "cutting the stream changed the messages",
                impl.IMPLEMENTATION,
            )
            check(
                (whole.close_code, whole.close_reason)
                == (readers[0].close_code, readers[0].close_reason),
                "cutting the stream changed the close code",
            )

    if rsv1:
        _inflate_all(all_messages, agreement, max_size)


def _inflate_all(messages: list[Any], agreement: deflate.Agreement, max_size: int) -> None:
    """Decompress every compressed message in order, as the server does; stop where the
    connection would fail. Only MessageTooBig / InvalidCompressedData may be raised."""
    pmd = deflate.PerMessageDeflate(agreement)
    for m in messages:
        if type(m) is not tuple or not m[0] & FLAG_COMPRESSED:
            continue
        try:
            out = pmd.decompress(m[1], max_size)
        except deflate.MessageTooBig:
            check(max_size > 0, "MessageTooBig without a limit")
            return
        except deflate.InvalidCompressedData:
            return
        check(type(out) is bytes, "decompress returned no bytes", type(out))
        check(max_size <= 0 or len(out) <= max_size, "inflated over the limit", len(out))
        if m[0] & 0x0F == OP_TEXT:
            try:
                out.decode("utf-8")
            except UnicodeDecodeError:
                return


def frames_input(
    stream: bytes,
    *,
    asgi: bool = False,
    rsv1: bool = False,
    via_buffer: bool = False,
    max_size: int = 0,
    splits: Iterable[int] = (),
) -> bytes:
    """An input for ``frames`` that feeds ``stream`` as raw bytes (for seeds and tests)."""
    splits = list(splits)[:7]
    if max_size == 0:
        size_class, size = 0, b""
    elif max_size <= 256:
        size_class, size = 1, bytes([max_size - 1])
    else:
        size_class, size = 2, (max_size - 1).to_bytes(2, "big")
    flags = int(asgi) | int(rsv1) << 1 | int(via_buffer) << 5 | size_class << 6
    misc = len(splits)
    out = bytes([flags, misc]) + size + b"".join(min(s, 0xFFFF).to_bytes(2, "big") for s in splits)
    if rsv1:
        out += b"\x00"
    return out + stream


def frames_seeds() -> list[bytes]:
    f = client_frame
    streams = [
        f(OP_TEXT, b"hello") + f(OP_BINARY, b"\x00\xff" * 70) + f(OP_CLOSE, b"\x03\xe8bye"),
        f(OP_TEXT, "é€𝄞".encode(), fin=False)
        + f(OP_PING, b"p")
        + f(OP_CONT, "z€".encode())
        + f(OP_CONT, b"", fin=True),
        f(OP_TEXT, b"ok\xce", fin=False) + f(OP_CONT, b"\xbaa\xff\xfe", fin=False),
        f(OP_TEXT, b"\xed\xa0\x80"),
        f(OP_TEXT, b"\xf4\x90\x80\x80"),
        f(OP_BINARY, bytes(300)) + f(OP_BINARY, bytes(70000)),
        bytes([0x82, 0xFF]) + (2**63 - 1).to_bytes(8, "big") + b"\x00" * 4,
        bytes([0x82, 0xFF]) + (2**63).to_bytes(8, "big") + b"\x00" * 4,
        bytes([0x81, 0x05]) + b"hello",
        f(OP_PONG, b"x" * 125) + f(OP_PING, b"") + f(OP_CLOSE, b""),
        f(OP_CLOSE, b"\x03\xed") + f(OP_TEXT, b"after"),
        f(OP_CLOSE, b"\x0f\xa0\xff"),
        f(OP_TEXT, client_deflate(b"compressed " * 20), rsv1=True)
        + f(OP_BINARY, client_deflate(bytes(5000)), rsv1=True, fin=False)
        + f(OP_CONT, b""),
        f(OP_CONT, b"x"),
        f(OP_TEXT, b"a", fin=False) + f(OP_TEXT, b"b"),
    ]
    seeds = []
    for i, stream in enumerate(streams):
        n = len(stream)
        seeds.append(frames_input(stream))
        seeds.append(
            frames_input(
                stream,
                asgi=bool(i & 1),
                rsv1=bool(i & 2) or i == 12,
                via_buffer=bool(i & 4),
                max_size=(0, 100, 1000, 40000)[i % 4],
                splits=sorted({1, n // 3, n // 2, max(n - 3, 0)}),
            )
        )
    # Structured: flags 0x10, then specs (see build_frames).
    seeds.append(bytes([0x10, 0x00]) + bytes([0x81, 0x80, 5]) + b"hello" + b"kkkk" * 1)
    seeds.append(bytes([0x12, 0x00, 0x00, 0x06]) + bytes([0xC1, 0x90, 20]) + b"z" * 20 + b"kkkk")
    return seeds


# ---------------------------------------------------------------------------------------------
# http: HttpProtocol over an in-memory transport
# ---------------------------------------------------------------------------------------------


class MemoryTransport(asyncio.Transport):
    """Just enough of asyncio's selector socket transport, with its rules: writes after
    write_eof() raise RuntimeError, close() delivers connection_lost on the next loop pass (to
    the protocol set at that time), a closing transport reads nothing more."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: Any) -> None:
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.writes: list[bytes] = []
        self.closing = False
        self.lost = False
        self.eof = False
        self.reading = True
        self.protocols = [protocol]

    def write(self, data: Any) -> None:
        if self.eof:
            if "write-after-eof" in TOLERATE:
                return
            raise RuntimeError("Cannot call write() after write_eof()")
        if not self.lost:
            self.writes.append(bytes(data))

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self.closing or self.eof:
            return
        self.eof = True

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.reading = False
        self.loop.call_soon(self._lost)

    def abort(self) -> None:
        self.close()

    def _lost(self) -> None:
        self.lost = True
        self.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        if not self.closing:
            self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol
        self.protocols.append(protocol)

    def get_protocol(self) -> Any:
        return self.protocol

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 40000)}.get(
            name, default
        )

    def feed(self, data: bytes) -> None:
        """Deliver ``data`` as the selector transport does, read by read."""
        view = memoryview(data)
        while view and not self.closing:
            check(self.reading, "fed while paused")
            protocol = self.protocol
            buf = protocol.get_buffer(len(view))
            n = min(len(buf), len(view))
            check(n > 0, "get_buffer gave no room")
            buf[:n] = view[:n]
            del buf
            protocol.buffer_updated(n)
            view = view[n:]


class _HttpWorld:
    """One event loop and a few server configurations, shared by every ``http`` input."""

    def __init__(self) -> None:
        from fastws.config import Config
        from fastws.transport import ServerState
        from fastws.ws.protocol import Wakeups

        self.loop = asyncio.new_event_loop()
        self.events: list[Any] = []
        # Every task the server creates, and whatever reaches the loop's exception handler:
        # a server task that dies with an exception is a server bug, never the app's (ours
        # does not raise).
        self.created: list[asyncio.Task[Any]] = []
        self.loop_errors: list[str] = []

        def task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> Any:
            task = asyncio.Task(coro, loop=loop, **kwargs)
            self.created.append(task)
            return task

        def exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            self.loop_errors.append(f"{context.get('message')}: {context.get('exception')!r}")

        self.loop.set_task_factory(task_factory)  # type: ignore[arg-type]
        self.loop.set_exception_handler(exception_handler)
        variants = [
            {"ws_max_size": 4096},
            {
                "ws_max_size": 64,
                "ws_max_queue": 1,
                "limit_request_line": 64,
                "limit_request_fields": 8,
                "limit_request_field_size": 128,
            },
            {"ws_max_size": 1 << 20, "ws_per_message_deflate": False},
            {"ws_max_size": 200, "ws_max_queue": 2},
        ]
        self.configs = []
        for options in variants:
            config = Config(
                self.app,
                log_level="critical",
                access_log=False,
                lifespan="off",
                ws_ping_interval=None,
                **options,  # type: ignore[arg-type]
            )
            config.load()
            state = ServerState(Wakeups())
            state.default_headers[:] = [(b"server", b"fastws")]
            self.configs.append((config, state))

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        events = self.events
        if scope["type"] == "http":
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                size += len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"%d" % size
            for _ in range(3):  # answer a few loop passes later, as a real app would
                await asyncio.sleep(0)
            try:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-length", b"%d" % len(body))],
                    }
                )
                await send({"type": "http.response.body", "body": body})
            except OSError:
                return
            return
        message = await receive()
        check(message == {"type": "websocket.connect"}, "first websocket event", message)
        subprotocols = scope["subprotocols"]
        try:
            await send(
                {
                    "type": "websocket.accept",
                    "subprotocol": subprotocols[0] if subprotocols else None,
                }
            )
        except OSError:
            events.append(("accept failed",))
            return
        while True:
            message = await receive()
            events.append(message)
            if message["type"] == "websocket.disconnect":
                return
            try:
                await send(
                    {"type": "websocket.send", **{k: v for k, v in message.items() if k != "type"}}
                )
            except OSError:
                pass

    def run_until_idle(self) -> None:
        loop = self.loop
        for _ in range(200):
            loop.run_until_complete(asyncio.sleep(0))
            if not loop._ready:  # type: ignore[attr-defined]
                return
        raise Violation("the event loop never goes idle (busy loop)")


_world: _HttpWorld | None = None


def http_world() -> _HttpWorld:
    global _world
    if _world is None:
        _world = _HttpWorld()
    return _world


_METHODS = (b"GET", b"GET", b"GET", b"GET", b"POST", b"HEAD", b"get", b"OPTIONS")
_VERSIONS = (b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0")
_NAMES = (
    b"Sec-WebSocket-Extensions",
    b"Sec-WebSocket-Protocol",
    b"Sec-WebSocket-Key",
    b"Sec-WebSocket-Version",
    b"Connection",
    b"Upgrade",
    b"Content-Length",
    b"Transfer-Encoding",
    b"Expect",
    b"Origin",
    b"Host",
    b"X-Padding",
)
_VALUES = (
    b"permessage-deflate",
    b"permessage-deflate; client_max_window_bits",
    b"permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    b"permessage-deflate; server_max_window_bits=9; client_max_window_bits=10",
    b"permessage-deflate; server_max_window_bits=8",
    b"permessage-deflate; x, permessage-deflate",
    b"chat, superchat",
    b"dGhlIHNhbXBsZSBub25jZQ==",
    b"13",
    b"8",
    b"Upgrade, keep-alive",
    b"websocket",
    b"0",
    b"5",
    b"chunked",
    b"100-continue",
    b"close",
)


def build_request(inp: Input) -> bytes:
    """An upgrade request from specs: method/version byte, path, which of the five standard
    headers to drop or mangle, then extra headers from the tables above or raw bytes."""
    sel = inp.byte()
    method = _METHODS[sel & 7]
    version = _VERSIONS[(sel >> 3) & 3]
    path = b"/" + inp.take(inp.byte() % 24) if sel & 0x20 else b"/ws"
    standard = [
        (b"Host", b"example.com"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"Sec-WebSocket-Version", b"13"),
    ]
    drop = inp.byte() if sel & 0x40 else 0
    headers = []
    for i, (name, value) in enumerate(standard):
        if drop >> i & 1:
            if drop & 0x80:
                headers.append((name, inp.take(inp.byte() % 32)))
            continue
        headers.append((name, value))
    for _ in range(inp.byte() % 6 if sel & 0x80 else 0):
        pick = inp.byte()
        name = _NAMES[pick % len(_NAMES)] if pick < 200 else inp.take(inp.byte() % 16)
        pick = inp.byte()
        value = _VALUES[pick % len(_VALUES)] if pick < 200 else inp.take(inp.byte() % 48)
        headers.append((name, value))
    lines = [method + b" " + path + b" " + version]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _RefParser:
    """Counts requests and their methods, with httptools alone (no fastws code)."""

    def __init__(self) -> None:
        self.messages = 0
        self.methods: list[bytes] = []
        self.parser: Any = None

    def on_message_begin(self) -> None:
        self.messages += 1

    def on_headers_complete(self) -> None:
        self.methods.append(self.parser.get_method())


def request_methods(stream: bytes) -> list[bytes]:
    """The methods of the requests in ``stream`` that httptools parses, in order."""
    ref = _RefParser()
    ref.parser = httptools.HttpRequestParser(ref)
    try:
        ref.parser.feed_data(stream)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):
        pass
    return ref.methods


def upgrade_offset(stream: bytes) -> tuple[int, int] | None:
    """Where the first upgrade request ends (the first byte after its head) and how many
    requests came before it, according to httptools alone; None if there is none."""
    ref = _RefParser()
    ref.parser = httptools.HttpRequestParser(ref)
    try:
        ref.parser.feed_data(stream)
    except httptools.HttpParserUpgrade as exc:
        return int(exc.args[0]), ref.messages - 1
    except httptools.HttpParserError:
        return None
    return None


def _split_responses(out: bytes, methods: list[bytes]) -> tuple[list[int], bytes | None]:
    """Statuses of the HTTP responses in ``out`` and the bytes after a 101 (None if none);
    ``methods``: the requests' methods in order (a response to HEAD has no body)."""
    statuses = []
    pos = 0
    answered = 0
    while pos < len(out):
        if not out.startswith(b"HTTP/1.1 ", pos):
            raise EarlyFrames(
                "server wrote WebSocket frames before (or instead of) its HTTP response: "
                + repr(out[max(0, pos - 40) : pos + 80])
            )
        end = out.find(b"\r\n\r\n", pos)
        check(end >= 0, "unterminated response head", out[pos : pos + 200])
        head = out[pos:end].split(b"\r\n")
        status = int(head[0][9:12])
        statuses.append(status)
        pos = end + 4
        if status == 101:
            return statuses, out[pos:]
        if status == 100:
            continue
        method = methods[answered] if answered < len(methods) else b"GET"
        answered += 1
        length = None
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
            check(name.strip().lower() != b"transfer-encoding", "chunked response", head)
        check(length is not None, "response without content-length", head)
        if method != b"HEAD" or status >= 400:  # error responses are not the app's: full body
            pos += length  # type: ignore[operator]
    return statuses, None


def _response_header(out: bytes, name: bytes) -> bytes | None:
    head = out[: out.find(b"\r\n\r\n")]
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def http(data: bytes) -> None:
    """One connection's bytes through HttpProtocol (and WebSocketProtocol after an upgrade)."""
    from fastws.http.protocol import HttpProtocol
    from fastws.ws.frames import FrameReader

    world = http_world()
    inp = Input(data)
    flags = inp.byte()
    config, state = world.configs[flags & 3]
    n_splits = (flags >> 2) & 7
    splits = sorted(inp.uint(2) for _ in range(n_splits))
    if flags & 0x20:
        stream = build_request(inp)
        stream += build_frames(inp, masked=True, compress=True) if flags & 0x40 else inp.rest()
    else:
        stream = inp.rest()
    cuts = [min(s, len(stream)) for s in splits]
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]

    world.events = events = []
    world.created.clear()
    world.loop_errors.clear()
    loop = world.loop
    protocol = HttpProtocol(config, state, {}, _loop=loop)
    transport = MemoryTransport(loop, protocol)
    protocol.connection_made(transport)
    try:
        for chunk in chunks:
            if transport.closing:
                break
            world.run_until_idle()
            check(
                transport.reading or transport.closing or transport.eof,
                "reading left paused while the app waits (deadlock)",
                type(transport.protocol).__name__,
            )
            if not transport.reading:
                break  # paused after an error response (write_eof): asyncio reads nothing
            if chunk:
                transport.feed(chunk)
        world.run_until_idle()
        check(
            transport.reading or transport.closing or transport.eof,
            "reading left paused while the app waits (deadlock)",
        )
        if not transport.closing:
            if not transport.protocol.eof_received():
                transport.close()
        world.run_until_idle()
        check(transport.lost, "connection_lost never came")
        leaked_tasks = [t for t in state.tasks if not t.done()]
        check(not leaked_tasks, "tasks still running after the connection was lost", leaked_tasks)
        check(not state.connections, "connections still registered", state.connections)
        for task in world.created:
            if task.done() and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                raise Violation(f"a server task died with {exc!r}") from exc
        check(not world.loop_errors, "errors reported to the event loop", world.loop_errors)
    finally:
        for task in list(state.tasks):
            task.cancel()
        state.tasks.clear()
        state.connections.clear()
        world.run_until_idle()

    out = b"".join(transport.writes)
    try:
        statuses, ws_out = _split_responses(out, request_methods(stream))
    except EarlyFrames:
        if "early-frames" in TOLERATE:
            return
        raise
    for status in statuses:
        check(status in HTTP_STATUSES, "unexpected HTTP status", status, out[:300])
    if ws_out is None:
        check(not events, "websocket events without a 101", events)
        return
    _check_websocket(stream, out, statuses, ws_out, events, config, FrameReader)


def _check_websocket(
    stream: bytes,
    out: bytes,
    statuses: list[int],
    ws_out: bytes,
    events: list[Any],
    config: Any,
    reader_cls: Any,
) -> None:
    """After a 101: predict from the client's bytes what the server must do, compare."""
    found = upgrade_offset(stream)
    check(found is not None, "server upgraded a request httptools did not see as one")
    assert found is not None
    offset, before = found
    if before and "pipelined-upgrade" in TOLERATE:
        return
    # RFC 9112 §9.3.2: responses go out in request order, so one per earlier request first.
    check(
        len([s for s in statuses if s != 100]) == before + 1,
        "responses to the requests before the upgrade are missing or misplaced",
        statuses,
        before,
    )
    head_end = out.rfind(b"HTTP/1.1 101 ")
    extension = _response_header(out[head_end:], b"sec-websocket-extensions")
    agreement = deflate.negotiate([extension.decode("latin-1")]) if extension else None
    check(extension is None or agreement is not None, "unparseable extension response", extension)

    # The prediction: an independent reader of the client's bytes (pure codec).
    ref = pure.FrameReader(
        max_size=config.ws_max_size, expect_mask=True, rsv1_allowed=agreement is not None
    )
    messages = ref.feed(stream[offset:])
    pmd = deflate.PerMessageDeflate(agreement) if agreement else None
    expected_data: list[Any] = []
    pings: list[bytes] = []
    expected_close: tuple[int, str] | None = None
    for op, payload in messages:
        if op & FLAG_COMPRESSED:
            assert pmd is not None
            try:
                raw = pmd.decompress(payload, config.ws_max_size)
            except deflate.MessageTooBig:
                expected_close = (1009, "")
                break
            except deflate.InvalidCompressedData:
                expected_close = (1007, "")
                break
            if op & 0x0F == OP_TEXT:
                try:
                    expected_data.append(("text", raw.decode("utf-8")))
                except UnicodeDecodeError:
                    expected_close = (1007, "")
                    break
            else:
                expected_data.append(("bytes", raw))
        elif op == OP_TEXT:
            expected_data.append(("text", payload))
        elif op == OP_BINARY:
            expected_data.append(("bytes", payload))
        elif op == OP_PING:
            pings.append(payload)
        elif op == OP_CLOSE:
            expected_close = payload
            break
    else:
        if ref.close_code is not None:
            expected_close = (ref.close_code, "")

    # What the server sent: frames a client must accept.
    client = reader_cls(max_size=0, expect_mask=False, rsv1_allowed=True)
    sent = client.feed(ws_out)
    if client.close_code is not None and b"HTTP/1.1 " in ws_out:
        raise Violation(
            "an HTTP response was written into the WebSocket stream: " + repr(ws_out[:200])
        )
    check(
        client.close_code is None, "server sent invalid frames", client.close_reason, ws_out[:200]
    )
    inflater = zlib.decompressobj(-15)
    echoed: list[Any] = []
    pongs: list[bytes] = []
    server_close = None
    for op, payload in sent:
        if op & FLAG_COMPRESSED:
            check(agreement is not None, "compressed frame without permessage-deflate")
            raw = inflater.decompress(payload + b"\x00\x00\xff\xff")
            echoed.append(("text", raw.decode("utf-8")) if op & 0x0F == OP_TEXT else ("bytes", raw))
        elif op == OP_TEXT:
            echoed.append(("text", payload))
        elif op == OP_BINARY:
            echoed.append(("bytes", payload))
        elif op == OP_PONG:
            pongs.append(payload)
        elif op == OP_CLOSE:
            server_close = payload
        else:
            check(False, "server sent an unexpected frame", op)

    received = [
        ("text", e["text"]) if e.get("text") is not None else ("bytes", e["bytes"])
        for e in events
        if e.get("type") == "websocket.receive"
    ]
    disconnects = [e for e in events if e.get("type") == "websocket.disconnect"]
    check(len(disconnects) == 1, "the app must hear exactly one disconnect", events[-3:])
    check(
        received == expected_data,
        "the app did not get exactly the messages sent",
        received[:5],
        expected_data[:5],
    )
    check(echoed == expected_data[: len(echoed)], "echoes out of order or altered")
    check(pongs == pings, "pings and pongs differ", pings, pongs)
    code = disconnects[0]["code"]
    if expected_close is None:
        check(server_close is None, "server closed a healthy connection", server_close)
        check(code == 1006, "client vanished: the app must hear 1006", code)
    else:
        check(server_close is not None, "no close frame", expected_close)
        check(
            server_close[0] == expected_close[0],
            "wrong close code",
            server_close,
            expected_close,
        )
        check(code == expected_close[0], "the app heard another code", code, expected_close)


def http_input(stream: bytes, *, variant: int = 0, splits: Iterable[int] = ()) -> bytes:
    splits = list(splits)[:7]
    flags = variant | len(splits) << 2
    return bytes([flags]) + b"".join(min(s, 0xFFFF).to_bytes(2, "big") for s in splits) + stream


def ws_request(extra: bytes = b"") -> bytes:
    return (
        b"GET /chat?x=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


def http_seeds() -> list[bytes]:
    f = client_frame
    deflate_offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    streams = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 10 + b"\r\n",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
        b"BREW / HTCPCP/1.0\r\n\r\n",
        ws_request() + f(OP_TEXT, b"hi") + f(OP_PING, b"p") + f(OP_CLOSE, b"\x03\xe8"),
        ws_request(b"Sec-WebSocket-Protocol: chat\r\n")
        + f(OP_BINARY, bytes(100))
        + f(OP_TEXT, b"\xff"),
        ws_request(deflate_offer)
        + f(OP_TEXT, client_deflate(b"zip " * 50), rsv1=True)
        + f(OP_BINARY, b"\xff" * 8, rsv1=True),
        ws_request(deflate_offer) + f(OP_BINARY, client_deflate(bytes(100000)), rsv1=True),
        ws_request().replace(b"13", b"8"),
        ws_request().replace(b"GET", b"POST"),
        ws_request() + f(OP_TEXT, b"x" * 300),
        ws_request() + f(OP_TEXT, b"a", fin=False) + f(OP_CONT, b"\xc3", fin=False),
        ws_request() + bytes([0x82, 0xFF]) + (2**63 - 1).to_bytes(8, "big"),
        ws_request() + f(OP_TEXT, b"1") + f(OP_TEXT, b"2") + f(OP_TEXT, b"3") + f(OP_TEXT, b"4"),
    ]
    seeds = []
    for i, stream in enumerate(streams):
        seeds.append(http_input(stream, variant=i & 3))
        n = len(stream)
        seeds.append(http_input(stream, variant=(i + 1) & 3, splits=[1, n // 2, n - 2]))
    # Spec-built: template request with deflate offer, structured frames.
    seeds.append(
        bytes([0x60 | 0x00, 0x80, 0x01, 0xC8, 0x01, 0x00]) + bytes([0x81, 0x80, 3]) + b"abc"
    )
    return seeds


# ---------------------------------------------------------------------------------------------
# handshake
# ---------------------------------------------------------------------------------------------

_ALLOWED = None


def handshake_target(data: bytes) -> None:
    """validate_request, the responses, negotiate and the Origin check on arbitrary headers."""
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = origin_policy.compile_origins(
            ["https://app.example.com", "http://127.0.0.1:8000", "https://*.example.org"]
        )
    inp = Input(data)
    sel = inp.byte()
    method = _METHODS[sel & 7] if sel & 0x80 else inp.take(inp.byte() % 8)
    version = ("1.1", "1.0", "1.1", "2")[(sel >> 3) & 3]
    headers: list[tuple[bytes, bytes]] = []
    if sel & 0x40:
        headers += [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-version", b"13"),
        ]
    if sel & 0x20:
        headers.append((b"sec-websocket-key", base64.b64encode(inp.take(16).ljust(16, b"\0"))))
    while inp.remaining:
        pick = inp.byte()
        name = _NAMES[pick % len(_NAMES)].lower() if pick < 200 else inp.take(inp.byte() % 24)
        pick = inp.byte()
        value = _VALUES[pick % len(_VALUES)] if pick < 128 else inp.take(inp.byte() % 64)
        # What httptools can hand over: no CR or LF inside a field (it ends the field there).
        headers.append((_no_crlf(name).lower(), _no_crlf(value)))

    result = handshake.validate_request(method, version, headers)
    if isinstance(result, handshake.Offer):
        raw = base64.b64decode(result.key, validate=True)
        check(len(raw) == 16, "accepted a key that is not 16 bytes", result.key)
        check(method == b"GET" and version == "1.1", "accepted a non-GET or non-1.1 upgrade")
        response = handshake.accept_response(
            result.key,
            result.subprotocols[0] if result.subprotocols else None,
            None,
            [(b"server", b"fastws")],
        )
        check(response.startswith(b"HTTP/1.1 101 "), "bad 101")
        check(response.endswith(b"\r\n\r\n"), "101 not terminated")
        check(response.count(b"\r\n\r\n") == 1, "header injection in the 101", response)
        agreement = deflate.negotiate(result.extensions)
        if agreement is not None:
            again = deflate.negotiate([agreement.response().decode("ascii")])
            check(again == agreement, "negotiate is not idempotent", agreement, again)
            for bits in (agreement.server_max_window_bits, agreement.client_max_window_bits):
                check(bits is None or 9 <= bits <= 15, "window bits out of range", agreement)
            deflate.PerMessageDeflate(agreement).compress(b"x" * 200)
    else:
        check(isinstance(result, handshake.Rejection), "neither Offer nor Rejection", result)
        check(result.status in (400, 426), "rejection status", result.status)
        response = handshake.rejection_response(result, [(b"server", b"fastws")])
        check(response.startswith(b"HTTP/1.1 %d " % result.status), "bad rejection")
        head, _, body = response.partition(b"\r\n\r\n")
        check(b"content-length: %d" % len(body) in head, "content-length mismatch", response)
    origins = [v for n, v in headers if n == b"origin"]
    for origin in origins:
        origin_policy.origin_allowed(origin, _ALLOWED)
    rejection = origin_policy.check_origin(headers, _ALLOWED)
    check(rejection is None or rejection.status == 403, "origin rejection status")
    check(
        rejection is not None or len(origins) == 1,
        "request allowed without exactly one Origin",
        origins,
    )


def _no_crlf(data: bytes) -> bytes:
    return data.replace(b"\r", b"").replace(b"\n", b"")


def handshake_seeds() -> list[bytes]:
    return [
        bytes([0xE0]) + b"k" * 16,
        bytes([0xE0]) + b"k" * 16 + bytes([0, 1]),
        bytes([0xE0]) + b"k" * 16 + bytes([0, 2, 0, 3, 9, 0xFF, 20]) + b"https://app.example.com",
        bytes([0xC0, 3, 0xFF, 4]) + b"dGhlIHNhbXBsZSBub25jZQ==",
        bytes([0x01]),
    ]


# ---------------------------------------------------------------------------------------------
# response_headers: app-supplied headers on the three paths that write them
# ---------------------------------------------------------------------------------------------

# Header bytes an app might build from user input: separators, controls, CR/LF/NUL, obs-text.
_HEADER_ALPHABET = b"aZ-09_!:; \t\r\n\x00\x7f\x80\xff,=()x"
_SERVER_HEADERS = {  # what the server itself may add to each path's head
    "http": {b"content-length", b"transfer-encoding", b"connection", b"server", b"content-type"},
    "accept": {
        b"upgrade",
        b"connection",
        b"sec-websocket-accept",
        b"sec-websocket-protocol",
        b"sec-websocket-extensions",
        b"server",
    },
    "deny": {b"connection", b"server"},
}
_ERROR_HEADERS = {b"content-type", b"content-length", b"connection", b"server"}


class _HeadersWorld:
    """One loop and one server configuration; the app sends the headers of the current input."""

    def __init__(self) -> None:
        from fastws.config import Config
        from fastws.transport import ServerState
        from fastws.ws.protocol import Wakeups

        self.loop = asyncio.new_event_loop()
        self.headers: list[Any] = []
        self.path = "http"
        self.refused: list[str] = []
        self.config = Config(
            self.app, log_level="critical", access_log=False, lifespan="off", ws_ping_interval=None
        )
        self.config.load()
        self.state = ServerState(Wakeups())
        self.state.default_headers[:] = [(b"server", b"fastws")]

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 200, "headers": self.headers})
                await send({"type": "http.response.body", "body": b"ok"})
                return
            await receive()
            if self.path == "accept":
                await send({"type": "websocket.accept", "headers": self.headers})
                await send({"type": "websocket.close"})
            else:
                start = {"type": "websocket.http.response.start", "status": 403}
                await send({**start, "headers": self.headers})
                await send({"type": "websocket.http.response.body", "body": b"no"})
        except RuntimeError as exc:
            self.refused.append(str(exc))
            raise


_headers_world: _HeadersWorld | None = None


def _fuzzed_header_part(inp: Input, as_str: bool) -> Any:
    raw = bytes(
        _HEADER_ALPHABET[b % len(_HEADER_ALPHABET)] if b < 200 else b
        for b in inp.take(inp.byte() % 12)
    )
    return raw.decode("latin-1") if as_str else raw


def response_headers(data: bytes) -> None:
    """Headers from the fuzzer (names and values, bytes or str) on an HTTP response, a 101 and a
    denial response. Invariants: the app's send() either raises RuntimeError and the client
    gets a complete 500 with the server's headers only, or the head holds exactly the app's
    headers (lowercased names) and the server's own; never a header line the app did not ask
    for, and one head only."""
    import logging

    from fastws.http.protocol import HttpProtocol

    logging.getLogger("fastws.error").disabled = True
    global _headers_world
    if _headers_world is None:
        _headers_world = _HeadersWorld()
    world = _headers_world
    inp = Input(data)
    sel = inp.byte()
    world.path = ("http", "accept", "deny", "http")[sel & 3]
    headers = []
    for _ in range(inp.byte() % 5):
        kind = inp.byte()
        headers.append(
            (_fuzzed_header_part(inp, bool(kind & 1)), _fuzzed_header_part(inp, bool(kind & 2)))
        )
    world.headers = headers
    world.refused = []
    request = ws_request() if world.path != "http" else b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    loop = world.loop
    protocol = HttpProtocol(world.config, world.state, {}, _loop=loop)
    transport = MemoryTransport(loop, protocol)
    protocol.connection_made(transport)
    try:
        transport.feed(request)
        for _ in range(50):
            loop.run_until_complete(asyncio.sleep(0))
        if not transport.closing:
            transport.close()
        for _ in range(5):
            loop.run_until_complete(asyncio.sleep(0))
    finally:
        for task in list(world.state.tasks):
            task.cancel()
        world.state.tasks.clear()
        world.state.connections.clear()
        for _ in range(5):
            loop.run_until_complete(asyncio.sleep(0))
    out = b"".join(transport.writes)
    check(out.startswith(b"HTTP/1.1 "), "no response head", out[:200])
    head, sep, _ = out.partition(b"\r\n\r\n")
    check(sep, "unterminated head", out[:300])
    lines = head.split(b"\r\n")
    status = int(lines[0][9:12])
    asked = []
    for name, value in headers:
        name_b = name.encode("latin-1", "replace") if isinstance(name, str) else name
        value_b = value.encode("latin-1", "replace") if isinstance(value, str) else value
        asked.append((name_b.lower(), value_b))
    got = []
    for line in lines[1:]:
        name, colon, value = line.partition(b": ")
        check(
            colon and name and b"\n" not in line and b"\r" not in line,
            "malformed header line",
            line,
        )
        got.append((name, value))
    if world.refused:
        check(status == 500, "refused header without a 500", status, world.refused, out[:300])
        check({n for n, _ in got} <= _ERROR_HEADERS, "app header in the 500", got)
        return
    expected = {"http": 200, "accept": 101, "deny": 403}[world.path]
    check(status == expected, "unexpected status", status, out[:300])
    server_own = _SERVER_HEADERS[world.path]
    for header in got:
        check(
            header in asked or header[0] in server_own,
            "a header line the app did not ask for",
            header,
            headers,
        )
    for header in asked:
        check(header in got, "an app header missing or changed", header, got)


def response_headers_seeds() -> list[bytes]:
    return [
        bytes([0, 1, 0, 3]) + b"abc" + bytes([2]) + b"vv",
        bytes([1, 2, 3, 4])
        + b"a\r\nb"
        + bytes([2])
        + b"v\n"
        + bytes([0, 1])
        + b"x"
        + bytes([1])
        + b"y",
        bytes([2, 1, 0, 2]) + b"x:" + bytes([2]) + b"\x00v",
        bytes([3, 1, 2, 1]) + b"\xe9" + bytes([1]) + b"\xff",
    ]


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------

# name -> (function, seeds, libFuzzer max_len)
TARGETS: dict[str, tuple[Callable[[bytes], None], Callable[[], list[bytes]], int]] = {
    "frames": (frames, frames_seeds, 8192),
    "http": (http, http_seeds, 8192),
    "handshake": (handshake_target, handshake_seeds, 1024),
    "response_headers": (response_headers, response_headers_seeds, 256),
}


def settle(name: str) -> None:
    """Let timers an input armed run out (the http target's 2 s linger after an error
    response, 1 s protocol-error grace), so memory can be compared between rounds."""
    if name == "http" and _world is not None:
        _world.loop.run_until_complete(asyncio.sleep(2.2))
        _world.run_until_idle()


def target(name: str, **options: Any) -> Callable[[bytes], None]:
    """The target function, with ``frames`` options (asgi=, deflate_on=) bound."""
    func = TARGETS[name][0]
    if not options:
        return func
    return lambda data: func(data, **options)

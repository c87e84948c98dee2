"""Type stub shared by the compiled codec (fastws._speedups) and its pure-Python twin
(fastws._speedups_py). Both must expose exactly these names with these signatures.

The codec owns the per-frame hot path of RFC 6455: masking, frame header decoding, the section 5
frame rules, incremental UTF-8 validation of text, message reassembly and frame encoding. It knows
nothing of sockets, asyncio or ASGI.
"""

from typing import Final

Buffer = bytes | bytearray | memoryview

IMPLEMENTATION: Final[str]  # "cython" in the compiled module, "python" in the twin

OP_CONT: Final[int]  # 0x0
OP_TEXT: Final[int]  # 0x1
OP_BINARY: Final[int]  # 0x2
OP_CLOSE: Final[int]  # 0x8
OP_PING: Final[int]  # 0x9
OP_PONG: Final[int]  # 0xA
# Or-ed into the opcode of a data message whose first frame had RSV1 set (only possible with
# rsv1_allowed=True, i.e. permessage-deflate negotiated): the payload is the raw compressed bytes,
# not yet UTF-8 checked; max_size then bounds the compressed size only.
FLAG_COMPRESSED: Final[int]  # 0x40

Message = tuple[int, bytes | str | tuple[int, str]]

class FrameReader:
    """Incremental reader of one direction of a WebSocket stream.

    Bytes arrive either through ``feed(data)`` or, for an ``asyncio.BufferedProtocol``, through
    ``get_buffer()`` / ``buffer_updated()``. Any split of the stream gives the same messages.

    Each call returns the complete messages found so far, in order, as ``(opcode, payload)``:
    ``(OP_TEXT, str)``, ``(OP_BINARY, bytes)``, ``(OP_PING, bytes)``, ``(OP_PONG, bytes)``,
    ``(OP_CLOSE, (code, reason))`` (code 1005 when the close frame had no payload), and with
    permessage-deflate ``(OP_TEXT | FLAG_COMPRESSED, bytes)`` and
    ``(OP_BINARY | FLAG_COMPRESSED, bytes)``.
    After a close frame the reader stops: later bytes are ignored.

    On a protocol violation the reader stops too: ``close_code`` becomes 1002 (protocol error),
    1007 (invalid UTF-8 in a text message or close reason) or 1009 (message over ``max_size``),
    ``close_reason`` says why, messages completed before the error are still returned, and later
    bytes are ignored. The caller then sends a close frame with that code. Text is checked as its
    bytes arrive, so invalid UTF-8 fails as soon as it cannot be completed into valid UTF-8, even
    in the middle of a frame; a declared length that would take the message over ``max_size``
    fails at the frame header, before any of the payload is buffered.
    """

    close_code: int | None
    close_reason: str
    max_size: int
    data_only: bool  # read-only: the last call returned only ASGI receive events (asgi=True)
    texts: int  # text messages returned so far; compressed ones are not (the caller inflates)

    def __init__(
        self,
        *,
        max_size: int = 16777216,
        expect_mask: bool = True,
        rsv1_allowed: bool = False,
        scratch: bytearray | None = None,
        asgi: bool = False,
    ) -> None:
        """
        Args:
            max_size: largest message accepted, in bytes (after reassembly); 0 or less: no limit.
            expect_mask: True on a server (client frames MUST be masked, RFC 6455 §5.1);
                False on a client (server frames MUST NOT be masked).
            rsv1_allowed: True when permessage-deflate was negotiated (RFC 7692 §6).
            scratch: a read buffer shared by the readers of one event loop, so that an idle
                connection holds no buffer of its own. It is only used between ``get_buffer()``
                and the ``buffer_updated()`` that follows it, which asyncio calls back to back.
                None: the reader allocates its own.
            asgi: return complete text and binary messages as ready ASGI events,
                ``{"type": "websocket.receive", "text": str}`` or ``{..., "bytes": bytes}``,
                instead of tuples (control frames, compressed messages and errors are
                unchanged). ``data_only`` then tells the caller whether the whole list can
                go straight to the application (see bench/micro/protocol.py).
        """

    def get_buffer(self, sizehint: int) -> memoryview:
        """Writable buffer for the next read (``asyncio.BufferedProtocol.get_buffer``).

        Then call ``buffer_updated(nbytes)`` with how many bytes were written to its start.
        """

    def buffer_updated(self, nbytes: int) -> list[Message]:
        """Process ``nbytes`` written into the last ``get_buffer()``; return completed messages."""

    def feed(self, data: Buffer) -> list[Message]:
        """Process ``data`` (copied; the caller keeps ownership); return completed messages."""

    @property
    def pending(self) -> int:
        """Bytes held for a frame not yet complete (partial header or payload)."""

def apply_mask(data: Buffer, key: Buffer) -> bytes:
    """Return ``data`` XOR-ed with the 4-byte ``key`` repeated (RFC 6455 §5.3), in one pass."""

def apply_mask_inplace(
    buf: bytearray | memoryview, key: Buffer, start: int = 0, length: int = -1
) -> None:
    """XOR ``buf[start:start+length]`` (to the end when length is -1) with ``key``, in place.

    The key phase starts at ``start`` (byte ``start`` is XOR-ed with ``key[0]``).
    Raises ValueError for a key that is not 4 bytes or a range outside ``buf``.
    """

def encode_frame(
    opcode: int,
    payload: Buffer | str,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: Buffer | None = None,
) -> bytes:
    """One frame, header and payload in one allocation. ``str`` payloads are UTF-8 encoded.

    ``mask`` (4 bytes) makes a masked client frame; None makes a server frame.
    Raises ValueError for an opcode outside 0-15, a control frame over 125 bytes or fragmented,
    or a mask that is not 4 bytes.
    """

def encode_frame_header(opcode: int, length: int, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """The header alone of an unmasked (server) frame whose payload is ``length`` bytes, so a
    large payload can be written after it without being copied (``transport.writelines``).
    Raises ValueError as encode_frame does, and for a negative length."""

def encode_close(code: int, reason: str = "", *, mask: Buffer | None = None) -> bytes:
    """A close frame (RFC 6455 §5.5.1). code 1005 gives an empty payload; the reason is cut to fit
    125 bytes on a UTF-8 character boundary."""

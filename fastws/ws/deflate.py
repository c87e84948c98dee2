"""permessage-deflate (RFC 7692): negotiation, and (de)compression of whole messages.

Owns reading the client's offers, choosing the parameters, the response header, and one
connection's zlib compressor and decompressor. Knows nothing of frames (the codec reports a
compressed message with FLAG_COMPRESSED and sets RSV1 on request), sockets, asyncio or ASGI.

Memory: both zlib objects are created on first use and dropped after each message in a
direction without context takeover, so an idle connection that negotiated deflate holds only
this small object. With context takeover, a connection that has sent a compressed message
holds a compressor of (1 << (wbits + 2)) + (1 << (MEM_LEVEL + 9)) bytes of zlib state (32 KiB
at the default 12 bits), and one that has received one holds a decompressor of about
(1 << wbits) + 7 KiB. docs/deflate.md has the measured figures.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

# Our side's window and zlib memory level: websockets' server defaults, chosen for memory
# (RFC 7692 lets a server use a smaller window than the client allows, §7.1.2.1).
DEFAULT_WINDOW_BITS = 12
MEM_LEVEL = 5
# Decompressed output is produced at most this many bytes at a time, so ws_max_size is
# enforced while inflating: a small bomb never makes us allocate more than the limit.
INFLATE_CHUNK = 65536

_EMPTY_BLOCK = b"\x00\x00\xff\xff"  # RFC 7692 §7.2.1: removed after compression, added back before


class MessageTooBig(Exception):
    """The decompressed message exceeds the size limit (close with 1009)."""


class InvalidCompressedData(Exception):
    """The payload is not a valid DEFLATE stream (close with 1007)."""


@dataclass
class Agreement:
    """Negotiated parameters, from the server's side."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None  # as stated in the response
    client_max_window_bits: int | None = None  # as stated in the response

    def response(self) -> bytes:
        """The Sec-WebSocket-Extensions value for the 101 response."""
        parts = ["permessage-deflate"]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts).encode("ascii")


def _parse_offer(text: str) -> tuple[str, dict[str, str | None]] | None:
    """``name; a; b=1`` -> (name, {a: None, b: "1"}); None when a parameter repeats."""
    pieces = [p.strip() for p in text.split(";")]
    params: dict[str, str | None] = {}
    for piece in pieces[1:]:
        if not piece:
            continue
        key, sep, value = piece.partition("=")
        key = key.strip().lower()
        if key in params:
            return None  # RFC 7692 §7: a repeated parameter makes the offer invalid
        params[key] = value.strip().strip('"') if sep else None
    return pieces[0].lower(), params


def _bits(value: str | None) -> int | None:
    if value is None or not value.isdigit() or len(value) > 2:
        return None
    bits = int(value)
    return bits if 8 <= bits <= 15 else None


def negotiate(offers: list[str]) -> Agreement | None:
    """Pick the first permessage-deflate offer we can honour (RFC 7692 §5, §7.1).

    Args:
        offers: the Sec-WebSocket-Extensions entries, one extension each, in the client's order.

    Returns:
        The agreement to use and answer with, or None: then the connection goes on without
        compression. An offer we cannot honour (unknown or repeated parameter, bad value,
        server_max_window_bits=8, which zlib cannot produce) is declined, never fatal.
    """
    for offer in offers:
        parsed = _parse_offer(offer)
        if parsed is None or parsed[0] != "permessage-deflate":
            continue
        params = parsed[1]
        agreement = Agreement()
        ok = True
        for key, value in params.items():
            if key == "server_no_context_takeover" and value is None:
                agreement.server_no_context_takeover = True
            elif key == "client_no_context_takeover" and value is None:
                agreement.client_no_context_takeover = True
            elif key == "server_max_window_bits":
                bits = _bits(value)
                if bits is None or bits == 8:
                    ok = False
                else:
                    agreement.server_max_window_bits = min(bits, DEFAULT_WINDOW_BITS)
            elif key == "client_max_window_bits":
                if value is None:
                    # The client can limit its window: ask for ours, to keep our
                    # decompressor small (§7.1.2.2).
                    agreement.client_max_window_bits = DEFAULT_WINDOW_BITS
                else:
                    bits = _bits(value)
                    if bits is None:
                        ok = False
                    else:
                        agreement.client_max_window_bits = min(bits, DEFAULT_WINDOW_BITS)
            else:
                ok = False
            if not ok:
                break
        if ok:
            return agreement
    return None


def _compressor(window_bits: int) -> zlib._Compress:
    return zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits, MEM_LEVEL)


def _strip(out: bytes) -> bytes:
    return out[:-4] if out.endswith(_EMPTY_BLOCK) else out


def compress_alone(data: bytes, window_bits: int) -> bytes:
    """A message's compressed payload that refers to no earlier message: what a server
    without context takeover sends. Any peer that negotiated permessage-deflate with a window
    of at least ``window_bits`` inflates it the same, whatever history its decompressor holds,
    so the publish/subscribe hub compresses a publish once for all such subscribers."""
    compressor = _compressor(window_bits)
    return _strip(compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))


class PerMessageDeflate:
    """One connection's compression state, created from an Agreement."""

    __slots__ = (
        "_agreement",
        "_compressor",
        "_decompressor",
        "_compress_bits",
        "_decompress_bits",
    )

    def __init__(self, agreement: Agreement) -> None:
        self._agreement = agreement
        self._compress_bits = agreement.server_max_window_bits or DEFAULT_WINDOW_BITS
        # Without a negotiated limit the client may use up to 15 bits (§7.1.2.2).
        self._decompress_bits = max(9, agreement.client_max_window_bits or 15)
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    @property
    def window_bits(self) -> int:
        """The window our compressor uses (what compress_alone() needs for this peer)."""
        return self._compress_bits

    def compress(self, data: bytes) -> bytes:
        """One message's payload for a frame with RSV1 set (RFC 7692 §7.2.1)."""
        if self._agreement.server_no_context_takeover:
            return compress_alone(data, self._compress_bits)
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = _compressor(self._compress_bits)
        return _strip(compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))

    def forget_history(self) -> None:
        """Start a fresh compression context at the next message: the peer's window now ends
        with bytes this compressor did not write (a publish compressed once for many, see
        compress_alone()), so back-references into our own earlier output would point at the
        wrong bytes. Dropping the context is always allowed (§7.1.1.1: context takeover is
        the server's to use or not)."""
        self._compressor = None

    def decompress(self, data: bytes, max_size: int) -> bytes:
        """The message from a compressed payload (RSV1 was set on its first frame).

        Args:
            max_size: largest decompressed size accepted; 0 or less: no limit.

        Raises:
            MessageTooBig: the output would exceed max_size (checked chunk by chunk).
            InvalidCompressedData: not a DEFLATE stream.
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = zlib.decompressobj(-self._decompress_bits)
        chunks = []
        total = 0
        pending = data + _EMPTY_BLOCK
        try:
            while True:
                chunk = decompressor.decompress(pending, INFLATE_CHUNK)
                total += len(chunk)
                if 0 < max_size < total:
                    self._decompressor = None
                    raise MessageTooBig
                chunks.append(chunk)
                pending = decompressor.unconsumed_tail
                # A full chunk may leave output inside zlib even with no input left.
                if not pending and len(chunk) < INFLATE_CHUNK:
                    break
        except zlib.error as exc:
            self._decompressor = None
            raise InvalidCompressedData(str(exc)) from None
        if self._agreement.client_no_context_takeover or decompressor.eof:
            # No context to keep (or the client ended its stream with BFINAL=1).
            self._decompressor = None
        else:
            self._decompressor = decompressor
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

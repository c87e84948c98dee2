"""Opcodes, close codes and the choice of codec implementation.

Picks the codec once, at import: the pure-Python twin (fastws._speedups_py) when the
FASTWS_NO_EXTENSIONS environment variable is set, else the compiled fastws._speedups, falling back
to the twin when the extension is not built (FASTWS_REQUIRE_EXTENSIONS makes that an error).
Everything else imports the codec's names from here, never from either module directly.
"""

from __future__ import annotations

import enum
import os


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


if _flag("FASTWS_NO_EXTENSIONS"):
    from fastws import _speedups_py as codec
else:
    try:
        from fastws import _speedups as codec  # type: ignore[no-redef]
    except ImportError:
        if _flag("FASTWS_REQUIRE_EXTENSIONS"):
            raise
        from fastws import _speedups_py as codec

IMPLEMENTATION: str = codec.IMPLEMENTATION
FrameReader = codec.FrameReader
apply_mask = codec.apply_mask
apply_mask_inplace = codec.apply_mask_inplace
encode_frame = codec.encode_frame
encode_frame_header = codec.encode_frame_header
encode_close = codec.encode_close
FLAG_COMPRESSED: int = codec.FLAG_COMPRESSED


class Opcode(enum.IntEnum):
    """RFC 6455 §5.2 opcodes."""

    CONT = codec.OP_CONT
    TEXT = codec.OP_TEXT
    BINARY = codec.OP_BINARY
    CLOSE = codec.OP_CLOSE
    PING = codec.OP_PING
    PONG = codec.OP_PONG


class CloseCode(enum.IntEnum):
    """RFC 6455 §7.4.1 status codes (and the IANA registry's 1012-1014)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013

"""glibc malloc thresholds for large WebSocket messages (Linux with glibc only).

Every message reaches the app as a new ``bytes`` object, and a large one is a large ``malloc``.
glibc serves those from the heap only once its *dynamic* thresholds have grown, and gives the
heap's free top back to the kernel above a trim threshold of twice the largest block it has
seen freed. Messages of 1 MiB on a few connections churn more than that, so the heap is
trimmed and grown again over and over, and each message's pages fault in anew when the codec
unmasks into them (35-45 minor faults per 1 MiB message in ``bench/``).

``tune()`` starts the process where glibc's own rule would settle after freeing one message
of ``--ws-max-size``: messages up to that size come from the heap, and the heap keeps up to
twice that much free memory instead of trimming it. The thresholds a user sets through the
environment (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or
``GLIBC_TUNABLES``) win: then nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit builds).
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024

_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError, AttributeError):  # no such name here: not glibc
        return False


def user_has_set(environ: Mapping[str, str]) -> bool:
    """Whether the environment already tunes glibc malloc's thresholds."""
    return any(name in environ for name in _USER_SETTINGS) or "glibc.malloc." in environ.get(
        "GLIBC_TUNABLES", ""
    )


def thresholds(max_message: int) -> tuple[int, int]:
    """``(mmap threshold, trim threshold)`` in bytes for messages up to ``max_message``."""
    mmap_threshold = min(max(max_message, 128 * 1024), MMAP_THRESHOLD_MAX)
    return mmap_threshold, 2 * mmap_threshold


def tune(max_message: int, environ: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """Set this process's thresholds for messages up to ``max_message`` bytes.

    Returns:
        The ``(mmap, trim)`` thresholds set, or ``None`` when nothing was changed (not glibc,
        or the environment sets them).
    """
    if not is_glibc() or user_has_set(environ):
        return None
    mmap_threshold, trim_threshold = thresholds(max_message)
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    if not mallopt(M_MMAP_THRESHOLD, mmap_threshold):
        return None
    mallopt(M_TRIM_THRESHOLD, trim_threshold)
    return mmap_threshold, trim_threshold

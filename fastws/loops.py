"""Event-loop selection: ``--loop auto|asyncio|uvloop``.

Owns creating the loop the server runs on and naming it for the startup log. It does not
install event-loop policies or run the loop; the server does that with the loop it gets.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Literal

LoopType = Literal["auto", "asyncio", "uvloop"]


def uvloop_available() -> bool:
    """Return whether ``uvloop`` can be imported, without importing it."""
    return importlib.util.find_spec("uvloop") is not None


def new_event_loop(loop: LoopType | str) -> asyncio.AbstractEventLoop:
    """Create a fresh event loop of the requested kind; the caller owns and closes it.

    Args:
        loop: ``"auto"`` (uvloop when it imports, else asyncio), ``"asyncio"`` or
            ``"uvloop"``.

    Returns:
        A new, not yet running loop. It is not set as the current loop; call
        ``asyncio.set_event_loop`` (or run it with ``asyncio.Runner``) next.

    Raises:
        RuntimeError: ``"uvloop"`` was asked for and uvloop cannot be imported.
        ValueError: ``loop`` is not one of the three names.
    """
    if loop == "asyncio":
        return asyncio.new_event_loop()
    if loop == "auto":
        try:
            import uvloop
        except ImportError:
            return asyncio.new_event_loop()
        return uvloop.new_event_loop()
    if loop == "uvloop":
        try:
            import uvloop
        except ImportError as exc:
            raise RuntimeError(
                "--loop uvloop was requested but uvloop is not installed; "
                "install it with `pip install uvloop` or use --loop asyncio"
            ) from exc
        return uvloop.new_event_loop()
    raise ValueError(f"unknown loop {loop!r}; choose one of auto, asyncio, uvloop")


def loop_name(loop_obj: asyncio.AbstractEventLoop) -> str:
    """Name ``loop_obj`` for the startup log: ``"uvloop"`` for a uvloop loop, else ``"asyncio"``."""
    module = type(loop_obj).__module__
    return "uvloop" if module == "uvloop" or module.startswith("uvloop.") else "asyncio"

"""fastws: a Cython-accelerated ASGI server for WebSocket-heavy applications."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]

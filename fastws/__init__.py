"""fastws: a Cython-accelerated ASGI server for WebSocket-heavy applications."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Config", "__version__", "run"]

if TYPE_CHECKING:
    from fastws.config import Config
    from fastws.main import run


def __getattr__(name: str) -> Any:
    # Imported on first use, so `fastws --version` and `import fastws` stay cheap.
    if name == "Config":
        from fastws.config import Config

        return Config
    if name == "run":
        from fastws.main import run

        return run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

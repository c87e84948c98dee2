"""fastws: a Cython-accelerated ASGI server for WebSocket-heavy applications.

Some modules are also built as extension modules of the same names from their own Python
sources (setup.py: COMPILED_SOURCES), which Python imports in preference to the sources.
FASTWS_NO_EXTENSIONS=1 asks for the pure-Python build everywhere: fastws.ws.frames then picks
the codec's twin, and the finder below makes the imports of those modules load the sources even
where the compiled modules sit beside them (all or none: the compiled WebSocket connection
extends the compiled session, the compiled pubsub expects compiled connections).
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING, Any

# The modules compiled from their own source (setup.py builds one extension for each).
COMPILED_SOURCES = (
    "fastws.http11",
    "fastws.http.protocol",
    "fastws.ws.session",
    "fastws.ws.protocol",
    "fastws.ws.pubsub",
)

if _os.environ.get("FASTWS_NO_EXTENSIONS", "") not in ("", "0"):
    import importlib.abc as _abc
    import importlib.util as _util
    import sys as _sys

    class _Sources(_abc.MetaPathFinder):
        root = _os.path.dirname(_os.path.dirname(__file__))

        def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
            if fullname not in COMPILED_SOURCES:
                return None
            source = _os.path.join(self.root, *fullname.split(".")) + ".py"
            return _util.spec_from_file_location(fullname, source)

    _sys.meta_path.insert(0, _Sources())

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

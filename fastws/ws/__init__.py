"""WebSocket side of fastws: RFC 6455 framing, handshake, deflate and the asyncio protocol.

protocol.py is also built as an extension module of the same name (setup.py), which Python
imports in preference to the source. FASTWS_NO_EXTENSIONS=1 asks for the pure-Python build
everywhere: frames.py then picks the codec's twin, and the finder below makes the import of
fastws.ws.protocol load the source even where the compiled module sits beside it.
"""

import os as _os

if _os.environ.get("FASTWS_NO_EXTENSIONS", "") not in ("", "0"):
    import importlib.abc as _abc
    import importlib.util as _util
    import sys as _sys

    class _ProtocolSource(_abc.MetaPathFinder):
        name = __name__ + ".protocol"
        path = _os.path.join(_os.path.dirname(__file__), "protocol.py")

        def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
            if fullname != self.name:
                return None
            return _util.spec_from_file_location(fullname, self.path)

    _sys.meta_path.insert(0, _ProtocolSource())

"""WebSocket side of fastws: RFC 6455 framing, handshake, deflate, the session and its shell.

session.py, protocol.py and pubsub.py are also built as extension modules of the same names
(setup.py), which Python imports in preference to the sources. FASTWS_NO_EXTENSIONS=1 asks for
the pure-Python build everywhere: frames.py then picks the codec's twin, and the finder below
makes the imports of fastws.ws.session, .protocol and .pubsub load the sources even where the
compiled modules sit beside them (all or none: the compiled connection extends the compiled
session, and the compiled pubsub expects compiled connections).
"""

import os as _os

if _os.environ.get("FASTWS_NO_EXTENSIONS", "") not in ("", "0"):
    import importlib.abc as _abc
    import importlib.util as _util
    import sys as _sys

    class _ProtocolSource(_abc.MetaPathFinder):
        names = {__name__ + ".session", __name__ + ".protocol", __name__ + ".pubsub"}
        folder = _os.path.dirname(__file__)

        def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
            if fullname not in self.names:
                return None
            leaf = fullname.rsplit(".", 1)[1]
            return _util.spec_from_file_location(fullname, _os.path.join(self.folder, leaf + ".py"))

    _sys.meta_path.insert(0, _ProtocolSource())

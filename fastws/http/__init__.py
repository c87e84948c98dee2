"""HTTP/1.1 side of fastws: the asyncio protocol around httptools.

protocol.py is also built as an extension module of the same name (setup.py);
FASTWS_NO_EXTENSIONS=1 loads its source instead (see fastws/__init__.py).
"""

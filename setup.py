"""Build script: declares the compiled extensions.

- fastws._speedups: the codec (fastws/_speedups.pyx; its pure twin is fastws/_speedups_py.py).
- fastws.ws.session and fastws.ws.protocol: the RFC 6455 session and the WebSocket connection
  that extends it, compiled from their own Python sources in Cython's pure-Python mode with the
  field and method types in the .pxd beside each. Python imports the compiled modules in
  preference to the .py beside them.
- fastws.ws.pubsub: the pub/sub topics and their fan-out loop, the same way (pubsub.pxd), so the
  loop over subscribers calls the connection's C methods.

Switches (environment variables):
  FASTWS_NO_EXTENSIONS=1    build a pure-Python package (both fall back to their Python source)
  FASTWS_CYTHON_ANNOTATE=1  write an .html annotation next to each generated C file
  FASTWS_CYTHON_TRACE=1     compile with line tracing, for coverage of the compiled sources
  FASTWS_DEBUG=1            -O0 -g, for gdb and sanitizers
"""

from __future__ import annotations

import os

from setuptools import setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def extensions() -> list:
    if _flag("FASTWS_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    macros = []
    directives = {}
    if _flag("FASTWS_CYTHON_TRACE"):
        macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]
        directives["linetrace"] = True
    args = ["-O0", "-g"] if _flag("FASTWS_DEBUG") else ["-O3"]
    codec = Extension(
        "fastws._speedups",
        ["fastws/_speedups.pyx"],
        include_dirs=["fastws"],
        define_macros=macros,
        extra_compile_args=args,
    )
    protocol = Extension(
        "fastws.ws.protocol",
        ["fastws/ws/protocol.py"],
        define_macros=macros,
        extra_compile_args=args,
    )
    session = Extension(
        "fastws.ws.session",
        ["fastws/ws/session.py"],
        define_macros=macros,
        extra_compile_args=args,
    )
    pubsub = Extension(
        "fastws.ws.pubsub",
        ["fastws/ws/pubsub.py"],
        define_macros=macros,
        extra_compile_args=args,
    )
    return cythonize(
        [codec, session, protocol, pubsub],
        annotate=_flag("FASTWS_CYTHON_ANNOTATE"),
        compiler_directives=directives,
    )


setup(ext_modules=extensions())

"""Build script: declares the compiled extensions.

- fastws._speedups: the codec (fastws/_speedups.pyx; its pure twin is fastws/_speedups_py.py).
- fastws.ws.session and fastws.ws.protocol: the RFC 6455 session and the WebSocket connection
  that extends it, compiled from their own Python sources in Cython's pure-Python mode with the
  field and method types in the .pxd beside each. Python imports the compiled modules in
  preference to the .py beside them.
- fastws.http.protocol: the HTTP/1.1 connection and each request's ASGI cycle, the same way
  (protocol.pxd beside it), so that httptools' callbacks and the ASGI calls of a request read
  typed fields; fastws.http11, the response heads, with its header checks as C loops
  (http11.pxd).
- fastws.ws.pubsub: the pub/sub topics and their fan-out loop, the same way (pubsub.pxd), so the
  loop over subscribers calls the connection's C methods.

The list of modules compiled from source is fastws.COMPILED_SOURCES (fastws/__init__.py), which
also says how FASTWS_NO_EXTENSIONS=1 loads their sources at run time.

Switches (environment variables):
  FASTWS_NO_EXTENSIONS=1    build a pure-Python package (each module falls back to its source)
  FASTWS_CYTHON_ANNOTATE=1  write an .html annotation next to each generated C file
  FASTWS_CYTHON_TRACE=1     compile with line tracing, for coverage of the compiled sources
  FASTWS_DEBUG=1            -O0 -g, for gdb and sanitizers
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from setuptools import setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _compiled_sources() -> list[str]:
    """fastws.COMPILED_SOURCES, read from fastws/__init__.py without importing the package."""
    tree = ast.parse(Path(__file__).with_name("fastws").joinpath("__init__.py").read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and getattr(node.targets[0], "id", "") == "COMPILED_SOURCES"
        ):
            return list(ast.literal_eval(node.value))
    raise SystemExit("fastws/__init__.py has no COMPILED_SOURCES")


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
    # Modules compiled from their own Python source, each with the .pxd beside it.
    compiled = [
        Extension(
            name, [name.replace(".", "/") + ".py"], define_macros=macros, extra_compile_args=args
        )
        for name in _compiled_sources()
    ]
    return cythonize(
        [codec, *compiled],
        annotate=_flag("FASTWS_CYTHON_ANNOTATE"),
        compiler_directives=directives,
    )


setup(ext_modules=extensions())

"""Fixtures for the codec unit tests: the same test runs on both codec implementations.

`codec` is parametrised over the pure-Python twin (fastws._speedups_py) and the compiled module
(fastws._speedups). A missing compiled module skips its half of the run, unless
FASTWS_REQUIRE_EXTENSIONS is set (as in CI), where the ImportError fails the test instead.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

CODEC_MODULES = {"python": "fastws._speedups_py", "cython": "fastws._speedups"}


def _require_extensions() -> bool:
    return os.environ.get("FASTWS_REQUIRE_EXTENSIONS", "") not in ("", "0")


def load_codec(name: str) -> ModuleType:
    """Import one implementation by its IMPLEMENTATION name, or skip when it is not built."""
    try:
        return importlib.import_module(CODEC_MODULES[name])
    except ImportError:
        if _require_extensions():
            raise
        pytest.skip("extension not built")


@pytest.fixture(params=list(CODEC_MODULES))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """One codec implementation; every codec test runs once per implementation."""
    return load_codec(request.param)


@pytest.fixture(scope="session")
def both_codecs() -> tuple[ModuleType, ModuleType]:
    """(pure-Python, compiled), for tests that feed both the same input and compare."""
    return load_codec("python"), load_codec("cython")

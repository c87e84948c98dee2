"""Both codec implementations expose exactly the contract in fastws/_speedups.pyi.

The stub is parsed with `ast`, so a name or parameter added to the contract is checked here
without editing this file.
"""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastws

STUB = Path(fastws.__file__).with_name("_speedups.pyi")
# Type aliases in the stub (Buffer = bytes | ..., Message = tuple[...]) describe arguments for
# type checkers; they are not runtime values of the module.
TYPE_ALIASES = {"Buffer", "Message"}


def _stub() -> ast.Module:
    return ast.parse(STUB.read_text(encoding="utf-8"))


def stub_constants() -> list[str]:
    return [
        node.target.id
        for node in _stub().body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    ]


def stub_functions() -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in _stub().body if isinstance(node, ast.FunctionDef)}


def stub_classes() -> dict[str, ast.ClassDef]:
    return {node.name: node for node in _stub().body if isinstance(node, ast.ClassDef)}


def stub_aliases() -> list[str]:
    return [
        target.id
        for node in _stub().body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    ]


def expected_params(fn: ast.FunctionDef, skip_self: bool = False) -> list[tuple[str, str, object]]:
    """[(name, kind, default)] from a stub signature; default is `inspect.Parameter.empty` or a
    literal value."""
    args = fn.args
    out: list[tuple[str, str, object]] = []
    positional = [*args.posonlyargs, *args.args]
    defaults = [inspect.Parameter.empty] * (len(positional) - len(args.defaults))
    defaults += [ast.literal_eval(d) for d in args.defaults]
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=False)):
        if skip_self and i == 0:
            continue
        kind = "POSITIONAL_ONLY" if arg in args.posonlyargs else "POSITIONAL_OR_KEYWORD"
        out.append((arg.arg, kind, default))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=False):
        value = inspect.Parameter.empty if default is None else ast.literal_eval(default)
        out.append((arg.arg, "KEYWORD_ONLY", value))
    return out


def actual_params(obj) -> list[tuple[str, str, object]]:
    sig = inspect.signature(obj)
    return [(p.name, p.kind.name, p.default) for p in sig.parameters.values()]


# -- names ----------------------------------------------------------------------------------


def test_stub_is_parsed():
    assert {"IMPLEMENTATION", "OP_TEXT", "FLAG_COMPRESSED"} <= set(stub_constants())
    assert {"apply_mask", "apply_mask_inplace", "encode_frame", "encode_close"} <= set(
        stub_functions()
    )
    assert set(stub_classes()) == {"FrameReader"}
    assert set(stub_aliases()) == TYPE_ALIASES


def test_every_public_name_exists(codec):
    names = [*stub_constants(), *stub_functions(), *stub_classes()]
    missing = [name for name in names if not hasattr(codec, name)]
    assert missing == []


def test_no_public_name_beyond_the_stub(codec):
    allowed = {*stub_constants(), *stub_functions(), *stub_classes(), *TYPE_ALIASES}
    public = {
        name
        for name in dir(codec)
        if not name.startswith("_") and not inspect.ismodule(getattr(codec, name))
    }
    # Names imported for annotations (typing helpers) are not part of the API either.
    public -= {"annotations", "Union", "codecs"}
    assert public <= allowed


def test_implementation_name(codec, request):
    assert codec.IMPLEMENTATION == request.node.callspec.params["codec"]
    assert codec.IMPLEMENTATION in ("python", "cython")


def test_opcode_constants(codec):
    assert (codec.OP_CONT, codec.OP_TEXT, codec.OP_BINARY) == (0x0, 0x1, 0x2)
    assert (codec.OP_CLOSE, codec.OP_PING, codec.OP_PONG) == (0x8, 0x9, 0xA)
    assert codec.FLAG_COMPRESSED == 0x40
    for name in stub_constants():
        if name != "IMPLEMENTATION":
            assert type(getattr(codec, name)) is int, name


# -- signatures -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(stub_functions()))
def test_function_signature_matches_stub(codec, name):
    fn = getattr(codec, name)
    expected = expected_params(stub_functions()[name])
    try:
        actual = actual_params(fn)
    except (ValueError, TypeError):
        pytest.fail(f"{codec.__name__}.{name} exposes no signature (compile with binding=True)")
    assert actual == expected


def test_frame_reader_members(codec):
    cls = stub_classes()["FrameReader"]
    reader = codec.FrameReader()
    for node in cls.body:
        if isinstance(node, ast.AnnAssign):
            assert hasattr(reader, node.target.id), node.target.id
        elif isinstance(node, ast.FunctionDef) and not node.name.startswith("__"):
            assert hasattr(reader, node.name), node.name
            if any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list):
                assert not callable(getattr(reader, node.name)), node.name
                with pytest.raises(AttributeError):  # read-only
                    setattr(reader, node.name, 0)
            else:
                assert callable(getattr(reader, node.name)), node.name


def test_frame_reader_attributes_are_writable(codec):
    reader = codec.FrameReader()
    reader.max_size = 10
    assert reader.max_size == 10
    assert reader.pending == 0


@pytest.mark.parametrize("method", ["get_buffer", "buffer_updated", "feed"])
def test_frame_reader_method_signatures(codec, method):
    expected = expected_params(_method(method), skip_self=True)
    try:
        actual = actual_params(getattr(codec.FrameReader(), method))
    except (ValueError, TypeError):
        pytest.skip("method exposes no signature")  # covered by the keyword-call test below
    assert actual == expected


def _method(name: str) -> ast.FunctionDef:
    for node in stub_classes()["FrameReader"].body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise LookupError(name)


def test_frame_reader_constructor_takes_the_stub_keywords(codec):
    """cdef classes expose no __init__ signature: check the keywords by calling."""
    params = expected_params(_method("__init__"), skip_self=True)
    assert all(kind == "KEYWORD_ONLY" for _, kind, _ in params)
    reader = codec.FrameReader(**{name: default for name, _, default in params})
    assert reader.max_size == 16777216
    assert reader.close_code is None and reader.close_reason == ""
    reader = codec.FrameReader(
        max_size=5, expect_mask=False, rsv1_allowed=True, scratch=bytearray(4096)
    )
    assert reader.max_size == 5
    with pytest.raises(TypeError):
        codec.FrameReader(5)  # keyword-only
    with pytest.raises(TypeError):
        codec.FrameReader(max_sizes=5)


def test_frame_reader_methods_accept_stub_keywords(codec):
    reader = codec.FrameReader()
    buf = reader.get_buffer(sizehint=10)
    buf[:2] = b"\x89\x80"
    buf[2:6] = b"\x00\x00\x00\x00"
    assert reader.buffer_updated(nbytes=6) == [(codec.OP_PING, b"")]
    assert reader.feed(data=b"\x8a\x80\x00\x00\x00\x00") == [(codec.OP_PONG, b"")]


def test_functions_accept_stub_keywords(codec):
    """Call every function with keywords named as in the stub."""
    key = b"\x01\x02\x03\x04"
    assert codec.apply_mask(data=b"\x01\x02", key=key) == b"\x00\x00"
    buf = bytearray(b"\x01\x02\x03\x04")
    codec.apply_mask_inplace(buf=buf, key=key, start=0, length=4)
    assert buf == bytes(4)
    assert (
        codec.encode_frame(opcode=1, payload="a", fin=True, rsv1=False, mask=None) == b"\x81\x01a"
    )
    assert codec.encode_close(code=1000, reason="", mask=None) == b"\x88\x02\x03\xe8"


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.apply_mask("abcd", b"abcd"),
        lambda c: c.apply_mask(b"abcd", "abcd"),
        lambda c: c.apply_mask_inplace(bytearray(4), "abcd"),
        lambda c: c.encode_frame(2, b"x", mask="abcd"),
        lambda c: c.encode_close(1000, "x", mask="abcd"),
        lambda c: c.FrameReader().feed("\x81\x80abcd"),
    ],
    ids=["apply_mask-data", "apply_mask-key", "inplace-key", "frame-mask", "close-mask", "feed"],
)
def test_str_is_not_a_buffer(codec, call):
    """Only encode_frame's payload may be a str; everywhere the stub says Buffer, a str is a
    TypeError in both implementations (the pure one gets this from memoryview()/bytes())."""
    with pytest.raises(TypeError):
        call(codec)


# -- implementation choice in fastws.ws.frames ----------------------------------------------


def _in_child(code: str, **env: str) -> str:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("FASTWS_")}
    child_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=child_env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _frames_implementation(**env: str) -> str:
    code = "import fastws.ws.frames as f; print(f.IMPLEMENTATION, f.codec.__name__)"
    return _in_child(code, **env)


def _protocol_build(**env: str) -> str:
    # Imported the way the server imports it: through fastws.http.protocol's upgrade path.
    return _in_child(
        "import fastws.http.protocol, fastws.ws.protocol as p, pathlib;"
        "print(p.COMPILED, pathlib.Path(p.__file__).suffix)",
        **env,
    )


def test_frames_picks_python_with_no_extensions():
    assert _frames_implementation(FASTWS_NO_EXTENSIONS="1") == "python fastws._speedups_py"


def test_frames_picks_python_even_when_extensions_are_required_but_disabled():
    out = _frames_implementation(FASTWS_NO_EXTENSIONS="1", FASTWS_REQUIRE_EXTENSIONS="1")
    assert out == "python fastws._speedups_py"


def test_frames_picks_cython_when_built(both_codecs):
    assert _frames_implementation() == "cython fastws._speedups"
    assert _frames_implementation(FASTWS_NO_EXTENSIONS="0") == "cython fastws._speedups"


# -- the WebSocket protocol: compiled from its own source, or that source as is ---------------


def test_protocol_runs_its_source_with_no_extensions():
    assert _protocol_build(FASTWS_NO_EXTENSIONS="1") == "False .py"
    assert _protocol_build(FASTWS_NO_EXTENSIONS="1", FASTWS_REQUIRE_EXTENSIONS="1") == "False .py"


def test_protocol_is_compiled_when_built(both_codecs):
    assert _protocol_build() == "True .so"
    assert _protocol_build(FASTWS_REQUIRE_EXTENSIONS="1") == "True .so"


def _sources_build(**env: str) -> str:
    # Each module of fastws.COMPILED_SOURCES: the suffix of the file it was imported from.
    return _in_child(
        "import fastws, importlib, pathlib;"
        "print(' '.join(pathlib.Path(importlib.import_module(m).__file__).suffix"
        " for m in fastws.COMPILED_SOURCES))",
        **env,
    )


def test_every_compiled_source_runs_as_python_with_no_extensions():
    import fastws

    assert _sources_build(FASTWS_NO_EXTENSIONS="1") == " ".join(
        [".py"] * len(fastws.COMPILED_SOURCES)
    )


def test_every_compiled_source_is_compiled_when_built(both_codecs):
    import fastws

    assert "fastws.http.protocol" in fastws.COMPILED_SOURCES
    assert _sources_build() == " ".join([".so"] * len(fastws.COMPILED_SOURCES))

"""The module layout's rules (README "Layout"), read from the sources' import statements:
no import circle among fastws's modules (lazy imports inside functions included), ws/ imports
nothing from http/, server.py imports neither the supervisor nor the reloader, the sans-I/O
modules import no asyncio, and transport.py imports nothing from fastws."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fastws"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module (fastws's or not) that the file imports, anywhere in it, except under
    ``if TYPE_CHECKING:`` (annotations only, never run)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    package = (
        module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    )
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1]
                    + ([base] if base else [])
                )
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {
    name: {m for m in imports_of(path) if m in MODULES and m != name and m != "fastws"}
    for name, path in MODULES.items()
}


def test_no_import_circle():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(GRAPH[name]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                pytest.fail("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_ws_imports_nothing_from_http():
    for name, deps in GRAPH.items():
        if name.startswith("fastws.ws"):
            assert not {d for d in deps if d == "fastws.http" or d.startswith("fastws.http.")}, name


def test_server_imports_neither_supervisor_nor_reloader():
    assert not GRAPH["fastws.server"] & {"fastws.supervisor", "fastws.reload", "fastws.main"}


@pytest.mark.parametrize(
    "name", ["fastws.ws.session", "fastws.ws.handshake", "fastws.ws.origins", "fastws.http11"]
)
def test_sans_io_modules_import_no_asyncio(name):
    assert not {m for m in imports_of(MODULES[name]) if m.split(".")[0] == "asyncio"}, name


def test_transport_imports_nothing_from_fastws():
    assert not {m for m in imports_of(MODULES["fastws.transport"]) if m.startswith("fastws")}


def test_the_graph_sees_lazy_imports():
    # fastws.main imports the supervisor inside run(): the checks above must see such imports.
    assert "fastws.supervisor" in GRAPH["fastws.main"]

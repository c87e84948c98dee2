"""fastws.importer: "module:attr" strings, and errors that say which part was wrong."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fastws.importer import ImportFromStringError, import_from_string


@pytest.fixture
def pkg_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary directory on sys.path; modules written there are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(path: Path, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))


def test_imports_module_attribute(pkg_dir: Path) -> None:
    write(pkg_dir / "imp_plain.py", "app = object()\n")
    module = __import__("imp_plain")
    assert import_from_string("imp_plain:app") is module.app


def test_walks_dotted_module_and_dotted_attribute(pkg_dir: Path) -> None:
    write(pkg_dir / "imp_pkg" / "__init__.py", "")
    write(
        pkg_dir / "imp_pkg" / "mod.py",
        """
        class Holder:
            class Inner:
                value = 42
        """,
    )
    assert import_from_string("imp_pkg.mod:Holder.Inner.value") == 42


def test_non_string_is_returned_unchanged() -> None:
    app = object()
    assert import_from_string(app) is app


@pytest.mark.parametrize("bad", ["main", "main:", ":app", "", "a:b:c"])
def test_malformed_string_names_the_expected_form(bad: str) -> None:
    with pytest.raises(ImportFromStringError) as info:
        import_from_string(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert "'<module>:<attribute>'" in message


def test_called_factory_syntax_suggests_factory_flag() -> None:
    with pytest.raises(ImportFromStringError, match="--factory") as info:
        import_from_string("main:create_app()")
    assert "'main:create_app'" in str(info.value)


def test_relative_module_is_rejected() -> None:
    with pytest.raises(ImportFromStringError, match="relative"):
        import_from_string(".main:app")


def test_missing_module_names_it() -> None:
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("fastws_no_such_module:app")
    assert "Could not import module 'fastws_no_such_module'" in str(info.value)


def test_missing_parent_package_names_both(pkg_dir: Path) -> None:
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("fastws_no_such_pkg.sub:app")
    message = str(info.value)
    assert "'fastws_no_such_pkg.sub'" in message
    assert "no module named 'fastws_no_such_pkg'" in message


def test_missing_attribute_names_attribute_and_module(pkg_dir: Path) -> None:
    write(pkg_dir / "imp_noattr.py", "other = 1\n")
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("imp_noattr:app")
    message = str(info.value)
    assert "Attribute 'app' not found in module 'imp_noattr'" in message


def test_missing_nested_attribute_names_the_missing_step(pkg_dir: Path) -> None:
    write(pkg_dir / "imp_nested.py", "class app:\n    pass\n")
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("imp_nested:app.router.inner")
    assert "Attribute 'router' not found in 'imp_nested:app'" in str(info.value)


def test_error_raised_by_the_module_itself_propagates(pkg_dir: Path) -> None:
    write(pkg_dir / "imp_boom.py", "raise RuntimeError('boom at import')\n")
    with pytest.raises(RuntimeError, match="boom at import"):
        import_from_string("imp_boom:app")


def test_missing_dependency_of_the_module_is_not_reported_as_missing_module(
    pkg_dir: Path,
) -> None:
    # The app exists; what it imports does not. That traceback belongs to the user.
    write(pkg_dir / "imp_dep.py", "import fastws_missing_dependency\napp = 1\n")
    with pytest.raises(ModuleNotFoundError) as info:
        import_from_string("imp_dep:app")
    assert not isinstance(info.value, ImportFromStringError)
    assert info.value.name == "fastws_missing_dependency"

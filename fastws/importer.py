"""Loading an object from a ``"package.module:attr.sub"`` import string.

Owns parsing the string, importing the module and walking the attribute path, with
errors that say which part was wrong. It does not touch ``sys.path`` (the CLI and
``Config.load`` put ``--app-dir`` there), call factories, or log: ``Config.load`` does.
"""

from __future__ import annotations

import importlib
from typing import Any


class ImportFromStringError(Exception):
    """The import string is malformed, its module does not exist, or an attribute is missing.

    An exception raised by the module's own code while it is imported is not wrapped in
    this error; it propagates unchanged so its traceback points at the real problem.
    """


def import_from_string(import_str: Any) -> Any:
    """Return the object an import string names; a non-string is returned as it is.

    Args:
        import_str: ``"<module>:<attribute>"``, where the module may be dotted
            (``pkg.mod``) and so may the attribute (``app.router``); or an object.

    Returns:
        The object found, or ``import_str`` itself when it is not a string.

    Raises:
        ImportFromStringError: the string lacks a module or attribute part, the module
            (or a package on its path) cannot be found, or an attribute is missing.
        Exception: whatever the module raised while being imported, including an
            ``ImportError`` for a module *it* imports.
    """
    if not isinstance(import_str, str):
        return import_str

    module_str, sep, attrs_str = import_str.partition(":")
    if not sep or not module_str or not attrs_str or ":" in attrs_str:
        raise ImportFromStringError(
            f"Import string {import_str!r} must have the form '<module>:<attribute>', "
            "e.g. 'main:app'."
        )
    if module_str.startswith("."):
        raise ImportFromStringError(
            f"Import string {import_str!r}: relative module names are not supported."
        )
    if attrs_str.endswith("()"):
        raise ImportFromStringError(
            f"Import string {import_str!r}: name the factory without calling it "
            f"('{module_str}:{attrs_str[:-2]}') and pass --factory."
        )
    if any(not part.isidentifier() for part in attrs_str.split(".")):
        raise ImportFromStringError(
            f"Import string {import_str!r}: {attrs_str!r} is not a dotted attribute path."
        )

    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        # Only a missing `module_str` (or a package above it) is our error to report;
        # a missing module that the app itself imports must keep its traceback.
        missing = exc.name or ""
        if missing != module_str and not module_str.startswith(missing + "."):
            raise
        detail = "" if missing == module_str else f" (no module named {missing!r})"
        raise ImportFromStringError(
            f"Could not import module {module_str!r}{detail} for import string {import_str!r}."
        ) from None

    instance: Any = module
    walked = module_str
    for attr in attrs_str.split("."):
        try:
            instance = getattr(instance, attr)
        except AttributeError:
            where = f"module {module_str!r}" if walked == module_str else f"{walked!r}"
            raise ImportFromStringError(
                f"Attribute {attr!r} not found in {where} for import string {import_str!r}."
            ) from None
        walked = f"{walked}:{attr}" if walked == module_str else f"{walked}.{attr}"
    return instance

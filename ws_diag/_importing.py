"""Import an app given as ``module:attribute``, like uvicorn does (``ws-diag bench``, the server runner)."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ImportFromStringError", "import_from_string"]


class ImportFromStringError(Exception):
    """``module:attribute`` could not be imported."""


def import_from_string(target: str) -> Any:
    """Import ``module:attribute`` (dotted attributes allowed), like uvicorn does."""
    module_name, sep, attrs = target.partition(":")
    if not sep or not module_name or not attrs:
        msg = f"expected 'module:attribute', got {target!r}"
        raise ImportFromStringError(msg)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name and not module_name.startswith(f"{exc.name}."):
            raise  # a missing import inside the user's module: their traceback is the useful one
        msg = f"could not import module {module_name!r}"
        raise ImportFromStringError(msg) from exc
    instance: Any = module
    try:
        for attr in attrs.split("."):
            instance = getattr(instance, attr)
    except AttributeError:
        msg = f"attribute {attrs!r} not found in module {module_name!r}"
        raise ImportFromStringError(msg) from None
    return instance

"""Modules imported when first used, so that a command starts without the libraries it does not
need: `bulk-rating sql "SELECT 1"` never touches Polars or the models, which take about half a
second to import.

A module that is imported lazily is named twice, so that type checkers still see the real one:

    if TYPE_CHECKING:
        import polars as pl
    else:
        pl = lazy.Module("polars")
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class Module:
    """Stands for the module `name`; reading any of its attributes imports it (under the import
    system's lock, so threads may share it) and gives the module's own attribute."""

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        module = self._module
        if module is None:
            module = importlib.import_module(self._name)
            self._module = module
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<lazily imported module {self._name!r}>"

"""The architecture as the README draws it, checked on the code: one module touches DuckDB, one
the terminal, and the front end sits on the services, never the other way round."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "bulk_rating"


def _imports(module: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "bulk_rating":
                found |= {f"bulk_rating.{alias.name}" for alias in node.names}
    return found


def _importers(prefixes: tuple[str, ...]) -> list[str]:
    return sorted(
        module.relative_to(PACKAGE).as_posix()
        for module in PACKAGE.rglob("*.py")
        if any(name.split(".")[0] in prefixes or name in prefixes for name in _imports(module))
    )


def test_only_the_store_touches_duckdb() -> None:
    assert _importers(("duckdb",)) == ["store.py"]


def test_only_the_command_line_touches_the_terminal() -> None:
    assert _importers(("rich", "typer", "click")) == ["cli.py"]


def test_only_the_http_front_end_touches_the_web_framework() -> None:
    assert _importers(("fastapi", "starlette", "uvicorn")) == ["server.py"]


def test_nothing_below_the_front_ends_imports_them() -> None:
    """The command line and the HTTP API call the same services; neither calls the other."""
    assert _importers(("bulk_rating.cli",)) == ["__main__.py"]
    assert _importers(("bulk_rating.server",)) == ["cli.py"]
    assert _importers(("bulk_rating.services",)) == ["__init__.py", "cli.py", "server.py"]

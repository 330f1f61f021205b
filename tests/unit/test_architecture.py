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
    assert {module.split("/")[0] for module in _importers(("duckdb",))} == {"store"}


def test_only_the_command_line_touches_the_terminal() -> None:
    assert _importers(("rich", "typer", "click")) == ["cli.py"]


def test_only_the_http_front_end_touches_the_web_framework() -> None:
    assert _importers(("fastapi", "starlette", "uvicorn")) == ["server.py"]


def test_only_the_cluster_engine_touches_spark() -> None:
    assert _importers(("pyspark",)) == ["spark.py"]


def test_nothing_below_the_front_ends_imports_them() -> None:
    """The command line and the HTTP API call the same services; neither calls the other."""
    assert _importers(("bulk_rating.cli",)) == ["__main__.py"]
    assert _importers(("bulk_rating.server",)) == ["cli.py"]
    assert _importers(("bulk_rating.services",)) == ["__init__.py", "cli.py", "server.py"]


# The flow, stage by stage: a module imports modules of its own stage or of earlier ones, never
# of a later one. The foundation is what every stage speaks (money, models, frames, errors, ...);
# `catalog` plans a run's catalog and contracts with the pricing and balance models before them;
# `kernel` runs the rating's statements (from resolve, validate, rate) through the store;
# `buckets` runs it over buckets of contracts on other processes, `spark` on a Spark cluster.
FLOW: list[tuple[str, set[str]]] = [
    (
        "foundation",
        {
            "errors",
            "settings",
            "money",
            "models",
            "frames",
            "schedule",
            "progress",
            "interrupts",
            "output",
            "markup",
            "lazy",
            "environment",
        },
    ),
    ("load", {"load"}),
    ("pricing", {"pricing"}),
    ("resolve", {"resolve"}),
    ("validate", {"validate", "validate.batch", "validate.catalog", "validate.rows"}),
    ("assemble", {"assemble"}),
    ("rate", {"rate"}),
    ("balances", {"balances"}),
    ("plan", {"catalog"}),
    ("reconcile", {"reconcile"}),
    (
        "store",
        {
            "store",
            "store.base",
            "store.catalog",
            "store.rating",
            "store.ledger",
            "store.runs",
            "store.invoices",
            "store.outbox",
            "store.reconciliation",
            "store.buckets",
        },
    ),
    ("kernel", {"kernel"}),
    ("buckets", {"buckets"}),
    ("cluster", {"spark"}),
    ("documents", {"report", "documents", "results"}),
    ("pipeline", {"pipeline"}),
    ("services", {"services"}),
    ("front ends", {"pages", "cli", "server", "samples", "__main__", "__init__"}),
]


def _module_name(path: Path) -> str:
    name = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
    return name.removesuffix(".__init__")


def _package_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules `path` imports (a name taken from the package root that is no
    module, such as __version__, is none)."""
    found = set()
    for name in _imports(path):
        if name.startswith("bulk_rating."):
            inner = name.removeprefix("bulk_rating.")
            if inner in modules:
                found.add(inner)
    return found - {_module_name(path)}


def test_every_module_has_a_place_in_the_flow() -> None:
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    placed = set().union(*(stage for _, stage in FLOW))
    assert modules - placed == set(), "place new modules in FLOW"
    assert placed - modules == set(), "FLOW names modules that are gone"


def test_no_module_imports_a_later_stage() -> None:
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    stage_of = {module: n for n, (_, stage) in enumerate(FLOW) for module in stage}
    backwards = sorted(
        f"{_module_name(path)} ({FLOW[stage_of[_module_name(path)]][0]}) imports {imported}"
        f" ({FLOW[stage_of[imported]][0]})"
        for path in PACKAGE.rglob("*.py")
        for imported in _package_imports(path, modules)
        if stage_of[imported] > stage_of[_module_name(path)]
    )
    assert backwards == []

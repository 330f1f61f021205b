"""Import throughput against a bare-DuckDB floor, on generated hourly usage.

    .venv/bin/python bench/bench.py [--sizes 1M,10M] [--shape realistic] [--runs 5] [--out bench-data]

The data sets (`bulk_rating.samples.generate`, seeded) come in two shapes:

- `realistic` (the default), shaped as billing exports are: three months of hourly usage of four
  products (FLAT, TIERED, FLAT priced per region, TIERED priced per region; the first one's price
  changes mid-month). Half the customers are dense (every product every hour, 4 rows an hour) and
  half sparse (some products during business hours on weekdays): about 5,200 rows a customer.
  Customer, contract, product and rate card ids are 36-character UUID text; the rows come in
  time order (hour, customer, product) in one Parquet file of 1M-row row groups. Sizes 1M, 10M,
  100M and 1B differ only in the number of customers (1B only when asked for).
- `short`, the shape measured before: ids such as `cus_0001`, short enough for DuckDB to store
  inline (12 bytes or less), which makes every hash and join cheaper than real ids do; files
  split between customers and rows sorted by customer; fewer customers, more products and
  months. Sizes 1M, 10M and 100M.

For each size, a data set is generated once (cached in `<out>/<shape>-<size>/data/`, the short
shape's in `<out>/<size>/data/`, rebuilt only when its parameters change), then two commands run
as separate processes, alternated (a b, b a, a b, ...), `--runs` times each:

  (a) import: `bulk-rating import <data> --db <fresh file> --as-of <after the history>`, as
              `make import` runs it (counts and totals are read from the database after)
  (b) floor:  one DuckDB statement into a fresh file,
              `CREATE TABLE usage AS SELECT * FROM read_parquet('<data>/usage/*.parquet')`,
              then `CHECKPOINT`: what loading the same rows costs with nothing else done.

Each process is started by a small launcher that times it and reads its peak RSS from
`getrusage(RUSAGE_CHILDREN)` (the launcher has that one child only). The claim is the ratio of
medians measured in the same run on the same machine, never one absolute time, and beside it the
median of each run's own ratio (its import and floor ran back to back). Results go to
stdout as a table and to `<out>/results.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from bulk_rating import samples

SEED = 7
SPARK_MASTER = "local[2]"
START = "2024-01-01"
REALISTIC: dict[str, Any] = {
    "products": 4,
    "months": 3,
    "ids": "uuid",
    "order": "time",
    "single_file": True,
}
SHORT: dict[str, Any] = {"ids": "short", "order": "customer", "single_file": False}
# The parameters of `samples.generate` by shape and size; `samples.rows_for` gives the exact row
# count of each (seed 7, from 2024-01-01). Realistic customer counts are those nearest the size.
SHAPES: dict[str, dict[str, dict[str, Any]]] = {
    "realistic": {
        "1M": {"customers": 193, **REALISTIC},  # 1,002,742 rows
        "10M": {"customers": 1_927, **REALISTIC},  # 10,003,604 rows
        "100M": {"customers": 19_296, **REALISTIC},  # 99,996,728 rows
        "1B": {"customers": 192_998, **REALISTIC},  # 999,997,414 rows
    },
    "short": {
        "1M": {"customers": 100, "products": 8, "months": 3, **SHORT},  # 1,017,250 rows
        "10M": {"customers": 200, "products": 10, "months": 12, **SHORT},  # 10,179,270 rows
        "100M": {"customers": 1000, "products": 20, "months": 12, **SHORT},  # 101,702,320 rows
    },
}
# Manifests written before the shape options existed do not name them: they had these values.
OPTION_DEFAULTS: dict[str, Any] = {"ids": "short", "order": "customer", "single_file": False}

# Runs one command with its output in files; prints its wall time and peak RSS as JSON.
LAUNCHER = """
import json, resource, subprocess, sys, time
timeout, stdout_path, stderr_path, *command = sys.argv[1:]
with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
    began = time.perf_counter()
    try:
        code = subprocess.run(command, stdout=out, stderr=err, timeout=float(timeout)).returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    seconds = time.perf_counter() - began
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
print(json.dumps({"exit": code, "seconds": seconds, "peak_rss_kib": peak}))
"""

FLOOR = """
import sys, duckdb
db, pattern = sys.argv[1:]
con = duckdb.connect(db)
source = "'" + pattern.replace("'", "''") + "'"
con.execute(f"CREATE TABLE usage AS SELECT * FROM read_parquet({source})")
con.execute("CHECKPOINT")
con.close()
"""


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def bulk_rating_command() -> list[str]:
    script = Path(sys.executable).parent / "bulk-rating"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bulk_rating"]


def cache_folder(out: Path, shape: str, size: str) -> Path:
    # The short shape keeps the folders it had before there were shapes: its caches stay in use.
    return out / size if shape == "short" else out / f"{shape}-{size}"


def dataset(
    out: Path, shape: str, size: str, seed: int
) -> tuple[Path, dict[str, Any], float | None]:
    """The cached data set of `size`, generated when absent or made with other parameters."""
    params: dict[str, Any] = {"seed": seed, "start": START, **SHAPES[shape][size]}
    cache = cache_folder(out, shape, size)
    folder, manifest = cache / "data", cache / "generated.json"
    if manifest.exists():
        generated: dict[str, Any] = json.loads(manifest.read_text())
        same = generated.get("samples_version") == samples.SAMPLES_VERSION and all(
            generated.get(key, OPTION_DEFAULTS.get(key)) == value for key, value in params.items()
        )
        if same and all((folder / name).exists() for name in generated["files"]):
            note(f"{size}: using the data set in {folder} ({generated['rows']:,} rows)")
            return folder, generated, None
    shutil.rmtree(folder, ignore_errors=True)
    note(f"{size}: generating {params} into {folder} ...")
    began = time.perf_counter()
    generated = samples.generate(folder, **params)
    seconds = time.perf_counter() - began
    manifest.write_text(json.dumps(generated, indent=1) + "\n")
    note(
        f"{size}: {generated['rows']:,} rows in {len(generated['files']) - 2} Parquet file(s), {seconds:.1f} s"
    )
    return folder, generated, seconds


def as_of_after(generated: dict[str, Any]) -> str:
    history_end = datetime.fromisoformat(generated["history_end"].replace("Z", "+00:00"))
    return (history_end + timedelta(days=1)).date().isoformat()


def launch(command: list[str], scratch: Path, timeout: float) -> dict[str, Any]:
    stdout, stderr = scratch / "stdout", scratch / "stderr"
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(timeout), str(stdout), str(stderr), *command],
        capture_output=True,
        text=True,
        check=True,
    )
    measured: dict[str, Any] = json.loads(done.stdout)
    measured["stdout"] = stdout.read_text(errors="replace")
    measured["stderr"] = stderr.read_text(errors="replace")
    return measured


def run_once(kind: str, data: Path, as_of: str, out: Path, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=out, prefix=f"run-{kind}-") as tmp:
        scratch = Path(tmp)
        db = scratch / "bench.duckdb"
        if kind == "import":
            command = [
                *bulk_rating_command(),
                *("import", str(data), "--db", str(db), "--as-of", as_of),
            ]
        elif kind == "spark":
            command = [
                *bulk_rating_command(),
                *("import", str(data), "--db", str(db), "--as-of", as_of, "--json"),
                *("--engine", "spark", "--spark-master", SPARK_MASTER),
            ]
        else:
            command = [sys.executable, "-c", FLOOR, str(db), str(data / "usage" / "*.parquet")]
        measured = launch(command, scratch, timeout)
        stdout, stderr = measured.pop("stdout"), measured.pop("stderr")
        measured["ok"] = measured["exit"] == 0
        measured["db_bytes"] = sum(f.stat().st_size for f in scratch.glob("bench.duckdb*"))
        if kind == "floor" and measured["ok"]:
            con = duckdb.connect(str(db), read_only=True)
            try:
                row = con.execute("SELECT count(*) FROM usage").fetchone()
                measured["rows_loaded"] = None if row is None else row[0]
            finally:
                con.close()
        if kind == "spark" and measured["ok"]:
            measured["stage_seconds"] = json.loads(stdout)["summary"]["stage_seconds"]
        if kind in ("import", "spark") and measured["ok"]:
            con = duckdb.connect(str(db), read_only=True)
            try:
                row = con.execute(
                    """SELECT (SELECT count(*) FROM invoices), (SELECT count(*) FROM invoice_line_items),
                              (SELECT sum(windows) FROM invoice_line_items), (SELECT sum(total) FROM invoices)"""
                ).fetchone()
                assert row is not None
                measured["summary"] = {
                    "invoices": row[0],
                    "line_items": row[1],
                    "windows": row[2],
                    "total": str(row[3]),
                }
            finally:
                con.close()
        if not measured["ok"]:
            tail = [line for line in (stderr or stdout).strip().splitlines() if line.strip()]
            measured["error"] = "\n".join(tail[-6:]) or "(no output)"
    return measured


def median(runs: list[dict[str, Any]], field: str) -> float | None:
    values = [r[field] for r in runs if r["ok"]]
    return statistics.median(values) if values else None


def bench_size(
    shape: str, size: str, runs: int, out: Path, seed: int, timeout: float, engine: str = "local"
) -> dict[str, Any]:
    data, generated, generation_seconds = dataset(out, shape, size, seed)
    as_of = as_of_after(generated)
    # local: the import against the floor; spark: the Spark engine against the local import
    first, second = ("import", "floor") if engine == "local" else ("spark", "import")
    measured: dict[str, list[dict[str, Any]]] = {first: [], second: []}
    for run in range(runs):
        order = (first, second) if run % 2 == 0 else (second, first)
        for kind in order:
            note(f"{size}: run {run + 1}/{runs} {kind} ...")
            result = run_once(kind, data, as_of, out, timeout)
            status = "ok" if result["ok"] else f"FAILED (exit {result['exit']})"
            note(f"{size}: run {run + 1}/{runs} {kind}: {result['seconds']:.2f} s, {status}")
            measured[kind].append(result)
    rows = int(generated["rows"])
    summary: dict[str, Any] = {
        "shape": shape,
        "size": size,
        "params": {
            key: generated.get(key, OPTION_DEFAULTS.get(key))
            for key in ("customers", "products", "months", "seed", *OPTION_DEFAULTS)
        },
        "rows": rows,
        "files": len(generated["files"]) - 2,
        "parquet_bytes": sum(f.stat().st_size for f in (data / "usage").glob("*.parquet")),
        "as_of": as_of,
        "generation_seconds": generation_seconds,
    }
    for kind, results in measured.items():
        seconds = median(results, "seconds")
        summary[kind] = {
            "runs": results,
            "ok_runs": sum(r["ok"] for r in results),
            "median_seconds": seconds,
            "rows_per_second": None if not seconds else rows / seconds,
            "peak_rss_mib": max((r["peak_rss_kib"] for r in results), default=0) / 1024,
        }
    loaded: set[int] = {r["rows_loaded"] for r in measured.get("floor", []) if r["ok"]}
    if loaded - {rows}:
        note(f"{size}: the floor loaded {sorted(loaded)} rows, the generator wrote {rows:,}")
    summaries = {
        r.get("summary", {}).get("total") for k in measured for r in measured[k] if r["ok"]
    }
    if engine != "local" and len(summaries) > 1:
        note(f"{size}: the engines' totals differ: {sorted(map(str, summaries))}")
    a, b = summary[first]["median_seconds"], summary[second]["median_seconds"]
    summary["ratio_import_to_floor"] = None if a is None or not b else a / b
    # Each run's two commands ran one after the other: their ratio is measured on the
    # machine as it was then, which a shared machine's drift between runs does not move.
    paired = [
        i["seconds"] / f["seconds"]
        for i, f in zip(measured[first], measured[second], strict=True)
        if i["ok"] and f["ok"]
    ]
    summary["paired_ratios"] = paired
    summary["median_paired_ratio"] = statistics.median(paired) if paired else None
    return summary


def _cell(value: float | None, spec: str) -> str:
    return "failed" if value is None else format(value, spec)


def spark_table(results: list[dict[str, Any]], shape: str, runs: int) -> list[str]:
    """The Spark engine against the local one, and where the Spark run's time goes."""
    lines = [
        f"{shape} data; Spark {SPARK_MASTER} against the local engine; medians of {runs} run(s)"
        " each, alternated; paired: the median of each run's spark/local",
        f"{'size':>5} {'rows':>12} {'spark s':>8} {'local s':>8} {'spark MiB':>10}"
        f" {'local MiB':>10} {'spark/local':>12} {'paired':>7}",
    ]
    for r in results:
        a, b = r["spark"], r["import"]
        lines.append(
            f"{r['size']:>5} {r['rows']:>12,} {_cell(a['median_seconds'], '.2f'):>8}"
            f" {_cell(b['median_seconds'], '.2f'):>8} {a['peak_rss_mib']:>10,.0f}"
            f" {b['peak_rss_mib']:>10,.0f} {_cell(r['ratio_import_to_floor'], '.2f'):>12}"
            f" {_cell(r['median_paired_ratio'], '.2f'):>7}"
        )
        stages: dict[str, list[float]] = {}
        for run in a["runs"]:
            for stage, seconds in run.get("stage_seconds", {}).items():
                stages.setdefault(stage, []).append(seconds)
        lines.append(
            "      spark run's stages (medians): "
            + ", ".join(f"{k} {statistics.median(v):.2f} s" for k, v in stages.items())
        )
    return lines


def table(results: list[dict[str, Any]], shape: str, runs: int) -> list[str]:
    header = (
        f"{'size':>5} {'rows':>12} {'import s':>9} {'floor s':>8} {'import rows/s':>14} "
        f"{'floor rows/s':>13} {'import MiB':>11} {'floor MiB':>10} {'import/floor':>13}"
        f" {'paired':>7}"
    )
    lines = [
        f"{shape} data; medians of {runs} run(s) each, alternated; peak RSS is the highest run;"
        " paired: the median of each run's import/floor",
        header,
    ]
    for r in results:
        a, b = r["import"], r["floor"]
        lines.append(
            f"{r['size']:>5} {r['rows']:>12,} {_cell(a['median_seconds'], '.2f'):>9} "
            f"{_cell(b['median_seconds'], '.2f'):>8} {_cell(a['rows_per_second'], ',.0f'):>14} "
            f"{_cell(b['rows_per_second'], ',.0f'):>13} "
            f"{a['peak_rss_mib']:>11,.0f} {b['peak_rss_mib']:>10,.0f} "
            f"{_cell(r['ratio_import_to_floor'], '.2f'):>13}"
            f" {_cell(r['median_paired_ratio'], '.2f'):>7}"
        )
    for r in results:
        for kind in ("import", "floor"):
            for number, run in enumerate(r[kind]["runs"], start=1):
                if not run["ok"]:
                    lines.append(f"\n{r['size']} {kind} run {number} failed (exit {run['exit']}):")
                    lines.extend(f"    {line}" for line in run["error"].splitlines())
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shape", choices=list(SHAPES), default="realistic", help="the shape of the data sets"
    )
    parser.add_argument(
        "--sizes",
        default="1M,10M",
        help="comma-separated, of the shape's sizes: "
        + "; ".join(f"{shape}: {','.join(sizes)}" for shape, sizes in SHAPES.items()),
    )
    parser.add_argument("--runs", type=int, default=5, help="runs of each command per size")
    parser.add_argument("--out", type=Path, default=Path("bench-data"), help="data and results")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per run")
    parser.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="local: the import against the floor; spark: Spark local[2] against the local import",
    )
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    presets = SHAPES[args.shape]
    unknown = [s for s in sizes if s not in presets]
    if unknown or not sizes or args.runs < 1:
        parser.error(f"{args.shape} sizes must be among {list(presets)} and runs at least 1")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    results = [
        bench_size(args.shape, size, args.runs, out, args.seed, args.timeout, args.engine)
        for size in sizes
    ]
    show = spark_table if args.engine == "spark" else table
    for line in show(results, args.shape, args.runs):
        say(line)
    document = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "polars": pl.__version__,
        },
        "shape": args.shape,
        "engine": args.engine,
        "runs": args.runs,
        "sizes": results,
    }
    (out / "results.json").write_text(json.dumps(document, indent=1) + "\n")
    say(f"\nwritten {out / 'results.json'}")
    kinds = ("import", "floor") if args.engine == "local" else ("spark", "import")
    failed = any(r[kind]["ok_runs"] < args.runs for r in results for kind in kinds)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

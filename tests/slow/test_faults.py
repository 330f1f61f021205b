"""Faults: a second writer is refused at once; an import killed at any moment leaves all or nothing."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import ROOT, query

from bulk_rating import samples

pytestmark = pytest.mark.slow

KILLS = 12


def _import(data: Path, db: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bulk_rating",
            "import",
            str(data),
            "--db",
            str(db),
            "--as-of",
            "2025-01-01",
            "--json",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("faults") / "set"
    samples.generate(directory, customers=120, products=8, months=6, seed=9)
    return directory


def _stored(db: Path) -> tuple[int, int, int]:
    runs, invoices, windows = query(
        db,
        """
        SELECT (SELECT count(*) FROM _runs), (SELECT count(*) FROM invoices WHERE origin = 'HISTORICAL_IMPORT'),
               (SELECT count(*) FROM _priced_windows)""",
    )[0]
    return runs, invoices, windows


def test_a_second_writer_gets_a_clear_error_at_once(tmp_path: Path, data: Path) -> None:
    db = tmp_path / "store.duckdb"
    first = _import(data, db)
    deadline = time.monotonic() + 30
    while not db.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the first import holds the file now
    started = time.monotonic()
    second = subprocess.run(
        [sys.executable, "-m", "bulk_rating", "import", str(data), "--db", str(db), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    waited = time.monotonic() - started
    _, first_err = first.communicate(timeout=120)

    assert first.returncode == 0, first_err
    assert second.returncode == 2, second.stdout + second.stderr
    assert '"code": "DATABASE_LOCKED"' in second.stdout
    assert waited < 30, "a locked file must be refused, not waited for"
    assert _stored(db)[0] == 1


def test_an_import_killed_at_any_moment_leaves_all_or_nothing(tmp_path: Path, data: Path) -> None:
    db = tmp_path / "store.duckdb"
    complete = _import(data, tmp_path / "reference.duckdb")
    complete.communicate(timeout=120)
    expected = _stored(tmp_path / "reference.duckdb")
    rng = random.Random(20261125)
    for _ in range(KILLS):
        victim = _import(data, db)
        time.sleep(rng.uniform(0.2, 4.0))
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)
        if db.exists():
            state = _stored(db)
            assert state in {(0, 0, 0), expected}, f"half a run stored: {state}"
    finisher = _import(data, db)
    out, err = finisher.communicate(timeout=120)
    assert finisher.returncode == 0, err
    assert _stored(db) == expected
    again = _import(data, db)
    out, _ = again.communicate(timeout=120)
    assert '"status": "already_imported"' in out
    assert _stored(db) == expected


INTERRUPTS = 10


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_import_says_so_and_its_exit_code_matches_what_is_stored(
    tmp_path: Path, data: Path, stop: signal.Signals
) -> None:
    """Ctrl-C (or SIGTERM) at any moment: either the run was rolled back and the command says so
    with exit 130, or it was committed and the command reports it whole with exit 0. Never an
    internal error, and never a stored run reported as failed."""
    reference = tmp_path / "reference.duckdb"
    started = time.monotonic()
    _import(data, reference).communicate(timeout=120)
    whole = time.monotonic() - started  # moments are drawn over this machine's whole import
    expected = _stored(reference)
    rng = random.Random(20261207 + int(stop))
    outcomes = set()
    for n in range(INTERRUPTS):
        db = tmp_path / f"store{n}.duckdb"
        victim = _import(data, db)
        time.sleep(whole * rng.uniform(0.15, 1.1))
        victim.send_signal(stop)
        out, err = victim.communicate(timeout=60)
        assert victim.returncode in (0, 130), err
        assert "internal error" not in err, err
        assert "Traceback" not in err, err
        state = _stored(db) if db.exists() else (0, 0, 0)
        if victim.returncode == 0:
            assert state == expected, err
            assert '"status": "imported"' in out
        else:
            assert state == (0, 0, 0), f"exit 130 but stored {state}"
            assert "interrupted" in err
        outcomes.add(victim.returncode)
    assert 130 in outcomes, "no interrupt landed before the commit: the test proved nothing"

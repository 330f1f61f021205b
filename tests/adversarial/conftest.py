"""The adversarial suite's checks: a user's mistake or a machine fault gives a clean message and
its exit code, never a traceback or an "internal error", and a refused run leaves the database
(file and WAL) byte for byte as it was."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import SAMPLES, CliResult, file_digest, run_process

ACME_AS_OF = "2024-08-15"


@dataclass(frozen=True)
class Snapshot:
    """The bytes of a database file and its WAL, to compare after a refused run."""

    db: Path
    file: str | None
    wal: str | None

    @classmethod
    def of(cls, db: Path) -> Snapshot:
        return cls(db, file_digest(db), file_digest(Path(f"{db}.wal")))

    def unchanged(self) -> bool:
        return Snapshot.of(self.db) == self


def assert_clean(result: CliResult, exit_code: int, *named: str) -> None:
    """The exit code expected, no traceback, no internal error, and every `named` text said."""
    said = result.stdout + result.stderr
    assert result.exit_code == exit_code, said
    assert "Traceback" not in said, said
    assert "internal error" not in said.lower(), said
    assert "INTERNAL_ERROR" not in said, said
    unwrapped = "".join(said.split())  # the terminal wraps long lines anywhere
    for text in named:
        assert "".join(text.split()) in unwrapped, f"{text!r} not in {said!r}"


@pytest.fixture(scope="session")
def _stored_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("stored") / "store.duckdb"
    done = run_process("import", SAMPLES / "acme", "--db", db, "--as-of", ACME_AS_OF)
    assert done.exit_code == 0, done.stderr
    return db


@pytest.fixture
def stored(tmp_path: Path, _stored_template: Path) -> Path:
    """A store holding the acme sample, imported as of 2024-08-15 by the real CLI (a copy of
    one made per session: the file is checkpointed, so it has no WAL)."""
    db = tmp_path / "store.duckdb"
    shutil.copy(_stored_template, db)
    return db


def copy_sample(name: str, to: Path) -> Path:
    shutil.copytree(SAMPLES / name, to)
    return to

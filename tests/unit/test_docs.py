from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

from bulk_rating.errors import ISSUE_CODES, BulkRatingError


def test_every_error_code_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [code for code in ISSUE_CODES if f"`{code}`" not in readme]
    assert missing == []


def test_every_error_of_a_command_is_documented_in_the_readme() -> None:
    """The codes a command exits with (not rows of the issues frame) are in the README too."""
    readme = (ROOT / "README.md").read_text()
    codes = {"NOT_A_STORE", "DATABASE_LOCKED", "DISK_FULL", "OUT_OF_MEMORY"}
    codes |= {cls.code for cls in _subclasses(BulkRatingError)} - {"INTERNAL_ERROR"}
    assert sorted(code for code in codes if f"`{code}`" not in readme) == []


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def test_the_readme_python_example_runs(tmp_path: Path) -> None:
    """The README's Python API example, run as a user would: a fresh interpreter in a folder that
    holds the samples."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "samples").symlink_to(ROOT / "data" / "samples")
    (tmp_path / "example.py").write_text(example)

    done = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "history.duckdb").exists()

"""Files the tool writes for people and other systems (exports, error lists, reports): each is
whole or absent, never half-written, and written before any state that depends on it is recorded."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from bulk_rating.errors import UsageError


def check_writable(path: Path, option: str) -> None:
    """Refuse a destination that cannot be written before any work is done: a folder that does not
    exist or cannot be written, or a path that is a folder."""
    folder = path.parent if str(path.parent) else Path()
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name", path=str(path))
    if not folder.is_dir():
        raise UsageError(f"{option} {path}: no folder {folder}", path=str(path))
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{option} {path} cannot be written (permission denied)", path=str(path))


def check_outside(path: Path, inputs: Sequence[Path], option: str) -> None:
    """Refuse to write over an input file, or into an input folder (whose next run would read
    the written file as input)."""
    target = path.resolve()
    for given in inputs:
        source = given.resolve()
        if target == source or (source.is_dir() and source in target.parents):
            raise UsageError(
                f"{option} {path} is {'an input' if target == source else 'inside the input'}"
                f" {given}; write it elsewhere",
                path=str(path),
            )


@contextlib.contextmanager
def _temporary_beside(path: Path) -> Iterator[Path]:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        yield temporary
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: Path, write: Callable[[Path], object], *, replace: bool = True) -> None:
    """Let `write` fill a temporary file beside `path`, make it durable, then move it into place
    in one step. With `replace=False` an existing file is never replaced (UsageError instead)."""
    try:
        with _temporary_beside(path) as temporary:
            write(temporary)
            with temporary.open("rb+") as handle:
                os.fsync(handle.fileno())
            if replace:
                temporary.replace(path)
            else:
                os.link(temporary, path)  # fails when `path` exists, where a rename would replace
            _sync_folder(path.parent)
    except FileExistsError as exc:
        raise UsageError(f"{path} exists already; nothing was written", path=str(path)) from exc
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", path=str(path)) from exc


def _sync_folder(folder: Path) -> None:
    descriptor = os.open(folder if str(folder) else ".", os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

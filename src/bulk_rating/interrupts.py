"""Ctrl-C and SIGTERM around the moment a run is committed.

Before the commit an interrupt rolls the run back (nothing written). From the commit on, the run
is stored: an interrupt then is held until the command has finished reporting it, so that a
stored run is never reported as failed or interrupted."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HELD = (signal.SIGINT, signal.SIGTERM)
_arrived: list[int] = []


def install() -> None:
    """Ctrl-C and SIGTERM stop the command (as KeyboardInterrupt) and are remembered: DuckDB turns
    an interrupt inside a query into an ordinary error, which `interrupted` then tells apart
    from a failure."""

    def stop(number: int, _frame: FrameType | None) -> None:
        _arrived.append(number)
        raise KeyboardInterrupt

    for number in HELD:
        signal.signal(number, stop)


def interrupted() -> bool:
    """Whether an interrupt stopped this process's work (see `install`)."""
    return bool(_arrived)


@contextmanager
def held() -> Iterator[list[int]]:
    """Hold SIGINT and SIGTERM for the block; yields the list of signals that arrived (they are
    then dropped: the work they would have stopped is already done). Off the main thread, where
    Python delivers no signal, it holds nothing."""
    arrived: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield arrived
        return

    def note(number: int, _frame: FrameType | None) -> None:
        arrived.append(number)

    previous = {number: signal.signal(number, note) for number in HELD}
    try:
        yield arrived
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

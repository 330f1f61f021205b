"""Ctrl-C and SIGTERM around the moment a run is committed.

Before the commit an interrupt rolls the run back (nothing written), at once: the statement
under way is interrupted too (Python runs a signal's handler only once DuckDB returns, minutes
later in a long statement). From the commit on, the run is stored: an interrupt then is held
until the command has finished reporting it, so that a stored run is never reported as failed
or interrupted."""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

HELD = (signal.SIGINT, signal.SIGTERM)
_arrived: list[int] = []
# What a signal stops at once (a database's statement under way), unless signals are held.
_stoppers: list[Callable[[], None]] = []
_holding: list[bool] = []
_watching: list[threading.Thread] = []
_previous_hooks: list[Callable[[Any], None]] = []


def install() -> None:
    """Ctrl-C and SIGTERM stop the command (as KeyboardInterrupt) and are remembered: DuckDB turns
    an interrupt inside a query into an ordinary error, which `interrupted` then tells apart
    from a failure."""

    def stop(number: int, _frame: FrameType | None) -> None:
        _arrived.append(number)
        raise KeyboardInterrupt

    for number in HELD:
        signal.signal(number, stop)
    if sys.unraisablehook is not _raise_again:
        _previous_hooks.append(sys.unraisablehook)
        sys.unraisablehook = _raise_again
    if not _watching and threading.current_thread() is threading.main_thread():
        _watch_signals()


def _raise_again(unraisable: Any) -> None:
    """A KeyboardInterrupt raised where it cannot propagate (code called back from a C
    extension, such as a type check while a library converts values) is only printed, and the
    interrupt lost: the signal is delivered again, to be raised where Python can."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _arrived:
        # from another thread, a moment later: delivered now, it would be raised in this hook
        again = signal.Signals(_arrived[-1])
        threading.Timer(0.01, _thread.interrupt_main, (again,)).start()
        return
    _previous_hooks[-1](unraisable)


def _watch_signals() -> None:
    """Python writes each signal's number to a wakeup file as it arrives, even while the main
    thread is inside a DuckDB statement; a thread reading it calls the stoppers."""
    readable, writable = os.pipe()
    os.set_blocking(writable, False)
    signal.set_wakeup_fd(writable, warn_on_full_buffer=False)

    def watch() -> None:
        while os.read(readable, 64):
            if not _holding:
                for stop in list(_stoppers):
                    stop()

    watcher = threading.Thread(target=watch, name="signals", daemon=True)
    watcher.start()
    _watching.append(watcher)


@contextmanager
def stopping(stop: Callable[[], None]) -> Iterator[None]:
    """Within the block, Ctrl-C or SIGTERM also calls `stop` at once (a connection's
    `interrupt`), unless signals are held."""
    _stoppers.append(stop)
    try:
        yield
    finally:
        _stoppers.remove(stop)


def settle() -> None:
    """The interrupt was acted on: the command exits now, as interrupted. A later signal, or the
    same one delivered again (_raise_again, a moment after it was lost in a callback), must not
    end it with another status as it exits (a KeyboardInterrupt during the interpreter's exit
    kills it by SIGINT). Off the main thread, where Python sets no handler, nothing changes."""
    if threading.current_thread() is threading.main_thread():
        for number in HELD:
            signal.signal(number, signal.SIG_IGN)


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
    _holding.append(True)
    try:
        yield arrived
    finally:
        _holding.pop()
        for number, handler in previous.items():
            signal.signal(number, handler)

"""Progress as an injected sink: core code reports stages and percentages, the CLI draws them.

The null sink is the default, so nothing below the CLI knows about terminals.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def begin(self, stage: str, rows: int | None = None) -> None:
        """A long stage starts; `rows`: how many rows it reads, when that is known (the sink can
        then show rows per second)."""

    def update(self, percent: float, part: tuple[int, int] = (1, 1)) -> None:
        """How far the stage is, 0 to 100 over all its rows, never going back; `part`: the
        partition of contracts it is reading and of how many (1 of 1: all rows at once)."""

    def end(self) -> None:
        """The stage is done (its last update said 100)."""

    @property
    def active(self) -> bool:
        """Whether anything is shown: when not, progress is not measured at all."""


class NullProgress:
    active = False

    def begin(self, stage: str, rows: int | None = None) -> None:
        pass

    def update(self, percent: float, part: tuple[int, int] = (1, 1)) -> None:
        pass

    def end(self) -> None:
        pass


NULL_PROGRESS = NullProgress()

"""Progress as an injected sink: core code reports stages and percentages, the CLI draws them.

The null sink is the default, so nothing below the CLI knows about terminals.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def begin(self, stage: str) -> None: ...

    def update(self, percent: float) -> None: ...

    def end(self) -> None: ...

    @property
    def active(self) -> bool: ...


class NullProgress:
    active = False

    def begin(self, stage: str) -> None:
        pass

    def update(self, percent: float) -> None:
        pass

    def end(self) -> None:
        pass


NULL_PROGRESS = NullProgress()

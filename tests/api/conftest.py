"""A real server on 127.0.0.1 (uvicorn in a thread, on a free port), driven by Metronome's own
Python SDK, with strict response validation: what a migration script would see."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from metronome import Metronome
from tests.conftest import running_server

from bulk_rating.server import create_app
from bulk_rating.settings import Settings

TOKEN = "test-token-1f0c"
AS_OF = "2024-08-15"


@dataclass
class Served:
    base_url: str
    db: Path
    clients: list[Metronome] = field(default_factory=list)

    def client(self, token: str = TOKEN, **options: object) -> Metronome:
        """A client of this server, closed when the test ends (an unclosed client's socket is
        reported, at random, by whichever later test the collector runs in)."""
        made = Metronome(
            bearer_token=token,
            base_url=self.base_url,
            max_retries=0,
            _strict_response_validation=True,
            **options,  # type: ignore[arg-type]
        )
        self.clients.append(made)
        return made


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    with ExitStack() as running:
        served: list[Served] = []

        def start(db: Path | None = None, as_of: str = AS_OF) -> Served:
            db = db or tmp_path / "api.duckdb"
            app = create_app(Settings(db=db, as_of=as_of), [TOKEN])
            served.append(Served(running.enter_context(running_server(app)), db))
            return served[-1]

        yield start
        for one in served:
            for client in one.clients:
                client.close()

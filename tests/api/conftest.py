"""A real server on 127.0.0.1 (uvicorn in a thread, on a free port), driven by Metronome's own
Python SDK, with strict response validation: what a migration script would see."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from metronome import Metronome

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
        """A client of this server, closed when the test ends (a connection left for the
        garbage collector is a ResourceWarning, an error in whichever test it lands in)."""
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
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []
    served: list[Served] = []

    def start(db: Path | None = None, as_of: str = AS_OF) -> Served:
        db = db or tmp_path / "api.duckdb"
        settings = Settings(db=db, as_of=as_of)
        config = uvicorn.Config(
            create_app(settings, [TOKEN]), host="127.0.0.1", port=0, log_level="warning"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        servers.append((server, thread))
        served.append(Served(f"http://127.0.0.1:{port}", db))
        return served[-1]

    yield start
    for one in served:
        for client in one.clients:
            client.close()
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plateau_sidecar.server import SidecarServer
from plateau_sidecar.store import MetricStore


@pytest.fixture
def push_server() -> Iterator[tuple[SidecarServer, MetricStore]]:
    """A real sidecar push endpoint, in process, and its store."""
    store = MetricStore("tj")
    server = SidecarServer(("127.0.0.1", 0), store, push=True)
    server.start()
    yield server, store
    server.close()

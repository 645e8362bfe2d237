from __future__ import annotations

from collections.abc import Iterator

import pytest

import plateau_client as client
from plateau_sidecar import protocol as p
from plateau_sidecar.server import SidecarServer
from plateau_sidecar.store import MetricStore


@pytest.fixture(autouse=True)
def fresh_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no warning given (the client warns once per kind of failure, so a
    test elsewhere that timed out a push would silence this one's) and the environment unset."""
    monkeypatch.setattr(client, "_warned", set())
    monkeypatch.setattr(client, "_reporter", None)
    for name in (p.ENV_METRICS_FILE, p.ENV_PUSH_URL, p.ENV_STOP_FILE):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def push_server() -> Iterator[tuple[SidecarServer, MetricStore]]:
    """A real sidecar push endpoint, in process, and its store."""
    store = MetricStore("tj")
    server = SidecarServer(("127.0.0.1", 0), store, push=True)
    server.start()
    yield server, store
    server.close()

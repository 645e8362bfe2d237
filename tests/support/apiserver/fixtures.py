"""
Pytest fixtures for the emulated API server: apiserver, kubeconfig, http, k8s, kubectl.

Register them from a conftest or a test module with `pytest_plugins = ['tests.support.apiserver.fixtures']`
(not by importing them, which would shadow them). Helpers for tests live in .testing.
"""
from __future__ import annotations

import asyncio
import os
import pathlib
from collections.abc import AsyncIterator, Iterator

import aiohttp
import kubernetes
import pytest
import pytest_asyncio

from .server import ADMIN_TOKEN, ApiServer
from .testing import KUBECTLS, Kubectl, KubectlResult, kubectl_binary


@pytest_asyncio.fixture
async def apiserver(request: pytest.FixtureRequest) -> AsyncIterator[ApiServer]:
    """A fresh emulated API server for one test, running in the test's event loop.

    Options by indirect parametrization: `@pytest.mark.parametrize('apiserver', [{'tls': True}], indirect=True)`.
    """
    async with ApiServer(**getattr(request, 'param', {})) as api:
        yield api


@pytest.fixture
def kubeconfig(apiserver: ApiServer, tmp_path: pathlib.Path) -> str:
    """An admin kubeconfig for the `apiserver` fixture."""
    return apiserver.write_kubeconfig(str(tmp_path / 'kubeconfig'))


@pytest_asyncio.fixture
async def http(apiserver: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp session on the emulator as the admin: `await http.get('/api/v1/namespaces')`."""
    connector = aiohttp.TCPConnector(ssl=apiserver.client_ssl() or True)
    async with aiohttp.ClientSession(base_url=apiserver.url, connector=connector,
                                     headers={'Authorization': f'Bearer {ADMIN_TOKEN}'}) as session:
        yield session


@pytest.fixture
def k8s(kubeconfig: str) -> Iterator[kubernetes.client.ApiClient]:
    """The official kubernetes client, configured from the admin kubeconfig."""
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    with kubernetes.client.ApiClient(configuration) as client:
        yield client


@pytest.fixture(params=KUBECTLS)
def kubectl(request: pytest.FixtureRequest, kubeconfig: str, tmp_path: pathlib.Path) -> Kubectl:
    """`await kubectl('get', 'pods', input=None)`: real kubectl against the emulator, without blocking its loop.

    Every test that uses it runs twice: with the newest kubectl and with the oldest supported minor's (1.28).
    """
    binary = kubectl_binary(request.param)
    env = {**os.environ, 'KUBECONFIG': kubeconfig, 'KUBECACHEDIR': str(tmp_path / 'kubecache')}

    async def run(*args: str, input: str | None = None, kubeconfig_path: str | None = None) -> KubectlResult:
        process = await asyncio.create_subprocess_exec(
            binary, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**env, 'KUBECONFIG': kubeconfig_path or kubeconfig})
        stdout, stderr = await process.communicate(input.encode() if input is not None else None)
        return KubectlResult(process.returncode or 0, stdout.decode(), stderr.decode())
    return run

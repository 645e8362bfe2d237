"""
An emulated Kubernetes API server for tests, on kmock over real HTTP (127.0.0.1, random port).

In-process::

    async with ApiServer() as api:
        api.write_kubeconfig(path)            # for kubectl, the kubernetes client, kopf
        api.apply(crd_yaml)                   # install CRDs, RBAC, objects as the admin
        api.inject('/status$', 'patch', 503)  # fail the next matching request
        api.calls('patch', 'jobs')            # the request log

As a process: ``python -m tests.support.apiserver --port N --kubeconfig-out PATH``.
Pytest fixtures: ``pytest_plugins = ['tests.support.apiserver.fixtures']``. See README.md here.
"""
from .control import Fault, RequestRecord
from .kubeconfig import write_kubeconfig
from .process import ApiServerProcess
from .server import ADMIN_TOKEN, ApiServer

__all__ = ['ADMIN_TOKEN', 'ApiServer', 'ApiServerProcess', 'Fault', 'RequestRecord', 'write_kubeconfig']

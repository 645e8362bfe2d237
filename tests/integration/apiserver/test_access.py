"""
Pins authentication and RBAC (kube-apiserver's verb mapping and Forbidden wording), and the
emulator's test controls: injected faults, the request log and the /_emulator/ admin endpoints.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import kubernetes
import pytest

from tests.support.apiserver import ApiServer
from tests.support.apiserver.samples import job, pod
from tests.support.apiserver.testing import rejected, send

SA = 'system:serviceaccount:plateau:plateau'
OPERATOR_ROLE = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: plateau}
rules:
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [plateau-config]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: plateau}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: plateau}
subjects:
- {kind: ServiceAccount, name: plateau, namespace: plateau}
"""

pytest_plugins = ['tests.support.apiserver.fixtures']


@pytest.fixture
def as_operator(apiserver: ApiServer) -> dict[str, str]:
    """An aiohttp session authenticated as the operator's ServiceAccount, with RBAC enforced."""
    apiserver.rbac = True
    apiserver.apply(OPERATOR_ROLE)
    return {'Authorization': f'Bearer {apiserver.service_account_token("plateau", "plateau")}'}


async def status_of(http: aiohttp.ClientSession, method: str, path: str, headers: dict[str, str],
                    body: Any = None, **params: str) -> tuple[int, Any]:
    async with http.request(method, path, json=body, headers=headers, params=params) as response:
        return response.status, await response.json()


# RBAC ----------------------------------------------------------------------------------------------

async def test_a_missing_subresource_permission_is_403_with_the_servers_wording(http, as_operator):
    await send(http, 'POST', '/apis/batch/v1/namespaces/default/jobs', job('x'))
    code, status = await status_of(http, 'PATCH', '/apis/batch/v1/namespaces/default/jobs/x/status', {
        **as_operator, 'Content-Type': 'application/merge-patch+json'}, {'status': {}})
    assert (code, status['reason']) == (403, 'Forbidden')
    assert status['message'] == ('jobs.batch "x" is forbidden: User "system:serviceaccount:plateau:plateau" cannot '
                                 'patch resource "jobs/status" in API group "batch" in the namespace "default"')
    assert status['details'] == {'name': 'x', 'group': 'batch', 'kind': 'jobs'}
    code, _ = await status_of(http, 'PATCH', '/apis/batch/v1/namespaces/default/jobs/x', {
        **as_operator, 'Content-Type': 'application/merge-patch+json'}, {'spec': {'suspend': True}})
    assert code == 200


@pytest.mark.parametrize(('method', 'path', 'params', 'allowed', 'message'), [
    ('GET', '/apis/batch/v1/jobs', {}, True, None),
    ('GET', '/apis/batch/v1/namespaces/default/jobs', {'watch': 'true', 'timeoutSeconds': '1'}, True, None),
    ('DELETE', '/apis/batch/v1/namespaces/default/jobs', {}, False,
     'jobs.batch is forbidden: User "{sa}" cannot deletecollection resource "jobs" in API group "batch" in the '
     'namespace "default"'),
    ('GET', '/api/v1/pods', {}, False,
     'pods is forbidden: User "{sa}" cannot list resource "pods" in API group "" at the cluster scope'),
    ('GET', '/api/v1/namespaces/default/configmaps/plateau-config', {}, True, None),
    ('GET', '/api/v1/namespaces/default/configmaps/other', {}, False,
     'configmaps "other" is forbidden: User "{sa}" cannot get resource "configmaps" in API group "" in the '
     'namespace "default"'),
    ('GET', '/api/v1/namespaces/default/configmaps', {'fieldSelector': 'metadata.name=plateau-config'}, True, None),
    ('GET', '/api/v1/namespaces/default/configmaps', {}, False,
     'configmaps is forbidden: User "{sa}" cannot list resource "configmaps" in API group "" in the namespace '
     '"default"'),
    ('GET', '/apis', {}, True, None),
])
async def test_verbs_scopes_and_resource_names(http, as_operator, method, path, params, allowed, message):
    code, status = await status_of(http, method, path, as_operator, **params)
    assert (code != 403) == allowed, status
    if message:
        assert status['message'] == message.format(sa=SA)


async def test_role_bindings_grant_within_their_namespace_only(apiserver, http):
    apiserver.rbac = True
    apiserver.grant('alice', [{'apiGroups': [''], 'resources': ['pods'], 'verbs': ['*']}], namespace='default')
    apiserver.add_token('alice-token', 'alice')
    headers = {'Authorization': 'Bearer alice-token'}
    assert (await status_of(http, 'POST', '/api/v1/namespaces/default/pods', headers, pod()))[0] == 201
    assert (await status_of(http, 'GET', '/api/v1/namespaces/kube-system/pods', headers))[0] == 403


async def test_unknown_tokens_are_401_and_anonymous_users_are_forbidden(apiserver, http):
    apiserver.rbac = True
    code, status = await status_of(http, 'GET', '/api/v1/pods', {'Authorization': 'Bearer nope'})
    assert (code, status['reason']) == (401, 'Unauthorized')
    code, status = await status_of(http, 'GET', '/api/v1/pods', {'Authorization': ''})
    assert code == 403 and 'User "system:anonymous" cannot list' in status['message']


@pytest.mark.parametrize('apiserver', [{'tls': True}], indirect=True)  # kubectl sends tokens only over TLS
async def test_kubectl_auth_can_i_asks_the_emulated_rbac(apiserver, kubectl, kubeconfig, tmp_path, as_operator):
    token = as_operator['Authorization'].split()[1]
    operator_config = apiserver.write_kubeconfig(str(tmp_path / 'operator-kubeconfig'), token=token)
    allowed = await kubectl('auth', 'can-i', 'patch', 'jobs', kubeconfig_path=operator_config)
    denied = await kubectl('auth', 'can-i', 'patch', 'jobs', '--subresource=status', kubeconfig_path=operator_config)
    assert (allowed.stdout.strip(), denied.stdout.strip()) == ('yes', 'no')


# fault injection and the request log -----------------------------------------------------------

async def test_injected_faults_fail_the_next_matching_requests_then_stop(apiserver, http, k8s):
    await send(http, 'POST', '/api/v1/namespaces/default/pods', pod())
    fault = apiserver.inject(r'/pods/p1$', 'patch', 503, times=2)
    core = kubernetes.client.CoreV1Api(k8s)
    for _ in range(2):
        status = await rejected(core.patch_namespaced_pod, 'p1', 'default', {'metadata': {'labels': {'a': 'b'}}})
        assert (status['code'], status['reason']) == (503, 'ServiceUnavailable')
    assert (await asyncio.to_thread(core.read_namespaced_pod, 'p1', 'default')).metadata.name == 'p1'
    patched = await asyncio.to_thread(core.patch_namespaced_pod, 'p1', 'default', {'metadata': {'labels': {'a': 'b'}}})
    assert patched.metadata.labels == {'a': 'b'} and fault.hits == 2


@pytest.mark.parametrize(('code', 'reason'), [(409, 'Conflict'), (429, 'TooManyRequests'), (500, 'InternalError'),
                                              (504, 'Timeout')])
async def test_injected_fault_codes_answer_matching_statuses(apiserver, http, code, reason):
    apiserver.inject('/api/v1/namespaces/default/pods', 'create', code)
    got, status, response = await send(http, 'POST', '/api/v1/namespaces/default/pods', pod())
    assert (got, status['reason'], status['code']) == (code, reason, code)
    if code == 429:
        assert response.headers['Retry-After'] == '1'


async def test_a_hang_delays_the_answer(apiserver, http):
    apiserver.inject('/api/v1/namespaces$', 'list', None, delay=0.5)
    started = time.monotonic()
    assert (await send(http, 'GET', '/api/v1/namespaces'))[0] == 200
    assert time.monotonic() - started >= 0.5
    apiserver.inject('/api/v1/namespaces$', 'list', None, delay=30)
    with pytest.raises(asyncio.TimeoutError):  # a client with a timeout sees a hung server
        await http.get('/api/v1/namespaces', timeout=aiohttp.ClientTimeout(total=0.3))


async def test_faults_and_the_log_are_reachable_over_http(apiserver, http):
    code, fault, _ = await send(http, 'POST', '/_emulator/faults', {'verb': 'create', 'path': '/events', 'status': 500,
                                                                   'times': 1})
    assert code == 201 and fault['hits'] == 0
    event = {'apiVersion': 'v1', 'kind': 'Event', 'metadata': {'generateName': 'x-'}, 'reason': 'Stopped',
             'involvedObject': {'kind': 'Pod', 'name': 'p', 'namespace': 'default'}}
    assert (await send(http, 'POST', '/api/v1/namespaces/default/events', event))[0] == 500
    assert (await send(http, 'POST', '/api/v1/namespaces/default/events', event))[0] == 201
    _, log, _ = await send(http, 'GET', '/_emulator/requests')
    posted = [r for r in log if r['verb'] == 'create' and r['resource'] == 'events']
    assert [r['status'] for r in posted] == [500, 201] and posted[1]['body']['reason'] == 'Stopped'
    assert posted[0]['user'] == 'kubernetes-admin'
    assert len(apiserver.calls('create', 'events')) == 2
    await send(http, 'DELETE', '/_emulator/faults')
    assert apiserver.faults == []


async def test_the_log_records_kubernetes_verbs(apiserver, http):
    await send(http, 'GET', '/api/v1/namespaces/default/pods')
    await send(http, 'GET', '/api/v1/namespaces/default/pods/missing')
    records = apiserver.calls(resource='pods')
    assert [(r.verb, r.status, r.namespace) for r in records] == [('list', 200, 'default'), ('get', 404, 'default')]

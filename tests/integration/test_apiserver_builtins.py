"""
Pins how the emulated API server treats built-in kinds where a 1.28/1.29 kube-apiserver differs
from what a client sent: fields of disabled feature gates dropped silently (SidecarContainers),
and unknown fields pruned, warned about or rejected by `fieldValidation`.
"""
from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.support.apiserver import ApiServer
from tests.support.apiserver.samples import deployment, job, pod
from tests.support.apiserver.testing import send

JOBS = '/apis/batch/v1/namespaces/default/jobs'
PODS = '/api/v1/namespaces/default/pods'
DEPLOYMENTS = '/apis/apps/v1/namespaces/default/deployments'
CRONJOBS = '/apis/batch/v1/namespaces/default/cronjobs'
MERGE = 'application/merge-patch+json'
STRATEGIC = 'application/strategic-merge-patch+json'
SIDECAR = {'name': 'sidecar', 'image': 'plateau:local', 'restartPolicy': 'Always'}
GATE_OFF = pytest.mark.parametrize('apiserver', [{'feature_gates': {'SidecarContainers': False}}], indirect=True)

pytest_plugins = ['tests.support.apiserver.fixtures']


def with_sidecar(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    spec = obj['spec'] if obj['kind'] == 'Pod' else obj['spec']['template']['spec']
    spec['initContainers'] = [dict(SIDECAR)]
    return obj


def init_containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj['spec'] if obj['kind'] == 'Pod' else obj['spec']['template']['spec']
    return spec['initContainers']


def cronjob() -> dict[str, Any]:
    template = job()['spec']
    return {'apiVersion': 'batch/v1', 'kind': 'CronJob', 'metadata': {'name': 'c1', 'namespace': 'default'},
            'spec': {'schedule': '*/5 * * * *', 'jobTemplate': {'spec': template}}}


# SidecarContainers --------------------------------------------------------------------------------

async def test_sidecar_containers_gate_is_on_by_default_as_from_1_29(apiserver, http):
    code, created, _ = await send(http, 'POST', JOBS, with_sidecar(job()))
    assert code == 201 and init_containers(created)[0]['restartPolicy'] == 'Always'


@GATE_OFF
@pytest.mark.parametrize(('path', 'obj'), [(JOBS, job()), (PODS, pod()), (DEPLOYMENTS, deployment())])
async def test_without_the_gate_an_init_containers_restart_policy_is_dropped_silently(apiserver, http, path, obj):
    code, created, response = await send(http, 'POST', path, with_sidecar(obj))
    assert code == 201  # no error, no warning: the sidecar just became an ordinary init container
    assert 'Warning' not in response.headers
    assert 'restartPolicy' not in init_containers(created)[0]
    [stored] = apiserver.objects(obj['apiVersion'], obj['kind'])
    assert init_containers(stored) == init_containers(created)


@GATE_OFF
async def test_without_the_gate_cronjob_templates_lose_it_too(apiserver, http):
    body = cronjob()
    body['spec']['jobTemplate']['spec']['template']['spec']['initContainers'] = [dict(SIDECAR)]
    code, created, _ = await send(http, 'POST', CRONJOBS, body)
    assert code == 201
    assert 'restartPolicy' not in created['spec']['jobTemplate']['spec']['template']['spec']['initContainers'][0]


@GATE_OFF
async def test_without_the_gate_updates_and_patches_drop_it_as_well(apiserver, http):
    code, _, _ = await send(http, 'POST', DEPLOYMENTS, with_sidecar(deployment()))
    assert code == 201
    patch = {'spec': {'template': {'spec': {'initContainers': [dict(SIDECAR)]}}}}
    for content_type in (STRATEGIC, MERGE):
        code, patched, _ = await send(http, 'PATCH', f'{DEPLOYMENTS}/d1', patch, content_type=content_type)
        assert code == 200 and 'restartPolicy' not in init_containers(patched)[0]
    _, current, _ = await send(http, 'GET', f'{DEPLOYMENTS}/d1')
    init_containers(current)[0]['restartPolicy'] = 'Always'
    code, updated, _ = await send(http, 'PUT', f'{DEPLOYMENTS}/d1', current)
    assert code == 200 and 'restartPolicy' not in init_containers(updated)[0]


@GATE_OFF
async def test_without_the_gate_a_dry_run_shows_the_drop(apiserver, http):
    code, created, _ = await send(http, 'POST', JOBS, with_sidecar(job()), dryRun='All')
    assert code == 201 and 'restartPolicy' not in init_containers(created)[0]
    assert apiserver.objects('batch/v1', 'Job') == []


async def test_unknown_feature_gates_are_refused():
    with pytest.raises(ValueError, match='unrecognized feature gates: NoSuchGate'):
        ApiServer(feature_gates={'NoSuchGate': True})

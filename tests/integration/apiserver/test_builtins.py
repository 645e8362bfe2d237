"""
Pins how the emulated API server treats built-in kinds where a 1.28/1.29 kube-apiserver differs
from what a client sent: fields of disabled feature gates dropped silently (SidecarContainers),
and unknown fields pruned, warned about or rejected by `fieldValidation`.
"""
from __future__ import annotations

import copy
from typing import Any

import kubernetes
import pytest

from tests.support.apiserver import ApiServer, ApiServerProcess, samples
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


def test_the_process_takes_the_gate_as_kube_apiserver_does(tmp_path):
    config = tmp_path / 'kubeconfig'
    with ApiServerProcess(config, feature_gates={'SidecarContainers': False}) as server:
        assert '--feature-gates' in server.args and 'SidecarContainers=false' in server.args
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(config), client_configuration=configuration)
        with kubernetes.client.ApiClient(configuration) as client:
            created = kubernetes.client.BatchV1Api(client).create_namespaced_job('default', with_sidecar(job()))
    assert created.spec.template.spec.init_containers[0].restart_policy is None


# fieldValidation ----------------------------------------------------------------------------------

def typo_job(name: str = 'j1') -> dict[str, Any]:
    body = job(name)
    body['spec']['template']['spec']['containers'][0]['comand'] = ['python', 'train.py']
    return body


def typo_pod() -> dict[str, Any]:
    body = pod()
    body['spec']['containers'][0]['comand'] = ['sleep', '1']
    body['metadata']['surprise'] = True
    return body


def warnings(response: Any) -> list[str]:
    return response.headers.getall('Warning', [])


@pytest.mark.parametrize('params', [{}, {'fieldValidation': 'Warn'}])
async def test_unknown_fields_of_a_job_are_dropped_with_a_warning_by_default(apiserver, http, params):
    code, created, response = await send(http, 'POST', JOBS, typo_job(), **params)
    assert code == 201
    assert 'comand' not in created['spec']['template']['spec']['containers'][0]
    assert warnings(response) == ['299 - "unknown field \\"spec.template.spec.containers[0].comand\\""']
    assert 'comand' not in apiserver.objects('batch/v1', 'Job')[0]['spec']['template']['spec']['containers'][0]


async def test_ignore_drops_unknown_fields_without_a_word(http):
    code, created, response = await send(http, 'POST', PODS, typo_pod(), fieldValidation='Ignore')
    assert code == 201 and warnings(response) == []
    assert 'comand' not in created['spec']['containers'][0] and 'surprise' not in created['metadata']


@pytest.mark.parametrize(('path', 'body', 'message'), [
    (JOBS, typo_job(), 'Job in version "v1" cannot be handled as a Job: strict decoding error: '
                       'unknown field "spec.template.spec.containers[0].comand"'),
    (PODS, typo_pod(), 'Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
                       'unknown field "metadata.surprise", unknown field "spec.containers[0].comand"'),
])
async def test_strict_rejects_a_create_with_unknown_fields_as_a_bad_request(apiserver, http, path, body, message):
    code, status, _ = await send(http, 'POST', path, body, fieldValidation='Strict')
    assert (code, status['reason'], status['message']) == (400, 'BadRequest', message)
    assert apiserver.objects(body['apiVersion'], body['kind']) == []


async def test_strict_and_warn_apply_to_updates(http):
    await send(http, 'POST', JOBS, job())
    _, current, _ = await send(http, 'GET', f'{JOBS}/j1')
    current['spec']['template']['spec']['containers'][0]['comand'] = ['x']
    code, status, _ = await send(http, 'PUT', f'{JOBS}/j1', current, fieldValidation='Strict')
    assert (code, status['message']) == (400, 'Job in version "v1" cannot be handled as a Job: strict decoding '
                                              'error: unknown field "spec.template.spec.containers[0].comand"')
    code, updated, response = await send(http, 'PUT', f'{JOBS}/j1', current)
    assert code == 200 and 'comand' not in updated['spec']['template']['spec']['containers'][0]
    assert warnings(response) == ['299 - "unknown field \\"spec.template.spec.containers[0].comand\\""']


async def test_strict_rejects_a_patch_with_unknown_fields_as_invalid(http):
    await send(http, 'POST', PODS, pod())
    patch = {'metadata': {'labels': {'a': 'b'}, 'surprise': 1}}
    code, status, _ = await send(http, 'PATCH', f'{PODS}/p1', patch, content_type=STRATEGIC,
                                 fieldValidation='Strict')
    assert (code, status['reason']) == (422, 'Invalid')
    # a strategic merge patch shows the patch as Go prints a map; a merge patch the patched object's JSON
    assert status['message'] == (' "" is invalid: patch: Invalid value: "map[metadata:map[labels:map[a:b] '
                                 'surprise:1]]": strict decoding error: unknown field "metadata.surprise"')
    code, status, _ = await send(http, 'PATCH', f'{PODS}/p1', patch, content_type=MERGE, fieldValidation='Strict')
    assert code == 422 and status['message'].startswith(' "" is invalid: patch: Invalid value: "{')
    assert status['message'].endswith('": strict decoding error: unknown field "metadata.surprise"')
    code, patched, response = await send(http, 'PATCH', f'{PODS}/p1', patch, content_type=MERGE)
    assert code == 200 and patched['metadata']['labels'] == {'a': 'b'} and 'surprise' not in patched['metadata']
    assert warnings(response) == ['299 - "unknown field \\"metadata.surprise\\""']


async def test_fields_the_kind_has_are_kept(http):
    body = job()
    spec = body['spec']['template']['spec']
    spec['containers'][0].update(command=['python'], resources={'limits': {'nvidia.com/gpu': 1}},
                                 env=[{'name': 'A', 'valueFrom': {'fieldRef': {'fieldPath': 'metadata.name'}}}])
    spec['volumes'] = [{'name': 'v', 'emptyDir': {}}]
    body['metadata']['annotations'] = {'x': 'y'}
    code, created, response = await send(http, 'POST', JOBS, body, fieldValidation='Strict')
    assert code == 201 and warnings(response) == []
    assert created['spec']['template']['spec']['containers'][0]['env'] == spec['containers'][0]['env']


async def test_custom_resources_honour_every_directive(http, apiserver):
    apiserver.apply(samples.WIDGET_CRD)
    code, _, response = await send(http, 'POST', samples.WIDGETS, samples.widget(bogus=1), fieldValidation='Ignore')
    assert code == 201 and warnings(response) == []
    _, current, _ = await send(http, 'GET', f'{samples.WIDGETS}/w1')
    current['spec']['bogus'] = 2
    code, status, _ = await send(http, 'PUT', f'{samples.WIDGETS}/w1', current, fieldValidation='Strict')
    assert (code, status['message']) == (400, 'Widget in version "v1" cannot be handled as a Widget: strict '
                                              'decoding error: unknown field "spec.bogus"')
    code, _, response = await send(http, 'PUT', f'{samples.WIDGETS}/w1', current)
    assert code == 200 and warnings(response) == ['299 - "unknown field \\"spec.bogus\\""']

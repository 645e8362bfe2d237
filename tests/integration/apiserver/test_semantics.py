"""
Pins the object semantics of the emulated API server to kube-apiserver's documented behaviour:
resourceVersion and optimistic locking, generation, the status and scale subresources,
finalizers and garbage collection, patch formats, selectors, pagination and error Status bodies.

Each test would fail if the emulator drifted from a real server, so the operator's tests against
the emulator keep meaning something on a real control plane.
"""
from __future__ import annotations

import asyncio
import json
from typing import Any

import kubernetes
import pytest

from tests.support.apiserver import ApiServer, samples
from tests.support.apiserver.samples import WIDGETS, job, owner_reference, pod, widget
from tests.support.apiserver.testing import rejected, send, wait_until

CustomObjects = kubernetes.client.CustomObjectsApi
Batch = kubernetes.client.BatchV1Api
Core = kubernetes.client.CoreV1Api
Apps = kubernetes.client.AppsV1Api
MERGE = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
STRATEGIC = 'application/strategic-merge-patch+json'

pytest_plugins = ['tests.support.apiserver.fixtures']


@pytest.fixture
def widgets(apiserver: ApiServer) -> None:
    apiserver.apply(samples.WIDGET_CRD, samples.GADGET_CRD)


def custom(k8s: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return CustomObjects(k8s)


async def create_widget(k8s: kubernetes.client.ApiClient, name: str = 'w1', **spec: Any) -> dict[str, Any]:
    return await asyncio.to_thread(custom(k8s).create_namespaced_custom_object, 'example.com', 'v1', 'default',
                                   'widgets', widget(name, **spec))


# resourceVersion -----------------------------------------------------------------------------------

async def test_resource_version_is_one_counter_changing_on_every_write(k8s, widgets):
    created = await create_widget(k8s)
    a_job = await asyncio.to_thread(Batch(k8s).create_namespaced_job, 'default', job())
    patched = await asyncio.to_thread(custom(k8s).patch_namespaced_custom_object, 'example.com', 'v1', 'default',
                                      'widgets', 'w1', {'metadata': {'labels': {'a': 'b'}}})
    versions = [int(created['metadata']['resourceVersion']), int(a_job.metadata.resource_version),
                int(patched['metadata']['resourceVersion'])]
    assert versions == sorted(versions) and len(set(versions)) == 3  # one counter across kinds
    listed = await asyncio.to_thread(custom(k8s).list_namespaced_custom_object, 'example.com', 'v1', 'default',
                                     'widgets')
    assert int(listed['metadata']['resourceVersion']) >= versions[-1]
    assert isinstance(created['metadata']['resourceVersion'], str)
    assert created['metadata']['uid'] and created['metadata']['creationTimestamp'].endswith('Z')


async def test_a_patch_that_changes_nothing_keeps_the_resource_version(k8s, widgets):
    created = await create_widget(k8s)
    same = await asyncio.to_thread(custom(k8s).patch_namespaced_custom_object, 'example.com', 'v1', 'default',
                                   'widgets', 'w1', {'spec': {'replicas': 1}})
    assert same['metadata']['resourceVersion'] == created['metadata']['resourceVersion']


async def test_update_with_a_stale_resource_version_is_a_409_conflict(k8s, widgets):
    stale = await create_widget(k8s)
    await asyncio.to_thread(custom(k8s).patch_namespaced_custom_object, 'example.com', 'v1', 'default', 'widgets',
                            'w1', {'spec': {'replicas': 2}})
    stale['spec']['replicas'] = 3
    status = await rejected(custom(k8s).replace_namespaced_custom_object, 'example.com', 'v1', 'default', 'widgets',
                            'w1', stale)
    assert status['reason'] == 'Conflict' and status['code'] == 409
    assert status['message'] == ('Operation cannot be fulfilled on widgets.example.com "w1": the object has been '
                                 'modified; please apply your changes to the latest version and try again')
    assert status['details'] == {'name': 'w1', 'group': 'example.com', 'kind': 'widgets'}


async def test_update_without_a_resource_version_is_unconditional(k8s, widgets):
    current = await create_widget(k8s)
    del current['metadata']['resourceVersion']
    current['spec']['replicas'] = 4
    updated = await asyncio.to_thread(custom(k8s).replace_namespaced_custom_object, 'example.com', 'v1', 'default',
                                      'widgets', 'w1', current)
    assert updated['spec']['replicas'] == 4


async def test_a_merge_patch_carrying_a_stale_resource_version_conflicts(http, k8s, widgets):
    created = await create_widget(k8s)
    await send(http, 'PATCH', f'{WIDGETS}/w1', {'spec': {'replicas': 2}}, content_type=MERGE)
    stale = {'metadata': {'resourceVersion': created['metadata']['resourceVersion']}, 'spec': {'replicas': 3}}
    code, body, _ = await send(http, 'PATCH', f'{WIDGETS}/w1', stale, content_type=MERGE)
    assert (code, body['reason']) == (409, 'Conflict')


async def test_a_failed_json_patch_test_op_is_a_bare_422(http, k8s, widgets):
    """kopf tests metadata.resourceVersion this way and retries on 422."""
    created = await create_widget(k8s)
    ops = [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': '1'},
           {'op': 'replace', 'path': '/spec/replicas', 'value': 9}]
    code, body, _ = await send(http, 'PATCH', f'{WIDGETS}/w1', ops, content_type=JSON_PATCH)
    assert (code, body['reason']) == (422, 'Invalid')
    assert body['message'] == 'the server rejected our request due to an error in our request'
    ops[0]['value'] = created['metadata']['resourceVersion']
    code, body, _ = await send(http, 'PATCH', f'{WIDGETS}/w1', ops, content_type=JSON_PATCH)
    assert code == 200 and body['spec']['replicas'] == 9


async def test_creating_an_existing_object_is_409_already_exists(k8s, widgets):
    await create_widget(k8s)
    status = await rejected(custom(k8s).create_namespaced_custom_object, 'example.com', 'v1', 'default', 'widgets',
                            widget())
    assert (status['reason'], status['message']) == ('AlreadyExists', 'widgets.example.com "w1" already exists')


async def test_generate_name_makes_a_unique_name(k8s):
    body = pod(generateName='trainer-')
    del body['metadata']['name']
    made = await asyncio.to_thread(Core(k8s).create_namespaced_pod, 'default', body)
    assert made.metadata.name.startswith('trainer-') and len(made.metadata.name) == len('trainer-') + 5


# generation ----------------------------------------------------------------------------------------

async def test_generation_counts_spec_changes_only(k8s, widgets):
    api = custom(k8s)
    args = ('example.com', 'v1', 'default', 'widgets', 'w1')
    assert (await create_widget(k8s))['metadata']['generation'] == 1
    labelled = await asyncio.to_thread(api.patch_namespaced_custom_object, *args, {'metadata': {'labels': {'x': 'y'}}})
    assert labelled['metadata']['generation'] == 1
    with_status = await asyncio.to_thread(api.patch_namespaced_custom_object_status, *args,
                                          {'status': {'phase': 'Running'}})
    assert with_status['metadata']['generation'] == 1
    changed = await asyncio.to_thread(api.patch_namespaced_custom_object, *args, {'spec': {'replicas': 3}})
    assert changed['metadata']['generation'] == 2


async def test_without_a_status_subresource_status_is_content_and_bumps_generation(k8s, widgets):
    api = custom(k8s)
    gadget = {'apiVersion': 'example.com/v1', 'kind': 'Gadget', 'metadata': {'name': 'g'}, 'status': {'a': 1}}
    created = await asyncio.to_thread(api.create_cluster_custom_object, 'example.com', 'v1', 'gadgets', gadget)
    assert created['status'] == {'a': 1}
    patched = await asyncio.to_thread(api.patch_cluster_custom_object, 'example.com', 'v1', 'gadgets', 'g',
                                      {'status': {'a': 2}})
    assert patched['metadata']['generation'] == 2


async def test_job_generation_follows_its_spec(k8s):
    batch = Batch(k8s)
    created = await asyncio.to_thread(batch.create_namespaced_job, 'default', job())
    assert created.metadata.generation == 1
    labelled = await asyncio.to_thread(batch.patch_namespaced_job, 'j1', 'default',
                                       {'metadata': {'labels': {'a': 'b'}}})
    assert labelled.metadata.generation == 1
    suspended = await asyncio.to_thread(batch.patch_namespaced_job, 'j1', 'default', {'spec': {'suspend': True}})
    assert (suspended.metadata.generation, suspended.spec.suspend) == (2, True)


# status subresource --------------------------------------------------------------------------------

async def test_the_main_resource_ignores_status_and_status_ignores_the_rest(k8s, widgets):
    api = custom(k8s)
    args = ('example.com', 'v1', 'default', 'widgets', 'w1')
    body = widget()
    body['status'] = {'phase': 'Forged'}
    created = await asyncio.to_thread(api.create_namespaced_custom_object, *args[:4], body)
    assert 'status' not in created  # create cannot set status
    set_status = await asyncio.to_thread(api.patch_namespaced_custom_object_status, *args,
                                         {'status': {'phase': 'Running'}, 'spec': {'replicas': 7},
                                          'metadata': {'labels': {'sneaky': 'yes'}}})
    assert set_status['status'] == {'phase': 'Running'}
    assert set_status['spec']['replicas'] == 1 and 'labels' not in set_status['metadata']
    via_main = await asyncio.to_thread(api.patch_namespaced_custom_object, *args,
                                       {'status': {'phase': 'Ignored'}, 'spec': {'replicas': 2}})
    assert via_main['status'] == {'phase': 'Running'} and via_main['spec']['replicas'] == 2


async def test_job_status_writes_keep_the_spec(k8s):
    batch = Batch(k8s)
    await asyncio.to_thread(batch.create_namespaced_job, 'default', job())
    updated = await asyncio.to_thread(batch.patch_namespaced_job_status, 'j1', 'default',
                                      {'status': {'active': 1}, 'spec': {'parallelism': 5}})
    assert updated.status.active == 1 and updated.spec.parallelism == 1


# scale subresource ---------------------------------------------------------------------------------

async def test_scale_maps_onto_the_crd_replica_paths(k8s, widgets):
    api = custom(k8s)
    args = ('example.com', 'v1', 'default', 'widgets', 'w1')
    await create_widget(k8s, replicas=2)
    await asyncio.to_thread(api.patch_namespaced_custom_object_status, *args,
                            {'status': {'replicas': 1, 'selector': 'app=w1'}})
    scale = await asyncio.to_thread(api.get_namespaced_custom_object_scale, *args)
    assert (scale['kind'], scale['apiVersion']) == ('Scale', 'autoscaling/v1')
    assert scale['spec'] == {'replicas': 2} and scale['status'] == {'replicas': 1, 'selector': 'app=w1'}
    scaled = await asyncio.to_thread(api.patch_namespaced_custom_object_scale, *args, {'spec': {'replicas': 0}})
    assert scaled['spec'] == {'replicas': 0}
    stored = await asyncio.to_thread(api.get_namespaced_custom_object, *args)
    assert stored['spec']['replicas'] == 0 and stored['metadata']['generation'] == 2
    scale['spec']['replicas'] = 5  # a stale resourceVersion in the Scale is a conflict
    status = await rejected(api.replace_namespaced_custom_object_scale, *args, scale)
    assert status['reason'] == 'Conflict'


async def test_deployment_scale_reports_its_selector(k8s):
    apps = Apps(k8s)
    await asyncio.to_thread(apps.create_namespaced_deployment, 'default', samples.deployment('d1'))
    scale = await asyncio.to_thread(apps.read_namespaced_deployment_scale, 'd1', 'default')
    assert scale.spec.replicas == 2 and scale.status.selector == 'app=d1' and scale.status.replicas == 0
    await asyncio.to_thread(apps.patch_namespaced_deployment_scale, 'd1', 'default', {'spec': {'replicas': 0}})
    assert (await asyncio.to_thread(apps.read_namespaced_deployment, 'd1', 'default')).spec.replicas == 0


# finalizers and garbage collection -------------------------------------------------------------------

async def test_delete_with_finalizers_waits_for_them(k8s, widgets):
    api = custom(k8s)
    args = ('example.com', 'v1', 'default', 'widgets', 'w1')
    await asyncio.to_thread(api.create_namespaced_custom_object, *args[:4],
                            {**widget(), 'metadata': {'name': 'w1', 'finalizers': ['plateau.dev/stop']}})
    await asyncio.to_thread(api.delete_namespaced_custom_object, *args)
    held = await asyncio.to_thread(api.get_namespaced_custom_object, *args)
    assert held['metadata']['deletionTimestamp'] and held['metadata']['finalizers'] == ['plateau.dev/stop']
    status = await rejected(api.patch_namespaced_custom_object, *args,
                            {'metadata': {'finalizers': ['plateau.dev/stop', 'other.dev/x']}})
    assert status['reason'] == 'Invalid' and 'no new finalizers can be added' in status['message']
    await asyncio.to_thread(api.patch_namespaced_custom_object, *args, {'metadata': {'finalizers': None}})
    status = await rejected(api.get_namespaced_custom_object, *args)
    assert status['reason'] == 'NotFound'


async def test_delete_without_finalizers_is_immediate_and_answers_a_status(k8s, widgets):
    created = await create_widget(k8s)
    answer = await asyncio.to_thread(custom(k8s).delete_namespaced_custom_object, 'example.com', 'v1', 'default',
                                     'widgets', 'w1')
    assert answer['status'] == 'Success'
    assert answer['details'] == {'name': 'w1', 'group': 'example.com', 'kind': 'widgets',
                                 'uid': created['metadata']['uid']}


async def test_background_gc_deletes_dependents_of_a_deleted_owner(apiserver, k8s, widgets):
    owner = await create_widget(k8s)
    await asyncio.to_thread(Batch(k8s).create_namespaced_job, 'default',
                            job(ownerReferences=[owner_reference(owner, controller=True, blockOwnerDeletion=True)]))
    await asyncio.to_thread(custom(k8s).delete_namespaced_custom_object, 'example.com', 'v1', 'default', 'widgets',
                            'w1')
    await wait_until(lambda: not apiserver.objects('batch/v1', 'Job'))


async def test_a_dependent_of_a_missing_owner_is_collected(apiserver, k8s):
    ghost = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'name': 'ghost', 'uid': '00000000-0000-0000-0000-000000000000'}
    await asyncio.to_thread(Core(k8s).create_namespaced_pod, 'default', pod(ownerReferences=[ghost]))
    await wait_until(lambda: not apiserver.objects('v1', 'Pod'))


async def test_deleting_a_job_orphans_its_pods_unless_told_otherwise(apiserver, http, k8s):
    """batch/v1 Jobs default to propagationPolicy=Orphan (with a warning); Background removes the pods."""
    for name in ('j1', 'j2'):
        [owner] = apiserver.apply(job(name))
        apiserver.apply(pod(f'{name}-pod', ownerReferences=[owner_reference(owner)]))
    code, _, response = await send(http, 'DELETE', '/apis/batch/v1/namespaces/default/jobs/j1')
    assert code == 200 and 'child pods are preserved by default' in response.headers['Warning']
    await asyncio.to_thread(Batch(k8s).delete_namespaced_job, 'j2', 'default', propagation_policy='Background')
    await wait_until(lambda: {p['metadata']['name'] for p in apiserver.objects('v1', 'Pod')} == {'j1-pod'})
    await wait_until(lambda: 'ownerReferences' not in apiserver.objects('v1', 'Pod')[0]['metadata'])
    assert not apiserver.objects('batch/v1', 'Job')


async def test_foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone(apiserver, k8s, widgets):
    owner = await create_widget(k8s)
    await asyncio.to_thread(Core(k8s).create_namespaced_pod, 'default', pod(
        finalizers=['test/hold'], ownerReferences=[owner_reference(owner, blockOwnerDeletion=True)]))
    await asyncio.to_thread(custom(k8s).delete_namespaced_custom_object, 'example.com', 'v1', 'default', 'widgets',
                            'w1', propagation_policy='Foreground')
    await wait_until(lambda: apiserver.objects('v1', 'Pod')[0]['metadata'].get('deletionTimestamp'))
    owner_now = apiserver.objects('example.com/v1', 'Widget')[0]
    assert owner_now['metadata']['finalizers'] == ['foregroundDeletion']
    await asyncio.to_thread(Core(k8s).patch_namespaced_pod, 'p1', 'default', {'metadata': {'finalizers': None}})
    await wait_until(lambda: not apiserver.objects('example.com/v1', 'Widget'))


async def test_deleting_a_namespace_deletes_its_content(apiserver, k8s):
    core = Core(k8s)
    await asyncio.to_thread(core.create_namespace, {'apiVersion': 'v1', 'kind': 'Namespace',
                                                     'metadata': {'name': 'team'}})
    await asyncio.to_thread(core.create_namespaced_pod, 'team', {**pod(), 'metadata': {'name': 'p',
                                                                                     'finalizers': ['test/hold']}})
    await asyncio.to_thread(core.delete_namespace, 'team')
    status = await rejected(core.create_namespaced_pod, 'team', {**pod(), 'metadata': {'name': 'q'}})
    assert status['reason'] == 'Forbidden' and 'because it is being terminated' in status['message']
    namespace = await asyncio.to_thread(core.read_namespace, 'team')
    assert namespace.status.phase == 'Terminating'
    await wait_until(lambda: apiserver.objects('v1', 'Pod', 'team')[0]['metadata'].get('deletionTimestamp'))
    await asyncio.to_thread(core.patch_namespaced_pod, 'p', 'team', {'metadata': {'finalizers': None}})
    await wait_until(lambda: 'team' not in {n['metadata']['name'] for n in apiserver.objects('v1', 'Namespace')})


async def test_creating_in_a_missing_namespace_is_404(k8s):
    status = await rejected(Core(k8s).create_namespaced_pod, 'nowhere', {**pod(), 'metadata': {'name': 'p'}})
    assert (status['reason'], status['message']) == ('NotFound', 'namespaces "nowhere" not found')


# patch formats -------------------------------------------------------------------------------------

async def test_strategic_merge_patch_is_415_for_custom_resources(http, k8s, widgets):
    await create_widget(k8s)
    code, body, _ = await send(http, 'PATCH', f'{WIDGETS}/w1', {'spec': {'replicas': 2}}, content_type=STRATEGIC)
    assert (code, body['reason']) == (415, 'UnsupportedMediaType')
    assert body['message'] == ('the body of the request was in an unknown format - accepted media types include: '
                               'application/json-patch+json, application/merge-patch+json, '
                               'application/apply-patch+yaml')


async def test_strategic_merge_patch_merges_containers_by_name(http, k8s):
    await asyncio.to_thread(Apps(k8s).create_namespaced_deployment, 'default', samples.deployment('d1'))
    patch = {'spec': {'template': {'spec': {'containers': [{'name': 'sidecar', 'image': 'plateau/sidecar:1'}]}}}}
    code, body, _ = await send(http, 'PATCH', '/apis/apps/v1/namespaces/default/deployments/d1', patch,
                               content_type=STRATEGIC)
    assert code == 200
    assert [c['name'] for c in body['spec']['template']['spec']['containers']] == ['main', 'sidecar']
    code, body, _ = await send(http, 'PATCH', '/apis/apps/v1/namespaces/default/deployments/d1', patch,
                               content_type=MERGE)
    assert [c['name'] for c in body['spec']['template']['spec']['containers']] == ['sidecar']


# selectors and lists -------------------------------------------------------------------------------

@pytest.mark.parametrize(('selector', 'expected'), [
    ('team=a', {'p-a'}),
    ('team==a', {'p-a'}),
    ('team!=a', {'p-b', 'p-none'}),
    ('team in (a,b)', {'p-a', 'p-b'}),
    ('team notin (a)', {'p-b', 'p-none'}),
    ('team', {'p-a', 'p-b'}),
    ('!team', {'p-none'}),
    ('team=a,tier=gpu', {'p-a'}),
    ('team=b,tier=gpu', set()),
])
async def test_label_selectors(k8s, selector, expected):
    core = Core(k8s)
    for name, labels in (('p-a', {'team': 'a', 'tier': 'gpu'}), ('p-b', {'team': 'b'}), ('p-none', {})):
        await asyncio.to_thread(core.create_namespaced_pod, 'default', pod(name, labels=labels))
    found = await asyncio.to_thread(core.list_namespaced_pod, 'default', label_selector=selector)
    assert {p.metadata.name for p in found.items} == expected


async def test_field_selectors_and_their_errors(k8s):
    core = Core(k8s)
    await asyncio.to_thread(core.create_namespaced_pod, 'default', pod('p-a'))
    await asyncio.to_thread(core.create_namespaced_pod, 'default', pod('p-b'))
    found = await asyncio.to_thread(core.list_pod_for_all_namespaces, field_selector='metadata.name=p-b')
    assert [p.metadata.name for p in found.items] == ['p-b']
    found = await asyncio.to_thread(core.list_namespaced_pod, 'default', field_selector='metadata.name!=p-b')
    assert [p.metadata.name for p in found.items] == ['p-a']
    status = await rejected(core.list_namespaced_pod, 'default', field_selector='spec.bogus=1')
    assert (status['code'], status['message']) == (400, 'field label not supported: spec.bogus')
    status = await rejected(core.list_namespaced_pod, 'default', label_selector='team in (a')
    assert status['code'] == 400 and status['reason'] == 'BadRequest'


async def test_lists_paginate_with_limit_and_continue(k8s):
    core = Core(k8s)
    for i in range(5):
        await asyncio.to_thread(core.create_namespaced_pod, 'default', pod(f'p{i}'))
    first = await asyncio.to_thread(core.list_namespaced_pod, 'default', limit=2)
    rest = await asyncio.to_thread(core.list_namespaced_pod, 'default', limit=10, _continue=first.metadata._continue)
    assert [p.metadata.name for p in first.items] == ['p0', 'p1'] and first.metadata.remaining_item_count == 3
    assert [p.metadata.name for p in rest.items] == ['p2', 'p3', 'p4'] and not rest.metadata._continue


async def test_builtin_list_items_carry_no_kind_but_custom_ones_do(http, k8s, widgets):
    await create_widget(k8s)
    await asyncio.to_thread(Core(k8s).create_namespaced_pod, 'default', pod())
    _, pods, _ = await send(http, 'GET', '/api/v1/namespaces/default/pods')
    _, widgets_list, _ = await send(http, 'GET', WIDGETS)
    assert (pods['kind'], 'kind' in pods['items'][0]) == ('PodList', False)
    assert (widgets_list['kind'], widgets_list['items'][0]['kind']) == ('WidgetList', 'Widget')


# errors and built-in validation --------------------------------------------------------------------

async def test_errors_are_status_objects(http):
    code, body, _ = await send(http, 'GET', '/apis/batch/v1/namespaces/default/jobs/missing')
    assert code == 404 and body == {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
                                    'message': 'jobs.batch "missing" not found', 'reason': 'NotFound',
                                    'details': {'name': 'missing', 'group': 'batch', 'kind': 'jobs'}, 'code': 404}
    code, body, _ = await send(http, 'GET', '/apis/nowhere.dev/v1/things')
    assert (code, body['reason']) == (404, 'NotFound')


async def test_job_rules_that_bite_operators(k8s):
    batch = Batch(k8s)
    no_policy = job()
    del no_policy['spec']['template']['spec']['restartPolicy']
    status = await rejected(batch.create_namespaced_job, 'default', no_policy)
    assert status['message'] == ('Job.batch "j1" is invalid: spec.template.spec.restartPolicy: Unsupported value: '
                                 '"Always": supported values: "OnFailure", "Never"')
    created = await asyncio.to_thread(batch.create_namespaced_job, 'default', job())
    uid = created.metadata.uid
    assert created.spec.selector.match_labels == {'batch.kubernetes.io/controller-uid': uid}
    assert created.spec.template.metadata.labels['batch.kubernetes.io/job-name'] == 'j1'
    status = await rejected(batch.patch_namespaced_job, 'j1', 'default',
                            {'spec': {'template': {'spec': {'containers': [{'name': 'trainer', 'image': 'x'}]}}}})
    assert status['reason'] == 'Invalid' and 'spec.template: Invalid value' in status['message']
    assert 'field is immutable' in status['message']


async def test_invalid_names_and_labels_are_rejected_with_their_field(k8s):
    status = await rejected(Core(k8s).create_namespaced_pod, 'default', pod('Bad_Name'))
    assert status['details']['causes'][0]['field'] == 'metadata.name'
    status = await rejected(Core(k8s).create_namespaced_pod, 'default', pod(labels={'plateau.dev/metric': 'val loss'}))
    cause = status['details']['causes'][0]
    assert cause['field'] == 'metadata.labels'
    assert cause['message'].startswith('Invalid value: "val loss": a valid label')


async def test_builtin_kinds_may_omit_api_version_and_kind_but_custom_ones_may_not(http, widgets):
    """Typed decoding defaults them from the URL; kopf relies on it when it posts Events."""
    event = {'metadata': {'generateName': 'e-'}, 'reason': 'Started', 'involvedObject': {'kind': 'Pod', 'name': 'p'}}
    code, body, _ = await send(http, 'POST', '/api/v1/namespaces/default/events', event)
    assert (code, body['kind'], body['apiVersion']) == (201, 'Event', 'v1')
    code, body, _ = await send(http, 'POST', WIDGETS, {'metadata': {'name': 'w'}, 'spec': {}})
    assert code == 400 and body['message'].startswith("Object 'Kind' is missing in '")


async def test_dry_run_validates_without_storing(apiserver, http):
    code, body, _ = await send(http, 'POST', '/api/v1/namespaces/default/pods', pod(), dryRun='All')
    assert code == 201 and body['metadata']['uid']
    assert not apiserver.objects('v1', 'Pod')


async def test_objects_are_read_through_the_requested_version(apiserver, http):
    crd = json.loads(json.dumps(samples.GADGET_CRD))
    crd['spec']['versions'].append({**crd['spec']['versions'][0], 'name': 'v1beta1', 'storage': False})
    apiserver.apply(crd)
    await send(http, 'POST', '/apis/example.com/v1/gadgets',
               {'apiVersion': 'example.com/v1', 'kind': 'Gadget', 'metadata': {'name': 'g'}})
    _, body, _ = await send(http, 'GET', '/apis/example.com/v1beta1/gadgets/g')
    assert body['apiVersion'] == 'example.com/v1beta1'
    _, group, _ = await send(http, 'GET', '/apis/example.com')
    assert group['preferredVersion']['version'] == 'v1'

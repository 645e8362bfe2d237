"""
Real clients against the emulated API server: discovery as kopf and kubectl read it, kubectl's
everyday commands (apply, get with printer columns, explain, describe, scale, patch, delete),
a minimal kopf operator, the project's own CRD, and the emulator run as a separate process.
"""
from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import subprocess

import kopf
import kubernetes
import pytest
import yaml

from tests.support.apiserver import ADMIN_TOKEN, ApiServerProcess, openapi_proto, protobuf, samples
from tests.support.apiserver.testing import kubectl_binary, send, wait_until

REPO = pathlib.Path(__file__).resolve().parents[3]
WIDGET_YAML = yaml.safe_dump(samples.widget('w1', replicas=2))

pytest_plugins = ['tests.support.apiserver.fixtures']


async def test_discovery_lists_resources_with_their_subresources(apiserver, http):
    apiserver.apply(samples.WIDGET_CRD)
    _, groups, _ = await send(http, 'GET', '/apis')
    assert {'name': 'example.com', 'versions': [{'groupVersion': 'example.com/v1', 'version': 'v1'}],
            'preferredVersion': {'groupVersion': 'example.com/v1', 'version': 'v1'}} in groups['groups']
    _, resources, _ = await send(http, 'GET', '/apis/example.com/v1')
    by_name = {r['name']: r for r in resources['resources']}
    assert by_name['widgets']['shortNames'] == ['wd'] and by_name['widgets']['categories'] == ['all', 'gadgets']
    assert by_name['widgets']['namespaced'] is True and 'watch' in by_name['widgets']['verbs']
    assert by_name['widgets/status']['verbs'] == ['get', 'patch', 'update']
    assert (by_name['widgets/scale']['group'], by_name['widgets/scale']['kind']) == ('autoscaling', 'Scale')
    _, core, _ = await send(http, 'GET', '/api/v1')
    names = {r['name'] for r in core['resources']}
    assert {'pods', 'pods/status', 'pods/log', 'namespaces', 'events'} <= names
    _, apps, _ = await send(http, 'GET', '/apis/apps/v1')
    assert {'deployments/scale', 'statefulsets/scale'} <= {r['name'] for r in apps['resources']}


async def test_kubectl_works_a_custom_resource_end_to_end(apiserver, kubectl):
    crd = await kubectl('apply', '-f', '-', input=yaml.safe_dump(samples.WIDGET_CRD))
    assert crd.stdout.strip() == 'customresourcedefinition.apiextensions.k8s.io/widgets.example.com created'
    waited = await kubectl('wait', '--for=condition=Established', 'crd/widgets.example.com', '--timeout=10s')
    assert waited.returncode == 0, waited.stderr
    assert (await kubectl('apply', '-f', '-', input=WIDGET_YAML)).stdout.strip() == 'widget.example.com/w1 created'
    table = (await kubectl('get', 'wd')).stdout.splitlines()
    assert table[0].split() == ['NAME', 'REPLICAS', 'PHASE', 'AGE'] and table[1].split()[:2] == ['w1', '2']
    assert 'widget.example.com/w1' in (await kubectl('get', 'all')).stdout  # categories: [all]
    assert (await kubectl('scale', 'wd', 'w1', '--replicas=0')).returncode == 0
    assert apiserver.objects('example.com/v1', 'Widget')[0]['spec']['replicas'] == 0
    explained = await kubectl('explain', 'widget.spec.stop')
    assert 'When to stop.' in explained.stdout and 'metric' in explained.stdout, explained.stderr
    assert 'Replicas:  0' in (await kubectl('describe', 'wd', 'w1')).stdout
    bad = await kubectl('patch', 'wd', 'w1', '--type=merge', '-p',
                        '{"spec":{"stop":{"metric":{"name":"l","patience":0}}}}')
    assert bad.returncode == 1
    assert bad.stderr.strip() == ('The Widget "w1" is invalid: spec.stop.metric.patience: Invalid value: 0: '
                                  'spec.stop.metric.patience in body should be greater than or equal to 1')
    reapplied = await kubectl('apply', '-f', '-', input=WIDGET_YAML.replace('replicas: 2', 'replicas: 3'))
    assert reapplied.stdout.strip() == 'widget.example.com/w1 configured'
    assert (await kubectl('delete', 'wd', 'w1')).returncode == 0
    assert apiserver.objects('example.com/v1', 'Widget') == []


async def test_kubectl_strict_validation_rejects_unknown_fields(apiserver, kubectl):
    apiserver.apply(samples.WIDGET_CRD)
    result = await kubectl('apply', '-f', '-', input=WIDGET_YAML.replace('replicas: 2', 'replicas: 2\n  typo: 1'))
    assert result.returncode == 1
    assert ('Widget in version "v1" cannot be handled as a Widget: strict decoding error: unknown field "spec.typo"'
            in result.stderr)


async def test_kubectl_apply_merges_builtin_kinds_strategically(apiserver, kubectl):
    manifest = yaml.safe_dump(samples.deployment('web'))
    assert (await kubectl('apply', '-f', '-', input=manifest)).returncode == 0
    changed = await kubectl('apply', '-f', '-', input=manifest.replace('nginx:1.27', 'nginx:1.28'))
    assert changed.stdout.strip() == 'deployment.apps/web configured', changed.stderr
    [stored] = apiserver.objects('apps/v1', 'Deployment')
    assert stored['spec']['template']['spec']['containers'][0]['image'] == 'nginx:1.28'
    assert stored['metadata']['generation'] == 2
    listed = (await kubectl('get', 'deploy')).stdout.splitlines()
    assert listed[0].split() == ['NAME', 'READY', 'AVAILABLE', 'AGE'] and listed[1].split()[:2] == ['web', '0/2']


async def test_kubectl_typed_commands_that_send_protobuf(apiserver, kubectl):
    assert (await kubectl('create', 'namespace', 'team')).returncode == 0
    created = await kubectl('-n', 'team', 'create', 'configmap', 'settings', '--from-literal=mode=dry-run')
    assert created.returncode == 0, created.stderr
    assert apiserver.objects('v1', 'ConfigMap', 'team')[0]['data'] == {'mode': 'dry-run'}


async def test_server_side_apply_creates_then_updates(apiserver, kubectl):
    apiserver.apply(samples.WIDGET_CRD)
    for replicas in (2, 4):
        applied = await kubectl('apply', '--server-side', '-f', '-',
                                input=yaml.safe_dump(samples.widget('w1', replicas=replicas)))
        assert applied.stdout.strip() == 'widget.example.com/w1 serverside-applied', applied.stderr
    assert apiserver.objects('example.com/v1', 'Widget')[0]['spec']['replicas'] == 4


TYPO_JOB = yaml.safe_dump({
    'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': 'typo'},
    'spec': {'template': {'spec': {'restartPolicy': 'Never',
                                   'containers': [{'name': 'main', 'image': 'python:3.11', 'comand': ['python']}]}}}})


async def test_openapi_v2_is_served_as_json_and_as_the_protobuf_client_go_reads(apiserver, http):
    apiserver.apply(samples.WIDGET_CRD)
    code, doc, response = await send(http, 'GET', '/openapi/v2')
    assert code == 200 and doc['swagger'] == '2.0'
    job = doc['definitions']['io.k8s.api.batch.v1.Job']  # built-ins carry their real schema
    assert job['x-kubernetes-group-version-kind'] == [{'group': 'batch', 'kind': 'Job', 'version': 'v1'}]
    container = doc['definitions']['io.k8s.api.core.v1.Container']['properties']
    assert container['command']['type'] == 'array' and 'restartPolicy' in container
    assert doc['definitions']['com.example.v1.Widget']['properties']['spec']['properties']['replicas'] == {
        'type': 'integer', 'minimum': 0, 'default': 1}
    # kubectl 1.28 decides whether --dry-run=server and --validate=strict may be used from the patch operation
    patch = doc['paths']['/apis/batch/v1/namespaces/{namespace}/jobs/{name}']['patch']
    assert patch['x-kubernetes-group-version-kind'] == {'group': 'batch', 'kind': 'Job', 'version': 'v1'}
    assert {'dryRun', 'fieldValidation'} <= {p['name'] for p in patch['parameters'] if p['in'] == 'query'}
    async with http.get('/openapi/v2', headers={'Accept': openapi_proto.MEDIA_TYPE}) as response:
        body = await response.read()
        assert response.content_type == 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf'
    fields = dict(protobuf._raw_fields(body))  # openapi_v2.Document: 1 swagger, 8 paths, 9 definitions
    assert fields[1] == b'2.0' and b'io.k8s.api.batch.v1.Job' in fields[9] and b'dryRun' in fields[8]


async def test_kubectl_explains_builtin_kinds_from_their_real_schema(kubectl):
    explained = await kubectl('explain', 'job.spec.template.spec.initContainers.restartPolicy')
    assert explained.returncode == 0, explained.stderr
    assert 'RestartPolicy defines the restart behavior of individual containers' in explained.stdout


async def test_kubectl_server_dry_run_validates_and_defaults_without_storing(apiserver, kubectl):
    applied = await kubectl('apply', '-f', str(REPO / 'crds' / 'trainingjob.yaml'))
    assert applied.returncode == 0, applied.stderr
    example = str(REPO / 'examples' / 'plateau-patience.yaml')
    job = yaml.safe_dump(samples.job('j1'))
    for verb in ('create', 'apply'):
        tj = await kubectl(verb, '--dry-run=server', '-f', example)
        assert tj.stdout.strip() == 'trainingjob.plateau.dev/resnet-plateau created (server dry run)', tj.stderr
        dry = await kubectl(verb, '--dry-run=server', '-f', '-', '-o', 'json', input=job)
        assert dry.returncode == 0, dry.stderr
        defaulted = json.loads(dry.stdout)
        assert defaulted['metadata']['uid'] and defaulted['spec']['backoffLimit'] == 6  # defaulted, as if created
    assert apiserver.objects('plateau.dev/v1alpha1', 'TrainingJob') == [] and apiserver.objects('batch/v1', 'Job') == []
    writes = apiserver.calls('create', 'jobs') + apiserver.calls('create', 'trainingjobs')
    assert writes and all(r.query.get('dryRun') == 'All' for r in writes)
    rejected = await kubectl('create', '--dry-run=server', '-f', '-', input=TYPO_JOB)
    assert rejected.returncode == 1 and 'strict decoding error' in rejected.stderr


async def test_kubectl_rejects_a_typo_in_a_job_unless_told_otherwise(apiserver, kubectl):
    strict = await kubectl('apply', '-f', '-', input=TYPO_JOB)  # kubectl validates strictly by default
    assert strict.returncode == 1
    assert strict.stderr.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": Job in version "v1" cannot be handled as a '
        'Job: strict decoding error: unknown field "spec.template.spec.containers[0].comand"')
    warned = await kubectl('create', '--validate=warn', '-f', '-', input=TYPO_JOB)
    assert warned.returncode == 0
    assert 'Warning: unknown field "spec.template.spec.containers[0].comand"' in warned.stderr
    [stored] = apiserver.objects('batch/v1', 'Job')
    assert 'comand' not in stored['spec']['template']['spec']['containers'][0]  # the typo is gone, silently


async def test_kubectl_shows_cel_and_enum_errors_as_a_real_server_words_them(apiserver, kubectl):
    apiserver.apply(samples.WIDGET_CRD)
    on_string = await kubectl('apply', '-f', '-', input=yaml.safe_dump(samples.widget('w1', owner='root')))
    assert on_string.stderr.strip() == ('The Widget "w1" is invalid: spec.owner: Invalid value: "string": '
                                        'must not be root')
    both = await kubectl('apply', '-f', '-', input=yaml.safe_dump(samples.widget('w2', mode='Turbo', minReplicas=4)))
    assert both.stderr.splitlines() == [
        'The Widget "w2" is invalid: ',
        '* spec.mode: Unsupported value: "Turbo": supported values: "Fast", "Slow", "Frozen"',
        '* spec.minReplicas: Invalid value: "object": minReplicas must not exceed replicas']


async def test_kmock_reactions_answer_before_the_emulation(apiserver, http):
    apiserver['get /version'] << {'major': '1', 'minor': '99'}
    _, version, _ = await send(http, 'GET', '/version')
    assert version == {'major': '1', 'minor': '99'}
    assert (await send(http, 'GET', '/api/v1/namespaces/default'))[0] == 200  # the rest is still emulated


async def test_the_projects_crd_installs_and_explains(apiserver, kubectl):
    crd_file = REPO / 'crds' / 'trainingjob.yaml'
    applied = await kubectl('apply', '-f', str(crd_file))
    assert applied.returncode == 0, applied.stderr
    explained = await kubectl('explain', 'trainingjob.spec')
    assert explained.returncode == 0 and 'FIELDS:' in explained.stdout, explained.stderr


async def test_the_projects_cel_errors_read_as_on_a_real_1_28_server(apiserver, kubectl):
    """The wording issue 14 saw on a real v1.28.4 server, for a rule on an object and one on a string."""
    crd_file, example = REPO / 'crds' / 'trainingjob.yaml', REPO / 'examples' / 'plateau-patience.yaml'
    assert (await kubectl('apply', '-f', str(crd_file))).returncode == 0
    no_workload = yaml.safe_load(example.read_text())
    del no_workload['spec']['template']
    short_idle = yaml.safe_load(example.read_text())
    short_idle['spec']['stop']['gpuIdle'] = {'below': 0.1, 'for': '20s'}
    results = [await kubectl('apply', '-f', '-', input=yaml.safe_dump(tj)) for tj in (no_workload, short_idle)]
    assert [r.stderr.strip() for r in results] == [
        'The TrainingJob "resnet-plateau" is invalid: spec: Invalid value: "object": set exactly one of template '
        'and workloadRef',
        'The TrainingJob "resnet-plateau" is invalid: spec.stop.gpuIdle.for: Invalid value: "string": must be at '
        'least 1m']


async def test_a_kopf_operator_reacts_and_patches_status(apiserver):
    """kopf 1.45 against the emulator: scanning, watching, status and finalizer patches, and Events."""
    apiserver.apply(samples.WIDGET_CRD)
    registry = kopf.OperatorRegistry()
    deleted = asyncio.Event()

    @kopf.on.login(registry=registry)
    def login(**_: object) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=apiserver.url, token=ADMIN_TOKEN, scheme='Bearer',
                                   default_namespace='default')

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: object) -> None:
        settings.peering.standalone = True
        settings.posting.level = logging.INFO
        settings.watching.server_timeout = 5

    @kopf.on.create('example.com', 'v1', 'widgets', registry=registry)
    def created(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: object) -> None:
        patch.status['phase'] = f"Running {spec['replicas']}"
        kopf.info(body, reason='Started', message='watching the widget')

    @kopf.on.delete('example.com', 'v1', 'widgets', registry=registry)
    def removed(**_: object) -> None:
        deleted.set()

    stop = asyncio.Event()
    operator = asyncio.create_task(kopf.operator(registry=registry, namespaces=['default'], clusterwide=False,
                                                standalone=True, stop_flag=stop))
    try:
        apiserver.apply(samples.widget('w1', replicas=3))

        def widget() -> dict:
            return (apiserver.objects('example.com/v1', 'Widget') or [{}])[0]
        await wait_until(lambda: widget().get('status', {}).get('phase') == 'Running 3', timeout=20)
        assert widget()['metadata']['finalizers'] == ['kopf.zalando.org/KopfFinalizerMarker']
        assert apiserver.calls('patch', 'widgets', subresource='status')  # kopf used /status
        await wait_until(lambda: apiserver.objects('v1', 'Event'), timeout=20)
        [event] = apiserver.objects('v1', 'Event')
        assert (event['reason'], event['involvedObject']['name']) == ('Started', 'w1')
        apiserver.cluster.delete(apiserver.resource_for('example.com/v1', 'Widget'), 'default', 'w1')
        await asyncio.wait_for(deleted.wait(), 20)
        await wait_until(lambda: not apiserver.objects('example.com/v1', 'Widget'), timeout=20)
    finally:
        stop.set()
        await asyncio.wait_for(operator, 30)
    assert not [r for r in apiserver.log if r.status and r.status >= 500]


def test_the_emulator_runs_as_a_process(tmp_path: pathlib.Path) -> None:
    crd = tmp_path / 'crd.yaml'
    crd.write_text(yaml.safe_dump(samples.WIDGET_CRD))
    config = tmp_path / 'kubeconfig'
    with ApiServerProcess(config, tls=True, apply=(str(crd),)) as server:
        assert server.url.startswith('https://127.0.0.1:')  # the kubeconfig carries the self-signed CA
        env = {'KUBECONFIG': str(config), 'KUBECACHEDIR': str(tmp_path / 'cache'), 'PATH': '/usr/bin:/bin'}
        listed = subprocess.run([kubectl_binary(), 'get', 'crd', '-o', 'name'], env=env, capture_output=True,
                                text=True, timeout=60)
        assert listed.stdout.strip() == 'customresourcedefinition.apiextensions.k8s.io/widgets.example.com'
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(config), client_configuration=configuration)
        with kubernetes.client.ApiClient(configuration) as client:
            namespaces = kubernetes.client.CoreV1Api(client).list_namespace()
        assert 'default' in {n.metadata.name for n in namespaces.items}


async def test_a_typo_in_the_projects_pod_template_is_rejected_at_apply(apiserver, kubectl):
    """kubectl applies with strict field validation: the CRD's embedded PodTemplateSpec schema
    makes a typo an error, where a free-form template let the server drop it silently."""
    crd_file, example = REPO / 'crds' / 'trainingjob.yaml', REPO / 'examples' / 'plateau-patience.yaml'
    assert (await kubectl('apply', '-f', str(crd_file))).returncode == 0
    typo = yaml.safe_load(example.read_text())
    container = typo['spec']['template']['spec']['containers'][0]
    container['comand'] = container.pop('command')
    applied = await kubectl('apply', '-f', '-', input=yaml.safe_dump(typo))
    assert applied.returncode != 0
    assert 'unknown field "spec.template.spec.containers[0].comand"' in applied.stderr
    assert (await kubectl('apply', '-f', str(example))).returncode == 0  # the example as written is fine

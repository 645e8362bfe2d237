"""
Pins how the emulated API server applies a CRD's structural schema, as kube-apiserver does:
pruning of unknown fields (and fieldValidation=Strict), defaulting, OpenAPI validation with the
server's field paths and wording, CEL x-kubernetes-validations, and the checks a CRD must pass.
"""
from __future__ import annotations

import copy
from typing import Any

import aiohttp
import pytest

from tests.support.apiserver import ApiServer, samples
from tests.support.apiserver.samples import WIDGETS, widget
from tests.support.apiserver.testing import send, wait_until

MERGE = 'application/merge-patch+json'

pytest_plugins = ['tests.support.apiserver.fixtures']


@pytest.fixture
def widgets(apiserver: ApiServer) -> None:
    apiserver.apply(samples.WIDGET_CRD)


async def create(http: aiohttp.ClientSession, body: dict[str, Any], **params: str) -> tuple[int, Any, Any]:
    return await send(http, 'POST', WIDGETS, body, **params)


async def invalid(http: aiohttp.ClientSession, body: dict[str, Any]) -> list[str]:
    """Create a widget expected to be invalid; return the causes as `field: message` lines."""
    code, status, _ = await create(http, body)
    assert (code, status['reason'], status['details']['kind'], status['details']['group']) == (
        422, 'Invalid', 'Widget', 'example.com'), status
    return [f"{c['field']}: {c['message']}" for c in status['details']['causes']]


# pruning -------------------------------------------------------------------------------------------

async def test_unknown_fields_are_pruned_with_a_warning(http, widgets):
    body = widget(bogus=1, stop={'metric': {'name': 'loss', 'typo': True}})
    body['metadata']['surprise'] = 'x'
    body['topLevel'] = 1
    code, stored, response = await create(http, body)
    assert code == 201
    assert 'bogus' not in stored['spec'] and 'typo' not in stored['spec']['stop']['metric']
    assert 'surprise' not in stored['metadata'] and 'topLevel' not in stored
    assert set(response.headers.getall('Warning')) == {
        '299 - "unknown field \\"metadata.surprise\\""', '299 - "unknown field \\"topLevel\\""',
        '299 - "unknown field \\"spec.bogus\\""', '299 - "unknown field \\"spec.stop.metric.typo\\""'}


async def test_strict_field_validation_rejects_unknown_fields(http, widgets):
    code, status, _ = await create(http, widget(bogus=1), fieldValidation='Strict')
    assert (code, status['reason']) == (400, 'BadRequest')
    assert status['message'] == ('Widget in version "v1" cannot be handled as a Widget: strict decoding error: '
                                 'unknown field "spec.bogus"')
    await create(http, widget())
    code, status, _ = await send(http, 'PATCH', f'{WIDGETS}/w1', {'spec': {'bogus': 1}}, content_type=MERGE,
                                 fieldValidation='Strict')
    assert (code, status['reason']) == (422, 'Invalid')  # a patch's strict error is about the patched object
    assert status['message'].endswith('strict decoding error: unknown field "spec.bogus"')


async def test_preserve_unknown_fields_keeps_an_embedded_pod_template(http, widgets):
    template = {'metadata': {'labels': {'app': 'trainer'}},
                'spec': {'restartPolicy': 'Never', 'containers': [{'name': 'main', 'image': 'python',
                                                                   'resources': {'limits': {'nvidia.com/gpu': 1}}}]}}
    _, stored, _ = await create(http, widget(template=template))
    assert stored['spec']['template'] == template


async def test_embedded_resource_keeps_its_object_fields_and_prunes_its_metadata(http, widgets):
    pod = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'p', 'labels': {'a': 'b'}, 'junk': 1},
           'spec': {'containers': []}}
    _, stored, _ = await create(http, widget(pod=pod))
    assert stored['spec']['pod'] == {**pod, 'metadata': {'name': 'p', 'labels': {'a': 'b'}}}
    causes = await invalid(http, widget('w2', pod={'spec': {}}))
    assert causes[:2] == ['spec.pod.apiVersion: Required value: must not be empty',
                          'spec.pod.kind: Required value: must not be empty']


# defaulting ----------------------------------------------------------------------------------------

async def test_defaults_apply_to_absent_fields_of_present_objects(http, widgets):
    body = widget(stop={'metric': {'name': 'loss'}})
    del body['spec']['replicas']
    _, stored, _ = await create(http, body)
    assert stored['spec']['replicas'] == 1 and stored['spec']['minReplicas'] == 0
    assert stored['spec']['stop']['metric'] == {'name': 'loss', 'patience': 5, 'mode': 'min'}
    assert 'template' not in stored['spec']  # no default, no object
    _, stored, _ = await create(http, widget('w2', stop={'metric': {'name': 'loss', 'patience': None}}))
    assert stored['spec']['stop']['metric']['patience'] == 5  # null in a non-nullable field is defaulted


async def test_defaults_apply_on_update_too(http, widgets):
    await create(http, widget())
    _, patched, _ = await send(http, 'PATCH', f'{WIDGETS}/w1', {'spec': {'stop': {'metric': {'name': 'acc'}}}},
                               content_type=MERGE)
    assert patched['spec']['stop']['metric']['patience'] == 5


# validation ----------------------------------------------------------------------------------------

async def test_minimum_is_reported_with_the_servers_wording(http, widgets):
    code, status, _ = await create(http, widget(stop={'metric': {'name': 'loss', 'patience': 0}}))
    assert code == 422
    assert status['message'] == ('Widget.example.com "w1" is invalid: spec.stop.metric.patience: Invalid value: 0: '
                                 'spec.stop.metric.patience in body should be greater than or equal to 1')
    assert status['details']['causes'] == [{
        'reason': 'FieldValueInvalid', 'field': 'spec.stop.metric.patience',
        'message': 'Invalid value: 0: spec.stop.metric.patience in body should be greater than or equal to 1'}]


@pytest.mark.parametrize(('spec', 'expected'), [
    ({'mode': 'Turbo'}, 'spec.mode: Unsupported value: "Turbo": supported values: "Fast", "Slow", "Frozen"'),
    ({'replicas': 'two'}, 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: '
                          '"string"'),
    ({'owner': 'Bob'}, "spec.owner: Invalid value: \"Bob\": spec.owner in body should match '^[a-z]+$'"),
    ({'owner': 'a'}, 'spec.owner: Invalid value: "a": spec.owner in body should be at least 2 chars long'),
    ({'owner': 'abcdefghij'}, 'spec.owner: Too long: may not be more than 8 bytes'),
    ({'tags': ['a', 'b', 'c']}, 'spec.tags: Too many: 3: must have at most 2 items'),
    ({'stop': {'metric': {}}}, 'spec.stop.metric.name: Required value'),
    ({'started': 'yesterday'}, 'spec.started: Invalid value: "yesterday": spec.started in body must be of type '
                               'date-time: "yesterday"'),
    ({'extra': {'k': 1}}, 'spec.extra.k: Invalid value: "integer": spec.extra.k in body must be of type string: '
                          '"integer"'),
])
async def test_openapi_validation_errors(http, widgets, spec, expected):
    assert (await invalid(http, widget(**spec)))[0] == expected


async def test_an_enum_error_comes_alone(http, widgets):
    # as 1.28 does (measured on v1.28.4): an enum error does not stop the CEL rules, and no "<nil>: ... rules
    # were not checked" line follows it
    causes = await invalid(http, widget(mode='Turbo'))
    assert causes == ['spec.mode: Unsupported value: "Turbo": supported values: "Fast", "Slow", "Frozen"']
    causes = await invalid(http, widget('w2', replicas=1, minReplicas=5, mode='Turbo'))
    assert causes == ['spec.mode: Unsupported value: "Turbo": supported values: "Fast", "Slow", "Frozen"',
                      'spec.minReplicas: Invalid value: "object": minReplicas must not exceed replicas']


async def test_size_and_type_errors_skip_cel_and_say_so(http, widgets):
    causes = await invalid(http, widget(tags=['a', 'b', 'c'], minReplicas=5))
    assert causes == ['spec.tags: Too many: 3: must have at most 2 items',
                      '<nil>: Invalid value: "null": some validation rules were not checked because the object was '
                      'invalid; correct the existing errors to complete validation']


async def test_several_errors_are_listed_in_brackets(http, widgets):
    _, status, _ = await create(http, widget(replicas=-1, owner='B'))
    assert status['message'].startswith('Widget.example.com "w1" is invalid: [')
    assert len(status['details']['causes']) >= 2


# CEL -----------------------------------------------------------------------------------------------

async def test_cel_rule_failure_names_the_field_and_message(http, widgets):
    # the bad value is the type of the rule's schema node: "object" for a rule on spec (with fieldPath)
    causes = await invalid(http, widget(replicas=1, minReplicas=2))
    assert causes == ['spec.minReplicas: Invalid value: "object": minReplicas must not exceed replicas']


async def test_cel_rule_on_a_string_reports_the_string_type(http, widgets):
    code, status, _ = await create(http, widget(owner='root'))
    assert code == 422
    assert status['message'] == ('Widget.example.com "w1" is invalid: spec.owner: Invalid value: "string": '
                                 'must not be root')


async def test_cel_rule_without_message_quotes_the_rule(http, widgets):
    causes = await invalid(http, widget(replicas=2, mode='Frozen'))
    assert causes == ['spec: Invalid value: "object": failed rule: !has(self.mode) || self.mode != "Frozen" || '
                      'self.replicas == 0']


async def test_cel_transition_rules_see_old_self_on_update_only(http, widgets):
    code, _, _ = await create(http, widget(owner='ann'))
    assert code == 201  # no oldSelf on create: the transition rule is skipped
    code, status, _ = await send(http, 'PATCH', f'{WIDGETS}/w1', {'spec': {'owner': 'bob'}}, content_type=MERGE)
    assert code == 422
    assert status['details']['causes'] == [{'reason': 'FieldValueForbidden', 'field': 'spec.owner',
                                            'message': 'Forbidden: owner is immutable'}]
    code, _, _ = await send(http, 'PATCH', f'{WIDGETS}/w1', {'spec': {'replicas': 3}}, content_type=MERGE)
    assert code == 200


async def test_status_writes_are_validated_too(http, widgets):
    await create(http, widget())
    code, status, _ = await send(http, 'PATCH', f'{WIDGETS}/w1/status', {'status': {'replicas': 'x'}},
                                 content_type=MERGE)
    assert code == 422 and status['details']['causes'][0]['field'] == 'status.replicas'


# the CRD itself ------------------------------------------------------------------------------------

async def test_a_crd_with_a_non_structural_schema_is_rejected(http):
    crd = copy.deepcopy(samples.WIDGET_CRD)
    crd['spec']['versions'][0]['schema']['openAPIV3Schema']['properties']['spec']['properties']['loose'] = {}
    code, status, _ = await send(http, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd)
    assert (code, status['reason']) == (422, 'Invalid')
    assert ('spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[loose].type: Required value: '
            'must not be empty for specified object fields') in status['message']


async def test_a_crd_with_a_rule_that_does_not_compile_is_rejected(http):
    crd = copy.deepcopy(samples.WIDGET_CRD)
    crd['spec']['versions'][0]['schema']['openAPIV3Schema']['properties']['spec']['x-kubernetes-validations'] = [
        {'rule': 'self.replicas >'}]
    code, status, _ = await send(http, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions', crd)
    assert code == 422
    assert status['details']['causes'][0]['field'] == (
        'spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule')


async def test_a_crd_is_established_and_served_until_deleted(apiserver, http):
    code, crd, _ = await send(http, 'POST', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions',
                              samples.WIDGET_CRD)
    assert code == 201
    conditions = {c['type']: c['status'] for c in crd['status']['conditions']}
    assert conditions == {'NamesAccepted': 'True', 'Established': 'True'}
    assert crd['status']['acceptedNames']['listKind'] == 'WidgetList'
    assert (await create(http, {**widget(), 'metadata': {'name': 'w1', 'finalizers': ['x.dev/hold']}}))[0] == 201
    await send(http, 'DELETE', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com')
    code, _, _ = await create(http, widget('w2'))
    assert code == 405  # no new objects while the CRD terminates and waits for the existing ones
    await send(http, 'PATCH', f'{WIDGETS}/w1', {'metadata': {'finalizers': None}}, content_type=MERGE)
    await wait_until(lambda: not apiserver.objects('apiextensions.k8s.io/v1', 'CustomResourceDefinition'))
    code, _, _ = await send(http, 'GET', '/apis/example.com/v1')
    assert code == 404

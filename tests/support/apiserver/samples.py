"""Sample CRDs and objects that the emulator's own tests use to pin real-server semantics."""
from __future__ import annotations

import copy
from typing import Any

GROUP = 'example.com'
WIDGETS = f'/apis/{GROUP}/v1/namespaces/default/widgets'

_WIDGET_SCHEMA: dict[str, Any] = {
    'type': 'object',
    'properties': {
        'spec': {
            'type': 'object',
            'description': "The widget's desired state.",
            'x-kubernetes-validations': [
                {'rule': 'self.minReplicas <= self.replicas', 'message': 'minReplicas must not exceed replicas',
                 'fieldPath': '.minReplicas'},
                {'rule': '!has(self.mode) || self.mode != "Frozen" || self.replicas == 0'},
            ],
            'properties': {
                'replicas': {'type': 'integer', 'minimum': 0, 'default': 1},
                'minReplicas': {'type': 'integer', 'minimum': 0, 'default': 0},
                'mode': {'type': 'string', 'enum': ['Fast', 'Slow', 'Frozen']},
                'owner': {'type': 'string', 'pattern': '^[a-z]+$', 'minLength': 2, 'maxLength': 8,
                          'x-kubernetes-validations': [{'rule': 'self == oldSelf', 'message': 'owner is immutable',
                                                        'reason': 'FieldValueForbidden'},
                                                       {'rule': "self != 'root'", 'message': 'must not be root'}]},
                'tags': {'type': 'array', 'maxItems': 2, 'items': {'type': 'string'}},
                'started': {'type': 'string', 'format': 'date-time'},
                'stop': {
                    'type': 'object',
                    'description': 'When to stop.',
                    'properties': {
                        'metric': {
                            'type': 'object',
                            'required': ['name'],
                            'properties': {
                                'name': {'type': 'string'},
                                'patience': {'type': 'integer', 'minimum': 1, 'default': 5,
                                             'description': 'Evaluations without improvement.'},
                                'mode': {'type': 'string', 'default': 'min'},
                            },
                        },
                    },
                },
                'template': {
                    'type': 'object',
                    'description': 'A pod template, kept verbatim.',
                    'x-kubernetes-preserve-unknown-fields': True,
                },
                'pod': {
                    'type': 'object',
                    'description': 'An embedded object with apiVersion, kind and metadata.',
                    'x-kubernetes-embedded-resource': True,
                    'x-kubernetes-preserve-unknown-fields': True,
                },
                'extra': {'type': 'object', 'additionalProperties': {'type': 'string'}},
            },
        },
        'status': {
            'type': 'object',
            'properties': {
                'replicas': {'type': 'integer'},
                'selector': {'type': 'string'},
                'phase': {'type': 'string'},
            },
        },
    },
}

def _crd(plural: str, kind: str, scope: str, version: dict[str, Any], **names: Any) -> dict[str, Any]:
    return {
        'apiVersion': 'apiextensions.k8s.io/v1', 'kind': 'CustomResourceDefinition',
        'metadata': {'name': f'{plural}.{GROUP}'},
        'spec': {'group': GROUP, 'scope': scope, 'names': {'plural': plural, 'kind': kind, **names},
                 'versions': [{'name': 'v1', 'served': True, 'storage': True, **version}]},
    }


WIDGET_CRD = _crd('widgets', 'Widget', 'Namespaced', {
    'subresources': {
        'status': {},
        'scale': {'specReplicasPath': '.spec.replicas', 'statusReplicasPath': '.status.replicas',
                  'labelSelectorPath': '.status.selector'},
    },
    'additionalPrinterColumns': [
        {'name': 'Replicas', 'type': 'integer', 'jsonPath': '.spec.replicas'},
        {'name': 'Phase', 'type': 'string', 'jsonPath': '.status.phase'},
        {'name': 'Age', 'type': 'date', 'jsonPath': '.metadata.creationTimestamp'},
    ],
    'schema': {'openAPIV3Schema': _WIDGET_SCHEMA},
}, singular='widget', shortNames=['wd'], categories=['all', 'gadgets'])

# A cluster-scoped kind without a status subresource: its status is ordinary content.
GADGET_CRD = _crd('gadgets', 'Gadget', 'Cluster', {
    'schema': {'openAPIV3Schema': {'type': 'object', 'x-kubernetes-preserve-unknown-fields': True}}})


def widget(name: str = 'w1', **spec: Any) -> dict[str, Any]:
    return {'apiVersion': f'{GROUP}/v1', 'kind': 'Widget', 'metadata': {'name': name, 'namespace': 'default'},
            'spec': {'replicas': 1, **copy.deepcopy(spec)}}


def job(name: str = 'j1', **metadata: Any) -> dict[str, Any]:
    return {'apiVersion': 'batch/v1', 'kind': 'Job', 'metadata': {'name': name, 'namespace': 'default', **metadata},
            'spec': {'template': {'spec': {'restartPolicy': 'Never',
                                           'containers': [{'name': 'trainer', 'image': 'python:3.11'}]}}}}


def pod(name: str = 'p1', **metadata: Any) -> dict[str, Any]:
    return {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': name, 'namespace': 'default', **metadata},
            'spec': {'containers': [{'name': 'main', 'image': 'busybox:1.36'}]}}


def deployment(name: str = 'd1', replicas: int = 2) -> dict[str, Any]:
    labels = {'app': name}
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': name, 'namespace': 'default'},
            'spec': {'replicas': replicas, 'selector': {'matchLabels': labels},
                     'template': {'metadata': {'labels': labels},
                                  'spec': {'containers': [{'name': 'main', 'image': 'nginx:1.27'}]}}}}


def owner_reference(owner: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {'apiVersion': owner['apiVersion'], 'kind': owner['kind'], 'name': owner['metadata']['name'],
            'uid': owner['metadata']['uid'], **extra}

"""
OpenAPI v3 documents per group-version, built from CRD schemas (and stand-ins for built-ins),
enough for `kubectl explain` and for kubectl's checks of which patch types and query parameters
an endpoint supports.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from .resources import ResourceType

OBJECT_META = 'io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta'
_META_SCHEMA = {
    'description': 'ObjectMeta is metadata that all persisted resources must have.',
    'type': 'object',
    'properties': {
        name: {'type': kind, 'description': text} for name, kind, text in (
            ('name', 'string', 'Name must be unique within a namespace.'),
            ('namespace', 'string', 'Namespace defines the space within which each name must be unique.'),
            ('generateName', 'string', 'An optional prefix the server uses to generate a unique name.'),
            ('uid', 'string', 'UID is the unique in time and space value for this object.'),
            ('resourceVersion', 'string', 'An opaque value that represents the internal version of this object.'),
            ('generation', 'integer', 'A sequence number representing a specific generation of the desired state.'),
            ('creationTimestamp', 'string', 'The server time when this object was created.'),
            ('deletionTimestamp', 'string', 'The time after which this resource will be deleted.'),
            ('labels', 'object', 'Map of string keys and values to organize and categorize objects.'),
            ('annotations', 'object', 'Unstructured key value map stored with a resource.'),
            ('finalizers', 'array', 'Must be empty before the object is deleted from the registry.'),
            ('ownerReferences', 'array', 'List of objects depended by this object.'),
        )
    },
}
_PATCH_TYPES = ('application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml')


def schema_name(rt: ResourceType) -> str:
    """Definition names reverse the group: plateau.dev/v1alpha1 TrainingJob -> dev.plateau.v1alpha1.TrainingJob."""
    group = '.'.join(reversed(rt.group.split('.'))) if rt.group else 'io.k8s.api.core'
    return f'{group}.{rt.version}.{rt.kind}'


def _type_schema(rt: ResourceType) -> dict[str, Any]:
    if rt.schema is not None:
        result = copy.deepcopy(rt.schema)
    else:
        result = {'type': 'object', 'description': f'{rt.kind} is a built-in kind (schema not emulated).',
                  'x-kubernetes-preserve-unknown-fields': True}
    props = result.setdefault('properties', {})
    props['apiVersion'] = {'type': 'string', 'description': 'APIVersion defines the versioned schema of this '
                                                             'representation of an object.'}
    props['kind'] = {'type': 'string', 'description': 'Kind is a string value representing the REST resource '
                                                       'this object represents.'}
    props['metadata'] = {'allOf': [{'$ref': f'#/components/schemas/{OBJECT_META}'}],
                         'description': "Standard object's metadata."}
    result['x-kubernetes-group-version-kind'] = [{'group': rt.group, 'kind': rt.kind, 'version': rt.version}]
    return result


def _operation(rt: ResourceType, action: str, body: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        'operationId': f'{action}{rt.kind}',
        'x-kubernetes-action': action,
        'x-kubernetes-group-version-kind': {'group': rt.group, 'kind': rt.kind, 'version': rt.version},
        'parameters': [{'name': n, 'in': 'query', 'schema': {'type': 'string'}}
                       for n in ('dryRun', 'fieldManager', 'fieldValidation')] if body else [],
        'responses': {'200': {'description': 'OK'}},
    }
    if body:
        types = _PATCH_TYPES if action == 'patch' else ('application/json', 'application/yaml')
        op['requestBody'] = {'content': {t: {'schema': {'$ref': f'#/components/schemas/{schema_name(rt)}'}}
                                         for t in types}}
    return op


def _paths(rt: ResourceType) -> dict[str, Any]:
    base = f'/apis/{rt.group}/{rt.version}' if rt.group else f'/api/{rt.version}'
    scope = f'{base}/namespaces/{{namespace}}' if rt.namespaced else base
    collection = {'get': _operation(rt, 'list')}
    if 'create' in rt.verbs:
        collection['post'] = _operation(rt, 'post', body=True)
    paths = {f'{scope}/{rt.plural}': collection}
    if 'get' in rt.verbs:
        paths[f'{scope}/{rt.plural}/{{name}}'] = {
            'get': _operation(rt, 'get'), 'put': _operation(rt, 'put', body=True),
            'patch': _operation(rt, 'patch', body=True), 'delete': _operation(rt, 'delete'),
        }
    return paths


def group_version_document(types: list[ResourceType], server_version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {OBJECT_META: _META_SCHEMA}
    paths: dict[str, Any] = {}
    for rt in types:
        schemas[schema_name(rt)] = _type_schema(rt)
        paths.update(_paths(rt))
    return {'openapi': '3.0.0', 'info': {'title': 'Kubernetes', 'version': server_version},
            'paths': paths, 'components': {'schemas': schemas}}


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64].upper()

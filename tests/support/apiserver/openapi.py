"""
The OpenAPI documents kube-apiserver serves: v3 per group-version (/openapi/v3/apis/G/V) and one
Swagger 2.0 document (/openapi/v2, as JSON or as the protobuf kubectl 1.28 reads, see openapi_proto).
Built-in kinds carry their real schemas (builtin_schemas), custom resources their CRD's. Enough for
`kubectl explain`, for kubectl's strategic merge patches, and for its checks of which patch types and
query parameters (dryRun, fieldValidation) an endpoint supports.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from . import builtin_schemas
from .resources import ResourceType

OBJECT_META = 'io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta'
PATCH = 'io.k8s.apimachinery.pkg.apis.meta.v1.Patch'
V2_REFS = '#/definitions/'
V3_REFS = '#/components/schemas/'
_PATCH_TYPES = ('application/json-patch+json', 'application/merge-patch+json', 'application/apply-patch+yaml')
STRATEGIC = 'application/strategic-merge-patch+json'
_WRITE_PARAMETERS = (
    ('dryRun', 'When present, indicates that modifications should not be persisted.'),
    ('fieldManager', 'fieldManager is a name associated with the actor or entity that is making these changes.'),
    ('fieldValidation', 'fieldValidation instructs the server on how to handle objects in the request '
                        'containing unknown or duplicate fields. Valid values are: Ignore, Warn (the default) '
                        'and Strict.'),
)


def schema_name(rt: ResourceType) -> str:
    """A built-in's published name (io.k8s.api.batch.v1.Job); for custom resources the group reversed:
    plateau.dev/v1alpha1 TrainingJob -> dev.plateau.v1alpha1.TrainingJob."""
    if not rt.custom:
        published = builtin_schemas.definition_name(rt.group, rt.version, rt.kind)
        if published:
            return published
    group = '.'.join(reversed(rt.group.split('.'))) if rt.group else 'io.k8s.api.core'
    return f'{group}.{rt.version}.{rt.kind}'


def _type_schema(rt: ResourceType, refs: str) -> dict[str, Any]:
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
    meta_ref = {'$ref': refs + OBJECT_META}
    props['metadata'] = {**({'allOf': [meta_ref]} if refs == V3_REFS else meta_ref),
                         'description': "Standard object's metadata."}
    result['x-kubernetes-group-version-kind'] = [{'group': rt.group, 'kind': rt.kind, 'version': rt.version}]
    return _v2_schema(result) if refs == V2_REFS else result


def _v2_schema(s: Any) -> Any:
    """ToStructuralOpenAPIV2: what a CRD's schema loses in Swagger 2.0 (and kubectl cannot cope with)."""
    if not isinstance(s, dict):
        return s
    nullable = bool(s.get('nullable'))
    s = {k: v for k, v in s.items() if k not in ('oneOf', 'anyOf', 'not', 'nullable', 'x-kubernetes-validations')}
    if nullable or s.get('x-kubernetes-preserve-unknown-fields'):
        s.pop('items', None)
        s.pop('properties', None)
    if nullable or s.get('x-kubernetes-int-or-string') or (s.get('type') == 'array' and 'items' not in s):
        s.pop('type', None)
    if isinstance(s.get('properties'), dict):
        s['properties'] = {k: _v2_schema(v) for k, v in s['properties'].items()}
    for key in ('items', 'additionalProperties'):
        if isinstance(s.get(key), dict):
            s[key] = _v2_schema(s[key])
    if 'allOf' in s:
        s['allOf'] = [_v2_schema(sub) for sub in s['allOf']]
    return s


def definitions(types: list[ResourceType], refs: str) -> dict[str, Any]:
    """The schemas of these kinds and of everything they refer to (ObjectMeta…)."""
    published = [schema_name(rt) for rt in types if not rt.custom]
    schemas = dict(builtin_schemas.swagger_definitions([*published, OBJECT_META, PATCH], refs))
    for rt in types:
        if schema_name(rt) not in schemas:  # custom resources, and built-ins without a published schema
            schemas[schema_name(rt)] = _type_schema(rt, refs)
    return schemas


def _gvk(rt: ResourceType) -> dict[str, str]:
    return {'group': rt.group, 'kind': rt.kind, 'version': rt.version}


def _patch_types(rt: ResourceType) -> list[str]:
    return [*_PATCH_TYPES, *([] if rt.custom else [STRATEGIC])]


def _operation(rt: ResourceType, action: str, body: bool = False) -> dict[str, Any]:
    op: dict[str, Any] = {
        'operationId': f'{action}{rt.kind}',
        'x-kubernetes-action': action,
        'x-kubernetes-group-version-kind': _gvk(rt),
        'parameters': [{'name': n, 'in': 'query', 'description': text, 'schema': {'type': 'string'}}
                       for n, text in _WRITE_PARAMETERS] if body else [],
        'responses': {'200': {'description': 'OK'}},
    }
    if body:
        types = _patch_types(rt) if action == 'patch' else ['application/json', 'application/yaml']
        op['requestBody'] = {'content': {t: {'schema': {'$ref': f'{V3_REFS}{schema_name(rt)}'}} for t in types}}
    return op


def _v2_operation(rt: ResourceType, action: str, body: bool = False) -> dict[str, Any]:
    """The Swagger 2.0 form: parameters carry their type, the body is a parameter, media types are lists."""
    op: dict[str, Any] = {
        'description': f'{action} {rt.kind}', 'operationId': f'{action}{rt.kind}',
        'produces': ['application/json', 'application/yaml'], 'schemes': ['https'],
        'tags': [rt.group.replace('.', '_') + '_' + rt.version if rt.group else f'core_{rt.version}'],
        'parameters': [], 'responses': {'200': {'description': 'OK', 'schema': {'$ref': V2_REFS + schema_name(rt)}}},
        'x-kubernetes-action': action, 'x-kubernetes-group-version-kind': _gvk(rt),
    }
    if body:
        op['consumes'] = _patch_types(rt) if action == 'patch' else ['*/*']
        op['parameters'] = [
            {'name': 'body', 'in': 'body', 'required': True,
             'schema': {'$ref': V2_REFS + (PATCH if action == 'patch' else schema_name(rt))}},
            *({'name': n, 'in': 'query', 'type': 'string', 'uniqueItems': True, 'description': text}
              for n, text in _WRITE_PARAMETERS),
        ]
    return op


def _paths(rt: ResourceType, operation: Any, v2: bool = False) -> dict[str, Any]:
    base = f'/apis/{rt.group}/{rt.version}' if rt.group else f'/api/{rt.version}'
    scope = f'{base}/namespaces/{{namespace}}' if rt.namespaced else base
    collection = {'get': operation(rt, 'list')}
    if 'create' in rt.verbs:
        collection['post'] = operation(rt, 'post', body=True)
    in_path = [{'name': n, 'in': 'path', 'required': True, 'type': 'string', 'uniqueItems': True}
               for n in ('namespace',) if rt.namespaced] if v2 else []
    paths = {f'{scope}/{rt.plural}': {**collection, **({'parameters': in_path} if in_path else {})}}
    if 'get' in rt.verbs:
        paths[f'{scope}/{rt.plural}/{{name}}'] = {
            'get': operation(rt, 'get'), 'put': operation(rt, 'put', body=True),
            'patch': operation(rt, 'patch', body=True), 'delete': operation(rt, 'delete'),
            **({'parameters': [*in_path, {'name': 'name', 'in': 'path', 'required': True, 'type': 'string',
                                          'uniqueItems': True}]} if v2 else {}),
        }
    return paths


def group_version_document(types: list[ResourceType], server_version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for rt in types:
        paths.update(_paths(rt, _operation))
    return {'openapi': '3.0.0', 'info': {'title': 'Kubernetes', 'version': server_version},
            'paths': paths, 'components': {'schemas': definitions(types, V3_REFS)}}


def swagger_document(types: list[ResourceType], server_version: str) -> dict[str, Any]:
    """/openapi/v2: every served kind in one document."""
    paths: dict[str, Any] = {}
    for rt in types:
        paths.update(_paths(rt, _v2_operation, v2=True))
    return {'swagger': '2.0', 'info': {'title': 'Kubernetes', 'version': server_version}, 'paths': paths,
            'definitions': definitions(types, V2_REFS),
            'securityDefinitions': {'BearerToken': {'description': 'Bearer Token authentication', 'type': 'apiKey',
                                                    'name': 'authorization', 'in': 'header'}},
            'security': [{'BearerToken': []}]}


def digest(document: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64].upper()

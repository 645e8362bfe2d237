"""
The real schemas of built-in kinds, from the JSON schemas that the `kubernetes-validate` package
ships per Kubernetes release (generated from kube-apiserver's own OpenAPI document), loaded once
and lazily. They serve two purposes here:

- typed decoding: the fields a Go struct does not have are unknown, and a real server drops them
  (fieldValidation Ignore/Warn) or rejects the request (Strict); `prune` finds and drops them;
- OpenAPI: `swagger_definitions` turns them back into the definitions kube-apiserver publishes at
  /openapi/v2 and /openapi/v3, so that `kubectl explain job` and kubectl's patches see the real fields.
"""
from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Any

# The oldest minor the project supports: a field that 1.28 does not know is unknown to the emulator too.
KUBE_VERSION = '1.28.0'
_REF = re.compile(r'^#/\$defs/(.+)$')
# Types that the JSON schemas spell as oneOf, and kube-apiserver's OpenAPI as a string (with a format).
_SWAGGER_SCALARS = {
    'io.k8s.apimachinery.pkg.util.intstr.IntOrString': {'type': 'string', 'format': 'int-or-string'},
    'io.k8s.apimachinery.pkg.api.resource.Quantity': {'type': 'string'},
}

Schema = dict[str, Any]


@functools.cache
def definitions() -> dict[str, Schema]:
    """Every definition of the release, by its OpenAPI name (io.k8s.api.batch.v1.Job…)."""
    folder = resources.files('kubernetes_validate').joinpath('kubernetes-json-schema', f'v{KUBE_VERSION}-local')
    document = json.loads(folder.joinpath('_definitions.json').read_text())
    defs: dict[str, Schema] = document['$defs']
    return defs


@functools.cache
def _by_kind() -> dict[tuple[str, str, str], str]:
    index = {}
    for name, schema in definitions().items():
        for gvk in schema.get('x-kubernetes-group-version-kind') or []:
            index.setdefault((gvk.get('group', ''), gvk.get('version', ''), gvk.get('kind', '')), name)
    return index


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The definition of a built-in kind, e.g. ('batch', 'v1', 'Job') -> io.k8s.api.batch.v1.Job."""
    return _by_kind().get((group, version, kind))


def _resolve(schema: Schema) -> Schema:
    for _ in range(8):  # refs point at definitions, which never chain far
        match = _REF.match(schema.get('$ref', ''))
        if not match:
            break
        schema = definitions()[match.group(1)]
    return schema


# Typed decoding: unknown fields -----------------------------------------------------------------

def prune(group: str, version: str, kind: str, obj: dict[str, Any]) -> list[str]:
    """Drop what the kind's Go struct has no field for, in place; return the dropped paths as the
    strict decoder names them (`spec.template.spec.containers[0].comand`). [] for unknown kinds."""
    name = definition_name(group, version, kind)
    if name is None:
        return []
    dropped: list[str] = []
    _prune(obj, definitions()[name], '', dropped)
    return dropped


def _prune(value: Any, schema: Schema, path: str, dropped: list[str]) -> None:
    schema = _resolve(schema)
    if isinstance(value, list) and isinstance(schema.get('items'), dict):
        for i, item in enumerate(value):
            _prune(item, schema['items'], f'{path}[{i}]', dropped)
    elif isinstance(value, dict):
        props = schema.get('properties')
        extra = schema.get('additionalProperties')
        for key in list(value):
            sub_path = f'{path}.{key}' if path else key
            if props is not None and key in props:
                _prune(value[key], props[key], sub_path, dropped)
            elif props is not None:
                dropped.append(sub_path)
                del value[key]
            elif isinstance(extra, dict):
                _prune(value[key], extra, sub_path, dropped)
        # Without properties (RawExtension, free-form maps) anything goes, as json.RawMessage takes it all.


# OpenAPI ------------------------------------------------------------------------------------------

def closure(names: Iterable[str]) -> list[str]:
    """The definitions these ones refer to, transitively, themselves included (sorted)."""
    seen: set[str] = set()
    todo = [n for n in names if n in definitions()]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [r for r in _refs(definitions()[name]) if r not in seen]
    return sorted(seen)


def _refs(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        match = _REF.match(schema.get('$ref', '') if isinstance(schema.get('$ref'), str) else '')
        if match:
            yield match.group(1)
        for value in schema.values():
            yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


def swagger_definitions(names: Iterable[str], ref_prefix: str = '#/definitions/') -> dict[str, Schema]:
    """Definitions as kube-apiserver publishes them: `type: x` instead of `[x, "null"]`, refs into
    `ref_prefix` (`#/components/schemas/` for OpenAPI v3), int-or-string and quantity as strings.
    The schemas are shared between calls: callers must not change them."""
    return {name: _published(name, ref_prefix) for name in closure(names)}


@functools.cache
def _published(name: str, ref_prefix: str) -> Schema:
    return _SWAGGER_SCALARS.get(name) or _swagger(definitions()[name], ref_prefix)


def _swagger(schema: Any, ref_prefix: str) -> Any:
    if isinstance(schema, list):
        return [_swagger(item, ref_prefix) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result: Schema = {}
    for key, value in schema.items():
        if key == '$ref' and isinstance(value, str) and _REF.match(value):
            name = _REF.match(value).group(1)  # type: ignore[union-attr]
            result[key] = ref_prefix + name
        elif key == 'type' and isinstance(value, list):
            kinds = [v for v in value if v != 'null']
            if kinds:
                result[key] = kinds[0]
        elif key in ('properties', 'patternProperties'):
            result[key] = {k: _swagger(v, ref_prefix) for k, v in value.items()}
        elif key == 'additionalProperties' and value is False:
            continue  # the strict variant's marker, not part of the published schema
        else:
            result[key] = _swagger(value, ref_prefix) if isinstance(value, (dict, list)) else copy.deepcopy(value)
    return result

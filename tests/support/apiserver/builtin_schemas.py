"""
The real schemas of built-in kinds, from the JSON schemas that the `kubernetes-validate` package
ships per Kubernetes release (generated from kube-apiserver's own OpenAPI document), loaded once
and lazily. Typed decoding: the fields a Go struct does not have are unknown, and a real server
drops them (fieldValidation Ignore/Warn) or rejects the request (Strict); `prune` finds and drops them.
"""
from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

# The oldest minor the project supports: a field that 1.28 does not know is unknown to the emulator too.
KUBE_VERSION = '1.28.0'
_REF = re.compile(r'^#/\$defs/(.+)$')

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

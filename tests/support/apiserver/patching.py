"""
The three patch formats kube-apiserver accepts for JSON objects.

* JSON merge patch (RFC 7386): maps merge, null deletes, everything else replaces.
* JSON patch (RFC 6902): add/remove/replace/move/copy/test; any failed operation is a 422.
* Strategic merge patch (built-in kinds only): lists with a merge key merge by it, primitive
  merge lists (finalizers) union, and the $patch / $retainKeys / $setElementOrder /
  $deleteFromPrimitiveList directives apply.
"""
from __future__ import annotations

import copy
from typing import Any

from . import errors
from .schema import json_equal


class PatchFailed(Exception):
    """A patch that does not apply to the object (a 422 on a real server)."""


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# JSON patch -------------------------------------------------------------------------------------

def _tokens(pointer: str) -> list[str]:
    if pointer == '':
        return []
    if not pointer.startswith('/'):
        raise PatchFailed(f'invalid JSON pointer: {pointer!r}')
    return [t.replace('~1', '/').replace('~0', '~') for t in pointer[1:].split('/')]


def _parent(doc: Any, pointer: str) -> tuple[Any, str]:
    tokens = _tokens(pointer)
    if not tokens:
        raise PatchFailed('cannot operate on the whole document')
    node = doc
    for token in tokens[:-1]:
        node = _step(node, token)
    return node, tokens[-1]


def _step(node: Any, token: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list) and token.isdigit() and int(token) < len(node):
        return node[int(token)]
    raise PatchFailed(f'missing path element {token!r}')


def _get(doc: Any, pointer: str) -> Any:
    node = doc
    for token in _tokens(pointer):
        node = _step(node, token)
    return node


def _add(doc: Any, pointer: str, value: Any) -> Any:
    if pointer == '':
        return value
    parent, key = _parent(doc, pointer)
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list):
        position = len(parent) if key == '-' else int(key) if key.isdigit() else -1
        if not 0 <= position <= len(parent):
            raise PatchFailed(f'index out of bounds: {key}')
        parent.insert(position, value)
    else:
        raise PatchFailed(f'cannot add into {type(parent).__name__}')
    return doc


def _remove(doc: Any, pointer: str) -> Any:
    parent, key = _parent(doc, pointer)
    _step(parent, key)  # raises when absent
    if isinstance(parent, dict):
        return parent.pop(key)
    return parent.pop(int(key))


def json_patch(doc: Any, operations: Any) -> Any:
    """Apply an RFC 6902 patch to a copy of doc. Raises ApiError 400 for a malformed patch."""
    if not isinstance(operations, list) or not all(isinstance(o, dict) and 'op' in o for o in operations):
        raise errors.bad_request('json: cannot unmarshal object into Go value of type jsonpatch.Patch')
    doc = copy.deepcopy(doc)
    try:
        for operation in operations:
            op, path = operation['op'], operation.get('path', '')
            value = copy.deepcopy(operation.get('value'))
            if op == 'add':
                doc = _add(doc, path, value)
            elif op == 'remove':
                _remove(doc, path)
            elif op == 'replace':
                _get(doc, path)
                doc = _add(doc, path, value) if path == '' else _replace(doc, path, value)
            elif op == 'move':
                doc = _add(doc, path, _remove(doc, operation['from']))
            elif op == 'copy':
                doc = _add(doc, path, copy.deepcopy(_get(doc, operation['from'])))
            elif op == 'test':
                if not json_equal(_get(doc, path), value):
                    raise PatchFailed(f'testing value {path} failed: test failed')
            else:
                raise errors.bad_request(f'Unexpected kind: {op}')
    except (PatchFailed, KeyError, ValueError) as e:
        raise errors.unprocessable() from e
    return doc


def _replace(doc: Any, pointer: str, value: Any) -> Any:
    parent, key = _parent(doc, pointer)
    parent[int(key) if isinstance(parent, list) else key] = value
    return doc


# Strategic merge patch ----------------------------------------------------------------------------

# patchMergeKey of the list fields of built-in kinds (by field name; "ports" depends on the item).
MERGE_KEYS = {
    'containers': 'name', 'initContainers': 'name', 'ephemeralContainers': 'name', 'env': 'name',
    'volumes': 'name', 'volumeMounts': 'mountPath', 'volumeDevices': 'devicePath', 'imagePullSecrets': 'name',
    'hostAliases': 'ip', 'ownerReferences': 'uid', 'conditions': 'type', 'resourceClaims': 'name',
    'schedulingGates': 'name', 'topologySpreadConstraints': 'topologyKey', 'ports': 'containerPort',
}
# Lists of scalars with patchStrategy "merge".
PRIMITIVE_MERGE_LISTS = {'finalizers'}


def _merge_key(field: str, items: list[Any]) -> str | None:
    key = MERGE_KEYS.get(field)
    if field == 'ports' and any(isinstance(i, dict) and 'containerPort' not in i and 'port' in i for i in items):
        return 'port'  # a Service's ports merge on "port"
    return key


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return copy.deepcopy(patch)
    directive = patch.get('$patch')
    if directive == 'replace':
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != '$patch'}
    if directive == 'delete':
        return None
    result = dict(target)
    for key, value in patch.items():
        if key.startswith('$setElementOrder/') or key in ('$patch', '$retainKeys'):
            continue
        if key.startswith('$deleteFromPrimitiveList/'):
            field = key.split('/', 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key) if isinstance(result.get(key), dict) else {}, value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(patch.get('$retainKeys'), list):
        result = {k: v for k, v in result.items() if k in patch['$retainKeys']}
    return result


def _merge_list(field: str, stored: Any, patch: list[Any]) -> list[Any]:
    current: list[Any] = list(stored) if isinstance(stored, list) else []
    if any(isinstance(i, dict) and i.get('$patch') == 'replace' for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and '$patch' in i)]
    if field in PRIMITIVE_MERGE_LISTS:
        return current + [copy.deepcopy(v) for v in patch if v not in current]
    key = _merge_key(field, patch + current)
    if key is None:
        return [copy.deepcopy(v) for v in patch]
    result = list(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise errors.bad_request(f'map: {item} does not contain declared merge key: {key}')
        positions = [i for i, existing in enumerate(result)
                     if isinstance(existing, dict) and existing.get(key) == item[key]]
        if item.get('$patch') == 'delete':
            result = [e for i, e in enumerate(result) if i not in positions]
        elif positions:
            result[positions[0]] = strategic_merge_patch(result[positions[0]], item)
        else:
            result.append({k: copy.deepcopy(v) for k, v in item.items() if k != '$patch'})
    return result

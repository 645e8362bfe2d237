"""
Just enough of Kubernetes' protobuf encoding to read the bodies kubectl's typed clients send as
protobuf: `kubectl create namespace|configmap|secret|serviceaccount` and `kubectl auth can-i`.
A body is the `k8s\\0` magic and a runtime.Unknown envelope (TypeMeta, raw message); the messages
are decoded with the field numbers of their .proto definitions. Other kinds are answered 415.
"""
from __future__ import annotations

import base64
from typing import Any

MAGIC = b'k8s\x00'
MEDIA_TYPE = 'application/vnd.kubernetes.protobuf'

# Field number -> (JSON name, type): str, bool, int, bytes, 'map' (string map), 'bytesmap', [type] for
# repeated fields, or the name of another message below.
Fields = dict[int, tuple[str, Any]]
MESSAGES: dict[str, Fields] = {
    'TypeMeta': {1: ('apiVersion', str), 2: ('kind', str)},
    'ObjectMeta': {1: ('name', str), 2: ('generateName', str), 3: ('namespace', str), 11: ('labels', 'map'),
                   12: ('annotations', 'map'), 14: ('finalizers', [str])},
    'Namespace': {1: ('metadata', 'ObjectMeta'), 2: ('spec', 'NamespaceSpec')},
    'NamespaceSpec': {1: ('finalizers', [str])},
    'ConfigMap': {1: ('metadata', 'ObjectMeta'), 2: ('data', 'map'), 3: ('binaryData', 'bytesmap'),
                  4: ('immutable', bool)},
    'Secret': {1: ('metadata', 'ObjectMeta'), 2: ('data', 'bytesmap'), 3: ('type', str), 4: ('stringData', 'map'),
               5: ('immutable', bool)},
    'ServiceAccount': {1: ('metadata', 'ObjectMeta'), 4: ('automountServiceAccountToken', bool)},
    'SelfSubjectAccessReview': {1: ('metadata', 'ObjectMeta'), 2: ('spec', 'SelfSubjectAccessReviewSpec')},
    'SelfSubjectAccessReviewSpec': {1: ('resourceAttributes', 'ResourceAttributes'),
                                    2: ('nonResourceAttributes', 'NonResourceAttributes')},
    'ResourceAttributes': {1: ('namespace', str), 2: ('verb', str), 3: ('group', str), 4: ('version', str),
                           5: ('resource', str), 6: ('subresource', str), 7: ('name', str)},
    'NonResourceAttributes': {1: ('path', str), 2: ('verb', str)},
}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


def _raw_fields(data: bytes) -> list[tuple[int, Any]]:
    """The (field number, value) pairs of a message; length-delimited values stay bytes."""
    result = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        else:
            size = 8 if wire == 1 else 4
            value, pos = data[pos:pos + size], pos + size
        result.append((number, value))
    return result


def _value(kind: Any, raw: Any) -> Any:
    if kind is str:
        return raw.decode()
    if kind is bool:
        return bool(raw)
    if kind in ('map', 'bytesmap'):
        entry = dict(_raw_fields(raw))
        value = entry.get(2, b'')
        return entry.get(1, b'').decode(), (base64.b64encode(value).decode() if kind == 'bytesmap' else value.decode())
    return decode_message(kind, raw)


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    result: dict[str, Any] = {}
    fields = MESSAGES[name]
    for number, raw in _raw_fields(data):
        if number not in fields:
            continue
        field, kind = fields[number]
        if isinstance(kind, list):
            result.setdefault(field, []).append(_value(kind[0], raw))
        elif kind in ('map', 'bytesmap'):
            key, value = _value(kind, raw)
            result.setdefault(field, {})[key] = value
        else:
            result[field] = _value(kind, raw)
    return result


def decode(body: bytes) -> dict[str, Any] | None:
    """A protobuf request body as its JSON form; None for kinds this module cannot read."""
    envelope = dict(_raw_fields(body.removeprefix(MAGIC)))  # runtime.Unknown: 1 typeMeta, 2 raw
    type_meta = decode_message('TypeMeta', envelope.get(1, b''))
    if type_meta.get('kind') not in MESSAGES:
        return None
    return {**type_meta, **decode_message(type_meta['kind'], envelope.get(2, b''))}

"""
A Swagger 2.0 document in the protobuf form that kube-apiserver serves at /openapi/v2 when asked for
`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, which is the only form client-go's
`OpenAPISchema()` (kubectl 1.28's explain, apply and --dry-run checks) reads: gnostic's
openapi_v2.Document, with the field numbers of gnostic's OpenAPIv2.proto. Values that the proto
has no type for (defaults, enums, examples, vendor extensions) travel as YAML text in `Any.yaml`,
as kube-openapi writes them. Only what kube-apiserver's own documents use is encoded.
"""
from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

import yaml

MEDIA_TYPE = 'application/com.github.proto-openapi.spec.v2@v1.0+protobuf'  # what clients ask for
CONTENT_TYPE = 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf'  # what kube-openapi answers (no @)
Json = dict[str, Any]


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s as two's complement, as protobuf does
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _message(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _string(number: int, value: Any) -> bytes:
    return _message(number, str(value).encode()) if value not in (None, '') else b''


def _strings(number: int, values: Iterable[Any]) -> bytes:
    return b''.join(_message(number, str(v).encode()) for v in values)


def _bool(number: int, value: Any) -> bytes:
    return _varint(number << 3) + b'\x01' if value else b''


def _int(number: int, value: Any) -> bytes:
    return _varint(number << 3) + _varint(int(value)) if value else b''


def _double(number: int, value: Any) -> bytes:
    return _varint(number << 3 | 1) + struct.pack('<d', float(value)) if value else b''


def _any(number: int, value: Any) -> bytes:
    """gnostic's Any: the value as YAML text (field 2)."""
    return _message(number, _string(2, yaml.safe_dump(value, default_flow_style=False, sort_keys=False)))


def _extensions(number: int, obj: Json) -> bytes:
    """`x-…` keys as repeated NamedAny (name 1, value 2)."""
    return b''.join(_message(number, _string(1, k) + _any(2, v)) for k, v in obj.items() if k.startswith('x-'))


def _named(number: int, items: Json, encode: Callable[[Any], bytes]) -> bytes:
    """A map as gnostic spells it: repeated Named* messages (name 1, value 2), in order."""
    return b''.join(_message(number, _string(1, k) + _message(2, encode(v))) for k, v in items.items())


# Schema ------------------------------------------------------------------------------------------

_SCHEMA_SCALARS: tuple[tuple[str, int, Callable[[int, Any], bytes]], ...] = (
    ('$ref', 1, _string), ('format', 2, _string), ('title', 3, _string), ('description', 4, _string),
    ('multipleOf', 6, _double), ('maximum', 7, _double), ('exclusiveMaximum', 8, _bool), ('minimum', 9, _double),
    ('exclusiveMinimum', 10, _bool), ('maxLength', 11, _int), ('minLength', 12, _int), ('pattern', 13, _string),
    ('maxItems', 14, _int), ('minItems', 15, _int), ('uniqueItems', 16, _bool), ('maxProperties', 17, _int),
    ('minProperties', 18, _int), ('discriminator', 26, _string), ('readOnly', 27, _bool),
)


def schema(s: Json) -> bytes:
    out = [encode(number, s[key]) for key, number, encode in _SCHEMA_SCALARS if key in s]
    if 'default' in s:
        out.append(_any(5, s['default']))
    out.append(_strings(19, s.get('required') or []))
    out += [_any(20, v) for v in s.get('enum') or []]
    extra = s.get('additionalProperties')
    if isinstance(extra, dict):
        out.append(_message(21, _message(1, schema(extra))))
    elif isinstance(extra, bool):
        out.append(_message(21, _varint(2 << 3) + (b'\x01' if extra else b'\x00')))
    if s.get('type'):
        kinds = s['type'] if isinstance(s['type'], list) else [s['type']]
        out.append(_message(22, _strings(1, kinds)))
    if isinstance(s.get('items'), dict):
        out.append(_message(23, _message(1, schema(s['items']))))
    out += [_message(24, schema(sub)) for sub in s.get('allOf') or []]
    if s.get('properties'):
        out.append(_message(25, _named(1, s['properties'], schema)))
    if 'example' in s:
        out.append(_any(30, s['example']))
    out.append(_extensions(31, s))
    return b''.join(out)


# Paths -------------------------------------------------------------------------------------------

def _parameter(p: Json) -> bytes:
    """A ParametersItem: a $ref (2), or a Parameter (1) that is a body (1) or a non-body (2) one."""
    if '$ref' in p:
        return _message(2, _string(1, p['$ref']))
    if p.get('in') == 'body':
        body = (_string(1, p.get('description')) + _string(2, p.get('name')) + _string(3, 'body')
                + _bool(4, p.get('required')) + _message(5, schema(p.get('schema') or {})) + _extensions(6, p))
        return _message(1, _message(1, body))
    # Query (3) and path (4) parameters: required 1, in 2, description 3, name 4, then the type.
    kind, type_field, unique_field = {'query': (3, 6, 20), 'path': (4, 5, 19), 'header': (1, 5, 19)}[p['in']]
    sub = (_bool(1, p.get('required')) + _string(2, p['in']) + _string(3, p.get('description'))
           + _string(4, p.get('name')) + _string(type_field, p.get('type')) + _bool(unique_field, p.get('uniqueItems')))
    return _message(1, _message(2, _message(kind, sub)))


def _response(r: Json) -> bytes:
    """A ResponseValue holding a Response: description 1, schema 2 (a SchemaItem holding a Schema)."""
    inner = _string(1, r.get('description')) + (_message(2, _message(1, schema(r['schema']))) if r.get('schema')
                                                else b'') + _extensions(5, r)
    return _message(1, inner)


def _operation(op: Json) -> bytes:
    return b''.join([
        _strings(1, op.get('tags') or []), _string(2, op.get('summary')), _string(3, op.get('description')),
        _string(5, op.get('operationId')), _strings(6, op.get('produces') or []),
        _strings(7, op.get('consumes') or []), b''.join(_message(8, _parameter(p)) for p in op.get('parameters') or []),
        _message(9, _named(1, op.get('responses') or {}, _response)), _strings(10, op.get('schemes') or []),
        _bool(11, op.get('deprecated')), _extensions(13, op),
    ])


_METHODS = {'get': 2, 'put': 3, 'post': 4, 'delete': 5, 'options': 6, 'head': 7, 'patch': 8}


def _path_item(item: Json) -> bytes:
    out = [_message(number, _operation(item[method])) for method, number in _METHODS.items() if method in item]
    out += [_message(9, _parameter(p)) for p in item.get('parameters') or []]
    return b''.join(out) + _extensions(10, item)


def document(doc: Json) -> bytes:
    """A whole Swagger 2.0 document (as kube-apiserver builds them) as an openapi_v2.Document."""
    info = doc.get('info') or {}
    return b''.join([
        _string(1, doc.get('swagger', '2.0')),
        _message(2, _string(1, info.get('title')) + _string(2, info.get('version'))
                 + _string(3, info.get('description'))),
        _strings(5, doc.get('schemes') or []), _strings(6, doc.get('consumes') or []),
        _strings(7, doc.get('produces') or []),
        _message(8, _named(2, doc.get('paths') or {}, _path_item)),
        _message(9, _named(1, doc.get('definitions') or {}, schema)),
        _extensions(16, doc),
    ])

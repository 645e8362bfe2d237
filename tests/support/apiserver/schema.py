"""
Structural-schema semantics of CustomResourceDefinitions: pruning, defaulting, validation.

Mirrors apiextensions-apiserver: unknown fields are pruned unless x-kubernetes-preserve-unknown-fields
(or reported, under fieldValidation=Strict); null in a non-nullable field is dropped or defaulted;
`default`s apply to absent fields of present objects; validation errors carry kube-openapi's
wording and the field.Error types that decide whether CEL rules still run.
"""
from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from . import errors
from .errors import FieldError

Schema = dict[str, Any]

OBJECT_META_FIELDS = frozenset({
    'name', 'generateName', 'namespace', 'selfLink', 'uid', 'resourceVersion', 'generation',
    'creationTimestamp', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'labels', 'annotations',
    'ownerReferences', 'finalizers', 'managedFields',
})
_EMBEDDED_IMPLICIT = ('apiVersion', 'kind', 'metadata')


def child(path: str, name: str) -> str:
    return f'{path}.{name}' if path else name


def index(path: str, i: int) -> str:
    return f'{path}[{i}]'


def _preserves(schema: Schema) -> bool:
    return bool(schema.get('x-kubernetes-preserve-unknown-fields'))


def _additional(schema: Schema) -> Schema | None:
    extra = schema.get('additionalProperties')
    return extra if isinstance(extra, dict) else None


# Pruning ----------------------------------------------------------------------------------------

def prune(obj: dict[str, Any], schema: Schema | None) -> list[str]:
    """Prune a whole custom resource in place; return the paths of the fields dropped."""
    dropped: list[str] = []
    meta = obj.get('metadata')
    if isinstance(meta, dict):
        for key in [k for k in meta if k not in OBJECT_META_FIELDS]:
            dropped.append(child('metadata', key))
            del meta[key]
    if schema is None:
        return dropped
    for key, value in list(obj.items()):
        if key in _EMBEDDED_IMPLICIT:
            continue
        sub = (schema.get('properties') or {}).get(key)
        if sub is None and not _preserves(schema):
            dropped.append(key)
            del obj[key]
        elif sub is not None:
            obj[key] = _prune_value(value, sub, key, dropped)
    return dropped


def _prune_value(value: Any, schema: Schema, path: str, dropped: list[str]) -> Any:
    if value is None:
        return value
    if schema.get('type') == 'integer' and isinstance(value, float) and value.is_integer():
        return int(value)  # Go re-encodes an integral float64 as an integer.
    if isinstance(value, list) and isinstance(schema.get('items'), dict):
        return [_prune_value(v, schema['items'], index(path, i), dropped) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    props = schema.get('properties') or {}
    extra = _additional(schema)
    embedded = schema.get('x-kubernetes-embedded-resource')
    for key in list(value):
        sub = props.get(key) or extra
        if embedded and key == 'metadata' and isinstance(value[key], dict) and key not in props:
            for meta_key in [k for k in value[key] if k not in OBJECT_META_FIELDS]:
                dropped.append(child(child(path, key), meta_key))
                del value[key][meta_key]
        elif sub is not None:
            value[key] = _prune_value(value[key], sub, child(path, key), dropped)
        elif not (_preserves(schema) or schema.get('additionalProperties') is True
                  or (embedded and key in _EMBEDDED_IMPLICIT)):
            dropped.append(child(path, key))
            del value[key]
    return value


# Defaulting -------------------------------------------------------------------------------------

def apply_defaults(obj: Any, schema: Schema | None) -> None:
    """Set `default`s of absent (or null, non-nullable) fields of present objects, recursively."""
    if schema is None:
        return
    if isinstance(obj, dict):
        for key, sub in (schema.get('properties') or {}).items():
            if obj.get(key) is None and not (key in obj and sub.get('nullable')):
                if 'default' in sub:
                    obj[key] = copy.deepcopy(sub['default'])
                elif key in obj:
                    del obj[key]  # a null in a non-nullable field without default is pruned
            if key in obj:
                apply_defaults(obj[key], sub)
        extra = _additional(schema)
        if extra is not None:
            for value in obj.values():
                apply_defaults(value, extra)
    elif isinstance(obj, list) and isinstance(schema.get('items'), dict):
        for item in obj:
            apply_defaults(item, schema['items'])


# Validation -------------------------------------------------------------------------------------

def json_type(value: Any) -> str:
    """The type name kube-openapi reports for a decoded JSON value."""
    if value is None:
        return 'null'
    if isinstance(value, bool):
        return 'boolean'
    if isinstance(value, int):
        return 'integer'
    if isinstance(value, float):
        return 'integer' if value.is_integer() else 'number'
    if isinstance(value, str):
        return 'string'
    return 'array' if isinstance(value, list) else 'object'


def _type_ok(value: Any, schema: Schema) -> bool:
    if schema.get('x-kubernetes-int-or-string'):
        return json_type(value) in ('integer', 'string')
    expected = schema.get('type')
    actual = json_type(value)
    if not expected or (value is None and schema.get('nullable')):
        return True
    return actual == expected or (expected == 'number' and actual == 'integer')


def _in_body(path: str, text: str) -> str:
    return f'{path} in body {text}'


def _num(value: float) -> str:
    return errors.go_float(float(value))


def _format_ok(fmt: str, value: str) -> bool:
    checks: dict[str, Callable[[str], object]] = {
        'date-time': lambda v: re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)', v, re.I),
        'datetime': lambda v: re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)', v, re.I),
        'date': lambda v: datetime.date.fromisoformat(v),
        'duration': lambda v: re.fullmatch(r'([-+]?(\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+|0', v),
        'byte': lambda v: base64.b64decode(v, validate=True) is not None,
        'uuid': lambda v: uuid.UUID(v),
        'ipv4': lambda v: ipaddress.IPv4Address(v),
        'ipv6': lambda v: ipaddress.IPv6Address(v),
        'cidr': lambda v: ipaddress.ip_network(v, strict=False),
        'hostname': lambda v: re.fullmatch(r'[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]'
                                           r'([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*', v),
        'email': lambda v: re.fullmatch(r'[^@\s]+@[^@\s]+', v),
        'uri': lambda v: re.fullmatch(r'[A-Za-z][A-Za-z0-9+.-]*:\S*', v),
    }
    check = checks.get(fmt)
    if check is None:
        return True  # kube-apiserver ignores formats it does not know (int32, float, …)
    try:
        return bool(check(value))
    except ValueError:
        return False


def validate(value: Any, schema: Schema | None, path: str) -> list[FieldError]:
    """Validate a value against a structural schema the way kube-openapi does, as field errors."""
    if schema is None or (value is None and schema.get('nullable')):
        return []
    if not _type_ok(value, schema):
        expected = 'integer,string' if schema.get('x-kubernetes-int-or-string') else schema['type']
        actual = json_type(value)
        return [FieldError('FieldValueTypeInvalid', path, actual,
                           _in_body(path, f'must be of type {expected}: "{actual}"'))]
    errs: list[FieldError] = []
    if 'enum' in schema and not any(json_equal(value, e) for e in schema['enum']):
        allowed = [e if isinstance(e, str) else json.dumps(e) for e in schema['enum']]
        errs.append(errors.not_supported(path, value, allowed))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        errs += _validate_number(value, schema, path)
    elif isinstance(value, str):
        errs += _validate_string(value, schema, path)
    elif isinstance(value, list):
        errs += _validate_array(value, schema, path)
    elif isinstance(value, dict):
        errs += _validate_object(value, schema, path)
    errs += _validate_combinators(value, schema, path)
    return errs


def json_equal(a: Any, b: Any) -> bool:
    """Equality of decoded JSON values: 1 == 1.0, but true != 1."""
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)
    if number(a) and number(b):
        return bool(a == b)
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _validate_number(value: float, schema: Schema, path: str) -> list[FieldError]:
    errs = []
    if 'minimum' in schema:
        low, exclusive = schema['minimum'], schema.get('exclusiveMinimum')
        if value < low or (exclusive and value == low):
            word = 'greater than' if exclusive else 'greater than or equal to'
            errs.append(errors.invalid(path, value, _in_body(path, f'should be {word} {_num(low)}')))
    if 'maximum' in schema:
        high, exclusive = schema['maximum'], schema.get('exclusiveMaximum')
        if value > high or (exclusive and value == high):
            word = 'less than' if exclusive else 'less than or equal to'
            errs.append(errors.invalid(path, value, _in_body(path, f'should be {word} {_num(high)}')))
    if 'multipleOf' in schema and (value / schema['multipleOf']) % 1:
        factor = _num(schema['multipleOf'])
        errs.append(errors.invalid(path, value, _in_body(path, f'should be a multiple of {factor}')))
    return errs


def _validate_string(value: str, schema: Schema, path: str) -> list[FieldError]:
    errs = []
    if 'maxLength' in schema and len(value) > schema['maxLength']:
        errs.append(FieldError('FieldValueTooLong', path, value, f'may not be more than {schema["maxLength"]} bytes'))
    if 'minLength' in schema and len(value) < schema['minLength']:
        errs.append(errors.invalid(path, value, _in_body(path, f'should be at least {schema["minLength"]} chars long')))
    if 'pattern' in schema and not re.search(schema['pattern'], value):
        errs.append(errors.invalid(path, value, _in_body(path, f"should match '{schema['pattern']}'")))
    if 'format' in schema and not schema.get('x-kubernetes-int-or-string') and not _format_ok(schema['format'], value):
        errs.append(FieldError('FieldValueTypeInvalid', path, value,
                               _in_body(path, f'must be of type {schema["format"]}: "{value}"')))
    return errs


def _validate_array(value: list[Any], schema: Schema, path: str) -> list[FieldError]:
    errs = []
    if 'maxItems' in schema and len(value) > schema['maxItems']:
        errs.append(FieldError('FieldValueTooMany', path, len(value), f'must have at most {schema["maxItems"]} items'))
    if 'minItems' in schema and len(value) < schema['minItems']:
        errs.append(errors.invalid(path, len(value),
                                   _in_body(path, f'should have at least {schema["minItems"]} items')))
    items = schema.get('items')
    for i, item in enumerate(value):
        errs += validate(item, items if isinstance(items, dict) else None, index(path, i))
    errs += _validate_list_type(value, schema, path)
    return errs


def _validate_list_type(value: list[Any], schema: Schema, path: str) -> list[FieldError]:
    list_type = schema.get('x-kubernetes-list-type')
    if list_type not in ('set', 'map'):
        return []
    keys = schema.get('x-kubernetes-list-map-keys') or []
    seen: set[str] = set()
    errs = []
    for i, item in enumerate(value):
        identity = item if list_type == 'set' else {k: item.get(k) for k in keys} if isinstance(item, dict) else item
        token = json.dumps(identity, sort_keys=True)
        if token in seen:
            errs.append(FieldError('FieldValueDuplicate', index(path, i), identity))
        seen.add(token)
    return errs


def _validate_object(value: dict[str, Any], schema: Schema, path: str) -> list[FieldError]:
    errs = []
    for name in schema.get('required') or []:
        if name not in value:
            errs.append(errors.required(child(path, name)))
    if 'maxProperties' in schema and len(value) > schema['maxProperties']:
        errs.append(FieldError('FieldValueTooMany', path, len(value),
                               f'must have at most {schema["maxProperties"]} items'))
    if 'minProperties' in schema and len(value) < schema['minProperties']:
        errs.append(errors.invalid(path, len(value),
                                   _in_body(path, f'should have at least {schema["minProperties"]} properties')))
    props = schema.get('properties') or {}
    extra = _additional(schema)
    for key, item in value.items():
        sub = props.get(key, extra)
        if sub is not None:
            errs += validate(item, sub, child(path, key))
    if schema.get('x-kubernetes-embedded-resource'):
        for key in ('apiVersion', 'kind'):
            if not value.get(key):
                errs.append(errors.required(child(path, key), 'must not be empty'))
    return errs


def _validate_combinators(value: Any, schema: Schema, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for sub in schema.get('allOf') or []:
        errs += validate(value, sub, path)
    if schema.get('anyOf') and all(validate(value, s, path) for s in schema['anyOf']):
        errs.append(errors.invalid(path, value, _in_body(path, 'must validate at least one schema (anyOf)')))
    if schema.get('oneOf') and sum(not validate(value, s, path) for s in schema['oneOf']) != 1:
        errs.append(errors.invalid(path, value, _in_body(path, 'must validate one and only one schema (oneOf)')))
    if isinstance(schema.get('not'), dict) and not validate(value, schema['not'], path):
        errs.append(errors.invalid(path, value, _in_body(path, 'must not validate the schema (not)')))
    return errs


# Structural checks of a CRD's schema ------------------------------------------------------------

def structural_errors(schema: Schema, path: str) -> list[FieldError]:
    """The structural-schema rules a CRD must satisfy to be accepted (the common ones)."""
    errs: list[FieldError] = []
    for sub_path, node, in_combinator in _walk_schema(schema, path):
        if '$ref' in node:
            errs.append(errors.forbidden(child(sub_path, '$ref'), '$ref is not supported'))
        if in_combinator:
            for key in ('type', 'default', 'description', 'nullable', 'x-kubernetes-preserve-unknown-fields',
                        'x-kubernetes-embedded-resource', 'x-kubernetes-int-or-string'):
                if key in node:
                    errs.append(errors.forbidden(child(sub_path, key), 'must be empty to be structural'))
            continue
        if not node.get('type') and not node.get('x-kubernetes-int-or-string') and not _preserves(node):
            errs.append(errors.required(child(sub_path, 'type'), 'must not be empty for specified object fields'))
        if node.get('properties') and 'additionalProperties' in node:
            errs.append(errors.forbidden(child(sub_path, 'additionalProperties'),
                                         'additionalProperties and properties are mutual exclusive'))
        if node.get('type') == 'array' and not isinstance(node.get('items'), dict):
            errs.append(errors.required(child(sub_path, 'items'), 'must be specified'))
        if node.get('x-kubernetes-embedded-resource') and node.get('type') != 'object':
            errs.append(errors.invalid(child(sub_path, 'type'), node.get('type', ''),
                                       'must be object if x-kubernetes-embedded-resource is true'))
    if schema.get('type') != 'object':
        errs.append(errors.invalid(child(path, 'type'), schema.get('type', ''), 'must be object at the root'))
    meta = (schema.get('properties') or {}).get('metadata')
    if isinstance(meta, dict) and (set(meta) - {'type', 'description', 'properties'}
                                   or set(meta.get('properties') or {}) - {'name', 'generateName'}):
        errs.append(errors.forbidden(f'{path}.properties[metadata]',
                                     'must not specify anything other than name and generateName, '
                                     'but metadata is implicitly specified'))
    return errs


def _walk_schema(schema: Schema, path: str, in_combinator: bool = False) -> Iterator[tuple[str, Schema, bool]]:
    yield path, schema, in_combinator
    for name, sub in (schema.get('properties') or {}).items():
        if isinstance(sub, dict):
            yield from _walk_schema(sub, f'{path}.properties[{name}]', in_combinator)
    if isinstance(schema.get('items'), dict):
        yield from _walk_schema(schema['items'], f'{path}.items', in_combinator)
    if _additional(schema) is not None:
        yield from _walk_schema(schema['additionalProperties'], f'{path}.additionalProperties', in_combinator)
    for key in ('allOf', 'anyOf', 'oneOf'):
        for i, sub in enumerate(schema.get(key) or []):
            yield from _walk_schema(sub, f'{path}.{key}[{i}]', True)
    if isinstance(schema.get('not'), dict):
        yield from _walk_schema(schema['not'], f'{path}.not', True)

"""
CEL `x-kubernetes-validations` of CRD schemas, evaluated with cel-python (celpy).

Follows apiextensions-apiserver: each rule runs with `self` bound to the value at its schema node;
transition rules (those naming `oldSelf`) run only on updates where an old value correlates
(object properties, map keys, and list-type=map/set items); a false rule yields a field error at
the node (plus `fieldPath`) with `message` or "failed rule: <rule>", typed by `reason`, whose bad
value is the node's type: `spec: Invalid value: "object": <message>`. Values are
typed from the schema as Kubernetes does: number -> double, date-time -> timestamp,
duration -> duration, byte -> bytes. Kubernetes' string and list extension functions are added.
"""
from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

from . import errors
from .errors import FieldError
from .schema import Schema, child

_KEYWORDS = {'true', 'false', 'null', 'in', 'as', 'break', 'const', 'continue', 'else', 'for', 'function',
             'if', 'import', 'let', 'loop', 'package', 'namespace', 'return', 'var', 'void', 'while'}
_ENV = celpy.Environment()


def escape(name: str) -> str:
    """How a property name is spelled in CEL (`x-y` -> `x__dash__y`)."""
    if name in _KEYWORDS:
        return f'__{name}__'
    return (name.replace('__', '__underscores__').replace('.', '__dot__')
            .replace('-', '__dash__').replace('/', '__slash__'))


def _str(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a Python string function so it returns CEL strings (lists of them stay lists)."""
    def call(*args: Any) -> Any:
        result = fn(*args)
        if isinstance(result, list):
            return celtypes.ListType([celtypes.StringType(r) for r in result])
        if isinstance(result, str):
            return celtypes.StringType(result)
        return celtypes.IntType(result) if isinstance(result, int) and not isinstance(result, bool) else result
    return call


# The parts of Kubernetes' CEL libraries (strings, lists, regex) that rules commonly use.
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    'lowerAscii': _str(lambda s: s.lower()),
    'upperAscii': _str(lambda s: s.upper()),
    'trim': _str(lambda s: s.strip()),
    'split': _str(lambda s, sep, n=-1: s.split(sep, n - 1 if n > 0 else -1)),
    'join': _str(lambda items, sep='': sep.join(items)),
    'replace': _str(lambda s, old, new, n=-1: s.replace(old, new, n)),
    'indexOf': _str(lambda s, sub: list(s).index(sub) if isinstance(s, list) and sub in s
                    else -1 if isinstance(s, list) else s.find(sub)),
    'lastIndexOf': _str(lambda s, sub: len(s) - 1 - list(reversed(s)).index(sub) if isinstance(s, list) and sub in s
                        else -1 if isinstance(s, list) else s.rfind(sub)),
    'substring': _str(lambda s, start, end=None: s[start:end]),
    'charAt': _str(lambda s, i: s[i:i + 1]),
    'find': _str(lambda s, pattern: (m.group(0) if (m := re.search(pattern, s)) else '')),
    'findAll': _str(lambda s, pattern, n=-1: re.findall(pattern, s)[:n if n >= 0 else None]),
    'isSorted': lambda items: celtypes.BoolType(list(items) == sorted(items)),
    'sum': lambda items: functools.reduce(lambda a, b: a + b, items, celtypes.IntType(0)),
    'min': lambda items: min(items),
    'max': lambda items: max(items),
}


@functools.cache
def compile_rule(rule: str) -> celpy.Runner:
    """Compile a rule once; raises CELParseError when the rule does not parse."""
    return _ENV.program(_ENV.compile(rule), functions=_FUNCTIONS)


def has_rules(schema: Schema | None) -> bool:
    """Whether any node of a schema carries x-kubernetes-validations (the server then has a CEL validator)."""
    if not isinstance(schema, dict):
        return False
    if schema.get('x-kubernetes-validations'):
        return True
    subs = [*(schema.get('properties') or {}).values(), schema.get('items'), schema.get('additionalProperties')]
    return any(has_rules(sub) for sub in subs if isinstance(sub, dict))


def compile_error(rule: str) -> str | None:
    try:
        compile_rule(rule)
    except CELParseError as e:
        return f'compilation failed: {e}'
    return None


def to_cel(value: Any, schema: Schema | None) -> Any:
    """A JSON value as a CEL value, typed by its schema node as kube-apiserver types it."""
    if value is None:
        return None
    schema = schema or {}
    if isinstance(value, dict):
        props = schema.get('properties')
        extra = schema.get('additionalProperties') if isinstance(schema.get('additionalProperties'), dict) else None
        if props is not None:
            return celtypes.MapType({celtypes.StringType(escape(k)): to_cel(v, props.get(k)) for k, v in value.items()})
        if extra is not None:
            return celtypes.MapType({celtypes.StringType(k): to_cel(v, extra) for k, v in value.items()})
        return json_to_cel(value)
    if isinstance(value, list):
        items = schema.get('items') if isinstance(schema.get('items'), dict) else None
        return celtypes.ListType([to_cel(v, items) for v in value])
    kind, fmt = schema.get('type'), schema.get('format')
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if kind == 'number':
        return celtypes.DoubleType(value)
    if isinstance(value, str) and kind == 'string':
        if fmt in ('date-time', 'datetime'):
            return celtypes.TimestampType(value)
        if fmt == 'duration':
            return celtypes.DurationType(value)
        if fmt == 'byte':
            return celtypes.BytesType(base64.b64decode(value))
    return json_to_cel(value)


def _uses_old_self(rule: str) -> bool:
    return re.search(r'\boldSelf\b', re.sub(r"'[^']*'|\"[^\"]*\"", '', rule)) is not None


def _rule_path(path: str, field_path: str | None) -> str:
    if not field_path:
        return path or '<nil>'
    suffix = re.sub(r"\['([^']*)'\]", r'.\1', field_path).lstrip('.')
    return f'{path}.{suffix}' if path else suffix


def _explain(error: Exception) -> str:
    text = str(error.args[0]) if error.args else str(error)
    missing = re.fullmatch(r"no such member in mapping: '(.*)'", text)
    return f'no such key: {missing.group(1)}' if missing else text


def _check_rules(value: Any, old: Any, has_old: bool, schema: Schema, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for rule in schema.get('x-kubernetes-validations') or []:
        text = rule['rule']
        if _uses_old_self(text) and not has_old:
            continue  # transition rules need a correlated old value
        activation = {'self': to_cel(value, schema)}
        if has_old:
            activation['oldSelf'] = to_cel(old, schema)
        message = (rule.get('message') or '').strip() or f'failed rule: {text.strip()}'
        try:
            result = compile_rule(text).evaluate(activation)
            if isinstance(result, CELEvalError):
                raise result
        except CELEvalError as e:
            errs.append(errors.invalid(path or '<nil>', schema.get('type', ''),
                                       f'{_explain(e)} evaluating rule: {(rule.get("message") or text).strip()}'))
            continue
        if isinstance(result, celtypes.BoolType) and result:
            continue
        # The bad value a rule reports is the type of its schema node ("object", "string"…), not the value.
        shown = schema.get('type', '')
        field = _rule_path(path, rule.get('fieldPath'))
        reason = rule.get('reason', 'FieldValueInvalid')
        if reason == 'FieldValueForbidden':
            errs.append(errors.forbidden(field, message))
        elif reason == 'FieldValueRequired':
            errs.append(errors.required(field, message))
        elif reason == 'FieldValueDuplicate':
            errs.append(FieldError('FieldValueDuplicate', field, shown))
        else:
            errs.append(errors.invalid(field, shown, message))
    return errs


def validate(value: Any, old: Any, has_old: bool, schema: Schema | None, path: str = '') -> list[FieldError]:
    """Evaluate every rule in the schema against value (and its correlated old value)."""
    if schema is None or value is None:
        return []
    errs = _check_rules(value, old, has_old, schema, path)
    if isinstance(value, dict):
        props = schema.get('properties') or {}
        extra = schema.get('additionalProperties') if isinstance(schema.get('additionalProperties'), dict) else None
        old_map = old if has_old and isinstance(old, dict) else {}
        for key, item in value.items():
            sub = props.get(key, extra)
            if sub is not None:
                sub_path = child(path, key) if key in props else f'{path}[{key}]'
                errs += validate(item, old_map.get(key), key in old_map, sub, sub_path)
    elif isinstance(value, list) and isinstance(schema.get('items'), dict):
        items = schema['items']
        olds = _correlate(value, old if has_old else None, schema)
        for i, item in enumerate(value):
            errs += validate(item, olds[i], olds[i] is not None, items, f'{path}[{i}]')
    return errs


def _correlate(new: list[Any], old: Any, schema: Schema) -> list[Any]:
    """Old items matching new ones: by map keys (list-type=map) or by value (set); atomic lists: none."""
    list_type = schema.get('x-kubernetes-list-type')
    if not isinstance(old, list) or list_type not in ('map', 'set'):
        return [None] * len(new)
    keys = schema.get('x-kubernetes-list-map-keys') or []

    def identity(item: Any) -> Any:
        return tuple((item or {}).get(k) for k in keys) if list_type == 'map' else repr(item)
    by_identity = {identity(item): item for item in old}
    return [by_identity.get(identity(item)) for item in new]

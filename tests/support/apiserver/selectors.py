"""
Label and field selectors with k8s.io/apimachinery's grammar and matching rules.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x,y)`, `a`, `!a`, `a>1`, `a<1`,
comma-separated. `!=` and `notin` also match objects that lack the label, as on a real server.
Field selectors: `=`, `==`, `!=` over a per-resource set of field labels.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from . import errors
from .resources import FieldGetter

_KEY = r'([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?'
_TOKEN = re.compile(r'\s*(notin\b|in\b|!=|==|=|!|\(|\)|,|>|<|[^\s!=,()<>]+)')


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # one of: =, !=, in, notin, exists, !exists, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case '=' | 'in':
                return present and value in self.values
            case '!=' | 'notin':
                return not present or value not in self.values
            case 'exists':
                return present
            case '!exists':
                return not present
            case 'gt' | 'lt':
                try:
                    number, bound = int(value or ''), int(self.values[0])
                except ValueError:
                    return False
                return number > bound if self.op == 'gt' else number < bound
        raise AssertionError(self.op)


def _bad(selector: str, why: str) -> errors.ApiError:
    return errors.bad_request(f'unable to parse requirement: {why}' if why else f'invalid selector: {selector!r}')


def parse_label_selector(selector: str) -> list[Requirement]:
    """Parse a labelSelector query value; raise a 400 BadRequest the way the server does."""
    tokens = [m.group(1) for m in _TOKEN.finditer(selector)]
    if ''.join(tokens).replace(' ', '') != selector.replace(' ', ''):
        raise _bad(selector, f'found invalid characters in {selector!r}')
    requirements: list[Requirement] = []
    pos = 0

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise _bad(selector, "found '', expected: identifier")
        pos += 1
        return tokens[pos - 1]

    while pos < len(tokens):
        token = take()
        if token == '!':
            requirements.append(Requirement(_valid_key(take()), '!exists'))
        else:
            key = _valid_key(token)
            if pos >= len(tokens) or tokens[pos] == ',':
                requirements.append(Requirement(key, 'exists'))
            else:
                op = take()
                if op in ('in', 'notin'):
                    if take() != '(':
                        raise _bad(selector, "found '', expected: '('")
                    values: list[str] = []
                    while (item := take()) != ')':
                        if item != ',':
                            values.append(_valid_value(item))
                    requirements.append(Requirement(key, op, tuple(values)))
                elif op in ('=', '==', '!='):
                    value = tokens[pos] if pos < len(tokens) and tokens[pos] != ',' else ''
                    pos += bool(value)
                    requirements.append(Requirement(key, '!=' if op == '!=' else '=', (_valid_value(value),)))
                elif op in ('>', '<'):
                    bound = take()
                    if not bound.isdigit():
                        raise _bad(selector, f'for {op!r} operator, the value must be an integer')
                    requirements.append(Requirement(key, 'gt' if op == '>' else 'lt', (bound,)))
                else:
                    raise _bad(selector, f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        if pos < len(tokens) and take() != ',':
            raise _bad(selector, f"found '{tokens[pos - 1]}', expected: ',' or 'end of string'")
    return requirements


def _valid_key(key: str) -> str:
    if not re.fullmatch(_KEY, key) or len(key.rpartition('/')[2]) > 63:
        raise _bad(key, f'key: Invalid value: "{key}": name part must consist of alphanumeric characters, '
                        f"'-', '_' or '.', and must start and end with an alphanumeric character")
    return key


def _valid_value(value: str) -> str:
    if value and (len(value) > 63 or not re.fullmatch(r'[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?', value)):
        raise _bad(value, f'values[0][{value}]: Invalid value: "{value}": a valid label must be an empty string '
                          "or consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                          'with an alphanumeric character')
    return value


def labels_match(requirements: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in requirements)


def selector_to_string(selector: Mapping[str, Any] | None) -> str:
    """A metav1.LabelSelector ({matchLabels, matchExpressions}) as the string form /scale reports."""
    if not selector:
        return ''
    parts = [f'{k}={v}' for k, v in sorted((selector.get('matchLabels') or {}).items())]
    for expr in selector.get('matchExpressions') or []:
        key, op, values = expr['key'], expr['operator'], sorted(expr.get('values') or [])
        parts.append({
            'In': f'{key} in ({",".join(values)})',
            'NotIn': f'{key} notin ({",".join(values)})',
            'Exists': key,
            'DoesNotExist': f'!{key}',
        }[op])
    return ','.join(sorted(parts))


# Field selectors -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FieldRequirement:
    field: str
    negate: bool
    value: str


def parse_field_selector(selector: str, supported: Mapping[str, FieldGetter]) -> list[FieldRequirement]:
    result: list[FieldRequirement] = []
    for term in re.split(r'(?<!\\),', selector):
        if not term.strip():
            continue
        match = re.fullmatch(r'\s*([^!=]+?)\s*(!=|==|=)\s*(.*?)\s*', term)
        if not match:
            raise errors.bad_request(f'invalid selector: \'{selector}\'; can\'t understand \'{term}\'')
        field, op, value = match.groups()
        if field not in supported:
            raise errors.bad_request(f'field label not supported: {field}')
        result.append(FieldRequirement(field, op == '!=', re.sub(r'\\(.)', r'\1', value)))
    return result


def fields_match(requirements: list[FieldRequirement], obj: Mapping[str, Any],
                 supported: Mapping[str, FieldGetter]) -> bool:
    for req in requirements:
        actual = supported[req.field](obj)
        text = ('true' if actual else 'false') if isinstance(actual, bool) else '' if actual is None else str(actual)
        if (text == req.value) == req.negate:
            return False
    return True

"""
metav1.Status errors and field errors, worded like kube-apiserver's.

The wording follows k8s.io/apimachinery (api/errors, util/validation/field),
because clients and tests match on reason, code and message text.
"""
from __future__ import annotations

import dataclasses
import decimal
import json
import math
from typing import Any

# A sentinel for field errors that print no value (Go's field.OmitValueType).
OMIT = object()

_TYPE_TITLES = {
    'FieldValueNotFound': 'Not found',
    'FieldValueRequired': 'Required value',
    'FieldValueDuplicate': 'Duplicate value',
    'FieldValueInvalid': 'Invalid value',
    'FieldValueNotSupported': 'Unsupported value',
    'FieldValueForbidden': 'Forbidden',
    'FieldValueTooLong': 'Too long',
    'FieldValueTooMany': 'Too many',
    'InternalError': 'Internal error',
    'FieldValueTypeInvalid': 'Invalid value',
}
# These types never print the bad value, whatever it is.
_VALUELESS = {'FieldValueRequired', 'FieldValueForbidden', 'FieldValueTooLong', 'InternalError'}


def go_float(value: float) -> str:
    """Go's %v for a float64 (shortest digits, exponent form when exp < -4 or >= 6): 1e6 -> "1e+06"."""
    if math.isinf(value) or math.isnan(value):
        return {math.inf: '+Inf', -math.inf: '-Inf'}.get(value, 'NaN')
    if value == 0:
        return '0'
    sign, digit_tuple, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    digits = ''.join(map(str, digit_tuple))
    exp = len(digits) + int(exponent) - 1
    text = '-' if sign else ''
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ('.' + digits[1:] if len(digits) > 1 else '')
        return f'{text}{mantissa}e{"-" if exp < 0 else "+"}{abs(exp):02d}'
    return text + format(decimal.Decimal(digits).scaleb(exp - len(digits) + 1), 'f')


def go_value(value: Any) -> str:
    """How field.Error prints a bad value: strings quoted, numbers bare, nil as "null"."""
    if value is None:
        return '"null"'  # Go prints a nil bad value as the string "null", quoted
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    # Go prints composite values with %#v; JSON is close enough and readable.
    return json.dumps(value, separators=(',', ':'), sort_keys=True)


def go_map(value: Any) -> str:
    """Go's %+v of a decoded JSON value: `map[spec:map[replicas:2 tags:[a b]]]` (map keys sorted)."""
    if isinstance(value, dict):
        return 'map[' + ' '.join(f'{k}:{go_map(value[k])}' for k in sorted(value)) + ']'
    if isinstance(value, list):
        return '[' + ' '.join(go_map(v) for v in value) + ']'
    if value is None:
        return '<nil>'
    if isinstance(value, str):
        return value
    return go_value(value)


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One field.Error: a type (FieldValueInvalid…), a field path, a bad value, a detail."""
    type: str
    field: str
    value: Any = OMIT
    detail: str = ''

    def body(self) -> str:
        title = _TYPE_TITLES[self.type]
        text = title if self.type in _VALUELESS or self.value is OMIT else f'{title}: {go_value(self.value)}'
        return f'{text}: {self.detail}' if self.detail else text

    def __str__(self) -> str:
        return f'{self.field}: {self.body()}'

    def cause(self) -> dict[str, Any]:
        return {'reason': self.type, 'message': self.body(), 'field': self.field}


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError('FieldValueInvalid', field, value, detail)


def required(field: str, detail: str = '') -> FieldError:
    return FieldError('FieldValueRequired', field, '', detail)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError('FieldValueForbidden', field, '', detail)


def not_supported(field: str, value: Any, allowed: list[str]) -> FieldError:
    detail = 'supported values: ' + ', '.join(json.dumps(v) for v in allowed) if allowed else ''
    return FieldError('FieldValueNotSupported', field, value, detail)


class ApiError(Exception):
    """An error response: a metav1.Status body, its HTTP code and extra headers."""

    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            'kind': 'Status', 'apiVersion': 'v1', 'metadata': {},
            'status': 'Failure', 'message': self.message, 'reason': self.reason,
        }
        if self.details is not None:
            body['details'] = {k: v for k, v in self.details.items() if v not in (None, '', [], 0)}
        body['code'] = self.code
        return body


def _details(group: str, kind: str, name: str = '', **extra: Any) -> dict[str, Any]:
    return {'name': name, 'group': group, 'kind': kind, **extra}


def qualified(group: str, plural: str) -> str:
    """GroupResource.String(): "jobs.batch", "pods", "trainingjobs.plateau.dev"."""
    return f'{plural}.{group}' if group else plural


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(404, 'NotFound', f'{qualified(group, plural)} "{name}" not found',
                    _details(group, plural, name))


def path_not_found() -> ApiError:
    return ApiError(404, 'NotFound', 'the server could not find the requested resource', {})


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(409, 'AlreadyExists', f'{qualified(group, plural)} "{name}" already exists',
                    _details(group, plural, name))


def conflict(group: str, plural: str, name: str,
             why: str = 'the object has been modified; please apply your changes to the latest version and try again',
             ) -> ApiError:
    return ApiError(409, 'Conflict', f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": {why}',
                    _details(group, plural, name))


def invalid_object(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    unique: list[FieldError] = []
    for error in errors:  # ToAggregate() drops errors whose text repeats.
        if str(error) not in {str(e) for e in unique}:
            unique.append(error)
    text = str(unique[0]) if len(unique) == 1 else '[' + ', '.join(str(e) for e in unique) + ']'
    kind_text = f'{kind}.{group}' if group else kind
    return ApiError(422, 'Invalid', f'{kind_text} "{name}" is invalid: {text}',
                    _details(group, kind, name, causes=[e.cause() for e in errors]))


def bad_request(message: str) -> ApiError:
    return ApiError(400, 'BadRequest', message)


def method_not_allowed() -> ApiError:
    return ApiError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource', {})


def unsupported_media_type(accepted: list[str]) -> ApiError:
    return ApiError(415, 'UnsupportedMediaType',
                    'the body of the request was in an unknown format - accepted media types include: '
                    + ', '.join(accepted))


def unprocessable() -> ApiError:
    """What a failed JSON patch (e.g. a failed `test` op) answers: a bare 422 without causes."""
    return ApiError(422, 'Invalid', 'the server rejected our request due to an error in our request', {})


def internal(message: str) -> ApiError:
    return ApiError(500, 'InternalError', f'Internal error occurred: {message}', {'causes': [{'message': message}]})


def expired(message: str) -> ApiError:
    return ApiError(410, 'Expired', message)


def service_unavailable(message: str = 'the server is currently unable to handle the request') -> ApiError:
    return ApiError(503, 'ServiceUnavailable', message)


def too_many_requests(retry_after: int = 1) -> ApiError:
    return ApiError(429, 'TooManyRequests', 'Too many requests, please try again later.',
                    {'retryAfterSeconds': retry_after}, headers={'Retry-After': str(retry_after)})


def unauthorized() -> ApiError:
    return ApiError(401, 'Unauthorized', 'Unauthorized')


def forbidden_resource(group: str, plural: str, name: str, why: str) -> ApiError:
    """NewForbidden: `jobs.batch "x" is forbidden: <why>` (no name: `jobs.batch is forbidden: <why>`)."""
    subject = f'{qualified(group, plural)} "{name}"' if name else qualified(group, plural)
    return ApiError(403, 'Forbidden', f'{subject} is forbidden: {why}', _details(group, plural, name))

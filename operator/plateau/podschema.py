"""The core/v1 PodTemplateSpec schema that the CRD carries, and the same checks the API server
makes with it, so that `plateau validate` and the operator reject what `kubectl apply` rejects.

The schema (`podtemplate.schema.json`) is structural: made by `plateau crd` from Kubernetes's
own OpenAPI definitions (the `kubernetes-validate` package's copy, KUBERNETES_VERSION), with
descriptions, list-merge hints and unions dropped, quantities and int-or-strings left open.
Without it the server would silently drop a typo such as `comand:` from the embedded
template, and the trainer would run its image's entrypoint instead.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

SCHEMA_FILE = Path(__file__).with_name("podtemplate.schema.json")
KUBERNETES_VERSION = "1.35"  # whose PodTemplateSpec the CRD embeds
MAX_ERRORS = 10  # reported per template: the first few name the problem
MAX_DEPTH = 64  # a template nests about 10 deep; deeper input is not walked
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "integer": (int,), "number": (int, float),
}


@lru_cache(maxsize=1)
def pod_template_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


def template_errors(template: Any, path: str = "spec.template") -> list[str]:
    """What the API server would reject (or, for unknown fields, drop) in a pod template, worded
    as kubectl and the server word it; at most MAX_ERRORS."""
    errors: list[str] = []
    for error in _check(template, pod_template_schema(), path, 0):
        errors.append(error)
        if len(errors) == MAX_ERRORS:
            break
    return errors


def _check(value: Any, schema: dict[str, Any], path: str, depth: int) -> Iterator[str]:
    if value is None or schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in schema:
        return  # nulls are pruned; an open node (a quantity) takes anything
    if depth > MAX_DEPTH:
        yield f"{path}: Invalid value: nested deeper than {MAX_DEPTH} levels"
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            yield f'{path}: Invalid value: "{_type_name(value)}": {path} in body must be of type integer or string'
        return
    expected = schema.get("type")
    if expected and not _is(value, expected):
        yield f'{path}: Invalid value: "{_type_name(value)}": {path} in body must be of type {expected}: "{_type_name(value)}"'
        return
    if isinstance(value, dict):
        yield from _check_object(value, schema, path, depth)
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _check(item, schema["items"], f"{path}[{i}]", depth + 1)


def _check_object(value: dict[str, Any], schema: dict[str, Any], path: str, depth: int) -> Iterator[str]:
    properties = schema.get("properties")
    for name in schema.get("required") or []:
        if value.get(name) is None:
            yield f"{path}.{name}: Required value"
    for key, item in value.items():
        if properties is not None:
            if key in properties:
                yield from _check(item, properties[key], f"{path}.{key}", depth + 1)
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                yield f'unknown field "{path}.{key}"'
        elif isinstance(schema.get("additionalProperties"), dict):
            yield from _check(item, schema["additionalProperties"], f"{path}.{key}", depth + 1)


def _is(value: Any, expected: str) -> bool:
    if isinstance(value, bool) and expected in ("integer", "number"):
        return False
    if expected == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES.get(expected, (object,)))


def _type_name(value: Any) -> str:
    for name in ("boolean", "integer", "number", "string", "array", "object"):
        if _is(value, name):
            return name
    return "null"

"""The core/v1 PodTemplateSpec schema that the CRD carries, and the same checks the API server
makes with it, so that `plateau validate` and the operator reject what `kubectl apply` rejects.

The schema (`podtemplate.schema.json`) is structural: made by `plateau crd` from Kubernetes's
own OpenAPI definitions (the `kubernetes-validate` package's copy, KUBERNETES_VERSION), with
descriptions, list-merge hints and unions dropped, quantities and int-or-strings left open.
Without it the server would silently drop a typo such as `comand:` from the embedded
template, and the trainer would run its image's entrypoint instead.

A Job's pod template needs more than a PodTemplateSpec, and the child Job adds Plateau's sidecar,
volumes and mounts: `plateau crd` adds what the server checks on a Job (JOB_TEMPLATE_RULES and
the schema keywords of crd.for_a_job), and `template_errors` checks the same.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from plateau.api import kubenames

SCHEMA_FILE = Path(__file__).with_name("podtemplate.schema.json")
KUBERNETES_VERSION = "1.35"  # whose PodTemplateSpec the CRD embeds
MAX_ERRORS = 10  # reported per template: the first few name the problem
MAX_DEPTH = 64  # a template nests about 10 deep; deeper input is not walked
# What the child Job adds (plateau.controller.workloads): a user's template must leave these names free.
SIDECAR_CONTAINER = "plateau-sidecar"
PLATEAU_VOLUMES = ("plateau-shared", "plateau-stop")
TRAINER_MOUNT_PATHS = ("/plateau", "/etc/plateau")  # mounted into the first container
_NAMES = ", ".join(f"'{v}'" for v in PLATEAU_VOLUMES)
_PATHS = ", ".join(f"'{v}'" for v in TRAINER_MOUNT_PATHS)
# CEL rules on the template's pod spec, one loop each: linear in lists whose length the server
# estimates from its request size, so each stays within its cost budget (nested loops would not).
JOB_TEMPLATE_RULES = [
    {"rule": f"self.containers.all(c, c.name != '{SIDECAR_CONTAINER}')",
     "message": f"the container name {SIDECAR_CONTAINER} is taken by Plateau's sidecar"},
    {"rule": f"!has(self.initContainers) || self.initContainers.all(c, c.name != '{SIDECAR_CONTAINER}')",
     "message": f"the container name {SIDECAR_CONTAINER} is taken by Plateau's sidecar"},
    {"rule": f"!has(self.volumes) || self.volumes.all(v, !(v.name in [{_NAMES}]))",
     "message": f"the volume names {', '.join(PLATEAU_VOLUMES)} are taken by Plateau's volumes"},
    {"rule": f"size(self.containers) == 0 || !has(self.containers[0].volumeMounts) || "
             f"self.containers[0].volumeMounts.all(m, !(m.mountPath in [{_PATHS}]))",
     "message": f"the first container's mount paths {', '.join(TRAINER_MOUNT_PATHS)} are taken by Plateau's volumes"},
]
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
            return errors
    if not errors and isinstance(template, dict) and isinstance(template.get("spec"), dict):
        errors += _job_rule_errors(template, path)  # as the server: once the schema holds
    return errors[:MAX_ERRORS]


def _job_rule_errors(template: dict[str, Any], path: str) -> list[str]:
    """JOB_TEMPLATE_RULES, and what the server checks in a Job that CEL could not within its
    cost budget: no container and init container share a name (a quadratic check), label and
    annotation keys are qualified names (map keys of unbounded length)."""
    spec = template["spec"]
    containers, inits = spec.get("containers") or [], spec.get("initContainers") or []
    failed = [
        any(c.get("name") == SIDECAR_CONTAINER for c in containers),
        any(c.get("name") == SIDECAR_CONTAINER for c in inits),
        any(v.get("name") in PLATEAU_VOLUMES for v in spec.get("volumes") or []),
        bool(containers) and any(m.get("mountPath") in TRAINER_MOUNT_PATHS for m in containers[0].get("volumeMounts") or []),
    ]
    errors = [f'{path}.spec: Invalid value: "object": {rule["message"]}' for rule, bad in zip(JOB_TEMPLATE_RULES, failed) if bad]
    meta = template.get("metadata") or {}
    for field in ("labels", "annotations"):
        for key in meta.get(field) or {}:
            errors += [f"{path}.metadata.{field}: Invalid value: {key!r}: {e}" for e in kubenames.qualified_name_errors(key)]
    shared = {c.get("name") for c in containers} & {c.get("name") for c in inits}
    if shared:
        errors.append(f"{path}.spec.initContainers: Duplicate value: {sorted(shared)[0]!r}: also a container's name")
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
    if "enum" in schema and value not in schema["enum"]:
        yield f'{path}: Unsupported value: {json.dumps(value)}: supported values: {", ".join(map(json.dumps, schema["enum"]))}'
    if isinstance(value, str):
        yield from _check_string(value, schema, path)
    elif isinstance(value, dict):
        yield from _check_object(value, schema, path, depth)
    elif isinstance(value, list):
        yield from _check_list(value, schema, path, depth)


def _check_string(value: str, schema: dict[str, Any], path: str) -> Iterator[str]:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        yield f"{path}: Too long: may not be more than {schema['maxLength']} bytes"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        yield f'{path}: Invalid value: {json.dumps(value)[:90]}: {path} in body should match \'{schema["pattern"]}\''


def _check_list(value: list[Any], schema: dict[str, Any], path: str, depth: int) -> Iterator[str]:
    if len(value) < schema.get("minItems", 0):
        yield f"{path}: Invalid value: {len(value)}: {path} in body should have at least {schema['minItems']} items"
    if "items" in schema:
        for i, item in enumerate(value):
            yield from _check(item, schema["items"], f"{path}[{i}]", depth + 1)
    if schema.get("x-kubernetes-list-type") == "map":
        keys, seen = schema.get("x-kubernetes-list-map-keys") or [], set()
        for i, item in enumerate(value):
            identity = json.dumps([item.get(k) for k in keys]) if isinstance(item, dict) else None
            if identity in seen:
                yield f"{path}[{i}]: Duplicate value: {identity}"
            seen.add(identity)


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

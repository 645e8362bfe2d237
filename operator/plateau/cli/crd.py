"""Generate the TrainingJob CustomResourceDefinition from the pydantic models.

Kubernetes wants a *structural* OpenAPI v3.0 schema: no $ref, no anyOf-with-null, every
object typed, `exclusiveMinimum` as a boolean, and unknown fields either declared or
explicitly preserved. This module turns pydantic's JSON Schema into exactly that.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from plateau import api

from plateau.api import kubenames, podschema

CRD_PATHS = (Path("crds/trainingjob.yaml"), Path("charts/plateau/crds/trainingjob.yaml"))
SCHEMA_PATH = Path("operator/plateau/api") / podschema.SCHEMA_FILE.name

_DROP_KEYS = {"title", "$defs"}


def _resolve(node: Any, defs: dict[str, Any], in_status: bool) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs, in_status) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs, in_status)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot make a structural schema from anyOf {node['anyOf']}")
        rest = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
        return _resolve({**options[0], **rest}, defs, in_status)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "default" and (value is None or in_status):
            continue  # status is written whole by the operator; server defaults would lie
        if key == "const":
            out["enum"] = [value]
            continue
        if key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
            continue
        if key == "properties":
            out[key] = {
                name: _resolve(sub, defs, in_status or name == "status") for name, sub in value.items()
            }
            continue
        out[key] = _resolve(value, defs, in_status)

    if out.get("additionalProperties") is True:
        # free-form objects (the pod template, labels of arbitrary shape) are kept verbatim
        del out["additionalProperties"]
        out["x-kubernetes-preserve-unknown-fields"] = True
        out.setdefault("type", "object")
    elif out.get("additionalProperties") is False:
        del out["additionalProperties"]  # forbidden extras are pruned by the server instead
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def schema_of(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _resolve(raw, raw.get("$defs", {}), in_status=model is api.TrainingJobStatus)


# Kubernetes's definitions name these; in a structural schema they are open or int-or-string.
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"  # "500m", 2, 0.5: a number is fine too
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_KEPT_KEYS = ("type", "properties", "items", "required", "additionalProperties")


def pod_template_schema_from(definitions: dict[str, Any]) -> dict[str, Any]:
    """The structural PodTemplateSpec schema from Kubernetes's OpenAPI definitions (the
    `$defs` of kubernetes-validate's `_definitions.json`)."""
    return for_a_job(_structural({"$ref": "#/$defs/io.k8s.api.core.v1.PodTemplateSpec"}, definitions, ()))


def for_a_job(template: dict[str, Any]) -> dict[str, Any]:
    """What the server requires of a Job's pod template beyond PodTemplateSpec's schema, and what
    the child Job's additions need left free, as schema keywords and CEL rules: at least one
    container; container names DNS-1123 labels, unique in each list; restartPolicy OnFailure or
    Never (absent: Never); Plateau's container, volume and mount names not taken; label values
    (the keys, map keys of unbounded length, are the models' to check)."""
    label_value = template["properties"]["metadata"]["properties"]["labels"]["additionalProperties"]
    label_value["maxLength"] = kubenames.LABEL_MAX
    label_value["pattern"] = kubenames.LABEL_VALUE_PATTERN
    spec = template["properties"]["spec"]
    pod = spec["properties"]
    pod["containers"]["minItems"] = 1
    for key in ("containers", "initContainers"):
        pod[key]["x-kubernetes-list-type"] = "map"
        pod[key]["x-kubernetes-list-map-keys"] = ["name"]
        name = pod[key]["items"]["properties"]["name"]
        name["maxLength"] = kubenames.LABEL_MAX
        name["pattern"] = f"^{kubenames.DNS1123_LABEL}$"
    pod["restartPolicy"]["enum"] = ["OnFailure", "Never"]
    spec["x-kubernetes-validations"] = podschema.JOB_TEMPLATE_RULES
    return template


def _structural(node: dict[str, Any], defs: dict[str, Any], seen: tuple[str, ...]) -> dict[str, Any]:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name == _QUANTITY:
            return {"x-kubernetes-preserve-unknown-fields": True}
        if name == _INT_OR_STRING:
            return {"x-kubernetes-int-or-string": True}
        if name in seen:
            raise ValueError(f"recursive definition {name}: a structural schema cannot hold it")
        return _structural(defs[name], defs, (*seen, name))
    out: dict[str, Any] = {}
    for key in _KEPT_KEYS:
        if key not in node:
            continue
        value = node[key]
        if key == "type":
            types = [t for t in (value if isinstance(value, list) else [value]) if t != "null"]
            out["type"] = types[0]
        elif key == "properties":
            out["properties"] = {name: _structural(sub, defs, seen) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            if isinstance(value, dict):
                out[key] = _structural(value, defs, seen)
        else:
            out[key] = list(value)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True  # free-form (FieldsV1): kept, not pruned
    return out


def kubernetes_definitions() -> dict[str, Any]:
    """Kubernetes's OpenAPI definitions for podschema.KUBERNETES_VERSION, from kubernetes-validate
    (a development dependency: only `plateau crd` needs it)."""
    import kubernetes_validate  # noqa: PLC0415

    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    path = root / f"v{podschema.KUBERNETES_VERSION}.0-local" / "_definitions.json"
    return dict(json.loads(path.read_text())["$defs"])


def render_pod_template_schema() -> str:
    return json.dumps(pod_template_schema_from(kubernetes_definitions()), sort_keys=True, separators=(",", ":")) + "\n"


def _pod_template_schema(description: str) -> dict[str, Any]:
    return {**podschema.pod_template_schema(), "description": description}


def openapi_schema() -> dict[str, Any]:
    spec = schema_of(api.TrainingJobSpec)
    spec["properties"]["template"] = _pod_template_schema(spec["properties"]["template"]["description"])
    status = schema_of(api.TrainingJobStatus)
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return {
        "type": "object",
        "description": api.TrainingJob.__doc__,
        "required": ["spec"],
        "x-kubernetes-validations": api.NAME_RULES,
        "properties": {
            "apiVersion": {"type": "string", "description": "plateau.dev/v1alpha1"},
            "kind": {"type": "string", "description": "TrainingJob"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
    {"name": "Metric", "type": "number", "jsonPath": ".status.metric.last", "description": "Last value of the monitored metric."},
    {"name": "Best", "type": "number", "jsonPath": ".status.metric.best"},
    {"name": "GPU-h", "type": "number", "jsonPath": ".status.gpuHours"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {"name": "Monitored", "type": "string", "jsonPath": ".status.metric.name", "priority": 1, "description": "The monitored metric."},
    {"name": "Step", "type": "integer", "jsonPath": ".status.metric.lastStep", "priority": 1},
    {"name": "Saved", "type": "number", "jsonPath": ".status.gpuHoursSaved", "priority": 1},
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
]


def build_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": api.CATEGORIES,
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


HEADER = "# Generated by `plateau crd` from plateau.api; do not edit by hand.\n"


def render_crd() -> str:
    return HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def write_crds(root: Path) -> list[Path]:
    """The pod template schema first (the CRD embeds the package's: in a checkout, the same
    file), then the CRD and the chart's copy; nothing outside `root`."""
    schema = root / SCHEMA_PATH
    schema.parent.mkdir(parents=True, exist_ok=True)
    schema.write_text(render_pod_template_schema())
    if schema.resolve() == podschema.SCHEMA_FILE.resolve():
        podschema.pod_template_schema.cache_clear()
    written = [schema]
    text = render_crd()
    for rel in CRD_PATHS:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written

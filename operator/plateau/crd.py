"""Generate the TrainingJob CustomResourceDefinition from the pydantic models.

Kubernetes wants a *structural* OpenAPI v3.0 schema: no $ref, no anyOf-with-null, every
object typed, `exclusiveMinimum` as a boolean, and unknown fields either declared or
explicitly preserved. This module turns pydantic's JSON Schema into exactly that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from plateau import api

CRD_PATHS = (Path("crds/trainingjob.yaml"), Path("charts/plateau/crds/trainingjob.yaml"))

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


def schema_of(model: type[api.BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _resolve(raw, raw.get("$defs", {}), in_status=model is api.TrainingJobStatus)


def _pod_template_schema(description: str) -> dict[str, Any]:
    preserved = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "metadata": {**preserved, "description": "Labels and annotations for the trainer pods."},
            "spec": {**preserved, "description": "A core/v1 PodSpec; the first container is the trainer."},
        },
    }


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
    text = render_crd()
    written = []
    for rel in CRD_PATHS:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written

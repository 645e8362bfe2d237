"""The CRD is generated from the models, current, structural, and documents every field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from plateau.api import podschema
from plateau.cli.crd import CRD_PATHS, build_crd, render_crd, render_pod_template_schema, write_crds

FORBIDDEN = {"$ref", "anyOf", "oneOf", "allOf", "const", "title", "$defs", "additionalProperties:true"}


def schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("path", CRD_PATHS, ids=str)
def test_checked_in_crd_is_current(path: Path) -> None:
    assert path.read_text() == render_crd(), f"{path} is stale: run `plateau crd`"


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        assert not FORBIDDEN & node.keys(), f"{path}: {FORBIDDEN & node.keys()}"
        open_scalar = node.get("x-kubernetes-int-or-string") or node.get("x-kubernetes-preserve-unknown-fields")
        assert "type" in node or open_scalar, f"{path} has no type"
        if node.get("type") == "object" and path != ".metadata":  # the server owns metadata's schema
            has_shape = "properties" in node or "additionalProperties" in node
            assert has_shape or node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: untyped object"
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(bound, True) is True, f"{path}: {bound} must be a boolean in OpenAPI v3.0"


# JSONSchemaProps' fields (apiextensions.k8s.io/v1): the server rejects any other key (a pydantic
# constraint it could not translate, such as `ge`, would be one).
SCHEMA_KEYS = {
    "type", "format", "description", "default", "enum", "maximum", "minimum", "exclusiveMaximum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
    "multipleOf", "maxProperties", "minProperties", "required", "items", "properties",
    "additionalProperties", "nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
    "x-kubernetes-validations", "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
    "x-kubernetes-embedded-resource",
}


def test_schema_has_only_keys_the_server_knows() -> None:
    for path, node in walk(schema()):
        assert node.keys() <= SCHEMA_KEYS, f"{path}: {node.keys() - SCHEMA_KEYS}"


def test_every_spec_and_status_field_is_documented_for_kubectl_explain() -> None:
    # The embedded pod template is Kubernetes's own type: `kubectl explain pod.spec` documents it,
    # and its descriptions would double the CRD's size.
    undocumented = [p for p, n in walk(schema()) if p.startswith((".spec", ".status")) and not n.get("description")
                    and not p.endswith("[]") and not p.endswith("{}") and not p.startswith(".spec.template.")]
    assert not undocumented, undocumented


def test_the_pod_template_has_kubernetes_schema_and_preserves_only_quantities_and_free_form_objects() -> None:
    """So the server rejects (kubectl apply) or prunes a typo in the pod template, as it would in a Job."""
    template = schema()["properties"]["spec"]["properties"]["template"]
    container = template["properties"]["spec"]["properties"]["containers"]["items"]
    assert {"name", "image", "command", "args", "env", "resources", "volumeMounts"} <= container["properties"].keys()
    assert container["required"] == ["name"]
    preserved = {p: n for p, n in walk(schema()) if n.get("x-kubernetes-preserve-unknown-fields")}
    assert ".spec.template.spec.containers[].resources.limits{}" in preserved  # a quantity: "500m", 2 or 0.5
    assert {p for p in preserved if not p.startswith(".spec.template.")} == set()
    # open scalars (quantities) and shapeless objects (fieldsV1) only: nothing with fields to mistype
    assert all("properties" not in n for n in preserved.values())
    assert ".spec.template.metadata.managedFields[].fieldsV1" in preserved


def test_the_committed_pod_template_schema_is_kubernetes_own() -> None:
    """podtemplate.schema.json is what `plateau crd` makes from kubernetes-validate's definitions."""
    assert podschema.SCHEMA_FILE.read_text() == render_pod_template_schema(), "stale: run `plateau crd`"


def test_writing_under_a_root_writes_nothing_outside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    podschema.pod_template_schema()  # the CRD embeds the package's schema, read before
    elsewhere = tmp_path / "site-packages" / podschema.SCHEMA_FILE.name
    monkeypatch.setattr(podschema, "SCHEMA_FILE", elsewhere)  # a package installed elsewhere
    root = tmp_path / "checkout"
    written = write_crds(root)
    assert not elsewhere.exists()
    assert all(root in path.parents for path in written) and len(written) == 3
    assert (root / "operator/plateau/api/podtemplate.schema.json").read_text() == render_pod_template_schema()
    assert (root / "crds/trainingjob.yaml").read_text() == render_crd()


def test_names_subresources_and_columns() -> None:
    spec = build_crd()["spec"]
    assert spec["names"]["shortNames"] == ["tj"] and spec["names"]["categories"] == ["plateau"]
    version = spec["versions"][0]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert "status" in version["subresources"]
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Phase", "Reason", "Metric", "Best", "GPU-h", "Age"]


def test_cel_rules_cover_workload_and_target_consistency() -> None:
    rules = {r["rule"] for _, n in walk(schema()) for r in n.get("x-kubernetes-validations", [])}
    assert "has(self.template) != has(self.workloadRef)" in rules
    assert any("self.target < self.divergence" in r for r in rules)


@pytest.mark.parametrize(("interval", "errors"), [("1s", []), ("2m", []), ("500ms", ["must be at least 1s"])])
def test_cel_rejects_a_scrape_interval_under_a_second_as_the_model_does(interval: str, errors: list[str]) -> None:
    from tests.support.apiserver import cel

    metrics = schema()["properties"]["spec"]["properties"]["metrics"]
    found = cel.validate({"source": "file", "scrapeInterval": interval}, None, False, metrics, "spec.metrics")
    assert [e.detail for e in found] == errors
    assert all(e.field == "spec.metrics.scrapeInterval" for e in found)


def test_crd_yaml_round_trips() -> None:
    text = render_crd()
    assert yaml.safe_load(text) == build_crd()

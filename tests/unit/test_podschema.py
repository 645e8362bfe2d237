"""The pod template checks `plateau validate` shares with the API server: what the CRD's
embedded PodTemplateSpec schema rejects or prunes, worded as the server words it."""

from __future__ import annotations

from typing import Any

import pytest

from plateau.api.podschema import MAX_ERRORS, template_errors


def template(**container: Any) -> dict[str, Any]:
    return {"metadata": {"labels": {"team": "vision"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "trainer", "image": "t:1", **container}]}}


def test_a_real_template_passes() -> None:
    assert template_errors(template(
        command=["python", "train.py"], args=["--lr", "3e-4"],
        env=[{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        resources={"limits": {"nvidia.com/gpu": 1, "memory": "8Gi", "cpu": 0.5}},  # quantities: int, string, float
        ports=[{"containerPort": 8080, "name": "http"}],
        livenessProbe={"httpGet": {"path": "/", "port": "http"}},  # int-or-string
        imagePullPolicy=None,  # nulls are pruned, as the server prunes them
    )) == []


def test_a_typo_is_an_unknown_field_named_by_its_path() -> None:
    """The server would drop `comand` silently from a Job (and the image's entrypoint would run)."""
    assert template_errors(template(comand=["python"])) == ['unknown field "spec.template.spec.containers[0].comand"']
    nested = template(resources={"limit": {"cpu": 1}})
    assert template_errors(nested) == ['unknown field "spec.template.spec.containers[0].resources.limit"']
    pod_level = {"spec": {"containers": [{"name": "t"}], "nodeSelectr": {"gpu": "a100"}}}
    assert template_errors(pod_level) == ['unknown field "spec.template.spec.nodeSelectr"']


@pytest.mark.parametrize("container, error", [
    ({"command": "python train.py"},
     'spec.template.spec.containers[0].command: Invalid value: "string": spec.template.spec.containers[0].command '
     'in body must be of type array: "string"'),
    ({"ports": [{"containerPort": "80"}]},
     'spec.template.spec.containers[0].ports[0].containerPort: Invalid value: "string": '
     'spec.template.spec.containers[0].ports[0].containerPort in body must be of type integer: "string"'),
    ({"livenessProbe": {"httpGet": {"port": 1.5}}},
     'spec.template.spec.containers[0].livenessProbe.httpGet.port: Invalid value: "number": '
     'spec.template.spec.containers[0].livenessProbe.httpGet.port in body must be of type integer or string'),
    ({"env": [{"value": "x"}]}, "spec.template.spec.containers[0].env[0].name: Required value"),
    ({"stdin": "yes"},
     'spec.template.spec.containers[0].stdin: Invalid value: "string": spec.template.spec.containers[0].stdin '
     'in body must be of type boolean: "string"'),
])
def test_wrong_types_and_missing_fields_are_named_as_the_server_names_them(container: dict[str, Any], error: str) -> None:
    assert template_errors(template(**container)) == [error]


def test_the_errors_are_bounded() -> None:
    many = {"spec": {"containers": [{"name": "t", **{f"typo{i}": 1 for i in range(100)}}]}}
    assert len(template_errors(many)) == MAX_ERRORS
    assert template_errors("not a template") == ['spec.template: Invalid value: "string": spec.template in body must be of type object: "string"']

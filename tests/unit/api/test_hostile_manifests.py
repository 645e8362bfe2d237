"""Hostile manifests: `plateau validate` (the models) and the API server with the generated CRD
(the emulated one, which applies its schema and CEL rules) accept exactly the manifests a real
API server accepts, and the operator can then build the child Job of each one accepted.

Each case says what a real kube-apiserver (1.28+) does with `kubectl apply` and why:
- kubectl turns YAML into JSON, which has no inf or NaN: `.inf`/`.nan` fail before any request.
- A CRD's `type: integer|number|boolean|string` rejects other JSON types ("5" is no integer, an
  integral 5.0 is: the server decodes JSON numbers into int64 when they are integral).
- Custom resources' names are DNS-1123 subdomains (at most 253); label keys and annotation keys are
  qualified names (optional DNS-subdomain prefix and '/', a name of at most 63 alphanumerics, '-',
  '_' or '.'), label values at most 63 of the same; annotations at most 256 KiB in all.
- A Job's pod template needs at least one container, container names that are DNS-1123 labels
  and unique, restartPolicy OnFailure or Never; a Job's name is its pods' job-name label (63);
  an Indexed Job's pods are named host <job>-<index> (a DNS-1123 label).
- metav1.LabelSelector: In and NotIn need values, Exists and DoesNotExist take none.
- Plateau's own rules (CEL) reject what the operator could not build: a name too long for the
  child Job, names its sidecar and volumes use, a stdout pattern without a step group.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from plateau.api import podschema

from plateau.controller import children
from plateau.controller.children import SidecarSettings
from plateau.cli.crd import build_crd
from plateau.api.manifest import parse_training_job
from plateau.api.errors import InputError
from plateau.controller.children import build_job
from plateau_sidecar import protocol
from tests.support.apiserver import errors
from tests.support.apiserver.cluster import Cluster

ACCEPT, REJECT = True, False
TRAINER = {"name": "trainer", "image": "example/trainer:1"}


def manifest(**changes: Any) -> dict[str, Any]:
    """A valid TrainingJob with `changes` applied: paths (`spec__stop__metric__patience`) to
    values; DROP removes the key."""
    doc: dict[str, Any] = {
        "apiVersion": "plateau.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "trial", "namespace": "default"},
        "spec": {
            "template": {"spec": {"containers": [dict(TRAINER)]}},
            "stop": {"metric": {"name": "val_loss", "patience": 5}},
        },
    }
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = doc
        for key in parents:
            node = node.setdefault(key, {})
        if value is DROP:
            node.pop(last, None)
        else:
            node[last] = copy.deepcopy(value)
    return doc


DROP = object()
STOP = "spec__stop"
METRIC = "spec__stop__metric"
POD = "spec__template__spec"
METRICS = "spec__metrics"
STDOUT = {"source": "stdout", "logFile": "/plateau/train.log"}
SELECTOR = f"{STOP}__cohort"


def cohort(**selector: Any) -> dict[str, Any]:
    return {STOP + "__cohort": {"selector": selector}}


def name(n: int, char: str = "a") -> str:
    return char * n


CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("valid", {}, ACCEPT),
    # --- wrong JSON types: the server rejects them; pydantic used to coerce them ----------------
    ("patience-string", {f"{METRIC}__patience": "5"}, REJECT),
    ("patience-integral-float", {f"{METRIC}__patience": 5.0}, ACCEPT),
    ("patience-fraction", {f"{METRIC}__patience": 5.5}, REJECT),
    ("patience-boolean", {f"{METRIC}__patience": True}, REJECT),
    ("replicas-string", {"spec__replicas": "3"}, REJECT),
    ("replicas-integral-float", {"spec__replicas": 2.0}, ACCEPT),
    ("dryRun-yes", {f"{STOP}__dryRun": "yes"}, REJECT),
    ("dryRun-true", {f"{STOP}__dryRun": True}, ACCEPT),
    ("dryRun-one", {f"{STOP}__dryRun": 1}, REJECT),
    ("checkFinite-string-false", {f"{METRIC}__checkFinite": "false"}, REJECT),
    ("checkFinite-false", {f"{METRIC}__checkFinite": False}, ACCEPT),
    ("maxGpuHours-integer-is-a-number", {f"{STOP}__maxGpuHours": 10}, ACCEPT),
    ("maxGpuHours-string", {f"{STOP}__maxGpuHours": "10"}, REJECT),
    ("maxGpuHours-boolean", {f"{STOP}__maxGpuHours": True}, REJECT),
    ("target-string", {f"{METRIC}__target": "0.1"}, REJECT),
    ("metric-name-integer", {f"{METRIC}__name": 5}, REJECT),
    # A record's step and time keys are no metric: the sidecar never reports them as one.
    ("metric-name-step", {f"{METRIC}__name": "step"}, REJECT),
    ("metric-name-ts", {f"{METRIC}__name": "ts"}, REJECT),
    ("metric-name-steps", {f"{METRIC}__name": "steps"}, ACCEPT),
    ("learningRate-time", {f"{METRIC}__schedule": {"learningRate": "time"}}, REJECT),
    ("learningRate-lr", {f"{METRIC}__schedule": {"learningRate": "lr"}}, ACCEPT),
    # The sidecar takes metrics.names as one comma-separated variable.
    ("names-with-a-comma", {f"{METRICS}__names": ["val_loss,acc"]}, REJECT),
    ("names-with-a-dot", {f"{METRICS}__names": ["val.loss", "acc"]}, ACCEPT),
    ("maxDuration-integer", {f"{STOP}__maxDuration": 30}, REJECT),
    ("minJobs-integral-float", {f"{STOP}__cohort": {"selector": {"matchLabels": {"sweep": "a"}}, "minJobs": 3.0}}, ACCEPT),
    ("percentile-string", {f"{STOP}__cohort": {"selector": {"matchLabels": {"sweep": "a"}}, "percentile": "50"}}, REJECT),
    ("mode-wrong-case", {f"{METRIC}__mode": "MIN"}, REJECT),
    ("mode-max", {f"{METRIC}__mode": "max"}, ACCEPT),
    ("pushPort-string", {f"{METRICS}__pushPort": "9465"}, REJECT),
    ("names-not-a-list", {f"{METRICS}__names": "val_loss"}, REJECT),
    # --- inf and NaN: JSON has none, kubectl fails to encode YAML's .inf and .nan ----------------
    ("maxGpuHours-inf", {f"{STOP}__maxGpuHours": math.inf}, REJECT),
    ("minDelta-absolute-inf", {f"{METRIC}__minDelta": {"absolute": math.inf}}, REJECT),
    ("target-nan", {f"{METRIC}__target": math.nan}, REJECT),
    ("divergence-minus-inf", {f"{METRIC}__divergence": -math.inf}, REJECT),
    ("patienceGrowth-nan", {f"{METRIC}__patienceGrowth": math.nan}, REJECT),
    ("smoothing-nan", {f"{METRIC}__smoothing": math.nan}, REJECT),
    ("gpuIdle-below-nan", {f"{STOP}__gpuIdle": {"below": math.nan, "for": "5m"}}, REJECT),
    ("percentile-inf", {f"{STOP}__cohort": {"selector": {"matchLabels": {"sweep": "a"}}, "percentile": math.inf}},
     REJECT),
    # --- names: the server's own rules, and what the child Job needs ------------------------------
    ("name-underscore", {"metadata__name": "Bad_Name"}, REJECT),
    ("name-uppercase", {"metadata__name": "Trial"}, REJECT),
    ("name-non-ascii", {"metadata__name": "tr\u00efal"}, REJECT),
    ("name-trailing-dash", {"metadata__name": "trial-"}, REJECT),
    ("name-63", {"metadata__name": name(63)}, ACCEPT),
    ("name-64-job-label-too-long", {"metadata__name": name(64)}, REJECT),
    ("name-253", {"metadata__name": name(253)}, REJECT),
    ("name-254", {"metadata__name": name(254)}, REJECT),
    ("name-64-with-workloadRef", {"metadata__name": name(64), "spec__template": DROP,
                                  "spec__workloadRef": {"apiVersion": "batch/v1", "kind": "Job", "name": "x"}}, ACCEPT),
    ("name-dotted", {"metadata__name": "lr.3e-4"}, ACCEPT),
    ("name-dotted-indexed", {"metadata__name": "lr.3e-4", "spec__replicas": 2}, REJECT),
    ("name-61-indexed-2", {"metadata__name": name(61), "spec__replicas": 2}, ACCEPT),
    ("name-62-indexed-2", {"metadata__name": name(62), "spec__replicas": 2}, REJECT),
    ("name-60-indexed-11", {"metadata__name": name(60), "spec__replicas": 11}, ACCEPT),
    ("name-61-indexed-11", {"metadata__name": name(61), "spec__replicas": 11}, REJECT),
    ("name-58-indexed-10000", {"metadata__name": name(58), "spec__replicas": 10000}, ACCEPT),
    ("name-59-indexed-10000", {"metadata__name": name(59), "spec__replicas": 10000}, REJECT),
    ("namespace-invalid", {"metadata__namespace": "Bad_NS"}, REJECT),
    ("label-prefixed", {"metadata__labels": {"example.com/team": "vision"}}, ACCEPT),
    ("label-empty-value", {"metadata__labels": {"team": ""}}, ACCEPT),
    ("label-key-space", {"metadata__labels": {"bad key": "x"}}, REJECT),
    ("label-key-prefix-uppercase", {"metadata__labels": {"Example.com/team": "x"}}, REJECT),
    ("label-key-name-64", {"metadata__labels": {name(64): "x"}}, REJECT),
    ("label-value-64", {"metadata__labels": {"team": name(64)}}, REJECT),
    ("label-value-leading-dash", {"metadata__labels": {"team": "-x"}}, REJECT),
    ("annotation-free-text", {"metadata__annotations": {"note": "any text: " + name(1000, "x")}}, ACCEPT),
    ("annotation-key-two-slashes", {"metadata__annotations": {"a/b/c": "x"}}, REJECT),
    ("annotations-over-256KiB", {"metadata__annotations": {"note": name(256 * 1024, "x")}}, REJECT),
    ("unknown-spec-field", {"spec__paitence": 5}, REJECT),
    ("unknown-top-level-field", {"extra": True}, REJECT),
    ("apiVersion-other", {"apiVersion": "plateau.dev/v1"}, REJECT),
    ("replicas-negative", {"spec__replicas": -1}, REJECT),
    ("replicas-over-the-maximum", {"spec__replicas": 10001}, REJECT),
    ("replicas-zero", {"spec__replicas": 0}, ACCEPT),
    ("workloadRef-name-not-checked-by-the-server", {
        "spec__template": DROP, "spec__workloadRef": {"apiVersion": "batch/v1", "kind": "Job", "name": "Bad_Name"}}, ACCEPT),
    # A CronJob has no /scale, and its suspend leaves its Jobs running: nothing the operator can stop.
    ("workloadRef-cronjob", {
        "spec__template": DROP, "spec__workloadRef": {"apiVersion": "batch/v1", "kind": "CronJob", "name": "x"}}, REJECT),
    # Every Kubeflow training job suspends through spec.runPolicy.suspend; the group's other kinds are no such jobs.
    ("workloadRef-mpijob", {
        "spec__template": DROP, "spec__workloadRef": {"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "name": "x"}},
     ACCEPT),
    ("workloadRef-kubeflow-notebook", {
        "spec__template": DROP, "spec__workloadRef": {"apiVersion": "kubeflow.org/v1", "kind": "Notebook", "name": "x"}},
     REJECT),
    ("status-garbage-is-dropped", {"status": {"phase": "Bogus", "evaluations": "many"}}, ACCEPT),
    ("status-not-an-object-is-dropped", {"status": "done"}, ACCEPT),
    # --- the pod template: what a Job's pod template needs ---------------------------------------
    ("template-spec-empty", {POD: {}}, REJECT),
    ("containers-empty", {f"{POD}__containers": []}, REJECT),
    ("containers-a-string", {f"{POD}__containers": "trainer"}, REJECT),
    ("container-without-name", {f"{POD}__containers": [{"image": "example/trainer:1"}]}, REJECT),
    ("container-name-uppercase", {f"{POD}__containers": [{**TRAINER, "name": "Trainer"}]}, REJECT),
    ("container-name-64", {f"{POD}__containers": [{**TRAINER, "name": name(64)}]}, REJECT),
    ("container-names-duplicate", {f"{POD}__containers": [TRAINER, TRAINER]}, REJECT),
    ("containers-two", {f"{POD}__containers": [TRAINER, {**TRAINER, "name": "helper"}]}, ACCEPT),
    ("init-container-names-duplicate", {f"{POD}__initContainers": [{**TRAINER, "name": "i"}, {**TRAINER, "name": "i"}]},
     REJECT),
    ("template-labels-valid", {"spec__template__metadata": {"labels": {"example.com/team": "vision", "tier": ""}}},
     ACCEPT),
    ("template-label-value-64", {"spec__template__metadata": {"labels": {"team": name(64)}}}, REJECT),
    ("template-label-value-space", {"spec__template__metadata": {"labels": {"team": "a b"}}}, REJECT),
    ("restartPolicy-Always", {f"{POD}__restartPolicy": "Always"}, REJECT),
    ("restartPolicy-OnFailure", {f"{POD}__restartPolicy": "OnFailure"}, ACCEPT),
    ("restartPolicy-Never", {f"{POD}__restartPolicy": "Never"}, ACCEPT),
    ("container-field-typo", {f"{POD}__containers": [{**TRAINER, "comand": ["python"]}]}, REJECT),
    ("container-named-like-the-sidecar", {f"{POD}__containers": [{**TRAINER, "name": "plateau-sidecar"}]}, REJECT),
    ("init-container-named-like-the-sidecar", {f"{POD}__initContainers": [{**TRAINER, "name": "plateau-sidecar"}]},
     REJECT),
    ("volume-named-like-plateau's", {f"{POD}__volumes": [{"name": "plateau-shared", "emptyDir": {}}]}, REJECT),
    ("trainer-mounts-at-plateau's-path", {
        f"{POD}__volumes": [{"name": "data", "emptyDir": {}}],
        f"{POD}__containers": [{**TRAINER, "volumeMounts": [{"name": "data", "mountPath": "/plateau"}]}]}, REJECT),
    ("second-container-mounts-at-plateau's-path", {
        f"{POD}__volumes": [{"name": "data", "emptyDir": {}}],
        f"{POD}__containers": [TRAINER, {**TRAINER, "name": "helper",
                                         "volumeMounts": [{"name": "data", "mountPath": "/plateau"}]}]}, ACCEPT),
    # --- the forecast's end: exactly one of horizon and lookahead (CEL) ---------------------------
    ("forecast-horizon", {f"{METRIC}__forecast": {"horizon": 1000}}, ACCEPT),
    ("forecast-lookahead", {f"{METRIC}__forecast": {"lookahead": 1.5, "unit": "evaluations"}}, ACCEPT),
    ("forecast-lookahead-integer-is-a-number", {f"{METRIC}__forecast": {"lookahead": 2}}, ACCEPT),
    ("forecast-horizon-and-lookahead", {f"{METRIC}__forecast": {"horizon": 1000, "lookahead": 1.5}}, REJECT),
    ("forecast-neither", {f"{METRIC}__forecast": {"unit": "steps"}}, REJECT),
    ("forecast-lookahead-1", {f"{METRIC}__forecast": {"lookahead": 1.0}}, REJECT),
    ("forecast-lookahead-over-100", {f"{METRIC}__forecast": {"lookahead": 100.5}}, REJECT),
    ("forecast-lookahead-string", {f"{METRIC}__forecast": {"lookahead": "1.5"}}, REJECT),
    ("forecast-preset-with-lookahead", {f"{STOP}__preset": "forecast", f"{METRIC}__forecast": {"lookahead": 1.5}}, REJECT),
    # --- stdout patterns ---------------------------------------------------------------------------
    ("pattern-valid", {METRICS: {**STDOUT, "pattern": r"step=(?P<step>\d+) loss=(?P<val_loss>\S+)"}}, ACCEPT),
    ("pattern-without-step", {METRICS: {**STDOUT, "pattern": r"loss=(?P<val_loss>\S+)"}}, REJECT),
    ("pattern-too-long", {METRICS: {**STDOUT, "pattern": r"(?P<step>\d+)(?P<x>\S+)" + "a" * 1100}}, REJECT),
    # --- label selectors (metav1.LabelSelector's own rules) --------------------------------------
    ("selector-valid", cohort(matchExpressions=[{"key": "sweep", "operator": "In", "values": ["a", "b"]}]), ACCEPT),
    ("selector-In-without-values", cohort(matchExpressions=[{"key": "sweep", "operator": "In"}]), REJECT),
    ("selector-NotIn-empty-values", cohort(matchExpressions=[{"key": "sweep", "operator": "NotIn", "values": []}]),
     REJECT),
    ("selector-Exists-with-values", cohort(matchExpressions=[{"key": "sweep", "operator": "Exists", "values": ["a"]}]),
     REJECT),
    ("selector-DoesNotExist", cohort(matchExpressions=[{"key": "sweep", "operator": "DoesNotExist"}]), ACCEPT),
    ("selector-operator-unknown", cohort(matchExpressions=[{"key": "sweep", "operator": "Gt", "values": ["1"]}]),
     REJECT),
    ("selector-key-space", cohort(matchExpressions=[{"key": "bad key", "operator": "Exists"}]), REJECT),
    ("selector-key-prefixed", cohort(matchExpressions=[{"key": "example.com/sweep", "operator": "Exists"}]), ACCEPT),
    ("selector-value-space", cohort(matchExpressions=[{"key": "sweep", "operator": "In", "values": ["a b"]}]), REJECT),
    ("selector-matchLabels-value-64", cohort(matchLabels={"sweep": name(64)}), REJECT),
    ("selector-matchExpressions-65", cohort(matchExpressions=[{"key": f"k{i}", "operator": "Exists"} for i in range(65)]),
     REJECT),
    ("selector-matchLabels-valid", cohort(matchLabels={"example.com/sweep": "lr-sweep_1.a"}), ACCEPT),
]

# The real server rejects these where the emulator does not follow it: its JSON decoding of an
# integer beyond int64 (a float64, which kube-openapi's integer check refuses above 2**53) and
# its typed decoding of metadata (labels are map[string]string). The models reject them.
EMULATOR_GAPS: list[tuple[str, dict[str, Any]]] = [
    ("startStep-beyond-int64", {f"{STOP}__cohort": {"selector": {"matchLabels": {"sweep": "a"}}, "startStep": 1e30}}),
    ("label-value-integer", {"metadata__labels": {"team": 5}}),
    ("annotation-value-boolean", {"metadata__annotations": {"note": True}}),
]

# Accepted by the API server, rejected by the models, so the operator reports InvalidSpec (its
# SpecValid condition) instead of building a child the server or the sidecar would refuse. CEL
# could not say these within the server's CEL cost budget or at all: Python's regex syntax is not
# CEL's; a name shared by a container and an init container is a quadratic check over lists with
# no size bound; a matchLabels key is a map key of unbounded length (no schema, a costly regex).
MODEL_ONLY: list[tuple[str, dict[str, Any]]] = [
    ("pattern-does-not-compile", {METRICS: {**STDOUT, "pattern": r"(?P<step>\d+) (?P<loss>\S+"}}),
    ("pattern-step-group-only", {METRICS: {**STDOUT, "pattern": r"step=(?P<step>\d+)"}}),
    ("container-and-init-container-share-a-name", {f"{POD}__initContainers": [dict(TRAINER)]}),
    ("selector-matchLabels-key-invalid", cohort(matchLabels={"a/b/c": "x"})),
    ("selector-matchLabels-key-name-64", cohort(matchLabels={name(64): "x"})),
    ("template-label-key-invalid", {"spec__template__metadata": {"labels": {"bad key": "x"}}}),
    ("template-annotation-key-invalid", {"spec__template__metadata": {"annotations": {"a/b/c": "x"}}}),
    ("query-not-promql", {"spec__template": DROP, METRICS: {"queries": {"val_loss": "rate(("}},
                          "spec__workloadRef": {"apiVersion": "batch/v1", "kind": "Job", "name": "x"}}),
]


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    cluster = Cluster()
    crds = cluster.registry.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
    cluster.create(crds, "", build_crd())
    return cluster


def server_verdict(cluster: Cluster, doc: dict[str, Any]) -> tuple[bool, str]:
    """`kubectl apply` of the manifest: YAML to JSON (no inf or NaN), then a strict create."""
    try:
        body = json.loads(json.dumps(doc, allow_nan=False))
    except ValueError as exc:
        return REJECT, f"kubectl: json: unsupported value ({exc})"
    rt = cluster.registry.lookup("plateau.dev", "v1alpha1", "trainingjobs")
    namespace = body["metadata"].get("namespace", "default")
    if namespace not in ("default",):
        return REJECT, f"namespaces/{namespace}: not found"  # no such namespace can exist
    try:
        cluster.create(rt, namespace, body, dry_run=True, validation="Strict")
    except errors.ApiError as exc:
        return REJECT, exc.message
    return ACCEPT, ""


def model_verdict(doc: dict[str, Any]) -> tuple[bool, str]:
    try:
        parse_training_job(doc, "hostile.yaml")
    except InputError as exc:
        return REJECT, str(exc)
    return ACCEPT, ""


@pytest.mark.parametrize(("changes", "verdict"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validate_and_the_crd_agree_with_the_api_server(cluster: Cluster, changes: dict[str, Any], verdict: bool) -> None:
    doc = manifest(**changes)
    server, server_why = server_verdict(cluster, doc)
    model, model_why = model_verdict(doc)
    assert server == verdict, f"the CRD: {server_why or 'accepted'}"
    assert model == verdict, f"plateau validate: {model_why or 'accepted'}"


@pytest.mark.parametrize("changes", [c[1] for c in MODEL_ONLY], ids=[c[0] for c in MODEL_ONLY])
def test_what_cel_cannot_say_the_models_reject(cluster: Cluster, changes: dict[str, Any]) -> None:
    doc = manifest(**changes)
    assert server_verdict(cluster, doc)[0] == ACCEPT
    model, why = model_verdict(doc)
    assert model == REJECT and "hostile.yaml: spec" in why, why


@pytest.mark.parametrize("changes", [c[1] for c in EMULATOR_GAPS], ids=[c[0] for c in EMULATOR_GAPS])
def test_what_the_emulator_does_not_decode_the_models_reject(changes: dict[str, Any]) -> None:
    assert model_verdict(manifest(**changes))[0] == REJECT


BUILDABLE = [c for c in CASES if c[2] == ACCEPT and "spec__template" not in c[1]]


@pytest.mark.parametrize("changes", [c[1] for c in BUILDABLE], ids=[c[0] for c in BUILDABLE])
def test_the_operator_builds_a_job_the_server_accepts_for_each_accepted_manifest(
        cluster: Cluster, changes: dict[str, Any]) -> None:
    """Decision 12: a spec that validates produces children the server accepts."""
    job = parse_training_job(manifest(**changes), "hostile.yaml")
    tj = {"metadata": {**job.metadata.model_dump(), "uid": "0000"}}
    child = build_job(tj, job.spec, SidecarSettings())
    jobs = cluster.registry.lookup("batch", "v1", "jobs")
    cluster.create(jobs, "default", json.loads(json.dumps(child)), dry_run=True, validation="Strict")


def test_the_names_the_template_leaves_free_are_the_ones_the_child_job_takes() -> None:
    assert podschema.SIDECAR_CONTAINER == children.SIDECAR_NAME
    assert podschema.PLATEAU_VOLUMES == (children.SHARED_VOLUME, children.STOP_VOLUME)
    assert podschema.TRAINER_MOUNT_PATHS == (protocol.DEFAULT_SHARED_DIR, protocol.DEFAULT_STOP_DIR)


def test_the_suite_covers_each_class_both_ways() -> None:
    verdicts = {verdict for _, _, verdict in CASES}
    assert verdicts == {ACCEPT, REJECT} and len(CASES) >= 90


@pytest.mark.parametrize(("text", "field"), [
    ("patience: '5'", "spec.stop.metric.patience: Input should be a valid integer"),
    ("patience: .inf", "spec.stop.metric.patience: Input should be a valid integer"),
    ("patience: 5\n      target: .nan", "spec.stop.metric.target: Input should be a finite number"),
    ("patience: 5\n      checkFinite: 'false'", "spec.stop.metric.checkFinite: Input should be a valid boolean"),
], ids=["string", "inf-integer", "nan", "string-boolean"])
def test_plateau_validate_names_the_field_in_one_line(tmp_path: Any, capsys: pytest.CaptureFixture[str],
                                                      text: str, field: str) -> None:
    from plateau.cli.main import main

    path = tmp_path / "tj.yaml"
    path.write_text("apiVersion: plateau.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: trial}\nspec:\n"
                    "  template: {spec: {containers: [{name: trainer, image: t}]}}\n"
                    f"  stop:\n    metric:\n      name: val_loss\n      {text}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err == f"plateau: error: {path}: {field}", err

"""What build_job promises the sidecar: the spec it folds under, through a real downward-API
path, and a push journal on the pod's shared volume. Checked on the Job itself, not through
a stand-in that could share the operator's assumptions."""

from __future__ import annotations

import posixpath
import urllib.parse
from typing import Any

import pytest

from plateau import api
from plateau.controller.children import SidecarSettings
from plateau.engine.history import metric_spec_for
from plateau.controller.workload_state import SIDECAR_NAME
from plateau.controller.children import SCRAPE_INTERVAL_ANNOTATION, SCRAPE_TIMEOUT_ANNOTATION, build_job
from plateau_sidecar import protocol as p

STOP = {"preset": "balanced", "metric": {"name": "val_loss"}}


def job_for(metrics: dict[str, Any], labels: dict[str, str] | None = None,
            stop: dict[str, Any] = STOP) -> tuple[dict[str, Any], api.TrainingJobSpec]:
    tj = {"apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob",
          "metadata": {"name": "tj", "namespace": "ns", "uid": "u", "labels": labels or {}},
          "spec": {"template": {"spec": {"containers": [{"name": "trainer", "image": "t"}]}},
                   "metrics": metrics, "stop": stop}}
    spec = api.TrainingJob.model_validate(tj).spec
    return build_job(tj, spec, SidecarSettings()), spec


def sidecar_of(job: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in job["spec"]["template"]["spec"]["initContainers"] if c["name"] == SIDECAR_NAME)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def file_source(container: dict[str, Any], pod: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume and item that a container sees at `path`, resolved as the kubelet does."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container.get("volumeMounts") or []:
        directory = mount["mountPath"].rstrip("/")
        if posixpath.dirname(path) == directory:
            volume = volumes[mount["name"]]
            name = posixpath.basename(path)
            items = (volume.get("downwardAPI") or {}).get("items")
            return {"volume": volume, "item": next(i for i in items if i["path"] == name) if items else None}
    raise AssertionError(f"nothing is mounted where {path} lies")


def test_the_sidecar_exports_what_the_rule_reads_whatever_metrics_names_lists() -> None:
    """An allow-list without the rule's metric or learning rate would leave the sidecar folding
    nothing, or the metric without its rate; an empty one exports everything already."""
    scheduled = {"preset": "balanced", "metric": {"name": "val_loss", "schedule": {"learningRate": "lr"}}}
    for names, expected in ((["acc"], "acc,val_loss,lr"), (["lr", "val_loss"], "lr,val_loss"), ([], "")):
        job, spec = job_for({"names": names}, stop=scheduled)
        assert env_of(sidecar_of(job))[p.ENV_METRIC_NAMES] == expected
        assert spec.metrics.names == names  # the spec itself is unchanged
    job, _ = job_for({"names": ["acc"]})
    assert env_of(sidecar_of(job))[p.ENV_METRIC_NAMES] == "acc,val_loss"


def test_the_sidecar_reads_the_pods_spec_annotation_where_its_env_says() -> None:
    job, spec = job_for({"names": ["val_loss"]})
    template = job["spec"]["template"]
    sidecar = sidecar_of(job)
    source = file_source(sidecar, template["spec"], env_of(sidecar)[p.ENV_SPEC_FILE])
    assert source["item"]["fieldRef"]["fieldPath"] == f"metadata.annotations['{p.SPEC_ANNOTATION}']"
    expected = metric_spec_for(spec.stop)
    assert expected is not None and template["metadata"]["annotations"][p.SPEC_ANNOTATION] == expected.text


def test_a_push_sidecar_journals_on_the_pods_shared_volume() -> None:
    job, _ = job_for({"source": "push", "names": ["val_loss"]})
    sidecar = sidecar_of(job)
    source = file_source(sidecar, job["spec"]["template"]["spec"], env_of(sidecar)[p.ENV_PUSH_JOURNAL])
    assert "emptyDir" in source["volume"]  # survives the sidecar container's restart, not the pod's


def test_a_push_trainer_posts_to_the_path_and_port_its_sidecar_serves() -> None:
    job, spec = job_for({"source": "push", "names": ["val_loss"]})
    sidecar, trainer = sidecar_of(job), job["spec"]["template"]["spec"]["containers"][0]
    url = urllib.parse.urlsplit(env_of(trainer)[p.ENV_PUSH_URL])
    host, _, port = env_of(sidecar)[p.ENV_PUSH_ADDR].rpartition(":")
    assert (url.hostname, url.port, url.path) == (host, int(port), p.PUSH_PATH)
    assert url.port == spec.metrics.push_port


def test_a_kueue_queue_label_passes_to_the_job_which_starts_suspended_for_kueue_to_admit() -> None:
    job, _ = job_for({"names": ["val_loss"]}, {"kueue.x-k8s.io/queue-name": "team-a",
                                               "kueue.x-k8s.io/priority-class": "high", "team": "vision"})
    labels = job["metadata"]["labels"]
    assert labels["kueue.x-k8s.io/queue-name"] == "team-a" and labels["kueue.x-k8s.io/priority-class"] == "high"
    assert "team" not in labels and job["spec"]["suspend"] is True
    plain, _ = job_for({"names": ["val_loss"]})
    assert plain["spec"]["suspend"] is False and "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]


def test_the_trainer_reads_the_stop_annotation_where_its_env_says() -> None:
    job, _ = job_for({"names": ["val_loss"]})
    pod = job["spec"]["template"]["spec"]
    trainer = pod["containers"][0]
    source = file_source(trainer, pod, env_of(trainer)[p.ENV_STOP_FILE])
    assert source["item"]["fieldRef"]["fieldPath"] == f"metadata.annotations['{p.STOP_ANNOTATION}']"


def test_the_sidecar_is_a_native_sidecar() -> None:
    """restartPolicy Always: it starts before the trainer and does not keep the Job from completing."""
    job, _ = job_for({"names": ["val_loss"]})
    assert sidecar_of(job)["restartPolicy"] == "Always"
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("replicas, suspend, mode", [(0, True, None), (1, False, None), (3, False, "Indexed")])
def test_replicas_give_the_jobs_size_and_zero_a_suspended_job(replicas: int, suspend: bool, mode: str | None) -> None:
    tj = {"apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "tj", "namespace": "ns", "uid": "u"},
          "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "trainer", "image": "t"}]}},
                   "stop": STOP}}
    job = build_job(tj, api.TrainingJob.model_validate(tj).spec, SidecarSettings())
    assert job["spec"]["suspend"] is suspend and job["spec"]["parallelism"] == replicas
    assert job["spec"]["completions"] == max(replicas, 1) and job["spec"].get("completionMode") == mode
    assert job["metadata"]["ownerReferences"][0]["controller"] is True


def test_the_pods_carry_the_scrape_interval_the_chart_podmonitor_applies() -> None:
    """In Prometheus' duration form, the timeout never above the interval (Prometheus drops
    such a target) nor above its 10 s default."""
    for interval, expected in (("15s", ("15s", "10s")), ("1s", ("1s", "1s")), ("1.5s", ("1s500ms", "1s500ms")),
                               ("90s", ("1m30s", "10s")), ("2h", ("2h", "10s"))):
        job, _ = job_for({"scrapeInterval": interval})
        annotations = job["spec"]["template"]["metadata"]["annotations"]
        assert (annotations[SCRAPE_INTERVAL_ANNOTATION], annotations[SCRAPE_TIMEOUT_ANNOTATION]) == expected, interval
    job, _ = job_for({})
    assert job["spec"]["template"]["metadata"]["annotations"][SCRAPE_INTERVAL_ANNOTATION] == "15s"


def test_the_trainer_and_its_sidecar_agree_on_the_metrics_source() -> None:
    job, spec = job_for({"names": ["val_loss"]})
    trainer, sidecar = job["spec"]["template"]["spec"]["containers"][0], sidecar_of(job)
    assert env_of(trainer)[p.ENV_METRICS_FILE] == env_of(sidecar)[p.ENV_METRICS_FILE] == spec.metrics.path
    stdout, _ = job_for({"source": "stdout", "names": ["val_loss"], "logFile": "/plateau/train.log",
                         "pattern": r"step=(?P<step>\d+) loss=(?P<val_loss>\S+)"})
    assert env_of(sidecar_of(stdout))[p.ENV_STDOUT_PATTERN] == r"step=(?P<step>\d+) loss=(?P<val_loss>\S+)"


def test_the_sidecar_runs_locked_down() -> None:
    context = sidecar_of(job_for({"names": ["val_loss"]})[0])["securityContext"]
    assert context["runAsNonRoot"] is True and context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}


def test_neither_container_may_write_the_stop_annotation_it_reads() -> None:
    job, _ = job_for({"names": ["val_loss"]})
    pod = job["spec"]["template"]["spec"]
    for container in (pod["containers"][0], sidecar_of(job)):
        mounts = [m for m in container["volumeMounts"] if m["mountPath"] == p.DEFAULT_STOP_DIR]
        assert len(mounts) == 1 and mounts[0]["readOnly"] is True, container["name"]


def test_two_replicas_are_an_indexed_job_and_a_63_character_name_is_its_own_label() -> None:
    from plateau.controller.children import label_value

    tj = {"apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "tj", "namespace": "ns", "uid": "u"},
          "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "trainer", "image": "t"}]}}, "stop": STOP}}
    assert build_job(tj, api.TrainingJob.model_validate(tj).spec, SidecarSettings())["spec"]["completionMode"] == "Indexed"
    assert label_value("n" * 63) == "n" * 63 and label_value("n" * 64) != "n" * 64

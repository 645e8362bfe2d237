"""What build_job promises the sidecar: the spec it folds under, through a real downward-API
path, and a push journal on the pod's shared volume. Checked on the Job itself, not through
a stand-in that could share the operator's assumptions."""

from __future__ import annotations

import posixpath
import urllib.parse
from typing import Any

from plateau import api
from plateau.config import SidecarSettings
from plateau.history import metric_spec_for
from plateau.workloads import SCRAPE_INTERVAL_ANNOTATION, SCRAPE_TIMEOUT_ANNOTATION, SIDECAR_NAME, build_job
from plateau_sidecar import protocol as p

STOP = {"preset": "balanced", "metric": {"name": "val_loss"}}


def job_for(metrics: dict[str, Any]) -> tuple[dict[str, Any], api.TrainingJobSpec]:
    tj = {"apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob",
          "metadata": {"name": "tj", "namespace": "ns", "uid": "u"},
          "spec": {"template": {"spec": {"containers": [{"name": "trainer", "image": "t"}]}},
                   "metrics": metrics, "stop": STOP}}
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

"""spec.metrics.scrapeInterval in a cluster: the chart's PodMonitor relabelling, run by a real
Prometheus on the annotations build_job puts on the child Job's pods, scrapes each pod at its
TrainingJob's interval."""

from __future__ import annotations

import re
import time
from typing import Any, Optional

from plateau import api
from plateau.controller.children import SidecarSettings
from plateau.controller.children import build_job
from tests.support.chart import render
from tests.support.exposition import ExpositionServer
from tests.support.prometheus import PrometheusServer

# prometheus-operator writes a PodMonitor's relabelings into the scrape config under these names.
RELABEL_FIELDS = {"sourceLabels": "source_labels", "targetLabel": "target_label", "regex": "regex",
                  "replacement": "replacement", "separator": "separator", "action": "action", "modulus": "modulus"}


def pod_annotations(scrape_interval: Optional[str]) -> dict[str, str]:
    """The annotations of the child Job's pod template for a TrainingJob with this interval."""
    metrics = {"scrapeInterval": scrape_interval} if scrape_interval else {}
    tj = {"apiVersion": "plateau.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "tj", "namespace": "ns", "uid": "u"},
          "spec": {"template": {"spec": {"containers": [{"name": "trainer", "image": "t"}]}},
                   "metrics": metrics, "stop": {"maxDuration": "1h"}}}
    job = build_job(tj, api.TrainingJob.model_validate(tj).spec, SidecarSettings())
    return dict(job["spec"]["template"]["metadata"]["annotations"])


def kubernetes_sd_labels(annotations: dict[str, str]) -> dict[str, str]:
    """The meta labels Prometheus' kubernetes_sd gives a pod with these annotations."""
    return {f"__meta_kubernetes_pod_annotation_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v for k, v in annotations.items()}


def podmonitor_endpoint() -> dict[str, Any]:
    [monitor] = [d for d in render({"podMonitor": {"enabled": True}}) if d["kind"] == "PodMonitor"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    return dict(endpoint)


def servers_name(servers: dict[str, ExpositionServer], target: dict[str, Any]) -> str:
    return next(name for name, server in servers.items() if target["labels"]["instance"] == server.address)


def test_each_pod_is_scraped_at_its_trainingjobs_interval(prometheus: PrometheusServer) -> None:
    endpoint = podmonitor_endpoint()
    relabel = [{RELABEL_FIELDS[k]: v for k, v in r.items()} for r in endpoint["relabelings"]]
    pods = {"1s": pod_annotations("1s"), "4s": pod_annotations("4s"), "default": pod_annotations(None),
            "unannotated": {}}
    servers = {name: ExpositionServer(lambda: "plateau_up 1\n") for name in pods}
    try:
        for name, annotations in pods.items():
            prometheus.add_scrape_config({
                "job_name": name,
                "scrape_interval": endpoint["interval"],
                "scrape_timeout": "10s",  # Prometheus' global default, which the PodMonitor leaves alone
                "metrics_path": endpoint["path"],
                "static_configs": [{"targets": [servers[name].address], "labels": kubernetes_sd_labels(annotations)}],
                "relabel_configs": relabel,
            })
        prometheus.start()
        deadline = time.monotonic() + 20
        while len(targets := prometheus.targets()) < len(pods) and time.monotonic() < deadline:
            time.sleep(0.5)
        by_pod = {servers_name(servers, t): (t["scrapeInterval"], t["scrapeTimeout"]) for t in targets}
        assert by_pod == {"1s": ("1s", "1s"), "4s": ("4s", "4s"),
                          "default": ("15s", "10s"),  # spec.metrics.scrapeInterval's default
                          "unannotated": (endpoint["interval"], "10s")}  # e.g. a workloadRef's pods
        # And Prometheus really scrapes that often: samples in the 8 s after the first of each.
        selectors = {name: f'plateau_up{{job="plateau-sidecar", instance="{servers[name].address}"}}' for name in ("1s", "4s")}
        for selector in selectors.values():
            prometheus.wait_for_series(selector)
        time.sleep(8.5)
        counts = {name: len(prometheus.samples(selector, "8s")) for name, selector in selectors.items()}
        assert 7 <= counts["1s"] <= 9 and 2 <= counts["4s"] <= 3, counts
    finally:
        for server in servers.values():
            server.close()

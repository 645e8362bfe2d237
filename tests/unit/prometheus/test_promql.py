"""The GPU queries' text: MIG slices never read as idle, and the label names are the settings'."""

from __future__ import annotations

import re

from plateau.prometheus.promql import DcgmConfig, gpu_max_query, gpu_since_query

DEFAULT = DcgmConfig()
EXPORTED = DcgmConfig(pod_label="exported_pod", namespace_label="exported_namespace", mig_label="GPU_I_PROFILE")


def selectors(query: str, metric: str) -> list[str]:
    """The label matchers of every selector of `metric` in the query."""
    return re.findall(re.escape(metric) + r"\{([^}]*)\}", query)


def test_the_device_metric_excludes_mig_slices_and_the_profiling_metric_keeps_them() -> None:
    """DCGM_FI_DEV_GPU_UTIL reads 0 on a MIG slice, which is not idleness: only series without
    the MIG instance label may be read. The profiling metric works on MIG, so it keeps them."""
    for query in (gpu_max_query(DEFAULT, ["a"], "10m"), gpu_since_query(DEFAULT, ["a"], "10m")):
        device = selectors(query, "DCGM_FI_DEV_GPU_UTIL")
        assert device == ['namespace=~"a", GPU_I_ID=""']
        profiling = selectors(query, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
        assert profiling and set(profiling) == {'namespace=~"a"'}


def test_the_mig_and_pod_labels_are_the_settings() -> None:
    query = gpu_max_query(EXPORTED, ["b", "a"], "5m")
    assert selectors(query, "DCGM_FI_DEV_GPU_UTIL") == ['exported_namespace=~"a|b", GPU_I_PROFILE=""']
    assert query.count("max by (exported_namespace, exported_pod)") == 2


def test_the_busiest_sample_per_pod_with_the_profiling_metric_first() -> None:
    assert gpu_max_query(DEFAULT, ["a"], "10m") == (
        'max by (namespace, pod) (max_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{namespace=~"a"}[10m]))'
        ' or max by (namespace, pod) (max_over_time(DCGM_FI_DEV_GPU_UTIL{namespace=~"a", GPU_I_ID=""}[10m])) / 100')
    assert gpu_since_query(DEFAULT, ["a"], "10m") == (
        'min by (namespace, pod) (timestamp(DCGM_FI_PROF_GR_ENGINE_ACTIVE{namespace=~"a"} offset 10m))'
        ' or (min by (namespace, pod) (timestamp(DCGM_FI_DEV_GPU_UTIL{namespace=~"a", GPU_I_ID=""} offset 10m))'
        ' unless on (namespace, pod) max_over_time(DCGM_FI_PROF_GR_ENGINE_ACTIVE{namespace=~"a"}[10m]))')

"""A dcgm-exporter-shaped exporter for tests: the real metric and label names, values set by the test.

It publishes `DCGM_FI_PROF_GR_ENGINE_ACTIVE` (a 0..1 ratio) and `DCGM_FI_DEV_GPU_UTIL` (a 0..100
percentage) per GPU with dcgm-exporter's labels (gpu, UUID, device, modelName, Hostname,
container, namespace, pod, and GPU_I_PROFILE/GPU_I_ID on MIG slices), in the `pod` label
scheme; Prometheus scrapes it like any target.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Optional

import pytest

from tests.support.exposition import ExpositionServer


class DcgmExporter:
    def __init__(self) -> None:
        self._gpus: dict[str, tuple[str, Optional[float], Optional[float], bool]] = {}
        self._lock = threading.Lock()
        self._server = ExpositionServer(self.render)

    @property
    def address(self) -> str:
        return self._server.address

    def set(self, pod: str, namespace: str, profiling: Optional[float], device: Optional[float], mig: bool = False) -> None:
        """One GPU for `pod`: profiling ratio 0..1 and device utilisation 0..1 (exported x100)."""
        with self._lock:
            self._gpus[pod] = (namespace, profiling, device, mig)

    def render(self) -> str:
        lines = [
            "# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.",
            "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge",
        ]
        device_lines = ["# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).", "# TYPE DCGM_FI_DEV_GPU_UTIL gauge"]
        with self._lock:
            for index, (pod, (namespace, profiling, device, mig)) in enumerate(sorted(self._gpus.items())):
                labels = (f'gpu="{index}",UUID="GPU-{index:08d}-test",device="nvidia{index}",'
                          f'modelName="NVIDIA H100 80GB HBM3",Hostname="node-1",'
                          f'container="trainer",namespace="{namespace}",pod="{pod}"')
                if mig:
                    labels += ',GPU_I_PROFILE="1g.10gb",GPU_I_ID="1"'
                if profiling is not None:
                    lines.append(f"DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{labels}}} {profiling}")
                if device is not None:
                    device_lines.append(f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} {device * 100:g}")
        return "\n".join(lines + device_lines) + "\n"

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def dcgm_exporter() -> Iterator[DcgmExporter]:
    exporter = DcgmExporter()
    yield exporter
    exporter.close()

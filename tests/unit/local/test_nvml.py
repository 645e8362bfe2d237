"""GPU utilisation for local runs: CUDA_VISIBLE_DEVICES, the NVML sampler, the idle window."""

from __future__ import annotations

from types import SimpleNamespace

import pynvml
import pytest

from plateau.local.nvml import GpuSampler, UtilisationWindow, select_devices
from plateau.engine.rules import GpuWindow

UUIDS = ["GPU-aaaa-1111", "GPU-bbbb-2222", "GPU-bbbc-3333"]


@pytest.mark.parametrize(
    "visible, expected",
    [
        (None, [0, 1, 2]),  # unset: every GPU
        ("", []),  # set but empty: none
        ("2,0", [2, 0]),  # CUDA's order, not NVML's
        ("0,7,1", [0]),  # an invalid entry ends the list
        ("0,0", [0]),  # so does a repeated one
        ("GPU-aaaa", [0]),  # a unique UUID prefix
        ("GPU-bbb,0", []),  # an ambiguous prefix is invalid
        ("1, GPU-bbbc-3333", [1, 2]),
        ("MIG-0123", [None]),  # a MIG instance: a GPU without utilisation data
        ("-1", []),
        ("\u00b2", []),  # digits to str.isdigit, but not to CUDA, which reads ASCII only
        ("1,\u0660", [1]),  # an Arabic-Indic zero is no index 0
    ],
)
def test_visible_devices_follow_cuda(visible: str | None, expected: list[int | None]) -> None:
    assert select_devices(visible, UUIDS) == expected


class FakeNvml:
    """The slice of pynvml the sampler uses."""

    class NVMLError(Exception):
        pass

    def __init__(self, utilisation: list[int | None], available: bool = True) -> None:
        self.utilisation = utilisation  # None: NOT_SUPPORTED for that device
        self.available = available
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if not self.available:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return len(self.utilisation)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, handle: int) -> bytes:
        return f"GPU-{handle:04d}".encode()  # older bindings answer bytes

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:
        value = self.utilisation[handle]
        if value is None:
            raise self.NVMLError("Not Supported")
        return SimpleNamespace(gpu=value, memory=0)


def test_sampler_reports_the_busiest_visible_gpu() -> None:
    nvml = FakeNvml([90, 5, 40])
    sampler = GpuSampler.open("1,2", nvml=nvml)
    assert sampler is not None and sampler.gpus == 2
    assert sampler.sample() == pytest.approx(0.40)  # GPU 0 is busy, but not the trainer's
    sampler.close()
    assert nvml.shutdowns == 1


def test_a_gpu_without_data_makes_the_sample_unknown() -> None:
    assert GpuSampler(FakeNvml([3, None]), [0, 1]).sample() is None
    assert GpuSampler(FakeNvml([3]), [0, None]).sample() is None  # a MIG instance
    assert GpuSampler(FakeNvml([3]), []).sample() is None  # no GPU is not an idle GPU


def test_no_nvml_means_no_sampler() -> None:
    assert GpuSampler.open(None, nvml=FakeNvml([], available=False)) is None


def test_the_real_nvml_binding() -> None:
    """Here there is no GPU and nvmlInit raises NVMLError; on a GPU machine the sampler reads it."""
    sampler = GpuSampler.open(None)
    if sampler is None:
        with pytest.raises(pynvml.NVMLError):
            pynvml.nvmlInit()
        return
    try:
        assert sampler.gpus == pynvml.nvmlDeviceGetCount()
        value = sampler.sample()
        assert value is None or 0.0 <= value <= 1.0
    finally:
        sampler.close()


def test_window_covers_an_unbroken_run_of_samples() -> None:
    window = UtilisationWindow(60.0)
    assert window.window(0.0) is None
    for t in range(0, 61):
        window.add(float(t), 0.5 if t == 0 else 0.01)
    assert window.window(60.0) == GpuWindow(0.5, 60.0)  # the busy sample at t=0 is still inside
    window.add(61.0, 0.01)
    assert window.window(61.0) == GpuWindow(0.01, 61.0)  # it has left the window; coverage goes on


def test_a_gap_restarts_coverage() -> None:
    window = UtilisationWindow(60.0)
    for t in range(0, 50):
        window.add(float(t), 0.0)
    window.add(50.0, None)
    assert window.window(50.0) is None and window.latest is None
    window.add(51.0, 0.0)
    assert window.window(55.0) == GpuWindow(0.0, 4.0)

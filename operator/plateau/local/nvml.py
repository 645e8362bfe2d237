"""GPU utilisation of the GPUs a local trainer can see, from NVML (`nvidia-ml-py`).

No NVML (no driver, no GPU) means zero GPUs and unknown utilisation, which never counts as
idle. NVML numbers devices in PCI bus order, as CUDA does with CUDA_DEVICE_ORDER=PCI_BUS_ID;
on a machine mixing GPU models, set that so CUDA_VISIBLE_DEVICES indices mean the same here.
"""

from __future__ import annotations

from collections import deque
from types import ModuleType
from typing import Any, Optional, Sequence

from plateau.engine.rules import GpuWindow


def select_devices(cuda_visible_devices: Optional[str], uuids: Sequence[str]) -> list[Optional[int]]:
    """NVML indices of the devices CUDA exposes to the trainer, in CUDA's order.

    CUDA's rules: unset exposes every device; entries are indices or (prefixes of) UUIDs; the
    first invalid entry ends the list. A MIG instance is a GPU with no utilisation data in
    NVML, so it appears as None: counted for GPU-hours, unknown for utilisation.
    """
    if cuda_visible_devices is None:
        return list(range(len(uuids)))
    chosen: list[Optional[int]] = []
    for entry in (e.strip() for e in cuda_visible_devices.split(",")):
        if entry.startswith("MIG-"):
            chosen.append(None)
            continue
        if entry.isascii() and entry.isdigit():  # CUDA reads ASCII digits only; "²" and "٠" are invalid
            matches = [int(entry)] if int(entry) < len(uuids) else []
        else:
            matches = [i for i, uuid in enumerate(uuids) if entry.startswith("GPU-") and uuid.startswith(entry)]
        if len(matches) != 1 or matches[0] in chosen:
            break
        chosen.append(matches[0])
    return chosen


class GpuSampler:
    """Reads the utilisation of a fixed set of GPUs; `nvml` is the pynvml module (or a fake)."""

    def __init__(self, nvml: Any, devices: Sequence[Optional[int]]) -> None:
        self._nvml = nvml
        self._handles = [None if i is None else nvml.nvmlDeviceGetHandleByIndex(i) for i in devices]

    @property
    def gpus(self) -> int:
        return len(self._handles)

    @classmethod
    def open(cls, cuda_visible_devices: Optional[str], nvml: Optional[Any] = None) -> Optional[GpuSampler]:
        """A sampler for the trainer's GPUs, or None when NVML is unavailable (no GPU here)."""
        module: Any = nvml or _pynvml()
        try:
            module.nvmlInit()
        except module.NVMLError:
            return None
        try:
            uuids = [_text(module.nvmlDeviceGetUUID(module.nvmlDeviceGetHandleByIndex(i))) for i in range(module.nvmlDeviceGetCount())]
            return cls(module, select_devices(cuda_visible_devices, uuids))
        except module.NVMLError:
            module.nvmlShutdown()
            return None

    def sample(self) -> Optional[float]:
        """The busiest GPU's utilisation (0..1); None when any GPU has no data, or there is none:
        "every GPU idle" is only known when every GPU is known."""
        if not self._handles or None in self._handles:
            return None
        try:
            return max(self._nvml.nvmlDeviceGetUtilizationRates(h).gpu for h in self._handles) / 100.0
        except self._nvml.NVMLError:
            return None

    def close(self) -> None:
        self._nvml.nvmlShutdown()


def _pynvml() -> ModuleType:
    import pynvml  # imported late: only a run that samples GPUs needs it

    return pynvml


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value  # older bindings return bytes


class UtilisationWindow:
    """Samples over the gpuIdle window. Coverage counts only from the first sample of the
    current unbroken run of known samples: a gap in the data is unknown, never idle."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, float]] = deque()
        self._known_since: Optional[float] = None
        self.latest: Optional[float] = None

    def add(self, at: float, utilisation: Optional[float]) -> None:
        self.latest = utilisation
        if utilisation is None:
            self._samples.clear()
            self._known_since = None
            return
        if self._known_since is None:
            self._known_since = at
        self._samples.append((at, utilisation))
        while self._samples[0][0] < at - self.seconds:
            self._samples.popleft()

    def window(self, now: float) -> Optional[GpuWindow]:
        if self._known_since is None:
            return None
        return GpuWindow(max(u for _, u in self._samples), now - self._known_since)

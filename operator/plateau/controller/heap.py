"""Garbage-collector policy for a process that holds tens of thousands of long-lived objects.

The operator's registry and memory hold every job's watched objects and status: millions of
container objects at 10,000 jobs. CPython's full collections traverse all of them, seconds of
a cycle (benchmarks/operator_bench.py shows the GC column). Survivors of a cycle are frozen so
that collections skip them, and once every `full_every` seconds they are unfrozen and
collected, so cyclic garbage among them is still reclaimed.
"""

from __future__ import annotations

import gc
import time
from typing import Callable


class FrozenHeap:
    def __init__(self, full_every: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.full_every = full_every
        self.clock = clock
        self._last_full = clock()

    @staticmethod
    def install() -> None:
        """Fewer young-generation passes: a cycle allocates hundreds of thousands of objects."""
        gc.set_threshold(100_000, 50, 100)

    def after_cycle(self) -> None:
        if self.clock() - self._last_full >= self.full_every:
            gc.unfreeze()
            gc.collect()
            self._last_full = self.clock()
        gc.freeze()

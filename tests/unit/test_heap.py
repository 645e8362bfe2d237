"""The operator's GC policy: survivors frozen after each cycle, a full collection now and then."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from plateau.controller.heap import FrozenHeap


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_survivors_are_frozen_and_cyclic_garbage_is_reclaimed_at_the_next_full_collection() -> None:
    now = [0.0]
    heap = FrozenHeap(full_every=600, clock=lambda: now[0])
    node = Node()
    alive = weakref.ref(node)
    heap.after_cycle()
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()
    assert alive() is not None  # frozen: collections skip it
    now[0] = 599.0
    heap.after_cycle()
    assert alive() is not None
    now[0] = 600.0
    heap.after_cycle()
    assert alive() is None  # the periodic full collection thawed and freed it
    assert gc.get_freeze_count() > 0  # and froze the survivors again

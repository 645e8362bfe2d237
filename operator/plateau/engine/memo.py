"""A cache keyed by the identity of an immutable spec object. Pure.

The operator asks for derived views of every running job's spec at every cycle (its resolved
metric rule, its metric stop spec); specs are immutable once parsed, so each view is made once
per spec object. The object is kept beside its view, so an id reused after garbage collection
never returns another spec's view.
"""

from __future__ import annotations

from functools import wraps
from typing import Callable, TypeVar

S = TypeVar("S")
V = TypeVar("V")

CACHE_LIMIT = 50_000


def per_spec_object(fn: Callable[[S], V]) -> Callable[[S], V]:
    cache: dict[int, tuple[S, V]] = {}

    @wraps(fn)
    def cached(spec: S) -> V:
        hit = cache.get(id(spec))
        if hit is not None and hit[0] is spec:
            return hit[1]
        view = fn(spec)
        if len(cache) >= CACHE_LIMIT:
            cache.clear()
        cache[id(spec)] = (spec, view)
        return view

    return cached

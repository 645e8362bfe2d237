"""
The object store: one global resourceVersion counter (like etcd's revision), the objects,
and a bounded history of changes that watches replay from and follow.
"""
from __future__ import annotations

import asyncio
import collections
import copy
import dataclasses
from typing import Any

Key = tuple[str, str]  # (group, plural): objects are stored once, whatever version reads them
ObjectKey = tuple[str, str]  # (namespace or "", name)


@dataclasses.dataclass(frozen=True)
class Change:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: Key
    obj: dict[str, Any]  # the new state; for DELETED, the last state stamped with the deletion's RV
    old: dict[str, Any] | None  # the previous state, for selector transitions


class Store:
    def __init__(self, history: int = 100_000, first_rv: int = 1000) -> None:
        self.rv = first_rv
        self.objects: dict[Key, dict[ObjectKey, dict[str, Any]]] = collections.defaultdict(dict)
        self._history: collections.deque[Change] = collections.deque(maxlen=history)
        self._compacted = first_rv  # changes at or below this RV are no longer replayable
        self._subscribers: set[asyncio.Queue[Change]] = set()
        self.written = asyncio.Event()  # set on every change, for controllers

    def get(self, key: Key, namespace: str, name: str) -> dict[str, Any] | None:
        return self.objects[key].get((namespace, name))

    def items(self, key: Key, namespace: str | None = None) -> list[dict[str, Any]]:
        """Objects of a resource in key order (namespace, name), as etcd lists them."""
        found = self.objects[key]
        return [found[k] for k in sorted(found) if namespace is None or k[0] == namespace]

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def put(self, key: Key, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a new state of an object; stamps the next resourceVersion and notifies watchers."""
        meta = obj['metadata']
        where = (meta.get('namespace', ''), meta['name'])
        old = self.objects[key].get(where)
        meta['resourceVersion'] = self._next_rv()
        self.objects[key][where] = obj
        self._publish(Change(self.rv, 'MODIFIED' if old else 'ADDED', key, obj, old))
        return obj

    def remove(self, key: Key, final: dict[str, Any]) -> dict[str, Any]:
        """Delete an object; watchers see its final state stamped with the deletion's resourceVersion."""
        meta = final['metadata']
        old = self.objects[key].pop((meta.get('namespace', ''), meta['name']))
        gone = copy.deepcopy(final)
        gone['metadata']['resourceVersion'] = self._next_rv()
        self._publish(Change(self.rv, 'DELETED', key, gone, old))
        return gone

    def _publish(self, change: Change) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted = self._history[0].rv
        self._history.append(change)
        for queue in self._subscribers:
            queue.put_nowait(change)
        self.written.set()

    def compact(self) -> None:
        """Forget the history, as etcd compaction does: older RVs then answer 410 Gone."""
        self._history.clear()
        self._compacted = self.rv

    def subscribe(self, since: int | None) -> tuple[list[Change], asyncio.Queue[Change]] | None:
        """Changes after `since` (None: none) and a queue of future ones; None if `since` is compacted."""
        if since is not None and since < self._compacted:
            return None
        backlog = [c for c in self._history if since is not None and c.rv > since]
        queue: asyncio.Queue[Change] = asyncio.Queue()
        self._subscribers.add(queue)
        return backlog, queue

    def unsubscribe(self, queue: asyncio.Queue[Change]) -> None:
        self._subscribers.discard(queue)

    @property
    def oldest_rv(self) -> int:
        return self._compacted

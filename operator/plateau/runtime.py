"""Wires the operator's parts together: registry, API access, Prometheus, loop, leader lease."""

from __future__ import annotations

from typing import Any, Coroutine

from kubernetes import client, config

from plateau.config import Settings
from plateau.evaluator import Evaluator, Registry, run_forever
from plateau.heap import FrozenHeap
from plateau.kube import Kube
from plateau.leader import LeaderElector
from plateau.prometheus import PrometheusClient


def api_client() -> client.ApiClient:
    """In-cluster credentials when running in a pod, else $KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


class Runtime:
    def __init__(self, settings: Settings, api: client.ApiClient) -> None:
        self.settings = settings
        self.registry = Registry()
        self.kube = Kube(api, instance=settings.identity)
        self.prometheus = PrometheusClient(settings.prometheus_url, timeout=settings.prometheus_timeout)
        heap = FrozenHeap()
        heap.install()
        self.evaluator = Evaluator(settings, self.registry, self.kube, self.prometheus, heap=heap)
        self.elector = (
            LeaderElector(api, settings.lease_namespace, settings.lease_name, settings.identity)
            if settings.leader_election
            else None
        )

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def background(self) -> list[Coroutine[Any, Any, None]]:
        tasks = [run_forever(self.evaluator, self.settings.interval, self.is_leader)]
        if self.elector is not None:
            tasks.append(self.elector.run())
        return tasks

    async def close(self) -> None:
        if self.elector is not None:
            await self.elector.release()
        await self.prometheus.close()

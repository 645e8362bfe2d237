"""Wires the operator's parts together: registry, API access, Prometheus, loop, leader lease."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine, Optional

import kopf
from kubernetes import client, config

from plateau.controller import kube
from plateau.controller.config import Settings
from plateau.controller.health import Heartbeat
from plateau.controller.heap import FrozenHeap
from plateau.controller.kube import Kube
from plateau.controller.leader import LeaderElector
from plateau.controller.loop.cycle import Loop, run_forever
from plateau.controller.loop.registry import Registry
from plateau.controller.metrics import count_api_error
from plateau.prometheus.client import PrometheusClient

log = logging.getLogger("plateau.controller.runtime")
WATCH_SECONDS = 300  # each watch request ends server-side after this and is renewed


def api_client(kubeconfig: Optional[str] = None) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else `kubeconfig`, $KUBECONFIG or ~/.kube/config."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(kube.configure(configuration))


class Runtime:
    def __init__(self, settings: Settings, api: client.ApiClient) -> None:
        self.settings = settings
        self.registry = Registry()
        timeout = (settings.api_connect_timeout, settings.api_timeout)
        self.kube = Kube(api, instance=settings.identity, timeout=timeout, on_error=count_api_error)
        # The pod's proxy settings, as the Kubernetes client follows them (`plateau run` does not:
        # its Prometheus is on 127.0.0.1, which a shell's HTTP_PROXY without NO_PROXY would catch).
        self.prometheus = PrometheusClient(settings.prometheus_url, timeout=settings.prometheus_timeout, trust_env=True)
        heap = FrozenHeap()
        heap.install()
        self.loop = Loop(settings, self.registry, self.kube, self.prometheus, heap=heap)
        self.elector = (
            LeaderElector(api, settings.lease_namespace, settings.lease_name, settings.identity, timeout=timeout,
                          on_error=count_api_error)
            if settings.leader_election
            else None
        )
        self.heartbeat = Heartbeat(settings.liveness_intervals * settings.interval)  # for /healthz

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def configure(self, operator: kopf.OperatorSettings) -> None:
        """kopf's own API calls get the same bounds as plateau.controller.kube's, and its exit the shutdown deadline."""
        operator.networking.request_timeout = self.settings.api_timeout
        operator.networking.connect_timeout = self.settings.api_connect_timeout
        operator.watching.connect_timeout = self.settings.api_connect_timeout
        operator.watching.server_timeout = WATCH_SECONDS
        operator.watching.client_timeout = WATCH_SECONDS + self.settings.api_timeout
        # From SIGTERM on, kopf kills the process at this deadline, whatever still hangs.
        operator.process.ultimate_exiting_timeout = self.settings.shutdown_timeout

    def background(self) -> list[Coroutine[Any, Any, None]]:
        tasks = [run_forever(self.loop, self.settings.interval, self.is_leader, on_pass=self.heartbeat.beat)]
        if self.elector is not None:
            tasks.append(self.elector.run())
        return tasks

    async def close(self) -> None:
        """Hand the lease back, within half the shutdown deadline, and close the clients."""
        if self.elector is not None:
            try:
                await asyncio.wait_for(self.elector.release(), self.settings.shutdown_timeout / 2)
            except asyncio.TimeoutError:
                log.warning("the lease was not handed back: the API did not answer in time")
        await self.prometheus.close()

"""Leader election on a coordination.k8s.io/v1 Lease, so two replicas never act on one job.

Only the holder runs evaluation cycles. A holder that cannot renew within the lease
duration stops acting before anyone else may take over (renew deadline < lease duration),
the same rule client-go's leaderelection follows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from kubernetes import client

from plateau.controller.kube import DEFAULT_TIMEOUT, FIELD_MANAGER, ApiError, NotFound, OnError, Timeout, call, ignore_error
from plateau.controller.metrics import LEADER

log = logging.getLogger("plateau.controller.leader")


def _micro_time(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: object) -> Optional[float]:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.strptime(value.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
        except ValueError:
            return None
    return None


class LeaderElector:
    def __init__(self, api_client: client.ApiClient, namespace: str, name: str, identity: str,
                 lease_seconds: int = 15, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 clock: Callable[[], float] = time.time, timeout: Timeout = DEFAULT_TIMEOUT,
                 on_error: OnError = ignore_error) -> None:
        self.on_error = on_error
        self.api = client.CoordinationV1Api(api_client)
        self.api_client = api_client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.read_opts: dict[str, Any] = {"_request_timeout": timeout}
        self.write_opts: dict[str, Any] = {**self.read_opts, "field_manager": FIELD_MANAGER}
        self._renewed_at: Optional[float] = None

    def is_leader(self) -> bool:
        return self._renewed_at is not None and self.clock() - self._renewed_at < self.renew_deadline

    def _call(self, verb: str, fn: Callable[[], Any], attempts: int = 5) -> Any:
        return call(verb, fn, attempts=attempts, on_error=self.on_error)

    async def try_acquire_or_renew(self) -> bool:
        now = self.clock()
        try:
            lease = await self._call("get leases", lambda: self.api.read_namespaced_lease(self.name, self.namespace, **self.read_opts))
        except NotFound:
            body = {"metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(now, now, transitions=0)}
            try:
                await self._call("create leases", lambda: self.api.create_namespaced_lease(
                    self.namespace, body, **self.write_opts), attempts=1)
            except ApiError:
                return False
            self._renewed_at = now
            return True
        spec = lease.spec
        holder = spec.holder_identity if spec else None
        renewed = _parse_time(spec.renew_time) if spec else None
        duration = (spec.lease_duration_seconds or self.lease_seconds) if spec else self.lease_seconds
        expired = renewed is None or now - renewed > duration
        if holder not in (None, "", self.identity) and not expired:
            self._renewed_at = None
            return False
        acquired = _parse_time(spec.acquire_time) if spec and holder == self.identity else now
        transitions = (spec.lease_transitions or 0) + (0 if holder == self.identity else 1) if spec else 0
        body = self.api_client.sanitize_for_serialization(lease)
        body["spec"] = self._spec(acquired or now, now, transitions)
        try:  # replace carries resourceVersion: a concurrent taker gets 409, not both the lease
            await self._call("update leases", lambda: self.api.replace_namespaced_lease(
                self.name, self.namespace, body, **self.write_opts), attempts=1)
        except ApiError:
            return False
        if holder != self.identity:
            log.info("acquired lease %s/%s as %s", self.namespace, self.name, self.identity)
        self._renewed_at = now
        return True

    def _spec(self, acquired: float, renewed: float, transitions: int) -> dict[str, object]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": _micro_time(acquired),
            "renewTime": _micro_time(renewed),
            "leaseTransitions": transitions,
        }

    async def run(self) -> None:
        while True:
            try:
                await self.try_acquire_or_renew()
            except Exception:  # a broken API answer must not end the elector
                log.exception("leader election attempt failed")
            LEADER.set(1 if self.is_leader() else 0)
            await asyncio.sleep(self.retry_period)

    async def release(self) -> None:
        """Hand the lease back on shutdown so a standby takes over at once."""
        if not self.is_leader():
            return
        self._renewed_at = None
        try:
            lease = await self._call("get leases", lambda: self.api.read_namespaced_lease(
                self.name, self.namespace, **self.read_opts), attempts=1)
            body = self.api_client.sanitize_for_serialization(lease)
            body["spec"]["holderIdentity"] = ""
            await self._call("update leases", lambda: self.api.replace_namespaced_lease(
                self.name, self.namespace, body, **self.write_opts), attempts=1)
        except ApiError:
            pass

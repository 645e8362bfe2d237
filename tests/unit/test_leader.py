"""Leader election on a fake clock: a Lease its holder stops renewing expires after its duration
and is taken over; one renewed in time is not; a leader that cannot renew stops acting first."""

from __future__ import annotations

from typing import Any, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from plateau.controller.leader import LeaderElector, _micro_time

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeLeases:
    """One Lease, read and replaced as the API server would (optimistic concurrency aside)."""

    def __init__(self) -> None:
        self.spec: Optional[dict[str, Any]] = None
        self.replaced = 0

    def hold(self, identity: str, renewed: float, duration: int = 15, transitions: int = 0) -> None:
        self.spec = {"holderIdentity": identity, "leaseDurationSeconds": duration, "acquireTime": _micro_time(T0),
                     "renewTime": _micro_time(renewed), "leaseTransitions": transitions}

    def read_namespaced_lease(self, name: str, namespace: str, **_options: Any) -> client.V1Lease:
        if self.spec is None:
            raise ApiException(status=404)
        s = self.spec
        return client.V1Lease(metadata=client.V1ObjectMeta(name=name, namespace=namespace, resource_version="1"),
                              spec=client.V1LeaseSpec(holder_identity=s["holderIdentity"],
                                                      lease_duration_seconds=s["leaseDurationSeconds"],
                                                      acquire_time=s["acquireTime"], renew_time=s["renewTime"],
                                                      lease_transitions=s["leaseTransitions"]))

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], **_options: Any) -> None:
        self.spec = dict(body["spec"])

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any], **_options: Any) -> None:
        self.spec = dict(body["spec"])
        self.replaced += 1


def elector(leases: FakeLeases, clock: Clock, identity: str = "me") -> LeaderElector:
    e = LeaderElector(client.ApiClient(), "plateau", "plateau-leader", identity, lease_seconds=15,
                      renew_deadline=10.0, clock=clock)
    e.api = leases  # type: ignore[assignment]
    return e


async def test_a_lease_its_holder_stops_renewing_expires_after_its_duration_and_is_taken_over() -> None:
    leases, clock = FakeLeases(), Clock()
    leases.hold("other", renewed=T0, transitions=2)
    me = elector(leases, clock)
    clock.now = T0 + 14.9
    assert not await me.try_acquire_or_renew() and not me.is_leader()
    assert leases.spec is not None and leases.spec["holderIdentity"] == "other" and leases.replaced == 0
    clock.now = T0 + 15.1
    assert await me.try_acquire_or_renew() and me.is_leader()
    assert leases.spec["holderIdentity"] == "me" and leases.spec["leaseTransitions"] == 3
    assert leases.spec["acquireTime"] == leases.spec["renewTime"] == _micro_time(T0 + 15.1)


async def test_a_lease_renewed_in_time_is_not_taken_over() -> None:
    leases, clock = FakeLeases(), Clock()
    leases.hold("other", renewed=T0)
    me = elector(leases, clock)
    for t in (10.0, 20.0, 30.0, 40.0):  # the holder renews every 10 s; each look comes 5 s later
        leases.hold("other", renewed=T0 + t)
        clock.now = T0 + t + 5
        assert not await me.try_acquire_or_renew() and not me.is_leader()
    assert leases.spec is not None and leases.spec["holderIdentity"] == "other"


async def test_the_duration_is_the_lease_s_own_not_ours() -> None:
    leases, clock = FakeLeases(), Clock(T0 + 30)
    leases.hold("other", renewed=T0, duration=60)  # its holder asked for 60 s
    me = elector(leases, clock)
    assert not await me.try_acquire_or_renew()
    clock.now = T0 + 61
    assert await me.try_acquire_or_renew()
    assert leases.spec is not None and leases.spec["leaseDurationSeconds"] == 15


async def test_the_holder_renews_keeps_its_acquire_time_and_counts_no_transition() -> None:
    leases, clock = FakeLeases(), Clock()
    me = elector(leases, clock)
    assert await me.try_acquire_or_renew()  # no Lease yet: created
    assert leases.spec is not None and leases.spec["holderIdentity"] == "me" and leases.spec["leaseTransitions"] == 0
    clock.now = T0 + 8
    assert await me.try_acquire_or_renew()
    assert leases.spec["renewTime"] == _micro_time(T0 + 8) and leases.spec["acquireTime"] == _micro_time(T0)
    assert leases.spec["leaseTransitions"] == 0
    other = elector(leases, clock, "other")
    clock.now = T0 + 8 + 14
    assert not await other.try_acquire_or_renew()  # renewed 14 s ago: still mine


async def test_a_leader_that_cannot_renew_stops_acting_before_its_lease_expires() -> None:
    """renewDeadline (10 s) < leaseDuration (15 s): it stops acting before anyone may take over."""
    leases, clock = FakeLeases(), Clock()
    me = elector(leases, clock)
    assert await me.try_acquire_or_renew()
    clock.now = T0 + 9.9
    assert me.is_leader()
    clock.now = T0 + 10.0
    assert not me.is_leader()
    other = elector(leases, clock, "other")
    assert not await other.try_acquire_or_renew()  # and nobody else acts yet either
    clock.now = T0 + 15.1
    assert await other.try_acquire_or_renew() and other.is_leader() and not me.is_leader()


async def test_an_emptied_lease_is_taken_at_once() -> None:
    """A leader that shut down hands the lease back (holderIdentity ""): no wait for expiry."""
    leases, clock = FakeLeases(), Clock(T0 + 1)
    leases.hold("", renewed=T0)
    me = elector(leases, clock)
    assert await me.try_acquire_or_renew()
    assert leases.spec is not None and leases.spec["holderIdentity"] == "me"

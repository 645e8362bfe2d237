"""plateau.controller.rbac grants every API call the operator makes, found by driving the real code paths
against recording fakes of the Kubernetes client (the chart renders exactly these rules)."""

from __future__ import annotations

import json
import re
import asyncio
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

import plateau.controller.handlers  # noqa: F401  (registers the watches with kopf's default registry)
from plateau.controller import rbac
from plateau.controller.kube import Kube
from plateau.controller.leader import LeaderElector
from plateau.controller.workloads import KINDS, Workload

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)
VERBS = {"get": "get", "read": "get", "list": "list", "create": "create", "patch": "patch", "replace": "update"}


def grants(rules: list[dict[str, list[str]]]) -> set[Grant]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


class RecordingApi:
    """Stands in for one kubernetes client API class: records (group, resource, verb) per call.

    Typed APIs name the resource in the method (create_namespaced_job); CustomObjectsApi passes
    group and plural as arguments. `_scale` and `_status` methods act on those subresources.
    """

    def __init__(self, calls: set[Grant], group: str | None, answers: dict[str, Callable[[], Any]]) -> None:
        self.calls, self.group, self.answers = calls, group, answers

    def __getattr__(self, method: str) -> Callable[..., Any]:
        verb, _, rest = method.partition("_")
        noun = rest.removeprefix("namespaced_")
        sub = next((s for s in ("scale", "status") if noun.endswith("_" + s)), None)

        def record(*args: Any, **_: Any) -> Any:
            if self.group is None:  # CustomObjectsApi(group, version, namespace, plural, ...)
                group, resource = args[0], args[3]
            else:
                group, resource = self.group, noun + "s"
            self.calls.add((group, f"{resource}/{sub}" if sub else resource, VERBS[verb]))
            return self.answers.get(method, dict)()

        return record


def lease_answers(identity: str) -> Callable[[], Any]:
    """The first read finds no Lease; later reads find it held by `identity`."""
    reads = iter(range(1000))

    def answer() -> Any:
        if next(reads) == 0:
            raise ApiException(status=404)
        now = datetime.now(timezone.utc)
        return client.V1Lease(metadata=client.V1ObjectMeta(name="plateau", namespace="plateau-system"),
                              spec=client.V1LeaseSpec(holder_identity=identity, lease_duration_seconds=15,
                                                      acquire_time=now, renew_time=now, lease_transitions=0))

    return answer


def operator_calls() -> set[Grant]:
    calls: set[Grant] = set()
    pod = {"metadata": {"name": "trainer-0", "annotations": {}}}
    answers = {
        "list_namespaced_pod": lambda: SimpleNamespace(data=json.dumps({"items": [pod]}).encode()),
        "get_namespaced_custom_object": lambda: {"metadata": {"name": "w", "annotations": {}}, "spec": {}, "status": {}},
        # queued by Kueue, which made a Workload for it: a stop deactivates that
        "list_namespaced_custom_object": lambda: {"items": [{"metadata": {"name": "job-w-1", "ownerReferences": [{"uid": "w-uid"}]},
                                                             "spec": {"active": True}}]},
        "get_namespaced_custom_object_scale": lambda: {"spec": {"replicas": 2}, "status": {"replicas": 2, "selector": "app=w"}},
        "read_namespaced_lease": lease_answers("me"),
    }
    api_client = client.ApiClient()
    kube = Kube(api_client)
    kube.custom = RecordingApi(calls, None, answers)  # type: ignore[assignment]
    kube.batch = RecordingApi(calls, "batch", answers)  # type: ignore[assignment]
    kube.core = RecordingApi(calls, "", answers)  # type: ignore[assignment]
    elector = LeaderElector(api_client, "plateau-system", "plateau", "me")
    elector.api = RecordingApi(calls, "coordination.k8s.io", answers)  # type: ignore[assignment]
    tj = {"metadata": {"name": "tj", "namespace": "ns", "uid": "u"}}

    async def drive() -> None:
        for (group, kind), info in KINDS.items():  # every workload kind: observe, stop, resume
            workload = Workload(kube, "ns", f"{group}/v1", kind, "w")
            await workload.observe()
            await workload.request_stop("Plateau")
            await workload.suspend(kueue_uid="w-uid")
            await workload.resume(2, child=kind == "Job", kueue_uid="w-uid")
        await kube.patch_status("ns", "tj", {"phase": "Running"})  # the evaluation loop
        await kube.create_job("ns", {"metadata": {"name": "tj"}})
        await kube.post_event(tj, "Normal", "Running", "the trainer is running")
        assert await elector.try_acquire_or_renew()  # creates the Lease
        assert await elector.try_acquire_or_renew()  # renews it
        await elector.release()

    asyncio.run(drive())
    for handler in kopf.get_default_registry()._watching.get_all_handlers():  # kopf's watches
        selector = handler.selector
        assert selector is not None
        calls |= {(selector.group or "", selector.any_name or "", verb) for verb in ("list", "watch")}
    return calls


def test_every_call_the_operator_makes_is_granted() -> None:
    used = operator_calls()
    assert len(used) > 20
    assert used - grants(rbac.RULES + rbac.LEASE_RULES) == set()


def test_every_grant_is_used() -> None:
    unused = grants(rbac.RULES + rbac.LEASE_RULES) - operator_calls()
    assert unused == set()


def test_the_lease_is_granted_only_in_the_operators_namespace() -> None:
    assert all(group == "coordination.k8s.io" for group, _, _ in grants(rbac.LEASE_RULES))
    assert not any(group == "coordination.k8s.io" for group, _, _ in grants(rbac.RULES))


def test_the_install_guide_lists_exactly_these_rules() -> None:
    """docs/install.md's permissions table: what an admin reviews before installing."""
    guide = (Path(__file__).resolve().parents[2] / "docs" / "install.md").read_text()
    table = guide.split("## Permissions", 1)[1].split("\n\n", 2)[2].split("\n\n", 1)[0]
    listed: set[Grant] = set()
    for row in table.splitlines()[2:]:  # after the header and its rule
        group, resources, verbs = (cell.strip() for cell in row.strip("|").split("|")[:3])
        group = "" if group == "core" else group.strip("`")
        listed |= {(group, r, v.strip()) for r in re.findall(r"`([^`]+)`", resources) for v in verbs.split(",")}
    assert len(listed) > 20
    assert listed == grants(rbac.RULES + rbac.LEASE_RULES)

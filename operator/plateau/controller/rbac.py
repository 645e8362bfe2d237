"""Every API permission the operator uses, in one place.

The Helm chart renders these rules (a test keeps them identical), and the integration tests
run the operator under exactly these rules against the emulated API server.
"""

from __future__ import annotations

from plateau import api

# Cluster-wide (a ClusterRole) when the chart's watchNamespaces is empty, else a Role per namespace.
RULES: list[dict[str, list[str]]] = [
    # watch TrainingJobs (kopf), write their status (the evaluation loop)
    {"apiGroups": [api.GROUP], "resources": [api.PLURAL], "verbs": ["list", "watch"]},
    {"apiGroups": [api.GROUP], "resources": [f"{api.PLURAL}/status"], "verbs": ["patch"]},
    # child Jobs: watch (kopf), create from the template, read and suspend/resume
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "patch"]},
    # the stop request: an annotation on the trainer pods
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    # workloadRef kinds: suspend where the kind has it, else /scale
    {"apiGroups": ["jobset.x-k8s.io"], "resources": ["jobsets"], "verbs": ["get", "patch"]},
    {"apiGroups": ["kubeflow.org"], "resources": list(api.KUBEFLOW_KINDS.values()), "verbs": ["get", "patch"]},
    # read only: patching them would let the account rewrite pod templates (any image, any account)
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get"]},
    {"apiGroups": ["apps"], "resources": ["deployments/scale", "statefulsets/scale"], "verbs": ["get", "patch"]},
    # Kueue-queued workloads: a stop deactivates their Workload (spec.active), or Kueue restarts them
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["list", "patch"]},
]

# In the operator's own namespace only: the leader-election Lease.
LEASE_RULES: list[dict[str, list[str]]] = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
]

"""The Kopf operator: settings, Kubernetes calls, workloads, the evaluation loop and its own metrics."""

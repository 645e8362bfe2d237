"""Plateau's sidecar: the trainer's metrics, exported for Prometheus."""

"""Plateau's sidecar and trainer-side client."""

"""The pure stop-rule engine: folding reports, deciding, stopping, status text. No I/O, no clock, no Kubernetes; outside itself it imports only plateau.api."""

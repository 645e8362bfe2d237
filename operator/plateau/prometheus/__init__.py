"""Reading series for the operator and the local runner: PromQL text, its confinement, the HTTP client, and the sidecar's track series."""

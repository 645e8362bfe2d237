"""`plateau run`: one TrainingJob on one machine, no cluster.

The trainer runs as a local process next to a real `plateau-sidecar`; its metrics are
scraped over HTTP (or read from Prometheus), folded by the same `plateau.engine.rules` engine the
operator uses, and the run ends with the same status the CRD would carry.
"""

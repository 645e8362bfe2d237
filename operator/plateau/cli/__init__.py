"""The `plateau` command line: run, validate, replay, crd, docs."""

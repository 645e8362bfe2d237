"""The evaluation loop, one module per stage of a cycle (cycle.py reads them top to bottom).

gather (jobs from the registry) -> fetch (Prometheus) -> assemble (series to tracks, pure) ->
plan (pure) -> act (workload actions, Events) -> write (status) -> export (the operator's metrics);
memory is what a leader keeps between cycles, registry what the watch delivers.
"""

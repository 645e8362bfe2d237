"""Kopf handlers: they only feed the registry and start the loop. The logic lives elsewhere.

Watch-event handlers keep no progress state on the objects (no finalizers, no annotations),
so kopf never writes to a TrainingJob; every write comes from the leader's evaluation loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from plateau import api
from plateau.controller.children import LABEL


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
def trainingjob_event(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.registry.on_trainingjob(event)


@kopf.on.event("batch", "v1", "jobs", labels={LABEL: kopf.PRESENT})
def child_job_event(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    memo.runtime.registry.on_child_job(event)


@kopf.on.startup()
async def start_loop(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False  # Events are posted by the loop, after status is recorded
    settings.scanning.disabled = True  # namespaces are listed explicitly; no cluster-wide scans
    memo.runtime.configure(settings)  # request, watch and shutdown bounds
    memo.tasks = [asyncio.create_task(coro) for coro in memo.runtime.background()]


@kopf.on.cleanup()
async def stop_loop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.tasks:
        task.cancel()
    await asyncio.gather(*memo.tasks, return_exceptions=True)
    await memo.runtime.close()

"""The evaluation loop's timing: a watch event wakes the next cycle, even one that arrives mid-cycle."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from plateau.controller.config import Settings
from plateau.controller.loop.context import Metrics
from plateau.controller.loop.cycle import Loop, run_forever
from plateau.controller.loop.registry import Registry


class RecordingLoop(Loop):
    """A loop with no jobs that records when its cycles start; a cycle may take time (its fetch
    waits) and see watch events arrive meanwhile."""

    def __init__(self, during_first_cycle: bool) -> None:
        super().__init__(Settings(), Registry(), kube=None, prometheus=None)  # type: ignore[arg-type]
        self.during_first_cycle = during_first_cycle
        self.cycles: list[float] = []
        self.stages = self.stages._replace(fetch_metrics=self.fetch)

    async def fetch(self, *_: Any) -> Metrics:
        self.cycles.append(asyncio.get_running_loop().time())
        if len(self.cycles) == 1:
            await asyncio.sleep(0.5)
            if self.during_first_cycle:
                self.registry.changed.set()  # e.g. `kubectl scale --replicas=0` while the cycle runs
            await asyncio.sleep(0.5)
        return Metrics({}, None, {})


async def run_for(loop: RecordingLoop, seconds: float, interval: float = 15.0) -> None:
    task = asyncio.create_task(run_forever(loop, interval, lambda: True))
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.looptime
async def test_an_event_during_a_cycle_wakes_the_next_cycle_a_second_later() -> None:
    loop = RecordingLoop(during_first_cycle=True)
    await run_for(loop, 5)
    start = loop.cycles[0]
    assert [t - start for t in loop.cycles] == pytest.approx([0.0, 2.0])  # 1s cycle + 1s debounce


@pytest.mark.looptime
async def test_without_events_cycles_start_every_interval_however_long_they_take() -> None:
    loop = RecordingLoop(during_first_cycle=False)  # its first cycle takes 1 s
    await run_for(loop, 40)
    start = loop.cycles[0]
    assert [t - start for t in loop.cycles] == pytest.approx([0.0, 15.0, 30.0])


@pytest.mark.looptime
async def test_a_cycle_longer_than_the_interval_is_followed_at_once() -> None:
    loop = RecordingLoop(during_first_cycle=False)
    await run_for(loop, 2.8, interval=0.5)
    start = loop.cycles[0]
    assert [t - start for t in loop.cycles] == pytest.approx([0.0, 1.0, 1.5, 2.0, 2.5])


@pytest.mark.looptime
async def test_an_event_between_cycles_wakes_the_loop_early() -> None:
    loop = RecordingLoop(during_first_cycle=False)
    task = asyncio.create_task(run_forever(loop, 15.0, lambda: True))
    await asyncio.sleep(5)
    loop.registry.changed.set()
    await asyncio.sleep(3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    start = loop.cycles[0]
    assert [t - start for t in loop.cycles] == pytest.approx([0.0, 6.0])


@pytest.mark.looptime
async def test_each_pass_beats_when_it_ends_led_or_standing_by_and_a_hung_cycle_does_not() -> None:
    loop = RecordingLoop(during_first_cycle=False)  # its first cycle takes 1 s
    events, beats, hang = asyncio.get_running_loop(), [], asyncio.Event()
    first_fetch = loop.fetch

    async def fetch(*args: Any) -> Metrics:
        metrics = await first_fetch(*args)
        if len(loop.cycles) == 2:
            await hang.wait()  # the second cycle waits on a call that does not return
        return metrics

    loop.stages = loop.stages._replace(fetch_metrics=fetch)
    passes = iter([False])  # standing by first, then leading
    task = asyncio.create_task(run_forever(loop, 15.0, lambda: next(passes, True),
                                           on_pass=lambda: beats.append(events.time())))
    await asyncio.sleep(100)
    assert [b - beats[0] for b in beats] == pytest.approx([0.0, 16.0])  # the standby pass; the 1 s cycle
    hang.set()
    await asyncio.sleep(1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert beats[2] - beats[0] == pytest.approx(100.0)  # it beats again once the call returns


@pytest.mark.looptime
async def test_a_cycle_that_raises_is_no_beat_and_each_distinct_error_is_logged_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """Liveness says whether cycles end: a loop whose every cycle raises evaluates nothing, and
    goes stale. It goes on trying all the same, and logs each new error once, not every interval."""
    loop = RecordingLoop(during_first_cycle=False)
    events, beats = asyncio.get_running_loop(), []
    same = RuntimeError("no answer")
    outcomes = iter([same, same, same, ValueError("odd"), None, same, None])

    async def fetch(*_: Any) -> Metrics:
        loop.cycles.append(events.time())
        error = next(outcomes)
        if error is not None:
            raise error
        return Metrics({}, None, {})

    loop.stages = loop.stages._replace(fetch_metrics=fetch)
    task = asyncio.create_task(run_forever(loop, 15.0, lambda: True, on_pass=lambda: beats.append(events.time())))
    await asyncio.sleep(100)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    start = loop.cycles[0]
    assert [t - start for t in loop.cycles] == pytest.approx([0.0, 15.0, 30.0, 45.0, 60.0, 75.0, 90.0])
    assert [b - start for b in beats] == pytest.approx([60.0, 90.0])  # the cycles that ended
    logged = [r.exc_info[0] for r in caplog.records if r.exc_info and "evaluation cycle failed" in r.getMessage()]
    assert logged == [RuntimeError, ValueError, RuntimeError]  # a new error; the first again after a success

"""The evaluation loop's timing: a watch event wakes the next cycle, even one that arrives mid-cycle."""

from __future__ import annotations

import asyncio

import pytest

from plateau.controller.evaluator import Registry, run_forever


class FakeEvaluator:
    """Records when cycles start; a cycle may take time and see watch events arrive meanwhile."""

    def __init__(self, during_first_cycle: bool) -> None:
        self.registry = Registry()
        self.during_first_cycle = during_first_cycle
        self.cycles: list[float] = []

    def forget(self) -> None:
        pass

    async def cycle(self) -> None:
        self.cycles.append(asyncio.get_running_loop().time())
        if len(self.cycles) == 1:
            await asyncio.sleep(0.5)
            if self.during_first_cycle:
                self.registry.changed.set()  # e.g. `kubectl scale --replicas=0` while the cycle runs
            await asyncio.sleep(0.5)


async def run_for(evaluator: FakeEvaluator, seconds: float, interval: float = 15.0) -> None:
    task = asyncio.create_task(run_forever(evaluator, interval, lambda: True))  # type: ignore[arg-type]
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.looptime
async def test_an_event_during_a_cycle_wakes_the_next_cycle_a_second_later() -> None:
    evaluator = FakeEvaluator(during_first_cycle=True)
    await run_for(evaluator, 5)
    start = evaluator.cycles[0]
    assert [t - start for t in evaluator.cycles] == pytest.approx([0.0, 2.0])  # 1s cycle + 1s debounce


@pytest.mark.looptime
async def test_without_events_cycles_start_every_interval_however_long_they_take() -> None:
    evaluator = FakeEvaluator(during_first_cycle=False)  # its first cycle takes 1 s
    await run_for(evaluator, 40)
    start = evaluator.cycles[0]
    assert [t - start for t in evaluator.cycles] == pytest.approx([0.0, 15.0, 30.0])


@pytest.mark.looptime
async def test_a_cycle_longer_than_the_interval_is_followed_at_once() -> None:
    evaluator = FakeEvaluator(during_first_cycle=False)
    await run_for(evaluator, 2.8, interval=0.5)
    start = evaluator.cycles[0]
    assert [t - start for t in evaluator.cycles] == pytest.approx([0.0, 1.0, 1.5, 2.0, 2.5])


@pytest.mark.looptime
async def test_an_event_between_cycles_wakes_the_loop_early() -> None:
    evaluator = FakeEvaluator(during_first_cycle=False)
    task = asyncio.create_task(run_forever(evaluator, 15.0, lambda: True))  # type: ignore[arg-type]
    await asyncio.sleep(5)
    evaluator.registry.changed.set()
    await asyncio.sleep(3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    start = evaluator.cycles[0]
    assert [t - start for t in evaluator.cycles] == pytest.approx([0.0, 6.0])


@pytest.mark.looptime
async def test_each_pass_beats_when_it_ends_led_or_standing_by_and_a_hung_cycle_does_not() -> None:
    evaluator = FakeEvaluator(during_first_cycle=False)  # its first cycle takes 1 s
    loop, beats, hang = asyncio.get_running_loop(), [], asyncio.Event()
    first_cycle = evaluator.cycle

    async def cycle() -> None:
        await first_cycle()
        if len(evaluator.cycles) == 2:
            await hang.wait()  # the second cycle waits on a call that does not return

    evaluator.cycle = cycle  # type: ignore[method-assign]
    passes = iter([False])  # standing by first, then leading
    task = asyncio.create_task(run_forever(evaluator, 15.0, lambda: next(passes, True),  # type: ignore[arg-type]
                                           on_pass=lambda: beats.append(loop.time())))
    await asyncio.sleep(100)
    assert [b - beats[0] for b in beats] == pytest.approx([0.0, 16.0])  # the standby pass; the 1 s cycle
    hang.set()
    await asyncio.sleep(1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert beats[2] - beats[0] == pytest.approx(100.0)  # it beats again once the call returns

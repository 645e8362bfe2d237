"""A metric's reports, folded one by one by the engine: resumes, and the first stop. Pure.

Every report the trainer sent reaches `MetricHistory.add` once, in order, with its real
value, wherever it is folded: in the sidecar (which sees every report, so the operator and
`plateau run` read its track instead of rebuilding one from what Prometheus sampled), in
`plateau replay` and in the benchmark. So all of them decide on the same sequence.

- A report whose step is not above the last kept evaluation's is a resume from a checkpoint:
  the evaluations at or after its step leave the history (as TensorBoard purges them) and
  the track is folded again from what is left, so the run goes on from the checkpoint's state.
- `stopped` is the track at the first report at which the metric's rules said stop, kept
  whatever comes later: replay stops there, and a cluster reads it at the next scrape.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from array import array
from typing import Iterable, NamedTuple, Optional

from plateau.api import Combine, StopSpec
from plateau.engine.memo import per_spec_object
from plateau.engine.presets import resolve_metric_rule
from plateau.engine.fold import Evaluation, MetricTrack, track
from plateau.engine.rules import Observation, decide

# Evaluations kept to fold again after a resume: 16 bytes each.
MAX_EVALUATIONS = 1_000_000
# A track is kept every this many evaluations, so a resume folds at most this many again.
SNAPSHOT_EVERY = 256


def metric_stop_spec(stop: StopSpec) -> Optional[StopSpec]:
    """The part of a stop spec that the metric's history decides alone.

    That is the resolved metric rule under `combine`; with `combine: all` and criteria outside
    the metric (budgets, GPU idle, cohort), only the metric's safety rules, since its other
    criteria count only when those fire at the same time.
    """
    rule = resolve_metric_rule(stop)
    if rule is None:
        return None
    others = (stop.max_duration, stop.max_gpu_hours, stop.gpu_idle, stop.cohort)
    if stop.combine == Combine.ALL and any(o is not None for o in others):
        rule = rule.model_copy(update={"patience": None, "target": None})
    return StopSpec(combine=stop.combine, metric=rule)


class MetricSpec(NamedTuple):
    """A metric stop spec as the sidecar is handed it: its canonical JSON, and that JSON's key."""

    text: str
    key: int


@per_spec_object  # the operator asks for every running job at every cycle
def metric_spec_for(stop: StopSpec) -> Optional[MetricSpec]:
    """The metric stop spec of `stop` as the sidecar is handed it."""
    spec = metric_stop_spec(stop)
    if spec is None:
        return None
    text = spec_text(spec)
    return MetricSpec(text, spec_key(text))


def spec_text(spec: StopSpec) -> str:
    """The canonical JSON of a metric stop spec: what the operator hands the sidecar."""
    return json.dumps(spec.model_dump(mode="json", by_alias=True, exclude_none=True), sort_keys=True,
                      separators=(",", ":"))


def spec_key(text: str) -> int:
    """A 48-bit digest of a spec's canonical JSON: exact as a Prometheus sample value."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)


class MetricHistory:
    """The kept evaluations of one metric, its track, and the first track that said stop."""

    def __init__(self, spec: StopSpec, max_evaluations: int = MAX_EVALUATIONS) -> None:
        assert spec.metric is not None and spec.preset is None, "a metric_stop_spec"
        self.spec = spec
        self.rule = spec.metric
        # The metric whose last report is the learning rate in force (schedule.learningRate).
        self.lr_name = spec.metric.schedule.learning_rate if spec.metric.schedule is not None else None
        self.max_evaluations = max_evaluations
        self.track: Optional[MetricTrack] = None
        self.stopped: Optional[MetricTrack] = None
        self.resumes = 0
        self.kept = True  # False once more than max_evaluations were reported: resumes cannot purge
        self._steps = array("q")  # strictly increasing: every resume purges from its step on
        self._values = array("d")
        self._lrs = array("d")  # NaN where not known
        self._snapshots: list[Optional[MetricTrack]] = [None]  # the track after i * SNAPSHOT_EVERY

    @classmethod
    def folded(cls, spec: StopSpec, reports: Iterable[tuple[int, float] | tuple[int, float, Optional[float]]],
               max_evaluations: int = MAX_EVALUATIONS) -> MetricHistory:
        """A history of (step, value) reports, or (step, value, learning rate in force)."""
        history = cls(spec, max_evaluations)
        for report in reports:
            history.add(*report)
        return history

    def add(self, step: int, value: float, lr: Optional[float] = None) -> None:
        """Fold one report (with the learning rate in force, where known); a step that goes back
        is a resume."""
        steps = self._steps
        if self.kept and steps and step <= steps[-1]:
            self._resume(step)
        self.track = track(self.track, self.rule, (Evaluation(step, value, lr),))
        if self.kept:
            if len(steps) >= self.max_evaluations:
                self._forget()
            else:
                steps.append(step)
                self._values.append(value)
                self._lrs.append(math.nan if lr is None else lr)
                if len(steps) % SNAPSHOT_EVERY == 0:
                    self._snapshots.append(self.track)
        if self.stopped is None and decide(self.spec, Observation(metric=self.track)).would_stop:
            self.stopped = self.track

    def _resume(self, step: int) -> None:
        self.resumes += 1
        keep = bisect.bisect_left(self._steps, step)
        del self._steps[keep:]
        del self._values[keep:]
        del self._lrs[keep:]
        base = keep // SNAPSHOT_EVERY
        del self._snapshots[base + 1:]
        start = base * SNAPSHOT_EVERY
        state = self._snapshots[base]
        if keep > start:
            state = track(state, self.rule, map(Evaluation, self._steps[start:keep], self._values[start:keep],
                                                self._lrs[start:keep]))
        self.track = state

    def _forget(self) -> None:
        self.kept = False
        self._steps, self._values, self._lrs, self._snapshots = array("q"), array("d"), array("d"), [None]

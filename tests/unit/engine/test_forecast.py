"""The forecast rule: the ensemble fit (plateau.engine.forecast), its place in the engine's fold and
decision, its status message and replay (schedules: test_schedule.py)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from plateau.engine import forecast as fc
from plateau.api import Reason, StopSpec
from plateau.api.metricrule import FORECAST_END
from plateau.engine.fold import Evaluation, MetricTrack, forecast_anew, track
from plateau.engine.rules import Observation, RuleOutcome, decide, min_gain

Z90 = fc.normal_quantile(0.9)


# --- the fit ----------------------------------------------------------------------------------


@given(a=st.floats(0.0, 1.0), b=st.floats(0.2, 2.0), c=st.floats(0.25, 2.5), n=st.integers(10, 60),
       ratio=st.floats(1.5, 10.0))
def test_a_noiseless_power_law_is_forecast_below_its_last_value_and_the_interval_covers_the_truth(
        a: float, b: float, c: float, n: int, ratio: float) -> None:
    t = np.arange(1, n + 1, dtype=float)
    horizon = n * ratio
    f = fc.fit(t, a + b * t**-c, horizon)
    assert f is not None
    truth, last = a + b * horizon**-c, a + b * n**-c
    assert f.gain > 0
    if last - truth > 0.01 * b:  # a gain the fit can resolve: the forecast is below the last value
        assert f.level < last
    assert abs(f.level - truth) <= 3 * f.level_sd + 1e-3 * b, (f, truth)
    assert f.level >= a - 3 * f.level_sd - 1e-3 * b  # never far below the asymptote


@given(a=st.floats(0.0, 1.0), b=st.floats(0.2, 2.0), tau=st.floats(2.0, 40.0), n=st.integers(10, 60),
       ratio=st.floats(1.5, 5.0))
def test_a_noiseless_exponential_is_covered_too(a: float, b: float, tau: float, n: int, ratio: float) -> None:
    t = np.arange(1, n + 1, dtype=float)
    horizon = n * ratio
    f = fc.fit(t, a + b * np.exp(-t / tau), horizon)
    assert f is not None
    truth = a + b * math.exp(-horizon / tau)
    assert abs(f.level - truth) <= 3 * f.level_sd + 1e-3 * b, (f, truth)


def test_mode_max_mirrors_mode_min() -> None:
    t = np.arange(1, 31, dtype=float)
    loss = 0.2 + t**-0.5
    down, up = fc.fit(t, loss, 300), fc.fit(t, 1 - loss, 300, lower_is_better=False)
    assert down is not None and up is not None
    assert up.level == pytest.approx(1 - down.level) and up.gain == pytest.approx(down.gain)
    assert up.level_sd == pytest.approx(down.level_sd)


def test_noise_widens_the_interval_and_a_spike_moves_the_fit_little() -> None:
    t = np.arange(1, 41, dtype=float)
    clean = 0.3 + 0.8 * t**-0.7
    noisy = clean + np.random.default_rng(7).normal(0, 0.01, len(t))
    f_clean, f_noisy = fc.fit(t, clean, 200), fc.fit(t, noisy, 200)
    assert f_clean is not None and f_noisy is not None
    assert f_noisy.level_sd > f_clean.level_sd
    assert abs(f_noisy.level - (0.3 + 0.8 * 200**-0.7)) <= 3 * f_noisy.level_sd
    spiked = noisy.copy()
    spiked[30] += 1.0  # one evaluation 100x the noise
    f_spiked = fc.fit(t, spiked, 200)
    assert f_spiked is not None and abs(f_spiked.level - f_noisy.level) < 0.01


def test_nothing_to_say_is_none_never_an_exception() -> None:
    t = np.arange(1, 21, dtype=float)
    y = 1 / t
    assert fc.fit(t[:4], y[:4], 100) is None  # too few points
    assert fc.fit(t, np.full(20, math.nan), 100) is None
    assert fc.fit(t, y, 20) is None and fc.fit(t, y, 5) is None  # the horizon is reached
    assert fc.fit(t, y, math.inf) is None and fc.fit(t, y, math.nan) is None
    assert fc.fit(np.full(20, 3.0), y, 100) is None  # one step only
    assert fc.fit(t, y[:10], 100) is None  # mismatched lengths
    assert fc.fit(t, y, 100, origin=18) is None  # two points since the origin


def test_non_finite_points_are_left_out() -> None:
    t = np.arange(1, 31, dtype=float)
    y = 0.2 + t**-0.6
    holed = y.copy()
    holed[[3, 10, 20]] = [math.nan, math.inf, -math.inf]
    f, g = fc.fit(t, y, 100), fc.fit(t, holed, 100)
    assert f is not None and g is not None and g.level == pytest.approx(f.level, abs=1e-3)


def test_a_constant_series_has_nothing_more_to_come() -> None:
    assert fc.fit(np.arange(1, 21), np.full(20, 0.7), 100) == fc.Forecast(0.7, 0.0, 0.0, 0.0)


@given(st.integers(1, 3000))
def test_the_sketch_is_bounded_keeps_the_recent_points_and_spans_the_curve(n: int) -> None:
    points: tuple[float, ...] = ()
    for i in range(1, n + 1):
        points = fc.sketch(points, i, float(10 * i), 1.0 / i)
    index = points[0::3]
    assert len(index) <= fc.MAX_POINTS
    assert list(index) == sorted(index) and index[-1] == n
    assert index[-min(n, fc.DENSE_TAIL):] == tuple(float(i) for i in range(max(1, n - fc.DENSE_TAIL + 1), n + 1))
    assert index[0] <= max(1, n / (fc.MAX_POINTS - fc.DENSE_TAIL) * 2)  # the early curve is still there
    assert points[1::3] == tuple(10 * i for i in index)


# --- in the engine ----------------------------------------------------------------------------


def spec(horizon: int = 100, lookahead: float | None = None, unit: str = "evaluations", **metric: object) -> StopSpec:
    end = {"horizon": horizon} if lookahead is None else {"lookahead": lookahead}
    forecast = {**end, "unit": unit, "minGain": {"progress": 0.03}}
    return StopSpec.model_validate({"metric": {"name": "val_loss", "forecast": forecast, **metric}})


def curve(n: int, a: float = 0.2, b: float = 1.0, c: float = 1.5) -> list[Evaluation]:
    return [Evaluation(10 * i, a + b * i**-c) for i in range(1, n + 1)]


def test_a_converged_run_stops_and_says_where_it_is_heading() -> None:
    stop = spec()
    m = track(None, stop.metric, curve(40))  # type: ignore[arg-type]
    d = decide(stop, Observation(metric=m))
    assert d.would_stop and d.reason == Reason.CONVERGED
    match = re.fullmatch(r"val_loss expected to reach ([\d.]+) ± ([\d.e-]+) by evaluation 100: a gain of ([\d.e-]+)"
                         r" \(at most ([\d.e-]+) at 90% confidence\) < minGain ([\d.e-]+); stopping saves 60% of the run",
                         d.message)
    assert match, d.message
    level, sd = float(match[1]), float(match[2])
    assert abs(level - (0.2 + 100**-1.5)) <= 3 * sd + 1e-4


def test_a_run_still_improving_goes_on_and_says_why() -> None:
    stop = spec(horizon=1000)
    m = track(None, stop.metric, curve(20, c=0.3))  # type: ignore[arg-type]
    d = decide(stop, Observation(metric=m))
    assert not d.would_stop
    outcome = next(o for o in d.outcomes if o.reason == Reason.CONVERGED)
    assert outcome.fired is False and ">= minGain" in outcome.message


def test_missing_data_is_never_a_reason_to_stop() -> None:
    stop = spec()
    few = track(None, stop.metric, curve(5))  # type: ignore[arg-type]
    outcome = next(o for o in decide(stop, Observation(metric=few)).outcomes if o.reason == Reason.CONVERGED)
    assert outcome.fired is None and "too few evaluations to forecast (5 of 8)" in outcome.message
    nans = track(None, stop.metric, [Evaluation(i, math.nan) for i in range(1, 30)])  # type: ignore[arg-type]
    assert nans.forecast_gain is None
    quiet = StopSpec.model_validate({"metric": {**stop.metric.model_dump(by_alias=True, exclude_none=True),  # type: ignore[union-attr]
                                                "checkFinite": False}})
    assert not decide(quiet, Observation(metric=nans)).would_stop
    done = track(None, stop.metric, curve(100))  # type: ignore[arg-type]
    outcome = next(o for o in decide(stop, Observation(metric=done)).outcomes if o.reason == Reason.CONVERGED)
    assert outcome.fired is None and "the horizon evaluation 100 is reached" in outcome.message


def test_a_lookahead_stops_a_converged_run_and_says_where_it_looked() -> None:
    stop = spec(lookahead=1.5)
    d = decide(stop, Observation(metric=track(None, stop.metric, curve(100))))  # type: ignore[arg-type]
    assert d.would_stop and d.reason == Reason.CONVERGED
    # No planned length: nothing on what stopping saves.
    match = re.fullmatch(r"val_loss expected to reach ([\d.]+) ± ([\d.e-]+) by evaluation 150 \(1\.5× the run so far\):"
                         r" a gain of [\d.e-]+ \(at most [\d.e-]+ at 90% confidence\) < minGain [\d.e-]+", d.message)
    assert match, d.message
    level, sd = float(match[1]), float(match[2])
    assert abs(level - (0.2 + 150**-1.5)) <= 3 * sd + 1e-4
    steps = spec(lookahead=2, unit="steps")
    outcome = next(o for o in decide(steps, Observation(metric=track(None, steps.metric, curve(100)))).outcomes  # type: ignore[arg-type]
                   if o.reason == Reason.CONVERGED)
    assert outcome.fired and "by step 2,000 (2× the run so far): a gain of" in outcome.message


def test_a_lookahead_on_a_run_still_improving_goes_on_and_never_reaches_an_end() -> None:
    stop = spec(lookahead=1.5)
    improving = track(None, stop.metric, curve(40, c=0.3))  # type: ignore[arg-type]
    outcome = next(o for o in decide(stop, Observation(metric=improving)).outcomes if o.reason == Reason.CONVERGED)
    assert outcome.fired is False and "by evaluation 60 (1.5× the run so far)" in outcome.message
    assert ">= minGain" in outcome.message
    few = track(None, stop.metric, curve(5))  # type: ignore[arg-type]
    outcome = next(o for o in decide(stop, Observation(metric=few)).outcomes if o.reason == Reason.CONVERGED)
    assert outcome.fired is None and outcome.message == "val_loss: too few evaluations to forecast (5 of 8)"


@settings(max_examples=40, deadline=None)
@given(k=st.floats(1.05, 100.0), n=st.integers(8, 80), by_steps=st.booleans(), drop=st.none() | st.integers(2, 60))
def test_a_lookahead_fits_at_that_many_times_the_whole_run(k: float, n: int, by_steps: bool, drop: int | None) -> None:
    """Each fit with lookahead k is the fit at horizon k × the run so far (the last step, or the
    evaluations folded), counted from the run's start even after a learning-rate drop."""
    metric: dict = {"name": "val_loss", "forecast": {"lookahead": k, "unit": "steps" if by_steps else "evaluations"}}
    if drop is not None:
        metric["schedule"] = {"milestones": [10 * drop]}
    rule = StopSpec.model_validate({"metric": metric}).metric
    m = None
    for part in (curve(n)[:n // 2], curve(n)[n // 2:]):  # the horizon grows with the run
        m = track(m, rule, part)  # type: ignore[arg-type]
        done = m.last_step if by_steps else m.evaluations
        f = fc.fit(m.sketch[1::3], m.sketch[2::3], k * done, m.origin)  # type: ignore[operator]
        assert (m.forecast_level, m.forecast_level_sd, m.forecast_gain, m.forecast_gain_sd) == (
            (None,) * 4 if f is None else tuple(f))


def test_the_fit_is_redone_only_when_new_finite_evaluations_arrive() -> None:
    rule = spec().metric
    m = track(None, rule, curve(30))  # type: ignore[arg-type]
    assert track(m, rule, []) == m  # type: ignore[arg-type]
    after_nan = track(m, rule, [Evaluation(310, math.nan)])  # type: ignore[arg-type]
    assert after_nan.forecast_level == m.forecast_level and after_nan.sketch == m.sketch
    moved = track(m, rule, [Evaluation(310, 0.1)])  # type: ignore[arg-type]
    assert moved.forecast_level != m.forecast_level and len(moved.sketch) == len(m.sketch) + 3


def test_forecast_specs_are_validated() -> None:
    for bad, message in (({"horizon": 0, "minGain": {"absolute": 1}}, "greater than or equal to 1"),
                         ({"horizon": 10, "minGain": {}}, "minGain needs a part above 0"),
                         ({"horizon": 10, "minGain": {"absolute": 1}, "confidence": 1.0}, "less than or equal to 0.999"),
                         ({"horizon": 10, "minGain": {"absolute": 1}, "unit": "epochs"}, "steps"),
                         ({"minGain": {"absolute": 1}}, re.escape(FORECAST_END)),
                         ({"horizon": 10, "lookahead": 1.5}, re.escape(FORECAST_END)),
                         ({"lookahead": 1.0}, r"forecast\.lookahead\s+Input should be greater than or equal to 1\.05"),
                         ({"lookahead": 100.5}, r"forecast\.lookahead\s+Input should be less than or equal to 100"),
                         ({"lookahead": "1.5"}, r"forecast\.lookahead\s+Input should be a valid number")):
        with pytest.raises(ValidationError, match=message):
            StopSpec.model_validate({"metric": {"name": "l", "forecast": bad}})
    for bad, message in (({}, "milestones, period or learningRate"), ({"milestones": [30, 30]}, "strictly increasing"),
                         ({"milestones": [0]}, "greater than or equal to 1")):
        with pytest.raises(ValidationError, match=message):
            StopSpec.model_validate({"metric": {"name": "l", "schedule": bad}})


@pytest.mark.parametrize("end", ["horizon: 100", "lookahead: 1.5"])
def test_replay_cli_stops_on_the_forecast(tmp_path: Path, end: str) -> None:
    rows = ["run,step,val_loss"] + [f"a,{i},{0.2 + i**-1.5:.6f}" for i in range(1, 101)] + \
           [f"b,{i},{2 - 0.01 * i:.6f}" for i in range(1, 101)]
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "s.yaml").write_text(f"stop:\n  metric:\n    name: val_loss\n    forecast: {{{end}, unit: evaluations,"
                                     " minGain: {progress: 0.03}}\n")
    out = subprocess.run([sys.executable, "-m", "plateau.cli", "replay", str(tmp_path / "s.yaml"), str(tmp_path / "c.csv"),
                          "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    a, b = (json.loads(line) for line in out.stdout.splitlines())
    assert a["stopped"] and a["reason"] == "Converged" and a["stop_step"] < 50
    # A straight line down keeps its gain (0.01 an evaluation) until minGain is all that is left.
    assert not b["stopped"] or b["stop_step"] >= 95


def test_the_forecast_preset_takes_the_users_horizon_and_gives_the_rest() -> None:
    from plateau.engine.presets import PRESETS, resolve_metric_rule

    stop = StopSpec.model_validate({"preset": "forecast", "metric": {"name": "l", "forecast": {"horizon": 500}}})
    rule = resolve_metric_rule(stop)
    assert rule is not None and rule.forecast is not None and rule.forecast.horizon == 500
    assert rule.patience == PRESETS["forecast"]["patience"]
    assert rule.forecast.min_gain.progress == PRESETS["forecast"]["forecast"]["min_gain"]["progress"]
    own = StopSpec.model_validate({"preset": "forecast", "metric": {"name": "l", "forecast": {
        "horizon": 500, "minGain": {"absolute": 0.1}, "confidence": 0.95}}})
    mine = resolve_metric_rule(own)
    assert mine is not None and mine.forecast is not None
    assert (mine.forecast.min_gain.absolute, mine.forecast.min_gain.progress, mine.forecast.confidence) == (0.1, 0.0, 0.95)
    with pytest.raises(ValidationError, match="preset forecast needs metric.forecast.horizon"):
        StopSpec.model_validate({"preset": "forecast", "metric": {"name": "l"}})
    # Without a preset a horizon alone is a whole rule: minGain defaults to 2% of the progress.
    alone = StopSpec.model_validate({"metric": {"name": "l", "forecast": {"horizon": 500}}})
    assert alone.metric is not None and alone.metric.forecast is not None
    assert alone.metric.forecast.min_gain.progress == 0.02


STOP_SCHEMA_CASES = [
    ({"metric": {"name": "l", "forecast": {"horizon": 10, "minGain": {"progress": 0.02}}}}, []),
    ({"metric": {"name": "l", "forecast": {"horizon": 10, "minGain": {}}}},
     ["minGain needs a part above 0: absolute, relative or progress"]),
    ({"metric": {"name": "l", "schedule": {"milestones": [10, 20]}}}, []),
    ({"metric": {"name": "l", "schedule": {"milestones": [20, 10]}}}, ["schedule.milestones must be strictly increasing"]),
    ({"metric": {"name": "l", "schedule": {"hold": 5}}}, ["schedule needs milestones, period or learningRate"]),
    ({"preset": "forecast", "metric": {"name": "l"}}, ["preset forecast needs metric.forecast.horizon: the run's planned length"]),
    ({"preset": "forecast", "metric": {"name": "l", "forecast": {"horizon": 10}}}, []),
    ({"preset": "forecast", "metric": {"name": "l", "forecast": {"lookahead": 1.5}}},
     ["preset forecast needs metric.forecast.horizon: the run's planned length"]),
    ({"metric": {"name": "l", "forecast": {"lookahead": 1.5}}}, []),
    ({"metric": {"name": "l", "forecast": {"horizon": 10, "lookahead": 1.5}}}, [FORECAST_END]),
    ({"metric": {"name": "l", "forecast": {"unit": "evaluations"}}}, [FORECAST_END]),
    ({"metric": {"name": "l", "forecast": {"horizon": 10, "confirmsPlateau": True}}},
     ["forecast.confirmsPlateau needs patience: it confirms a plateau"]),
]


@pytest.mark.parametrize(("stop", "errors"), STOP_SCHEMA_CASES)
def test_the_api_server_checks_what_the_models_check(stop: dict, errors: list[str]) -> None:
    """The CRD's CEL rules (run by the emulator's CEL evaluator) refuse what the models refuse."""
    from plateau.cli.crd import build_crd
    from tests.support.apiserver import cel

    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["stop"]
    assert [e.detail for e in cel.validate(stop, None, False, schema, "spec.stop")] == errors
    if errors:
        with pytest.raises(ValidationError, match=re.escape(errors[0])):
            StopSpec.model_validate(stop)
    else:
        StopSpec.model_validate(stop)


def test_a_forecast_that_confirms_plateaus_stops_nothing_alone_and_holds_an_unconfirmed_plateau() -> None:
    def confirming(**forecast: object) -> StopSpec:
        return StopSpec.model_validate({"metric": {"name": "val_loss", "patience": 5, "minDelta": {"absolute": 0.1},
                                                   "forecast": {"horizon": 100, "unit": "evaluations",
                                                                "minGain": {"progress": 0.03}, "confirmsPlateau": True,
                                                                **forecast}}})

    stop = confirming()
    converged = track(None, stop.metric, curve(40))  # type: ignore[arg-type]
    decision = decide(stop, Observation(metric=converged))
    assert decision.would_stop and decision.reason == Reason.PLATEAU  # tiny steps, and nothing ahead
    assert Reason.CONVERGED not in {o.reason for o in decision.outcomes}  # the forecast is no rule of its own
    assert "evaluations; best" in decision.message and "expected to reach" in decision.message
    # A straight line down by 0.01 an evaluation: a plateau under minDelta 0.1, but 0.6 still to come.
    line = track(None, stop.metric, [Evaluation(i, 2.0 - 0.01 * i) for i in range(1, 41)])  # type: ignore[arg-type]
    plateau = next(o for o in decide(stop, Observation(metric=line)).outcomes if o.reason == Reason.PLATEAU)
    assert line.since_improvement >= 5 and plateau.fired is False and ">= minGain" in plateau.message
    unknown = confirming(minEvaluations=50)  # the forecast has no answer yet: the plateau waits
    assert decide(unknown, Observation(metric=track(None, unknown.metric, curve(40)))).would_stop is False  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="forecast.confirmsPlateau needs patience"):
        StopSpec.model_validate({"metric": {"name": "l", "forecast": {"horizon": 10, "confirmsPlateau": True}}})


NUMPY_ON_DEMAND = """
import sys
from plateau.api import StopSpec
from plateau.engine.history import MetricHistory, metric_stop_spec
import plateau_sidecar.main
spec = {"metric": {"name": "loss", "patience": 3}}
if sys.argv[1] == "forecast":
    spec["metric"]["forecast"] = {"horizon": 100, "unit": "evaluations"}
MetricHistory.folded(metric_stop_spec(StopSpec.model_validate(spec)), [(i, 1.0 / i) for i in range(1, 30)])
print("numpy" in sys.modules)
"""


@pytest.mark.parametrize(("spec", "loaded"), [("plateau", "False"), ("forecast", "True")])
def test_numpy_is_loaded_only_by_a_spec_that_forecasts(spec: str, loaded: str) -> None:
    """Every trainer pod's sidecar imports the engine: numpy's 15 MB wait for the first fit."""
    out = subprocess.run([sys.executable, "-c", NUMPY_ON_DEMAND, spec], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == loaded


def converged_outcome(stop: StopSpec, m: MetricTrack) -> RuleOutcome:
    return next(o for o in decide(stop, Observation(metric=m)).outcomes if o.reason == Reason.CONVERGED)


def test_the_forecast_decides_from_exactly_min_evaluations() -> None:
    stop = spec()
    assert stop.metric is not None and stop.metric.forecast is not None
    least = stop.metric.forecast.min_evaluations
    assert converged_outcome(stop, track(None, stop.metric, curve(least - 1))).fired is None
    assert converged_outcome(stop, track(None, stop.metric, curve(least))).fired is not None


def test_min_gain_parts_each_count_and_a_bound_at_min_gain_goes_on() -> None:
    def rule(min_gain: dict) -> StopSpec:
        return StopSpec.model_validate({"metric": {"name": "loss", "forecast": {
            "horizon": 100, "minGain": min_gain, "confidence": 0.5}}})

    fitted = MetricTrack(name="loss", evaluations=20, last=2.0, last_step=20, best=2.0, reference=2.0, first=10.0,
                         regime_evaluations=20, forecast_level=1.99, forecast_level_sd=0.0, forecast_gain=0.01,
                         forecast_gain_sd=0.0)
    relative = rule({"relative": 0.1})
    assert min_gain(relative.metric, fitted) == pytest.approx(0.2)  # type: ignore[arg-type]  # 10% of |2.0|
    assert min_gain(rule({"progress": 0.5}).metric, fitted) == pytest.approx(4.0)  # type: ignore[arg-type]
    assert converged_outcome(relative, fitted).fired is True
    at = converged_outcome(rule({"absolute": 0.01}), fitted)  # the gain's bound is exactly minGain
    assert at.fired is False and ">= minGain 0.01" in at.message


def test_a_track_rebuilt_from_status_forecasts_again_from_new_values_only() -> None:
    stop = spec(horizon=400, unit="steps")
    assert stop.metric is not None
    folded = track(None, stop.metric, curve(30))
    assert folded.sketch and folded.forecast_gain is not None
    from_status = folded._replace(sketch=(), origin=0.0)  # status keeps the fit, never the sketch
    again = forecast_anew(from_status, stop.metric)
    assert (again.regime_evaluations, again.origin, again.forecast_gain, again.forecast_level) == (0, 300.0, None, None)
    assert again._replace(regime_evaluations=30, origin=0.0, forecast_level=folded.forecast_level,
                          forecast_level_sd=folded.forecast_level_sd, forecast_gain=folded.forecast_gain,
                          forecast_gain_sd=folded.forecast_gain_sd) == from_status  # the rest goes on
    assert forecast_anew(folded, stop.metric) is folded  # the sketch is here: nothing lost
    plain = StopSpec.model_validate({"metric": {"name": "val_loss"}}).metric
    assert forecast_anew(from_status, plain) is from_status  # type: ignore[arg-type]  # no forecast
    unfitted = track(None, stop.metric, [])._replace(regime_evaluations=0)
    assert forecast_anew(unfitted, stop.metric) is unfitted  # nothing fitted yet

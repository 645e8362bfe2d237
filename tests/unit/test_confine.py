"""A user's PromQL confined to one namespace: every selector of every query shape gets the
matcher, nothing else changes, and what cannot be confined is rejected with the reason."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import promql_parser as pp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plateau.cli import main as cli
from plateau.api.confine import check_template, confine

NS = "team-a"


def selectors(text: str) -> list[Any]:
    found: list[Any] = []
    pp.walk(pp.parse(text), pre_visit=lambda n: found.append(n) if isinstance(n, pp.VectorSelector) else None)
    return found


def confined(selector: Any, label: str = "namespace", value: str = NS) -> bool:
    return any(m.op == pp.MatchOp.Equal and (m.name, m.value) == (label, value) for m in selector.matchers.matchers)


# (query, what confine makes of it): the shapes users write.
SHAPES = [
    ("up", 'up{namespace="team-a"}'),
    ('my_loss{job="trainer"}', 'my_loss{job="trainer", namespace="team-a"}'),
    # functions, over instant and range vectors
    ("rate(x[5m])", 'rate(x{namespace="team-a"}[5m])'),
    ('label_replace(up, "namespace", "x", "", "")', 'label_replace(up{namespace="team-a"}, "namespace", "x", "", "")'),
    ('absent(nothing{job="j"})', 'absent(nothing{job="j", namespace="team-a"})'),
    ("vector(1)", "vector(1.0)"),
    ("time() - x", 'time() - x{namespace="team-a"}'),
    ('histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))',
     'histogram_quantile(0.9, sum by (le) (rate(h_bucket{namespace="team-a"}[5m])))'),
    # aggregations, their parameters included
    ("sum without (pod) (x)", 'sum without (pod) (x{namespace="team-a"})'),
    ("sum(x) by (job)", 'sum by (job) (x{namespace="team-a"})'),
    ("topk(scalar(k), x)", 'topk (scalar(k{namespace="team-a"}), x{namespace="team-a"})'),
    ('count_values("v", x)', 'count_values ("v", x{namespace="team-a"})'),
    ("quantile(0.5, x)", 'quantile (0.5, x{namespace="team-a"})'),
    # binary operators, vector matching
    ("a / on (pod) group_left (node) b", 'a{namespace="team-a"} / on (pod) group_left (node) b{namespace="team-a"}'),
    ("a > bool ignoring (x) group_right b", 'a{namespace="team-a"} > bool ignoring (x) group_right () b{namespace="team-a"}'),
    ("a and b or c unless d",
     'a{namespace="team-a"} and b{namespace="team-a"} or c{namespace="team-a"} unless d{namespace="team-a"}'),
    ("-a ^ 2", '-a{namespace="team-a"} ^ 2.0'),
    ("(a + b) * c", '(a{namespace="team-a"} + b{namespace="team-a"}) * c{namespace="team-a"}'),
    ("1 - -1", "1.0 - -1.0"),
    # subqueries, offsets and @
    ("max_over_time(rate(x[1m])[1h:5m] offset 10m)", 'max_over_time(rate(x{namespace="team-a"}[1m])[1h:5m] offset 10m)'),
    ("min_over_time((a - b)[30m:])", 'min_over_time((a{namespace="team-a"} - b{namespace="team-a"})[30m:])'),
    ("x offset 1h30m", 'x{namespace="team-a"} offset 1h30m'),
    ("x offset -5m", 'x{namespace="team-a"} offset -5m'),
    ("x[5m] offset 1d @ 1700000000", 'x{namespace="team-a"}[5m] @ 1700000000.000 offset 24h'),
    ("x @ start()", 'x{namespace="team-a"} @ start()'),
    ("rate(x[5m] @ end())", 'rate(x{namespace="team-a"}[5m] @ end())'),
    # regular expressions, __name__ selectors
    ('x{job=~"train.*", pod!~"a|b"}', 'x{job=~"train.*", pod!~"a|b", namespace="team-a"}'),
    ('{__name__=~"loss_.*"}', '{__name__=~"loss_.*", namespace="team-a"}'),
    ('{__name__="x", job="j"}', '{__name__="x", job="j", namespace="team-a"}'),
    # matchers on the namespace label narrow, never widen: they are ANDed with the added one
    ('x{namespace="other"}', 'x{namespace="other", namespace="team-a"}'),
    ('x{namespace=~".*"}', 'x{namespace=~".*", namespace="team-a"}'),
    ('x{namespace!="team-a"}', 'x{namespace!="team-a", namespace="team-a"}'),
    ('x{namespace="team-a"}', 'x{namespace="team-a"}'),
    # strings that look like the end of a selector stay strings
    ('x{job="\\"}, y{namespace=~\\".*"}', 'x{job="\\"}, y{namespace=~\\".*", namespace="team-a"}'),
    ("x # a comment {namespace=~\".*\"}\n", 'x{namespace="team-a"}'),
]


@pytest.mark.parametrize(("query", "expected"), SHAPES)
def test_every_selector_gets_the_namespace_and_nothing_else_changes(query: str, expected: str) -> None:
    text = confine(query, "namespace", NS)
    assert text == expected
    assert all(confined(s) for s in selectors(text))
    assert len(selectors(text)) == len(selectors(query))


@pytest.mark.parametrize("label", ["namespace", "exported_namespace", "kubernetes_namespace"])
def test_the_label_is_the_callers(label: str) -> None:
    text = confine('sum(rate(x{namespace="b"}[5m]))', label, NS)
    assert all(confined(s, label) for s in selectors(text))


@given(st.text(max_size=40))
@settings(max_examples=200, deadline=None)
def test_any_namespace_value_reads_back_exactly(value: str) -> None:
    text = confine('x{job="j"} + on () y', "namespace", value)
    assert [confined(s, "namespace", value) for s in selectors(text)] == [True, True]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("x{", "not valid PromQL"),
        ('{job=~".*"}', "at least one non-empty matcher"),
        ("sum(x", "not valid PromQL"),
        ("rate(x)", "not valid PromQL"),  # a type error
        ("info(x)", "info() reads series no selector names"),
        ('x{a="1" or b="2"}', "`or` between label matchers"),
        ('{"my.label"="x"}', "label name 'my.label' is not a PromQL identifier"),
        ("a + fill(0) b", "fill()"),
        ("x @ -5", "cannot be confined"),
    ],
)
def test_what_cannot_be_confined_is_rejected_with_the_reason(query: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        confine(query, "namespace", NS)


# At the API's limit of 4,096 characters, the parser takes seconds on these (its time grows with
# the square of the tree's depth, and the binding's walk() the cube); each is refused before it
# is parsed, or right after.
TOO_COMPLEX = {
    "nested brackets": "(" * 2047 + "x" + ")" * 2047,
    "nested calls": "abs(" * 800 + "x" + ")" * 800,
    "a chain of minus signs": "-" * 4095 + "x",
    "a chain of additions": "+".join(["x"] * 2048),
    "a chain of comparisons": ">".join(["x"] * 2048),
    "a chain of and": " and ".join(["x"] * 680),
}


@pytest.mark.parametrize("query", TOO_COMPLEX.values(), ids=TOO_COMPLEX.keys())
def test_queries_too_deep_to_parse_quickly_are_refused_quickly(query: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError, match="too complex"):
        check_template(query)
    assert time.perf_counter() - started < 1.0  # without the limits: seconds, and minutes after parsing


def test_long_real_queries_are_not_too_complex() -> None:
    long = " + ".join(f'sum(rate(loss_{i}{{job="trainer", pod=~"guard-.*"}}[5m] offset 1m))' for i in range(60))
    assert len(long) > 4000 and check_template(long) == long
    text = confine(long, "namespace", NS)
    assert len(selectors(text)) == 60 and all(confined(s) for s in selectors(text))


@pytest.mark.parametrize("template", [
    'max(my_loss{namespace="$namespace", job_name="$name"})',
    'label_replace(x, "tj", "$name", "", "")',
    "rate(x[5m])",
])
def test_templates_with_placeholders_in_strings_are_accepted(template: str) -> None:
    assert check_template(template) == template


@pytest.mark.parametrize("template", ["loss_$name", 'x{$name="a"}', "sum by ($namespace) (x)", 'x{a="$name"} # $name'])
def test_placeholders_outside_strings_are_rejected(template: str) -> None:
    # A name with a dot or dash there would change the query's shape: loss_a-b is loss_a - b.
    with pytest.raises(ValueError, match="may appear only inside a quoted string"):
        check_template(template)


def test_plateau_validate_names_the_query(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "tj.yaml"
    manifest.write_text(
        "apiVersion: plateau.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: guard}\n"
        "spec:\n  workloadRef: {apiVersion: batch/v1, kind: Job, name: nightly}\n"
        "  metrics:\n    queries:\n      val_loss: 'max(my_loss{job=\"x\"'\n"
        "  stop: {metric: {name: val_loss}, maxDuration: 1h}\n")
    assert cli.main(["validate", str(manifest)]) == 2
    error = capsys.readouterr().err
    assert f"{manifest}: spec.metrics.queries.val_loss: Value error, not valid PromQL" in error


def test_the_sidecar_never_loads_the_parser() -> None:
    """It validates stop specs with the same models; the parser would cost each trainer pod 2.5 MB."""
    code = "import sys, plateau_sidecar.main, plateau.api; print('promql_parser' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"

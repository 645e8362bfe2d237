"""Parsing Prometheus' answers: whatever the body, a PrometheusError with a reason, and bounded words."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from plateau.prometheus.promql import ERROR_TEXT_LIMIT, PrometheusError, SidecarDecoder, parse_vector

DECODERS: list[Callable[[bytes], Any]] = [parse_vector, SidecarDecoder()]
DEEP = b"[" * 100_000 + b"]" * 100_000  # past the decoder's depth, whatever the recursion limit (the test
# support's CEL library raises it); 2 KB reach it in the operator


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize("body", [
    b'{"status": "success", "warnings": ' + DEEP + b', "data": {"resultType": "vector", "result": []}}',
    b'{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "1"], "x": '
    + DEEP + b"}]}}",
])
def test_an_answer_nested_past_the_decoders_depth_is_malformed(decode: Callable[[bytes], Any], body: bytes) -> None:
    with pytest.raises(PrometheusError) as caught:
        decode(body)
    assert caught.value.reason == "MalformedResponse"


@pytest.mark.parametrize("decode", DECODERS)
def test_a_text_body_that_is_not_utf8_is_malformed(decode: Callable[[Any], Any]) -> None:
    with pytest.raises(PrometheusError) as caught:
        decode('{"status": "\ud800"}')
    assert caught.value.reason == "MalformedResponse"


def test_a_failed_querys_error_type_and_error_are_both_cut() -> None:
    """Both become every job's MetricsAvailable message."""
    body = json.dumps({"status": "error", "errorType": "T" * 2**20, "error": "E" * 2**20}).encode()
    with pytest.raises(PrometheusError) as caught:
        parse_vector(body)
    assert caught.value.reason == "QueryFailed"
    assert str(caught.value) == f"{'T' * ERROR_TEXT_LIMIT}: {'E' * ERROR_TEXT_LIMIT}"

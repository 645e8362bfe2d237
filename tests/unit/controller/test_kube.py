"""Kube's reads, through the real client over a fake connection: an answer that is not the JSON
object asked for is an ApiError (code 0, counted once, not retried), never another exception."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest
import urllib3
from kubernetes import client

from plateau.controller.kube import ApiError, Kube

Read = Callable[[Kube], Awaitable[Any]]
READS: dict[str, Read] = {
    "list pods": lambda kube: kube.pods("ns", "app=w"),
    "get jobs": lambda kube: kube.get_object("batch", "v1", "jobs", "ns", "w"),
    "list workloads": lambda kube: kube.list_objects("kueue.x-k8s.io", "v1beta1", "workloads", "ns", "app=w"),
    "get deployments/scale": lambda kube: kube.get_scale("apps", "v1", "deployments", "ns", "w"),
}


class Connection:
    """Answers every request 200 with one body."""

    def __init__(self, body: bytes, content_type: str) -> None:
        self.body, self.content_type, self.requests = body, content_type, 0

    def request(self, *_: Any, **__: Any) -> urllib3.HTTPResponse:
        self.requests += 1
        return urllib3.HTTPResponse(body=self.body, status=200, headers={"content-type": self.content_type})


def read(verb: str, body: bytes,
         content_type: str = "application/json") -> tuple[Any, Connection, list[tuple[str, str]]]:
    """What the read answers (or raises), the connection, and the failures counted."""
    errors: list[tuple[str, str]] = []
    kube = Kube(client.ApiClient(client.Configuration(host="http://apiserver")),
                on_error=lambda *failure: errors.append(failure))
    connection = Connection(body, content_type)
    kube.api_client.rest_client.pool_manager = connection
    try:
        answer = asyncio.run(READS[verb](kube))
    except Exception as exc:  # noqa: BLE001 (the test's subject)
        answer = exc
    return answer, connection, errors


@pytest.mark.parametrize("verb", READS)
@pytest.mark.parametrize("body, content_type", [
    (b"<html>502 Bad Gateway</html>", "text/html"),  # a proxy's page: the client hands it over as text
    (b"<html>502 Bad Gateway</html>", "application/json"),
    (b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "application/json"),  # past the parser's depth
    (b'{"items": ["\xff"]}', "application/json"),  # not UTF-8
    (b'[{"items": []}]', "application/json"),  # JSON, not an object
])
def test_an_answer_that_is_not_a_json_object_is_an_api_error_counted_once(verb: str, body: bytes,
                                                                          content_type: str) -> None:
    answer, connection, errors = read(verb, body, content_type)
    assert isinstance(answer, ApiError) and answer.code == 0, answer
    assert answer.verb == verb
    assert errors == [(verb, "0")]
    assert connection.requests == 1  # the same answer again would not help


@pytest.mark.parametrize("verb", [verb for verb in READS if verb != "list pods"])  # pods: read raw, as UTF-8
def test_a_charset_python_does_not_know_is_an_api_error(verb: str) -> None:
    answer, _, errors = read(verb, b'{"items": []}', "application/json; charset=no-such-charset")
    assert isinstance(answer, ApiError) and answer.code == 0, answer
    assert errors == [(verb, "0")]


@pytest.mark.parametrize("verb", ["list pods", "list workloads"])
def test_a_list_answer_is_its_items_and_items_that_are_not_objects_are_an_api_error(verb: str) -> None:
    assert read(verb, b'{"items": [{"metadata": {"name": "w-0"}}]}')[0] == [{"metadata": {"name": "w-0"}}]
    assert read(verb, b'{"items": null}')[0] == []
    for items in (b'"pods"', b'["p"]'):
        answer, _, errors = read(verb, b'{"items": ' + items + b"}")
        assert isinstance(answer, ApiError) and answer.code == 0, answer
        assert errors == [(verb, "0")]

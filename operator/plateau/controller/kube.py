"""Kubernetes API calls the operator makes, each with retries. Nothing else talks to the API.

The official `kubernetes` client is synchronous; calls run in worker threads so the
evaluation loop stays responsive. Every request is bounded by a connect and a read timeout, and
every write names the field manager `plateau`. 409 (conflict), 429, 5xx, lost connections and
timeouts are retried with exponential backoff; other errors surface as `ApiError` with the
status code. An answer that is not the JSON object asked for is an `ApiError` with code 0, not
retried, as is the client's own for an unsupported content type. Failures are counted in the
operator's metrics by verb and code (`0`: no connection or an unreadable answer, `timeout`: no
answer in time); 404, an answer callers expect (`NotFound`), is not.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Optional, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError, NewConnectionError
from urllib3.exceptions import TimeoutError as RequestTimeout

from plateau import api

log = logging.getLogger("plateau.controller.kube")
T = TypeVar("T")
RETRIABLE = {409, 429, 500, 502, 503, 504}
MERGE = "application/merge-patch+json"
STATUS_MESSAGE_LIMIT = 1024
LIST_LIMIT = 500  # objects per list call: a selector that matches more is not ours to act on
FIELD_MANAGER = "plateau"  # how managedFields and audit logs name the operator's writes
Timeout = tuple[float, float]  # (connect, read) seconds of one request
DEFAULT_TIMEOUT: Timeout = (5.0, 10.0)


class ApiError(Exception):
    def __init__(self, verb: str, code: int, message: str) -> None:
        super().__init__(f"{verb}: HTTP {code}: {message}")
        self.verb = verb
        self.code = code
        self.message = message


class NotFound(ApiError):
    pass


class NotAnObject(Exception):
    """A body that is JSON, but not the object a read expects."""


# How a 200's body fails to be read (by the client, or by `_json_object`): a proxy's HTML page,
# bytes that are not UTF-8 or a charset Python does not know, nesting past the parser's depth.
BAD_BODY = (json.JSONDecodeError, UnicodeDecodeError, LookupError, RecursionError, NotAnObject)


OnError = Callable[[str, str], None]  # (verb, code) of a failed attempt, for the caller's counters


def ignore_error(verb: str, code: str) -> None:
    """The default `on_error`: count nothing."""


async def call(verb: str, fn: Callable[[], T], attempts: int = 5, base_delay: float = 0.2,
               on_error: OnError = ignore_error) -> T:
    """Run a blocking client call in a thread, retrying what is worth retrying; each failed
    attempt but a 404 is told to `on_error`."""
    for attempt in range(1, attempts + 1):
        try:
            return await asyncio.to_thread(fn)
        except ApiException as exc:
            code = int(exc.status or 0)
            if code == 404:
                raise NotFound(verb, code, "not found") from None
            on_error(verb, str(code))
            if code not in RETRIABLE or attempt == attempts:
                raise ApiError(verb, code, _status_message(exc)) from None
        except HTTPError as exc:  # connection refused, reset, timeout
            on_error(verb, "timeout" if _timed_out(exc) else "0")
            if attempt == attempts:
                raise ApiError(verb, 0, type(exc).__name__) from None
        except BAD_BODY as exc:
            on_error(verb, "0")
            raise ApiError(verb, 0, f"unreadable answer ({type(exc).__name__}: {exc})"[:STATUS_MESSAGE_LIMIT]) from None
        await asyncio.sleep(base_delay * 2 ** (attempt - 1) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _status_message(exc: ApiException) -> str:
    """The server's own words (its Status's message, which names a rejected field), else the
    HTTP reason; bounded, since the body is the server's to fill."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or exc.reason or "")[:STATUS_MESSAGE_LIMIT]


def _json_object(answer: Any) -> dict[str, Any]:
    """A read's answer as a JSON object, parsed here if raw bytes; run within `call`, which
    turns what this raises into an ApiError. (The client hands over a text/* body as a str.)"""
    if isinstance(answer, bytes):
        answer = json.loads(answer)
    if not isinstance(answer, dict):
        raise NotAnObject(f"{type(answer).__name__}, not a JSON object")
    return answer


def _items(answer: Any) -> list[dict[str, Any]]:
    """A list answer's objects."""
    items = _json_object(answer).get("items") or []
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise NotAnObject("items that are not a list of JSON objects")
    return items


def _timed_out(exc: HTTPError) -> bool:
    cause = getattr(exc, "reason", None) or exc  # MaxRetryError wraps the last attempt's error
    return isinstance(cause, RequestTimeout) and not isinstance(cause, NewConnectionError)  # refused subclasses it


def configure(configuration: client.Configuration) -> client.Configuration:
    """One attempt per request: `call` retries, so each attempt stays within its timeout
    (urllib3 would otherwise retry a timed-out GET three times on its own)."""
    configuration.retries = False
    return configuration


class Kube:
    def __init__(self, api_client: client.ApiClient, instance: str = "", timeout: Timeout = DEFAULT_TIMEOUT,
                 on_error: OnError = ignore_error) -> None:
        self.on_error = on_error
        self.api_client = api_client
        self.instance = instance or "plateau-operator"  # this replica (its pod name): Events' reportingInstance
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.read_opts: dict[str, Any] = {"_request_timeout": timeout}
        self.write_opts: dict[str, Any] = {**self.read_opts, "field_manager": FIELD_MANAGER}

    def _call(self, verb: str, fn: Callable[[], T]) -> Awaitable[T]:
        return call(verb, fn, on_error=self.on_error)

    # --- TrainingJobs -----------------------------------------------------------------

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> Awaitable[Any]:
        return self._call("patch trainingjobs/status", lambda: self.custom.patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"status": status}, **self.write_opts))

    # --- generic objects (workloads) --------------------------------------------------

    def get_object(self, group: str, version: str, plural: str, namespace: str, name: str) -> Awaitable[dict[str, Any]]:
        # CustomObjectsApi serves any named group (apps, batch, kubeflow.org, ...), not only CRDs.
        return self._call(f"get {plural}", lambda: _json_object(self.custom.get_namespaced_custom_object(
            group, version, namespace, plural, name, **self.read_opts)))

    def patch_object(self, group: str, version: str, plural: str, namespace: str, name: str,
                     patch: dict[str, Any]) -> Awaitable[Any]:
        return self._call(f"patch {plural}", lambda: self.custom.patch_namespaced_custom_object(
            group, version, namespace, plural, name, patch, **self.write_opts))

    def list_objects(self, group: str, version: str, plural: str, namespace: str,
                     selector: str) -> Awaitable[list[dict[str, Any]]]:
        return self._call(f"list {plural}", lambda: _items(self.custom.list_namespaced_custom_object(
            group, version, namespace, plural, label_selector=selector, limit=LIST_LIMIT, **self.read_opts)))

    def create_job(self, namespace: str, body: dict[str, Any]) -> Awaitable[Any]:
        # The generic API sends the body as is: the typed BatchV1Api would reject valid
        # manifests, e.g. `nvidia.com/gpu: 1` (a quantity may be an int on the wire).
        # Strict: a field the server does not know (a typo, or one newer than the server) is an
        # error that names it, not a field silently dropped from the trainer's pod.
        return self._call("create jobs", lambda: self.custom.create_namespaced_custom_object(
            "batch", "v1", namespace, "jobs", body, field_validation="Strict", **self.write_opts))

    def get_scale(self, group: str, version: str, plural: str, namespace: str, name: str) -> Awaitable[dict[str, Any]]:
        return self._call(f"get {plural}/scale", lambda: _json_object(
            self.custom.get_namespaced_custom_object_scale(group, version, namespace, plural, name, **self.read_opts)))

    def patch_scale(self, group: str, version: str, plural: str, namespace: str, name: str, replicas: int) -> Awaitable[Any]:
        return self._call(f"patch {plural}/scale", lambda: self.custom.patch_namespaced_custom_object_scale(
            group, version, namespace, plural, name, {"spec": {"replicas": replicas}}, **self.write_opts))

    # --- pods -------------------------------------------------------------------------

    def pods(self, namespace: str, selector: str) -> Awaitable[list[dict[str, Any]]]:
        # Raw JSON: the typed models reject what servers accept, and only metadata is needed.
        return self._call("list pods", lambda: _items(self.core.list_namespaced_pod(
            namespace, label_selector=selector, _preload_content=False, **self.read_opts).data))

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str]) -> Awaitable[Any]:
        # The answer is not read: unparsed, as for `pods`, since the typed V1Pod model rejects
        # pods servers accept, which would fail a stop request that the server had applied.
        return self._call("patch pods", lambda: self.core.patch_namespaced_pod(
            name, namespace, {"metadata": {"annotations": annotations}}, _preload_content=False, **self.write_opts))

    # --- events -----------------------------------------------------------------------

    def post_event(self, obj: dict[str, Any], type_: str, reason: str, message: str,
                   now: Optional[datetime] = None) -> Awaitable[Any]:
        meta = obj["metadata"]
        moment = now or datetime.now(timezone.utc)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "plateau-operator"},
            "reportingComponent": "plateau.dev/operator",
            "reportingInstance": self.instance,
            "firstTimestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        return self._call("create events", lambda: self.core.create_namespaced_event(meta["namespace"], body, **self.write_opts))

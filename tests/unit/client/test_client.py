"""The trainer-side client (client/plateau_client): report() to a file or the push endpoint, and the stop request."""

from __future__ import annotations

import json
import os
import reprlib
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import plateau_client as client
from plateau_sidecar import protocol as p
from plateau_sidecar.server import SidecarServer
from plateau_sidecar.store import MetricStore, RecordError, step_of
from tests.support.prometheus import free_port


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_report_appends_a_json_line_to_the_metrics_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv(p.ENV_METRICS_FILE, str(path))
    client.report(10, val_loss=np.float32(0.5), accuracy=0.75)
    client.report(20, val_loss=float("nan"))
    first, second = records(path)
    assert {k: first[k] for k in ("step", "val_loss", "accuracy")} == {"step": 10, "val_loss": 0.5, "accuracy": 0.75}
    assert isinstance(first["time"], float)
    assert second["step"] == 20 and second["val_loss"] != second["val_loss"]  # NaN survives


def test_a_value_that_is_not_a_number_is_dropped_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv(p.ENV_METRICS_FILE, str(path))
    with pytest.warns(RuntimeWarning, match="'note' is not a number") as caught:
        client.report(1, loss=1.0, note="hello")  # type: ignore[arg-type]
        client.report(2, loss=1.0, note="again")  # type: ignore[arg-type]
    assert len(caught) == 1
    assert caught[0].filename == __file__  # the warning names the caller's line, not the client's
    assert [r.get("note") for r in records(path)] == [None, None]


def test_io_trouble_warns_once_and_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(p.ENV_METRICS_FILE, str(tmp_path / "no" / "such" / "dir.jsonl"))
    with pytest.warns(RuntimeWarning, match="cannot append metrics") as caught:
        for step in range(5):
            client.report(step, loss=1.0)
    assert len(caught) == 1


def test_report_pushes_when_a_push_url_is_set(
    push_server: tuple[SidecarServer, MetricStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, store = push_server
    monkeypatch.setenv(p.ENV_PUSH_URL, server.url + "/push")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client.report(1, val_loss=0.5)
        client.report(2, val_loss=0.25)
    loss = store.snapshot().series["val_loss"]
    assert (loss.reports, loss.min, loss.min_step) == (2, 0.25, 2)


def test_reports_the_sidecar_missed_are_sent_with_the_next_one(
    push_server: tuple[SidecarServer, MetricStore],
) -> None:
    server, store = push_server
    down = client.Reporter(push_url=f"http://127.0.0.1:{free_port()}/push")
    with pytest.warns(RuntimeWarning, match="cannot push metrics") as caught:
        down.report(1, loss=1.0)
        down.report(2, loss=0.5)
    assert len(caught) == 1
    down.push_url = server.url + "/push"  # the sidecar is back
    down.report(3, loss=0.75)
    loss = store.snapshot().series["loss"]
    assert (loss.reports, loss.min_step, loss.step) == (3, 2, 3)
    down.report(4, loss=0.7)  # sent once only
    assert store.snapshot().series["loss"].reports == 4


def test_records_the_sidecar_rejects_are_not_resent(push_server: tuple[SidecarServer, MetricStore]) -> None:
    server, store = push_server
    reporter = client.Reporter(push_url=server.url + "/nope")
    with pytest.warns(RuntimeWarning, match="answered 404"):
        reporter.report(1, loss=1.0)
    reporter.push_url = server.url + "/push"
    reporter.report(2, loss=1.0)
    assert store.snapshot().series["loss"].reports == 2  # a 404 is not the records' fault: kept


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, None), ("", None), ("\n  ", None), ("plateau: no improvement\n", "plateau: no improvement")],
)
def test_the_stop_request_is_the_annotation_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None, reason: str | None
) -> None:
    path = tmp_path / "stop"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv(p.ENV_STOP_FILE, str(path))
    assert client.stop_reason() == reason
    assert client.should_stop() is (reason is not None)
    assert client.should_stop(str(path)) is (reason is not None)


@pytest.mark.parametrize("module", ["plateau_client", "plateau_client.integrations"])
def test_the_client_imports_only_the_standard_library(module: str) -> None:
    code = f"import sys; before = set(sys.modules); import {module}; print('\\n'.join(sorted(set(sys.modules) - before)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert module in loaded
    assert {m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names | {"plateau_client"}} == set()


def test_the_client_and_the_sidecar_agree_on_the_contract() -> None:
    """The client keeps its own copy of the trainer's side of plateau_sidecar.protocol."""
    shared = ["ENV_METRICS_FILE", "ENV_PUSH_URL", "ENV_STOP_FILE", "DEFAULT_METRICS_FILE", "DEFAULT_STOP_FILE", "MAX_STEP",
              "PUSH_REPORTER_HEADER", "PUSH_SEQUENCE_HEADER"]
    assert {name: getattr(client, name) for name in shared} == {name: getattr(p, name) for name in shared}


def test_a_value_too_large_for_a_float_is_dropped_with_one_warning_and_the_rest_reported(
    push_server: tuple[SidecarServer, MetricStore],
) -> None:
    server, store = push_server
    reporter = client.Reporter(push_url=server.url + "/push")
    with pytest.warns(RuntimeWarning, match="'loss' is too large for a float") as caught:
        reporter.report(1, loss=10**400, accuracy=0.5)
        reporter.report(2, loss=10**400, accuracy=0.75)
    assert len(caught) == 1
    snap = store.snapshot()
    assert "loss" not in snap.series and snap.series["accuracy"].reports == 2
    assert sum(snap.bad_input.values()) == 0


@pytest.mark.parametrize(
    "step",
    [-1, 2**53, 10**400, float("nan"), float("inf"), "ten", None],
    ids=["negative", "2**53", "10**400", "nan", "inf", "text", "None"],
)
def test_a_bad_step_drops_the_report_with_a_warning_and_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: object
) -> None:
    path = tmp_path / "metrics.jsonl"
    monkeypatch.setenv(p.ENV_METRICS_FILE, str(path))
    with pytest.warns(RuntimeWarning, match=r"is not an integer in \[0, 2\*\*53\); the report is dropped"):
        client.report(step, loss=1.0)  # type: ignore[arg-type]
    client.report(2**53 - 1, loss=1.0)
    assert [r["step"] for r in records(path)] == [2**53 - 1]


def test_a_push_url_without_a_scheme_warns_and_never_raises() -> None:
    reporter = client.Reporter(push_url="127.0.0.1/push")
    with pytest.warns(RuntimeWarning, match="cannot push metrics to 127.0.0.1/push"):
        reporter.report(1, loss=1.0)


@pytest.mark.parametrize(
    ("module", "hidden", "needs"),
    [
        ("keras", ["keras"], "Keras 3: pip install keras (or the extra plateau-client[keras])"),
        (
            "transformers",
            ["transformers"],
            "Hugging Face Transformers: pip install transformers accelerate (or the extra plateau-client[transformers])",
        ),
        (
            "lightning",
            ["lightning", "pytorch_lightning"],
            "PyTorch Lightning: pip install lightning (or the extra plateau-client[lightning])",
        ),
        ("torch", ["torch"], "PyTorch: pip install torch (or the extra plateau-client[torch])"),
    ],
)
def test_a_callback_without_its_framework_says_what_to_install(module: str, hidden: list[str], needs: str) -> None:
    # None in sys.modules makes `import name` raise ImportError, as on a machine without it.
    code = f"import sys; sys.modules.update(dict.fromkeys({hidden!r})); import plateau_client.integrations.{module}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"ImportError: plateau_client.integrations.{module} needs {needs}"


def test_a_single_metric_name_is_one_name_not_its_letters() -> None:
    from plateau_client.integrations import chosen, evaluation

    logged = {"val_loss": 0.5, "l": 1.0, "val_text": "n/a", "loss": 0.7}
    assert evaluation(logged, chosen("val_loss"), "val") == {"val_loss": 0.5}
    assert evaluation(logged, chosen(None), "val") == {"val_loss": 0.5}  # text is no number
    assert evaluation(logged, chosen(["loss", "missing"]), "val") == {"loss": 0.7}


# JSON values a step may be, for the table both sides are checked on.
STEPS = [0, 7, 3.0, -0.0, 2**53 - 1, float(2**53 - 1), 2**53, float(2**53), -1, 0.5, 1.5, 2.9, -0.5, 1e300,
         float("nan"), float("inf"), float("-inf"), 10**400, True, False, "7", "", None, [1], {"step": 1}]


@pytest.mark.parametrize("step", STEPS, ids=reprlib.repr)
def test_the_client_takes_a_step_exactly_as_the_sidecar_does(tmp_path: Path, step: object) -> None:
    """The client cannot import plateau_sidecar.store.step_of (it has no dependencies): it mirrors it."""
    try:
        expected = [step_of({"step": step})]
    except RecordError:
        expected = []
    path = tmp_path / "metrics.jsonl"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.Reporter(metrics_file=str(path)).report(step, loss=1.0)  # type: ignore[arg-type]
    written = [r["step"] for r in records(path)] if path.exists() else []
    assert written == expected
    assert all(type(s) is int for s in written)
    assert [str(w.message) for w in caught] == ([] if expected else [
        f"plateau: step {reprlib.repr(step)} is not an integer in [0, 2**53); the report is dropped"
        " (training goes on; this is reported once)"
    ])


def test_numpy_steps_count_by_their_value_and_bad_steps_warn_once(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    reporter = client.Reporter(metrics_file=str(path))
    with pytest.warns(RuntimeWarning, match=r"step np.float64\(0.5\) is not an integer") as caught:
        for bad in (np.float64(0.5), 1.5, "7", True, np.True_, b"8"):
            reporter.report(bad, loss=1.0)  # type: ignore[arg-type]
    assert len(caught) == 1  # one warning for the kind, not one a report
    for good in (np.int64(3), np.float32(4.0), np.array(5)):
        reporter.report(good, loss=1.0)  # type: ignore[arg-type]
    assert [r["step"] for r in records(path)] == [3, 4, 5]


def test_text_and_booleans_are_not_metric_values(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    reporter = client.Reporter(metrics_file=str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reporter.report(
            1, text="0.5", raw=b"0.5", flag=True, array_flag=np.True_,  # type: ignore[arg-type]
            loss=np.float32(0.25), count=3, item=np.array(0.5), nan=float("nan"),
        )
    assert sorted(str(w.message).split("'")[1] for w in caught) == ["array_flag", "flag", "raw", "text"]
    assert all("is not a number" in str(w.message) for w in caught)
    (record,) = records(path)
    assert record.keys() == {"step", "time", "loss", "count", "item", "nan"}
    assert (record["loss"], record["count"], record["item"]) == (0.25, 3.0, 0.5)


@dataclass
class Endpoint:
    """A small HTTP server that keeps every request it gets (as a push endpoint, or a proxy)."""

    url: str
    requests: list[tuple[str, bytes]] = field(default_factory=list)  # (request target, body)
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def pushed(self) -> list[list[int]]:
        return [[r["step"] for r in json.loads(body)] for _, body in self.requests]


@pytest.fixture
def endpoint() -> Iterator[Callable[..., Endpoint]]:
    """`endpoint(status=200, hold_first=False)` starts one; with hold_first its first answer waits for `release`."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int = 200, hold_first: bool = False) -> Endpoint:
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    got.requests.append((self.path, body))
                    first = len(got.requests) == 1
                got.arrived.set()
                if hold_first and first:
                    got.release.wait(10)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        got = Endpoint(url=f"http://127.0.0.1:{server.server_address[1]}")
        return got

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_pushes_never_go_through_a_proxy(
    push_server: tuple[SidecarServer, MetricStore], endpoint: Callable[..., Endpoint]
) -> None:
    """A training image that sets http_proxy for its downloads, with no no_proxy: the push still
    reaches the pod's sidecar. A fresh interpreter, since urllib keeps the proxies it read at first use."""
    server, store = push_server
    proxy = endpoint(status=502)
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("no_proxy", "http_proxy", "all_proxy")}
    env.update({"http_proxy": proxy.url, "HTTP_PROXY": proxy.url, p.ENV_PUSH_URL: server.url + p.PUSH_PATH})
    code = "import plateau_client; plateau_client.report(1, loss=0.5); plateau_client.report(2, loss=0.25)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")  # no warning: both pushes were taken
    assert proxy.requests == []
    loss = store.snapshot().series["loss"]
    assert (loss.reports, loss.min, loss.step) == (2, 0.25, 2)


def test_threads_sharing_a_reporter_push_each_record_exactly_once(endpoint: Callable[..., Endpoint]) -> None:
    sink = endpoint()
    reporter = client.Reporter(push_url=sink.url + p.PUSH_PATH)
    n, names = 300, "abcd"

    def work(name: str) -> None:
        for step in range(n):
            reporter.report(step, **{name: float(step)})

    threads = [threading.Thread(target=work, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pushed = [record for _, body in sink.requests for record in json.loads(body)]
    for name in names:  # none lost, none twice, and each thread's in its order
        assert [r["step"] for r in pushed if name in r] == list(range(n)), name
    assert len(pushed) == len(names) * n
    assert reporter._pending == []  # nothing left behind for a report that may never come


def test_a_report_during_another_threads_push_returns_at_once_and_that_push_sends_it(
    endpoint: Callable[..., Endpoint],
) -> None:
    sink = endpoint(hold_first=True)
    reporter = client.Reporter(push_url=sink.url + p.PUSH_PATH)
    first = threading.Thread(target=reporter.report, args=(1,), kwargs={"loss": 1.0})
    first.start()
    assert sink.arrived.wait(5)  # the first push is in flight, its answer held
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reporter.report(2, loss=0.5)
    waited = time.monotonic() - started
    sink.release.set()
    first.join(10)
    assert waited < client.PUSH_TIMEOUT_SECONDS / 2  # it did not wait for the push in flight
    assert sink.pushed() == [[1], [2]]  # the thread pushing sent the record once its push was done
    assert reporter._pending == []

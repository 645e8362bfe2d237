"""The trainer-side client (client/plateau_client): report() to a file or the push endpoint, and the stop request."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import plateau_client as client
from plateau_sidecar import protocol as p
from plateau_sidecar.server import SidecarServer
from plateau_sidecar.store import MetricStore
from tests.support.prometheus import free_port


@pytest.fixture(autouse=True)
def fresh_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no warning given and the environment unset."""
    monkeypatch.setattr(client, "_warned", set())
    monkeypatch.setattr(client, "_reporter", None)
    for name in (p.ENV_METRICS_FILE, p.ENV_PUSH_URL, p.ENV_STOP_FILE):
        monkeypatch.delenv(name, raising=False)


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


@pytest.fixture
def push_server() -> Iterator[tuple[SidecarServer, MetricStore]]:
    store = MetricStore("tj")
    server = SidecarServer(("127.0.0.1", 0), store, push=True)
    server.start()
    yield server, store
    server.shutdown()
    server.server_close()


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
    shared = ["ENV_METRICS_FILE", "ENV_PUSH_URL", "ENV_STOP_FILE", "DEFAULT_METRICS_FILE", "DEFAULT_STOP_FILE", "MAX_STEP"]
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

"""A real Prometheus server for tests: Debian's `prometheus` on 127.0.0.1, storage in a temp dir.

Prometheus 2.42 picks up new scrape targets on its own ~5 s timer, so targets are written into
the configuration before it starts; the first sample then becomes queryable ~6 s after start.

    server = PrometheusServer(tmp_path)          # or the `prometheus` fixture
    server.add_target("127.0.0.1:9464", labels={"pod": "p"})
    server.start()
    server.wait_for('plateau_metric_reports_total{metric="val_loss"}', lambda v: v >= 5)

`SidecarProcess` runs the real `plateau-sidecar` on free ports, as such a target.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

BOOTSTRAP_HINT = "run scripts/bootstrap (it installs Debian's prometheus package)"
FIRST_SAMPLE_TIMEOUT = 15.0
T = TypeVar("T")


_HANDED_OUT: set[int] = set()
_PICK = random.Random()  # its own: tests that seed the global one must not replay ports
LOWEST_PORT = 10000


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range: what bind(0) and connect() pick from."""
    path = Path("/proc/sys/net/ipv4/ip_local_port_range")
    return int(path.read_text().split()[0]) if path.exists() else 32768


def free_port(span: int = 1) -> int:
    """The first of `span` consecutive ports, each free on every interface a moment ago.

    Picked below the ephemeral range: a port from bind(0) is free only until the server that
    was given it binds, and meanwhile any bind(0) or outgoing connection of this busy suite can
    take it. Never the same port twice in one run, so no two servers are handed one port."""
    high = ephemeral_low()
    for _ in range(1000):
        port = _PICK.randrange(LOWEST_PORT, high - span + 1)
        ports = range(port, port + span)
        if _HANDED_OUT.intersection(ports) or not all(_bindable(p) for p in ports):
            continue
        _HANDED_OUT.update(ports)
        return port
    raise RuntimeError(f"no {span} free consecutive ports in {LOWEST_PORT}..{high - 1}")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))  # a listener on 127.0.0.1 or on 0.0.0.0 both refuse this
        except OSError:
            return False
    return True


def require_tool(name: str) -> str:
    """The path of a Prometheus tool; fails the test (never skips) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: {BOOTSTRAP_HINT}", pytrace=False)
    return path


def check_metrics(exposition: str) -> None:
    """`promtool check metrics` on an exposition; fails the test with promtool's findings."""
    result = subprocess.run(
        [require_tool("promtool"), "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=30
    )
    if result.returncode != 0 or result.stdout.strip() or result.stderr.strip():
        pytest.fail(f"promtool check metrics: rc={result.returncode}\n{result.stdout}{result.stderr}")


class PrometheusError(RuntimeError):
    pass


def wait_until_answering(url: str, process: subprocess.Popen[bytes], timeout: float, log: Callable[[], str]) -> None:
    """Poll `url` until it answers; raise with the process's log if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PrometheusError(f"the process behind {url} exited with {process.returncode}:\n{log()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise PrometheusError(f"{url} did not answer within {timeout} s:\n{log()}")


def _value(text: str) -> float:
    return float(text)  # Prometheus sends "NaN", "+Inf" and "-Inf" as strings float() reads


class PrometheusServer:
    def __init__(self, workdir: Path, scrape_interval: str = "1s", binary: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.scrape_interval = scrape_interval
        self.binary = binary or require_tool("prometheus")
        self.port = free_port()
        self._scrape_configs: list[dict[str, Any]] = []
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    # --- configuration (before start) ----------------------------------------------------

    def add_target(
        self,
        address: str,
        job: str = "plateau-sidecar",
        labels: Mapping[str, str] | None = None,
        metrics_path: str = "/metrics",
    ) -> None:
        """Scrape `address` (host:port). Call before `start()`; a running server is not reloaded."""
        if self._process is not None:
            raise PrometheusError("add targets before start(): Prometheus 2.42 applies new ones only after ~5 s")
        self._scrape_configs.append(
            {
                "job_name": f"{job}-{len(self._scrape_configs)}",
                "metrics_path": metrics_path,
                "static_configs": [{"targets": [address], "labels": dict(labels or {})}],
            }
        )

    def add_scrape_config(self, config: Mapping[str, Any]) -> None:
        """A whole scrape config (relabelling, intervals), as Prometheus' YAML has it. Before start()."""
        if self._process is not None:
            raise PrometheusError("add scrape configs before start(): Prometheus 2.42 applies new ones only after ~5 s")
        self._scrape_configs.append(dict(config))

    def _write_config(self) -> Path:
        config = {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": self._scrape_configs,
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML
        return path

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = FIRST_SAMPLE_TIMEOUT) -> PrometheusServer:
        config = self._write_config()
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until_answering(f"{self.url}/-/ready", self._process, timeout, self._log_tail)
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""

    # --- HTTP API ----------------------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; returns `data`, raises PrometheusError on an error answer."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.load(response)
        except urllib.error.HTTPError as e:
            body = json.loads(e.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query: [{"metric": {labels}, "value": [t, "v"]}, ...] for a vector."""
        data = self.api("query", query=promql)
        if data["resultType"] != "vector":
            raise PrometheusError(f"{promql!r} is a {data['resultType']}, not an instant vector")
        return list(data["result"])

    def query_value(self, promql: str) -> float | None:
        """The one sample `promql` selects, or None when it selects nothing."""
        result = self.query(promql)
        if len(result) > 1:
            raise PrometheusError(f"{promql!r} selects {len(result)} series, expected one")
        return _value(result[0]["value"][1]) if result else None

    def samples(self, selector: str, window: str = "5m") -> list[tuple[float, float]]:
        """The raw scraped samples (time, value) of the one series `selector` picks, over `window`."""
        data = self.api("query", query=f"{selector}[{window}]")
        result = data["result"]
        if len(result) != 1:
            raise PrometheusError(f"{selector!r} selects {len(result)} series, expected one")
        return [(float(t), _value(v)) for t, v in result[0]["values"]]

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets")["activeTargets"])

    # --- waiting -----------------------------------------------------------------------------

    def _poll(self, probe: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        while not done(result := probe()):
            if time.monotonic() > deadline:
                health = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in self.targets()]
                raise PrometheusError(f"{what} within {timeout} s (last: {result}); targets: {health}")
            time.sleep(0.25)
        return result

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[float], bool] = lambda v: not math.isnan(v),
        timeout: float = FIRST_SAMPLE_TIMEOUT,
    ) -> float:
        """Poll until the one sample `promql` selects satisfies `predicate`; return its value."""
        value = self._poll(
            lambda: self.query_value(promql),
            lambda v: v is not None and predicate(v),
            timeout,
            f"{promql!r} did not reach the expected value",
        )
        assert value is not None
        return value

    def wait_for_series(self, promql: str, timeout: float = FIRST_SAMPLE_TIMEOUT) -> list[dict[str, Any]]:
        """Poll until `promql` selects at least one series; return them."""
        return self._poll(lambda: self.query(promql), bool, timeout, f"no series for {promql!r}")


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """An unstarted server: add targets, then call `start()`. Stopped after the test."""
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"))
    yield server
    server.stop()


# --- a scrape target: the real sidecar process ---------------------------------------------------


class SidecarProcess:
    """`plateau-sidecar` in its own process on free ports, for Prometheus to scrape.

    `flags` are the sidecar's CLI flags (`--metrics-file`, `--stdout-pattern`, ...); the
    addresses, the trainingjob label and the log file are chosen here."""

    def __init__(self, workdir: Path, trainingjob: str, *flags: str, push: bool = False,
                 launcher: Sequence[str] = ()) -> None:
        """`launcher`: the command that runs the sidecar; default the venv's `plateau-sidecar`."""
        self.trainingjob = trainingjob
        self.metrics_address = f"127.0.0.1:{free_port()}"
        self.push_address = f"127.0.0.1:{free_port()}" if push else None
        self.log_path = Path(workdir) / f"sidecar-{trainingjob}.log"
        argv = [*(launcher or [str(Path(sys.executable).with_name("plateau-sidecar"))])]
        argv += ["--trainingjob", trainingjob, "--metrics-addr", self.metrics_address]
        argv += ["--push-addr", self.push_address or "off", "--poll-interval", "0.05", *flags]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    @property
    def metrics_url(self) -> str:
        return f"http://{self.metrics_address}/metrics"

    @property
    def push_url(self) -> str:
        assert self.push_address, "started without push=True"
        return f"http://{self.push_address}/push"

    def wait_ready(self, timeout: float = 15.0) -> SidecarProcess:
        wait_until_answering(f"http://{self.metrics_address}/healthz", self.process, timeout, self.log)
        return self

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            return response.read().decode()

    def rss_bytes(self) -> tuple[int, int]:
        """Resident memory now and at its peak (VmRSS, VmHWM), from /proc."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

"""From a TrainingJob manifest to what a local run starts: commands, environments, paths, ports.

Everything the user can get wrong is checked here, before any process starts, and reported as
one `InputError` line. The trainer gets the environment the operator would inject, with the
pod's /plateau and /etc/plateau mapped to plateau/ and etc/plateau/ in the run directory.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import shutil
import socket
import stat
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Optional

from plateau.api import MetricRule, MetricsSource, StopSpec, TrainingJob
from plateau.engine.history import MetricSpec, metric_spec_for
from plateau.api.errors import InputError
from plateau.local.processes import draft_of
from plateau_sidecar import protocol as p
from plateau_sidecar.protocol import METRICS_PATH, PUSH_PATH

LOOPBACK = "127.0.0.1"
RUNS_DIR = Path("plateau-runs")
# After SIGTERM, how long the trainer has before SIGKILL when the pod template does not set
# terminationGracePeriodSeconds (Kubernetes' default, 30 s, is long for a terminal).
DEFAULT_KILL_AFTER_SECONDS = 5.0
MAX_INTERVAL_SECONDS = 3600.0  # an evaluation at least every hour, or maxDuration would go unenforced
CONTAINER = "spec.template.spec.containers[0]"
# The run directory's own files, beside plateau/ and etc/plateau/, which stand in for the pod's volumes.
TRAINER_LOG = "trainer.log"
SIDECAR_LOG = "sidecar.log"
STATUS_FILE = "status.yaml"
CURVE_FILE = "curve.png"
# A pod path written out in a command or env value (not one inside another path, nor /plateauish).
POD_PATH = re.compile(r"(?<![\w.~/])(?:/etc)?/plateau(?![\w.-])[^\s'\"`;|&<>(){}]*")


@dataclass(frozen=True)
class RunOptions:
    """The `plateau run` flags."""

    workdir: Optional[Path] = None
    status_out: Optional[Path] = None
    interval: float = 1.0
    metrics_port: Optional[int] = None
    prometheus: Optional[str] = None


@dataclass(frozen=True)
class LocalPlan:
    job: TrainingJob
    command: list[str]
    trainer_env: dict[str, str]
    sidecar_env: dict[str, str]
    run_dir: Path
    stop_file: Path
    metrics_file: Optional[Path]  # the JSONL file, for source file
    output_file: Path  # the trainer's stdout and stderr; the followed log file for source stdout
    metrics_url: str
    kill_after: float
    spec: MetricSpec  # the metric stop spec the sidecar folds under, in spec_file
    notes: list[str] = field(default_factory=list)
    unmapped_note: Optional[str] = None  # pod paths the command names, which a failing trainer may have tripped on

    @property
    def name(self) -> str:
        return self.job.metadata.name


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env: unknown names stay as written,
    and $$ is a literal $."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def local_path(pod_path: str, run_dir: Path) -> Path:
    """A pod path under /plateau or /etc/plateau keeps its place under the run directory
    (/plateau/x is RUN_DIR/plateau/x), so the pod's two volumes stay apart; others are taken as
    they are (relative ones to the current directory)."""
    normal = posixpath.normpath(pod_path)  # as in the pod, /plateau/../etc/plateau/stop is the stop file
    for root in (p.DEFAULT_SHARED_DIR, p.DEFAULT_STOP_DIR):
        if normal == root or normal.startswith(root + "/"):
            return run_dir / normal.lstrip("/")
    return Path(pod_path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def check_port(port: int, what: str) -> int:
    with socket.socket() as s:
        try:
            s.bind((LOOPBACK, port))
        except OSError as exc:
            raise InputError(f"{what} {port}: {LOOPBACK}:{port} is not available ({exc.strerror})") from None
    return port


def _trainer_container(job: TrainingJob, notes: list[str]) -> dict[str, Any]:
    if job.spec.template is None:
        raise InputError("spec.workloadRef: a local run starts the trainer itself, so it needs spec.template")
    containers = job.spec.template.spec.get("containers")
    if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
        raise InputError("spec.template.spec.containers: a local run needs the trainer as the first container")
    container = containers[0]
    if container.get("image"):
        notes.append(f"image {container['image']} is ignored: the command runs on this machine, in {Path.cwd()}")
    if len(containers) > 1:
        notes.append(f"only the first container runs locally; {len(containers) - 1} more are ignored")
    if container.get("workingDir"):
        notes.append(f"workingDir {container['workingDir']} is ignored: the command runs in {Path.cwd()}")
    if job.spec.replicas != 1:
        notes.append(f"replicas {job.spec.replicas}: a local run starts one trainer process")
    return container


def _command(container: Mapping[str, Any], env: Mapping[str, str], path_var: Optional[str]) -> list[str]:
    # lists of strings: the TrainingJob's pod template schema (plateau.api.podschema) saw to that
    command, args = container.get("command"), container.get("args") or []
    if not command:
        raise InputError(f"{CONTAINER}.command: not set; locally there is no image entrypoint to fall back on")
    command = [expand(part, env) for part in command + args]
    executable = command[0]
    found = (os.access(executable, os.X_OK) and Path(executable).is_file()) if "/" in executable else shutil.which(executable, path=path_var)
    if not found:
        raise InputError(f"{CONTAINER}.command: {executable}: executable not found (run from {Path.cwd()})")
    return command


def _container_env(container: Mapping[str, Any], base: Mapping[str, str], notes: list[str]) -> dict[str, str]:
    """The container's `env` entries with plain values, expanded in order as Kubernetes does."""
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        if not isinstance(entry, dict) or "name" not in entry:
            raise InputError(f"{CONTAINER}.env: every entry needs a name")
        if "value" in entry:
            env[str(entry["name"])] = expand(str(entry["value"]), {**base, **env})
        else:
            notes.append(f"env {entry['name']} has no plain value (valueFrom) and is not set locally")
    if container.get("envFrom"):
        notes.append("envFrom is ignored locally")
    return env


def _check_readable(path: Path, what: str) -> None:
    """A file the run reads must be a readable regular file (a FIFO would block, a device
    never end), or not exist yet in an existing directory."""
    if path.exists():
        _regular(path, what)
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise InputError(f"{what} {path}: cannot read: {exc.strerror}") from None
    elif not path.parent.is_dir():
        raise InputError(f"{what} {path}: directory {path.parent} does not exist")


def _regular(path: Path, what: str) -> None:
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise InputError(f"{what} {path}: cannot read: {'a directory' if stat.S_ISDIR(mode) else 'not a regular file'}")


def _check_writable(path: Path, what: str) -> None:
    """A file the run writes at its end is tried now, before anything starts: a regular file
    opened for appending (not truncated), or created and removed again."""
    try:
        if path.exists():
            _regular(path, what)
            with path.open("ab"):
                pass
        else:
            with path.open("xb"):
                pass
            path.unlink()
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot write: {exc.strerror}") from None


def _check_directory(path: Path, what: str) -> None:
    """The run directory must take new files (it may exist, read-only)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot write: {exc.strerror}") from None


def check_options(options: RunOptions) -> None:
    """The flags' numbers and URLs, before anything else is looked at."""
    if not (math.isfinite(options.interval) and 0 < options.interval <= MAX_INTERVAL_SECONDS):
        raise InputError(f"--interval {options.interval:g}: must be a number of seconds above 0 and at most {MAX_INTERVAL_SECONDS:g}")
    if options.metrics_port is not None and not 1 <= options.metrics_port <= 65535:
        raise InputError(f"--metrics-port {options.metrics_port}: not a TCP port (1 to 65535)")
    if options.prometheus is not None:
        url = urllib.parse.urlsplit(options.prometheus)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InputError(f"--prometheus {options.prometheus}: not an http:// or https:// URL")
        try:
            url.port
        except ValueError as exc:
            raise InputError(f"--prometheus {options.prometheus}: {exc}") from None


def _run_dir(options: RunOptions, name: str) -> Path:
    if options.workdir is not None:
        return options.workdir.absolute()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir, n = RUNS_DIR / f"{name}-{stamp}", 1
    while run_dir.exists():  # two runs in one second
        n += 1
        run_dir = RUNS_DIR / f"{name}-{stamp}-{n}"
    return run_dir.absolute()


def _prepare(path: Path, run_dir: Path, what: str) -> None:
    """A file in the run directory starts fresh: a reused --workdir must not carry an old stop
    request or old reports into this run. A file elsewhere must be readable."""
    if path.is_relative_to(run_dir):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_file():
                path.unlink()
        except OSError as exc:
            raise InputError(f"{what} {path}: {exc.strerror}") from None
    _check_readable(path, what)


def _check_not_ours(what: str, path: Path, ours: Mapping[Path, str]) -> None:
    """A file the manifest names must not be one plateau run keeps for itself: in a pod the stop
    and spec files are on a volume of their own, here every file is in the run directory."""
    taken = {os.path.realpath(own): name for own, name in ours.items()}  # realpath: a symlink loop is no error here
    if (name := taken.get(os.path.realpath(path))) is not None:
        raise InputError(f"{what}: {path} is where plateau run keeps {name}; choose another path")


def _unmapped_note(command: list[str], env: Mapping[str, str], stdout_source: bool) -> Optional[str]:
    """What to say about pod paths the trainer's command or env spell out. plateau run maps only
    the paths it passes itself: text in a command cannot be rewritten safely (and a `tee` to
    logFile would then write every line twice), so these are used as written, on this machine."""
    named = dict.fromkeys(m.group(0) for text in (*command, *env.values()) for m in POD_PATH.finditer(text))
    if not named:
        return None
    said = (f"the trainer's command or env names {', '.join(named)}: plateau run maps only the paths it passes"
            " itself (metrics.path, metrics.logFile, the PLATEAU_* variables) into the run directory; others are"
            " used as written")
    if stdout_source:
        said += ("; for metrics.source stdout it writes the trainer's output to metrics.logFile itself, so the"
                 " command need not tee it")
    return said + " (see docs/local.md)"


def _metrics_wiring(job: TrainingJob, run_dir: Path, metrics_port: int) -> tuple[dict[str, str], dict[str, str], Path]:
    """The trainer's and the sidecar's metrics variables, and where the trainer's output goes."""
    metrics = job.spec.metrics
    trainer: dict[str, str] = {}
    sidecar = {
        p.ENV_TRAININGJOB: job.metadata.name,
        p.ENV_METRICS_ADDR: f"{LOOPBACK}:{metrics_port}",
        p.ENV_PUSH_ADDR: "off",
        p.ENV_METRIC_NAMES: ",".join(job.spec.exported_metrics()),
    }
    output_file = run_dir / TRAINER_LOG
    if metrics.source == MetricsSource.FILE.value:
        trainer[p.ENV_METRICS_FILE] = sidecar[p.ENV_METRICS_FILE] = str(local_path(metrics.path, run_dir).absolute())
    elif metrics.source == MetricsSource.PUSH.value:
        # A free port rather than pushPort: the trainer finds the sidecar through the URL anyway.
        push_port = free_port()
        sidecar[p.ENV_PUSH_ADDR] = f"{LOOPBACK}:{push_port}"
        sidecar[p.ENV_PUSH_JOURNAL] = str(local_path(p.DEFAULT_PUSH_JOURNAL, run_dir))
        trainer[p.ENV_PUSH_URL] = f"http://{LOOPBACK}:{push_port}{PUSH_PATH}"
    else:
        assert metrics.log_file is not None and metrics.pattern is not None  # the API validates it
        # Locally, plateau run itself writes the trainer's output to logFile for the sidecar.
        output_file = local_path(metrics.log_file, run_dir).absolute()
        sidecar[p.ENV_STDOUT_FILE] = str(output_file)
        sidecar[p.ENV_STDOUT_PATTERN] = metrics.pattern
    return trainer, sidecar, output_file


def _metric_spec(job: TrainingJob) -> MetricSpec:
    """The stop spec's metric part; without a metric rule, the first exported metric's plain
    track, which is only plotted."""
    names = job.spec.metrics.names
    found = metric_spec_for(job.spec.stop) or metric_spec_for(StopSpec(metric=MetricRule(name=names[0] if names else "loss")))
    assert found is not None
    return found


def plan_run(job: TrainingJob, options: RunOptions) -> LocalPlan:
    """Check everything, then create the run directory; nothing is started yet."""
    notes: list[str] = []
    check_options(options)
    if options.status_out is not None:
        if not options.status_out.parent.is_dir():
            raise InputError(f"--status-out {options.status_out}: directory {options.status_out.parent} does not exist")
        _check_writable(options.status_out, "--status-out")
    container = _trainer_container(job, notes)
    metrics_port = check_port(options.metrics_port, "--metrics-port") if options.metrics_port else free_port()
    run_dir = _run_dir(options, job.metadata.name)
    stop_file = local_path(p.DEFAULT_STOP_FILE, run_dir)
    spec_file = local_path(p.DEFAULT_SPEC_FILE, run_dir)
    metric_spec = _metric_spec(job)
    injected, sidecar, output_file = _metrics_wiring(job, run_dir, metrics_port)
    injected.update({p.ENV_TRAININGJOB: job.metadata.name, p.ENV_STOP_FILE: str(stop_file)})
    if job.metadata.namespace:
        injected[p.ENV_NAMESPACE] = job.metadata.namespace
    metrics = job.spec.metrics
    metrics_file = Path(injected[p.ENV_METRICS_FILE]) if p.ENV_METRICS_FILE in injected else None
    stdout_source = metrics.source == MetricsSource.STDOUT.value
    ours = {stop_file: "the stop file", draft_of(stop_file): "the stop file's draft", spec_file: "the spec file",
            run_dir / SIDECAR_LOG: "the sidecar's log", run_dir / STATUS_FILE: "the status",
            run_dir / CURVE_FILE: "the curve"}
    if metrics_file is not None:
        _check_not_ours(f"metrics.path {metrics.path}", metrics_file, {**ours, output_file: "the trainer's log"})
    elif stdout_source:
        _check_not_ours(f"metrics.logFile {metrics.log_file}", output_file, ours)

    # A PLATEAU_* variable of the calling shell must not leak into this run's processes.
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATEAU_")}
    own = _container_env(container, injected, notes)
    trainer_env = {**base, **own, **injected}
    command = _command(container, {**own, **injected}, trainer_env.get("PATH"))
    if unmapped_note := _unmapped_note(command, own, stdout_source):
        notes.append(unmapped_note)

    _check_directory(run_dir, "run directory")
    _prepare(stop_file, run_dir, "stop file")
    _prepare(spec_file, run_dir, "spec file")
    if p.ENV_PUSH_JOURNAL in sidecar:  # a reused --workdir: no pushes of an earlier run
        _prepare(Path(sidecar[p.ENV_PUSH_JOURNAL]), run_dir, "push journal")
    try:
        spec_file.write_text(metric_spec.text)  # what the downward API writes in a cluster
    except OSError as exc:
        raise InputError(f"spec file {spec_file}: {exc.strerror}") from None
    if metrics_file is not None:
        _prepare(metrics_file, run_dir, "metrics file")
    _prepare(output_file, run_dir, "metrics.logFile" if stdout_source else "trainer log")
    template = job.spec.template.spec if job.spec.template else {}
    grace = template.get("terminationGracePeriodSeconds")
    return LocalPlan(
        job=job,
        command=command,
        trainer_env=trainer_env,
        sidecar_env={**base, **sidecar, p.ENV_SPEC_FILE: str(spec_file)},
        run_dir=run_dir,
        stop_file=stop_file,
        metrics_file=metrics_file,
        output_file=output_file,
        metrics_url=f"http://{LOOPBACK}:{metrics_port}{METRICS_PATH}",
        kill_after=float(grace) if isinstance(grace, (int, float)) and grace >= 0 else DEFAULT_KILL_AFTER_SECONDS,
        spec=metric_spec,
        notes=notes,
        unmapped_note=unmapped_note,
    )

"""The emulated API server in a child process, for tests that run the operator as a process too."""
from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
from types import TracebackType
from typing import IO, Self

REPO = pathlib.Path(__file__).resolve().parents[3]


class ApiServerProcess:
    """`with ApiServerProcess(kubeconfig) as server:` starts it, waits until it serves, and stops it."""

    def __init__(self, kubeconfig: str | os.PathLike[str], *, port: int = 0, tls: bool = False,
                 rbac: bool = False, apply: tuple[str, ...] = (), feature_gates: dict[str, bool] | None = None) -> None:
        self.kubeconfig = str(kubeconfig)
        flags = [flag for flag, on in (('--tls', tls), ('--rbac', rbac)) if on]
        if feature_gates:
            flags += ['--feature-gates', ','.join(f'{k}={str(v).lower()}' for k, v in feature_gates.items())]
        self.args = [sys.executable, '-m', 'tests.support.apiserver', '--port', str(port),
                     '--kubeconfig-out', self.kubeconfig, *flags,
                     *(a for path in apply for a in ('--apply', str(path)))]
        self.process: subprocess.Popen[str] | None = None
        self.url = ''

    def __enter__(self) -> Self:
        self.process = subprocess.Popen(self.args, cwd=REPO, stdout=subprocess.PIPE, text=True)
        stdout: IO[str] = self.process.stdout  # type: ignore[assignment]
        line = stdout.readline()  # blocks until `ready <url>`, or EOF if it failed
        if not line.startswith('ready '):
            self.__exit__(None, None, None)
            raise RuntimeError(f'the emulated API server did not start: {line!r}')
        self.url = line.split()[1]
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

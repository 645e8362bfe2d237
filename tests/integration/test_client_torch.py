"""A plain PyTorch loop (examples/trainer/torch_loop.py) stopped by a real sidecar, and the stop
check that torch.distributed ranks agree on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from plateau_sidecar import protocol as p
from tests.support.prometheus import free_port
from tests.support.stopping_sidecar import StoppingSidecar, stopping_sidecar

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "trainer" / "torch_loop.py"
EPOCHS = 100


@pytest.fixture
def sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoppingSidecar]:
    with stopping_sidecar(tmp_path, "val_loss", monkeypatch) as running:
        yield running


def test_the_loop_stops_when_the_sidecar_says_so_and_checkpoints(sidecar: StoppingSidecar, tmp_path: Path) -> None:
    env = {**os.environ, **sidecar.env, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, str(EXAMPLE), "--epochs", str(EPOCHS), "--sleep", "0.2"]
    with sidecar.watching():
        result = subprocess.run(
            [*argv, "--checkpoint-dir", str(tmp_path / "ckpt")], env=env, capture_output=True, text=True, timeout=120
        )
    assert result.returncode == 0, result.stderr
    epochs = [dict(kv.split("=") for kv in line.split()) for line in result.stdout.splitlines() if line.startswith("epoch=")]
    steps = [int(e["step"]) for e in epochs]
    # The operator looks every 50 ms while an epoch takes at least 200: the loop ends within an
    # epoch of the report at which the sidecar's rules said stop.
    assert sidecar.stopped_at == sidecar.stop_step([(s, float(e["val_loss"])) for s, e in zip(steps, epochs)])
    assert sidecar.stopped_at in steps[-2:] and len(epochs) < EPOCHS
    checkpoint = torch.load(tmp_path / "ckpt" / "checkpoint.pt")
    assert (checkpoint["epoch"], checkpoint["step"]) == (len(epochs), steps[-1])
    assert checkpoint["stopped_by"] == sidecar.stop_file.read_text()
    assert set(checkpoint["model"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    # Every reported metric reached the sidecar, each evaluation once.
    assert sidecar.series() == {
        "val_loss": (len(epochs), pytest.approx(float(epochs[-1]["val_loss"]), abs=1e-6)),
        "accuracy": (len(epochs), pytest.approx(float(epochs[-1]["accuracy"]), abs=1e-6)),
    }


AGREE = textwrap.dedent(
    """
    import sys
    import torch.distributed as dist
    from plateau_client.integrations.torch import should_stop
    dist.init_process_group("gloo", rank=int(sys.argv[1]), world_size=2)
    print(should_stop(), flush=True)
    dist.destroy_process_group()
    """
)


@pytest.mark.parametrize("asked", [(True, False), (False, False)], ids=["one rank asked", "none asked"])
def test_every_rank_agrees_on_a_stop_that_one_rank_sees(tmp_path: Path, asked: tuple[bool, bool]) -> None:
    address = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    ranks = []
    for rank, sees in enumerate(asked):
        stop_file = tmp_path / f"stop-{rank}"  # each pod has its own, updated by its own kubelet
        stop_file.write_text("plateau: budget spent" if sees else "")
        env = {**os.environ, **address, p.ENV_STOP_FILE: str(stop_file)}
        ranks.append(subprocess.Popen([sys.executable, "-c", AGREE, str(rank)], env=env, stdout=subprocess.PIPE, text=True))
    answers = [rank.communicate(timeout=60)[0].strip() for rank in ranks]
    assert [rank.returncode for rank in ranks] == [0, 0]
    assert answers == [str(any(asked))] * 2


def test_without_a_process_group_it_is_the_local_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from plateau_client.integrations.torch import should_stop

    monkeypatch.setenv(p.ENV_STOP_FILE, str(tmp_path / "stop"))
    assert should_stop() is False
    (tmp_path / "stop").write_text("plateau: budget spent")
    assert should_stop() is True

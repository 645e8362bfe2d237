"""The Hugging Face Transformers callback: a tiny BERT built from a config, trained by the real
Trainer on CPU, stopped by a real sidecar; the Trainer saves the checkpoint."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

# Nothing may come from the Hub: both are read when transformers is first imported.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
import transformers  # noqa: E402

from plateau_client.integrations.transformers import PlateauCallback  # noqa: E402
from tests.support.stopping_sidecar import StoppingSidecar, stopping_sidecar  # noqa: E402

pytestmark = pytest.mark.integration

EPOCHS, SAMPLES, BATCH, LENGTH, VOCAB = 20, 64, 16, 8, 32


def tiny_bert() -> transformers.BertForSequenceClassification:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def sequences(seed: int) -> list[dict[str, torch.Tensor]]:
    """Token ids; the label is whether the first token is in the lower half of the vocabulary."""
    ids = torch.randint(0, VOCAB, (SAMPLES, LENGTH), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": row, "labels": torch.tensor(int(row[0] < VOCAB // 2))} for row in ids]


def accuracy(prediction: transformers.EvalPrediction) -> dict[str, float]:
    return {"accuracy": float((np.argmax(prediction.predictions, axis=1) == prediction.label_ids).mean())}


def trainer(output_dir: Path, callback: PlateauCallback, save_strategy: str = "no") -> transformers.Trainer:
    arguments = transformers.TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=SAMPLES,
        learning_rate=1e-3,
        eval_strategy="epoch",
        save_strategy=save_strategy,
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return transformers.Trainer(
        model=tiny_bert(),
        args=arguments,
        train_dataset=sequences(0),
        eval_dataset=sequences(1),
        compute_metrics=accuracy,
        callbacks=[callback],
    )


@pytest.fixture
def sidecar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoppingSidecar]:
    with stopping_sidecar(tmp_path, "eval_loss", monkeypatch) as running:
        yield running


def test_the_sidecar_stops_training_and_the_trainer_saves_a_checkpoint(
    sidecar: StoppingSidecar, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    run = trainer(tmp_path / "out", PlateauCallback(reporter=sidecar.reporter()))
    run.train()
    evaluations = [entry for entry in run.state.log_history if "eval_loss" in entry]
    steps = [entry["step"] for entry in evaluations]
    # It stopped at the very evaluation whose report made the sidecar's rules say stop.
    assert run.state.epoch is not None and run.state.epoch < EPOCHS
    assert sidecar.stopped_at == steps[-1] == run.state.global_step
    assert sidecar.stopped_at == sidecar.stop_step([(entry["step"], entry["eval_loss"]) for entry in evaluations])
    # Every metric each evaluation returned reached the sidecar, once per evaluation.
    last = {name: value for name, value in evaluations[-1].items() if name.startswith("eval_")}
    assert {"eval_loss", "eval_accuracy", "eval_runtime"} <= last.keys()
    assert sidecar.series() == {name: (len(evaluations), pytest.approx(value, rel=1e-6)) for name, value in last.items()}
    # save_strategy="no", yet the Trainer saved checkpoint-STEP its own way: weights, optimizer, state.
    checkpoint = tmp_path / "out" / f"checkpoint-{sidecar.stopped_at}"
    assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= set(os.listdir(checkpoint))
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == sidecar.stopped_at
    assert [path.name for path in (tmp_path / "out").iterdir()] == [checkpoint.name]
    assert f"plateau: stop requested ({sidecar.stop_file.read_text()}); checkpoint: {checkpoint}" in capfd.readouterr().err
    restored = transformers.BertForSequenceClassification.from_pretrained(checkpoint, local_files_only=True)
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), run.model.state_dict().values()))


def test_with_save_off_a_stop_saves_nothing(sidecar: StoppingSidecar, tmp_path: Path) -> None:
    sidecar.stop_file.write_text("plateau: budget spent")  # asked before the first evaluation
    run = trainer(tmp_path / "out", PlateauCallback(metrics=["eval_accuracy"], save=False))
    run.train()
    assert run.state.epoch == 1 and list((tmp_path / "out").iterdir()) == []
    assert sidecar.series().keys() == {"eval_accuracy"}  # the named metric only, through the environment

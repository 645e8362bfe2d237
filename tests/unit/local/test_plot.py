"""curve.png as `plateau.local.plot.plot_curve` draws it: what the legend and the note say (also
kept in the PNG's Description), never its pixels."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from plateau.local.plot import Marker, plot_curve

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
POINTS = [(1, 1.0), (2, 0.6), (3, 0.5), (4, 0.52), (5, 0.51)]


def _description(path: Path) -> str:
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    with Image.open(path) as image:
        return str(image.info["Description"])


def test_target_smoothed_value_and_reference_are_drawn(tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    track_points = [(1, 1.0, None), (2, 0.8, 0.8), (3, None, 0.8), (4, 0.6, 0.6), (5, 0.58, 0.6)]
    labels = plot_curve(
        png, "job", "val_loss", POINTS, best=(3, 0.5), stop=Marker(5, "stop (Plateau)"), target=0.4, track_points=track_points
    )
    assert labels == ["val_loss", "smoothed", "reference", "target 0.4", "best 0.5 at step 3", "stop (Plateau) at step 5"]
    assert _description(png) == "\n".join(labels)


def test_without_smoothing_or_target_there_are_no_such_lines(tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    labels = plot_curve(png, "job", "val_loss", POINTS, best=(3, 0.5), stop=None, track_points=[(s, None, None) for s, _ in POINTS])
    assert labels == ["val_loss", "best 0.5 at step 3"]
    assert _description(png) == "\n".join(labels)


def test_a_metric_never_reported_is_named_with_what_was(tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    labels = plot_curve(png, "job", "val_los", [], best=None, stop=None, target=0.1, reported=["val_loss", "accuracy", "epoch", "lr"])
    assert labels == ["target 0.1", "no evaluations of val_los were reported\n(the trainer reported val_loss, accuracy, epoch, ...)"]
    assert "no evaluations of val_los were reported" in _description(png)


def test_no_metric_at_all_says_no_evaluations(tmp_path: Path) -> None:
    assert plot_curve(tmp_path / "curve.png", "job", None, [], best=None, stop=None) == ["no evaluations were reported"]

"""Loading TrainingJob manifests from files, with errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from plateau.api import TrainingJob
from plateau.api.errors import InputError, format_validation_error
from plateau.api.yamlfile import load_yaml_documents


def parse_training_job(doc: object, source: str) -> TrainingJob:
    if not isinstance(doc, dict) or doc.get("kind") != "TrainingJob":
        raise InputError(f"{source}: not a TrainingJob manifest (kind: TrainingJob, apiVersion: plateau.dev/v1alpha1)")
    try:
        return TrainingJob.model_validate(doc)
    except ValidationError as exc:
        raise InputError(f"{source}: {format_validation_error(exc)}") from exc


def load_training_job(path: Path) -> TrainingJob:
    """The single TrainingJob in a YAML file."""
    docs = [d for d in load_yaml_documents(path) if d is not None]
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "TrainingJob"]
    if len(jobs) != 1:
        raise InputError(f"{path}: expected exactly one TrainingJob, found {len(jobs)}")
    return parse_training_job(jobs[0], str(path))

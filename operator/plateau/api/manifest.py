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


def training_job_documents(path: Path) -> list[dict]:
    """The TrainingJob documents of a YAML file, unchecked; other kinds (a Namespace beside it) are left out."""
    return [d for d in load_yaml_documents(path) if isinstance(d, dict) and d.get("kind") == "TrainingJob"]


def load_training_job(path: Path) -> TrainingJob:
    """The single TrainingJob in a YAML file."""
    jobs = training_job_documents(path)
    if len(jobs) != 1:
        raise InputError(f"{path}: expected exactly one TrainingJob, found {len(jobs)}")
    return parse_training_job(jobs[0], str(path))


def check_for_the_api_server(doc: dict, source: str) -> TrainingJob:
    """What `kubectl apply` would send and the API server take: the models' checks, and a name
    (a local run names an unnamed job `local`; the server refuses it)."""
    job = parse_training_job(doc, source)
    if "name" not in job.metadata.model_fields_set:
        raise InputError(f"{source}: metadata.name: Required value: kubectl apply needs the object's name")
    return job

"""What monitoring knows about a served model: the registered version, its features, and what was
logged with it at training (MLflow), never recomputed here.

`load_model_context(task, version)` gathers, for one registered version:

- the `RiskModel` bundle (feature list, which features are yes/no, officials' labels and causes);
- the reference snapshot ``reference/reference.parquet`` (a seeded sample of the training rows:
  ``household_id``, ``year``, every feature, ``risk``);
- the held-out predictions ``evaluation/heldout_predictions.parquet`` (``household_id``, ``year``,
  ``label``, ``risk`` of the test years): the model's own scores of the years closest to today;
- the held-out metrics of the run (``heldout_auc``, ``heldout_ece``, ``heldout_exclusion_error``,
  ``heldout_inclusion_error``, ...), the figures targeting quality is judged against;
- the training-set manifest (``training_set/manifest.json``), which names the source panel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.schema import CAUSES, HOUSEHOLD_SPECS
from tpas.errors import DataError, TpasError

TASKS = ("poverty", "relapse")
REFERENCE_ARTIFACT = "reference/reference.parquet"
HELDOUT_ARTIFACT = "evaluation/heldout_predictions.parquet"
MANIFEST_ARTIFACT = "training_set/manifest.json"
#: Columns of the reference snapshot that are keys, not features (never compared).
KEY_COLUMNS = ("household_id", "year")


class NoModel(TpasError):
    """No registered model (or version) to monitor; the message names the command that makes one."""


@dataclass
class ModelContext:
    """One registered model version and what was logged with it at training."""

    task: str
    name: str
    version: str
    run_id: str
    model: Any                                  # models.bundle.RiskModel
    reference: pd.DataFrame                     # the snapshot: keys, features, risk
    heldout: pd.DataFrame | None                # household_id, year, label, risk (None if not logged)
    heldout_metrics: dict[str, float] = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"

    @property
    def feature_names(self) -> list[str]:
        return list(self.model.feature_names)

    def info(self) -> dict[str, dict]:
        """Feature name -> its `feature_info` entry (en, zh, cause, description)."""
        return {f["name"]: f for f in self.model.feature_info}


def column_types(model) -> tuple[list[str], list[str]]:
    """(numerical, categorical) model features, from the model's own feature list.

    Categorical: features that only take 0/1 in training (`RiskModel.binary_features`: yes/no
    indicators, one-hot levels), one-hot levels by name (``terrain=hill``), and the ordered
    categories of the schema (house safety grade, toilet, ...: codes 0..k-1). Everything else
    (counts, amounts, ratios, ages) is numerical. Keys and timestamps (``household_id``,
    ``household_pid``, ``year``, ``region_code``, ``scored_at``) are never features, so they are
    in neither list; the risk score is handled separately as the prediction.
    """
    numerical, categorical = [], []
    for name, binary in zip(model.feature_names, np.asarray(model.binary_features, dtype=bool)):
        spec = HOUSEHOLD_SPECS.get(name.split("=", 1)[0])
        if binary or "=" in name or (spec is not None and spec.kind in ("category", "bool")):
            categorical.append(name)
        else:
            numerical.append(name)
    return numerical, categorical


def officials_words(info: dict | None, name: str) -> dict[str, Any]:
    """A feature in the words officials use: English and Chinese label, and the cause of poverty."""
    info = info or {"name": name, "en": name, "zh": name, "cause": None}
    cause = info.get("cause")
    zh_cause, en_cause = CAUSES.get(cause, (None, None)) if cause else (None, None)
    text_en = info.get("en") or name
    text_zh = info.get("zh") or name
    return {"column": name, "en": text_en, "zh": text_zh, "cause": cause, "cause_en": en_cause,
            "cause_zh": zh_cause,
            "words": f"{text_en} ({text_zh}" + (f"; {en_cause} {zh_cause}" if cause else "") + ")"}


def model_versions(task: str) -> dict[str, str | None]:
    """The champion and previous versions of a task's registered model (None when unset)."""
    from training.tracking import CHAMPION, PREVIOUS, resolve_version

    return {"champion": resolve_version(task, CHAMPION), "previous": resolve_version(task, PREVIOUS)}


def _download(run_id: str, path: str) -> Path | None:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path))
    except (MlflowException, OSError):
        return None


def load_model_context(task: str, version: str | None = None) -> ModelContext:
    """The registered `version` of a task's model (default: the champion) and its training artifacts."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training.tracking import configure, load_bundle, model_name

    if task not in TASKS:
        raise DataError(f"unknown task {task!r} (monitoring watches {', '.join(TASKS)})")
    configure()
    name = model_name(task)
    if version is None:
        version = model_versions(task)["champion"]
        if version is None:
            raise NoModel(f"no champion model for task '{task}': train and promote one with "
                          f"`tpas train --task {task} --promote`")
    client = MlflowClient()
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        raise NoModel(f"models:/{name}/{version} is not in the registry") from None
    model = load_bundle(f"models:/{name}/{version}")
    ref_path = _download(mv.run_id, REFERENCE_ARTIFACT)
    if ref_path is None:
        raise DataError(f"models:/{name}/{version} was logged without its reference snapshot "
                        f"({REFERENCE_ARTIFACT}); retrain it with `tpas train --task {task}`")
    reference = pd.read_parquet(ref_path)
    missing = [c for c in model.feature_names if c not in reference.columns]
    if missing or "risk" not in reference.columns:
        raise DataError(f"the reference snapshot of models:/{name}/{version} lacks column(s) "
                        f"{', '.join((missing + ([] if 'risk' in reference.columns else ['risk']))[:5])}")
    ho_path = _download(mv.run_id, HELDOUT_ARTIFACT)
    heldout = pd.read_parquet(ho_path) if ho_path is not None else None
    man_path = _download(mv.run_id, MANIFEST_ARTIFACT)
    manifest = json.loads(man_path.read_text(encoding="utf-8")) if man_path is not None else {}
    run = client.get_run(mv.run_id)
    metrics = {k.removeprefix("heldout_"): float(v) for k, v in run.data.metrics.items() if k.startswith("heldout_")}
    return ModelContext(task=task, name=name, version=str(version), run_id=mv.run_id, model=model,
                        reference=reference, heldout=heldout, heldout_metrics=metrics, manifest=manifest)

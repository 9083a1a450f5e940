"""MLflow: experiments, the logged model (pyfunc around `RiskModel`), the registry and promotion.

Nothing here runs at import: `configure()` points MLflow at the tracking URI of the
settings (SQLite in the data folder by default; ``MLFLOW_TRACKING_URI`` overrides) when a
command needs it. One registered model per task (``tpas-poverty``, ``tpas-relapse``,
``tpas-idb-level``); promotion moves the alias ``champion`` (and keeps the old one as
``previous``) only when the quality gate of `params.yaml` passes on held-out data.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from tpas.config import GateCriteria, Params
from tpas.errors import TpasError
from tpas.settings import get_settings

CHAMPION, PREVIOUS, CHALLENGER = "champion", "previous", "challenger"


class GateFailed(TpasError):
    """The quality gate refused a promotion; the message names the failed criterion."""


def model_name(task: str) -> str:
    return f"tpas-{task}"


def configure() -> str:
    """Point MLflow at the configured tracking store (creating the data folder) and return the URI."""
    import mlflow

    import logging
    import os

    # Quiet by default: no artifact progress bars or serializer notices in analysts' output.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    settings = get_settings()
    settings.ensure_data_dir()
    uri = settings.tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def experiment_id(task: str) -> str:
    """The task's experiment, created with its artifacts under the data folder."""
    import mlflow

    name = f"tpas-{task}"
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    artifacts = (get_settings().data_dir.resolve() / "mlartifacts" / task)
    artifacts.mkdir(parents=True, exist_ok=True)
    return mlflow.create_experiment(name, artifact_location=artifacts.as_uri())


try:  # the pyfunc wrapper needs mlflow at class-definition time; keep import errors readable
    import mlflow.pyfunc as _pyfunc

    class RiskModelPyfunc(_pyfunc.PythonModel):
        """MLflow pyfunc around the saved `RiskModel` bundle (artifact ``bundle``).

        Input: registry tasks take `features.records.records_to_frame` rows (household waves
        with a JSON ``members`` column); `idb-level` takes the survey's person rows.
        Output: the frame of `RiskModel.predict`.
        """

        def load_context(self, context) -> None:
            self.model = joblib.load(context.artifacts["bundle"])

        def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
            return predict_frame(self.model, model_input)
except ImportError:  # pragma: no cover
    RiskModelPyfunc = None  # type: ignore[assignment]


def predict_frame(model, frame: pd.DataFrame) -> pd.DataFrame:
    """Score a flat input frame (see `RiskModelPyfunc`) after validating it."""
    if model.task == "idb-level":
        from features.sources.idb import validate_persons

        persons, _ = validate_persons(frame, source="pyfunc input")
        return model.predict(persons)
    from features.records import frame_to_records
    from features.validation import validate_records

    raw = frame_to_records(frame)
    records, report = validate_records(raw.households, raw.members, source="pyfunc input")
    if report.n_rejected:
        raise TpasError("invalid records in the input:\n" + report.summary())
    return model.predict(records)


def load_bundle(model_uri: str):
    """The `RiskModel` behind a model URI (``models:/tpas-poverty@champion``, ``models:/NAME/3``, ``runs:/...``)."""
    import mlflow

    configure()
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri.rstrip("/") + "/artifacts/bundle.joblib")
    return joblib.load(local)


def resolve_version(task: str, alias: str = CHAMPION) -> str | None:
    """The version number behind an alias, or None when the alias is not set."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure()
    try:
        return str(MlflowClient().get_model_version_by_alias(model_name(task), alias).version)
    except MlflowException:
        return None


def check_gate(task: str, metrics: dict[str, float], params: Params) -> list[str]:
    """Failed criteria (empty = pass) of the task's gate on the held-out metrics."""
    gate: GateCriteria | None = params.gate.get(task)
    if gate is None:
        return []
    failed = []
    checks = [
        ("min_auc", "auc", lambda v, t: v >= t, ">="),
        ("max_exclusion_error", "exclusion_error", lambda v, t: v <= t, "<="),
        ("max_calibration_error", "ece", lambda v, t: v <= t, "<="),
        ("min_macro_f1", "macro_f1", lambda v, t: v >= t, ">="),
    ]
    for crit, metric, ok, sign in checks:
        threshold = getattr(gate, crit)
        if threshold is None:
            continue
        value = metrics.get(metric)
        if value is None or value != value:
            failed.append(f"gate.{task}.{crit}: held-out {metric} is missing")
        elif not ok(value, threshold):
            failed.append(f"gate.{task}.{crit}: held-out {metric} {value:.4f} is not {sign} {threshold}")
    return failed


def promote(task: str, version: str | int, params: Params) -> str:
    """Set `champion` on `version` if its held-out metrics pass the gate; the old champion becomes `previous`.

    Raises `GateFailed` naming the failed criteria otherwise. Returns a one-line summary.
    """
    from mlflow import MlflowClient

    configure()
    client = MlflowClient()
    name = model_name(task)
    mv = client.get_model_version(name, str(version))
    run = client.get_run(mv.run_id)
    metrics = {k.removeprefix("heldout_"): v for k, v in run.data.metrics.items() if k.startswith("heldout_")}
    failed = check_gate(task, metrics, params)
    if failed:
        raise GateFailed(f"{name} version {version} not promoted: " + "; ".join(failed))
    old = resolve_version(task, CHAMPION)
    if old is not None and str(old) != str(version):
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, str(version))
    return f"{name} version {version} is now {CHAMPION}" + (f" (previous: {old})" if old and old != str(version) else "")


def log_model_run(*, task: str, kind: str, fit, ts, params: Params, extra_params: dict | None = None,
                  artifacts: dict[str, Any] | None = None, figures: dict | None = None,
                  input_example: pd.DataFrame | None = None) -> tuple[str, str]:
    """Log a trained model as an MLflow run and register a new version. Returns (run_id, model_uri)."""
    import mlflow
    from mlflow.models import infer_signature

    configure()
    exp = experiment_id(task)
    name = model_name(task)
    with mlflow.start_run(experiment_id=exp, run_name=f"{kind}") as run, \
            tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mlflow.set_tags({"task": task, "model_kind": kind, "data_sha256": ts.manifest["source"]["sha256"],
                         "training_set": str(ts.path)})
        flat = {"model_kind": kind, "task": task, **(extra_params or {})}
        mlflow.log_params({k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in flat.items()})
        mlflow.log_metrics({f"heldout_{k}": float(v) for k, v in flat_metrics(fit.report).items()})
        mlflow.log_metric("train_seconds", fit.train_seconds)
        mlflow.log_dict(ts.manifest, "training_set/manifest.json")
        mlflow.log_dict(fit.report, "evaluation/report.json")
        for fname, content in (artifacts or {}).items():
            path = tmp / fname
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, pd.DataFrame):
                content.to_parquet(path, index=False)
            else:
                path.write_text(str(content), encoding="utf-8")
            mlflow.log_artifact(str(path), artifact_path=str(Path(fname).parent) if Path(fname).parent.name else None)
        for fname, fig in (figures or {}).items():
            mlflow.log_figure(fig, f"evaluation/{fname}")
        bundle_path = tmp / "bundle.joblib"
        joblib.dump(fit.model, bundle_path)
        signature = None
        if input_example is not None:
            input_example = pyfunc_frame(input_example)
            signature = infer_signature(input_example, predict_frame(fit.model, input_example))
            signature.inputs = optional_schema(input_example)
        info = mlflow.pyfunc.log_model(
            name="model", python_model=RiskModelPyfunc(), artifacts={"bundle": str(bundle_path)},
            signature=signature, input_example=input_example, registered_model_name=name,
            pip_requirements=[], 
        )
        version = info.registered_model_version
        return run.info.run_id, f"models:/{name}/{version}"


def pyfunc_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The flat input in MLflow-friendly types: numbers and flags as doubles (blank = NaN), text as text.

    Registry fields are often blank; MLflow cannot hold a missing value in an integer or
    boolean column, so those travel as doubles (validation reads 1.0/0.0 back as flags).
    """
    out = frame.copy()
    for col in out.columns:
        if col in ("year",):
            continue
        if pd.api.types.is_bool_dtype(out[col]) or pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].astype("Float64").astype("float64")
        else:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def optional_schema(frame: pd.DataFrame):
    """An MLflow input schema with every column optional (a registry may leave any field blank)."""
    from mlflow.types import ColSpec, Schema

    cols = []
    for col in frame.columns:
        if col == "year":
            kind = "long"
        elif pd.api.types.is_numeric_dtype(frame[col]):
            kind = "double"
        else:
            kind = "string"
        cols.append(ColSpec(kind, col, required=col in ("household_id", "year", "idhogar", "Id")))
    return Schema(cols)


def flat_metrics(report: dict) -> dict[str, float]:
    """Headline numbers of a report: binary metrics + the main-budget row, or the multiclass metrics."""
    out: dict[str, float] = {}
    if "multiclass" in report:
        mc = report["multiclass"]
        out.update({k: mc[k] for k in ("macro_f1", "accuracy", "log_loss") if mc.get(k) is not None})
        if mc.get("auc_poor") is not None:
            out["auc"] = mc["auc_poor"]
        return out
    out.update({k: v for k, v in report["metrics"].items() if isinstance(v, (int, float)) and v is not None})
    main = report["main"]
    for k in ("coverage_of_poor", "precision", "inclusion_error", "exclusion_error"):
        if main.get(k) is not None:
            out[k] = main[k]
    return out

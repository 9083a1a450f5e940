"""What `tpas train / promote / compare / predict / evaluate` do (the CLI only parses options).

Each function returns printable lines; the last line of `train` is the model URI, e.g.
``model_uri: models:/tpas-poverty/3``, so scripts can pick it up.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tpas.config import Params
from tpas.errors import DataError
from tpas.settings import get_settings


def training_set_dir(task: str) -> Path:
    """Default location of a task's training set in the data folder."""
    return get_settings().data_dir / "training" / task


def tuned_params_path(task: str) -> Path:
    """Where `tpas tune` writes the best LightGBM parameters that `tpas train` reads."""
    return get_settings().data_dir / "tuning" / f"{task}.best.json"


def is_training_set(path: Path) -> bool:
    """A folder written by `tpas features build` (a panel also has a manifest.json, but no dataset)."""
    return (Path(path) / "manifest.json").exists() and (Path(path) / "dataset.parquet").exists()


def resolve_training_set(task: str, data: Path | None, params: Params):
    """A loaded training set: `data` is a training-set folder, raw data (built first), or None (default)."""
    from features.build import build_training_set
    from training.trainer import load_training_set

    if data is None:
        data = training_set_dir(task)
        if not is_training_set(data):
            raise DataError(f"no training set for {task} at {data}; build one with "
                            f"`tpas features build --task {task} --data DATA --out {data}` or pass --data")
    if is_training_set(data):
        ts = load_training_set(data)
        if ts.task != task:
            raise DataError(f"{data} holds a {ts.task} training set, not {task}")
        return ts
    out = training_set_dir(task)
    build_training_set(task, data, out, params)
    return load_training_set(out)


def tuned_overrides(task: str) -> dict | None:
    path = tuned_params_path(task)
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))["params"]
    return None


def _input_example(ts, n: int = 2) -> pd.DataFrame | None:
    """A few raw records of the training data in the model's input form (for MLflow's signature)."""
    src = Path(ts.manifest["source"]["path"])
    try:
        if ts.task == "idb-level":
            from features.sources.idb import read_survey

            persons, _ = read_survey(src)
            first = persons["idhogar"].drop_duplicates().head(n)
            return persons[persons["idhogar"].isin(first)].drop(columns=["Target"], errors="ignore") \
                .reset_index(drop=True)
        from features.records import HouseholdRecords, records_to_frame
        from features.sources.registry import load_registry

        last = ts.manifest["time_range"]["last_year"]
        records, _ = load_registry(src, years=[last - 1, last])
        ids = records.households.loc[records.households["year"] == last, "household_id"].head(n)
        from features.schema import pii_columns

        sample = records.select_households(ids)
        pii = pii_columns()
        # Logged with the model: never a name, ID-card or phone number, even synthetic ones.
        sample = HouseholdRecords(sample.households.assign(**{c: None for c in pii if c in sample.households}),
                                  sample.members.assign(**{c: None for c in pii if c in sample.members}))
        return records_to_frame(sample)
    except (OSError, DataError):
        return None  # the source moved: log the model without an example rather than fail the run


def train(task: str, data: Path | None, kind: str, params: Params, promote_after: bool = False) -> list[str]:
    """Fit, evaluate, log and register a model; optionally promote it through the gate."""
    from training import plots
    from training.evaluate import report_markdown
    from training.tracking import flat_metrics, log_model_run, promote
    from training.trainer import fit_risk_model

    ts = resolve_training_set(task, data, params)
    overrides = tuned_overrides(task) if kind == "lightgbm" else None
    fit = fit_risk_model(ts, kind, params, overrides)
    metrics = flat_metrics(fit.report)

    figures = {}
    artifacts: dict = {"reference/reference.parquet": fit.reference,
                       "evaluation/heldout_predictions.parquet": fit.test_frame}
    if task != "idb-level":
        y, risk = fit.test_frame["label"].to_numpy(), fit.test_frame["risk"].to_numpy()
        figures = {"roc.png": plots.roc_figure(y, {kind: risk}),
                   "calibration.png": plots.calibration_figure(y, {kind: risk}),
                   "budget_curve.png": plots.budget_curve_figure(y, {kind: risk})}
        if fit.report["groups"]:
            figures["groups.png"] = plots.group_figure(pd.DataFrame(fit.report["groups"]))
        artifacts["evaluation/report.md"] = report_markdown(fit.report, title=f"{task} — {kind} (held-out)")
        artifacts["evaluation/groups.csv"] = pd.DataFrame(fit.report["groups"]).to_csv(index=False)
    if kind == "lightgbm":
        figures["shap_summary.png"] = shap_summary_figure(fit.model, fit.reference)
    extra = ({"lightgbm": {**params.train.lightgbm_for(task).model_dump(), **(overrides or {})}}
             if kind == "lightgbm" else {})
    extra.update({"calibration": fit.model.metadata.get("calibration"), "training_rows":
                  int(ts.manifest["rows"].get("train", ts.manifest["rows"].get("cv", 0))),
                  "tuned": overrides is not None})
    run_id, uri = log_model_run(task=task, kind=kind, fit=fit, ts=ts, params=params, extra_params=extra,
                                artifacts=artifacts, figures=figures, input_example=_input_example(ts))
    lines = [f"{task} / {kind}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()
                                              if k in ("auc", "pr_auc", "ece", "exclusion_error", "macro_f1",
                                                       "coverage_of_poor")),
             f"trained in {fit.train_seconds:.1f} s; MLflow run {run_id}"]
    if promote_after:
        lines.append(promote(task, uri.rsplit("/", 1)[-1], params))
    lines.append(f"model_uri: {uri}")
    return lines


def shap_summary_figure(model, reference: pd.DataFrame, n: int = 2000):
    """SHAP beeswarm of the model's margin on a sample of the reference rows (analyst plot)."""
    import shap
    from matplotlib.figure import Figure

    X = reference[model.feature_names].head(n)
    contrib = model.estimator.contributions(X)
    if contrib.ndim == 3:  # multiclass: explain P(poorest level)
        contrib = contrib[:, 0, :]
    expl = shap.Explanation(values=contrib[:, :-1], base_values=contrib[:, -1], data=X.to_numpy(),
                            feature_names=model.feature_names)
    import matplotlib.pyplot as plt  # shap draws on pyplot's current figure

    shap.plots.beeswarm(expl, max_display=15, show=False)
    fig = plt.gcf()
    fig.set_size_inches(9, 7)
    fig.tight_layout()
    plt.close(fig)
    assert isinstance(fig, Figure)
    return fig


def compare(task: str) -> pd.DataFrame:
    """Runs of a task side by side: model, data hash, AUC, exclusion error, calibration, training time."""
    import mlflow

    from training.tracking import configure, experiment_id

    configure()
    runs = mlflow.search_runs(experiment_ids=[experiment_id(task)], order_by=["start_time DESC"])
    if runs.empty:
        return runs
    cols = {"tags.model_kind": "model", "tags.data_sha256": "data", "metrics.heldout_auc": "auc",
            "metrics.heldout_exclusion_error": "exclusion_err", "metrics.heldout_coverage_of_poor": "coverage",
            "metrics.heldout_ece": "calib_err", "metrics.heldout_macro_f1": "macro_f1",
            "metrics.train_seconds": "train_s", "run_id": "run", "start_time": "started"}
    out = runs[[c for c in cols if c in runs.columns]].rename(columns=cols)
    if "data" in out:
        out["data"] = out["data"].str[:10]
    if "run" in out:
        out["run"] = out["run"].str[:8]
    if "started" in out:
        out["started"] = pd.to_datetime(out["started"]).dt.strftime("%Y-%m-%d %H:%M")
    return out.dropna(axis=1, how="all")


def read_scoring_input(task: str, path: Path):
    """Records to score from a file or folder: registry export/panel (registry tasks) or survey (idb)."""
    if task == "idb-level":
        from features.sources.idb import read_survey

        persons, report = read_survey(path)
        return persons.drop(columns=["Target"], errors="ignore"), report
    from features.sources.registry import load_registry

    return load_registry(path)


def predict(task: str, model_uri: str | None, input_path: Path, out: Path, year: int | None = None,
            top_k: int = 5) -> list[str]:
    """Score raw records with a registered model (default: the task's champion) into CSV or Parquet."""
    from training.tracking import CHAMPION, load_bundle, model_name

    uri = model_uri or f"models:/{model_name(task)}@{CHAMPION}"
    t0 = time.perf_counter()
    model = load_bundle(uri)
    if model.task != task:
        raise DataError(f"{uri} is a {model.task} model, not {task}")
    records, report = read_scoring_input(task, input_path)
    scored = model.predict(records, year=year, top_k=top_k) if task != "idb-level" else model.predict(records)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        scored.to_parquet(out, index=False)
    else:
        scored.to_csv(out, index=False)
    rejects = out.with_name(out.stem + ".rejects.csv")
    report.write_rejects(rejects)
    return [report.summary(),
            f"scored {len(scored):,} households with {uri} in {time.perf_counter() - t0:.1f} s -> {out}",
            f"rejected records: {report.n_rejected:,} (see {rejects})"]


def evaluate(task: str, model_uri: str | None, data: Path | None, params: Params) -> tuple[str, dict]:
    """Evaluate a registered model as targeting on labelled data; returns (markdown, report).

    `data`: a training-set folder (its held-out ``test`` rows), raw labelled records (a registry
    export / panel: every labelled wave, labels built here, features by the model's own
    featurizer), or the IDB survey (with Target). Default: the task's training set.
    """
    from features.labels import poverty_labels, relapse_labels
    from training.evaluate import multiclass_metrics, report_markdown, targeting_report
    from training.tracking import CHAMPION, load_bundle, model_name

    uri = model_uri or f"models:/{model_name(task)}@{CHAMPION}"
    model = load_bundle(uri)
    ev = params.evaluate
    data = data or training_set_dir(task)
    if task == "idb-level":
        from features.sources.idb import household_levels, read_survey

        if is_training_set(data):
            data = Path(json.loads((Path(data) / "manifest.json").read_text())["source"]["path"])
        persons, _ = read_survey(data, require_target=True)
        levels = household_levels(persons).set_index("household_id")["level"]
        scored = model.predict(persons.drop(columns=["Target"])).set_index("household_id")
        probs = scored[[f"prob_{c}" for c in model.classes]].to_numpy()
        report = {"multiclass": multiclass_metrics(levels.reindex(scored.index).to_numpy(), probs,
                                                   labels=model.classes), "model_uri": uri, "data": str(data)}
        mc = report["multiclass"]
        md = (f"# idb-level — {uri} on {data}\n\nmacro-F1 {mc['macro_f1']:.4f}, accuracy {mc['accuracy']:.4f}, "
              f"AUC poor (levels 1-2) {mc['auc_poor']:.4f}, log loss {mc['log_loss']:.4f}, n {mc['n']:,}\n")
        return md, report
    if is_training_set(data):
        from training.trainer import load_training_set

        ts = load_training_set(data)
        test = ts.split("test")
        X = ts.X(test)
        y = test["label"].to_numpy()
        groups = ts.group_columns(test)
    else:
        from features.build import household_groups
        from features.sources.registry import load_registry

        records, _ = load_registry(data)
        labels = (poverty_labels(records, params.lines) if task == "poverty" else
                  relapse_labels(records, params.lines, params.features.relapse.near_line_multiplier))
        feats = model.features(records)
        idx = pd.MultiIndex.from_frame(labels[["household_id", "year"]])
        X = feats.reindex(idx)
        y = labels["label"].to_numpy()
        groups = household_groups(records, feats).reindex(idx).filter(like="group_") \
            .rename(columns=lambda c: c.removeprefix("group_")).reset_index(drop=True)
    risk = model.predict_risk(X)
    report = targeting_report(y, risk, groups=groups, budgets=ev.budgets, main_budget=ev.main_budget,
                              n_boot=ev.bootstrap, seed=ev.seed, min_size=ev.group_min_size)
    report["model_uri"], report["data"] = uri, str(data)
    return report_markdown(report, title=f"{task} — {uri} on {data}"), report

"""`tpas tune`: Optuna search over LightGBM's shape and learning rate, as its own step.

- Folds are built once, seeded, outside the objective (households never straddle folds), so
  every trial is judged on the same splits and trials are comparable.
- TPE sampler with median pruning after each fold; the study lives in an RDB storage
  (SQLite in the data folder by default) and resumes when run again.
- Every trial is an MLflow child run under one parent run; the best parameters are written to
  ``$TPAS_DATA_DIR/tuning/TASK.best.json``, where `tpas train` reads them.
- Objective: mean held-out AUC (panel tasks) over the folds, on the training split only (the test
  years stay untouched for the final evaluation). `idb-level`: each fold is scored by a blend of
  macro-F1 (argmax level) and AUC(poor: levels 1-2 vs rest), weights 1 - `IDB_AUC_WEIGHT` and
  `IDB_AUC_WEIGHT`, the fit using the same level weights as `tpas train` (`train.class_weight`);
  macro-F1 alone moves by about 0.01 between folds of ~800 households, and the AUC, a smoother
  measure of the same ranking, keeps the search from chasing that noise. The search starts from
  the task's settings (`train.lightgbm_by_task`), tried first, so the best file never records
  anything worse than them on these folds. Probability multipliers (`train.class_multipliers`)
  are not part of the objective.
- `search` is the same search without MLflow or storage (in memory), for nested tuning inside an
  outer cross-validation (`bench/idb_quality.py`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tpas.config import Params
from tpas.settings import get_settings


#: Weight of AUC(poor) in the idb-level objective (the rest is macro-F1).
IDB_AUC_WEIGHT = 0.5
#: Levels counted as poor in the idb-level AUC (extreme and moderate poverty).
POOR_LEVELS = (1, 2)


def build_folds(ts, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Index pairs (train, validation) over the training rows, grouped by household, seeded."""
    frame = ts.dataset if ts.task == "idb-level" else ts.split("train")
    return group_folds(frame["label"].to_numpy(), frame["household_id"].to_numpy(), n_folds, seed)


def group_folds(labels: np.ndarray, households: np.ndarray, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (train, validation) position pairs over rows, a household never in two folds, seeded."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in splitter.split(np.zeros(len(labels)), labels, households)]


def suggest(trial) -> dict:
    """The search space (LightGBM parameters as `params.train.lightgbm` names them)."""
    return {
        "num_boost_round": trial.suggest_int("num_boost_round", 100, 600, step=50),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 63),
        "max_depth": trial.suggest_int("max_depth", 3, 8),
        "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 20.0, log=True),
    }


def fold_score(task: str, y_true: np.ndarray, margin: np.ndarray, classes=None) -> float:
    """Higher is better: AUC (binary), or for multiclass margins (n, k) the blend of `fold_metrics`."""
    from sklearn.metrics import roc_auc_score

    if margin.ndim == 2:
        return fold_metrics(y_true, margin, classes)["objective"]
    return float(roc_auc_score(y_true, margin))


def fold_metrics(y_true: np.ndarray, margin: np.ndarray, classes=None) -> dict[str, float]:
    """Multiclass fold quality: ``macro_f1`` (argmax over all k levels), ``auc_poor`` and their ``objective`` blend.

    y_true: (n,) class indices 0..k-1; margin: (n, k) raw scores; classes: the levels of the columns
    (default 1..k), for which of them are poor (`POOR_LEVELS`).
    """
    from sklearn.metrics import f1_score, roc_auc_score

    k = margin.shape[1]
    levels = np.asarray(classes) if classes is not None else np.arange(1, k + 1)
    z = np.exp(margin - margin.max(axis=1, keepdims=True))
    probs = z / z.sum(axis=1, keepdims=True)
    f1 = float(f1_score(y_true, probs.argmax(axis=1), labels=np.arange(k), average="macro", zero_division=0))
    poor_cols = np.isin(levels, POOR_LEVELS)
    poor = poor_cols[np.asarray(y_true)]
    auc = float(roc_auc_score(poor, probs[:, poor_cols].sum(axis=1))) if 0 < poor.sum() < len(poor) else float("nan")
    objective = f1 if auc != auc else (1 - IDB_AUC_WEIGHT) * f1 + IDB_AUC_WEIGHT * auc
    return {"macro_f1": f1, "auc_poor": auc, "objective": float(objective)}


def start_params(task: str, params: Params) -> dict:
    """The task's configured settings as a trial of the search space (enqueued first, clipped to the space)."""
    lp = params.train.lightgbm_for(task)
    return {
        "num_boost_round": int(min(600, max(100, round(lp.num_boost_round / 50) * 50))),
        "learning_rate": float(min(0.2, max(0.02, lp.learning_rate))),
        "num_leaves": int(min(63, max(7, lp.num_leaves))),
        "max_depth": int(min(8, max(3, lp.max_depth if lp.max_depth > 0 else 8))),
        "min_child_samples": int(min(200, max(10, lp.min_child_samples))),
        "feature_fraction": float(min(1.0, max(0.4, lp.feature_fraction))),
        "bagging_fraction": float(min(1.0, max(0.5, lp.bagging_fraction))),
        "lambda_l2": float(min(20.0, max(1e-3, lp.lambda_l2))),
    }


def score_trial(task: str, overrides: dict, X: pd.DataFrame, y: np.ndarray, folds, params: Params,
                classes=None, trial=None) -> dict[str, float]:
    """Fit and score `overrides` on each fold; report the running mean to `trial` (pruning).

    X: (n, p); y: (n,) labels (binary) or class indices 0..k-1 (multiclass, `classes` the levels).
    Returns ``score`` (mean fold score, higher is better), ``score_sd`` and, multiclass, the mean
    ``macro_f1`` and ``auc_poor``. Raises `optuna.TrialPruned` when the trial's pruner says so.
    """
    from training.trainer import class_sample_weights, make_estimator

    n_classes = len(classes) if classes is not None else 2
    scores, parts = [], []
    for step, (tr, va) in enumerate(folds):
        est = make_estimator("lightgbm", task, params, overrides, n_classes=n_classes)
        weights = class_sample_weights(y[tr], params.train, n_classes) if n_classes > 2 else None
        est.fit(X.iloc[tr], y[tr], sample_weight=weights)
        margin = np.asarray(est.margin(X.iloc[va]))
        if margin.ndim == 2:
            parts.append(fold_metrics(y[va], margin, classes))
            scores.append(parts[-1]["objective"])
        else:
            scores.append(fold_score(task, y[va], margin, classes))
        if trial is not None:
            trial.report(float(np.mean(scores)), step)
            if trial.should_prune():
                import optuna

                raise optuna.TrialPruned()
    out = {"score": float(np.mean(scores)), "score_sd": float(np.std(scores))}
    if parts:
        out["macro_f1"] = float(np.mean([p["macro_f1"] for p in parts]))
        out["auc_poor"] = float(np.nanmean([p["auc_poor"] for p in parts]))
    return out


def _study(task: str, params: Params, name: str | None = None, storage=None):
    import optuna

    study = optuna.create_study(
        study_name=name, storage=storage, load_if_exists=name is not None,
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=params.tune.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))
    if not study.trials:  # a fresh study tries the task's configured settings first
        study.enqueue_trial(start_params(task, params))
    return study


def search(task: str, X: pd.DataFrame, y: np.ndarray, households: np.ndarray, params: Params, trials: int,
           classes=None) -> tuple[dict, dict]:
    """In-memory search (no MLflow, no storage) over (X, y) with folds built once from `params.tune`.

    For nested tuning: pass only an outer fold's training households. Returns (best parameters,
    their `score_trial` result).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folds = group_folds(np.asarray(y), np.asarray(households), params.tune.folds, params.tune.seed)
    study = _study(task, params)

    def objective(trial) -> float:
        res = score_trial(task, suggest(trial), X, y, folds, params, classes, trial)
        for key, value in res.items():
            trial.set_user_attr(key, value)
        return res["score"]

    study.optimize(objective, n_trials=trials)
    return dict(study.best_trial.params), dict(study.best_trial.user_attrs)


def tune(task: str, trials: int, params: Params, data: Path | None = None, storage: str | None = None) -> list[str]:
    """Run (or resume) the task's study for `trials` more trials and write the best parameters."""
    import mlflow
    import optuna

    from training.commands import resolve_training_set, tuned_params_path
    from training.tracking import configure, experiment_id

    ts = resolve_training_set(task, data, params)
    frame = ts.dataset if task == "idb-level" else ts.split("train")
    X = ts.X(frame)
    y = frame["label"].to_numpy()
    classes = None
    if task == "idb-level":
        classes = np.unique(y)
        y = np.searchsorted(classes, y)
    folds = build_folds(ts, params.tune.folds, params.tune.seed)

    settings = get_settings()
    settings.ensure_data_dir()
    storage = storage or f"sqlite:///{(settings.data_dir / 'optuna.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The idb-level objective changed from macro-F1 to the blend: a new study name, so no old value is compared.
    name = f"tpas-{task}-{ts.manifest['source']['sha256'][:12]}" + ("-f1auc" if task == "idb-level" else "")
    study = _study(task, params, name=name, storage=storage)

    configure()
    exp = experiment_id(task)

    def objective(trial) -> float:
        overrides = suggest(trial)
        with mlflow.start_run(experiment_id=exp, run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params({**overrides, "trial": trial.number})
            try:
                res = score_trial(task, overrides, X, y, folds, params, classes, trial)
            except optuna.TrialPruned:
                mlflow.set_tag("state", "pruned")
                raise
            mlflow.log_metric("cv_score", res["score"])
            mlflow.log_metric("cv_score_sd", res["score_sd"])
            for key in ("macro_f1", "auc_poor"):
                if key in res:
                    mlflow.log_metric(f"cv_{key}", res[key])
                    trial.set_user_attr(key, res[key])
        return res["score"]

    t0 = time.perf_counter()
    with mlflow.start_run(experiment_id=exp, run_name=f"tune-{task}") as parent:
        mlflow.set_tags({"task": task, "model_kind": "tuning", "data_sha256": ts.manifest["source"]["sha256"]})
        study.optimize(objective, n_trials=trials, timeout=params.tune.timeout_seconds)
        best = study.best_trial
        mlflow.log_params({f"best_{k}": v for k, v in best.params.items()})
        mlflow.log_metric("best_cv_score", best.value)
    out = tuned_params_path(task)
    out.parent.mkdir(parents=True, exist_ok=True)
    metric = "macro_f1" if task == "idb-level" else "auc"
    cv = {"cv_auc": best.value} if task != "idb-level" else {
        "cv_macro_f1": best.user_attrs.get("macro_f1"), "cv_auc_poor": best.user_attrs.get("auc_poor"),
        "cv_objective": best.value, "objective": f"{1 - IDB_AUC_WEIGHT:g} * macro_f1 + {IDB_AUC_WEIGHT:g} * auc_poor"}
    out.write_text(json.dumps({"task": task, "params": best.params, **cv,
                               "study": study.study_name, "storage": storage, "trials": len(study.trials),
                               "folds": params.tune.folds, "seed": params.tune.seed,
                               "parent_run": parent.info.run_id}, indent=2), encoding="utf-8")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    return [f"study {study.study_name}: {len(study.trials)} trials ({len(done)} complete, {len(pruned)} pruned) "
            f"in {time.perf_counter() - t0:.0f} s",
            f"best cv {metric if task != 'idb-level' else 'objective'} {best.value:.4f}"
            + (f" (macro-F1 {best.user_attrs.get('macro_f1', float('nan')):.4f}, AUC(poor) "
               f"{best.user_attrs.get('auc_poor', float('nan')):.4f})" if task == "idb-level" else "")
            + f" with {json.dumps(best.params)}",
            f"written to {out} (tpas train --task {task} reads it)"]

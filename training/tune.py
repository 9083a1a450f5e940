"""`tpas tune`: Optuna search over LightGBM's shape and learning rate, as its own step.

- Folds are built once, seeded, outside the objective (households never straddle folds), so
  every trial is judged on the same splits and trials are comparable.
- TPE sampler with median pruning after each fold; the study lives in an RDB storage
  (SQLite in the data folder by default) and resumes when run again.
- Every trial is an MLflow child run under one parent run; the best parameters are written to
  ``$TPAS_DATA_DIR/tuning/TASK.best.json``, where `tpas train` reads them.
- Objective: mean held-out AUC (panel tasks) or macro-F1 (`idb-level`) over the folds, on the
  training split only (the test years stay untouched for the final evaluation).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tpas.config import Params
from tpas.settings import get_settings


def build_folds(ts, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Index pairs (train, validation) over the training rows, grouped by household, seeded."""
    from sklearn.model_selection import StratifiedGroupKFold

    frame = ts.dataset if ts.task == "idb-level" else ts.split("train")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in splitter.split(frame, frame["label"], frame["household_id"])]


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
    """Higher is better: AUC (binary) or macro-F1 of the argmax (multiclass)."""
    from sklearn.metrics import f1_score, roc_auc_score

    if margin.ndim == 2:
        return float(f1_score(y_true, margin.argmax(axis=1), average="macro"))
    return float(roc_auc_score(y_true, margin))


def tune(task: str, trials: int, params: Params, data: Path | None = None, storage: str | None = None) -> list[str]:
    """Run (or resume) the task's study for `trials` more trials and write the best parameters."""
    import mlflow
    import optuna

    from training.commands import resolve_training_set, tuned_params_path
    from training.tracking import configure, experiment_id
    from training.trainer import make_estimator

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
    study = optuna.create_study(
        study_name=f"tpas-{task}-{ts.manifest['source']['sha256'][:12]}", storage=storage, load_if_exists=True,
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=params.tune.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))

    configure()
    exp = experiment_id(task)

    def objective(trial) -> float:
        overrides = suggest(trial)
        scores = []
        with mlflow.start_run(experiment_id=exp, run_name=f"trial-{trial.number}", nested=True):
            mlflow.log_params({**overrides, "trial": trial.number})
            for step, (tr, va) in enumerate(folds):
                est = make_estimator("lightgbm", task, params, overrides,
                                     n_classes=len(classes) if classes is not None else 2)
                est.fit(X.iloc[tr], y[tr])
                scores.append(fold_score(task, y[va], est.margin(X.iloc[va]), classes))
                trial.report(float(np.mean(scores)), step)
                if trial.should_prune():
                    mlflow.set_tag("state", "pruned")
                    mlflow.log_metric("cv_score", float(np.mean(scores)))
                    raise optuna.TrialPruned()
            value = float(np.mean(scores))
            mlflow.log_metric("cv_score", value)
            mlflow.log_metric("cv_score_sd", float(np.std(scores)))
        return value

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
    out.write_text(json.dumps({"task": task, "params": best.params, "cv_" + metric: best.value,
                               "study": study.study_name, "storage": storage, "trials": len(study.trials),
                               "folds": params.tune.folds, "seed": params.tune.seed,
                               "parent_run": parent.info.run_id}, indent=2), encoding="utf-8")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    return [f"study {study.study_name}: {len(study.trials)} trials ({len(done)} complete, {len(pruned)} pruned) "
            f"in {time.perf_counter() - t0:.0f} s",
            f"best cv {metric} {best.value:.4f} with {json.dumps(best.params)}",
            f"written to {out} (tpas train --task {task} reads it)"]

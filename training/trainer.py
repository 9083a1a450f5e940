"""Fitting a risk model from a training set: estimator, cross-fitted calibration, held-out evaluation.

No MLflow here (see `training.tracking`): `fit_risk_model` takes the training set written by
`tpas features build` and returns the fitted `RiskModel` and its evaluation on held-out data:

- panel tasks: fit on the ``train`` split, evaluate on ``test`` (later years, and households
  never seen in training);
- `idb-level`: household-level stratified k-fold cross-validation on the shipped survey
  (the folds of the training set), then a final fit on every household. Class balance for
  macro-F1: level weights in the fit (`train.class_weight`) and, optionally, per-level
  probability multipliers chosen on out-of-fold predictions (`train.class_multipliers`), nested
  so that the fold being scored never helps choose them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from models.bundle import RiskModel
from models.calibration import ScoreCalibrator, out_of_fold_margins
from models.estimators import LightGBMRisk, OfficialRules, ProxyMeansTest, Scorecard
from tpas.config import Params, TrainParams
from tpas.errors import DataError
from training.evaluate import multiclass_metrics, targeting_report


@dataclass
class TrainingSet:
    """A training set as written by `features.build`."""

    path: Path
    manifest: dict
    dataset: pd.DataFrame
    featurizer: Any

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def feature_columns(self) -> list[str]:
        return list(self.manifest["feature_columns"])

    def split(self, name: str) -> pd.DataFrame:
        return self.dataset[self.dataset["split"] == name]

    def X(self, frame: pd.DataFrame) -> pd.DataFrame:
        keys = ["household_id", "year"] if "year" in frame.columns else ["household_id"]
        return frame.set_index(keys)[self.feature_columns].astype("float32")

    def group_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        cols = [c for c in frame.columns if c.startswith("group_")]
        return frame[cols].rename(columns=lambda c: c.removeprefix("group_")).reset_index(drop=True)


def load_training_set(path: str | Path) -> TrainingSet:
    """Read a training-set folder (dataset.parquet, featurizer.joblib, manifest.json)."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise DataError(f"{path} is not a training set (no manifest.json); build one with "
                        f"`tpas features build --task TASK --data DATA --out {path}`")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    return TrainingSet(path, manifest, pd.read_parquet(path / "dataset.parquet"),
                       joblib.load(path / manifest.get("featurizer", "featurizer.joblib")))


def lightgbm_settings(task: str, params: Params, overrides: dict | None = None) -> dict:
    """The LightGBM settings a `task` is fitted with: `train.lightgbm`, then `train.lightgbm_by_task[task]`,
    then `overrides` (the tuned best parameters of `tpas tune`), each over the one before."""
    return {**params.train.lightgbm_for(task).model_dump(), **(overrides or {})}


def make_estimator(kind: str, task: str, params: Params, overrides: dict | None = None, n_classes: int = 2):
    """A fresh, unfitted estimator of `kind` with the configured (or tuned) parameters.

    LightGBM: the task's settings of `lightgbm_settings` (registry default, per-task, tuned).
    """
    if kind == "lightgbm":
        lp = lightgbm_settings(task, params, overrides)
        rounds = int(lp.pop("num_boost_round"))
        from features.featurizer import MONOTONE

        return LightGBMRisk(lp, num_boost_round=rounds, n_classes=n_classes, seed=params.train.seed,
                            monotone=MONOTONE if task in ("poverty", "relapse") else None)
    if kind == "pmt":
        return ProxyMeansTest(C=(overrides or {}).get("C", params.train.pmt_C), n_classes=n_classes)
    if kind == "scorecard":
        if task == "idb-level":
            raise DataError("the scorecard reads registry indicators; it is not defined for idb-level")
        return Scorecard()
    if kind == "rules":
        if task != "relapse":
            raise DataError("the official rule model predicts relapse only (use --task relapse)")
        return OfficialRules(sharp_drop=params.train.rules_sharp_drop)
    raise DataError(f"unknown model kind {kind!r} (lightgbm, pmt, scorecard or rules)")


def binary_columns(X: pd.DataFrame) -> np.ndarray:
    """Which features only take the values 0/1 in training (worded yes/no in reasons)."""
    v = X.to_numpy(dtype=np.float64)
    return np.array([np.isin(v[~np.isnan(v[:, j]), j], (0.0, 1.0)).all() for j in range(v.shape[1])])


@dataclass
class FitResult:
    model: RiskModel
    report: dict
    test_frame: pd.DataFrame        # household_id, year, label, risk (+ groups) on held-out rows
    train_seconds: float
    reference: pd.DataFrame         # feature rows + risk kept for monitoring


def fit_risk_model(ts: TrainingSet, kind: str, params: Params, overrides: dict | None = None) -> FitResult:
    """Fit `kind` on a training set and evaluate it on held-out data (see module docstring)."""
    if ts.task == "idb-level":
        return _fit_multiclass(ts, kind, params, overrides)
    train, test = ts.split("train"), ts.split("test")
    if train.empty or test.empty:
        raise DataError(f"{ts.path}: the training set needs train and test rows (has {dict(ts.manifest['rows'])})")
    X_tr, y_tr = ts.X(train), train["label"].to_numpy()
    X_te, y_te = ts.X(test), test["label"].to_numpy()
    make = lambda: make_estimator(kind, ts.task, params, overrides)  # noqa: E731

    t0 = time.perf_counter()
    estimator = make().fit(X_tr, y_tr)
    if kind in ("lightgbm", "pmt"):
        margins = out_of_fold_margins(make, X_tr, y_tr, train["household_id"].to_numpy(),
                                      folds=params.train.calibration_folds)
    else:  # nothing learned from labels: in-sample margins are honest
        margins = estimator.margin(X_tr)
    calibrator = ScoreCalibrator(params.train.calibration, folds=params.train.calibration_folds,
                                 seed=params.train.seed).fit(margins, y_tr)
    seconds = time.perf_counter() - t0

    tiers = params.tiers.get(ts.task)
    model = RiskModel(
        task=ts.task, kind=kind, featurizer=ts.featurizer, estimator=estimator, calibrator=calibrator,
        feature_info=ts.featurizer.feature_info_, binary_features=binary_columns(X_tr),
        tiers=(tiers.low, tiers.high) if tiers else (60.0, 80.0),
        near_line_multiplier=params.features.relapse.near_line_multiplier,
        metadata={"training_set": str(ts.path), "data_sha256": ts.manifest["source"]["sha256"],
                  "calibration": calibrator.method_, "calibration_cv_log_loss": calibrator.cv_log_loss_},
    )
    risk = model.predict_risk(X_te)
    groups = ts.group_columns(test)
    ev = params.evaluate
    report = targeting_report(y_te, risk, groups=groups, budgets=ev.budgets, main_budget=ev.main_budget,
                              n_boot=ev.bootstrap, seed=ev.seed)
    test_frame = test[["household_id", "year", "label"]].reset_index(drop=True).assign(risk=risk)
    ref = X_tr.sample(n=min(params.train.reference_rows, len(X_tr)), random_state=params.train.seed)
    reference = ref.reset_index().assign(risk=model.predict_risk(ref))
    return FitResult(model, report, test_frame, seconds, reference)


# -- multiclass (idb-level) --------------------------------------------------------------------------------------

#: Candidate values of one level's probability multiplier (log-spaced, 1/4 to 4).
MULTIPLIER_GRID = np.exp(np.linspace(np.log(0.25), np.log(4.0), 25))


def class_sample_weights(y: np.ndarray, train: TrainParams, n_classes: int | None = None) -> np.ndarray | None:
    """Per-household weights of a multiclass fit, or None when `train.class_weight` is ``none``.

    y: shape (n,), class indices 0..k-1. ``balanced``: level c weighs (n / (k * n_c)) ** power
    (`train.class_weight_power`), rescaled to mean 1 so that LightGBM's regularisation (lambda_l2,
    min hessian) keeps the scale it has without weights. Returns shape (n,).
    """
    if train.class_weight == "none" or train.class_weight_power == 0:
        return None
    y = np.asarray(y, dtype=np.int64)
    k = n_classes or int(y.max()) + 1
    counts = np.bincount(y, minlength=k).astype(np.float64)
    per_level = (len(y) / (k * np.maximum(counts, 1.0))) ** train.class_weight_power
    w = per_level[y]
    return w / w.mean()


def _macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Macro-F1 over the k levels (a level never predicted nor present counts 0), from the confusion counts."""
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(axis=0) + cm.sum(axis=1)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)))


def fit_class_multipliers(y: np.ndarray, probs: np.ndarray, grid: np.ndarray = MULTIPLIER_GRID,
                          passes: int = 3) -> np.ndarray:
    """Per-level probability multipliers that maximise the macro-F1 of argmax(probs * w).

    y: shape (n,), class indices 0..k-1; probs: shape (n, k), out-of-fold probabilities of the same
    households (never in-sample ones: the multipliers would learn the model's overfit). Coordinate
    ascent over `grid`, one level at a time, `passes` times; a change must improve macro-F1 strictly,
    so ties keep w = 1. Returns shape (k,), the largest multiplier scaled to 1.
    """
    y = np.asarray(y, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    k = probs.shape[1]
    w = np.ones(k)
    best = _macro_f1(y, probs.argmax(axis=1), k)
    for _ in range(passes):
        improved = False
        for c in range(k):
            for g in grid:
                trial = w.copy()
                trial[c] = g
                score = _macro_f1(y, (probs * trial).argmax(axis=1), k)
                if score > best + 1e-12:
                    best, w, improved = score, trial, True
        if not improved:
            break
    return w / w.max()


def _softmax(margin: np.ndarray) -> np.ndarray:
    z = np.exp(margin - margin.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _reweight(probs: np.ndarray, multipliers: np.ndarray | None) -> np.ndarray:
    if multipliers is None:
        return probs
    p = probs * multipliers
    return p / p.sum(axis=1, keepdims=True)


def _fit_weighted(make, X: pd.DataFrame, y: np.ndarray, train: TrainParams, n_classes: int):
    return make().fit(X, y, sample_weight=class_sample_weights(y, train, n_classes))


def _inner_oof(make, X: pd.DataFrame, y: np.ndarray, train: TrainParams, n_classes: int) -> np.ndarray:
    """Out-of-fold probabilities over (X, y) from `train.class_multiplier_folds` stratified inner folds."""
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros((len(X), n_classes))
    splitter = StratifiedKFold(n_splits=train.class_multiplier_folds, shuffle=True, random_state=train.seed)
    for tr, te in splitter.split(np.zeros(len(y)), y):
        out[te] = _softmax(np.asarray(_fit_weighted(make, X.iloc[tr], y[tr], train, n_classes).margin(X.iloc[te])))
    return out


@dataclass
class CrossValidated:
    """Out-of-fold predictions of a multiclass cross-validation."""

    probs: np.ndarray                   # (n, k) as scored: with the fold's multipliers applied, if any
    raw_probs: np.ndarray               # (n, k) the model's own softmax, no multipliers
    multipliers: dict[int, np.ndarray]  # fold -> multipliers chosen without that fold (empty when off)


def cross_validate_multiclass(make, X: pd.DataFrame, y: np.ndarray, fold: np.ndarray, train: TrainParams,
                              n_classes: int) -> CrossValidated:
    """Out-of-fold probabilities of `make()` over the given folds, with `train`'s class balance.

    X: (n, p) feature rows; y: (n,) class indices 0..k-1; fold: (n,) fold number per row. For each
    fold f, the estimator is fitted (with `class_sample_weights`) on the other folds only; with
    ``train.class_multipliers == "oof"`` the multipliers applied to fold f are fitted by
    `fit_class_multipliers` on inner out-of-fold predictions *of the other folds*, so neither the
    model nor its multipliers see fold f's labels.
    """
    fold = np.asarray(fold)
    raw = np.zeros((len(X), n_classes))
    probs = np.zeros_like(raw)
    multipliers: dict[int, np.ndarray] = {}
    for f in sorted(np.unique(fold)):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        raw[te] = _softmax(np.asarray(_fit_weighted(make, X.iloc[tr], y[tr], train, n_classes).margin(X.iloc[te])))
        w = None
        if train.class_multipliers == "oof":
            w = fit_class_multipliers(y[tr], _inner_oof(make, X.iloc[tr], y[tr], train, n_classes))
            multipliers[int(f)] = w
        probs[te] = _reweight(raw[te], w)
    return CrossValidated(probs, raw, multipliers)


def _fit_multiclass(ts: TrainingSet, kind: str, params: Params, overrides: dict | None) -> FitResult:
    """CV on the training set's folds (the held-out report), then the final model on every household."""
    data = ts.dataset
    X, y = ts.X(data), data["label"].to_numpy().astype(int)
    classes = tuple(int(c) for c in sorted(np.unique(y)))
    yi = np.searchsorted(classes, y)
    k = len(classes)
    train = params.train
    make = lambda: make_estimator(kind, ts.task, params, overrides, n_classes=k)  # noqa: E731
    fold = data["fold"].to_numpy()
    t0 = time.perf_counter()
    cv = cross_validate_multiclass(make, X, yi, fold, train, k)
    estimator = _fit_weighted(make, X, yi, train, k)
    # The final model's multipliers: chosen on the CV's out-of-fold predictions, like each fold's were.
    final_multipliers = fit_class_multipliers(yi, cv.raw_probs) if train.class_multipliers == "oof" else None
    seconds = time.perf_counter() - t0

    settings = {"class_weight": train.class_weight, "class_weight_power": train.class_weight_power,
                "class_multipliers": train.class_multipliers}
    if kind == "lightgbm":
        settings["lightgbm"] = lightgbm_settings(ts.task, params, overrides)
        settings["tuned"] = overrides is not None
    if final_multipliers is not None:
        settings["final_multipliers"] = {int(c): float(v) for c, v in zip(classes, final_multipliers)}
    model = RiskModel(task=ts.task, kind=kind, featurizer=ts.featurizer, estimator=estimator, calibrator=None,
                      feature_info=ts.featurizer.feature_info_, binary_features=binary_columns(X), classes=classes,
                      class_weights=final_multipliers,
                      metadata={"training_set": str(ts.path), "data_sha256": ts.manifest["source"]["sha256"],
                                **settings})
    per_fold = []
    for f in sorted(np.unique(fold)):
        m = multiclass_metrics(y[fold == f], cv.probs[fold == f], labels=classes)
        per_fold.append({"fold": int(f), "macro_f1": m["macro_f1"], "auc_poor": m["auc_poor"], "n": m["n"],
                         **({"multipliers": [float(v) for v in cv.multipliers[int(f)]]}
                            if int(f) in cv.multipliers else {})})
    report = {"multiclass": multiclass_metrics(y, cv.probs, labels=classes), "folds": int(len(per_fold)),
              "per_fold": per_fold,
              "fold_sd": {"macro_f1": float(np.std([r["macro_f1"] for r in per_fold], ddof=1)),
                          "auc_poor": float(np.std([r["auc_poor"] for r in per_fold], ddof=1))},
              "settings": settings}
    test_frame = data[["household_id", "label"]].reset_index(drop=True)
    for i, c in enumerate(classes):
        test_frame[f"prob_{c}"] = cv.probs[:, i]
    reference = X.reset_index().assign(**{f"prob_{c}": cv.probs[:, i] for i, c in enumerate(classes)})
    return FitResult(model, report, test_frame, seconds, reference)

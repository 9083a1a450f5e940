"""Fitting a risk model from a training set: estimator, cross-fitted calibration, held-out evaluation.

No MLflow here (see `training.tracking`): `fit_risk_model` takes the training set written by
`tpas features build` and returns the fitted `RiskModel` and its evaluation on held-out data:

- panel tasks: fit on the ``train`` split, evaluate on ``test`` (later years, and households
  never seen in training);
- `idb-level`: household-level stratified k-fold cross-validation on the shipped survey
  (the folds of the training set), then a final fit on every household.
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
from tpas.config import Params
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


def make_estimator(kind: str, task: str, params: Params, overrides: dict | None = None, n_classes: int = 2):
    """A fresh, unfitted estimator of `kind` with the configured (or tuned) parameters."""
    if kind == "lightgbm":
        lp = params.train.lightgbm.model_dump()
        lp.update(overrides or {})
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


def _fit_multiclass(ts: TrainingSet, kind: str, params: Params, overrides: dict | None) -> FitResult:
    data = ts.dataset
    X, y = ts.X(data), data["label"].to_numpy().astype(int)
    classes = tuple(sorted(np.unique(y)))
    yi = np.searchsorted(classes, y)
    make = lambda: make_estimator(kind, ts.task, params, overrides, n_classes=len(classes))  # noqa: E731
    oof = np.zeros((len(X), len(classes)))
    t0 = time.perf_counter()
    for fold in sorted(data["fold"].unique()):
        tr, te = (data["fold"] != fold).to_numpy(), (data["fold"] == fold).to_numpy()
        est = make().fit(X[tr], yi[tr])
        m = est.margin(X[te])
        z = np.exp(m - m.max(axis=1, keepdims=True))
        oof[te] = z / z.sum(axis=1, keepdims=True)
    estimator = make().fit(X, yi)
    seconds = time.perf_counter() - t0
    model = RiskModel(task=ts.task, kind=kind, featurizer=ts.featurizer, estimator=estimator, calibrator=None,
                      feature_info=ts.featurizer.feature_info_, binary_features=binary_columns(X), classes=classes,
                      metadata={"training_set": str(ts.path), "data_sha256": ts.manifest["source"]["sha256"]})
    report = {"multiclass": multiclass_metrics(y, oof, labels=classes), "folds": int(data["fold"].nunique())}
    test_frame = data[["household_id", "label"]].reset_index(drop=True)
    for i, c in enumerate(classes):
        test_frame[f"prob_{c}"] = oof[:, i]
    reference = X.reset_index().assign(**{f"prob_{c}": oof[:, i] for i, c in enumerate(classes)})
    return FitResult(model, report, test_frame, seconds, reference)

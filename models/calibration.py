"""Calibrated probabilities: cross-fitted margins, then isotonic or Platt chosen on held-out folds.

Why cross-fitted: a model's margins on its own training rows are over-confident, so the
calibrator is fitted on *out-of-fold* margins (each household's margin comes from a model
that never saw that household). Which mapping (isotonic: flexible, monotone; Platt: a
logistic curve, steadier on small data) is then chosen by the log loss it reaches on folds
of those out-of-fold margins that it was not fitted on.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold, StratifiedKFold

_EPS = 1e-6


def _platt() -> LogisticRegression:
    return LogisticRegression(C=1e6, max_iter=1000)


class ScoreCalibrator:
    """Maps a margin (n,) to a probability (n,). `method`: ``auto``, ``isotonic`` or ``platt``."""

    def __init__(self, method: str = "auto", folds: int = 5, seed: int = 0):
        self.method = method
        self.folds = folds
        self.seed = seed

    @staticmethod
    def _fit_one(method: str, m: np.ndarray, y: np.ndarray):
        if method == "isotonic":
            return IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(m, y)
        return _platt().fit(m.reshape(-1, 1), y)

    @staticmethod
    def _apply(method: str, model, m: np.ndarray) -> np.ndarray:
        if method == "isotonic":
            p = model.predict(m)
        else:
            p = model.predict_proba(m.reshape(-1, 1))[:, 1]
        return np.clip(p, _EPS, 1 - _EPS)

    def fit(self, margins: np.ndarray, y: np.ndarray) -> "ScoreCalibrator":
        """Fit on out-of-fold margins; with ``auto`` choose the method by held-out log loss."""
        m = np.asarray(margins, dtype=np.float64)
        y = np.asarray(y).astype(int)
        self.cv_log_loss_ = {}
        if self.method == "auto":
            skf = StratifiedKFold(n_splits=self.folds, shuffle=True, random_state=self.seed)
            for method in ("isotonic", "platt"):
                losses = []
                for tr, te in skf.split(m.reshape(-1, 1), y):
                    model = self._fit_one(method, m[tr], y[tr])
                    losses.append(log_loss(y[te], self._apply(method, model, m[te]), labels=[0, 1]))
                self.cv_log_loss_[method] = float(np.mean(losses))
            self.method_ = min(self.cv_log_loss_, key=self.cv_log_loss_.get)
        elif self.method in ("isotonic", "platt"):
            self.method_ = self.method
        else:
            raise ValueError(f"unknown calibration method {self.method!r} (auto, isotonic or platt)")
        self.model_ = self._fit_one(self.method_, m, y)
        return self

    def predict(self, margins: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, shape (n,)."""
        return self._apply(self.method_, self.model_, np.asarray(margins, dtype=np.float64))


def out_of_fold_margins(make_estimator: Callable[[], object], X: pd.DataFrame, y: np.ndarray,
                        groups: np.ndarray, folds: int = 5) -> np.ndarray:
    """Margins of each row from a model fitted without that row's household (GroupKFold by household).

    Shapes: X (n, p), y (n,), groups (n,) household ids -> (n,) margins (or (n, k) multiclass).
    """
    n_groups = len(np.unique(groups))
    splitter = GroupKFold(n_splits=min(folds, n_groups))
    out = None
    for tr, te in splitter.split(X, y, groups):
        est = make_estimator().fit(X.iloc[tr], y[tr])
        m = est.margin(X.iloc[te])
        if out is None:
            out = np.zeros((len(X),) + np.shape(m)[1:])
        out[te] = m
    return out

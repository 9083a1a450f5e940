"""Estimators behind a risk model, all behind one small interface.

Every estimator here takes the featurizer's output (a float `DataFrame`, one row per
household) and offers:

- ``fit(X, y)``;
- ``margin(X)``: a raw risk score, higher = riskier (log-odds for the learned models), shape
  ``(n,)`` — or ``(n, k)`` for the multiclass `idb-level` LightGBM;
- ``contributions(X)``: additive per-feature contributions, shape ``(n, p + 1)`` whose last
  column is the base value, so that ``contributions(X).sum(axis=1) == margin(X)`` (exactly
  for TreeSHAP and the linear model; by construction for the scorecard and rules). LightGBM's
  TreeSHAP comes from `models.treeshap` (binary) or LightGBM's ``pred_contrib`` (multiclass).

Kinds: ``lightgbm`` (the model), ``pmt`` (proxy means test: regularised logistic regression
on the same features), ``scorecard`` (Guizhou-style points, `models/scorecard.yaml`) and
``rules`` (the official relapse-monitoring rules).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import yaml
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

SCORECARD_FILE = Path(__file__).with_name("scorecard.yaml")


class LightGBMRisk:
    """LightGBM on the featurizer's columns; exact TreeSHAP contributions.

    Binary models explain with `models.treeshap.TreeShap` (the same values as LightGBM's
    ``pred_contrib``, 15-40x faster; built on first use, kept on the instance, never pickled);
    ``contributions(X, method="pred_contrib")`` asks LightGBM itself. Multiclass always uses
    ``pred_contrib``.
    """

    #: Threads of the TreeSHAP kernel (LightGBM's own predictions keep their defaults).
    explain_threads = 2

    kind = "lightgbm"

    def __init__(self, params: dict[str, Any] | None = None, num_boost_round: int = 300, n_classes: int = 2,
                 seed: int = 0, monotone: dict[str, int] | None = None):
        self.params = dict(params or {})
        self.num_boost_round = num_boost_round
        self.n_classes = n_classes
        self.seed = seed
        #: feature -> +1 / -1: the risk may only rise / fall with it (binary tasks).
        self.monotone = monotone

    def _lgb_params(self) -> dict[str, Any]:
        base = {"verbosity": -1, "seed": self.seed, "deterministic": True, "force_row_wise": True}
        if self.n_classes > 2:
            base.update(objective="multiclass", num_class=self.n_classes)
        else:
            base.update(objective="binary")
        base.update(self.params)
        return base

    def fit(self, X: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "LightGBMRisk":
        self.feature_names_ = list(X.columns)
        params = self._lgb_params()
        # One thread on small data: OpenMP's start-up and spin-waits cost more than they give
        # below ~50k rows, and two threads on a busy 2-core machine can be 20x slower.
        if not params.get("num_threads"):  # 0 / absent: choose by size
            params["num_threads"] = 1 if len(X) < 50_000 else 2
        if self.monotone and self.n_classes == 2:
            params["monotone_constraints"] = [int(self.monotone.get(f, 0)) for f in self.feature_names_]
            params.setdefault("monotone_constraints_method", "intermediate")
        data = lgb.Dataset(X.to_numpy(dtype=np.float32), label=np.asarray(y), weight=sample_weight,
                           feature_name=self.feature_names_, free_raw_data=True)
        self.booster_ = lgb.train(params, data, num_boost_round=self.num_boost_round)
        return self

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        if list(X.columns) != self.feature_names_:
            X = X.reindex(columns=self.feature_names_)
        return X.to_numpy(dtype=np.float32)

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        return self.booster_.predict(self._matrix(X), raw_score=True)

    def contributions(self, X: pd.DataFrame, method: str = "auto") -> np.ndarray:
        """TreeSHAP values, shape (n, p + 1) (multiclass: (n, k, p + 1)), last column the base value.

        method: ``auto`` (`treeshap` for binary models, else `pred_contrib`), ``treeshap``
        (`models.treeshap`, binary only) or ``pred_contrib`` (LightGBM's own). Both give the same
        values (within 1e-9; tests/model/test_treeshap.py).
        """
        if method not in ("auto", "treeshap", "pred_contrib"):
            raise ValueError(f"unknown contributions method {method!r} (auto, treeshap or pred_contrib)")
        if method == "auto":
            method = "treeshap" if self.n_classes == 2 else "pred_contrib"
        if method == "treeshap":
            if self.n_classes != 2:
                raise ValueError("models.treeshap explains binary models only; use method='pred_contrib'")
            return self.treeshap().contributions(self._matrix(X))
        contrib = self.booster_.predict(self._matrix(X), pred_contrib=True)
        if self.n_classes > 2:  # (n, k*(p+1)) -> (n, k, p+1)
            return np.asarray(contrib).reshape(len(X), self.n_classes, -1)
        return np.asarray(contrib)

    def treeshap(self):
        """The booster's `models.treeshap.TreeShap` (built once, tables on first use; not pickled)."""
        cached = self.__dict__.get("_treeshap")
        if cached is None or cached[0] is not self.booster_:
            from models.treeshap import TreeShap

            cached = (self.booster_, TreeShap(self.booster_, num_threads=self.explain_threads))
            self.__dict__["_treeshap"] = cached
        return cached[1]

    def fingerprint(self) -> str:
        """A stable identity of the fitted model (SHA-256 of the booster's model text), for caches."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None or cached[0] is not self.booster_:
            import hashlib

            digest = hashlib.sha256(self.booster_.model_to_string().encode()).hexdigest()
            cached = (self.booster_, digest)
            self.__dict__["_fingerprint"] = cached
        return cached[1]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_treeshap", None)  # rebuilt from the booster after loading
        state.pop("_fingerprint", None)
        return state


class ProxyMeansTest:
    """Regularised logistic regression on the same features (the classic proxy means test).

    Missing values are imputed with training medians, features standardised, so the
    contributions ``coef_j * (z_j - mean_j)`` are exact and additive (mean of z is ~0).
    """

    kind = "pmt"

    def __init__(self, C: float = 0.5, max_iter: int = 2000, n_classes: int = 2):
        self.C = C
        self.max_iter = max_iter
        self.n_classes = n_classes

    def fit(self, X: pd.DataFrame, y: np.ndarray, sample_weight: np.ndarray | None = None) -> "ProxyMeansTest":
        self.feature_names_ = list(X.columns)
        raw = X.to_numpy(dtype=np.float64)
        # All-missing columns get a 0 fill so the column count never changes.
        self.imputer_ = SimpleImputer(strategy="median", keep_empty_features=True).fit(raw)
        z = self.imputer_.transform(raw)
        self.scaler_ = StandardScaler().fit(z)
        z = self.scaler_.transform(z)
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter).fit(z, np.asarray(y),
                                                                                sample_weight=sample_weight)
        self.z_mean_ = z.mean(axis=0)
        return self

    def _z(self, X: pd.DataFrame) -> np.ndarray:
        X = X.reindex(columns=self.feature_names_)
        return self.scaler_.transform(self.imputer_.transform(X.to_numpy(dtype=np.float64)))

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        m = self.model_.decision_function(self._z(X))
        return m

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        z = self._z(X)
        coef = self.model_.coef_
        if coef.shape[0] == 1:
            contrib = coef[0] * (z - self.z_mean_)
            base = self.model_.intercept_[0] + coef[0] @ self.z_mean_
            return np.column_stack([contrib, np.full(len(z), base)])
        contrib = coef[None, :, :] * (z - self.z_mean_)[:, None, :]
        base = self.model_.intercept_ + coef @ self.z_mean_
        return np.concatenate([contrib, np.broadcast_to(base[None, :, None], (len(z), len(base), 1))], axis=2)


def load_scorecard(path: str | Path = SCORECARD_FILE) -> dict[str, Any]:
    """The scorecard definition (sets, rules, points, tiers) from its readable YAML file."""
    card = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    total = sum(s["max_points"] for s in card["sets"].values())
    if total != 100:
        raise ValueError(f"{path}: the sets' max_points sum to {total}, not 100")
    return card


_OPS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less, "==": np.equal}


class Scorecard:
    """Guizhou-style points over indicator sets, 0-100 (higher = better off); margin = deficit / 100.

    Nothing is learned but the list of features; each set's lost points are its contribution,
    attributed to the set's first feature (the one its rules read first).
    """

    kind = "scorecard"

    def __init__(self, path: str | Path = SCORECARD_FILE):
        self.path = str(path)

    def fit(self, X: pd.DataFrame, y: np.ndarray | None = None, sample_weight=None) -> "Scorecard":
        self.card_ = load_scorecard(self.path)
        self.feature_names_ = list(X.columns)
        missing = {r["feature"] for s in self.card_["sets"].values() for r in s["rules"]} - set(X.columns)
        if missing:
            raise ValueError(f"scorecard needs features the featurizer does not make: {sorted(missing)}")
        return self

    def points(self, X: pd.DataFrame) -> pd.DataFrame:
        """Points per set, shape (n, sets); the first rule that matches wins, else 0."""
        out = {}
        for name, s in self.card_["sets"].items():
            pts = np.full(len(X), np.nan)
            for rule in s["rules"]:
                values = X[rule["feature"]].to_numpy(dtype=np.float64)
                hit = _OPS[rule["op"]](values, rule["value"]) & np.isnan(pts)
                pts[hit] = rule["points"]
            out[name] = np.nan_to_num(pts, nan=0.0)
        return pd.DataFrame(out, index=X.index)

    def score(self, X: pd.DataFrame) -> np.ndarray:
        """The 0-100 score (higher = better off)."""
        return self.points(X).sum(axis=1).to_numpy()

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        return (100.0 - self.score(X)) / 100.0

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        pts = self.points(X)
        contrib = np.zeros((len(X), len(self.feature_names_) + 1))
        index = {f: i for i, f in enumerate(self.feature_names_)}
        for name, s in self.card_["sets"].items():
            contrib[:, index[s["rules"][0]["feature"]]] += (s["max_points"] - pts[name].to_numpy()) / 100.0
        return contrib


class OfficialRules:
    """The official relapse-monitoring rules (DOMAIN.md) as a model.

    Flags: income under the monitoring line; unavoidable spending above last year's income;
    a sharp income drop (more than `sharp_drop` since last year). margin = number of flags +
    a tie-break that grows as income falls towards the monitoring line (so the ranking inside
    a flag count is by distance to the line, as officials would order a visit list).
    """

    kind = "rules"
    FEATURES = ("income_to_monitoring_line", "spending_to_last_income", "income_change")

    def __init__(self, sharp_drop: float = 0.3):
        self.sharp_drop = sharp_drop

    def fit(self, X: pd.DataFrame, y=None, sample_weight=None) -> "OfficialRules":
        missing = set(self.FEATURES) - set(X.columns)
        if missing:
            raise ValueError(f"the official rules need the relapse features {sorted(missing)}")
        self.feature_names_ = list(X.columns)
        return self

    def _parts(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        ratio = X["income_to_monitoring_line"].to_numpy(dtype=np.float64)
        spend = X["spending_to_last_income"].to_numpy(dtype=np.float64)
        change = X["income_change"].to_numpy(dtype=np.float64)
        return {
            "income_to_monitoring_line": (ratio < 1).astype(float) + 0.5 * np.clip(1.5 - np.nan_to_num(ratio, nan=1.5),
                                                                                  0, 1.5) / 1.5,
            "spending_to_last_income": (spend > 1).astype(float),
            "income_change": (change < -self.sharp_drop).astype(float),
        }

    def flags(self, X: pd.DataFrame) -> pd.DataFrame:
        """Which rules each household triggers (bool per rule)."""
        ratio = X["income_to_monitoring_line"].to_numpy(dtype=np.float64)
        return pd.DataFrame({
            "below_monitoring_line": ratio < 1,
            "spending_above_last_income": X["spending_to_last_income"].to_numpy(dtype=np.float64) > 1,
            "sharp_income_drop": X["income_change"].to_numpy(dtype=np.float64) < -self.sharp_drop,
        }, index=X.index)

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        return sum(self._parts(X).values())

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        contrib = np.zeros((len(X), len(self.feature_names_) + 1))
        for name, part in self._parts(X).items():
            contrib[:, self.feature_names_.index(name)] = part
        return contrib


MODEL_KINDS = ("lightgbm", "pmt", "scorecard", "rules")

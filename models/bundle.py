"""The saved model: fitted featurizer + estimator + calibrator + explanation metadata, as one object.

`RiskModel` is what MLflow stores, what `tpas predict` and batch scoring load, and what the
service serves: raw household records go in, calibrated risks, 0-100 scores, tiers and
reason codes come out. There is no other copy of the feature logic anywhere.

- Registry tasks (`poverty`, `relapse`): input `HouseholdRecords` (a panel or an export;
  earlier waves give the relapse history); output one row per household, its latest wave
  unless a year is asked for.
- `idb-level`: input the survey's person rows; output ``prob_1..prob_4`` and
  ``predicted_level`` per household.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.labels import relapse_eligible
from features.records import HouseholdRecords
from models.explain import ContributionCache, main_causes_text, probability_scale, reason_codes
from tpas.config import LinesParams

@functools.lru_cache(maxsize=16)
def _lines_params(poverty_lines: tuple[tuple[int, float], ...]) -> LinesParams:
    """The lines a model was fitted with, as `LinesParams` (validated once, not per request)."""
    return LinesParams(poverty_line=dict(poverty_lines))


TIER_LABELS = {
    "poverty": ("impoverished", "likely_impoverished", "out_of_poverty"),
    "relapse": ("high_risk", "watch", "stable"),
}


@dataclass
class RiskModel:
    """A fitted, self-contained risk model (see module docstring)."""

    task: str
    kind: str
    featurizer: Any
    estimator: Any
    calibrator: Any | None
    feature_info: list[dict]
    binary_features: np.ndarray
    tiers: tuple[float, float] = (60.0, 80.0)
    classes: tuple[int, ...] = ()
    class_weights: np.ndarray | None = None
    near_line_multiplier: float = 1.5
    metadata: dict = field(default_factory=dict)

    # -- features and raw scores ---------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        return list(self.featurizer.feature_names_)

    def features(self, records) -> pd.DataFrame:
        """The featurizer's rows for these records (all waves for a panel)."""
        return self.featurizer.transform(records)

    def select_waves(self, X: pd.DataFrame, year: int | None = None) -> pd.DataFrame:
        """One row per household: the wave of `year`, else its latest wave."""
        if "year" not in (X.index.names or []):
            return X
        years = X.index.get_level_values("year")
        if year is not None:
            return X[years == year]
        keys = X.index.to_frame(index=False)
        latest = keys.groupby("household_id", sort=False)["year"].transform("max").to_numpy()
        return X[years.to_numpy() == latest]

    def risk_from_margin(self, margin: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from margins ((n,) binary; (n, k) multiclass -> softmax)."""
        if margin.ndim == 2:
            z = margin - margin.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            if self.class_weights is not None:
                p = p * self.class_weights
                p /= p.sum(axis=1, keepdims=True)
            return p
        if self.calibrator is None:
            return 1.0 / (1.0 + np.exp(-margin))
        return self.calibrator.predict(margin)

    def predict_risk(self, X: pd.DataFrame) -> np.ndarray:
        """Risk for feature rows X (already featurized)."""
        return self.risk_from_margin(self.estimator.margin(X))

    # -- the officials' view -----------------------------------------------------------------------------
    def score_and_tier(self, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """0-100 score (100 = no risk) and the tier label, with the thresholds of `tiers`."""
        score = np.round(100.0 * (1.0 - risk), 1)
        low, high = self.tiers
        labels = TIER_LABELS.get(self.task, ("high", "medium", "low"))
        tier = np.where(score < low, labels[0], np.where(score > high, labels[2], labels[1]))
        return score, tier

    def contributions(self, X: pd.DataFrame, cache: ContributionCache | None = None) -> np.ndarray:
        """The estimator's margin contributions (n, p + 1); with a `cache`, unchanged rows are not recomputed."""
        if cache is None:
            return self.estimator.contributions(X)
        return cache.contributions(self.estimator, X)

    def explain(self, X: pd.DataFrame, risk: np.ndarray | None = None, top_k: int = 5,
                cache: ContributionCache | None = None) -> list[dict]:
        """Reason codes per row of X (binary tasks); `cache`: see `contributions`."""
        contrib = self.contributions(X, cache)
        margin = contrib.sum(axis=1)
        if risk is None:
            risk = self.risk_from_margin(margin)
        base_risk = self.risk_from_margin(contrib[:, -1])
        prob = probability_scale(contrib[:, :-1], margin, risk, base_risk)
        return reason_codes(prob, X, self.feature_info, self.binary_features, top_k=top_k)

    def predict(self, records, year: int | None = None, explain: bool = True, top_k: int = 5,
                cache: ContributionCache | None = None) -> pd.DataFrame:
        """Score records: one row per household (latest wave unless `year`), see module docstring."""
        X = self.select_waves(self.features(records), year)
        out = self.score_features(X, explain=explain, top_k=top_k, cache=cache)
        if self.task == "relapse":  # right after the tier, as before score_features existed
            keys = X.index.to_frame(index=False)
            out.insert(out.columns.get_loc("tier") + 1, "eligible", self._eligible(records, keys))
        return out

    def score_features(self, X: pd.DataFrame, explain: bool = True, top_k: int = 5,
                       cache: ContributionCache | None = None) -> pd.DataFrame:
        """`predict` after featurizing: risk, score, tier and (if `explain`) reasons for feature rows X
        indexed by (household_id, year); `idb-level`: the level probabilities. No `eligible` column."""
        if self.task == "idb-level":
            p = self.predict_risk(X)
            out = pd.DataFrame({"household_id": X.index.to_numpy()})
            for i, c in enumerate(self.classes):
                out[f"prob_{c}"] = p[:, i]
            out["predicted_level"] = np.asarray(self.classes)[p.argmax(axis=1)]
            return out
        risk = self.predict_risk(X)
        score, tier = self.score_and_tier(risk)
        keys = X.index.to_frame(index=False)
        out = pd.DataFrame({"household_id": keys["household_id"].to_numpy(), "year": keys["year"].to_numpy(),
                            "risk": risk, "score": score, "tier": tier})
        if explain:
            reasons = self.explain(X, risk, top_k=top_k, cache=cache)
            texts = [main_causes_text(r["causes"]) for r in reasons]
            out["main_causes_en"] = [t[0] for t in texts]
            out["main_causes_zh"] = [t[1] for t in texts]
            out["top_reasons_en"] = ["; ".join(x["sentence_en"] for x in r["up"][:3]) for r in reasons]
            out["top_reasons_zh"] = ["；".join(x["sentence_zh"] for x in r["up"][:3]) for r in reasons]
            out["reasons"] = [json.dumps(r, ensure_ascii=False) for r in reasons]
        return out

    def _eligible(self, records: HouseholdRecords, keys: pd.DataFrame) -> np.ndarray:
        """Relapse eligibility of the waves `keys` (household_id, year); False for a wave not on record."""
        lines = self._lines()
        hh = records.households
        year = hh["year"].to_numpy(dtype="int64")
        known = np.isin(year, np.fromiter(lines.poverty_line, dtype="int64"))
        if known.any():  # the waves between the first and last year the model knows a line for
            hh = hh[(year >= year[known].min()) & (year <= year[known].max())]
        # eligibility reads the households table only: the members are not copied
        elig = relapse_eligible(HouseholdRecords(hh, records.members.iloc[:0], records.regions), lines,
                                self.near_line_multiplier)
        on_record = pd.MultiIndex.from_arrays([elig["household_id"].to_numpy(), elig["year"].to_numpy()])
        if not on_record.is_unique:  # not after validation; kept exact for any caller
            return keys.merge(elig, on=["household_id", "year"], how="left")["eligible"].fillna(False).to_numpy(bool)
        at = on_record.get_indexer(pd.MultiIndex.from_arrays([keys["household_id"].to_numpy(),
                                                              keys["year"].to_numpy(dtype="int64")]))
        return np.where(at >= 0, elig["eligible"].to_numpy(bool)[np.maximum(at, 0)], False)

    def _lines(self) -> LinesParams:
        return _lines_params(tuple(sorted(self.featurizer.poverty_lines_.items())))

    def explain_detail(self, X: pd.DataFrame, risk: np.ndarray | None = None, top_k: int = 5,
                       cache=None) -> tuple[list[dict], np.ndarray]:
        """Reason codes per row and the full (n, p) contributions on the probability scale.

        The service keeps the full vector in the inference store and returns it on request;
        the reason codes are what every household gets.
        """
        contrib = self.estimator.contributions(X) if cache is None else cache.contributions(self.estimator, X)
        margin = contrib.sum(axis=1)
        if risk is None:
            risk = self.risk_from_margin(margin)
        base_risk = self.risk_from_margin(contrib[:, -1])
        prob = probability_scale(contrib[:, :-1], margin, risk, base_risk)
        return reason_codes(prob, X, self.feature_info, self.binary_features, top_k=top_k), prob

"""Targeting quality once verified outcomes arrive (`/outcomes`), against the model's figures at training.

Each reported outcome is joined to the score it followed: the latest score of the same household
(pseudonym) and task given on or before the day the outcome was observed (``scored_at`` before the
end of ``observed_on``, UTC). Outcomes with no earlier score are counted, not used. Only scores of
the monitored model version are judged (its held-out figures are the yardstick); outcomes of other
versions' scores are counted.

Figures, per month of scoring and pooled (the functions of `training.evaluate`, so they mean what
the training report means): AUC, expected calibration error (ECE, 10 equal-frequency bins), and the
exclusion and inclusion errors when the `evaluate.main_budget` share of the households with an
outcome, highest risk first, is selected. They are compared with the run metrics ``heldout_auc``,
``heldout_ece``, ``heldout_exclusion_error``, ``heldout_inclusion_error`` of the model version.

Retraining is recommended when at least `monitoring.retrain.min_outcomes` outcomes are judged and
the pooled figures, or those of the latest month with that many outcomes, decay beyond the
`monitoring.retrain` thresholds (AUC drop, exclusion / inclusion error rise, ECE rise).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from tpas.config import Params

#: The outcome that is the positive class of each task's label.
POSITIVE = {"poverty": "poor", "relapse": "relapsed"}


def join_outcomes(outcomes: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Outcomes with the latest earlier score of the same household (columns of both; NaN risk if none).

    outcomes: household_pid, outcome, observed_on (date); scores: household_pid, risk, scored_at (UTC),
    model_version.
    """
    if outcomes.empty:
        return outcomes.assign(risk=np.nan, scored_at=pd.NaT, model_version=None)
    left = outcomes.copy()
    # "on or before the day observed": before the end of that day (UTC)
    left["_until"] = pd.to_datetime(left["observed_on"]).dt.tz_localize("UTC") + pd.Timedelta(days=1)
    left = left.sort_values("_until", kind="stable").reset_index(drop=True)
    right = scores[["household_pid", "risk", "scored_at", "model_version"]].copy()
    right["_at"] = pd.to_datetime(right["scored_at"], utc=True)
    right = right.sort_values("_at", kind="stable").reset_index(drop=True)
    joined = pd.merge_asof(left, right, left_on="_until", right_on="_at", by="household_pid",
                           direction="backward", allow_exact_matches=False)
    return joined.drop(columns=["_until", "_at"])


def _figures(y: np.ndarray, risk: np.ndarray, budget: float) -> dict:
    from training.evaluate import binary_metrics, budget_table

    out = {"n": int(y.size), "positives": int(y.sum()), "prevalence": float(y.mean()) if y.size else None}
    if y.size == 0:
        return out
    m = binary_metrics(y, risk)
    row = budget_table(y, risk, [budget]).iloc[0]
    for key, value in (("auc", m["auc"]), ("ece", m["ece"]), ("exclusion_error", row["exclusion_error"]),
                       ("inclusion_error", row["inclusion_error"])):
        out[key] = None if value is None or not np.isfinite(value) else float(value)
    return out


def _decay(fig: dict, heldout: dict, rp) -> list[str]:
    """Reasons to retrain: the figures' decay against the held-out figures beyond the thresholds."""
    reasons = []
    checks = (("auc", -1, rp.max_auc_drop, "AUC fell"), ("exclusion_error", 1, rp.max_exclusion_error_rise,
                                                           "exclusion error rose"),
              ("inclusion_error", 1, rp.max_inclusion_error_rise, "inclusion error rose"),
              ("ece", 1, rp.max_ece_rise, "calibration error (ECE) rose"))
    for key, sign, limit, text in checks:
        now, then = fig.get(key), heldout.get(key)
        if now is None or then is None:
            continue
        change = sign * (now - then)
        if change > limit:
            reasons.append(f"{text} from {then:.3f} at training to {now:.3f} ({'+' if sign > 0 else '-'}"
                           f"{change:.3f}, limit {limit:.3f})")
    return reasons


def targeting_quality(store, task: str, model_version: str | None, heldout: dict, params: Params,
                      until: datetime | None = None) -> dict | None:
    """Targeting quality of the monitored model version on reported outcomes (None when there is none)."""
    from monitoring.window import read_scores

    rows = store.list_outcomes(task)
    if not rows:
        return None
    outcomes = pd.DataFrame(rows)
    if until is not None:
        outcomes = outcomes[pd.to_datetime(outcomes["observed_on"]) < pd.Timestamp(until.date()) + timedelta(days=1)]
    scores = read_scores(store, task, None, until, columns=("id", "household_pid", "risk", "model_version",
                                                             "scored_at"))
    joined = join_outcomes(outcomes, scores)
    rp = params.monitoring.retrain
    no_score = int(joined["risk"].isna().sum())
    version_ok = joined["model_version"].astype(str) == str(model_version)
    other = int((joined["risk"].notna() & ~version_ok).sum())
    used = joined[joined["risk"].notna() & version_ok].copy()
    budget = params.evaluate.main_budget
    used["y"] = (used["outcome"] == POSITIVE[task]).astype(np.int8)
    used["month"] = pd.to_datetime(used["scored_at"], utc=True).dt.strftime("%Y-%m")
    held = {k: heldout.get(k) for k in ("auc", "ece", "exclusion_error", "inclusion_error")}
    pooled = _figures(used["y"].to_numpy(), used["risk"].to_numpy(dtype=np.float64), budget)
    months = []
    for month, g in used.groupby("month", sort=True):
        fig = _figures(g["y"].to_numpy(), g["risk"].to_numpy(dtype=np.float64), budget)
        fig["month"] = month
        fig["judged"] = fig["n"] >= rp.min_outcomes
        months.append(fig)
    reasons: list[str] = []
    judged_on = None
    if pooled["n"] >= rp.min_outcomes:
        reasons += [f"all {pooled['n']:,} outcomes: {r}" for r in _decay(pooled, held, rp)]
        judged_on = "pooled"
        latest = [m for m in months if m["judged"]]
        if latest and len(months) > 1:
            last = latest[-1]
            reasons += [f"scores of {last['month']} ({last['n']:,} outcomes): {r}" for r in _decay(last, held, rp)]
    return {
        "outcomes": int(len(outcomes)), "joined": int(len(used)), "without_earlier_score": no_score,
        "other_model_versions": other, "budget": budget, "positive_outcome": POSITIVE[task],
        "heldout": held, "pooled": pooled, "by_month": months, "min_outcomes": rp.min_outcomes,
        "judged": judged_on is not None, "retrain": bool(reasons), "reasons": reasons,
    }

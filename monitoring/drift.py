"""Drift and data quality of one task's window against its model's reference: an Evidently 0.7 report.

Frames (`build_frames`)
-----------------------
- current: one row per household (latest score in the window), one column per model feature, and
  the risk score; reference: the snapshot rows of the model's latest training year(s)
  (`monitoring.reference_years`, more while fewer than `monitoring.min_reference_rows`), the same
  columns. Keys and timestamps are never columns.
- ``risk_recent``: the risk score once more, whose reference is the model's own held-out scores of
  its latest held-out year before the current wave (``evaluation/heldout_predictions.parquet``, a
  seeded sample of as many rows as the reference, or all of them padded with blanks): the year
  closest to today the model has scored, so the prediction-drift test is not set off by years of
  slow change between the training years and today (docs/monitoring.md).
- Categorical features (yes/no, one-hot, ordered categories) are passed as integer labels.

Report (`build_report`)
-----------------------
Data drift: `DriftedColumnsCount` (share of drifted feature columns, with its test) and one
`ValueDrift` per feature; prediction drift: `ValueDrift` of ``risk`` against the training reference
(information) and of ``risk_recent`` with the test; data summary: `DataSummaryPreset` of the risk
and the most drifted columns; data quality: `MissingValueCount` per feature (test: missing share at
most `max_missing_increase` above the reference's) and `OutRangeValueCount` per numerical feature
(test: at most `max_out_of_range_share` of values out of range). Drift methods are fixed by
`params.yaml` (distances: normed Wasserstein, Jensen-Shannon), not left to Evidently's choice by
sample size; the risk test uses PSI over quantile bins of the baseline (`quantile_psi`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from features.schema import HOUSEHOLD_SPECS
from monitoring.context import ModelContext, column_types
from monitoring.window import Window, feature_frame
from tpas.config import MonitoringParams

RISK, RISK_RECENT = "risk", "risk_recent"
_EPS = 1e-4


# -- the risk test's statistic ---------------------------------------------------------------------------------
def quantile_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `current` against `reference`, over quantile bins of the reference.

    Bin edges are the reference's 1/bins ... (bins-1)/bins quantiles (ties merged), so every bin
    holds about the same share of the baseline and a score crowding near 0 (most households are not
    poor) still spreads over all bins; Evidently's own ``psi`` uses equal-width bins, which put
    nearly every risk into the first one. Shares are floored at 1e-4. Returns sum((c - r) ln(c / r)).
    """
    r = np.asarray(reference, dtype=np.float64)
    c = np.asarray(current, dtype=np.float64)
    r, c = r[np.isfinite(r)], c[np.isfinite(c)]
    if r.size == 0 or c.size == 0:
        return float("nan")
    inner = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1]))
    rp = np.bincount(np.searchsorted(inner, r, side="right"), minlength=inner.size + 1) / r.size
    cp = np.bincount(np.searchsorted(inner, c, side="right"), minlength=inner.size + 1) / c.size
    rp, cp = np.maximum(rp, _EPS), np.maximum(cp, _EPS)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


def psi_method(bins: int) -> str:
    """The name of the quantile-PSI drift method with `bins` bins, registered with Evidently once."""
    from evidently.legacy.calculations.stattests.registry import StatTest, _registered_stat_tests, register_stattest
    from evidently.legacy.core import ColumnType

    name = f"tpas_quantile_psi_{bins}"
    if name not in _registered_stat_tests:
        def _psi(reference: pd.Series, current: pd.Series, feature_type, threshold: float) -> tuple[float, bool]:
            value = quantile_psi(reference.to_numpy(), current.to_numpy(), bins)
            return value, bool(value >= threshold)

        register_stattest(StatTest(name=name, display_name=f"PSI ({bins} quantile bins of the reference)",
                                   allowed_feature_types=[ColumnType.Numerical], default_threshold=0.1), _psi)
    return name


# -- frames ---------------------------------------------------------------------------------------------------------
@dataclass
class Frames:
    """Current and reference frames of one task, typed from the model's feature list."""

    current: pd.DataFrame
    reference: pd.DataFrame
    numerical: list[str]
    categorical: list[str]
    drift_columns: list[str]                 # features with values on both sides
    skipped: dict[str, str] = field(default_factory=dict)   # feature -> why it is not compared
    reference_years: list[int] = field(default_factory=list)
    recent_year: int | None = None            # held-out year of the risk baseline (None: not logged)
    recent_rows: int = 0
    ranges: dict[str, tuple[float, float, str]] = field(default_factory=dict)  # numerical feature -> lo, hi, source
    methods: dict[str, tuple[str, float]] = field(default_factory=dict)       # compared feature -> method, threshold

    @property
    def features(self) -> list[str]:
        return self.numerical + self.categorical


def _as_labels(values: pd.Series) -> pd.Series:
    """Integer labels (object column; blanks stay NaN): Evidently's categorical statistics take ints, not floats."""
    arr = values.to_numpy(dtype=np.float64)
    out = np.empty(arr.size, dtype=object)
    ok = np.isfinite(arr)
    out[~ok] = np.nan
    out[ok] = np.rint(arr[ok]).astype(np.int64)   # stored as Python ints
    return pd.Series(out, index=values.index, dtype=object)


def reference_rows(snapshot: pd.DataFrame, years: int, min_rows: int) -> tuple[pd.DataFrame, list[int]]:
    """The snapshot rows of its latest `years` training years, more years while fewer than `min_rows`."""
    if "year" not in snapshot.columns or snapshot["year"].isna().all():
        return snapshot, []
    all_years = sorted(int(y) for y in snapshot["year"].dropna().unique())
    chosen = all_years[-years:]
    rows = snapshot[snapshot["year"].isin(chosen)]
    while len(rows) < min_rows and len(chosen) < len(all_years):
        chosen = all_years[-(len(chosen) + 1):]
        rows = snapshot[snapshot["year"].isin(chosen)]
    return rows, chosen


def value_ranges(reference: pd.DataFrame, numerical: list[str], margin: float) -> dict[str, tuple[float, float, str]]:
    """Allowed range of each numerical feature: the schema's for a registry indicator; for a derived
    feature the reference's [min, max] widened by `margin` x its span (no negative values if it had none)."""
    out = {}
    for name in numerical:
        spec = HOUSEHOLD_SPECS.get(name)
        if spec is not None and spec.kind in ("int", "float") and spec.min is not None and spec.max is not None:
            out[name] = (float(spec.min), float(spec.max), "schema")
            continue
        col = reference[name].dropna()
        if col.empty:
            continue
        lo, hi = float(col.min()), float(col.max())
        span = max(hi - lo, 1.0 if hi == lo else 0.0)
        out[name] = (0.0 if lo >= 0 else lo - margin * span, hi + margin * span, "reference")
    return out


def build_frames(ctx: ModelContext, window: Window, mp: MonitoringParams, seed: int = 0) -> Frames:
    """The current and reference frames of a window (see module docstring)."""
    features = ctx.feature_names
    numerical, categorical = column_types(ctx.model)
    current = feature_frame(window.rows, features)
    current[RISK] = window.rows["risk"].to_numpy(dtype=np.float64)
    ref_rows, years = reference_rows(ctx.reference, mp.reference_years, mp.min_reference_rows)
    reference = ref_rows[features + [RISK]].astype(np.float64).reset_index(drop=True)

    recent_year, recent_rows = None, 0
    heldout = ctx.heldout
    if heldout is not None and {"year", "risk"} <= set(heldout.columns) and len(heldout):
        ho_years = sorted(int(y) for y in heldout["year"].dropna().unique())
        before = [y for y in ho_years if window.year is None or y < window.year]
        recent_year = (before or ho_years)[-1]
        recent = heldout.loc[heldout["year"] == recent_year, "risk"].to_numpy(dtype=np.float64)
        recent_rows = int(recent.size)
        rng = np.random.default_rng(seed)
        if recent.size >= len(reference):
            base = rng.choice(recent, size=len(reference), replace=False)
        else:
            base = np.concatenate([recent, np.full(len(reference) - recent.size, np.nan)])
        current[RISK_RECENT] = current[RISK]
        reference[RISK_RECENT] = base

    skipped: dict[str, str] = {}
    for name in features:
        cur_ok, ref_ok = current[name].notna().any(), reference[name].notna().any()
        if not cur_ok or not ref_ok:
            skipped[name] = "no value in the " + ("current window" if not cur_ok else "reference")
    drift_columns = [f for f in features if f not in skipped]
    for name in categorical:
        current[name] = _as_labels(current[name])
        reference[name] = _as_labels(reference[name])
    ranges = value_ranges(reference, [n for n in numerical if n not in skipped], mp.range_margin)
    return Frames(current=current, reference=reference, numerical=numerical, categorical=categorical,
                  drift_columns=drift_columns, skipped=skipped, reference_years=years, recent_year=recent_year,
                  recent_rows=recent_rows, ranges=ranges, methods=drift_methods(current, reference, drift_columns,
                                                                                categorical, mp))


#: A numerical feature with at most this many distinct values (reference and current together) is
#: compared as a distribution over its values, as Evidently itself does for large samples.
FEW_VALUES = 5


def drift_methods(current: pd.DataFrame, reference: pd.DataFrame, columns: list[str], categorical: list[str],
                  mp: MonitoringParams) -> dict[str, tuple[str, float]]:
    """Method and threshold per compared feature: `cat_method` for categorical features and for numerical
    ones with at most `FEW_VALUES` distinct values (a normed Wasserstein distance divides by the
    reference's spread, which is near zero for a count that is almost always 0), else `num_method`."""
    out = {}
    for name in columns:
        few = name not in categorical and pd.concat([reference[name], current[name]]).nunique() <= FEW_VALUES
        out[name] = (mp.cat_method, mp.cat_threshold) if name in categorical or few else \
            (mp.num_method, mp.num_threshold)
    return out


def quick_drift(frames: Frames, mp: MonitoringParams) -> dict[str, float]:
    """Per-column drift score / threshold with the same Evidently functions the report uses (to choose the
    columns the report summarises in full); the report's own values are the ones reported."""
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    out = {}
    for name in frames.drift_columns:
        method, threshold = frames.methods[name]
        kind = ColumnType.Categorical if name in frames.categorical else ColumnType.Numerical
        r, c = frames.reference[name].dropna(), frames.current[name].dropna()
        test = get_stattest(r, c, kind, method)
        out[name] = float(test(r, c, kind, threshold).drift_score) / threshold
    return out


def since_previous(frames: Frames, window: Window, mp: MonitoringParams) -> dict | None:
    """Drift of each compared feature between the households' previous scores and their current ones.

    Only households with a previous score count (paired, so the same households on both sides); the
    same methods and thresholds as the report. A second view, not a test: it shows what changed
    since those households were last scored, free of the years between training and today.
    """
    prev = window.previous
    if prev is None or prev.empty:
        return None
    if window.task == "relapse":
        prev = prev[prev["eligible"].astype("boolean").fillna(True).to_numpy(bool)]
    pids = set(prev["household_pid"])
    mask = window.rows["household_pid"].isin(pids).to_numpy()
    if not mask.any():
        return None
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    cur = frames.current.loc[mask]
    before = feature_frame(prev, [c for c in frames.drift_columns])
    for name in frames.categorical:
        if name in before:
            before[name] = _as_labels(before[name])
    scores = {}
    for name in frames.drift_columns:
        r, c = before[name].dropna(), cur[name].dropna()
        if r.empty or c.empty:
            continue
        method, threshold = frames.methods[name]
        kind = ColumnType.Categorical if name in frames.categorical else ColumnType.Numerical
        score = float(get_stattest(r, c, kind, method)(r, c, kind, threshold).drift_score)
        scores[name] = {"score": score, "method": method, "threshold": threshold, "drifted": score >= threshold}
    versions = prev["model_version"].fillna("?").astype(str).value_counts().to_dict()
    years = prev["year"].dropna()
    return {"households": int(mask.sum()), "previous_versions": versions,
            "previous_year": int(years.mode().iloc[0]) if len(years) else None,
            "previous_scored": [str(prev["scored_at"].min()), str(prev["scored_at"].max())],
            "risk_psi": quantile_psi(prev["risk"].to_numpy(), cur[RISK].to_numpy(), mp.risk_bins),
            "columns": scores}


# -- the report -------------------------------------------------------------------------------------------------------
@dataclass
class ReportPlan:
    """The Evidently report and what each of its tests checks."""

    report: Any
    current: Any                 # evidently Dataset
    reference: Any
    summary_columns: list[str]


def build_report(frames: Frames, mp: MonitoringParams, summary_columns: list[str], metadata: dict | None = None,
                 tags: list[str] | None = None) -> ReportPlan:
    """The Evidently 0.7 report of a task (see module docstring)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, MissingValueCount, OutRangeValueCount, ValueDrift
    from evidently.presets import DataSummaryPreset
    from evidently.tests import Reference, lt, lte

    has_recent = RISK_RECENT in frames.current.columns
    numerical = frames.numerical + [RISK] + ([RISK_RECENT] if has_recent else [])
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=list(frames.categorical),
                                text_columns=[], datetime_columns=[], unknown_columns=[], list_columns=[])
    current = Dataset.from_pandas(frames.current, data_definition=definition)
    reference = Dataset.from_pandas(frames.reference, data_definition=definition)
    cols = frames.drift_columns
    metrics: list = [
        DriftedColumnsCount(columns=cols, per_column_method={c: m for c, (m, _) in frames.methods.items()},
                            per_column_threshold={c: t for c, (_, t) in frames.methods.items()},
                            drift_share=mp.max_drifted_share, share_tests=[lt(mp.max_drifted_share)]),
    ]
    if has_recent:
        metrics.append(ValueDrift(column=RISK_RECENT, method=psi_method(mp.risk_bins), threshold=mp.max_risk_psi,
                                  tests=[lt(mp.max_risk_psi)]))
    metrics.append(ValueDrift(column=RISK, method=mp.num_method, threshold=mp.num_threshold))
    for name in cols:
        method, threshold = frames.methods[name]
        metrics.append(ValueDrift(column=name, method=method, threshold=threshold))
    metrics.append(DataSummaryPreset(columns=[RISK] + [c for c in summary_columns if c != RISK]))
    for name in frames.features:
        metrics.append(MissingValueCount(column=name, share_tests=[lte(Reference(absolute=mp.max_missing_increase))]))
    for name, (lo, hi, _src) in frames.ranges.items():
        metrics.append(OutRangeValueCount(column=name, left=lo, right=hi, share_tests=[lte(mp.max_out_of_range_share)]))
    report = Report(metrics, metadata=metadata or {}, tags=tags or [])
    return ReportPlan(report, current, reference, summary_columns)


# -- reading the snapshot ---------------------------------------------------------------------------------------------
def _type(config: dict) -> str:
    return str(config.get("type", "")).rsplit(":", 1)[-1]


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


@dataclass
class DriftResult:
    """What the snapshot says, per column and per test."""

    columns: dict[str, dict]                   # feature -> score, method, threshold, drifted
    share_drifted: float | None
    drifted_count: int | None
    risk_vs_reference: dict | None
    risk_vs_recent: dict | None
    missing: dict[str, dict]                   # feature -> count, share (current)
    out_of_range: dict[str, dict]              # numerical feature -> count, share (current)
    tests: list[dict]                          # every test: kind, column, name, description, status

    @property
    def failed(self) -> list[dict]:
        return [t for t in self.tests if t["status"] not in ("SUCCESS", "WARNING")]


def read_snapshot(snapshot_dict: dict) -> DriftResult:
    """Per-column drift, the drift share, risk drift, data-quality values and test outcomes of a snapshot."""
    columns: dict[str, dict] = {}
    missing: dict[str, dict] = {}
    out_range: dict[str, dict] = {}
    share = count = None
    risk_ref = risk_recent = None
    for m in snapshot_dict.get("metrics", []):
        cfg = m.get("config", {}) or {}
        kind, value = _type(cfg), m.get("value")
        column = cfg.get("column")
        if kind == "DriftedColumnsCount" and isinstance(value, dict):
            share, count = _finite(value.get("share")), value.get("count")
            count = int(count) if count is not None else None
        elif kind == "ValueDrift":
            score, threshold = _finite(value), _finite(cfg.get("threshold"))
            entry = {"score": score, "method": cfg.get("method"), "threshold": threshold,
                     "drifted": bool(score is not None and threshold is not None and score >= threshold)}
            if column == RISK:
                risk_ref = entry
            elif column == RISK_RECENT:
                risk_recent = entry
            else:
                columns[column] = entry
        elif kind == "MissingValueCount" and isinstance(value, dict):
            missing[column] = {"count": value.get("count"), "share": _finite(value.get("share"))}
        elif kind == "OutRangeValueCount" and isinstance(value, dict):
            out_range[column] = {"count": value.get("count"), "share": _finite(value.get("share")),
                                 "left": cfg.get("left"), "right": cfg.get("right")}
    tests = []
    for t in snapshot_dict.get("tests", []):
        params = (t.get("metric_config") or {}).get("params") or {}
        mkind = _type(params)
        column = params.get("column")
        kind = {"DriftedColumnsCount": "drift_share", "ValueDrift": "risk_drift", "MissingValueCount": "missing",
                "OutRangeValueCount": "out_of_range"}.get(mkind, mkind)
        tests.append({"kind": kind, "column": column, "name": t.get("name"), "description": t.get("description"),
                      "status": t.get("status")})
    return DriftResult(columns, share, count, risk_ref, risk_recent, missing, out_range, tests)


def ranked_columns(result: DriftResult) -> list[tuple[str, dict]]:
    """Compared features, most drifted first: by score / threshold, so both kinds of method rank together."""
    def key(item):
        entry = item[1]
        if entry["score"] is None or not entry["threshold"]:
            return -1.0
        return entry["score"] / entry["threshold"]

    return sorted(result.columns.items(), key=key, reverse=True)

"""Evaluation as targeting: how well a risk score finds poor households under a budget.

An office can visit or enrol only a share of households (the *budget*). The questions an
analyst asks of a model are therefore targeting questions (DOMAIN.md, "What good targeting
means"), and this module answers them with pure functions on arrays (no MLflow, no config):

- `binary_metrics`: ranking (AUC, PR-AUC) and probability quality (log loss, Brier, ECE);
- `budget_table`: at each budget, coverage of the poor, precision, inclusion and exclusion
  errors, beside what a random selection of the same size would give;
- `group_table`: the same errors per group (county, minority area, female-headed, ...), with
  the threshold set on the whole population as a province does, bootstrap 95 % CIs and a flag
  for groups whose exclusion error is significantly worse than the rest's;
- `multiclass_metrics`: the four poverty levels of the IDB survey (1 extreme, 2 moderate,
  3 vulnerable, 4 not vulnerable);
- `targeting_report` / `report_markdown`: all of the above as a JSON-serialisable dict and as
  a summary an analyst can read.

Conventions. A household is *poor* when its label is 1; *risk* is the model's score, higher
meaning more likely poor. At budget ``b`` of ``n`` households the ``ceil(b * n)`` highest-risk
households are selected; ties are broken by input position (earlier first), so a selection is
reproducible. Definitions (counts among the ``n`` households):

- coverage of the poor (recall) = poor selected / all poor;
- precision = poor selected / selected;
- exclusion error = poor not selected / all poor = 1 - coverage;
- inclusion error = non-poor selected / selected = 1 - precision. This is the standard
  targeting definition (share of the beneficiaries who are not poor), not the share of the
  non-poor who are selected (the false-positive rate).

Undefined rates (no poor household, nothing selected, one class only for an AUC) are NaN in
the functions and ``None`` in the report.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

DEFAULT_BUDGETS: tuple[float, ...] = (0.10, 0.20, 0.25, 0.30, 0.40)
#: Probabilities are clipped to [_EPS, 1 - _EPS] inside log losses (a 0 for a poor household is not -inf).
_EPS = 1e-15
#: Elements of the (boots x households) weight matrix the AUC bootstrap holds at once: 2 MB of
#: float64 stays in cache and is reused by the allocator; 4M-element chunks measured 2-3x slower.
_BOOT_CHUNK = 1 << 18

BUDGET_COLUMNS = (
    "budget", "selected", "share_selected", "threshold", "poor_selected", "coverage_of_poor", "precision",
    "inclusion_error", "exclusion_error", "random_recall", "random_precision", "random_inclusion_error",
    "random_exclusion_error", "lift",
)
GROUP_COLUMNS = (
    "group", "value", "n", "n_poor", "prevalence", "share_selected",
    "auc", "auc_lo", "auc_hi",
    "coverage_of_poor", "coverage_of_poor_lo", "coverage_of_poor_hi",
    "exclusion_error", "exclusion_error_lo", "exclusion_error_hi",
    "inclusion_error", "inclusion_error_lo", "inclusion_error_hi",
    "rest_exclusion_error", "exclusion_gap", "exclusion_gap_lo", "exclusion_gap_hi", "significantly_worse",
)


# -- inputs ---------------------------------------------------------------------------------------------------


def _as_labels(y_true: Any) -> np.ndarray:
    """0/1 labels as an int8 array of shape (n,); bool, int and float 0./1. are accepted."""
    try:
        y = np.asarray(y_true, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("y_true must hold 0/1 labels without missing values") from exc
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"y_true must be a non-empty 1-D array, got shape {y.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must hold 0/1 labels without missing values")
    return y.astype(np.int8)


def _as_scores(risk: Any, n: int, *, probabilities: bool) -> np.ndarray:
    """Risk scores as float64 of shape (n,); finite, and in [0, 1] when they must be probabilities."""
    try:
        r = np.asarray(risk, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError("risk must be numeric without missing values") from exc
    if r.shape != (n,):
        raise ValueError(f"risk has shape {r.shape}, expected ({n},) like y_true")
    if not np.isfinite(r).all():
        raise ValueError("risk holds NaN or infinite values")
    if probabilities and ((r < 0).any() or (r > 1).any()):
        raise ValueError("risk must be probabilities in [0, 1] for log loss, Brier score and calibration")
    return r


def _check_budget(budget: float) -> float:
    budget = float(budget)
    if not 0.0 < budget <= 1.0:
        raise ValueError(f"a budget is a share of households in (0, 1], got {budget}")
    return budget


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den elementwise, NaN where den == 0 (an undefined rate, not a zero)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score)) if 0 < y.sum() < y.size else float("nan")


# -- selection under a budget ---------------------------------------------------------------------------------


def households_selected(n_households: int, budget: float) -> int:
    """Number of households a budget covers: ``ceil(budget * n_households)``, at least 1.

    ``budget * n`` is rounded to 9 decimals first because floating point would otherwise
    turn 0.07 x 100 (= 7.000000000000001) into 8 households.
    """
    budget = _check_budget(budget)
    if n_households <= 0:
        raise ValueError("there must be at least one household")
    return max(1, min(n_households, math.ceil(round(budget * n_households, 9))))


def risk_ranking(risk: Any) -> np.ndarray:
    """Positions of households from highest to lowest risk, shape (n,).

    Ties keep input order (stable sort on -risk), so the same scores always give the same list.
    """
    r = np.asarray(risk, dtype=np.float64)
    return np.argsort(-r, kind="stable")


def select_budget(risk: Any, budget: float) -> np.ndarray:
    """Boolean mask of shape (n,): the ``ceil(budget * n)`` highest-risk households (ties by position)."""
    r = np.asarray(risk, dtype=np.float64)
    selected = np.zeros(r.size, dtype=bool)
    selected[risk_ranking(r)[: households_selected(r.size, budget)]] = True
    return selected


# -- whole-population metrics ---------------------------------------------------------------------------------


def calibration_bins(y_true: Any, risk: Any, n_bins: int = 10) -> pd.DataFrame:
    """Observed poverty rate against mean predicted risk in equal-frequency bins.

    Households are sorted by risk (stable) and cut into ``min(n_bins, n)`` bins whose sizes
    differ by at most one; binning by rank rather than by fixed risk intervals keeps every bin
    populated when risks crowd near 0 (most households are not poor).

    Returns a frame with one row per bin: ``n``, ``mean_risk``, ``observed_rate``.
    """
    y = _as_labels(y_true)
    r = _as_scores(risk, y.size, probabilities=False)
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    k = min(n_bins, y.size)
    rank = np.empty(y.size, dtype=np.int64)
    rank[np.argsort(r, kind="stable")] = np.arange(y.size)
    bin_of = rank * k // y.size
    counts = np.bincount(bin_of, minlength=k)
    return pd.DataFrame({
        "n": counts,
        "mean_risk": np.bincount(bin_of, weights=r, minlength=k) / counts,
        "observed_rate": np.bincount(bin_of, weights=y, minlength=k) / counts,
    })


def binary_metrics(y_true: Any, risk: Any, ece_bins: int = 10) -> dict[str, float]:
    """Ranking and probability quality of a poverty-risk score.

    Parameters
    ----------
    y_true: shape (n,), 1 = poor, 0 = not poor.
    risk: shape (n,), predicted probability of being poor, in [0, 1].
    ece_bins: number of equal-frequency bins for the expected calibration error.

    Returns
    -------
    ``auc`` (ROC AUC), ``pr_auc`` (average precision), ``log_loss`` (nats per household),
    ``brier`` (mean squared error of the probability), ``ece`` (expected calibration error:
    sum over `calibration_bins` of bin share x |observed rate - mean risk|, 10 equal-frequency
    bins by default), ``prevalence`` (share poor) and ``n``. AUC and PR-AUC are NaN when only
    one class is present.
    """
    y = _as_labels(y_true)
    r = _as_scores(risk, y.size, probabilities=True)
    p = np.clip(r, _EPS, 1 - _EPS)
    bins = calibration_bins(y, r, ece_bins)
    ece = float((bins["n"] / y.size * (bins["observed_rate"] - bins["mean_risk"]).abs()).sum())
    has_both = 0 < y.sum() < y.size
    return {
        "auc": _auc(y, r),
        "pr_auc": float(average_precision_score(y, r)) if has_both else float("nan"),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))),
        "brier": float(np.mean((r - y) ** 2)),
        "ece": ece,
        "prevalence": float(y.mean()),
        "n": int(y.size),
    }


def budget_table(y_true: Any, risk: Any, budgets: Sequence[float] = DEFAULT_BUDGETS) -> pd.DataFrame:
    """Targeting quality at each budget, beside a random selection of the same size.

    Parameters
    ----------
    y_true: shape (n,), 1 = poor.
    risk: shape (n,), any score where higher means more likely poor.
    budgets: shares of households that can be selected, each in (0, 1].

    Returns
    -------
    One row per budget (in the given order) with columns `BUDGET_COLUMNS`:
    ``selected`` (= ceil(budget x n), see `households_selected`), ``share_selected``
    (selected / n), ``threshold`` (risk of the last household selected), ``poor_selected``,
    ``coverage_of_poor``, ``precision``, ``inclusion_error``, ``exclusion_error`` (module
    docstring), ``random_recall`` (expected coverage of a random selection = share_selected,
    i.e. the budget up to rounding), ``random_precision`` (= prevalence), ``random_inclusion_error``
    (1 - prevalence), ``random_exclusion_error`` (1 - share_selected) and ``lift`` (coverage /
    random coverage = precision / prevalence).
    """
    y = _as_labels(y_true)
    r = _as_scores(risk, y.size, probabilities=False)
    n = y.size
    order = risk_ranking(r)
    poor_cum = np.cumsum(y[order], dtype=np.int64)
    n_poor = int(poor_cum[-1])
    k = np.array([households_selected(n, b) for b in budgets], dtype=np.int64)
    tp = poor_cum[k - 1]
    share = k / n
    prevalence = n_poor / n
    coverage = _ratio(tp, n_poor)
    precision = tp / k
    return pd.DataFrame({
        "budget": np.asarray(budgets, dtype=np.float64),
        "selected": k,
        "share_selected": share,
        "threshold": r[order[k - 1]],
        "poor_selected": tp,
        "coverage_of_poor": coverage,
        "precision": precision,
        "inclusion_error": 1.0 - precision,
        "exclusion_error": 1.0 - coverage,
        "random_recall": share,
        "random_precision": np.full(k.size, prevalence),
        "random_inclusion_error": np.full(k.size, 1.0 - prevalence),
        "random_exclusion_error": 1.0 - share,
        "lift": _ratio(coverage, share),
    }, columns=list(BUDGET_COLUMNS))


# -- groups ---------------------------------------------------------------------------------------------------

# Each household falls in one of four cells at the chosen threshold.
_TP, _FN, _FP, _TN = 0, 1, 2, 3


def _cell_rates(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coverage, exclusion and inclusion error from cell counts of shape (..., 4)."""
    tp, fn, fp = cells[..., _TP], cells[..., _FN], cells[..., _FP]
    coverage = _ratio(tp, tp + fn)
    return coverage, 1.0 - coverage, _ratio(fp, tp + fp)


def _bootstrap_cells(cells: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Cell counts of `n_boot` household resamples, shape (n_boot, 4).

    Resampling m households with replacement and counting them per cell is exactly a
    multinomial draw of m over the cell shares, so it costs O(n_boot), not O(n_boot x m).
    """
    m = int(cells.sum())
    if m == 0 or n_boot == 0:
        return np.zeros((n_boot, 4), dtype=np.int64)
    return rng.multinomial(m, cells / m, size=n_boot)


def _weighted_auc(y_sorted: np.ndarray, starts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of each weight row, shape (b,), for households sorted by ascending risk.

    y_sorted (m,) 0/1 labels in risk order; starts (t,) first position of each run of equal
    risk; weights (b, m) how often each household is drawn. A poor household scores 1 against
    each lower-risk non-poor household and 1/2 against each tied one (the Mann-Whitney form of
    the AUC), weighted by the draws.
    """
    w_poor = weights * y_sorted
    w_non = weights - w_poor
    if starts.size < y_sorted.size:        # ties: pool each run of equal risk
        w_poor = np.add.reduceat(w_poor, starts, axis=1)
        w_non = np.add.reduceat(w_non, starts, axis=1)
    non_below = np.cumsum(w_non, axis=1) - w_non
    wins = np.einsum("bt,bt->b", w_poor, non_below + 0.5 * w_non)
    return _ratio(wins, w_poor.sum(axis=1) * w_non.sum(axis=1))


def _bootstrap_auc(y: np.ndarray, score: np.ndarray, n_boot: int, rng: np.random.Generator
                   ) -> tuple[float, np.ndarray]:
    """AUC of a group and of `n_boot` household resamples of it, shape (n_boot,).

    The group is sorted once; each resample is a row of draw counts, so one vectorised pass
    scores a chunk of resamples (no per-resample sort).
    """
    m = y.size
    order = np.argsort(score, kind="stable")
    y_sorted = y[order].astype(np.float64)
    s = score[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    point = float(_weighted_auc(y_sorted, starts, np.ones((1, m)))[0])
    boots = np.full(n_boot, np.nan)
    if math.isnan(point) or n_boot == 0:
        return point, boots
    chunk = max(1, min(n_boot, _BOOT_CHUNK // m))
    for first in range(0, n_boot, chunk):
        b = min(chunk, n_boot - first)
        draws = rng.integers(0, m, size=(b, m))
        draws += (np.arange(b) * m)[:, None]          # row i counts into [i*m, (i+1)*m)
        weights = np.bincount(draws.ravel(), minlength=b * m).reshape(b, m)
        boots[first:first + b] = _weighted_auc(y_sorted, starts, weights)
    return point, boots


def _interval(samples: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval of bootstrap samples, ignoring undefined (NaN) resamples."""
    finite = samples[~np.isnan(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [50 * (1 - ci), 50 * (1 + ci)])
    return float(lo), float(hi)


def _group_rng(seed: int, column: str, value: str) -> np.random.Generator:
    """A generator per group, so a group's intervals do not depend on which other groups are listed."""
    return np.random.default_rng([seed, zlib.crc32(f"{column}\x00{value}".encode())])


def _group_members(groups: pd.DataFrame, min_size: int) -> list[tuple[str, str, np.ndarray]]:
    """(column, value, positions) of every group with at least `min_size` households."""
    members = []
    for column in groups.columns:
        col = groups[column]
        if pd.api.types.is_bool_dtype(col):
            idx = np.flatnonzero(col.fillna(False).to_numpy(dtype=bool))
            if idx.size >= min_size:
                members.append((str(column), "True", idx))
            continue
        try:
            codes, values = pd.factorize(col, sort=True)
        except TypeError:                              # mixed types cannot be sorted
            codes, values = pd.factorize(col, sort=False)
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes[codes >= 0], minlength=len(values))
        ends = np.cumsum(counts) + np.count_nonzero(codes < 0)   # missing codes (-1) sort first
        for k in np.flatnonzero(counts >= min_size):
            members.append((str(column), str(values[k]), order[ends[k] - counts[k]: ends[k]]))
    return members


def group_table(y_true: Any, risk: Any, groups: pd.DataFrame, budget: float = 0.25, n_boot: int = 200,
                seed: int = 0, min_size: int = 30, ci: float = 0.95) -> pd.DataFrame:
    """Targeting errors per group, with the threshold set on the whole population.

    A province ranks all its households together, so the ``ceil(budget x n)`` highest-risk
    households are selected once (`select_budget`) and each group is then judged by who of
    its own households made the list.

    Parameters
    ----------
    y_true: shape (n,), 1 = poor.
    risk: shape (n,), any score where higher means more likely poor.
    groups: n rows aligned by position with `y_true` (the index is ignored). A boolean column
        (``bool`` or ``boolean``; missing counts as False) defines one group, its True
        households; any other column (e.g. county code) defines one group per value. Only
        groups with at least `min_size` households are reported; missing values form no group.
    budget: share of households selected, in (0, 1].
    n_boot: bootstrap resamples per group (0 skips the intervals and the flag).
    seed: seeds one numpy Generator per group, derived from (seed, column, value).
    min_size: smallest group reported.
    ci: confidence level of the intervals.

    Returns
    -------
    One row per group with columns `GROUP_COLUMNS`: ``n``, ``n_poor``, ``prevalence``,
    ``share_selected``, ``auc`` (NaN with one class), ``coverage_of_poor``, ``exclusion_error``,
    ``inclusion_error``, each rate with ``_lo`` / ``_hi`` percentile bounds from resampling the
    group's households; ``rest_exclusion_error`` for all other households; ``exclusion_gap``
    (group minus rest) with bounds from resampling both independently; and
    ``significantly_worse``, True when the whole interval of the gap lies above 0.

    Intervals hold the threshold fixed (they measure sampling of households, not of the
    threshold). With many groups some flags are expected by chance (about (1 - ci) / 2 of the
    groups that are really no worse): a flag is a reason to look, not a verdict.
    Counts-based rates are resampled as a multinomial over the four selection x poverty cells
    (exact, O(n_boot) per group); the AUC by draw-count weights on the group sorted once.
    """
    y = _as_labels(y_true)
    r = _as_scores(risk, y.size, probabilities=False)
    if not isinstance(groups, pd.DataFrame) or len(groups) != y.size:
        raise ValueError(f"groups must be a DataFrame with one row per household ({y.size} rows)")
    if n_boot < 0 or min_size < 1 or not 0 < ci < 1:
        raise ValueError("need n_boot >= 0, min_size >= 1 and 0 < ci < 1")
    selected = select_budget(r, budget)
    cell = (1 - y).astype(np.int64) * 2 + (~selected)        # _TP, _FN, _FP, _TN
    all_cells = np.bincount(cell, minlength=4)

    rows = []
    for column, value, idx in _group_members(groups, min_size):
        rng = _group_rng(seed, column, value)
        cells = np.bincount(cell[idx], minlength=4)
        rest = all_cells - cells
        coverage, exclusion, inclusion = _cell_rates(cells)
        rest_exclusion = _cell_rates(rest)[1]
        boot_cov, boot_exc, boot_inc = _cell_rates(_bootstrap_cells(cells, n_boot, rng))
        boot_gap = boot_exc - _cell_rates(_bootstrap_cells(rest, n_boot, rng))[1]
        auc, boot_auc = _bootstrap_auc(y[idx], r[idx], n_boot, rng)
        gap_lo, gap_hi = _interval(boot_gap, ci)
        n_poor = int(cells[_TP] + cells[_FN])
        rows.append((
            column, value, int(idx.size), n_poor, n_poor / idx.size, (cells[_TP] + cells[_FP]) / idx.size,
            auc, *_interval(boot_auc, ci),
            float(coverage), *_interval(boot_cov, ci),
            float(exclusion), *_interval(boot_exc, ci),
            float(inclusion), *_interval(boot_inc, ci),
            float(rest_exclusion), float(exclusion - rest_exclusion), gap_lo, gap_hi,
            bool(gap_lo > 0),                           # NaN > 0 is False: undefined is never flagged
        ))
    table = pd.DataFrame(rows, columns=list(GROUP_COLUMNS))
    return table.astype({"n": "int64", "n_poor": "int64", "significantly_worse": bool})


# -- poverty levels -------------------------------------------------------------------------------------------


def multiclass_metrics(y_true_levels: Any, probs: Any, labels: Sequence[int] = (1, 2, 3, 4),
                       poor_levels: Sequence[int] = (1, 2)) -> dict[str, Any]:
    """Quality of a poverty-level model (IDB levels: 1 extreme, 2 moderate, 3 vulnerable, 4 not).

    Parameters
    ----------
    y_true_levels: shape (n,), each value one of `labels`.
    probs: shape (n, len(labels)), column j = P(level == labels[j]); rows sum to 1.
    labels: the levels, in the column order of `probs`.
    poor_levels: levels counted as poor for ``auc_poor``.

    Returns
    -------
    ``macro_f1`` (unweighted mean of the per-level F1 of the argmax prediction, over all
    `labels`; a level never predicted nor present counts 0), ``accuracy``, ``f1_per_level``
    ({level: F1}), ``auc_poor`` (AUC of P(level in poor_levels) against the rest, NaN with one
    class), ``log_loss`` (nats per household) and ``n``. Argmax ties go to the first column.
    """
    labels_arr = np.asarray(labels)
    y = np.asarray(y_true_levels)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 1 or y.size == 0 or p.shape != (y.size, labels_arr.size):
        raise ValueError(f"need y_true_levels of shape (n,) and probs of shape (n, {labels_arr.size}); "
                         f"got {y.shape} and {p.shape}")
    if not np.isin(y, labels_arr).all():
        raise ValueError(f"y_true_levels holds values outside {tuple(labels)}")
    if not np.isfinite(p).all() or (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("each row of probs must be finite, non-negative and sum to 1")
    pred = labels_arr[np.argmax(p, axis=1)]
    f1 = f1_score(y, pred, labels=labels_arr, average=None, zero_division=0)
    true_column = np.argmax(y[:, None] == labels_arr[None, :], axis=1)
    p_true = p[np.arange(y.size), true_column]
    poor = np.isin(y, poor_levels).astype(np.int8)
    p_poor = p[:, np.isin(labels_arr, poor_levels)].sum(axis=1)
    return {
        "macro_f1": float(f1.mean()),
        "accuracy": float(np.mean(pred == y)),
        "f1_per_level": {int(level): float(v) for level, v in zip(labels_arr, f1)},
        "auc_poor": _auc(poor, p_poor),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, _EPS, 1.0)))),
        "n": int(y.size),
    }


# -- report ---------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """numpy scalars to Python, NaN to None: strict JSON (``json.dumps(..., allow_nan=False)``) accepts it."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return _plain(frame.to_dict(orient="records"))


def targeting_report(y_true: Any, risk: Any, groups: pd.DataFrame | None = None,
                     budgets: Sequence[float] = DEFAULT_BUDGETS, main_budget: float = 0.25, n_boot: int = 200,
                     seed: int = 0, min_size: int = 30, ci: float = 0.95) -> dict[str, Any]:
    """Everything an analyst needs to judge a poverty-risk model as a targeting tool.

    Parameters
    ----------
    y_true: shape (n,), 1 = poor.
    risk: shape (n,), predicted probability of being poor.
    groups: optional, n rows aligned by position (see `group_table`).
    budgets: budgets of the budget table; `main_budget` is added when missing.
    main_budget: the budget at which groups are judged and the headline is given.
    n_boot, seed, min_size, ci: passed to `group_table`.

    Returns
    -------
    A JSON-serialisable dict (Python scalars, NaN as None): ``metrics`` (`binary_metrics`),
    ``main_budget``, ``main`` (the budget-table row at the main budget), ``budgets`` (the budget
    table as records, sorted by budget), ``groups`` (the group table as records, empty without
    groups) and ``group_settings``.
    """
    main_budget = _check_budget(main_budget)
    all_budgets = sorted({round(_check_budget(b), 9) for b in budgets} | {round(main_budget, 9)})
    metrics = binary_metrics(y_true, risk)
    table = budget_table(y_true, risk, all_budgets)
    main = _records(table.loc[np.isclose(table["budget"], main_budget)])[0]
    group_rows = (group_table(y_true, risk, groups, main_budget, n_boot, seed, min_size, ci)
                  if groups is not None else pd.DataFrame(columns=list(GROUP_COLUMNS)))
    return _plain({
        "metrics": metrics,
        "main_budget": main_budget,
        "main": main,
        "budgets": _records(table),
        "groups": _records(group_rows),
        "group_settings": {"budget": main_budget, "n_boot": n_boot, "seed": seed, "min_size": min_size, "ci": ci},
    })


def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _budget_label(b: float) -> str:
    return f"{100 * b:g}%"


def _cell_text(text: str) -> str:
    return text.replace("|", "\\|")


def report_markdown(report: dict[str, Any], title: str = "Targeting report") -> str:
    """An analyst-readable markdown summary of a `targeting_report` dict.

    Sections: ranking and calibration metrics; the headline at the main budget; the budget
    table against a random selection of the same size (one line per budget, starting
    ``| 25% |``); and, when groups were given, one line per group with its exclusion error,
    95 % interval and the rest's, flagged groups marked and listed.
    """
    m, main = report["metrics"], report["main"]
    lines = [
        f"# {title}",
        "",
        f"**{m['n']:,} households**, {_pct(m['prevalence'])} of them poor.",
        "",
        "## Ranking and calibration",
        "",
        "| Metric | Value |",
        "|---|---|",
        f"| AUC | {_num(m['auc'])} |",
        f"| PR-AUC (average precision) | {_num(m['pr_auc'])} |",
        f"| Log loss | {_num(m['log_loss'])} |",
        f"| Brier score | {_num(m['brier'])} |",
        f"| ECE (10 equal-frequency bins) | {_num(m['ece'])} |",
        "",
        f"## At the main budget ({_budget_label(report['main_budget'])} of households)",
        "",
        f"Selecting the {main['selected']:,} highest-risk households reaches **{_pct(main['coverage_of_poor'])} "
        f"of the poor** (a random selection of the same size: {_pct(main['random_recall'])}; "
        f"lift {_num(main['lift'], 2)}). Exclusion error: **{_pct(main['exclusion_error'])}** of poor households "
        f"are left out. Inclusion error: **{_pct(main['inclusion_error'])}** of the selected households are not "
        "poor.",
        "",
        "## Budget table (model vs random selection)",
        "",
        "| Budget | Selected | Coverage of the poor | Random coverage | Lift | Precision | Random precision "
        "| Inclusion error | Exclusion error | Random exclusion error |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["budgets"]:
        lines.append(
            f"| {_budget_label(row['budget'])} | {row['selected']:,} | {_pct(row['coverage_of_poor'])} "
            f"| {_pct(row['random_recall'])} | {_num(row['lift'], 2)} | {_pct(row['precision'])} "
            f"| {_pct(row['random_precision'])} | {_pct(row['inclusion_error'])} | {_pct(row['exclusion_error'])} "
            f"| {_pct(row['random_exclusion_error'])} |")
    groups = report.get("groups") or []
    if groups:
        settings = report["group_settings"]
        level = _budget_label(settings["ci"])
        lines += [
            "",
            f"## Groups (threshold set on the whole population at {_budget_label(settings['budget'])})",
            "",
            f"Intervals: {level} bootstrap ({settings['n_boot']} resamples of households). A group is flagged when "
            "its exclusion error is worse than the rest of the population's and the interval of the difference "
            "excludes 0.",
            "",
            f"| Group | Households | Poor | AUC | Coverage of the poor | Exclusion error ({level} CI) | Rest "
            "| Inclusion error | Flag |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for g in groups:
            name = g["group"] if g["value"] == "True" else f"{g['group']} = {g['value']}"
            lines.append(
                f"| {_cell_text(name)} | {g['n']:,} | {_pct(g['prevalence'])} | {_num(g['auc'])} "
                f"| {_pct(g['coverage_of_poor'])} | {_pct(g['exclusion_error'])} "
                f"({_pct(g['exclusion_error_lo'])}–{_pct(g['exclusion_error_hi'])}) "
                f"| {_pct(g['rest_exclusion_error'])} | {_pct(g['inclusion_error'])} "
                f"| {'⚠ worse than the rest' if g['significantly_worse'] else ''} |")
        flagged = [g["group"] if g["value"] == "True" else f"{g['group']} = {g['value']}"
                   for g in groups if g["significantly_worse"]]
        lines.append("")
        if flagged:
            lines.append(f"**{len(flagged)} group(s) with a significantly worse exclusion error:** "
                         f"{', '.join(flagged)}.")
        else:
            lines.append("No group's exclusion error is significantly worse than the rest's.")
        lines.append(f"With many groups, about {_pct((1 - settings['ci']) / 2)} of groups that are really no worse "
                     "are flagged by chance: a flag is a reason to look, not a verdict.")
    return "\n".join(lines) + "\n"

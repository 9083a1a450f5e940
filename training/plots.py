"""Figures for targeting reports: ROC, calibration, coverage of the poor by budget, groups.

Every function returns a `matplotlib.figure.Figure` drawn on its own Agg canvas: nothing here
imports pyplot or changes matplotlib's global backend or rc settings, so the module is safe to
import in the service, in tests and in notebooks. Save with ``fig.savefig(path)`` or log with
``mlflow.log_figure(fig, name)``.

The curve functions take ``risk_by_model``, a mapping model name -> risk of shape (n,) for the
same households as ``y`` (1 = poor), so one figure shows the gain of a model over its baselines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from training.evaluate import (DEFAULT_BUDGETS, _as_labels, _as_scores, _auc, binary_metrics, budget_table,
                               calibration_bins, risk_ranking)

_REFERENCE = {"color": "0.6", "linestyle": "--", "linewidth": 1}


def _figure(width: float = 6.0, height: float = 5.0) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)                 # the figure's own canvas: no pyplot, no global backend
    return fig, fig.subplots()


def _checked(y: Any, risk_by_model: Mapping[str, Any], probabilities: bool = False
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    if not risk_by_model:
        raise ValueError("risk_by_model needs at least one model")
    labels = _as_labels(y)
    return labels, {name: _as_scores(r, labels.size, probabilities=probabilities) for name, r in risk_by_model.items()}


def roc_figure(y: Any, risk_by_model: Mapping[str, Any]) -> Figure:
    """ROC curve per model (legend gives the AUC) and the chance diagonal.

    One line per model plus one for the diagonal.
    """
    labels, risks = _checked(y, risk_by_model)
    fig, ax = _figure()
    for name, risk in risks.items():
        fpr, tpr, _ = roc_curve(labels, risk)
        ax.plot(fpr, tpr, label=f"{name} (AUC {_auc(labels, risk):.3f})")
    ax.plot([0, 1], [0, 1], label="chance", **_REFERENCE)
    ax.set(xlabel="Non-poor households selected (false-positive rate)",
           ylabel="Poor households selected (coverage of the poor)", xlim=(0, 1), ylim=(0, 1.01),
           title="ROC: poor vs non-poor households")
    ax.legend(loc="lower right")
    return fig


def calibration_figure(y: Any, risk_by_model: Mapping[str, Any], n_bins: int = 10) -> Figure:
    """Observed poverty rate against mean predicted risk in equal-frequency bins, per model.

    Uses `training.evaluate.calibration_bins` (the bins of the ECE); the legend gives the ECE.
    One line per model plus one for perfect calibration.
    """
    labels, risks = _checked(y, risk_by_model, probabilities=True)
    fig, ax = _figure()
    for name, risk in risks.items():
        bins = calibration_bins(labels, risk, n_bins)
        ece = binary_metrics(labels, risk, ece_bins=n_bins)["ece"]
        ax.plot(bins["mean_risk"], bins["observed_rate"], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.plot([0, 1], [0, 1], label="perfect calibration", **_REFERENCE)
    ax.set(xlabel="Mean predicted risk of being poor", ylabel="Observed share poor", xlim=(0, 1), ylim=(0, 1),
           title=f"Calibration ({n_bins} equal-frequency bins)")
    ax.legend(loc="upper left")
    return fig


def budget_curve_figure(y: Any, risk_by_model: Mapping[str, Any], budgets: Sequence[float] = DEFAULT_BUDGETS,
                        max_points: int = 1000) -> Figure:
    """Coverage of the poor against the share of households selected (0-100 %), per model.

    Households are taken in risk order (ties by position, as in `budget_table`); the random
    diagonal is what a lottery of the same size would cover. Markers (scatter points, not
    lines) sit at `budgets`. The curve is drawn through at most `max_points` + 1 points.
    One line per model plus one for random selection.
    """
    labels, risks = _checked(y, risk_by_model)
    n = labels.size
    n_poor = int(labels.sum())
    if n_poor == 0:
        raise ValueError("coverage of the poor is undefined without poor households")
    k = np.unique(np.linspace(0, n, min(n, max_points) + 1).round().astype(np.int64))
    fig, ax = _figure()
    for name, risk in risks.items():
        covered = np.r_[0, np.cumsum(labels[risk_ranking(risk)])] / n_poor
        (line,) = ax.plot(100 * k / n, 100 * covered[k], label=name)
        at = budget_table(labels, risk, budgets)
        ax.scatter(100 * at["share_selected"], 100 * at["coverage_of_poor"], color=line.get_color(), zorder=3)
    ax.plot([0, 100], [0, 100], label="random selection", **_REFERENCE)
    ax.set(xlabel="Households selected (% of all, highest risk first)", ylabel="Poor households covered (%)",
           xlim=(0, 100), ylim=(0, 100), title="Coverage of the poor by budget")
    ax.legend(loc="lower right")
    return fig


def group_figure(group_table_df: pd.DataFrame, population_exclusion_error: float | None = None) -> Figure:
    """Exclusion error per group with its bootstrap interval (from `training.evaluate.group_table`).

    One row per group, labelled ``column`` (boolean groups) or ``column = value``; groups flagged
    ``significantly_worse`` are drawn in red. `population_exclusion_error`, when given, is drawn
    as a vertical reference line.
    """
    if group_table_df.empty:
        raise ValueError("the group table is empty: no group reached the minimum size")
    g = group_table_df.reset_index(drop=True)
    names = [c if v == "True" else f"{c} = {v}" for c, v in zip(g["group"], g["value"])]
    pos = np.arange(len(g))[::-1]                       # first group at the top
    err = np.vstack([g["exclusion_error"] - g["exclusion_error_lo"],
                     g["exclusion_error_hi"] - g["exclusion_error"]]).clip(min=0) * 100
    fig, ax = _figure(7.0, max(3.0, 0.28 * len(g) + 1.2))
    worse = g["significantly_worse"].to_numpy(dtype=bool)
    for mask, color, label in ((~worse, "tab:blue", "group"), (worse, "tab:red", "significantly worse than the rest")):
        if mask.any():
            ax.errorbar(100 * g.loc[mask, "exclusion_error"], pos[mask], xerr=err[:, mask], fmt="o", color=color,
                        capsize=3, label=label)
    if population_exclusion_error is not None:
        ax.axvline(100 * population_exclusion_error, label="whole population", **_REFERENCE)
    ax.set_yticks(pos, names)
    ax.set(xlabel="Exclusion error (% of the group's poor households not selected)", xlim=(0, 100),
           title="Exclusion error by group (bootstrap interval)")
    ax.legend(loc="lower right", fontsize="small")
    return fig

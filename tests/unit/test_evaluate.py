"""Evaluation as targeting: budget table by hand, scorers with known answers, groups, report, plots."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

from training.evaluate import (BUDGET_COLUMNS, GROUP_COLUMNS, binary_metrics, budget_table, group_table,
                               households_selected, multiclass_metrics, report_markdown, select_budget,
                               targeting_report)
from training.plots import budget_curve_figure, calibration_figure, group_figure, roc_figure

# Ten households, listed here from highest to lowest risk; 4 poor (prevalence 0.4).
_RISK_DESC = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
_POOR_DESC = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0])
# ...and handed to the functions shuffled, so the ranking must be done by risk, not by position.
_SHUFFLE = np.array([7, 2, 9, 0, 4, 8, 1, 5, 3, 6])
RISK10, POOR10 = _RISK_DESC[_SHUFFLE], _POOR_DESC[_SHUFFLE]


def _synthetic(n: int, prevalence: float, seed: int, strength: float = 3.0):
    """Labels and an informative risk score (logistic in a noisy signal)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(np.int8)
    risk = 1 / (1 + np.exp(-(strength * (2 * y - 1) + rng.normal(0, 2, n) - 1)))
    return y, risk


# -- budget table ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "selected", "coverage", "precision", "inclusion", "exclusion"),
    [
        (0.10, 1, 1 / 4, 1.0, 0.0, 3 / 4),
        (0.20, 2, 1 / 4, 1 / 2, 1 / 2, 3 / 4),
        (0.25, 3, 2 / 4, 2 / 3, 1 / 3, 2 / 4),   # ceil(2.5) = 3
        (0.30, 3, 2 / 4, 2 / 3, 1 / 3, 2 / 4),
        (0.40, 4, 3 / 4, 3 / 4, 1 / 4, 1 / 4),
        (0.70, 7, 4 / 4, 4 / 7, 3 / 7, 0.0),
        (1.00, 10, 1.0, 0.4, 0.6, 0.0),
    ],
)
def test_budget_table_by_hand(budget, selected, coverage, precision, inclusion, exclusion):
    row = budget_table(POOR10, RISK10, [budget]).iloc[0]
    assert row["selected"] == selected
    assert row["coverage_of_poor"] == pytest.approx(coverage)
    assert row["precision"] == pytest.approx(precision)
    assert row["inclusion_error"] == pytest.approx(inclusion)
    assert row["exclusion_error"] == pytest.approx(exclusion)
    assert row["random_recall"] == pytest.approx(selected / 10)
    assert row["random_precision"] == pytest.approx(0.4)
    assert row["lift"] == pytest.approx(precision / 0.4)
    assert row["threshold"] == pytest.approx(_RISK_DESC[selected - 1])


def test_budget_table_shape_and_order():
    table = budget_table(POOR10, RISK10)
    assert list(table.columns) == list(BUDGET_COLUMNS)
    assert table["budget"].tolist() == [0.10, 0.20, 0.25, 0.30, 0.40]
    assert table["coverage_of_poor"].is_monotonic_increasing


def test_perfect_scorer():
    y, _ = _synthetic(2_000, 0.3, seed=1)
    prevalence = y.mean()
    assert binary_metrics(y, y.astype(float))["auc"] == 1.0
    row = budget_table(y, y.astype(float), [prevalence]).iloc[0]   # budget exactly the number of poor
    assert row["exclusion_error"] == 0.0 and row["inclusion_error"] == 0.0 and row["coverage_of_poor"] == 1.0


def test_random_scorer_does_as_well_as_a_lottery():
    y, _ = _synthetic(40_000, 0.3, seed=2)
    risk = np.random.default_rng(3).random(y.size)
    prevalence = y.mean()
    assert binary_metrics(y, risk)["auc"] == pytest.approx(0.5, abs=0.015)
    row = budget_table(y, risk, [prevalence]).iloc[0]
    assert row["exclusion_error"] == pytest.approx(1 - prevalence, abs=0.015)
    assert row["inclusion_error"] == pytest.approx(1 - prevalence, abs=0.015)
    assert row["lift"] == pytest.approx(1.0, abs=0.05)


def test_ties_are_broken_by_position_deterministically():
    risk = np.array([0.5, 0.9, 0.5, 0.5, 0.5])
    assert select_budget(risk, 0.4).tolist() == [True, True, False, False, False]
    flat = np.full(10, 0.3)
    assert np.flatnonzero(select_budget(flat, 0.3)).tolist() == [0, 1, 2]
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1, 0, 0])
    first, second = budget_table(y, flat), budget_table(y, flat)
    pd.testing.assert_frame_equal(first, second)
    assert first.loc[first["budget"] == 0.3, "poor_selected"].item() == 2   # households 0, 1, 2


@pytest.mark.parametrize(
    ("n", "budget", "expected"),
    [(10, 0.25, 3), (10, 0.01, 1), (100_000, 0.25, 25_000), (3, 1.0, 3),
     (100, 0.07, 7)],                                       # 0.07 * 100 = 7.000000000000001 in floating point
)
def test_households_selected(n, budget, expected):
    assert households_selected(n, budget) == expected


@pytest.mark.parametrize(
    ("y", "risk", "budgets"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], [0.25]),            # label not 0/1
        ([0, 1, 1], [0.1, np.nan, 0.3], [0.25]),         # missing risk
        ([0, 1, 1], [0.1, 0.2], [0.25]),                 # lengths differ
        ([0, 1, 1], [0.1, 0.2, 0.3], [0.0]),             # empty budget
        ([0, 1, 1], [0.1, 0.2, 0.3], [1.5]),             # budget above everyone
    ],
)
def test_bad_inputs_are_refused(y, risk, budgets):
    with pytest.raises(ValueError):
        budget_table(y, risk, budgets)


# -- probability quality --------------------------------------------------------------------------------------


def test_binary_metrics_agree_with_sklearn():
    y, risk = _synthetic(3_000, 0.25, seed=4)
    m = binary_metrics(y, risk)
    assert m["auc"] == pytest.approx(roc_auc_score(y, risk))
    assert m["log_loss"] == pytest.approx(log_loss(y, risk))
    assert m["brier"] == pytest.approx(np.mean((risk - y) ** 2))
    assert m["prevalence"] == pytest.approx(y.mean()) and m["n"] == 3_000


def test_ece_small_when_calibrated_and_large_when_not():
    rng = np.random.default_rng(5)
    p = rng.random(50_000)
    y = (rng.random(p.size) < p).astype(int)
    assert binary_metrics(y, p)["ece"] < 0.02
    assert binary_metrics(y, p**3)["ece"] > 0.15          # systematically under-predicts poverty


def test_ece_by_hand():
    # 20 households, 10 bins of 2: risk 0.2 for the first 10 (one poor per pair -> rate 0.5, off by 0.3),
    # risk 0.8 for the last 10 (both poor in every pair -> rate 1.0, off by 0.2). ECE = 0.5*0.3 + 0.5*0.2.
    risk = np.r_[np.full(10, 0.2), np.full(10, 0.8)]
    y = np.r_[np.tile([1, 0], 5), np.ones(10)]
    assert binary_metrics(y, risk)["ece"] == pytest.approx(0.25)


# -- groups ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def population():
    """20,000 households; risk is noise for a 'neglected' tenth, informative for everyone else."""
    y, risk = _synthetic(20_000, 0.3, seed=6)
    rng = np.random.default_rng(7)
    neglected = rng.random(y.size) < 0.1
    ordinary = ~neglected & (rng.random(y.size) < 0.12)
    risk = risk.copy()
    risk[neglected] = rng.permutation(risk[neglected])    # the model knows nothing about this group
    county = rng.choice(["430521", "430522", "430523", "430524"], size=y.size)
    county[:12] = "430599"                                 # too small to report
    groups = pd.DataFrame({"neglected": neglected, "ordinary": ordinary, "county": county},
                          index=np.arange(y.size) + 1000)  # index ignored: rows align by position
    return y, risk, groups


def test_group_table_flags_the_neglected_group_only(population):
    y, risk, groups = population
    before = groups.copy()
    table = group_table(y, risk, groups, budget=0.25, n_boot=200, seed=0)
    pd.testing.assert_frame_equal(groups, before)          # input left alone
    assert list(table.columns) == list(GROUP_COLUMNS)
    by_name = table.set_index(["group", "value"])
    assert by_name.loc[("neglected", "True"), "significantly_worse"]
    assert not by_name.loc[("ordinary", "True"), "significantly_worse"]
    assert not table.loc[table["group"] == "county", "significantly_worse"].any()
    assert "430599" not in set(table["value"])             # below min_size
    assert sorted(table.loc[table["group"] == "county", "value"]) == ["430521", "430522", "430523", "430524"]
    neglected = by_name.loc[("neglected", "True")]
    assert neglected["auc"] < 0.6 < by_name.loc[("ordinary", "True"), "auc"]


def test_group_table_point_values_and_intervals(population):
    y, risk, groups = population
    table = group_table(y, risk, groups, budget=0.25, n_boot=100, seed=1)
    selected = select_budget(risk, 0.25)                    # threshold from the whole population
    for row in table.itertuples():
        col = groups[row.group].to_numpy()
        member = col if row.value == "True" else col == row.value
        poor = y[member] == 1
        assert row.n == member.sum() and row.n_poor == poor.sum()
        assert row.exclusion_error == pytest.approx(1 - selected[member][poor].mean())
        assert row.inclusion_error == pytest.approx(1 - y[member][selected[member]].mean())
        assert row.rest_exclusion_error == pytest.approx(1 - selected[~member][y[~member] == 1].mean())
        assert row.auc == pytest.approx(roc_auc_score(y[member], risk[member]))
        for name in ("auc", "coverage_of_poor", "exclusion_error", "inclusion_error", "exclusion_gap"):
            lo, hi, point = getattr(row, f"{name}_lo"), getattr(row, f"{name}_hi"), getattr(row, name)
            assert lo <= point <= hi


def test_group_table_is_seeded(population):
    y, risk, groups = population
    a = group_table(y, risk, groups, n_boot=50, seed=3)
    pd.testing.assert_frame_equal(a, group_table(y, risk, groups, n_boot=50, seed=3))
    assert not a["exclusion_error_lo"].equals(group_table(y, risk, groups, n_boot=50, seed=4)["exclusion_error_lo"])
    # a group's interval does not depend on which other groups are listed
    alone = group_table(y, risk, groups[["ordinary"]], n_boot=50, seed=3)
    pd.testing.assert_series_equal(alone.iloc[0], a.loc[a["group"] == "ordinary"].iloc[0], check_names=False)


def test_group_auc_counts_ties_as_half(population):
    y, risk, groups = population
    coarse = np.round(risk, 1)                              # many tied scores, as from a points-based scorecard
    table = group_table(y, coarse, groups[["ordinary"]], n_boot=20)
    member = groups["ordinary"].to_numpy()
    assert table.iloc[0]["auc"] == pytest.approx(roc_auc_score(y[member], coarse[member]))


def test_group_with_one_class_has_no_auc():
    y = np.r_[np.zeros(40, dtype=int), np.ones(60, dtype=int)]
    risk = np.linspace(0, 1, 100)
    table = group_table(y, risk, pd.DataFrame({"all_non_poor": np.arange(100) < 40}), n_boot=20)
    row = table.iloc[0]
    assert np.isnan(row["auc"]) and np.isnan(row["exclusion_error"]) and not row["significantly_worse"]


# -- poverty levels -------------------------------------------------------------------------------------------


def test_multiclass_metrics_agree_with_sklearn():
    rng = np.random.default_rng(8)
    levels = rng.choice([1, 2, 3, 4], size=2_000, p=[0.1, 0.2, 0.3, 0.4])
    logits = rng.normal(size=(levels.size, 4))
    logits[np.arange(levels.size), levels - 1] += 1.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m = multiclass_metrics(levels, probs)
    pred = np.argmax(probs, axis=1) + 1
    assert m["macro_f1"] == pytest.approx(f1_score(levels, pred, average="macro"))
    assert m["accuracy"] == pytest.approx(accuracy_score(levels, pred))
    assert m["f1_per_level"][3] == pytest.approx(f1_score(levels, pred, labels=[3], average="macro"))
    assert m["auc_poor"] == pytest.approx(roc_auc_score(levels <= 2, probs[:, :2].sum(axis=1)))
    assert m["log_loss"] == pytest.approx(log_loss(levels, probs, labels=[1, 2, 3, 4]))


def test_multiclass_refuses_probabilities_that_do_not_sum_to_one():
    with pytest.raises(ValueError):
        multiclass_metrics([1, 2], np.full((2, 4), 0.5))


# -- report ---------------------------------------------------------------------------------------------------


def test_report_is_json_and_markdown_has_the_budget_lines(population):
    y, risk, groups = population
    report = targeting_report(y, risk, groups, budgets=(0.10, 0.20, 0.30), main_budget=0.25, n_boot=50)
    text = json.dumps(report, allow_nan=False)               # strict JSON: NaN became null
    assert json.loads(text)["main"]["budget"] == 0.25
    assert [b["budget"] for b in report["budgets"]] == [0.10, 0.20, 0.25, 0.30]
    md = report_markdown(report)
    for label in ("10%", "20%", "25%", "30%"):
        assert f"\n| {label} |" in md
    assert "| neglected |" in md and "⚠" in md and "significantly worse exclusion error:** neglected" in md
    assert f"{report['main']['selected']:,} highest-risk households" in md


def test_report_without_groups_and_with_undefined_values():
    y = np.array([0, 0, 0, 0])                                # no poor household: AUC and coverage undefined
    report = targeting_report(y, np.array([0.1, 0.2, 0.3, 0.4]))
    json.dumps(report, allow_nan=False)
    assert report["metrics"]["auc"] is None and report["groups"] == []
    assert "Groups" not in report_markdown(report)


# -- plots ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [roc_figure, calibration_figure, budget_curve_figure])
@pytest.mark.parametrize("n_models", [1, 3])
def test_curve_figures_have_one_line_per_model_and_a_reference(make, n_models):
    y, risk = _synthetic(1_000, 0.3, seed=9)
    models = {f"model {i}": np.clip(risk + 0.1 * i * np.random.default_rng(i).random(y.size), 0, 1)
              for i in range(n_models)}
    fig = make(y, models)
    assert isinstance(fig, Figure)
    assert len(fig.axes[0].lines) == n_models + 1
    fig.savefig(io.BytesIO(), format="png")                   # draws on its own Agg canvas


def test_group_figure_has_one_row_per_group(population):
    y, risk, groups = population
    table = group_table(y, risk, groups, n_boot=20)
    fig = group_figure(table, population_exclusion_error=0.2)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == len(table) and "neglected" in labels and "county = 430521" in labels
    fig.savefig(io.BytesIO(), format="png")

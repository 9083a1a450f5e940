"""The registry featurizer: leakage rules, time order, invariance, robustness, persistence."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from features.featurizer import RegistryFeaturizer, describe_feature, task_indicator_columns
from features.records import HouseholdRecords
from features.schema import CAUSES, HOUSEHOLD_SPECS
from tests.helpers import LINES, tiny_panel
from tpas.errors import DataError

MONITORING = {y: 1.5 * v for y, v in LINES.items()}


def fitted(task, records=None):
    records = records if records is not None else tiny_panel()
    return RegistryFeaturizer(task, LINES, MONITORING, history_years=3).fit(records)


def test_poverty_features_exclude_label_defining_fields():
    names = set(fitted("poverty").feature_names_)
    for spec in HOUSEHOLD_SPECS.values():
        if spec.role in ("income", "status", "pii", "id") or spec.set == "programmes":
            assert not any(n == spec.name or n.startswith(spec.name + "=") for n in names), spec.name
    assert not any(n.startswith(("income_", "years_poor", "ever_registered")) for n in names)
    assert "medical_spending" not in names and "medical_spending_per_capita" not in names
    assert "n_serious_ill" in names and "land_per_capita" in names


def test_relapse_features_include_income_and_history():
    names = set(fitted("relapse").feature_names_)
    assert {"net_income_per_capita", "income_lag1", "income_change", "years_poor_recent",
            "income_to_monitoring_line", "spending_to_last_income"} <= names


def test_one_row_per_wave_indexed_by_household_and_year():
    records = tiny_panel()
    X = fitted("poverty", records).transform(records)
    assert X.index.names == ["household_id", "year"]
    assert len(X) == len(records.households) and X.index.is_unique
    assert (X.dtypes == "float32").all()


def test_member_aggregates_are_right():
    records = tiny_panel()
    X = fitted("poverty", records).transform(records)
    row = X.loc[("H1", 2019)]
    assert row["n_members"] == 3 and row["n_children"] == 1 and row["n_able_workers"] == 2
    assert row["head_age"] == 45 and row["head_female"] == 0
    assert row["land_per_capita"] == pytest.approx(1.0)


def test_history_values_and_gaps():
    records = tiny_panel()
    X = fitted("relapse", records).transform(records)
    assert X.loc[("H1", 2020), "income_lag1"] == 3000
    assert X.loc[("H1", 2020), "income_change"] == pytest.approx(0.5)
    assert X.loc[("H1", 2021), "years_poor_recent"] == 1
    assert np.isnan(X.loc[("H1", 2019), "income_lag1"])  # no earlier wave on record
    # a missing wave is a gap, not "the previous row"
    gap = records.select_years(first=2019, last=2019)
    later = records.select_years(first=2021)
    gapped = HouseholdRecords(pd.concat([gap.households, later.households]), pd.concat([gap.members, later.members]))
    Xg = fitted("relapse", records).transform(gapped)
    assert np.isnan(Xg.loc[("H1", 2021), "income_lag1"])


def test_no_feature_of_year_t_uses_year_t_plus_1():
    """Features of waves ≤ t are identical whether later waves are absent, present or scrambled."""
    records = tiny_panel()
    for task in ("poverty", "relapse"):
        f = fitted(task, records)
        upto = records.select_years(last=2020)
        base = f.transform(upto)
        hh = records.households.copy()
        later = hh["year"] > 2020
        hh.loc[later, "net_income_per_capita"] = 1.0
        hh.loc[later, "exit_year"] = 2021
        mb = records.members.copy()
        mb.loc[mb["year"] > 2020, "health"] = "serious"
        full = f.transform(HouseholdRecords(hh, mb))
        pd.testing.assert_frame_equal(base, full.loc[base.index])


def test_order_of_households_and_members_changes_nothing():
    records = tiny_panel()
    f = fitted("relapse", records)
    base = f.transform(records)
    shuffled = HouseholdRecords(records.households.sample(frac=1, random_state=1),
                                records.members.sample(frac=1, random_state=2))
    out = f.transform(shuffled)
    pd.testing.assert_frame_equal(base.sort_index(), out.sort_index())


def test_unseen_categories_and_missing_values_do_not_break_it():
    records = tiny_panel()
    f = fitted("poverty", records)
    hh = records.households.copy()
    hh["terrain"] = hh["terrain"].astype(object)
    hh.loc[0, "terrain"] = "plateau"          # not in the schema vocabulary
    hh.loc[1, "housing_safety_grade"] = pd.NA
    hh = hh.drop(columns=["cultivated_land_mu"])  # an optional field absent altogether
    X = f.transform(HouseholdRecords(hh, records.members))
    assert np.isnan(X.iloc[0]["terrain=hill"]) and np.isnan(X.iloc[1]["housing_safety_grade"])
    assert X["land_per_capita"].isna().all()
    assert list(X.columns) == f.feature_names_


def test_contract_errors():
    with pytest.raises(NotFittedError):
        RegistryFeaturizer("poverty").transform(tiny_panel())
    with pytest.raises(DataError, match="lack column"):
        fitted("poverty").transform(HouseholdRecords(tiny_panel().households.drop(columns=["village_code"]),
                                                     tiny_panel().members))
    with pytest.raises(ValueError, match="unknown registry task"):
        task_indicator_columns("wealth")


def test_saved_featurizer_reproduces_its_features():
    records = tiny_panel()
    f = fitted("relapse", records)
    again = pickle.loads(pickle.dumps(f))
    pd.testing.assert_frame_equal(f.transform(records), again.transform(records))


def test_every_feature_has_words_and_a_known_cause():
    for task in ("poverty", "relapse"):
        for info in fitted(task).feature_info_:
            assert info["en"] and info["zh"]
            assert info["cause"] is None or info["cause"] in CAUSES
    assert describe_feature("n_serious_ill")["cause"] == "illness"
    assert describe_feature("terrain=mountain")["en"] == "terrain: mountain"

"""Unit tests of `SurveyFeaturizer`: one row per household, invariances, unknown values and the fitted contract."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from features.schema import CAUSES
from features.sources.idb import read_survey
from features.survey_featurizer import FEATURES, REQUIRED_COLUMNS, SurveyFeaturizer
from tpas.errors import DataError


@pytest.fixture(scope="module")
def persons(survey_path) -> pd.DataFrame:
    """The persons of 300 households of the real survey (validated, with Target)."""
    everyone, _ = read_survey(survey_path, require_target=True)
    chosen = everyone["idhogar"].drop_duplicates().sample(300, random_state=3)
    return everyone[everyone["idhogar"].isin(chosen)].reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted(persons) -> SurveyFeaturizer:
    return SurveyFeaturizer().fit(persons)


@pytest.fixture(scope="module")
def features(fitted, persons) -> pd.DataFrame:
    return fitted.transform(persons)


def _household(persons: pd.DataFrame, min_size: int = 3) -> str:
    """A household with a head and at least `min_size` members."""
    sizes = persons.groupby("idhogar").size()
    heads = persons.loc[persons["parentesco1"] == 1, "idhogar"]
    return sorted(set(sizes[sizes >= min_size].index) & set(heads))[0]


def test_one_float_row_per_household_sorted(features, persons, fitted):
    assert features.index.name == "household_id"
    assert features.index.is_unique and features.index.is_monotonic_increasing
    assert set(features.index) == set(persons["idhogar"])
    assert list(features.columns) == fitted.feature_names_ == list(FEATURES)
    assert all(dtype == np.float64 for dtype in features.dtypes)


def test_values_of_one_household(features, persons):
    hid = _household(persons)
    members = persons[persons["idhogar"] == hid]
    head = members[members["parentesco1"] == 1].iloc[0]
    row = features.loc[hid]
    assert row["rooms_per_person"] == pytest.approx(head["rooms"] / len(members))
    assert row["head_schooling"] == head["escolari"]
    assert row["head_age"] == head["age"]
    adults = members[members["age"] >= 18]
    assert row["mean_adult_schooling"] == pytest.approx(adults["escolari"].mean())
    assert row["n_working_age"] == ((members["age"] >= 18) & (members["age"] <= 64)).sum()
    region = [i for i in range(1, 7) if head[f"lugar{i}"] == 1][0]
    assert row["region"] == region
    assert row["wall_state"] == [s for s in (1, 2, 3) if head[f"epared{s}"] == 1][0]


def test_order_of_persons_and_columns_changes_nothing(fitted, persons, features):
    shuffled = persons.sample(frac=1.0, random_state=11)
    shuffled = shuffled[list(reversed(shuffled.columns))]
    again = fitted.transform(shuffled)
    pd.testing.assert_frame_equal(again, features, check_exact=True)
    refit = SurveyFeaturizer().fit(shuffled)
    assert refit.schooling_norms_ == fitted.schooling_norms_ and refit.clip_bounds_ == fitted.clip_bounds_


def test_target_is_never_read(fitted, persons, features):
    assert "Target" not in fitted.feature_names_ and "Target" not in list(fitted.feature_names_in_)
    without = fitted.transform(persons.drop(columns=["Target"]))
    pd.testing.assert_frame_equal(without, features, check_exact=True)
    scrambled = persons.assign(Target=persons["Target"].sample(frac=1.0, random_state=5).to_numpy())
    pd.testing.assert_frame_equal(fitted.transform(scrambled), features, check_exact=True)
    refit = SurveyFeaturizer().fit(scrambled).transform(persons)
    pd.testing.assert_frame_equal(refit, features, check_exact=True)


def test_raw_text_rows_give_the_same_features(survey_path, fitted, persons, features):
    raw = pd.read_csv(survey_path, dtype=str)  # yes/no still words, numbers still text
    raw = raw[raw["idhogar"].isin(persons["idhogar"])]
    pd.testing.assert_frame_equal(fitted.transform(raw), features, check_exact=True)


def test_input_is_not_modified(fitted, persons):
    before = persons.copy()
    fitted.transform(persons)
    SurveyFeaturizer().fit(persons)
    pd.testing.assert_frame_equal(persons, before)


def test_unseen_and_missing_values_become_nan(fitted, persons, features):
    hid = _household(persons)
    rows = persons.index[persons["idhogar"] == hid]
    head = rows[(persons.loc[rows, "parentesco1"] == 1).to_numpy()][0]
    broken = persons.astype({"refrig": object, "rooms": object}).copy()
    broken.loc[rows, [f"lugar{i}" for i in range(1, 7)]] = 0.0   # no region ticked: an unseen region
    broken.loc[rows, "epared3"] = 7.0                            # a flag that is not 0/1
    broken.loc[rows, "rooms"] = "many"                           # unreadable
    broken.loc[head, "age"] = np.nan                             # missing
    broken.loc[rows, "refrig"] = "perhaps"
    out = fitted.transform(broken)
    row = out.loc[hid]
    assert np.isnan(row["region"]) and np.isnan(row["wall_state"]) and np.isnan(row["housing_state"])
    assert np.isnan(row["rooms"]) and np.isnan(row["rooms_per_person"]) and np.isnan(row["assets"])
    assert np.isnan(row["head_age"])
    others = out.drop(index=hid)
    pd.testing.assert_frame_equal(others, features.drop(index=hid), check_exact=True)


def test_unseen_households_and_ages_are_featurized(persons):
    households = persons["idhogar"].drop_duplicates()
    train = persons[persons["idhogar"].isin(households.iloc[:150])]
    test = persons[~persons["idhogar"].isin(households.iloc[:150])].copy()
    test.loc[test.index[0], "age"] = 119.0  # older than anyone seen in training
    out = SurveyFeaturizer().fit(train).transform(test)
    assert set(out.index) == set(test["idhogar"])


def test_household_without_head_gets_a_row_from_its_oldest_member(fitted, persons):
    hid = _household(persons)
    headless = persons.copy()
    headless.loc[headless["idhogar"] == hid, "parentesco1"] = 0.0
    row = fitted.transform(headless).loc[hid]
    members = persons[persons["idhogar"] == hid]
    assert row["head_age"] == members["age"].max()
    assert row["rooms"] == members["rooms"].iloc[0]


def test_money_amounts_are_clipped_at_the_training_quantile(fitted, persons):
    assert set(fitted.clip_bounds_) == {"rent", "rent_per_person", "rent_per_room"}
    hid = _household(persons)
    rich = persons.copy()
    rich.loc[rich["idhogar"] == hid, "v2a1"] = 1e9
    assert fitted.transform(rich).loc[hid, "rent"] == fitted.clip_bounds_["rent"]


def test_transform_before_fit_raises_not_fitted(persons):
    with pytest.raises(NotFittedError):
        SurveyFeaturizer().transform(persons)


def test_missing_expected_columns_are_named(fitted, persons):
    with pytest.raises(DataError, match="rooms.*escolari|escolari.*rooms"):
        fitted.transform(persons.drop(columns=["rooms", "escolari"]))
    with pytest.raises(DataError, match="idhogar"):
        SurveyFeaturizer().fit(persons.drop(columns=["idhogar"]))


def test_person_without_household_id_is_a_data_error(fitted, persons):
    broken = persons.copy()
    broken.loc[broken.index[0], "idhogar"] = None
    with pytest.raises(DataError, match="household id"):
        fitted.transform(broken)


def test_feature_info_speaks_in_causes(fitted):
    info = fitted.feature_info_
    assert [d["name"] for d in info] == fitted.feature_names_
    for d in info:
        assert set(d) == {"name", "en", "zh", "cause", "description"}
        assert d["en"] and d["zh"] and d["description"]
        assert d["cause"] is None or d["cause"] in CAUSES
    causes = {d["cause"] for d in info}
    assert {"education", "labour", "capital", "disability", "water"} <= causes
    assert fitted.describe().shape == (len(fitted.feature_names_), 4)


def test_no_squares_or_raw_ids_among_features(fitted):
    assert not any(n.startswith("SQB") or n in ("agesq", "Id", "idhogar", "Target") for n in fitted.feature_names_)
    assert not any(c.startswith("SQB") or c == "agesq" for c in REQUIRED_COLUMNS)


def test_sklearn_contract(fitted, persons):
    twin = clone(fitted)
    assert twin.get_params() == {"clip_quantile": 0.995}
    with pytest.raises(NotFittedError):
        twin.transform(persons)
    assert list(fitted.get_feature_names_out()) == fitted.feature_names_
    assert fitted.n_features_in_ == len(fitted.feature_names_in_) == persons.shape[1] - 1
    with pytest.raises(ValueError, match="clip_quantile"):
        SurveyFeaturizer(clip_quantile=0.1).fit(persons)

"""Data tests of the IDB survey source: reading, yes/no parsing, person rejects and household labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.sources.idb import NUMERIC_COLUMNS, household_levels, parse_survey_numbers, read_survey
from features.validation import REJECT_COLUMNS
from tpas.errors import DataError


@pytest.fixture(scope="module")
def raw_survey(survey_path: Path) -> pd.DataFrame:
    """The real survey as text, exactly as in the file."""
    return pd.read_csv(survey_path, dtype=str)


@pytest.fixture(scope="module")
def survey(survey_path: Path):
    """`read_survey` of the real file, with Target required: (persons, report)."""
    return read_survey(survey_path, require_target=True)


@pytest.fixture(scope="module")
def small_raw(raw_survey: pd.DataFrame) -> pd.DataFrame:
    """The persons of the first 40 households of the file (as text)."""
    first = raw_survey["idhogar"].drop_duplicates().head(40)
    return raw_survey[raw_survey["idhogar"].isin(first)].reset_index(drop=True)


# -- parsing ------------------------------------------------------------------------------------------------------


def test_yes_no_and_numbers_are_parsed():
    values, bad = parse_survey_numbers(pd.Series(["yes", "no", "2.5", " YES ", None, "", "abc", "8"]))
    expected = [1.0, 0.0, 2.5, 1.0, np.nan, np.nan, np.nan, 8.0]
    np.testing.assert_array_equal(values.to_numpy(), expected)
    assert bad.tolist() == [False, False, False, False, False, False, True, False]


def test_real_survey_reads_clean_with_yes_no_as_numbers(survey, raw_survey):
    persons, report = survey
    assert len(persons) == 7606 and persons["idhogar"].nunique() == 2379
    assert report.n_rejected == 0 and len(report.rejects) == 0
    assert [(t.table, t.n_read, t.n_valid) for t in report.tables] == [("persons", 7606, 7606),
                                                                        ("households", 2379, 2379)]
    for col in ("dependency", "edjefe", "edjefa"):
        assert persons[col].dtype == "float64"
        assert (persons.loc[raw_survey[col] == "yes", col] == 1.0).all()
        assert (persons.loc[raw_survey[col] == "no", col] == 0.0).all()
        numeric = raw_survey[col].str.fullmatch(r"[0-9.]+")
        assert numeric.any()
        np.testing.assert_allclose(persons.loc[numeric, col], raw_survey.loc[numeric, col].astype(float))
    assert all(persons[c].dtype == "float64" for c in NUMERIC_COLUMNS)
    assert persons["Target"].dtype == "Int64" and set(persons["Target"].unique()) == {1, 2, 3, 4}


# -- rejects ------------------------------------------------------------------------------------------------------


def _two_member_households(frame: pd.DataFrame, n: int) -> list[str]:
    sizes = frame.groupby("idhogar", sort=False).size()
    return list(sizes[sizes >= 2].index[:n])


def test_corrupted_copy_rejects_bad_persons_and_their_households(small_raw, tmp_path):
    raw = small_raw.copy()
    h_missing, h_binary, h_age, h_target = _two_member_households(raw, 4)
    row_of = {h: int(raw.index[raw["idhogar"] == h][0]) for h in (h_missing, h_binary, h_age, h_target)}
    raw.loc[row_of[h_missing], "idhogar"] = ""
    raw.loc[row_of[h_binary], "refrig"] = "7"
    raw.loc[row_of[h_age], "age"] = "forty"
    raw.loc[row_of[h_target], "Target"] = "5"
    path = tmp_path / "survey.csv"
    raw.to_csv(path, index=False)

    persons, report = read_survey(path, require_target=True)
    rej = report.rejects
    assert list(rej.columns) == REJECT_COLUMNS
    assert set(rej["table"]) == {"persons"} and set(rej["source"]) == {str(path)}

    def problem(row: int) -> pd.Series:
        hit = rej[rej["row"] == row + 1]  # 1-based record number
        assert len(hit) == 1, hit
        return hit.iloc[0]

    missing = problem(row_of[h_missing])
    assert pd.isna(missing["household_id"]) and missing["column"] == "idhogar" and "household id" in missing["reason"]
    binary = problem(row_of[h_binary])
    assert (binary["household_id"], binary["column"], binary["value"], binary["reason"]) == (
        h_binary, "refrig", "7", "not 0 or 1")
    age = problem(row_of[h_age])
    assert (age["household_id"], age["column"], age["value"]) == (h_age, "age", "forty")
    assert "number" in age["reason"]
    target = problem(row_of[h_target])
    assert (target["household_id"], target["column"], target["reason"]) == (
        h_target, "Target", "not a poverty level 1-4")
    assert rej["year"].isna().all()

    # The other members of the three identifiable households are rejected too (cascade), with a reason.
    for h in (h_binary, h_age, h_target):
        members = raw.index[raw["idhogar"] == h]
        cascade = rej[rej["row"].isin(members + 1) & (rej["reason"].str.contains("household"))]
        assert len(cascade) == len(members) - 1
        assert (cascade["column"] == "idhogar").all()
    # A person without a household id cannot be tied to a household: the rest of h_missing stays.
    rest_of_missing = raw.index[(raw["idhogar"] == h_missing)]
    assert len(rest_of_missing) >= 1 and raw.loc[rest_of_missing, "Id"].isin(persons["Id"]).all()

    bad = {h_binary, h_age, h_target}
    n_bad_persons = int(raw["idhogar"].isin(bad).sum()) + 1  # + the person without a household id
    assert len(persons) == len(raw) - n_bad_persons
    assert not persons["idhogar"].isin(bad).any()
    assert report.tables[0].n_read == len(raw)
    assert report.tables[0].n_valid == len(persons)
    assert report.tables[0].n_rejected == n_bad_persons
    assert report.tables[1].n_rejected == 3
    # Nothing is dropped silently: every input row is either valid or has a reject row.
    assert len(persons) + rej["row"].nunique() == len(raw)


def test_missing_target_is_a_reject_only_when_required(small_raw, tmp_path):
    raw = small_raw.copy()
    raw.loc[0, "Target"] = ""
    path = tmp_path / "survey.csv"
    raw.to_csv(path, index=False)
    scoring, report = read_survey(path)
    assert len(scoring) == len(raw) and report.n_rejected == 0
    training, report = read_survey(path, require_target=True)
    assert report.rejects.loc[report.rejects["column"] == "Target", "reason"].tolist() == ["missing poverty level"]
    assert raw.loc[0, "idhogar"] not in set(training["idhogar"])


def test_target_may_be_absent_for_scoring(small_raw, tmp_path):
    path = tmp_path / "scoring.csv"
    small_raw.drop(columns=["Target"]).to_csv(path, index=False)
    persons, report = read_survey(path)
    assert len(persons) == len(small_raw) and "Target" not in persons.columns
    with pytest.raises(DataError, match="Target"):
        read_survey(path, require_target=True)


def test_two_heads_reject_the_household(small_raw, tmp_path):
    raw = small_raw.copy()
    h = _two_member_households(raw, 1)[0]
    raw.loc[raw["idhogar"] == h, "parentesco1"] = "1"
    path = tmp_path / "survey.csv"
    raw.to_csv(path, index=False)
    persons, report = read_survey(path)
    assert h not in set(persons["idhogar"])
    assert "household has more than one head" in set(report.rejects["reason"])


def test_duplicate_person_id_is_rejected(small_raw, tmp_path):
    raw = pd.concat([small_raw, small_raw.iloc[[0]]], ignore_index=True)
    path = tmp_path / "survey.csv"
    raw.to_csv(path, index=False)
    persons, report = read_survey(path)
    assert "duplicate person id" in set(report.rejects["reason"])
    assert small_raw.loc[0, "idhogar"] not in set(persons["idhogar"])


def test_parquet_reads_like_csv(small_raw, tmp_path):
    csv, pq = tmp_path / "s.csv", tmp_path / "s.parquet"
    small_raw.to_csv(csv, index=False)
    typed, _ = read_survey(csv)
    typed.to_parquet(pq, index=False)
    again, report = read_survey(pq)
    assert report.n_rejected == 0
    pd.testing.assert_frame_equal(again.astype({"Id": str, "idhogar": str}), typed.astype({"Id": str, "idhogar": str}))


# -- unreadable files ---------------------------------------------------------------------------------------------


def test_missing_file_is_a_data_error(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(DataError, match="nowhere.csv"):
        read_survey(path)


def test_garbage_parquet_is_a_data_error(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="broken.parquet"):
        read_survey(path)


def test_empty_file_is_a_data_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="empty.csv"):
        read_survey(path)


def test_file_without_household_id_is_a_data_error(small_raw, tmp_path):
    path = tmp_path / "other.csv"
    small_raw.drop(columns=["idhogar"]).to_csv(path, index=False)
    with pytest.raises(DataError, match="idhogar") as info:
        read_survey(path)
    assert "other.csv" in str(info.value)


# -- household levels ---------------------------------------------------------------------------------------------


def _persons(rows: list[tuple[str, str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["Id", "idhogar", "parentesco1", "Target"])


def test_head_label_is_authoritative():
    persons = _persons([("a1", "A", 1, 2), ("a2", "A", 0, 3), ("a3", "A", 0, 3),
                        ("b1", "B", 0, 4), ("b2", "B", 1, 4)])
    levels = household_levels(persons).set_index("household_id")
    assert levels.loc["A", "level"] == 2 and levels.loc["A", "label_source"] == "head"
    assert bool(levels.loc["A", "members_disagree"]) is True
    assert levels.loc["B", "level"] == 4 and bool(levels.loc["B", "members_disagree"]) is False


@pytest.mark.parametrize("targets, expected", [
    ((3, 3, 1), 3),      # the members' most frequent level
    ((2, 4), 2),         # a tie goes to the poorer level
    ((4, 1, 4, 1), 1),
    ((3,), 3),
])
def test_household_without_head_takes_the_members_mode(targets, expected):
    persons = _persons([(f"c{i}", "C", 0, t) for i, t in enumerate(targets)] + [("d1", "D", 1, 4)])
    levels = household_levels(persons).set_index("household_id")
    assert levels.loc["C", "level"] == expected
    assert levels.loc["C", "label_source"] == "members_mode"
    assert bool(levels.loc["C", "members_disagree"]) == (len(set(targets)) > 1)


def test_levels_one_row_per_household_sorted_and_input_untouched():
    persons = _persons([("z1", "Z", 1, 1), ("a1", "A", 1, 4), ("z2", "Z", 0, 1), ("m1", "M", 0, 2)])
    before = persons.copy()
    levels = household_levels(persons)
    assert levels["household_id"].tolist() == ["A", "M", "Z"]
    assert list(levels.columns) == ["household_id", "level", "label_source", "members_disagree"]
    assert levels["level"].dtype == "int64" and levels["members_disagree"].dtype == bool
    pd.testing.assert_frame_equal(persons, before)


def test_levels_need_targets():
    with pytest.raises(DataError, match="Target"):
        household_levels(_persons([("a1", "A", 1, 2)]).drop(columns=["Target"]))
    with pytest.raises(DataError, match="require_target"):
        household_levels(_persons([("a1", "A", 1, 2)]).astype({"Target": float}).assign(Target=np.nan))


def test_real_survey_levels(survey):
    persons, _ = survey
    levels = household_levels(persons)
    assert len(levels) == persons["idhogar"].nunique() == 2379
    assert levels["household_id"].is_unique and levels["household_id"].is_monotonic_increasing
    assert levels["label_source"].value_counts().to_dict() == {"head": 2365, "members_mode": 14}
    heads = persons[persons["parentesco1"] == 1].set_index("idhogar")["Target"]
    by_head = levels.set_index("household_id").loc[heads.index, "level"]
    assert (by_head.to_numpy() == heads.to_numpy()).all()
    assert levels["members_disagree"].sum() > 0

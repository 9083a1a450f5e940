"""Validation: each bad record is reported with household id, column and reason; the rest goes on."""

import pandas as pd
import pytest

from features.validation import REJECT_COLUMNS, validate_records
from tests.helpers import household_row, member_rows
from tpas.errors import DataError


def _tables(n=4):
    hh = pd.DataFrame([household_row(f"H{i}", 2021, 5000 + i) for i in range(n)])
    mb = pd.DataFrame([r for i in range(n) for r in member_rows(f"H{i}", 2021)])
    return hh, mb


def test_clean_records_all_valid():
    hh, mb = _tables()
    records, report = validate_records(hh, mb, "clean")
    assert report.n_rejected == 0 and len(records.households) == 4 and len(records.members) == 12
    assert list(report.rejects.columns) == REJECT_COLUMNS


@pytest.mark.parametrize(
    "table, column, value, reason",
    [
        ("households", "household_size", "three", "not a whole number"),
        ("households", "housing_safety_grade", "E", "not one of D, C, B, A"),
        ("households", "medical_spending", -50, "outside the range"),
        ("households", "dibao", "maybe", "not a valid bool"),
        ("households", "village_code", None, "missing value"),
        ("members", "age", 999, "outside the range 0 to 120"),
        ("members", "sex", "X", "not one of F, M"),
        ("members", "schooling_years", "abc", "not a valid float"),
    ],
)
def test_bad_value_rejected_with_reason(table, column, value, reason):
    hh, mb = _tables()
    frame = hh if table == "households" else mb
    frame[column] = frame[column].astype(object)
    frame.loc[1, column] = value  # households: H1; members: H0's 2nd member
    bad_household = "H1" if table == "households" else "H0"
    records, report = validate_records(hh, mb, "src")
    hit = report.rejects[(report.rejects["column"] == column)]
    assert len(hit) == 1
    assert hit["household_id"].iloc[0] == bad_household
    assert reason in hit["reason"].iloc[0]
    assert hit["table"].iloc[0] == table
    # the household wave goes as a whole, the other three stay with all their members
    assert bad_household not in set(records.households["household_id"])
    assert len(records.households) == 3 and len(records.members) == 9
    assert report.tables[0].n_valid == 3 and report.tables[0].n_rejected == 1


def test_duplicates_orphans_and_empty_households():
    hh, mb = _tables()
    hh = pd.concat([hh, hh.iloc[[2]]], ignore_index=True)  # H2 twice
    mb = pd.concat([mb, pd.DataFrame(member_rows("GHOST", 2021))], ignore_index=True)
    mb = mb[mb["household_id"] != "H3"]  # H3 has no member
    records, report = validate_records(hh, mb, "src")
    reasons = set(report.rejects["reason"])
    assert any(r.startswith("duplicate record") for r in reasons)
    assert "no valid household record for this member" in reasons
    assert "household wave has no valid member record" in reasons
    assert set(records.households["household_id"]) == {"H0", "H1"}
    # counts add up: nothing silently dropped
    for t in report.tables:
        assert t.n_valid + t.n_rejected == t.n_read


def test_missing_required_column_is_a_data_error():
    hh, mb = _tables()
    with pytest.raises(DataError, match="lacks required column"):
        validate_records(hh.drop(columns=["village_code"]), mb, "src")


def test_text_inputs_are_typed():
    hh, mb = _tables()
    hh = hh.astype(str).replace({"nan": "", "None": "", "True": "yes", "False": "no"})
    mb = mb.astype(str).replace({"True": "1", "False": "0"})
    records, report = validate_records(hh, mb, "csv-like")
    assert report.n_rejected == 0, report.rejects
    assert records.households["year"].dtype == "Int64"
    assert records.members["age"].dtype == "Int64"
    assert str(records.households["dibao"].dtype) == "boolean"

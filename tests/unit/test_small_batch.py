"""Small inputs (the scoring service's requests) take fast paths through validation and the featurizer;
they must give exactly what the general path gives: same valid records (values, dtypes, index), same
rejects with the same reasons, same feature frames bit for bit.

The general path is forced by setting the thresholds `features.validation.SMALL_TABLE_ROWS` and
`features.featurizer.SMALL_BATCH_ROWS` to 0.
"""

from __future__ import annotations

import contextlib

import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import features.featurizer as fz_mod
import features.validation as val_mod
from features.featurizer import RegistryFeaturizer, _small_batch_plan
from features.records import HouseholdRecords
from features.schema import HOUSEHOLD_COLUMNS, HOUSEHOLD_SPECS, MEMBER_COLUMNS, MEMBER_SPECS
from features.sources.registry import load_registry, read_registry_tables
from features.validation import _coerce_typed, _pandera_schema, validate_records
from tests.helpers import LINES, household_row, member_rows, tiny_panel

MONITORING = {y: 1.5 * v for y, v in LINES.items()}


# -- helpers -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def general_path():
    """Force the general (pandas / pandera) path of validation and featurization."""
    saved = val_mod.SMALL_TABLE_ROWS, fz_mod.SMALL_BATCH_ROWS
    val_mod.SMALL_TABLE_ROWS, fz_mod.SMALL_BATCH_ROWS = 0, 0
    try:
        yield
    finally:
        val_mod.SMALL_TABLE_ROWS, fz_mod.SMALL_BATCH_ROWS = saved


def service_frames(hh: pd.DataFrame, mb: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The frames `Scorer.score` builds: plain Python values (str / int / float / bool / None) per row."""
    def rows(frame):
        return frame.astype(object).where(frame.notna(), None).to_dict("records")

    return (pd.DataFrame(rows(hh), columns=[c.name for c in HOUSEHOLD_COLUMNS]),
            pd.DataFrame(rows(mb), columns=[c.name for c in MEMBER_COLUMNS]))


def assert_same_validation(hh: pd.DataFrame, mb: pd.DataFrame, source: str = "api"):
    """Both paths on copies of the inputs; the inputs are left as they were. Returns the fast result."""
    before = hh.copy(), mb.copy()
    with general_path():
        old_records, old_report = validate_records(hh.copy(), mb.copy(), source)
    assert len(hh) <= val_mod.SMALL_TABLE_ROWS and len(mb) <= val_mod.SMALL_TABLE_ROWS
    records, report = validate_records(hh, mb, source)
    pd.testing.assert_frame_equal(hh, before[0])
    pd.testing.assert_frame_equal(mb, before[1])
    for old, new in ((old_records.households, records.households), (old_records.members, records.members),
                     (old_report.rejects, report.rejects)):
        pd.testing.assert_frame_equal(old, new, check_exact=True, check_index_type=True, check_column_type=True)
        assert list(old.dtypes) == list(new.dtypes)
    assert [t.__dict__ for t in old_report.tables] == [t.__dict__ for t in report.tables]
    assert report.summary() == old_report.summary()
    return records, report


def assert_same_features(featurizer: RegistryFeaturizer, records: HouseholdRecords, fast: bool = True):
    """General vs small-batch transform: identical frames, bit for bit. `fast`: the small-batch path
    must take the batch (not hand it back to the general path)."""
    with general_path():
        old = featurizer.transform(records)
    new = featurizer.transform(records)
    direct = _small_batch_plan(featurizer).transform(featurizer, records)
    assert (direct is not None) == fast
    for frame in (new, direct) if fast else (new,):
        pd.testing.assert_frame_equal(old, frame, check_exact=True, check_index_type=True, check_column_type=True)
        assert old.index.equals(frame.index) and old.index.names == frame.index.names
        assert (frame.dtypes == "float32").all()
        assert np.array_equal(old.to_numpy().view(np.uint32), frame.to_numpy().view(np.uint32))  # NaNs too
    return new


# -- fixtures -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def panel(small_panel) -> HouseholdRecords:
    records, _ = load_registry(small_panel)
    return records


@pytest.fixture(scope="module")
def featurizers(training_sets) -> dict[str, RegistryFeaturizer]:
    return {task: joblib.load(path / "featurizer.joblib") for task, path in training_sets.items()}


def _request(panel: HouseholdRecords, ids, waves: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Service frames of the households `ids`: their latest `waves` waves."""
    last = int(panel.households["year"].max())
    hh, mb = panel.households, panel.members
    hh = hh[hh["household_id"].isin(ids) & (hh["year"] > last - waves)]
    mb = mb[mb["household_id"].isin(ids) & (mb["year"] > last - waves)]
    return service_frames(hh, mb)


def _ids(panel: HouseholdRecords, n: int, skip: int = 0) -> list[str]:
    return panel.households["household_id"].drop_duplicates().iloc[skip:skip + n].to_list()


# -- validation ---------------------------------------------------------------------------------------------
def test_pandera_schema_is_cached():
    assert _pandera_schema(HOUSEHOLD_COLUMNS) is _pandera_schema(HOUSEHOLD_COLUMNS)
    assert _pandera_schema(MEMBER_COLUMNS) is not _pandera_schema(HOUSEHOLD_COLUMNS)


@pytest.mark.parametrize("n", [1, 7, 300])
def test_validation_same_on_service_frames(panel, n):
    hh, mb = _request(panel, _ids(panel, n, skip=n))
    records, report = assert_same_validation(hh, mb)
    assert report.n_rejected == 0 and len(records.households) == len(hh)


def test_service_values_take_the_fast_coercion(panel):
    """Every column of a service frame is coerced without pandas' parsing (none is handed back)."""
    hh, mb = _request(panel, _ids(panel, 20))
    for frame, specs in ((hh, HOUSEHOLD_SPECS), (mb, MEMBER_SPECS)):
        for name in frame.columns:
            assert _coerce_typed(frame[name], specs[name]) is not None, name


def test_validation_same_on_typed_and_text_tables(panel, small_panel):
    """Parquet-typed tables (as read from an export) and CSV-like text go through both paths alike."""
    households, members, _ = read_registry_tables(small_panel, years=[2024, 2025])
    ids = set(households["household_id"].drop_duplicates().iloc[:150])
    hh = households[households["household_id"].isin(ids)]
    mb = members[members["household_id"].isin(ids)]
    assert_same_validation(hh, mb, "typed")  # (a non-default index: rows are numbered from 1 all the same)
    assert_same_validation(hh.astype(str).replace({"nan": "", "None": "", "<NA>": ""}),
                           mb.astype(str).replace({"nan": "", "None": "", "<NA>": ""}), "text")


def test_validation_same_with_missing_and_all_missing_columns(panel):
    hh, mb = _request(panel, _ids(panel, 12))
    optional_hh = ["terrain", "wage_income", "medical_spending", "dibao", "housing_safety_grade", "exit_year",
                   "monitoring_group", "phone"]
    optional_mb = ["health", "in_school", "disability_grade", "schooling_years", "occupation", "name"]
    assert_same_validation(hh.drop(columns=optional_hh), mb.drop(columns=optional_mb))
    hh2, mb2 = hh.copy(), mb.copy()
    for c in ("terrain", "wage_income", "household_size", "dibao", "registry_status"):
        hh2[c] = None
    for c in ("health", "in_school", "disability_grade", "work_ability"):
        mb2[c] = None
    hh2["net_income_per_capita"] = np.nan
    records, report = assert_same_validation(hh2, mb2)
    assert report.n_rejected == 0
    assert records.households["household_size"].isna().all()


@pytest.mark.parametrize(
    "table, column, value, reason",
    [
        ("households", "household_size", "three", "not a whole number"),
        ("households", "household_size", 2.5, "not a whole number"),
        ("households", "housing_safety_grade", "E", "not one of D, C, B, A"),
        ("households", "medical_spending", -50.0, "outside the range 0 to 2e+06"),
        ("households", "dibao", "maybe", "not a valid bool"),
        ("households", "dibao", 2, "not a valid bool"),
        ("households", "village_code", None, "missing value"),
        ("households", "year", 1850, "outside the range 1990 to 2100"),
        ("members", "age", 999, "outside the range 0 to 120"),
        ("members", "sex", "X", "not one of F, M"),
        ("members", "sex", None, "missing value"),
        ("members", "schooling_years", "abc", "not a valid float"),
        ("members", "member_no", 1, "duplicate record for key (household_id, year, member_no)"),
    ],
)
@pytest.mark.parametrize("n", [1, 10])
def test_rejects_in_small_frames_named_the_same(n, table, column, value, reason):
    hh = pd.DataFrame([household_row(f"H{i}", 2021, 5000 + i) for i in range(n)])
    mb = pd.DataFrame([r for i in range(n) for r in member_rows(f"H{i}", 2021)])
    hh, mb = service_frames(hh, mb)
    frame = hh if table == "households" else mb
    frame[column] = frame[column].astype(object)
    frame.loc[1 if table == "members" else 0, column] = value  # households: H0; members: H0's 2nd member
    records, report = assert_same_validation(hh, mb)
    hit = report.rejects[(report.rejects["column"] == column) & (report.rejects["table"] == table)]
    assert len(hit) >= 1 and set(hit["reason"]) == {reason}
    assert set(hit["household_id"]) == {"H0"}
    assert "H0" not in set(records.households["household_id"])
    assert len(records.households) == n - 1


def test_awkward_values_take_the_general_coercion():
    """Padded or blank text, numbers as text or mixed with other objects: identical results."""
    hh = pd.DataFrame([household_row(f"H{i}", 2021, 5000 + i) for i in range(4)])
    mb = pd.DataFrame([r for i in range(4) for r in member_rows(f"H{i}", 2021)])
    hh, mb = service_frames(hh, mb)
    for c in ("terrain", "household_size", "wage_income", "dibao", "head_name"):
        hh[c] = hh[c].astype(object)
    hh.loc[0, "terrain"] = " hill\u3000"           # trimmed (an ideographic space too)
    hh.loc[1, "terrain"] = ""                       # blank: missing
    hh.loc[2, "head_name"] = "\u00a0"               # only whitespace: missing
    hh.loc[0, "household_size"] = "3"               # number as text
    hh.loc[1, "wage_income"] = 1500                 # an int among floats
    hh.loc[2, "wage_income"] = "1e3"                # text among floats
    hh.loc[3, "dibao"] = "yes"                      # text among bools
    mb["age"] = mb["age"].astype(object)
    mb.loc[0, "age"] = 45.0                         # a whole float among ints
    mb["migrant_months"] = mb["migrant_months"].astype(object)
    mb.loc[2, "migrant_months"] = None              # Python ints and None (fast coercion)
    assert _coerce_typed(mb["migrant_months"], MEMBER_SPECS["migrant_months"]) is not None
    records, report = assert_same_validation(hh, mb)
    assert report.n_rejected == 0
    assert records.households["terrain"].tolist()[:2] == ["hill", None]


def test_duplicates_orphans_and_empty_households_small():
    hh = pd.DataFrame([household_row(f"H{i}", 2021, 5000 + i) for i in range(4)])
    mb = pd.DataFrame([r for i in range(4) for r in member_rows(f"H{i}", 2021)])
    hh = pd.concat([hh, hh.iloc[[2]]], ignore_index=True)
    mb = pd.concat([mb, pd.DataFrame(member_rows("GHOST", 2021))], ignore_index=True)
    mb = mb[mb["household_id"] != "H3"]
    hh, mb = service_frames(hh, mb)
    _, report = assert_same_validation(hh, mb)
    assert {"household wave has no valid member record", "no valid household record for this member"} <= set(
        report.rejects["reason"])


def test_arrow_trims_exactly_what_python_strips():
    """The fast text coercion keeps a value when `str.strip` leaves it as it is; Arrow's
    utf8_trim_whitespace (the general path) must then leave it as it is too."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    for text in ([c + "x" for c in chars], ["x" + c for c in chars]):
        trimmed = pc.utf8_length(pc.utf8_trim_whitespace(pa.array(text, type=pa.string()))).to_numpy()
        arrow = {t for t, n in zip(text, trimmed) if n == 1}
        assert arrow == {t for t in text if t.strip() != t}


# -- featurization ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["poverty", "relapse"])
def test_features_same_on_a_few_hundred_households(panel, featurizers, task):
    """All waves (2016-2025) of 300 households: history, gaps, exits, everything the panel holds."""
    records = panel.select_households(_ids(panel, 300))
    assert len(records) <= fz_mod.SMALL_BATCH_ROWS
    assert_same_features(featurizers[task], records)


@pytest.mark.parametrize("task", ["poverty", "relapse"])
def test_features_same_on_single_households(panel, featurizers, task):
    for hid in _ids(panel, 6, skip=40):
        records, _ = validate_records(*_request(panel, [hid]), "api")
        assert_same_features(featurizers[task], records)
        one_wave = records.select_years(first=int(records.households["year"].max()))
        assert_same_features(featurizers[task], one_wave)


def test_serving_path_end_to_end_same(panel, featurizers):
    """Service frames -> validate -> featurize: general path vs fast paths, for 1, 10 and 100 households."""
    for n in (1, 10, 100):
        hh, mb = _request(panel, _ids(panel, n, skip=200))
        with general_path():
            old_records, _ = validate_records(hh, mb, "api")
            old = {t: f.transform(old_records) for t, f in featurizers.items()}
        records, _ = validate_records(hh, mb, "api")
        for task, f in featurizers.items():
            pd.testing.assert_frame_equal(old[task], f.transform(records), check_exact=True)


@pytest.mark.parametrize("task", ["poverty", "relapse"])
def test_features_same_with_missing_columns_and_nan_incomes(panel, featurizers, task):
    records, _ = validate_records(*_request(panel, _ids(panel, 25, skip=100)), "api")
    hh, mb = records.households.copy(), records.members.copy()
    # missing optional columns (absent from the frames altogether)
    dropped = HouseholdRecords(hh.drop(columns=["terrain", "medical_spending", "has_tv", "cultivated_land_mu",
                                                 "net_income_per_capita", "exit_year", "disaster_affected"]),
                               mb.drop(columns=["health", "in_school", "disability_grade", "work_ability",
                                                "migrant_months", "schooling_years", "medical_insured"]))
    assert_same_features(featurizers[task], dropped)
    # all-missing columns, NaN incomes (this wave and earlier ones), a NaN clipped amount
    hh2, mb2 = hh.copy(), mb.copy()
    hh2["net_income_per_capita"] = hh2["net_income_per_capita"].where(np.arange(len(hh2)) % 3 != 0)
    hh2["wage_income"] = np.nan
    hh2["housing_area_m2"] = hh2["housing_area_m2"].where(np.arange(len(hh2)) % 2 == 0)
    hh2["terrain"] = None
    hh2["has_car"] = pd.array([pd.NA] * len(hh2), dtype="boolean")
    mb2["health"] = None
    mb2["disability_grade"] = pd.array([pd.NA] * len(mb2), dtype="Int64")
    assert_same_features(featurizers[task], HouseholdRecords(hh2, mb2))


@pytest.mark.parametrize("task", ["poverty", "relapse"])
def test_features_same_for_one_member_and_no_member(panel, featurizers, task):
    records, _ = validate_records(*_request(panel, _ids(panel, 8, skip=300)), "api")
    hh, mb = records.households, records.members
    # one member per wave (the first listed, not necessarily the head)
    one = mb.groupby(["household_id", "year"], sort=False).head(1)
    assert_same_features(featurizers[task], HouseholdRecords(hh, one))
    # one member who is not marked head, listed last; and a wave with no member at all
    not_head = mb[mb["relation"] != "head"].groupby(["household_id", "year"], sort=False).tail(1)
    first = hh.iloc[0]
    without = not_head[~((not_head["household_id"] == first["household_id"]) & (not_head["year"] == first["year"]))]
    assert_same_features(featurizers[task], HouseholdRecords(hh, without))
    # a single household of one member, a single wave
    h1 = hh.iloc[[len(hh) - 1]]
    m1 = mb[(mb["household_id"] == h1["household_id"].iloc[0]) & (mb["year"] == h1["year"].iloc[0])].head(1)
    assert_same_features(featurizers[task], HouseholdRecords(h1, m1))


@pytest.mark.parametrize("task", ["poverty", "relapse"])
def test_features_same_on_awkward_numbers(task):
    """Unvalidated records with fractional, negative-zero, infinite and missing values: the compensated
    group sums and means, maxima, clipping and ratios repeat pandas' arithmetic exactly."""
    records = tiny_panel()
    f = RegistryFeaturizer(task, LINES, MONITORING, history_years=3).fit(records)
    rng = np.random.default_rng(3)
    hh, mb = records.households.copy(), records.members.copy()
    mb = pd.concat([mb] * 3, ignore_index=True)  # bigger households: longer sums; H2 has three heads no. 1
    mb["member_no"] = mb["member_no"].where(mb["household_id"] == "H2",
                                            mb.groupby(["household_id", "year"]).cumcount() + 1)
    mb["schooling_years"] = rng.uniform(0, 16, len(mb)) * rng.choice([1, 1e-9, 1e9], len(mb))
    mb.loc[rng.random(len(mb)) < 0.2, "schooling_years"] = np.nan
    mb["medical_insured"] = rng.uniform(0, 1, len(mb))
    mb["in_school"] = rng.choice([0.0, 1.0, 0.3, np.nan], len(mb))
    mb["migrant_months"] = rng.uniform(0, 12, len(mb))
    mb.loc[5, "migrant_months"] = np.inf
    mb["disability_grade"] = rng.choice([0.0, 1.0, 2.5, 4.0, np.nan], len(mb))
    mb["age"] = rng.uniform(0, 90, len(mb))
    # cancellation that only a compensated sum survives: a plain sum of (1e16, 1, ..., 1, -1e16) is 0
    first = (mb["household_id"] == "H1") & (mb["year"] == 2019)
    mb.loc[first, "age"] = 40.0
    big = np.r_[1e16, np.ones(int(first.sum()) - 2), -1e16]
    mb.loc[first, "schooling_years"] = big
    mb.loc[first, "migrant_months"] = big
    mb.loc[first, "medical_insured"] = big
    # no member marked head: the lowest number is the head, a missing number counting as 999
    headless = (mb["household_id"] == "H3") & (mb["year"] == 2022)
    mb["member_no"] = mb["member_no"].astype("float64")
    mb.loc[headless, "relation"] = "child"
    mb.loc[headless, "member_no"] = np.resize([np.nan, 1500.0, 2000.0], int(headless.sum()))
    zeros = (mb["household_id"] == "H3") & (mb["year"] == 2021)  # signed zeros: the maximum keeps the first
    mb.loc[zeros, "age"] = 40.0
    mb.loc[zeros, "schooling_years"] = np.r_[0.0, np.full(int(zeros.sum()) - 1, -0.0)]
    for col in ("has_motorcycle", "has_tv", "has_car", "has_fridge", "has_smartphone"):
        hh[col] = rng.choice([0.0, 1.0, 0.7, np.nan, 1e-12, 1e16, -1e16], len(hh))  # (the order of the sum)
    hh["cultivated_land_mu"] = rng.uniform(-1, 10, len(hh))
    hh.loc[1, "cultivated_land_mu"] = -0.0
    hh["net_income_per_capita"] = rng.uniform(-500, 12_000, len(hh))
    hh.loc[2, "net_income_per_capita"] = np.nan
    f.clip_bounds_ = {**f.clip_bounds_, "cultivated_land_mu": (0.0, 5.0), "net_income_per_capita": (100.0, 9000.0)}
    assert_same_features(f, HouseholdRecords(hh, mb))


def test_batches_left_to_the_general_path(panel, featurizers):
    """Keys the small-batch path does not take (a wave listed twice, numeric ids) go the general way."""
    records, _ = validate_records(*_request(panel, _ids(panel, 5)), "api")
    f = featurizers["relapse"]
    twice = HouseholdRecords(pd.concat([records.households, records.households.iloc[[0]]], ignore_index=True),
                             records.members)
    assert _small_batch_plan(f).transform(f, twice) is None
    with general_path(), pytest.raises(ValueError) as old:
        f.transform(twice)
    with pytest.raises(ValueError) as new:
        f.transform(twice)
    assert str(new.value) == str(old.value)
    hh, mb = records.households.copy(), records.members.copy()
    codes = {h: i for i, h in enumerate(hh["household_id"].unique())}
    hh["household_id"] = hh["household_id"].map(codes).astype(object)
    mb["household_id"] = mb["household_id"].map(codes).astype(object)
    assert_same_features(f, HouseholdRecords(hh, mb), fast=False)


def test_plan_follows_a_refit():
    records = tiny_panel()
    f = RegistryFeaturizer("relapse", LINES, MONITORING, history_years=3).fit(records)
    plan = _small_batch_plan(f)
    assert _small_batch_plan(f) is plan
    f.fit(records.select_years(first=2020))
    assert _small_batch_plan(f) is not plan
    assert_same_features(f, records)
    f.set_params(history_years=1)
    assert_same_features(f, records)

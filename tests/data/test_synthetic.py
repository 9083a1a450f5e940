"""The synthetic registry panel: deterministic, schema-valid, realistic rates, honest about what is latent.

Small panels (a few hundred to a few thousand households) so the file runs in seconds; the
rates of a 20,000-household panel are documented in docs/synthetic_panel.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.labels import poverty_labels, relapse_eligible, relapse_labels
from features.records import HouseholdRecords
from features.schema import HOUSEHOLD_COLUMNS, MEMBER_COLUMNS, REGION_COLUMNS, REGION_LEVELS
from features.sources.registry import load_registry
from features.sources.synthetic import INVALID_KINDS, generate_panel, read_panel
from features.validation import validate_records
from tpas.config import load_params, parse_params
from tpas.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
YEARS = list(range(2016, 2026))
N_HOUSEHOLDS = 2000


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def _with_measurement(params, **kw):
    """A copy of the parameters with `synth.measurement` fields replaced."""
    meas = params.synth.measurement.model_copy(update=kw)
    return params.model_copy(update={"synth": params.synth.model_copy(update={"measurement": meas})})


@pytest.fixture(scope="module")
def panel(tmp_path_factory, params):
    """2,000 households over 2016-2025 in several chunks; returns (folder, manifest)."""
    out = tmp_path_factory.mktemp("panel")
    manifest = generate_panel(out, households=N_HOUSEHOLDS, years=YEARS, seed=11, params=params,
                              chunk_households=600, progress=False)
    return out, manifest


@pytest.fixture(scope="module")
def tables(panel):
    return read_panel(panel[0])


@pytest.fixture(scope="module")
def validated(tables):
    households, members, regions = tables
    return validate_records(households, members, "synthetic", regions)


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(str(f.relative_to(folder)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


# -- determinism and chunking --------------------------------------------------------------------------------


def test_same_seed_and_chunk_size_give_byte_identical_files(tmp_path, params):
    kw = dict(households=400, years=[2019, 2020, 2021], seed=3, params=params, chunk_households=150, progress=False)
    generate_panel(tmp_path / "a", **kw)
    generate_panel(tmp_path / "b", **kw)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    hh_a, mb_a, _ = read_panel(tmp_path / "a")
    hh_b, mb_b, _ = read_panel(tmp_path / "b")
    pd.testing.assert_frame_equal(hh_a, hh_b)
    pd.testing.assert_frame_equal(mb_a, mb_b)


def test_a_different_seed_gives_a_different_panel(tmp_path, params):
    kw = dict(households=400, years=[2019, 2020], params=params, chunk_households=150, progress=False)
    generate_panel(tmp_path / "a", seed=3, **kw)
    generate_panel(tmp_path / "b", seed=4, **kw)
    hh_a, _, _ = read_panel(tmp_path / "a")
    hh_b, _, _ = read_panel(tmp_path / "b")
    assert not hh_a["net_income_per_capita"].equals(hh_b["net_income_per_capita"])
    assert not hh_a["head_name"].equals(hh_b["head_name"])


def test_chunk_size_changes_draws_but_not_households_or_rates(tmp_path, params, panel):
    _, manifest = panel
    one_chunk = generate_panel(tmp_path / "one", households=N_HOUSEHOLDS, years=YEARS, seed=11, params=params,
                               chunk_households=10**6, progress=False)
    assert one_chunk["chunks"] == 1 and manifest["chunks"] > 1
    hh_one, _, _ = read_panel(tmp_path / "one", years=[YEARS[0]])
    hh_many, _, _ = read_panel(panel[0], years=[YEARS[0]])
    # the households (ids from the region tree) are the same; their draws differ
    assert set(hh_one["household_id"]) == set(hh_many["household_id"])
    assert len(hh_one) == N_HOUSEHOLDS
    for key, tol in (("poverty_rate", 0.04), ("registered_share", 0.05)):
        a = np.array([one_chunk["rates_by_year"][str(y)][key] for y in YEARS])
        b = np.array([manifest["rates_by_year"][str(y)][key] for y in YEARS])
        assert np.abs(a.mean() - b.mean()) < tol, (key, a, b)


# -- schema and validation --------------------------------------------------------------------------------------


def test_layout_and_column_kinds(panel):
    out, manifest = panel
    assert (out / "regions.parquet").exists() and (out / "manifest.json").exists()
    for year in YEARS:
        parts = sorted((out / "households" / f"year={year}").glob("part-*.parquet"))
        assert len(parts) == manifest["chunks"]
        assert len(list((out / "members" / f"year={year}").glob("part-*.parquet"))) == manifest["chunks"]
    arrow_kind = {"int32": "int", "double": "float", "bool": "bool", "string": "str"}
    for table, specs in (("households", HOUSEHOLD_COLUMNS), ("members", MEMBER_COLUMNS)):
        schema = pq.read_schema(next((out / table / f"year={YEARS[0]}").glob("*.parquet")))
        assert schema.names == [s.name for s in specs]          # every column, in schema order, year included
        for spec in specs:
            expected = "str" if spec.kind == "category" else spec.kind
            assert arrow_kind[str(schema.field(spec.name).type)] == expected, spec.name
    on_disk = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert on_disk == json.loads(json.dumps(manifest))
    for key in ("version", "households", "years", "seed", "chunk_households", "params", "rows", "rates_by_year"):
        assert key in on_disk
    assert on_disk["rows"]["households"] == sum(r["households"] for r in on_disk["rates_by_year"].values())


def test_only_the_injected_impossible_values_are_rejected(validated, panel, tables):
    records, report = validated
    _, manifest = panel
    households, members, _ = tables
    rejected_waves = len(households) - len(records.households)
    assert rejected_waves == manifest["invalid_records"]
    share = rejected_waves / len(households)
    assert share < 5 * 0.0008 + 0.002
    allowed = {("members", "age"), ("households", "wage_income"), ("households", "house_structure"),
               ("households", "housing_safety_grade"), ("households", "water_shortage_months"),
               ("households", "medical_insurance_share"), ("members", "sex"),
               ("households", "member_no"), ("members", "household_id")}   # the last two: cascades
    found = set(zip(report.rejects["table"], report.rejects["column"]))
    assert found <= allowed, found - allowed
    # every member of a valid household wave is kept
    assert len(members) - len(records.members) == len(
        members.merge(report.rejects.loc[report.rejects["table"] == "households", ["household_id", "year"]]
                      .drop_duplicates().astype({"year": "int64"}), on=["household_id", "year"]))


def test_rejected_share_follows_invalid_rate(tmp_path, params):
    rate = 0.01
    p = _with_measurement(params, invalid_rate=rate)
    manifest = generate_panel(tmp_path, households=1500, years=YEARS, seed=5, params=p, chunk_households=800,
                              progress=False)
    _, report = load_registry(tmp_path)
    rejected = report.tables[0].n_read - report.tables[0].n_valid
    assert rejected == manifest["invalid_records"]
    assert abs(rejected / report.tables[0].n_read - rate) < 0.004
    reasons = report.rejects.loc[~report.rejects["reason"].str.contains("rejected|no valid"), "column"]
    assert reasons.nunique() >= 5          # several kinds of impossible value, not one
    assert len(INVALID_KINDS) >= 5


def test_without_invalid_rate_nothing_is_rejected_but_slips_remain(tmp_path, params):
    p = _with_measurement(params, invalid_rate=0.0, entry_error_rate=0.05)
    generate_panel(tmp_path, households=600, years=[2018, 2019, 2020], seed=8, params=p, progress=False)
    records, report = load_registry(tmp_path)
    assert report.n_rejected == 0, report.summary()
    hh, mb = records.households, records.members
    listed = mb.groupby(["household_id", "year"]).size()
    recorded = hh.set_index(["household_id", "year"])["household_size"].reindex(listed.index)
    assert (recorded != listed).mean() > 0.003        # household size disagreeing with the member list


def test_every_category_and_column_appears(validated):
    records, _ = validated
    for table, specs in ((records.households, HOUSEHOLD_COLUMNS), (records.members, MEMBER_COLUMNS)):
        for spec in specs:
            assert table[spec.name].notna().any(), spec.name
            if spec.kind == "category":
                seen = set(table[spec.name].dropna().astype(str))
                assert seen == set(spec.categories), (spec.name, set(spec.categories) - seen)


def test_missing_values_only_in_optional_fields_at_about_the_rate(tables, params):
    households, members, _ = tables
    rate = params.synth.measurement.missing_rate
    structural = {"poor_since_year", "exit_year", "monitoring_group", "responsible_official"}
    for table, specs in ((households, HOUSEHOLD_COLUMNS), (members, MEMBER_COLUMNS)):
        for spec in specs:
            if spec.required or spec.name in ("head_name", "id_card_no", "phone") and table is households:
                assert table[spec.name].notna().all(), spec.name
        optional = [s.name for s in specs if not s.required and s.name not in structural and s.role != "pii"]
        share = table[optional].isna().to_numpy().mean()
        assert 0.3 * rate < share < 3 * rate, (share, rate)


# -- realism: rates ----------------------------------------------------------------------------------------------


def test_poverty_rate_falls_within_the_documented_band(validated, params):
    records, _ = validated
    rate = poverty_labels(records, params.lines).groupby("year")["label"].mean()
    assert rate[YEARS[0]] > rate[YEARS[-1]] + 0.1
    assert 0.20 <= rate[YEARS[0]] <= 0.36, rate.to_dict()
    assert rate[YEARS[-1]] <= 0.13, rate.to_dict()
    # falling over time: each three-year window below the previous one
    assert rate.loc[2016:2018].mean() > rate.loc[2019:2021].mean() > rate.loc[2022:2025].mean()


def test_relapse_rate_among_eligible_within_the_band(validated, params, panel):
    records, _ = validated
    mult = params.features.relapse.near_line_multiplier
    labels = relapse_labels(records, params.lines, mult)
    pooled = labels["label"].mean()
    assert 0.03 <= pooled <= 0.12, pooled
    by_year = labels.groupby("year")["label"].mean()
    assert (by_year.loc[2021:] <= 0.12).all(), by_year.to_dict()
    # the manifest measures the same thing as features.labels
    _, manifest = panel
    for year, value in by_year.items():
        assert manifest["rates_by_year"][str(year)]["relapse_rate"] == pytest.approx(value, abs=0.01)
    eligible = relapse_eligible(records, params.lines, mult)
    assert eligible["eligible"].mean() > 0.2


def test_registry_statuses_follow_the_process(validated, params):
    records, _ = validated
    hh = records.households
    share = hh.groupby("year")["registry_status"].value_counts(normalize=True).unstack(fill_value=0)
    assert share.loc[2016, "registered_poor"] > 0.15
    assert (share.loc[2021:, "registered_poor"] == 0).all()          # all declared lifted out at the end of 2020
    assert (share.loc[:2020, "monitored"] == 0).all() and (share.loc[2021:, "monitored"] > 0).all()
    monitored = hh["registry_status"] == "monitored"
    assert hh.loc[monitored, "monitoring_group"].notna().all()
    assert hh.loc[~monitored, "monitoring_group"].isna().all()
    reg = hh["registry_status"].isin(["registered_poor", "exited"])
    assert hh.loc[reg, "poor_since_year"].notna().all()
    exited = hh[hh["registry_status"] == "exited"]
    assert (exited["exit_year"] <= exited["year"]).all()
    # exclusion exists: some recorded-poor households are not registered in the registration years
    line = hh["year"].map(params.lines.poverty_line_for)
    poor_unreg = (hh["net_income_per_capita"] < line) & (hh["registry_status"] == "not_registered") \
        & (hh["year"] <= 2019)
    assert poor_unreg.sum() > 0


def test_members_age_and_keep_their_numbers(validated):
    records, _ = validated
    mb = records.members
    a = mb[mb["year"] == 2018].set_index(["household_id", "member_no"])
    b = mb[mb["year"] == 2019].set_index(["household_id", "member_no"])
    both = a.join(b, lsuffix="_a", rsuffix="_b", how="inner")
    assert len(both) > 0.8 * len(a)
    assert ((both["age_b"] - both["age_a"]) == 1).mean() > 0.98
    same_person = both["id_card_no_a"].notna() & both["id_card_no_b"].notna()
    assert (both.loc[same_person, "id_card_no_a"] == both.loc[same_person, "id_card_no_b"]).all()
    heads = mb[mb["relation"] == "head"]
    assert heads.groupby(["household_id", "year"]).size().eq(1).all()
    assert heads["age"].between(17, 110).mean() > 0.995
    size = mb[mb["year"] == 2016].groupby("household_id").size()
    assert size.min() >= 1 and size.max() <= 11 and 2.8 < size.mean() < 4.5


# -- region tree and personal data ------------------------------------------------------------------------------


def test_region_codes_are_consistent_prefixes(tables):
    households, _, regions = tables
    assert list(regions.columns) == [c.name for c in REGION_COLUMNS]
    codes = regions["village_code"]
    assert codes.str.fullmatch(r"43\d{10}").all() and codes.is_unique
    assert households["village_code"].isin(codes).all()
    assert (households["household_id"].str[:12] == households["village_code"]).all()
    for level, name in (("city", "city_name"), ("county", "county_name"), ("township", "township_name")):
        prefix = codes.str[: REGION_LEVELS[level]]
        assert regions.groupby(prefix)[name].nunique().eq(1).all(), level
    county = codes.str[: REGION_LEVELS["county"]]
    assert regions.groupby(county)["minority_area"].nunique().eq(1).all()
    assert regions["poor_village"].any() and regions["minority_area"].any()


def test_personal_data_of_the_head_is_never_empty_and_well_formed(tables):
    households, members, _ = tables
    for col in ("head_name", "id_card_no", "phone"):
        assert households[col].notna().all() and (households[col].str.len() > 0).all(), col
    assert households["phone"].str.fullmatch(r"1\d{10}").all()
    ids = households["id_card_no"]
    assert ids.str.fullmatch(r"\d{17}[\dX]").all()
    digits = np.array([[int(c) for c in s[:17]] for s in ids.head(500)])
    weights = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
    check = np.array(list("10X98765432"))[(digits * weights).sum(axis=1) % 11]
    assert (check == ids.head(500).str[17].to_numpy()).all()
    heads = members[members["relation"] == "head"]
    assert heads["name"].notna().all() and heads["id_card_no"].notna().all()
    joined = heads.merge(households[["household_id", "year", "id_card_no", "head_name"]], on=["household_id", "year"],
                         suffixes=("", "_hh"))
    assert (joined["id_card_no"] == joined["id_card_no_hh"]).all() and (joined["name"] == joined["head_name"]).all()
    born = joined["id_card_no"].str[6:10].astype(int)
    assert ((joined["year"] - born - joined["age"]).abs() <= 1).mean() > 0.98   # age slips aside


def test_latent_traits_are_never_written(tables):
    households, members, regions = tables
    assert set(households.columns) == {c.name for c in HOUSEHOLD_COLUMNS}
    assert set(members.columns) == {c.name for c in MEMBER_COLUMNS}
    assert set(regions.columns) == {c.name for c in REGION_COLUMNS}
    hidden = ("resilien", "latent", "true", "propensity", "bias", "trait", "ability_score")
    for frame in (households, members, regions):
        for col in frame.columns:
            assert not any(word in col.lower() for word in hidden), col


def test_read_panel_filters_years_and_columns(panel):
    out, _ = panel
    hh, mb, regions = read_panel(out, years=[2020, 2021], columns=["net_income_per_capita", "age"])
    assert sorted(hh["year"].unique()) == [2020, 2021] and sorted(mb["year"].unique()) == [2020, 2021]
    assert list(hh.columns) == ["household_id", "year", "net_income_per_capita"]
    assert list(mb.columns) == ["household_id", "year", "member_no", "age"]
    assert len(regions) > 0
    assert HouseholdRecords(hh, mb, regions).years == [2020, 2021]


def test_years_before_the_first_wave_are_simulated_not_written(tmp_path, params):
    manifest = generate_panel(tmp_path, households=300, years=[2018, 2019], seed=2, params=params, progress=False)
    assert manifest["simulated_years"] == [params.synth.process.registry_start_year, 2019]
    hh, _, _ = read_panel(tmp_path)
    assert sorted(hh["year"].unique()) == [2018, 2019]
    assert hh["poor_since_year"].dropna().min() < 2018      # histories start at the first identification


@pytest.mark.parametrize("key, value, message", [
    ("migrant_shocks", {2020: 0.0}, "synth.process.migrant_shocks"),
    ("find_prob_first", 1.5, "synth.process.find_prob_first"),
    ("monitoring_start_year", 2010, "monitoring_start_year"),
    ("bogus", 1, "synth.process.bogus: unknown key"),
])
def test_process_parameters_are_validated(key, value, message):
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["synth"]["process"][key] = value
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)


def test_programme_effect_switches_off_help(tmp_path, params):
    """With programme effects at zero, poverty falls more slowly: the help is what moves the poor."""
    proc = params.synth.process.model_copy(update={"programme_effect": 0.0})
    off = params.model_copy(update={"synth": params.synth.model_copy(update={"process": proc})})
    kw = dict(households=1500, years=[2016, 2020], seed=9, chunk_households=10**6, progress=False)
    with_help = generate_panel(tmp_path / "on", params=params, **kw)["rates_by_year"]["2020"]["true_poverty_rate"]
    without = generate_panel(tmp_path / "off", params=off, **kw)["rates_by_year"]["2020"]["true_poverty_rate"]
    assert without > with_help

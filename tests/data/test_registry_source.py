"""Registry exports (CSV / Parquet) are read, validated, and bad records reported, never dropped silently."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.sources.registry import load_registry, read_registry_tables, write_registry_export
from tests.helpers import tiny_panel
from tpas.cli import app
from tpas.errors import DataError


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trip(tmp_path, fmt):
    records = tiny_panel()
    write_registry_export(records, tmp_path / "x", fmt=fmt)
    again, report = load_registry(tmp_path / "x")
    assert report.n_rejected == 0
    assert len(again.households) == len(records.households)
    assert len(again.members) == len(records.members)
    assert again.households["net_income_per_capita"].sum() == records.households["net_income_per_capita"].sum()


def _corrupt_csv(tmp_path):
    write_registry_export(tiny_panel(), tmp_path / "x", fmt="csv")
    hh = pd.read_csv(tmp_path / "x" / "households.csv", dtype=str)
    hh.loc[0, "housing_area_m2"] = "sixty"          # H1 2019
    hh.loc[5, "drinking_water_source"] = "pond"     # H2 2020
    hh.to_csv(tmp_path / "x" / "households.csv", index=False)
    mb = pd.read_csv(tmp_path / "x" / "members.csv", dtype=str)
    mb.loc[mb.index[-1], "age"] = "-3"              # H3 2022, last member
    mb.to_csv(tmp_path / "x" / "members.csv", index=False)
    return tmp_path / "x"


def test_corrupt_records_are_reported_and_the_rest_kept(tmp_path):
    path = _corrupt_csv(tmp_path)
    records, report = load_registry(path, rejects_path=tmp_path / "rejects.csv")
    rejects = pd.read_csv(tmp_path / "rejects.csv")
    direct = rejects[~rejects["reason"].str.contains("rejected|no valid")]
    assert set(zip(direct["household_id"], direct["year"], direct["column"])) == {
        ("H1", 2019, "housing_area_m2"), ("H2", 2020, "drinking_water_source"), ("H3", 2022, "age")}
    assert report.tables[0].n_read == 12 and report.tables[0].n_valid == 9
    assert len(records.households) == 9
    kept = set(zip(records.households["household_id"], records.households["year"]))
    assert ("H1", 2020) in kept and ("H1", 2019) not in kept


def test_cli_validate_prints_counts_and_writes_rejects(tmp_path, monkeypatch):
    monkeypatch.setenv("TPAS_DATA_DIR", str(tmp_path / "data"))
    path = _corrupt_csv(tmp_path)
    result = CliRunner().invoke(app, ["data", "validate", str(path), "--rejects", str(tmp_path / "r.csv")])
    assert result.exit_code == 0, result.output
    assert "households: 12 read, 9 valid, 3 rejected" in result.output
    assert (tmp_path / "r.csv").exists()
    strict = CliRunner().invoke(app, ["data", "validate", str(path), "--rejects", str(tmp_path / "r.csv"),
                                      "--strict"])
    assert strict.exit_code == 1


@pytest.mark.parametrize("case", ["missing_folder", "a_file", "no_members", "garbage_parquet"])
def test_unreadable_input_fails_clearly(tmp_path, case, monkeypatch):
    monkeypatch.setenv("TPAS_DATA_DIR", str(tmp_path / "data"))
    target = tmp_path / "export"
    if case == "a_file":
        target = tmp_path / "export.txt"
        target.write_text("hello")
    elif case == "no_members":
        write_registry_export(tiny_panel(), target, fmt="csv")
        (target / "members.csv").unlink()
    elif case == "garbage_parquet":
        target.mkdir()
        (target / "households.parquet").write_bytes(b"not parquet at all")
        (target / "members.parquet").write_bytes(b"nor this")
    with pytest.raises(DataError):
        read_registry_tables(target)
    result = CliRunner().invoke(app, ["data", "validate", str(target), "--kind", "registry"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    assert "Traceback" not in result.output

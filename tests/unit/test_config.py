"""params.yaml is loaded into a typed object; bad values stop with the key named."""

import copy

import pytest
import yaml
from typer.testing import CliRunner

from tpas.config import load_params, parse_params
from tpas.errors import ConfigError
from tpas.settings import PROJECT_ROOT

RAW = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))


def test_shipped_params_load():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert params.synth.years.first < params.synth.years.last
    assert params.lines.poverty_line_for(2020) == 4000
    # 2021 has an explicit monitoring line; 2019 falls back to the multiplier
    assert params.lines.monitoring_line_for(2021) == 6000
    assert params.lines.monitoring_line_for(2019) == pytest.approx(1.5 * params.lines.poverty_line_for(2019))


@pytest.mark.parametrize(
    "path, value, expected",
    [
        (("synth", "households"), -5, "synth.households"),
        (("synth", "chunk_households"), 0, "synth.chunk_households"),
        (("synth", "years"), "2025-2016", "year range reversed"),
        (("synth", "bogus"), 1, "synth.bogus: unknown key"),
        (("split", "test_from_year"), 2020, "split: test_from_year (2020) must come after"),
        (("lines", "poverty_line"), {2020: -1}, "lines.poverty_line"),
        (("features", "history_years"), 0, "features.history_years"),
        (("nonsense",), {}, "nonsense: unknown key"),
    ],
)
def test_bad_value_names_the_key(path, value, expected):
    raw = copy.deepcopy(RAW)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert expected in str(err.value)


def test_missing_line_for_a_year_is_named():
    params = parse_params(RAW)
    with pytest.raises(ConfigError, match="lines.poverty_line has no figure for 2099"):
        params.lines.poverty_line_for(2099)


def test_params_are_immutable():
    params = parse_params(RAW)
    with pytest.raises(Exception):
        params.synth.households = 3  # frozen: one loaded configuration for the whole run


def test_cli_reports_bad_params_without_traceback(tmp_path, monkeypatch):
    raw = copy.deepcopy(RAW)
    raw["synth"]["households"] = -1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.setenv("TPAS_PARAMS", str(bad))
    monkeypatch.setenv("TPAS_DATA_DIR", str(tmp_path / "data"))
    from tpas import config, settings
    from tpas.cli import app

    settings.get_settings.cache_clear()
    config.get_params.cache_clear()
    try:
        result = CliRunner().invoke(app, ["data", "synth", "--out", str(tmp_path / "p")])
    finally:
        settings.get_settings.cache_clear()
        config.get_params.cache_clear()
    assert result.exit_code == 2
    assert "synth.households" in result.output
    assert "Traceback" not in result.output


def test_importing_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TPAS_DATA_DIR", str(tmp_path / "nowhere"))
    import importlib

    import features.build
    import tpas.cli

    importlib.reload(tpas.cli)
    importlib.reload(features.build)
    assert not (tmp_path / "nowhere").exists()

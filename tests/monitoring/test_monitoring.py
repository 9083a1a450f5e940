"""Monitoring: the next wave of a panel, drift and data-quality reports, alerts, targeting quality.

Proof that it catches what matters: after a steady next wave `tpas monitor run` exits 0; after a
shocked one (county-wide disasters, migrant work collapsing) it exits 1 and its alert names the
disaster and migrant-work indicators. Fixtures: tests/monitoring/conftest.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from tests.monitoring.conftest import tpas

DISASTER = {"disaster_affected", "disaster_loss_yuan", "disaster_lag1"}
MIGRANT = {"migrant_months", "n_migrant_workers", "migrant_months_change"}


# -- the next wave ------------------------------------------------------------------------------------------------
def test_continue_panel_is_exact_and_the_shock_acts_through_the_process(small_panel, params):
    from features.schema import HOUSEHOLD_COLUMNS
    from features.sources.synthetic import WaveShock, continue_panel, county_codes, read_panel

    hh, mb, info = continue_panel(small_panel, params=params)          # verifies the 2025 wave on disk
    again, _, _ = continue_panel(small_panel, params=params)
    pd.testing.assert_frame_equal(hh, again)                            # deterministic
    assert info["years"] == [2026] and set(hh["year"]) == {2026} and set(mb["year"]) == {2026}
    assert list(hh.columns) == [c.name for c in HOUSEHOLD_COLUMNS]     # records only: nothing latent written
    last, _, _ = read_panel(small_panel, years=[2025])
    assert set(hh["household_id"]) <= set(last["household_id"])       # the same households, a few dissolved
    assert len(hh) > 0.95 * len(last)

    counties = sorted(county_codes(small_panel))[:2]
    sh, smb, sinfo = continue_panel(small_panel, params=params,
                                    shock=WaveShock(disaster_counties=tuple(counties), migrant_factor=0.4))
    hit = sh["village_code"].str[:6].isin(counties)
    affected = sh["disaster_affected"].astype(float)
    assert affected[hit].mean() > 0.5 > affected[~hit].mean()           # every village of those counties hit
    assert smb["migrant_months"].mean() < 0.8 * mb["migrant_months"].mean()
    assert set(sinfo["disaster_counties"]) == set(counties)


# -- frames and column types -------------------------------------------------------------------------------------
def test_column_types_come_from_the_model_and_exclude_ids_and_timestamps(fast_champions, params):
    from monitoring.context import column_types, load_model_context
    from monitoring.drift import RISK, RISK_RECENT, build_frames
    from monitoring.window import Window

    ctx = load_model_context("poverty")
    numerical, categorical = column_types(ctx.model)
    assert sorted(numerical + categorical) == sorted(ctx.feature_names)
    for key in ("household_id", "household_pid", "year", "region_code", "scored_at", "record_id", "risk"):
        assert key not in numerical + categorical
    binary = [n for n, b in zip(ctx.model.feature_names, ctx.model.binary_features) if b]
    assert set(binary) <= set(categorical) and "has_car" in categorical and "terrain=hill" in categorical
    assert {"housing_safety_grade", "toilet"} <= set(categorical)        # ordered categories
    assert {"head_age", "migrant_months", "disaster_loss_yuan"} <= set(numerical)

    ref = ctx.reference.head(50)
    rows = pd.DataFrame({"id": range(50), "household_pid": [f"{i:032x}" for i in range(50)], "year": 2026,
                         "risk": ref["risk"].to_numpy(), "eligible": None, "model_version": ctx.version,
                         "features": [{k: float(v) for k, v in r.items() if pd.notna(v)}
                                      for r in ref[ctx.feature_names].to_dict("records")],
                         "scored_at": pd.Timestamp.now(tz="UTC")})
    now = datetime.now(timezone.utc)
    frames = build_frames(ctx, Window("poverty", now, now, 50, rows, ctx.name, ctx.version), params.monitoring)
    for frame in (frames.current, frames.reference):
        assert set(frame.columns) == set(ctx.feature_names) | {RISK, RISK_RECENT}
    assert frames.reference_years == [int(ctx.reference["year"].max())]
    assert frames.recent_year == int(ctx.heldout["year"].max())
    # stored feature values come back exactly
    np.testing.assert_allclose(frames.current["head_age"].astype(float), ref["head_age"].astype(float))


def test_quantile_psi():
    from monitoring.drift import quantile_psi

    rng = np.random.default_rng(0)
    a, b = rng.beta(1, 6, 5000), rng.beta(1, 6, 5000)
    assert quantile_psi(a, b) < 0.01
    assert quantile_psi(a, np.clip(b * 1.6, 0, 1)) > 0.1


# -- proof that it catches what matters ------------------------------------------------------------------------
def test_steady_wave_no_alarm_and_a_report_in_the_workspace(steady, mon_env):
    from evidently.ui.workspace import Workspace

    assert steady["simulate"].exit_code == 0, steady["simulate"].output
    assert "steady wave 2026" in steady["simulate"].output
    out = steady["run"]
    assert out.exit_code == 0, out.output
    assert "most drifted:" in out.output and "tests:" in out.output and "0 failed" in out.output
    for task in ("poverty", "relapse"):
        summary = json.loads(steady["reports"][task].read_text())["tpas"]
        assert summary["status"] == "ok" and summary["tests"]["failed"] == []
        assert summary["rows_compared"] > 300
        assert summary["risk"]["vs_recent"]["score"] < 0.1
        assert steady["reports"][task].with_suffix(".html").stat().st_size > 100_000
    ws = Workspace(str(mon_env / "monitoring" / "workspace"))
    projects = {p.name: p for p in ws.list_projects()}
    assert {"tpas-poverty", "tpas-relapse"} <= set(projects)
    assert len(ws.list_runs(projects["tpas-poverty"].id)) >= 1
    assert len(ws.get_dashboard(projects["tpas-poverty"].id).panels) == 3


def test_shocked_wave_alerts_naming_the_shocked_indicators(shock):
    assert shock["simulate"].exit_code == 0, shock["simulate"].output
    assert "migrant work x 0.4" in shock["simulate"].output
    out = shock["run"]
    assert out.exit_code == 1, out.output
    assert "ALERT" in out.output
    alert = shock["alerts"]["poverty"]
    assert any(t["kind"] == "risk_drift" for t in alert["failed_tests"])
    top = {c["column"] for c in alert["top_drifted"]}
    assert top & DISASTER and top & MIGRANT, top
    changed = [c["column"] for c in alert["changed_since_previous"][:3]]
    assert set(changed) & DISASTER and set(changed) & MIGRANT, changed
    words = alert["top_drifted"][0]
    assert words["en"] and words["zh"] and "words" in words
    assert alert["report"]["html"].endswith(".html") and alert["model"].startswith("tpas-poverty/")


# -- targeting quality ---------------------------------------------------------------------------------------------------
def test_join_outcomes_takes_the_latest_earlier_score():
    from monitoring.quality import join_outcomes

    at = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    scores = pd.DataFrame({"household_pid": ["a", "a", "a", "b"], "risk": [0.1, 0.2, 0.3, 0.4],
                           "scored_at": [at("2026-01-05"), at("2026-02-05 10:00"), at("2026-03-05"), at("2026-03-01")],
                           "model_version": ["1", "1", "2", "1"]})
    outcomes = pd.DataFrame({"household_pid": ["a", "b", "c"], "outcome": ["poor", "not_poor", "poor"],
                             "observed_on": [pd.Timestamp("2026-02-05").date(), pd.Timestamp("2026-02-01").date(),
                                             pd.Timestamp("2026-02-01").date()]})
    joined = join_outcomes(outcomes, scores).set_index("household_pid")
    assert joined.loc["a", "risk"] == 0.2            # same day counts, the later score does not
    assert np.isnan(joined.loc["b", "risk"]) and np.isnan(joined.loc["c", "risk"])


def test_contradicting_outcomes_recommend_retraining(outcomes):
    run = outcomes["run"]
    assert run.exit_code == 1, run.output
    assert "RETRAINING RECOMMENDED" in run.output
    q = outcomes["summary"]["targeting_quality"]
    assert q["joined"] >= 500 and q["judged"] and q["retrain"]
    assert q["pooled"]["auc"] < 0.3 < q["heldout"]["auc"]
    assert q["by_month"] and q["by_month"][0]["exclusion_error"] is not None
    assert any("AUC fell" in r for r in q["reasons"])
    assert outcomes["alert"]["retrain"] and outcomes["alert"]["retrain_reasons"]


# -- usage errors ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["run", "--task", "idb-level"], "--task must be poverty or relapse"),
    (["run", "--since", "last tuesday"], "--since: expected a date"),
    (["run", "--since", "2026-02-01", "--until", "2026-01-01"], "must be before --until"),
    (["run", "--since", "2000-01-01", "--until", "2000-02-01"], "nothing to monitor"),
    (["simulate", "--scenario", "flood"], "--scenario must be steady or shock"),
    (["simulate", "--scenario", "steady", "--counties", "430121"], "--counties applies to --scenario shock only"),
    (["simulate", "--scenario", "shock", "--counties", "999999"], "unknown county code"),
    (["simulate", "--scenario", "steady", "--url", "http://127.0.0.1:9"], "--url needs --key"),
    (["simulate", "--scenario", "steady", "--year", "2024"], "the panel already ends in 2025"),
    (["simulate", "--scenario", "steady", "--year", "2027"], "no figure for 2027"),
])
def test_bad_arguments_exit_2_with_one_clear_line(fast_champions, args, message):
    out = tpas("monitor", *args)
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output


def test_monitoring_parameters_are_checked():
    import yaml

    from tpas.config import parse_params
    from tpas.errors import ConfigError
    from tpas.settings import PROJECT_ROOT

    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    assert parse_params(raw).monitoring.max_risk_psi == 0.1
    for key, value, message in (("num_method", "ks", "monitoring.num_method"),
                                ("max_drifted_share", 1.5, "monitoring.max_drifted_share"),
                                ("unknown", 1, "monitoring.unknown: unknown key")):
        bad = {**raw, "monitoring": {**raw["monitoring"], key: value}}
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            parse_params(bad)

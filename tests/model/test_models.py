"""Models on the small panel: training + registry, gate, explanations, behaviour and invariance."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features.records import HouseholdRecords
from features.sources.registry import load_registry
from tpas.cli import app
from training import commands, tracking
from training.trainer import fit_risk_model, load_training_set


@pytest.fixture(scope="module")
def fits(training_sets, params):
    out = {}
    for task in ("poverty", "relapse"):
        ts = load_training_set(training_sets[task])
        out[task] = fit_risk_model(ts, "lightgbm", params)
    return out


@pytest.fixture(scope="module")
def panel_records(small_panel):
    records, _ = load_registry(small_panel)
    return records


def test_train_registers_versions_and_prints_uri(training_sets, params, tpas_env):
    lines = commands.train("poverty", training_sets["poverty"], "lightgbm", params)
    assert lines[-1].startswith("model_uri: models:/tpas-poverty/")
    v1 = int(lines[-1].rsplit("/", 1)[1])
    lines = commands.train("poverty", training_sets["poverty"], "pmt", params)
    assert int(lines[-1].rsplit("/", 1)[1]) == v1 + 1


def test_baselines_train_through_the_same_command(training_sets, params, tpas_env):
    for task, kind in (("poverty", "scorecard"), ("relapse", "rules"), ("relapse", "lightgbm")):
        lines = commands.train(task, training_sets[task], kind, params)
        assert lines[-1].startswith(f"model_uri: models:/tpas-{task}/")


def test_gate_refuses_then_promotes_with_previous_alias(training_sets, params, tpas_env):
    strict = params.model_copy(update={"gate": {"poverty": params.gate["poverty"].model_copy(
        update={"min_auc": 0.9999})}})
    uri = commands.train("poverty", training_sets["poverty"], "lightgbm", params)[-1].split()[-1]
    version = uri.rsplit("/", 1)[1]
    with pytest.raises(tracking.GateFailed, match=r"gate.poverty.min_auc: held-out auc 0\.\d+ is not >= 0.9999"):
        tracking.promote("poverty", version, strict)
    assert tracking.resolve_version("poverty", "champion") != version
    tracking.promote("poverty", version, params)
    assert tracking.resolve_version("poverty", "champion") == version
    uri2 = commands.train("poverty", training_sets["poverty"], "lightgbm", params, promote_after=True)[-1].split()[-1]
    assert tracking.resolve_version("poverty", "champion") == uri2.rsplit("/", 1)[1]
    assert tracking.resolve_version("poverty", "previous") == version


def test_cli_promote_failure_exits_non_zero(training_sets, tpas_env, tmp_path, monkeypatch):
    import yaml

    from tests.conftest import _clear_caches
    from tpas.settings import PROJECT_ROOT

    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["gate"]["relapse"]["min_auc"] = 0.9999
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("TPAS_PARAMS", str(tmp_path / "p.yaml"))
    _clear_caches()
    try:
        out = CliRunner().invoke(app, ["train", "--task", "relapse", "--data", str(training_sets["relapse"]),
                                       "--promote"])
    finally:
        monkeypatch.delenv("TPAS_PARAMS")
        _clear_caches()
    assert out.exit_code == 2
    assert "gate.relapse.min_auc" in out.output


def test_contributions_add_up_to_the_raw_score(fits, training_sets):
    for task, fit in fits.items():
        ts = load_training_set(training_sets[task])
        X = ts.X(ts.split("test")).head(300)
        contrib = fit.model.estimator.contributions(X)
        margin = fit.model.estimator.booster_.predict(X.to_numpy(np.float32), raw_score=True)
        np.testing.assert_allclose(contrib.sum(axis=1), margin, atol=1e-6)
        reasons = fit.model.explain(X)
        risk = fit.model.predict_risk(X)
        base = fit.model.risk_from_margin(contrib[:, -1])
        for r, p, b in zip(reasons[:50], risk, base):
            assert sum(r["causes"].values()) == pytest.approx(p - b, abs=2e-3)


def test_reason_codes_speak_officials_terms(fits, panel_records):
    scored = fits["poverty"].model.predict(panel_records.select_years(first=2024))
    row = scored.sort_values("risk").iloc[-1]
    reasons = json.loads(row["reasons"])
    assert reasons["up"], "the riskiest household has reasons pushing its risk up"
    top = reasons["up"][0]
    assert {"indicator", "value", "contribution", "cause", "sentence_en", "sentence_zh"} <= set(top)
    assert top["contribution"] > 0 and "风险上升" in top["sentence_zh"] and "raises" in top["sentence_en"]
    assert row["main_causes_en"].startswith("main causes:")
    assert set(scored["tier"]) <= {"impoverished", "likely_impoverished", "out_of_poverty"}
    assert ((scored["score"] >= 0) & (scored["score"] <= 100)).all()


def _members_changed(records: HouseholdRecords, year: int, change) -> HouseholdRecords:
    members = records.members.copy()
    mask = members["year"] == year
    members.loc[mask] = change(members.loc[mask].copy())
    return HouseholdRecords(records.households, members, records.regions)


def test_new_serious_illness_or_disability_never_lowers_relapse_risk(fits, panel_records):
    model = fits["relapse"].model
    records = panel_records.select_years(first=2021, last=2023)
    base = model.predict(records, year=2023, explain=False).set_index("household_id")["risk"]

    def ill(m):
        m.loc[(m["member_no"] == 1) & m["health"].isin(["healthy", "chronic"]), "health"] = "serious"
        return m

    def disabled(m):
        m.loc[(m["member_no"] == 1) & m["disability_grade"].notna(), "disability_grade"] = 1
        return m

    for change, must_move in ((ill, True), (disabled, False)):
        after = model.predict(_members_changed(records, 2023, change), year=2023, explain=False) \
            .set_index("household_id")["risk"]
        diff = after.reindex(base.index) - base
        assert (diff >= -1e-9).all(), (change.__name__, diff.min())
        if must_move:  # illness is a main driver: the check is not vacuous
            assert (diff > 0).any()


def test_member_able_to_work_never_raises_poverty_risk(fits, panel_records):
    model = fits["poverty"].model
    records = panel_records.select_years(first=2024, last=2024)
    base = model.predict(records, explain=False).set_index("household_id")["risk"]

    def able(m):
        # members whose ability is on record as none or partial (a blank is not "unable")
        m.loc[(m["age"] >= 16) & (m["age"] <= 64) & m["work_ability"].isin(["none", "partial"]),
              "work_ability"] = "full"
        return m

    after = model.predict(_members_changed(records, 2024, able), explain=False).set_index("household_id")["risk"]
    diff = after.reindex(base.index) - base
    assert (diff <= 1e-9).all(), diff.max()
    assert (diff < 0).any()


def test_order_of_households_and_members_changes_no_score(fits, panel_records):
    model = fits["relapse"].model
    records = panel_records.select_years(first=2022)
    a = model.predict(records, explain=False).set_index("household_id").sort_index()
    shuffled = HouseholdRecords(records.households.sample(frac=1, random_state=3),
                                records.members.sample(frac=1, random_state=4), records.regions)
    b = model.predict(shuffled, explain=False).set_index("household_id").sort_index()
    pd.testing.assert_frame_equal(a, b)


def test_predict_compare_and_pyfunc(training_sets, small_panel, params, tpas_env, tmp_path):
    uri = commands.train("relapse", training_sets["relapse"], "lightgbm", params)[-1].split()[-1]
    out = tmp_path / "scores.csv"
    lines = commands.predict("relapse", uri, small_panel, out)
    scored = pd.read_csv(out)
    assert {"household_id", "year", "risk", "score", "tier", "eligible", "top_reasons_en"} <= set(scored.columns)
    records, _ = load_registry(small_panel)
    latest = records.households.groupby("household_id")["year"].max()
    assert scored["household_id"].is_unique and len(scored) == len(latest)
    assert (scored.set_index(scored["household_id"].astype(str))["year"] == latest.reindex(
        scored["household_id"].astype(str)).to_numpy()).all()
    assert "scored" in lines[1]
    table = commands.compare("relapse")
    assert {"model", "auc", "exclusion_err", "calib_err", "train_s"} <= set(table.columns)
    import mlflow

    tracking.configure()
    pyf = mlflow.pyfunc.load_model(uri)
    example = commands._input_example(load_training_set(training_sets["relapse"]))
    res = pyf.predict(tracking.pyfunc_frame(example))
    assert len(res) == example["household_id"].nunique()


def test_train_accepts_a_raw_panel(small_panel, params, tpas_env):
    """--data may be the panel itself (it has a manifest.json too): the training set is built first."""
    lines = commands.train("poverty", small_panel, "scorecard", params)
    assert lines[-1].startswith("model_uri: models:/tpas-poverty/")
    assert commands.is_training_set(commands.training_set_dir("poverty"))

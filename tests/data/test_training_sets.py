"""Training sets built from the synthetic panel: splits, labels, manifest, saved featurizer, no leakage."""

import json

import joblib
import numpy as np
import pandas as pd
import pytest

from features.build import holdout_households
from features.labels import recorded_poor
from features.schema import HOUSEHOLD_SPECS
from features.sources.registry import load_registry


def _load(path):
    return pd.read_parquet(path / "dataset.parquet"), json.loads((path / "manifest.json").read_text())


@pytest.mark.parametrize("task, last_train_feature_year", [("poverty", 2021), ("relapse", 2020)])
def test_time_and_household_split(training_sets, params, task, last_train_feature_year):
    data, manifest = _load(training_sets[task])
    train, test = data[data["split"] == "train"], data[data["split"] == "test"]
    assert len(train) and len(test)
    label_shift = 0 if task == "poverty" else 1
    assert train["year"].max() + label_shift <= params.split.train_until_year
    assert train["year"].max() == last_train_feature_year
    assert test["year"].min() + label_shift >= params.split.test_from_year
    # held-out households never appear in training, and are about the configured share
    ids = pd.Series(data["household_id"].unique())
    held = set(ids[holdout_households(ids, params.split.holdout_household_share, params.split.seed)])
    assert held.isdisjoint(set(train["household_id"]))
    assert held & set(test["household_id"])
    assert len(held) / len(ids) == pytest.approx(params.split.holdout_household_share, abs=0.05)
    assert manifest["rows"] == {"test": len(test), "train": len(train)}


def test_poverty_set_has_no_label_fields(training_sets):
    data, manifest = _load(training_sets["poverty"])
    feats = set(manifest["feature_columns"])
    for name, spec in HOUSEHOLD_SPECS.items():
        if spec.role in ("income", "status", "pii") or spec.set == "programmes":
            assert not any(f == name or f.startswith(name + "=") for f in feats), name
    assert set(manifest["meta_columns"]).isdisjoint(feats)
    assert all(f["en"] and f["zh"] for f in manifest["features"])


def test_labels_match_recorded_income(training_sets, small_panel, params):
    records, _ = load_registry(small_panel)
    poor = recorded_poor(records.households, params.lines)
    poor.index = pd.MultiIndex.from_frame(records.households[["household_id", "year"]].astype({"year": int}))
    pov, _ = _load(training_sets["poverty"])
    idx = pd.MultiIndex.from_frame(pov[["household_id", "year"]])
    assert (pov["label"].to_numpy() == poor.reindex(idx).to_numpy()).all()
    rel, _ = _load(training_sets["relapse"])
    now = poor.reindex(pd.MultiIndex.from_frame(rel[["household_id", "year"]]))
    nxt = poor.reindex(pd.MultiIndex.from_arrays([rel["household_id"], rel["year"] + 1]))
    assert (now == 0).all()                                # eligible rows are not poor in t
    assert (rel["label"].to_numpy() == nxt.to_numpy()).all()  # the label is poverty in t+1
    assert 0.02 <= rel["label"].mean() <= 0.20


def test_saved_featurizer_reproduces_features_and_ignores_the_future(training_sets, small_panel):
    featurizer = joblib.load(training_sets["relapse"] / "featurizer.joblib")
    data, manifest = _load(training_sets["relapse"])
    records, _ = load_registry(small_panel)
    early = records.select_years(last=2020)
    X = featurizer.transform(early)
    rows = data[data["year"] <= 2020].set_index(["household_id", "year"])[manifest["feature_columns"]]
    got = X.reindex(rows.index)
    np.testing.assert_allclose(got.to_numpy(), rows.to_numpy(), rtol=1e-6, equal_nan=True)


def test_manifest_and_rejects(training_sets, small_panel):
    _, manifest = _load(training_sets["poverty"])
    assert len(manifest["source"]["sha256"]) == 64
    assert manifest["time_range"] == {"first_year": 2016, "last_year": 2025}
    rejects = pd.read_csv(training_sets["poverty"] / "rejects.csv")
    households = manifest["validation"]["tables"][0]
    assert households["n_read"] == households["n_valid"] + households["n_rejected"]
    assert households["n_rejected"] > 0 and len(rejects) >= households["n_rejected"]
    assert {"household_id", "column", "reason"} <= set(rejects.columns)

"""idb-level training: per-task LightGBM settings, class balance, honest CV, and `tpas train` on the real survey.

The model here is kept small (few rounds) so the tests stay fast; the quality on the survey is
measured by `bench/idb_quality.py`, not here.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import yaml

from tpas.config import LightGBMParams, parse_params
from tpas.errors import ConfigError
from tpas.settings import PROJECT_ROOT
from training import trainer
from training.trainer import (class_sample_weights, fit_class_multipliers, fit_risk_model, load_training_set,
                              make_estimator)

RAW = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
TASK = "idb-level"


def _with_train(params, **update):
    return params.model_copy(update={"train": params.train.model_copy(update=update)})


def _small(params, **update):
    """params whose idb-level LightGBM is tiny (fast), merged over the shipped settings like params.yaml does."""
    return _with_train(params, lightgbm_by_task={TASK: LightGBMParams(num_boost_round=30, learning_rate=0.1)},
                       **update)


@pytest.fixture(scope="module")
def idb_set(survey_path, tpas_env, params):
    """The idb-level training set of the real survey, where `tpas train --task idb-level` looks for it."""
    from features.build import build_training_set

    out = tpas_env / "training" / TASK
    build_training_set(TASK, survey_path, out, params)
    return out


# -- configuration ----------------------------------------------------------------------------------------------


def test_per_task_settings_merge_over_the_default():
    raw = copy.deepcopy(RAW)
    raw["train"]["lightgbm_by_task"] = {TASK: {"learning_rate": 0.01, "num_boost_round": 50}}
    params = parse_params(raw)
    default = params.train.lightgbm
    merged = params.train.lightgbm_for(TASK)
    assert (merged.learning_rate, merged.num_boost_round) == (0.01, 50)
    # keys not written for the task keep the registry default, not the class defaults
    assert merged.model_dump(exclude={"learning_rate", "num_boost_round"}) == \
        default.model_dump(exclude={"learning_rate", "num_boost_round"})
    assert params.train.lightgbm_for("poverty") == default

    est = make_estimator("lightgbm", TASK, params, n_classes=4)
    assert est.params["learning_rate"] == 0.01 and est.num_boost_round == 50
    assert est.params["num_leaves"] == default.num_leaves
    # a tuned best-params file overrides the task's settings
    tuned = make_estimator("lightgbm", TASK, params, {"learning_rate": 0.2}, n_classes=4)
    assert tuned.params["learning_rate"] == 0.2 and tuned.num_boost_round == 50
    assert make_estimator("lightgbm", "poverty", params).params["learning_rate"] == default.learning_rate


def test_shipped_params_give_idb_level_its_own_settings(params):
    assert TASK in params.train.lightgbm_by_task
    assert params.train.lightgbm_for(TASK) != params.train.lightgbm


@pytest.mark.parametrize("by_task, expected", [
    ({TASK: {"num_leafs": 15}}, "train.lightgbm_by_task.idb-level.num_leafs: unknown key"),
    ({TASK: {"learning_rate": -0.1}}, "train.lightgbm_by_task.idb-level.learning_rate"),
    ({"idb_level": {"learning_rate": 0.02}}, "train.lightgbm_by_task: unknown task(s) 'idb_level'"),
])
def test_bad_per_task_settings_name_the_key(by_task, expected):
    raw = copy.deepcopy(RAW)
    raw["train"]["lightgbm_by_task"] = by_task
    with pytest.raises(ConfigError) as err:
        parse_params(raw)
    assert expected in str(err.value)


@pytest.mark.parametrize("key, value", [("class_weight", "sometimes"), ("class_weight_power", 1.5),
                                        ("class_multipliers", "in-sample")])
def test_bad_class_balance_names_the_key(key, value):
    raw = copy.deepcopy(RAW)
    raw["train"][key] = value
    with pytest.raises(ConfigError, match=f"train.{key}"):
        parse_params(raw)


# -- class balance ----------------------------------------------------------------------------------------------


def test_balanced_weights_equalise_the_levels(params):
    y = np.repeat([0, 1, 2, 3], [10, 30, 60, 300])
    full = _with_train(params, class_weight="balanced", class_weight_power=1.0).train
    w = class_sample_weights(y, full, 4)
    totals = np.bincount(y, weights=w)
    assert np.allclose(totals, totals[0]) and w.mean() == pytest.approx(1.0)
    half = class_sample_weights(y, _with_train(params, class_weight="balanced", class_weight_power=0.5).train, 4)
    assert w[0] > half[0] > half[-1] > w[-1]  # tempered: between unweighted and fully balanced
    assert class_sample_weights(y, _with_train(params, class_weight="none").train, 4) is None


def test_multipliers_raise_macro_f1_of_an_under_predicted_level():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    probs = rng.dirichlet(np.ones(3), 600) + 0.6 * np.eye(3)[y]
    probs[:, 0] *= 0.3  # level 0 is under-predicted: argmax rarely picks it
    probs /= probs.sum(axis=1, keepdims=True)
    w = fit_class_multipliers(y, probs)
    assert w.shape == (3,) and w.max() == 1.0 and w[0] == 1.0 and w[1] < 1 and w[2] < 1
    assert trainer._macro_f1(y, (probs * w).argmax(axis=1), 3) > trainer._macro_f1(y, probs.argmax(axis=1), 3) + 0.05


def test_multipliers_are_chosen_without_the_scored_fold(idb_set, params, monkeypatch):
    """Every fold's multipliers come from labels and models of the other folds only (spies, real models)."""
    ts = load_training_set(idb_set)
    events: list[tuple] = []
    real_make = trainer.make_estimator

    def spying_make(*args, **kwargs):
        est = real_make(*args, **kwargs)
        fit = est.fit

        def recorded_fit(X, y, sample_weight=None):
            events.append(("fit", set(X.index)))
            return fit(X, y, sample_weight=sample_weight)

        est.fit = recorded_fit
        return est

    def spying_search(y, probs, **kwargs):
        events.append(("search", np.asarray(y).copy(), np.asarray(probs).shape))
        return _marked(sum(e[0] == "search" for e in events), probs.shape[1])

    monkeypatch.setattr(trainer, "make_estimator", spying_make)
    monkeypatch.setattr(trainer, "fit_class_multipliers", spying_search)
    fit = fit_risk_model(ts, "lightgbm", _small(params, class_multipliers="oof", class_multiplier_folds=2), None)

    data = ts.dataset
    labels = np.searchsorted(sorted(data["label"].unique()), data["label"].to_numpy())
    folds = sorted(data["fold"].unique())
    searches = [i for i, e in enumerate(events) if e[0] == "search"]
    assert len(searches) == len(folds) + 1  # one per scored fold, one for the final model
    previous = -1
    for f, at in zip(folds, searches):
        scored = set(data.loc[data["fold"] == f, "household_id"])
        fits = [e[1] for e in events[previous + 1:at] if e[0] == "fit"]
        assert len(fits) == 1 + 2  # the fold's model + the inner folds' models
        assert all(not (hh & scored) for hh in fits), f"a model behind fold {f}'s multipliers saw fold {f}"
        y_seen = events[at][1]
        assert np.array_equal(y_seen, labels[(data["fold"] != f).to_numpy()])  # the other folds' labels only
        previous = at
    # the scored fold used the multipliers chosen without it; the final model's come from the CV's OOF
    for call, row in enumerate(fit.report["per_fold"], start=1):
        assert row["multipliers"] == _marked(call, 4).tolist()
    assert np.array_equal(events[searches[-1]][1], labels)
    assert np.array_equal(fit.model.class_weights, _marked(len(searches), 4))


def _marked(call: int, k: int) -> np.ndarray:
    """Multipliers that tell the spied search's calls apart (call 1, 2, ...)."""
    w = np.ones(k)
    w[call % k] = 0.5
    return w


# -- tpas train / tpas tune on the real survey -------------------------------------------------------------------


def test_train_idb_level_logs_cv_metrics_and_scores_persons(idb_set, params, tpas_env, survey_path):
    import mlflow

    from features.sources.idb import read_survey
    from training import commands, tracking

    assert not commands.tuned_params_path(TASK).exists()
    lines = commands.train(TASK, None, "lightgbm", _small(params))
    run_id = lines[-2].rsplit(" ", 1)[-1]
    tracking.configure()
    run = mlflow.get_run(run_id)
    metrics = run.data.metrics
    assert 0.3 < metrics["heldout_macro_f1"] <= 1.0  # above the 0.25 of guessing; quality: bench/idb_quality.py
    assert 0.7 < metrics["heldout_auc"] <= 1.0
    assert "heldout_log_loss" in metrics

    model = tracking.load_bundle(lines[-1].split()[-1])
    persons, _ = read_survey(survey_path)
    persons = persons.drop(columns=["Target"])
    first = persons["idhogar"].drop_duplicates().head(200)
    scored = model.predict(persons[persons["idhogar"].isin(first)])
    probs = scored[[f"prob_{c}" for c in (1, 2, 3, 4)]].to_numpy()
    assert len(scored) == 200 and scored["household_id"].is_unique
    assert np.allclose(probs.sum(axis=1), 1.0) and (probs >= 0).all()
    assert scored["predicted_level"].isin([1, 2, 3, 4]).all()
    assert (scored["predicted_level"].to_numpy() == probs.argmax(axis=1) + 1).all()


def test_tuned_params_feed_train(idb_set, params, tpas_env, tmp_path, monkeypatch):
    """`tpas tune` writes its best settings where `tpas train` reads them, over the task's own settings."""
    import mlflow

    from training import commands, tune

    def tiny_space(trial):
        return {"num_boost_round": trial.suggest_int("num_boost_round", 10, 20, step=10),
                "learning_rate": trial.suggest_float("learning_rate", 0.1, 0.2),
                "num_leaves": trial.suggest_int("num_leaves", 4, 8)}

    monkeypatch.setattr(tune, "suggest", tiny_space)
    monkeypatch.setattr(tune, "start_params", lambda task, params: {"num_boost_round": 10, "learning_rate": 0.1,
                                                                     "num_leaves": 4})
    small = _small(params)
    best_file = commands.tuned_params_path(TASK)
    try:
        lines = tune.tune(TASK, 2, small, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
        assert best_file.exists() and str(best_file) in lines[-1]
        best = json.loads(best_file.read_text(encoding="utf-8"))
        assert 0 < best["cv_macro_f1"] <= 1 and 0 < best["cv_auc_poor"] <= 1
        run_id = commands.train(TASK, None, "lightgbm", small)[-2].rsplit(" ", 1)[-1]
        report = mlflow.artifacts.load_dict(f"runs:/{run_id}/evaluation/report.json")
        used = report["settings"]["lightgbm"]
        assert report["settings"]["tuned"] is True and mlflow.get_run(run_id).data.params["tuned"] == "True"
        assert {k: used[k] for k in best["params"]} == best["params"]
        assert used["feature_fraction"] == small.train.lightgbm_for(TASK).feature_fraction  # per-task stays below
    finally:
        best_file.unlink(missing_ok=True)

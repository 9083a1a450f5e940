"""models.treeshap: the fast TreeSHAP equals LightGBM's pred_contrib; wiring, pickling and the cache."""

import pickle

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from models.bundle import RiskModel
from models.estimators import LightGBMRisk
from models.explain import ContributionCache
from models.treeshap import TreeShap
from training.trainer import binary_columns, load_training_set, make_estimator

ATOL = 1e-6


def _random_data(n: int = 3000, p: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 rows with NaNs, exact zeros, tiny values around LightGBM's zero threshold and a
    non-monotone signal in x0 (so trees split on it several times along one path)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)).astype(np.float32)
    X[:, 3] = np.round(X[:, 3] * 2)                            # many exact zeros
    X[rng.random(n) < 0.05, 4] = np.float32(1e-36)             # |x| <= 1e-35: read as 0 by LightGBM
    X[rng.random(n) < 0.05, 4] = np.float32(-2e-35)            # just outside the threshold: not zero
    X[rng.random(X.shape) < 0.12] = np.nan
    x0 = np.nan_to_num(X[:, 0], nan=2.0)
    logit = 1.5 * np.cos(2 * x0) + np.nan_to_num(X[:, 1]) - 0.8 * np.nan_to_num(X[:, 3]) \
        + 0.6 * np.isnan(X[:, 2]) + 0.5 * np.nan_to_num(X[:, 4] * X[:, 5])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


def _train(X, y, rounds=40, **params) -> lgb.Booster:
    base = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": 1, "deterministic": True,
            "min_data_in_leaf": 10}
    return lgb.train({**base, **params}, lgb.Dataset(X, label=y), num_boost_round=rounds)


def _split_nodes(booster: lgb.Booster):
    def walk(node, path):
        if "split_feature" in node:
            yield node, path
            for child in (node["left_child"], node["right_child"]):
                yield from walk(child, path + [node["split_feature"]])
    for tree in booster.dump_model()["tree_info"]:
        yield from walk(tree["tree_structure"], [])


def _assert_equal_to_pred_contrib(booster: lgb.Booster, X: np.ndarray, ts: TreeShap | None = None) -> np.ndarray:
    ts = ts or TreeShap(booster)
    got = ts.contributions(X)
    want = booster.predict(X, pred_contrib=True)
    assert got.shape == want.shape == (len(X), X.shape[1] + 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)
    np.testing.assert_allclose(got.sum(axis=1), booster.predict(X, raw_score=True), rtol=0, atol=ATOL)
    return got


@pytest.fixture(scope="module")
def data():
    return _random_data()


VARIANTS = {
    # name: (LightGBM params, the missing_type the dumped splits must show)
    "nan_missing": ({"num_leaves": 31}, "NaN"),
    "zero_as_missing": ({"num_leaves": 31, "zero_as_missing": True}, "Zero"),
    "no_missing": ({"num_leaves": 31, "use_missing": False}, "None"),
    "depth_3": ({"num_leaves": 31, "max_depth": 3}, "NaN"),
    "unlimited_63": ({"num_leaves": 63, "max_depth": -1, "min_data_in_leaf": 5}, "NaN"),
    "monotone": ({"num_leaves": 15, "monotone_constraints": [0, 1, 0, -1, 0, 0, 0, 0],
                  "monotone_constraints_method": "intermediate"}, "NaN"),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_equals_pred_contrib_on_random_data(data, name):
    X, y = data
    params, missing_type = VARIANTS[name]
    booster = _train(X, y, **params)
    nodes = list(_split_nodes(booster))
    assert missing_type in {n["missing_type"] for n, _ in nodes}, "the variant does not exercise its missing type"
    # repeated splits on one feature along a path: the merging of a feature's conditions is exercised
    assert any(n["split_feature"] in path for n, path in nodes)
    if params.get("max_depth", -1) > 0:
        assert max(len(path) for _, path in nodes) < params["max_depth"]
    got = _assert_equal_to_pred_contrib(booster, X)
    assert np.abs(got[:, :-1]).max() > 0.05  # not vacuous: contributions are there
    # NaN rows and rows with tiny values are among the checked ones
    assert np.isnan(X).any(axis=1).sum() > 100 and (np.abs(X[:, 4]) <= 1e-35).sum() > 50


def test_monotone_model_is_really_constrained(data):
    X, y = data
    booster = _train(X, y, **VARIANTS["monotone"][0])
    grid = np.tile(X[:200], (2, 1))
    grid[:200, 1], grid[200:, 1] = -1.0, 1.0
    margin = booster.predict(grid, raw_score=True)
    assert (margin[200:] >= margin[:200] - 1e-12).all()
    contrib = TreeShap(booster).contributions(grid)
    np.testing.assert_allclose(contrib, booster.predict(grid, pred_contrib=True), rtol=0, atol=ATOL)


def test_leaves_past_the_table_limit_are_computed_per_row(data):
    X, y = data
    booster = _train(X, y, num_leaves=63, max_depth=-1, min_data_in_leaf=5)
    ts = TreeShap(booster, max_table_features=2)
    assert ts.max_unique_features > 2 and ts.leaves_without_table > 0
    _assert_equal_to_pred_contrib(booster, X, ts)
    # a memory budget too small for every table has the same effect
    small = TreeShap(booster, max_table_bytes=50_000).build()
    assert 0 < small.table_bytes <= 50_000 and small.leaves_without_table > 0
    _assert_equal_to_pred_contrib(booster, X, small)


def test_float64_input_threads_and_edge_rows(data):
    X, y = data
    booster = _train(X, y, num_leaves=31)
    ts = TreeShap(booster)
    X64 = X.astype(np.float64)
    X64[:10] += 1e-9  # values float32 cannot hold: the float64 kernel must compare them as given
    np.testing.assert_allclose(ts.contributions(X64), booster.predict(X64, pred_contrib=True), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(ts.contributions(X[:257], num_threads=1), ts.contributions(X[:257], num_threads=2))
    assert ts.contributions(X[:0]).shape == (0, X.shape[1] + 1)
    odd = np.array([[np.inf, -np.inf, 0.0, -0.0, np.nan, 1e30, -1e-36, 1e-35]], dtype=np.float32)
    np.testing.assert_allclose(ts.contributions(odd), booster.predict(odd, pred_contrib=True), rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match="columns"):
        ts.contributions(X[:, :3])


def test_single_leaf_trees_and_iteration_ranges(data):
    X, y = data
    booster = _train(X, y, num_leaves=15)
    stump = _train(X, y, rounds=3, min_data_in_leaf=len(X))  # no split possible: one-leaf trees
    assert all("split_feature" not in t["tree_structure"] for t in stump.dump_model()["tree_info"])
    _assert_equal_to_pred_contrib(stump, X[:50])
    part = TreeShap(booster, start_iteration=5, num_iteration=10).contributions(X[:300])
    want = booster.predict(X[:300], pred_contrib=True, start_iteration=5, num_iteration=10)
    np.testing.assert_allclose(part, want, rtol=0, atol=ATOL)


def test_refuses_categorical_splits_and_multiclass(data):
    X, y = data
    Xc = X.copy()
    Xc[:, 6] = np.random.default_rng(1).integers(0, 5, len(X))
    cat = lgb.train({"objective": "binary", "verbosity": -1, "num_threads": 1, "min_data_per_group": 5,
                     "cat_smooth": 1, "min_data_in_leaf": 5},
                    lgb.Dataset(Xc, label=(Xc[:, 6] % 2 == 0).astype(int), categorical_feature=[6]), 5)
    with pytest.raises(ValueError, match="categorical"):
        TreeShap(cat)
    multi = _train(X, (np.nan_to_num(X[:, 0]) > 0).astype(int) + (np.nan_to_num(X[:, 1]) > 0), rounds=3,
                   objective="multiclass", num_class=3)
    with pytest.raises(ValueError, match="multiclass"):
        TreeShap(multi)


def test_pickle_drops_tables_and_rebuilds(data):
    X, y = data
    booster = _train(X, y, num_leaves=31)
    ts = TreeShap(booster)
    first = ts.contributions(X[:500])
    assert ts.table_bytes > 0
    blob = pickle.dumps(ts)
    assert len(blob) < ts.table_bytes  # the tables are not in the pickle
    back = pickle.loads(blob)
    assert back.table_bytes == 0
    np.testing.assert_array_equal(back.contributions(X[:500]), first)
    assert back.table_bytes == ts.table_bytes


# -- the project's models ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def project_models(training_sets, params):
    """The shipped LightGBM settings (monotone constraints, 300 rounds) fitted on the small panel's tasks."""
    out = {}
    for task in ("poverty", "relapse"):
        ts = load_training_set(training_sets[task])
        train, test = ts.split("train"), ts.split("test")
        est = make_estimator("lightgbm", task, params).fit(ts.X(train), train["label"].to_numpy())
        out[task] = (ts, est, ts.X(test))
    return out


@pytest.mark.parametrize("task", ["poverty", "relapse"])
def test_project_models_equal_pred_contrib(project_models, task):
    ts, est, X = project_models[task]
    X32 = X.to_numpy(np.float32)
    assert np.isnan(X32).any(), "the real features carry missing values"
    tree = TreeShap(est.booster_)
    assert tree.leaves_without_table == 0  # the shipped shape (max_depth 6) is under the table limit
    got = _assert_equal_to_pred_contrib(est.booster_, X32, tree)
    # the estimator's default path is the fast one and gives the same numbers as LightGBM's
    np.testing.assert_array_equal(est.contributions(X), got)
    np.testing.assert_allclose(est.contributions(X, method="pred_contrib"), got, rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match="method"):
        est.contributions(X, method="fast")


def test_estimator_pickles_without_its_treeshap(project_models):
    _, est, X = project_models["poverty"]
    before = est.contributions(X.head(100))
    assert est.treeshap().table_bytes > 0
    back = pickle.loads(pickle.dumps(est))
    assert "_treeshap" not in back.__dict__
    np.testing.assert_array_equal(back.contributions(X.head(100)), before)
    assert back.fingerprint() == est.fingerprint()


# -- the contribution cache -----------------------------------------------------------------------------------------

def _risk_model(ts, est, X) -> RiskModel:
    return RiskModel(task=ts.task, kind="lightgbm", featurizer=ts.featurizer, estimator=est, calibrator=None,
                     feature_info=ts.featurizer.feature_info_, binary_features=binary_columns(X))


class _Counting:
    """Wraps an estimator and counts the rows it is asked to explain."""

    def __init__(self, est):
        self.est, self.rows = est, 0

    def __getattr__(self, name):
        return getattr(self.est, name)

    def contributions(self, X, *a, **kw):
        self.rows += len(X)
        return self.est.contributions(X, *a, **kw)


def test_cache_skips_unchanged_rows_and_recomputes_changed_ones(project_models):
    ts, est, X = project_models["poverty"]
    X = X.head(400)
    counting = _Counting(est)
    model = _risk_model(ts, counting, X)
    cache = ContributionCache(max_rows=10_000)

    cold = model.contributions(X, cache)
    assert counting.rows == len(X) and cache.misses == len(X) and cache.hits == 0
    np.testing.assert_array_equal(cold, est.contributions(X))
    reasons = model.explain(X, cache=cache)
    assert counting.rows == len(X), "a second pass over unchanged households computes nothing"
    assert cache.hits == len(X)
    assert reasons == _risk_model(ts, est, X).explain(X)  # the same reasons as without a cache

    # one household's record changes: only that row is recomputed, and its values are the new ones
    changed = X.copy()
    col = int(np.argmax(np.abs(cold[:, :-1]).sum(axis=0)))  # the most used feature
    changed.iloc[7, col] = changed.iloc[7, col] + 5.0 if not np.isnan(changed.iloc[7, col]) else 0.0
    fresh = est.contributions(changed.iloc[[7]])
    assert not np.allclose(fresh, cold[[7]])
    again = model.contributions(changed, cache)
    assert counting.rows == len(X) + 1
    np.testing.assert_array_equal(again[7], fresh[0])
    np.testing.assert_array_equal(np.delete(again, 7, axis=0), np.delete(cold, 7, axis=0))
    # column order of the input does not matter: rows are read in the model's order
    model.contributions(X[X.columns[::-1]], cache)
    assert counting.rows == len(X) + 1


def test_cache_is_bounded_and_keyed_by_model(project_models):
    ts, est, X_all = project_models["poverty"]
    X = X_all.head(50)
    cache = ContributionCache(max_rows=30)
    model = _risk_model(ts, est, X)
    model.contributions(X, cache)
    assert len(cache) == 30 and cache.misses == 50
    model.contributions(X.tail(30), cache)       # the 30 most recent rows are still there
    assert cache.hits == 30
    model.contributions(X.head(1), cache)        # the oldest was evicted
    assert cache.misses == 51
    # another model on the same rows gets its own values, never the first model's
    other = LightGBMRisk(dict(est.params), num_boost_round=20, seed=3).fit(
        X_all, np.random.default_rng(0).integers(0, 2, len(X_all)))
    assert other.fingerprint() != est.fingerprint()
    m2 = _risk_model(ts, other, X)
    np.testing.assert_array_equal(m2.contributions(X.tail(30), cache), other.contributions(X.tail(30)))
    with pytest.raises(ValueError):
        ContributionCache(0)


def test_predict_with_cache_gives_the_same_frame(project_models, small_panel):
    from features.sources.registry import load_registry

    ts, est, _ = project_models["poverty"]
    records, _ = load_registry(small_panel, years=[2025])
    model = _risk_model(ts, est, ts.X(ts.split("train")))
    cache = ContributionCache(5000)
    a = model.predict(records, cache=cache)
    b = model.predict(records, cache=cache)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, model.predict(records))
    assert cache.hits == len(b) > 0

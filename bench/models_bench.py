"""Benchmark of the risk models: training time, explanation speed, and the accuracy / speed curve.

Three parts, printed side by side in one run (poverty task, synthetic panels, 2 threads):

1. **Training** on 100,000 and 1,000,000 households (``--sizes``): LightGBM with the shipped
   ``train.lightgbm`` settings (monotone constraints, 300 rounds) against scikit-learn's
   ``HistGradientBoostingClassifier`` with the same trees (leaves, depth, min leaf size, L2,
   learning rate, rounds, monotone constraints; it has no row or feature bagging), and the AUC of both
   on held-out data. Panels of two waves (2024-2025, seed 11, the ones of bench/features_bench.py);
   the bench's split: train on the 2024 wave of the households outside the project's 20 % hold-out
   (``split.holdout_household_share``/``seed``), test on the 2025 wave of the held-out households.
2. **Explanation speed** of the LightGBM model of each size, households per second on held-out rows:
   plain ``predict`` (raw score), LightGBM ``pred_contrib``, ``shap.TreeExplainer(...).shap_values``
   (which hands a LightGBM booster to ``pred_contrib`` itself, after parsing the model),
   ``models.treeshap`` and the project's full explained scoring (``RiskModel.score_features``: risk,
   0-100 score, tier, reason codes and cause sentences, what ``tpas predict`` and the service do per
   household after featurizing), cold and with a warm ``ContributionCache`` (unchanged households);
   with the largest absolute difference of each SHAP method from ``pred_contrib``.
3. **Accuracy / speed curve** over tree shapes (num_leaves x max_depth) on the project's own poverty
   training set of a 20,000-household panel 2016-2025 (``--curve-households``; time split train <= 2021,
   test >= 2022 with held-out households, as `tpas features build` writes it). Each shape is fitted once
   (learning rate and other settings as shipped) on the training households less a 15 % validation share;
   its rounds are the checkpoint (100 ... 1,000) with the best validation AUC (``--refit``: then refitted
   on all training households); the shipped shape is also shown at its 300 rounds. Printed: test AUC,
   explained rows/s (SHAP values) with ``pred_contrib`` and with ``models.treeshap``, the best AUC, and
   the shapes within 0.005 AUC of it that explain at least 5,000 rows/s.

    .venv/bin/python bench/models_bench.py                    # 100k and 1M households + the curve (~40 min)
    .venv/bin/python bench/models_bench.py --sizes 100000 --skip-curve
    .venv/bin/python bench/models_bench.py --quick            # small sizes, under a minute (checks the script)

Panels, feature matrices and training sets are cached in bench/out/. Not a test: it measures, it does
not assert. Prints the load average first: figures from a busy machine are lower.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = Path(__file__).resolve().parent / "out"
YEARS = [2024, 2025]
PANEL_SEED = 11            # bench/features_bench.py's panels
CURVE_SEED = 2016          # the README's measured 20,000-household panel
AIM_RATE = 5_000           # explained households per second
AIM_AUC_GAP = 0.005


def _params():
    from tpas.config import load_params
    from tpas.settings import PROJECT_ROOT

    return load_params(PROJECT_ROOT / "params.yaml")


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _best_time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# -- data -------------------------------------------------------------------------------------------------------

def _panel(n: int, years: list[int], seed: int, name: str) -> Path:
    from features.sources.synthetic import generate_panel

    path = OUT / name
    if not (path / "manifest.json").exists():
        print(f"  generating a {n:,}-household panel for {years[0]}-{years[-1]} (cached in {path}) ...", flush=True)
        t0 = time.perf_counter()
        generate_panel(path, households=n, years=years, seed=seed, params=_params(), progress=False)
        print(f"  ... {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def _build_matrices(n: int, out: str) -> None:
    """In a fresh process (memory returns to the system after): features + labels of the bench's split."""
    import joblib

    from features.build import holdout_households
    from features.featurizer import RegistryFeaturizer
    from features.labels import poverty_labels
    from features.sources.registry import load_registry

    params = _params()
    lines = params.lines
    panel = OUT / f"panel-{n}"
    parts = {}
    featurizer = None
    for year, role in zip(YEARS, ("train", "test")):
        records, _ = load_registry(panel, years=[year])
        labels = poverty_labels(records, lines).set_index(["household_id", "year"])["label"]
        held = holdout_households(labels.index.get_level_values("household_id").to_series(),
                                  params.split.holdout_household_share, params.split.seed)
        keep = ~held if role == "train" else held
        labels = labels[keep]
        if featurizer is None:
            fit_ids = labels.index.get_level_values("household_id").unique()[:50_000]
            featurizer = RegistryFeaturizer(task="poverty", poverty_lines=dict(lines.poverty_line),
                                            monitoring_lines={y: lines.monitoring_line_for(y)
                                                              for y in lines.poverty_line},
                                            history_years=params.features.history_years
                                            ).fit(records.select_households(fit_ids))
        X = featurizer.transform(records).reindex(labels.index)
        parts[role] = (X.to_numpy(np.float32), labels.to_numpy(np.int8),
                       X.index.get_level_values("household_id").to_numpy().astype(str))
        del records, X
    np.savez(out + ".tmp.npz", X_train=parts["train"][0], y_train=parts["train"][1], X_test=parts["test"][0],
             y_test=parts["test"][1], hid_test=parts["test"][2], features=np.asarray(featurizer.feature_names_))
    joblib.dump(featurizer, out + ".featurizer.joblib")
    os.replace(out + ".tmp.npz", out + ".npz")


def _matrices(n: int) -> dict:
    import joblib

    base = OUT / f"models-poverty-{n}"
    if not base.with_suffix(".npz").exists():
        _panel(n, YEARS, PANEL_SEED, f"panel-{n}")
        print(f"  building the poverty features of {n:,} households (cached in {base}.npz) ...", flush=True)
        t0 = time.perf_counter()
        proc = mp.get_context("spawn").Process(target=_build_matrices, args=(n, str(base)))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"building the features of {n:,} households failed (exit {proc.exitcode})")
        print(f"  ... {time.perf_counter() - t0:.0f} s", flush=True)
    data = dict(np.load(base.with_suffix(".npz")))
    data["featurizer"] = joblib.load(str(base) + ".featurizer.joblib")
    data["features"] = [str(f) for f in data["features"]]
    return data


def _frame(X: np.ndarray, features: list[str], hid: np.ndarray | None = None, year: int = YEARS[-1]):
    import pandas as pd

    index = None
    if hid is not None:
        index = pd.MultiIndex.from_arrays([hid, np.full(len(hid), year)], names=["household_id", "year"])
    return pd.DataFrame(X, columns=features, index=index)


# -- 1. training ------------------------------------------------------------------------------------------------

def _lightgbm(params, threads: int, **shape):
    from training.trainer import make_estimator

    return make_estimator("lightgbm", "poverty", params, overrides={"num_threads": threads, **shape})


def _hgb(params, features: list[str], rounds: int | None = None):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from features.featurizer import MONOTONE

    lp = params.train.lightgbm_for("poverty")
    return HistGradientBoostingClassifier(
        max_iter=rounds or lp.num_boost_round, learning_rate=lp.learning_rate, max_leaf_nodes=lp.num_leaves,
        max_depth=None if lp.max_depth <= 0 else lp.max_depth, min_samples_leaf=lp.min_child_samples,
        l2_regularization=lp.lambda_l2, early_stopping=False, random_state=params.train.seed,
        monotonic_cst=[int(MONOTONE.get(f, 0)) for f in features])


def train_section(n: int, data: dict, threads: int, rounds: int | None = None, hgb: bool = True) -> dict:
    from sklearn.metrics import roc_auc_score
    from threadpoolctl import threadpool_limits

    params = _params()
    features = data["features"]
    X_tr, y_tr = _frame(data["X_train"], features), data["y_train"]
    X_te, y_te = data["X_test"], data["y_test"]
    rows = []
    t0 = time.perf_counter()
    shape = {"num_boost_round": rounds} if rounds else {}
    lgbm = _lightgbm(params, threads, **shape).fit(X_tr, y_tr)
    t_lgb = time.perf_counter() - t0
    auc_lgb = roc_auc_score(y_te, lgbm.booster_.predict(X_te, raw_score=True, num_threads=threads))
    n_rounds = rounds or params.train.lightgbm_for("poverty").num_boost_round
    rows.append((f"LightGBM (shipped, {n_rounds} rounds)", t_lgb, auc_lgb))
    if hgb:
        with threadpool_limits(limits=threads, user_api="openmp"):
            model = _hgb(params, features, rounds)
            t0 = time.perf_counter()
            model.fit(data["X_train"], y_tr)
            t_hgb = time.perf_counter() - t0
            auc_hgb = roc_auc_score(y_te, model.predict_proba(X_te)[:, 1])
        rows.append((f"sklearn HistGradientBoosting ({n_rounds})", t_hgb, auc_hgb))
    print(f"{n:>11,} train rows {len(y_tr):,} / test rows {len(y_te):,}, {len(features)} features, "
          f"poverty rate {y_tr.mean():.3f}")
    for name, t, auc in rows:
        print(f"{n:>11,} {name:<32} {t:>8.1f} s {_rate(len(y_tr), t):>11,.0f} rows/s   AUC {auc:.4f}", flush=True)
    if hgb:
        print(f"{n:>11,} LightGBM is {t_hgb / t_lgb:.1f}x faster to train; AUC {auc_lgb - auc_hgb:+.4f}")
    return {"lgbm": lgbm, "auc": auc_lgb}


# -- 2. explanation speed -----------------------------------------------------------------------------------

def _risk_model(lgbm, data: dict, threads: int):
    from models.bundle import RiskModel
    from models.calibration import ScoreCalibrator
    from training.trainer import binary_columns

    featurizer = data["featurizer"]
    sample = _frame(data["X_train"][:50_000], data["features"])
    margin = lgbm.booster_.predict(sample.to_numpy(np.float32), raw_score=True, num_threads=threads)
    calibrator = ScoreCalibrator("platt").fit(margin, data["y_train"][:50_000])  # speed only: in-sample is fine
    return RiskModel(task="poverty", kind="lightgbm", featurizer=featurizer, estimator=lgbm, calibrator=calibrator,
                     feature_info=featurizer.feature_info_, binary_features=binary_columns(sample))


def explain_section(n: int, lgbm, data: dict, threads: int, sizes: dict, repeat: int) -> None:
    import numba
    import shap

    from models.explain import ContributionCache
    from models.treeshap import TreeShap

    booster = lgbm.booster_
    rng = np.random.default_rng(0)
    order = rng.permutation(len(data["y_test"]))
    X = data["X_test"][order]
    hid = data["hid_test"][order]
    res = []

    k = min(len(X), sizes["predict"])
    t = _best_time(lambda: booster.predict(X[:k], raw_score=True, num_threads=threads), repeat)
    res.append(("predict (raw score, no reasons)", k, t, None, ""))

    k_pc = min(len(X), sizes["pred_contrib"])
    ref = booster.predict(X[:k_pc], pred_contrib=True, num_threads=threads)
    t = _best_time(lambda: booster.predict(X[:k_pc], pred_contrib=True, num_threads=threads), min(repeat, 2))
    res.append(("LightGBM pred_contrib", k_pc, t, 0.0, ""))

    k_sh = min(k_pc, sizes["shap"])
    t0 = time.perf_counter()
    explainer = shap.TreeExplainer(booster)
    t_setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # "LightGBM binary classifier ... output has changed to a list of ndarray"
        warnings.simplefilter("ignore", UserWarning)
        sv = explainer.shap_values(X[:k_sh])
    t_sh = time.perf_counter() - t0
    sv = np.asarray(sv[1] if isinstance(sv, list) else sv)
    sv = sv[..., 1] if sv.ndim == 3 else sv
    diff_sh = float(np.abs(sv - ref[:k_sh, :-1]).max())
    res.append(("shap.TreeExplainer.shap_values", k_sh, t_sh, diff_sh, f"set-up {t_setup:.2f} s"))

    k_ts = min(len(X), sizes["treeshap"])
    t0 = time.perf_counter()
    ts = TreeShap(booster, num_threads=threads)
    t_parse = time.perf_counter() - t0
    ts.build()
    got = ts.contributions(X[:k_pc])  # the first call also loads the compiled kernel
    diff_ts = float(np.abs(got - ref).max())
    t = _best_time(lambda: ts.contributions(X[:k_ts]), repeat)
    res.append(("models.treeshap", k_ts, t, diff_ts,
                f"tables {ts.build_seconds:.2f} s (with loading the compiled code) + parse {t_parse:.2f} s, "
                f"{ts.table_bytes / 2**20:.0f} MiB, "
                f"longest distinct path {ts.max_unique_features}, numba {numba.threading_layer()} threads"))

    lgbm.explain_threads = threads
    model = _risk_model(lgbm, data, threads)
    k_full = min(len(X), sizes["full"])
    frame = _frame(X[:k_full], data["features"], hid[:k_full])
    model.score_features(frame.head(50))  # warm-up
    t = _best_time(lambda: model.score_features(frame), repeat)
    res.append(("explained scoring (RiskModel)", k_full, t, None, "risk, score, tier, reason codes, causes"))
    t = _best_time(lambda: model.score_features(frame, explain=False), repeat)
    res.append(("  ... the same without reasons", k_full, t, None, "risk, score, tier"))
    cache = ContributionCache(max_rows=max(k_full, 1))
    model.score_features(frame, cache=cache)
    t = _best_time(lambda: model.score_features(frame, cache=cache), repeat)
    res.append(("  ... unchanged households (cache)", k_full, t, None, f"{cache.hits:,} cache hits"))
    # what the same scoring cost with LightGBM's pred_contrib (before models.treeshap)
    lgbm.contributions = lambda X_, method="pred_contrib": type(lgbm).contributions(lgbm, X_, method="pred_contrib")
    try:
        t0 = time.perf_counter()
        model.score_features(frame.head(k_pc))
        res.append(("  ... with pred_contrib instead", min(k_pc, k_full), time.perf_counter() - t0, None, ""))
    finally:
        del lgbm.contributions

    print(f"{n:>11,} {'method':<36} {'rows':>7} {'seconds':>8} {'households/s':>13} {'max |diff|':>11}  note")
    base = res[1][1] / res[1][2]
    for name, k, t, diff, note in res:
        d = "" if diff is None else f"{diff:.1e}"
        speed = _rate(k, t)
        extra = f" ({speed / base:.0f}x pred_contrib)" if name in ("models.treeshap",) else ""
        print(f"{n:>11,} {name:<36} {k:>7,} {t:>8.2f} {speed:>13,.0f} {d:>11}  {note}{extra}", flush=True)


# -- 3. accuracy / speed curve ------------------------------------------------------------------------------

def _curve_data(households: int):
    from features.build import build_training_set
    from training.trainer import load_training_set

    panel = _panel(households, list(range(2016, 2026)), CURVE_SEED, f"curve-panel-{households}")
    out = OUT / f"curve-training-poverty-{households}"
    if not (out / "manifest.json").exists():
        print(f"  building the poverty training set of {panel.name} (cached in {out}) ...", flush=True)
        build_training_set("poverty", panel, out, _params())
    return load_training_set(out)


def _shapes(quick: bool) -> list[tuple[int, int]]:
    leaves = (7, 31) if quick else (7, 15, 31, 63)
    depths = (3, 6, -1) if quick else (3, 4, 5, 6, -1)
    seen, out = set(), []
    for depth in depths:
        for nl in leaves:
            effective = min(nl, 2 ** depth) if depth > 0 else nl
            if (effective, depth) in seen:  # e.g. 31 and 63 leaves at depth 3 both give 8-leaf trees
                continue
            seen.add((effective, depth))
            out.append((nl, depth))
    return out


def _curve_row(booster, nl: int, depth: int, rounds: int, auc: float, sample: np.ndarray, threads: int,
               sizes: dict, shipped: bool) -> dict:
    """Explanation speed of the model's first `rounds` iterations, pred_contrib vs models.treeshap."""
    from models.treeshap import TreeShap

    k_pc = min(len(sample), sizes["curve_pred_contrib"])
    t0 = time.perf_counter()
    ref = booster.predict(sample[:k_pc], pred_contrib=True, num_iteration=rounds, num_threads=threads)
    pc_rate = _rate(k_pc, time.perf_counter() - t0)
    tree = TreeShap(booster, num_threads=threads, num_iteration=rounds).build()
    diff = float(np.abs(tree.contributions(sample[:k_pc]) - ref).max())
    k_ts = min(len(sample), sizes["curve_treeshap"])
    ts_rate = _rate(k_ts, _best_time(lambda: tree.contributions(sample[:k_ts]), 2))
    row = {"leaves": nl, "depth": depth, "rounds": rounds, "auc": auc, "pred_contrib": pc_rate, "treeshap": ts_rate,
           "path": tree.max_unique_features, "table_mib": tree.table_bytes / 2**20, "diff": diff, "shipped": shipped,
           "no_table": tree.leaves_without_table}
    print(f"{nl:>6} {depth if depth > 0 else 'none':>5} {rounds:>6} {auc:>8.4f} {pc_rate:>14,.0f} "
          f"{ts_rate:>11,.0f} {ts_rate / pc_rate:>7.1f}x {row['path']:>4} {row['table_mib']:>5.0f}Mi "
          f"{row['no_table']:>8,} {diff:>9.1e}{'  <- shipped params.yaml' if shipped else ''}", flush=True)
    return row


def curve_section(households: int, threads: int, quick: bool, sizes: dict, refit: bool = False) -> list[dict]:
    from sklearn.metrics import roc_auc_score

    from features.build import holdout_households

    params = _params()
    ts = _curve_data(households)
    train, test = ts.split("train"), ts.split("test")
    X_tr, y_tr = ts.X(train), train["label"].to_numpy()
    X_te, y_te = ts.X(test).to_numpy(np.float32), test["label"].to_numpy()
    val = holdout_households(train["household_id"], 0.15, seed=99)
    Xv, yv = X_tr[val].to_numpy(np.float32), y_tr[val]
    rng = np.random.default_rng(1)
    sample = X_te[rng.permutation(len(X_te))]
    checkpoints = (25, 50, 100) if quick else (100, 150, 200, 300, 400, 600, 800, 1000)
    shipped = params.train.lightgbm_for("poverty")
    print(f"curve: {households:,}-household panel 2016-2025, train {len(y_tr):,} rows (<= 2021), test "
          f"{len(y_te):,} rows (>= 2022, incl. held-out households). Each shape is fitted once on the training "
          f"households but a 15 % validation share ({int(val.sum()):,} rows){', then refitted on all' if refit else ''}"
          f"; its rounds are the checkpoint of {checkpoints} with the best validation AUC. lr "
          f"{shipped.learning_rate}, other settings as shipped (monotone constraints). Explained rows/s: SHAP values "
          f"only (no reason codes), on held-out rows, {threads} threads; 'no table': leaves computed per row.")
    print(f"{'leaves':>6} {'depth':>5} {'rounds':>6} {'test AUC':>8} {'pred_contrib/s':>14} {'treeshap/s':>11} "
          f"{'speed-up':>8} {'path':>4} {'tables':>7} {'no table':>8} {'max|diff|':>9}")
    grid = _shapes(quick)
    if (shipped.num_leaves, shipped.max_depth) not in grid:
        grid.append((shipped.num_leaves, shipped.max_depth))
    rows = []
    for nl, depth in grid:
        is_shipped_shape = (nl, depth) == (shipped.num_leaves, shipped.max_depth)
        fit_rounds = max(max(checkpoints), shipped.num_boost_round if is_shipped_shape else 0)
        est = _lightgbm(params, threads, num_leaves=nl, max_depth=depth, num_boost_round=fit_rounds)
        est.fit(X_tr[~val], y_tr[~val])
        aucs = {r: roc_auc_score(yv, est.booster_.predict(Xv, raw_score=True, num_iteration=r, num_threads=threads))
                for r in checkpoints}
        rounds = max(aucs, key=aucs.get)
        variants = [(rounds, False)]
        if is_shipped_shape:
            variants.append((shipped.num_boost_round, True))
        booster = est.booster_
        if refit:
            booster = _lightgbm(params, threads, num_leaves=nl, max_depth=depth,
                                num_boost_round=max(r for r, _ in variants)).fit(X_tr, y_tr).booster_
        for r, is_shipped in variants:
            auc = roc_auc_score(y_te, booster.predict(X_te, raw_score=True, num_iteration=r, num_threads=threads))
            rows.append(_curve_row(booster, nl, depth, r, auc, sample, threads, sizes, is_shipped))
    best = max(rows, key=lambda r: r["auc"])
    print(f"best AUC {best['auc']:.4f}: {best['leaves']} leaves, depth {best['depth'] if best['depth'] > 0 else 'none'}"
          f", {best['rounds']} rounds; the aim: AUC >= {best['auc'] - AIM_AUC_GAP:.4f} and >= {AIM_RATE:,} "
          "explained rows/s")
    ok = [r for r in rows if r["auc"] >= best["auc"] - AIM_AUC_GAP]
    for method in ("pred_contrib", "treeshap"):
        meet = [r for r in ok if r[method] >= AIM_RATE]
        text = ", ".join(f"{r['leaves']}/{r['depth'] if r['depth'] > 0 else 'none'}/{r['rounds']} "
                         f"(AUC {r['auc']:.4f}, {r[method]:,.0f}/s)" for r in sorted(meet, key=lambda r: -r["auc"]))
        print(f"  meet both aims with {method} (leaves/depth/rounds): {text or 'none'}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--curve-households", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-train", action="store_true", help="no training / explanation part: only the curve")
    ap.add_argument("--skip-hgb", action="store_true", help="no scikit-learn comparison (LightGBM is still trained)")
    ap.add_argument("--skip-curve", action="store_true")
    ap.add_argument("--refit", action="store_true",
                    help="curve: refit each shape on all training households with its chosen rounds (slower)")
    ap.add_argument("--quick", action="store_true", help="small sizes, a small grid: checks the script (< 1 min)")
    args = ap.parse_args()
    if args.quick:
        args.sizes, args.curve_households = [3_000], 2_000
        sizes = {"predict": 20_000, "pred_contrib": 300, "shap": 100, "treeshap": 2_000, "full": 500,
                 "curve_pred_contrib": 300, "curve_treeshap": 2_000}
        repeat = 1
    else:
        sizes = {"predict": 200_000, "pred_contrib": 3_000, "shap": 1_000, "treeshap": 50_000, "full": 10_000,
                 "curve_pred_contrib": 2_000, "curve_treeshap": 20_000}
        repeat = 3
    OUT.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(f"models bench: poverty task, {args.threads} threads, {os.cpu_count()} cores; load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min){'  -- busy machine' if load[0] > 0.5 else ''}")
    import numba

    from models.treeshap import TreeShap  # noqa: F401  (kernels load from numba's cache here)
    print(f"numba {numba.__version__} (threading layer asked: {numba.config.THREADING_LAYER})", flush=True)
    t_start = time.perf_counter()
    if not args.skip_train:
        for n in args.sizes:
            print(f"\n== {n:,} households: training (bench split: train 2024 wave, test 2025 wave of held-out "
                  "households) ==")
            data = _matrices(n)
            trained = train_section(n, data, args.threads, rounds=50 if args.quick else None, hgb=not args.skip_hgb)
            print(f"\n== {n:,} households: explanation speed (held-out rows, {args.threads} threads; shap's "
                  "TreeExplainer hands LightGBM boosters to pred_contrib itself, with LightGBM's default threads) ==")
            explain_section(n, trained["lgbm"], data, args.threads, sizes, repeat)
            del data, trained
    if not args.skip_curve:
        print("\n== accuracy / speed curve ==")
        curve_section(args.curve_households, args.threads, args.quick, sizes, refit=args.refit)
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s; load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(main())

"""Quality of `tpas train --task idb-level` across fold seeds: default, configured and tuned settings.

`tpas train --task idb-level` reports one household-level stratified 5-fold CV (fold seed
`split.seed` of params.yaml). One split can be lucky: macro-F1 moves by about 0.01 between fold
seeds. This bench redraws the training set's folds with several seeds and runs, for each, the
same cross-validation as `tpas train` (`training.trainer.cross_validate_multiclass`: level weights
and, if configured, nested probability multipliers; metrics of `training.evaluate.multiclass_metrics`
on the pooled out-of-fold probabilities, as `tpas train` logs them as ``heldout_*``):

- ``default``: the registry default LightGBM (`train.lightgbm`), unweighted, no multipliers
  (what `tpas train` fitted for idb-level before the per-task settings);
- ``configured``: params.yaml as shipped (`train.lightgbm_by_task.idb-level`, `train.class_weight`, ...);
- ``tuned-nested``: inside each outer fold, `training.tune.search` (the `tpas tune` objective, folds
  and sampler, in memory) on the outer training households only, then the best settings are
  fitted there and scored on the outer fold: an honest estimate of what tuning buys;
- ``tuned-file``: the configured settings with a `tpas tune` best-params file (--best-json, default
  $TPAS_DATA_DIR/tuning/idb-level.best.json when it exists). That search saw every household,
  so this line is optimistic; compare it with ``tuned-nested``.

Printed per setting: per seed macro-F1, AUC(poor: levels 1-2 vs rest), log loss (pooled OOF) and
the mean of the per-fold macro-F1; then mean ± sd over seeds, and the paired difference to ``default``.

Usage::

    TPAS_DATA_DIR=/tmp/idbq .venv/bin/python bench/idb_quality.py [--training-set DIR | --data SURVEY.csv]
        [--seeds 0 1 2 3 4] [--settings default configured tuned-nested tuned-file] [--tune-trials 30]
        [--best-json PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import build_training_set, household_folds
from tpas.config import Params, load_params
from tpas.settings import get_settings
from training.evaluate import multiclass_metrics
from training.trainer import (TrainingSet, class_sample_weights, cross_validate_multiclass, load_training_set,
                              make_estimator)
from training.tune import search

SETTINGS = ("default", "configured", "tuned-nested", "tuned-file")


def default_params(params: Params) -> Params:
    """params with the registry default LightGBM for every task, unweighted, no multipliers."""
    train = params.train.model_copy(update={"lightgbm_by_task": {}, "class_weight": "none",
                                            "class_multipliers": "none"})
    return params.model_copy(update={"train": train})


def _scores(y: np.ndarray, probs: np.ndarray, fold: np.ndarray, classes: tuple[int, ...]) -> dict:
    mc = multiclass_metrics(y, probs, labels=classes)
    per_fold = [multiclass_metrics(y[fold == f], probs[fold == f], labels=classes)["macro_f1"] for f in np.unique(fold)]
    return {"macro_f1": mc["macro_f1"], "auc_poor": mc["auc_poor"], "log_loss": mc["log_loss"],
            "fold_mean_f1": float(np.mean(per_fold))}


def cv_probs(ts: TrainingSet, params: Params, fold: np.ndarray, overrides: dict | None = None) -> np.ndarray:
    """Out-of-fold probabilities of `tpas train`'s CV with these params and folds."""
    X, y = ts.X(ts.dataset), ts.dataset["label"].to_numpy().astype(int)
    classes = np.unique(y)
    make = lambda: make_estimator("lightgbm", ts.task, params, overrides, n_classes=len(classes))  # noqa: E731
    return cross_validate_multiclass(make, X, np.searchsorted(classes, y), fold, params.train, len(classes)).probs


def nested_tuned_probs(ts: TrainingSet, params: Params, fold: np.ndarray, trials: int) -> tuple[np.ndarray, list]:
    """Out-of-fold probabilities with settings tuned inside each outer fold's training households only."""
    data = ts.dataset
    X, y = ts.X(data), data["label"].to_numpy().astype(int)
    classes = np.unique(y)
    yi, k = np.searchsorted(classes, y), len(classes)
    hh = data["household_id"].to_numpy()
    probs, chosen = np.zeros((len(X), k)), []
    for f in sorted(np.unique(fold)):
        tr, te = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        best, _ = search(ts.task, X.iloc[tr], yi[tr], hh[tr], params, trials, classes=classes)
        chosen.append(best)
        est = make_estimator("lightgbm", ts.task, params, best, n_classes=k)
        est.fit(X.iloc[tr], yi[tr], sample_weight=class_sample_weights(yi[tr], params.train, k))
        m = np.asarray(est.margin(X.iloc[te]))
        z = np.exp(m - m.max(axis=1, keepdims=True))
        probs[te] = z / z.sum(axis=1, keepdims=True)
    return probs, chosen


def run(ts: TrainingSet, params: Params, seeds: list[int], settings: list[str], trials: int,
        best_json: Path | None) -> pd.DataFrame:
    y = ts.dataset["label"].to_numpy().astype(int)
    classes = tuple(int(c) for c in np.unique(y))
    tuned = json.loads(best_json.read_text(encoding="utf-8"))["params"] if best_json else None
    rows = []
    for seed in seeds:
        fold = household_folds(y, 5, seed)
        for name in settings:
            t0 = time.perf_counter()
            extra = ""
            if name == "default":
                probs = cv_probs(ts, default_params(params), fold)
            elif name == "configured":
                probs = cv_probs(ts, params, fold)
            elif name == "tuned-file":
                if tuned is None:
                    continue
                probs = cv_probs(ts, params, fold, tuned)
            else:
                probs, chosen = nested_tuned_probs(ts, params, fold, trials)
                extra = "  chosen: " + "; ".join(
                    f"lr {c['learning_rate']:.3f} x{c['num_boost_round']} leaves {c['num_leaves']}" for c in chosen)
            s = _scores(y, probs, fold, classes)
            rows.append({"setting": name, "seed": seed, **s})
            print(f"seed {seed}  {name:<13} macro-F1 {s['macro_f1']:.4f}  AUC(poor) {s['auc_poor']:.4f}  "
                  f"log loss {s['log_loss']:.4f}  (per-fold mean F1 {s['fold_mean_f1']:.4f})  "
                  f"{time.perf_counter() - t0:.0f} s{extra}", flush=True)
    return pd.DataFrame(rows)


def summarise(res: pd.DataFrame) -> list[str]:
    lines = [f"mean ± sd over fold seeds {sorted(res['seed'].unique().tolist())} (5-fold CV each, pooled OOF):"]
    for name, part in res.groupby("setting", sort=False):
        line = f"  {name:<13}"
        for key, label in (("macro_f1", "macro-F1"), ("auc_poor", "AUC(poor)"), ("log_loss", "log loss")):
            line += f"  {label} {part[key].mean():.4f} ± {part[key].std(ddof=1):.4f}"
        line += f"  [min F1 {part['macro_f1'].min():.4f}, min AUC {part['auc_poor'].min():.4f}]"
        lines.append(line)
    if "default" in set(res["setting"]):
        base = res[res["setting"] == "default"].set_index("seed")
        for name, part in res[res["setting"] != "default"].groupby("setting", sort=False):
            d = part.set_index("seed")[["macro_f1", "auc_poor"]] - base[["macro_f1", "auc_poor"]]
            d = d.dropna()
            lines.append(f"  {name} - default: macro-F1 {d['macro_f1'].mean():+.4f} ± {d['macro_f1'].std(ddof=1):.4f}, "
                         f"AUC(poor) {d['auc_poor'].mean():+.4f} ± {d['auc_poor'].std(ddof=1):.4f} (paired by seed)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--training-set", type=Path, default=None,
                        help="idb-level training-set folder (default: $TPAS_DATA_DIR/training/idb-level)")
    parser.add_argument("--data", type=Path, default=None, help="build the training set from this survey instead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--tune-trials", type=int, default=None,
                        help="Optuna trials per outer fold (tuned-nested; default params tune.trials, as tpas tune)")
    parser.add_argument("--best-json", type=Path, default=None, help="tpas tune best-params file (tuned-file)")
    args = parser.parse_args(argv)

    params = load_params()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is not None:
            build_training_set("idb-level", args.data, Path(tmp) / "idb-level", params)
            path = Path(tmp) / "idb-level"
        else:
            path = args.training_set or get_settings().data_dir / "training" / "idb-level"
        ts = load_training_set(path)
        best_json = args.best_json or get_settings().data_dir / "tuning" / "idb-level.best.json"
        best_json = best_json if best_json.exists() else None
        if "tuned-file" in args.settings:
            print(f"tuned-file: {best_json or 'no best-params file: line skipped'}")
        res = run(ts, params, args.seeds, args.settings, args.tune_trials or params.tune.trials, best_json)
    print()
    for line in summarise(res):
        print(line)
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

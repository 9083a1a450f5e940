"""Benchmark of the synthetic registry panel generator (`tpas data synth`).

Generates a panel of 100,000 households x 10 years (``--households`` to change it, ``--million``
for the full 1,000,000) into a scratch folder and prints households/s, rows and bytes written,
and the peak resident memory of the process. ``--models`` also fits a linear model and LightGBM
on the year-t indicators of the poverty task (trained on waves up to 2021, tested on 2022+) and
prints their AUC, a check that the panel rewards non-linear models without being trivial.

    .venv/bin/python bench/synth_bench.py                 # 100k households
    .venv/bin/python bench/synth_bench.py --million       # 1M households (minutes)
    .venv/bin/python bench/synth_bench.py --households 20000 --models

Not a test: it measures, it does not assert. The claim it backs (docs/synthetic_panel.md):
1,000,000 households x 10 years in well under 15 minutes on 2 cores, peak RSS of a few GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def model_check(panel: Path, params) -> dict:
    """Logistic regression vs LightGBM on the poverty label from year-t indicators (no income, no status)."""
    import lightgbm as lgb
    import numpy as np
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from features.featurizer import RegistryFeaturizer
    from features.labels import poverty_labels
    from features.sources.registry import load_registry

    records, _ = load_registry(panel)
    labels = poverty_labels(records, params.lines).set_index(["household_id", "year"])["label"]
    train_until, test_from = params.split.train_until_year, params.split.test_from_year
    featurizer = RegistryFeaturizer("poverty", dict(params.lines.poverty_line)).fit(
        records.select_years(last=train_until))
    X = featurizer.transform(records)
    y = labels.reindex(X.index)
    keep = y.notna().to_numpy()
    X, y = X[keep], y[keep].astype(int)
    year = X.index.get_level_values("year")
    train, test = year <= train_until, year >= test_from
    linear = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=3000))
    linear.fit(X[train], y[train])
    gbm = lgb.LGBMClassifier(n_estimators=600, learning_rate=0.03, num_leaves=31, min_child_samples=50,
                             subsample=0.8, subsample_freq=1, colsample_bytree=0.8, verbose=-1, random_state=0)
    gbm.fit(X[train], y[train])
    out = {"features": X.shape[1], "train_rows": int(train.sum()), "test_rows": int(test.sum()),
           "test_poverty_rate": round(float(y[test].mean()), 4)}
    for name, model in (("linear", linear), ("lightgbm", gbm)):
        p = model.predict_proba(X[test])[:, 1]
        out[f"auc_{name}"] = round(float(roc_auc_score(y[test], p)), 4)
        for budget in (0.10, 0.25):   # share of the poor among the top-scored `budget` share of households
            top = np.argsort(-p)[: int(budget * len(p))]
            out[f"coverage_at_{budget:.0%}_{name}"] = round(float(y[test].to_numpy()[top].sum() / y[test].sum()), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=100_000)
    parser.add_argument("--million", action="store_true", help="1,000,000 households")
    parser.add_argument("--years", default="2016-2025")
    parser.add_argument("--seed", type=int, default=2016)
    parser.add_argument("--chunk-households", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="keep the panel here (default: a temp folder)")
    parser.add_argument("--models", action="store_true", help="also compare a linear model with LightGBM")
    parser.add_argument("--params", default=None, help="parameter file (default: the checkout's params.yaml)")
    args = parser.parse_args(argv)

    from features.sources.synthetic import generate_panel
    from tpas.config import YearRange, load_params

    params = load_params(args.params or Path(__file__).resolve().parents[1] / "params.yaml")
    households = 1_000_000 if args.million else args.households
    years = YearRange.model_validate(args.years).years
    scratch = args.out or Path(tempfile.mkdtemp(prefix="synth_bench_"))
    try:
        t0 = time.perf_counter()
        manifest = generate_panel(scratch, households=households, years=years, seed=args.seed, params=params,
                                  chunk_households=args.chunk_households, progress=True)
        elapsed = time.perf_counter() - t0
        rows = manifest["rows"]
        result = {
            "households": households, "years": f"{years[0]}-{years[-1]}",
            "chunk_households": manifest["chunk_households"], "chunks": manifest["chunks"],
            "seconds": round(elapsed, 1), "households_per_second": round(households / elapsed),
            "household_rows": rows["households"], "member_rows": rows["members"],
            "rows_per_second": round((rows["households"] + rows["members"]) / elapsed),
            "bytes_written": folder_bytes(scratch), "peak_rss_mb": round(peak_rss_mb()),
        }
        print(json.dumps(result, indent=2))
        rates = manifest["rates_by_year"]
        print("year  poverty  registered  exit  relapse  invalid")
        for y, r in rates.items():
            fmt = lambda v: "   -  " if v is None else f"{v:6.3f}"  # noqa: E731
            print(f"{y}  {fmt(r['poverty_rate'])}  {fmt(r['registered_share'])}     {fmt(r['exit_rate'])} "
                  f"{fmt(r['relapse_rate'])}  {fmt(r['invalid_share'])}")
        if args.models:
            print(json.dumps({"model_check": model_check(scratch, params)}, indent=2))
    finally:
        if args.out is None:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

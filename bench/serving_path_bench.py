"""Benchmark of the serving path: `validate_records` + featurize, small batches, old path vs new path.

The scoring service (`serving.scoring.Scorer.score`) builds two frames from the pydantic-checked
request values (str / int / float / bool / None), validates them (`validate_records`) and runs
the `poverty` and `relapse` featurizers on the valid records. This script measures exactly that
for requests of 1, 10 and 100 households (each with its 3 earlier waves, as the relapse model
reads them), printing per-call median and p99 and households/s (a stage named "frames ..." includes
building the two frames from the request values, as `Scorer.score` does), for

- the old path: the general (vectorised, pandas/pandera) code, forced by setting the small-input
  thresholds `features.validation.SMALL_TABLE_ROWS` and `features.featurizer.SMALL_BATCH_ROWS`
  to 0;
- the new path: the small-input fast paths (the defaults);

and the large-batch rate (validate + featurize 20,000 households, one wave, typed input as a
Parquet export gives it; the fast paths take tables up to their thresholds, the rest goes the
general way), which the small-input work must not slow down. Both paths are checked to give
identical frames on every request size before being timed.

    .venv/bin/python bench/serving_path_bench.py                  # ~3 minutes on 2 idle cores
    .venv/bin/python bench/serving_path_bench.py --calls 50 --large 0

The featurizers come from `features.build.build_training_set` on a small generated panel
(cached in bench/out/serving-panel-*). Not a test: it measures, it does not assert (apart from
the equality check).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = Path(__file__).resolve().parent / "out"
PANEL_HOUSEHOLDS = 600
PANEL_YEARS = list(range(2016, 2026))
PANEL_SEED = 5


def _training(params) -> tuple[Path, dict]:
    """A small panel and its poverty / relapse training sets (cached); the fitted featurizers."""
    import joblib

    from features.build import build_training_set
    from features.sources.synthetic import generate_panel

    base = OUT / f"serving-panel-{PANEL_HOUSEHOLDS}"
    panel = base / "panel"
    if not (panel / "manifest.json").exists():
        print(f"  generating a {PANEL_HOUSEHOLDS}-household panel (cached in {base}) ...", flush=True)
        generate_panel(panel, households=PANEL_HOUSEHOLDS, years=PANEL_YEARS, seed=PANEL_SEED, params=params,
                       progress=False)
    featurizers = {}
    for task in ("poverty", "relapse"):
        out = base / "training" / task
        if not (out / "featurizer.joblib").exists():
            print(f"  building the {task} training set ...", flush=True)
            build_training_set(task, panel, out, params)
        featurizers[task] = joblib.load(out / "featurizer.joblib")
    return panel, featurizers


def _python_rows(frame: pd.DataFrame) -> list[dict]:
    """Rows as the service has them: plain Python str / int / float / bool / None."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def _requests(records, sizes: list[int], previous: int = 3) -> dict[int, tuple[list[dict], list[dict]]]:
    """Per size, the household and member rows of a request of that many households (latest wave
    plus `previous` earlier waves each), taken from the valid panel records."""
    hh, mb = records.households, records.members
    last = int(hh["year"].max())
    waves = hh[hh["year"] >= last - previous]
    counts = waves.groupby("household_id")["year"].nunique()
    ids = counts[counts == previous + 1].index.to_list()
    out = {}
    for n in sizes:
        chosen = set(ids[:n])
        h = waves[waves["household_id"].isin(chosen)]
        m = mb[mb["household_id"].isin(chosen) & (mb["year"] >= last - previous)]
        out[n] = (_python_rows(h), _python_rows(m))
    return out


def _frames(rows: tuple[list[dict], list[dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    from features.schema import HOUSEHOLD_COLUMNS, MEMBER_COLUMNS

    hh_rows, mb_rows = rows
    return (pd.DataFrame(hh_rows, columns=[c.name for c in HOUSEHOLD_COLUMNS]),
            pd.DataFrame(mb_rows, columns=[c.name for c in MEMBER_COLUMNS]))


@contextlib.contextmanager
def general_path(force: bool):
    """Force the general (old) path by setting the small-input thresholds to 0."""
    import features.featurizer as fz
    import features.validation as fv

    saved = (getattr(fv, "SMALL_TABLE_ROWS", None), getattr(fz, "SMALL_BATCH_ROWS", None))
    if force:
        fv.SMALL_TABLE_ROWS, fz.SMALL_BATCH_ROWS = 0, 0
    try:
        yield
    finally:
        if saved[0] is not None:
            fv.SMALL_TABLE_ROWS = saved[0]
        if saved[1] is not None:
            fz.SMALL_BATCH_ROWS = saved[1]


def serving_call(rows, featurizers) -> tuple:
    """What `Scorer.score` does before the models: frames from the request values, validate, featurize."""
    from features.validation import validate_records

    households, members = _frames(rows)
    records, report = validate_records(households, members, source="api")
    return records, report, {t: f.transform(records) for t, f in featurizers.items()}


def _check_same(rows, featurizers) -> None:
    with general_path(True):
        r0, rep0, x0 = serving_call(rows, featurizers)
    r1, rep1, x1 = serving_call(rows, featurizers)
    pd.testing.assert_frame_equal(r0.households, r1.households, check_exact=True)
    pd.testing.assert_frame_equal(r0.members, r1.members, check_exact=True)
    pd.testing.assert_frame_equal(rep0.rejects, rep1.rejects, check_exact=True)
    for t in x0:
        pd.testing.assert_frame_equal(x0[t], x1[t], check_exact=True)


def _time(fn, calls: int) -> np.ndarray:
    fn()  # warm-up
    out = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - t0
    return out * 1000.0


def _large(n: int, params, featurizers) -> None:
    """Validate + featurize `n` households of one wave (typed input, as from Parquet), both paths."""
    from features.sources.synthetic import generate_panel
    from features.sources.registry import read_registry_tables
    from features.validation import validate_records

    path = OUT / f"serving-large-{n}"
    if not (path / "manifest.json").exists():
        print(f"  generating a {n:,}-household wave (cached in {path}) ...", flush=True)
        generate_panel(path, households=n, years=[2024, 2025], seed=11, params=params, progress=False)
    households, members, _ = read_registry_tables(path, years=[2025])
    for label, force in (("old (general)", True), ("new (default)", False)):
        with general_path(force):
            t0 = time.perf_counter()
            records, _ = validate_records(households, members, source=str(path))
            t_val = time.perf_counter() - t0
            rates = []
            for task in ("poverty", "relapse"):
                t0 = time.perf_counter()
                featurizers[task].transform(records)
                rates.append(len(records) / (time.perf_counter() - t0))
        print(f"  {label:<14} validate {len(households) / t_val:>9,.0f} hh/s   featurize poverty {rates[0]:>9,.0f} hh/s"
              f"   relapse {rates[1]:>9,.0f} hh/s   ({n:,} households, 1 wave)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200, help="timed calls per size and path")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--large", type=int, default=20_000, help="households of the large-batch check (0: skip)")
    args = ap.parse_args()

    from features.sources.registry import load_registry
    from features.validation import validate_records
    from tpas.config import load_params

    params = load_params(ROOT / "params.yaml")
    panel, featurizers = _training(params)
    records, _ = load_registry(panel)
    requests = _requests(records, args.sizes)
    print(f"serving path bench: validate_records + featurize (poverty, relapse), {args.calls} calls per cell; "
          f"each household with 3 earlier waves (4 household rows, ~{len(requests[args.sizes[0]][1]) // 4} "
          f"members per wave); load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for n in args.sizes:
        _check_same(requests[n], featurizers)
    print("  old and new paths give identical records, rejects and features on every size")
    header = (f"{'households':>10} {'stage':<22} {'old median':>11} {'old p99':>9} {'new median':>11} {'new p99':>9} "
              f"{'speed-up':>9}")
    print(header)
    stages = {
        "frames + validate": lambda rows: validate_records(*_frames(rows), source="api"),
        "featurize poverty": None, "featurize relapse": None,
        "frames+valid.+featur.": lambda rows: serving_call(rows, featurizers),
    }
    for n in args.sizes:
        rows = requests[n]
        with general_path(True):
            recs_old = serving_call(rows, featurizers)[0]
        recs_new = serving_call(rows, featurizers)[0]
        results = {}
        for stage, fn in stages.items():
            times = {}
            for label, force, recs in (("old", True, recs_old), ("new", False, recs_new)):
                if fn is None:
                    task = stage.split()[-1]
                    call = (lambda f=featurizers[task], r=recs: f.transform(r))
                else:
                    call = (lambda f=fn: f(rows))
                with general_path(force):
                    times[label] = _time(call, args.calls)
            results[stage] = times
            old, new = times["old"], times["new"]
            print(f"{n:>10} {stage:<22} {np.median(old):>8.2f} ms {np.percentile(old, 99):>6.2f} ms "
                  f"{np.median(new):>8.2f} ms {np.percentile(new, 99):>6.2f} ms "
                  f"{np.median(old) / np.median(new):>8.1f}x", flush=True)
        if n >= 100:
            t = results["frames+valid.+featur."]
            print(f"{n:>10} {'households/s':<22} {n / np.median(t['old']) * 1000:>11,.0f} {'':>9} "
                  f"{n / np.median(t['new']) * 1000:>11,.0f}   (validate + featurize both tasks, median call)")
    print(f"  (load average now {os.getloadavg()[0]:.1f}: timings on a busy machine are inflated)")
    if args.large:
        import features.featurizer as fz
        import features.validation as fv

        print(f"large batch ({args.large:,} households, 1 wave; new: fast paths for tables of at most "
              f"{fv.SMALL_TABLE_ROWS:,} rows and batches of at most {fz.SMALL_BATCH_ROWS:,} household waves):")
        _large(args.large, params, featurizers)


if __name__ == "__main__":
    sys.exit(main())

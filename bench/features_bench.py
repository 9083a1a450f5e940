"""Benchmark of feature building: the vectorised registry featurizer vs a plain pandas row-wise baseline.

For 100,000 and 1,000,000 households (two waves, 2024-2025, so the relapse history is real)
it prints, per stage, households per second and the peak resident memory of a fresh process:

- read + validate the two waves (`load_registry`),
- featurize one wave for `poverty` (year-t indicators + member aggregates),
- featurize for `relapse` (two waves, with history),
- the baseline: the same member aggregates and head attributes computed the plain pandas way
  (``groupby(...).apply`` with a Python function per household), on a sample, extrapolated.

    .venv/bin/python bench/features_bench.py              # 100k and 1M (generates panels once, cached)
    .venv/bin/python bench/features_bench.py --sizes 100000

Panels are cached in bench/out/. Not a test: it measures, it does not assert. The claim it
backs (README): 1,000,000 households' features in under 60 s on 2 cores.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
YEARS = [2024, 2025]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _panel(n: int) -> Path:
    from features.sources.synthetic import generate_panel
    from tpas.config import load_params
    from tpas.settings import PROJECT_ROOT

    path = OUT / f"panel-{n}"
    if not (path / "manifest.json").exists():
        print(f"  generating a {n:,}-household panel for {YEARS} (cached in {path}) ...", flush=True)
        generate_panel(path, households=n, years=YEARS, seed=11, params=load_params(PROJECT_ROOT / "params.yaml"),
                       progress=True)
    return path


def _stage(kind: str, path: str, sample: int, queue) -> None:
    """Run one measured stage in a fresh process; report (seconds, households, peak MB)."""
    from features.featurizer import RegistryFeaturizer
    from features.sources.registry import load_registry
    from tpas.config import load_params
    from tpas.settings import PROJECT_ROOT

    params = load_params(PROJECT_ROOT / "params.yaml")
    lines = dict(params.lines.poverty_line)
    mlines = {y: params.lines.monitoring_line_for(y) for y in lines}
    t0 = time.perf_counter()
    records, _ = load_registry(path, years=YEARS)
    t_load = time.perf_counter() - t0
    last = records.select_years(first=YEARS[-1])
    n = len(last.households)
    if kind == "load":
        queue.put((t_load, len(records.households), _peak_mb()))
        return
    if kind in ("poverty", "relapse"):
        data = last if kind == "poverty" else records
        fitted = RegistryFeaturizer(kind, lines, mlines).fit(data.select_households(
            data.households["household_id"].head(20_000)))
        t0 = time.perf_counter()
        X = fitted.transform(data)
        dt = time.perf_counter() - t0
        assert len(X) == len(data.households)
        queue.put((dt, n, _peak_mb()))
        return
    # baseline: row-wise pandas on a sample of households
    ids = last.households["household_id"].drop_duplicates().head(sample)
    sub = last.select_households(ids)
    t0 = time.perf_counter()
    _rowwise_features(sub.households, sub.members)
    queue.put((time.perf_counter() - t0, len(ids), _peak_mb()))


def _rowwise_features(households, members):
    """The straightforward way: one Python call per household over its member rows."""
    import pandas as pd

    def one(m: pd.DataFrame) -> pd.Series:
        head = m[m["relation"] == "head"]
        head = head.iloc[0] if len(head) else m.sort_values("member_no").iloc[0]
        adults = m[m["age"] >= 18]
        return pd.Series({
            "n_members": len(m),
            "n_children": (m["age"] < 16).sum(),
            "n_elderly": (m["age"] >= 65).sum(),
            "n_able_workers": ((m["age"].between(16, 64)) & (m["work_ability"] == "full")).sum(),
            "n_ill": m["health"].isin(["chronic", "serious"]).sum(),
            "n_serious_ill": (m["health"] == "serious").sum(),
            "n_disabled": (m["disability_grade"].fillna(0) > 0).sum(),
            "migrant_months": m["migrant_months"].sum(),
            "max_adult_schooling": adults["schooling_years"].max(),
            "mean_adult_schooling": adults["schooling_years"].mean(),
            "head_age": head["age"], "head_female": float(head["sex"] == "F"),
        })

    agg = members.groupby(["household_id", "year"]).apply(one, include_groups=False)
    out = households.set_index(["household_id", "year"]).join(agg)
    out["land_per_capita"] = out.apply(lambda r: r["cultivated_land_mu"] / r["n_members"]
                                       if r["n_members"] else float("nan"), axis=1)
    return out


def run(kind: str, path: Path, sample: int = 20_000) -> tuple[float, int, float]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_stage, args=(kind, str(path), sample, q))
    p.start()
    result = q.get()
    p.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--baseline-sample", type=int, default=20_000)
    args = ap.parse_args()
    print(f"features bench: waves {YEARS}, 2 cores; each stage in a fresh process (peak RSS is per stage)")
    print(f"{'households':>11} {'stage':<28} {'seconds':>8} {'households/s':>13} {'peak MB':>8}")
    for n in args.sizes:
        path = _panel(n)
        rows = []
        for kind, label in (("load", "read + validate 2 waves"), ("poverty", "featurize poverty (1 wave)"),
                            ("relapse", "featurize relapse (2 waves)"), ("baseline", "baseline row-wise pandas")):
            dt, count, peak = run(kind, path, args.baseline_sample)
            rate = count / dt
            note = ""
            if kind == "baseline":
                note = f"  (on {count:,} households; {n / rate:,.0f} s extrapolated to {n:,})"
            print(f"{n:>11,} {label:<28} {dt:>8.1f} {rate:>13,.0f} {peak:>8,.0f}{note}", flush=True)
            rows.append((kind, rate))
        rates = dict(rows)
        print(f"{n:>11,} speed-up of the featurizer over the row-wise baseline: "
              f"{rates['poverty'] / rates['baseline']:,.0f}x (poverty), "
              f"{rates['relapse'] / rates['baseline']:,.0f}x (relapse)")


if __name__ == "__main__":
    sys.exit(main())

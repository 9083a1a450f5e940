"""Monitoring benchmark: `tpas monitor run` on large windows, beside Evidently's report alone.

For each size of the current window (10,000 and 100,000 households by default) against a
100,000-row reference snapshot, one task (poverty: 69 features; relapse: 104):

- the monitoring run (`monitoring.run.monitor_task`): read the window from the inference store
  (SQLite), load the model and its reference from MLflow, build the frames, run the Evidently
  report, targeting quality, save HTML + JSON, add the snapshot to the workspace, write the alert;
- Evidently's report alone (`Report.run`) on the very frames the run built, and the HTML it saves;

so the project's own overhead shows as the difference, with the run's own breakdown.

Set-up (not timed): a small synthetic panel (2,000 households), a LightGBM model fitted quickly and
logged as `tpas train` logs it, except that its reference snapshot and held-out predictions are
resampled (seeded, with replacement) to the reference size; the panel's next (steady) wave scored
through `serving.scoring.Scorer`, its score rows copied under new pseudonyms up to the window size
and written to a SQLite store of their own. Everything lands in bench/out/monitoring-bench/.

    .venv/bin/python bench/monitoring_bench.py            # 10,000 and 100,000 vs 100,000 (several minutes)
    .venv/bin/python bench/monitoring_bench.py --quick    # 2,000 and 5,000 vs 20,000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "monitoring-bench"


def setup_model(task: str, reference_rows: int, params, panel: Path, data: Path) -> str:
    """Fit and register a champion whose reference snapshot has `reference_rows` rows; returns its version."""
    import numpy as np

    from features.build import build_training_set
    from training.tracking import log_model_run, promote
    from training.trainer import fit_risk_model, load_training_set

    out = data / "training" / task
    build_training_set(task, panel, out, params)
    ts = load_training_set(out)
    fast = params.model_copy(update={"train": params.train.model_copy(update={
        "lightgbm": params.train.lightgbm.model_copy(update={"num_boost_round": 80}), "calibration_folds": 3}),
        "evaluate": params.evaluate.model_copy(update={"bootstrap": 10})})
    fit = fit_risk_model(ts, "lightgbm", fast)
    rng = np.random.default_rng(1)
    reference = fit.reference.iloc[rng.integers(0, len(fit.reference), reference_rows)].reset_index(drop=True)
    last = fit.test_frame[fit.test_frame["year"] == fit.test_frame["year"].max()]
    heldout = last.iloc[rng.integers(0, len(last), reference_rows + 1000)].reset_index(drop=True)
    _, uri = log_model_run(task=task, kind="lightgbm", fit=fit, ts=ts, params=fast,
                           artifacts={"reference/reference.parquet": reference,
                                      "evaluation/heldout_predictions.parquet": heldout})
    version = uri.rsplit("/", 1)[1]
    promote(task, version, params.model_copy(update={"gate": {}}))
    return version


def base_rows(task: str, params, panel: Path) -> list[dict]:
    """Score rows of the panel's next (steady) wave, as the service stores them."""
    import numpy as np
    from pydantic import TypeAdapter

    from monitoring.simulate import make_wave
    from serving.payload import records_to_payload
    from serving.schemas import LenientHousehold
    from serving.scoring import Scorer, load_champions

    records, info = make_wave(panel, "steady", params)
    payload = records_to_payload(records, year=info["year"], max_previous=params.features.history_years)
    scorer = Scorer(load_champions((task,)))
    rows = []
    adapter = TypeAdapter(list[LenientHousehold])
    for i in range(0, len(payload), 500):
        rows += scorer.score(adapter.validate_python(payload[i:i + 500])).store_rows
    rows = [r for r in rows if r["task"] == task and (task != "relapse" or r["eligible"])]
    order = np.random.default_rng(3).permutation(len(rows))   # copies cycle through households in random order
    return [rows[i] for i in order]


def fill_store(url: str, rows: list[dict], n: int, when: datetime):
    """A store at `url` holding `n` score rows: copies of `rows` under fresh pseudonyms and record ids."""
    from serving.store import InferenceStore

    store = InferenceStore(url=url, spool_dir=OUT / "spool")
    store.migrate()
    batch = []
    for i in range(n):
        r = dict(rows[i % len(rows)])
        r.update(record_id=uuid.uuid4().hex, household_pid=uuid.uuid4().hex, scored_at=when)
        batch.append(r)
        if len(batch) == 5000:
            store.record_scores(batch)
            batch = []
    if batch:
        store.record_scores(batch)
    return store


def evidently_alone(task: str, store, since, until, params) -> dict:
    """The same frames as the run, then Evidently's `Report.run` and `save_html` alone, timed."""
    from monitoring.context import load_model_context, model_versions
    from monitoring.drift import build_frames, build_report, quick_drift
    from monitoring.window import load_window

    mp = params.monitoring
    window = load_window(store, task, since, until, model_versions(task)["champion"])
    ctx = load_model_context(task, window.model_version)
    frames = build_frames(ctx, window, mp)
    quick = quick_drift(frames, mp)
    plan = build_report(frames, mp, sorted(quick, key=quick.get, reverse=True)[:mp.top_columns])
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snap = plan.report.run(plan.current, plan.reference)
    run = time.perf_counter() - t
    t = time.perf_counter()
    snap.save_html(str(OUT / "evidently-alone.html"))
    return {"report_run": run, "save_html": time.perf_counter() - t, "rows": len(frames.current),
            "reference_rows": len(frames.reference), "columns": len(frames.drift_columns)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2,000 and 5,000 households against 20,000")
    ap.add_argument("--task", default="poverty", choices=("poverty", "relapse"))
    ap.add_argument("--households", type=int, default=2000, help="households of the synthetic panel")
    args = ap.parse_args()
    sizes, ref_rows = ([2_000, 5_000], 20_000) if args.quick else ([10_000, 100_000], 100_000)

    if OUT.exists():
        shutil.rmtree(OUT)
    data = OUT / "data"
    data.mkdir(parents=True)
    os.environ["TPAS_DATA_DIR"] = str(data)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("TPAS_DATABASE_URL", None)
    import logging

    logging.getLogger("tpas.monitoring").setLevel(logging.ERROR)   # no alert lines: the run's status is printed
    from features.sources.synthetic import generate_panel
    from monitoring.run import monitor_task
    from tpas.config import load_params

    t = time.perf_counter()
    import evidently.metrics  # noqa: F401  (imported once per process; paid by a cold `tpas monitor run` too)
    import evidently.presets  # noqa: F401
    import evidently.ui.workspace  # noqa: F401
    import mlflow  # noqa: F401
    imports = time.perf_counter() - t
    params = load_params(ROOT / "params.yaml")
    # the whole (resampled) snapshot is the reference here, whatever its years
    params = params.model_copy(update={"monitoring": params.monitoring.model_copy(update={"reference_years": 50})})
    t0 = time.perf_counter()
    panel = data / "panel"
    generate_panel(panel, households=args.households, years=list(range(2016, 2026)), seed=2016, params=params,
                   progress=False)
    setup_model(args.task, ref_rows, params, panel, data)
    rows = base_rows(args.task, params, panel)
    print(f"set-up: panel of {args.households:,} households, {args.task} model with a {ref_rows:,}-row reference, "
          f"{len(rows):,} scored households of the next wave to copy ({time.perf_counter() - t0:.0f} s); "
          f"importing Evidently and MLflow took {imports:.1f} s (once per process, not in the figures below)")
    warm = fill_store(f"sqlite:///{OUT / 'store-warm.db'}", rows, 200, datetime.now(timezone.utc))
    with warnings.catch_warnings():   # first use of every code path (lazy imports, Evidently's registries)
        warnings.simplefilter("ignore")
        monitor_task(args.task, datetime.now(timezone.utc) - timedelta(hours=1),
                     datetime.now(timezone.utc) + timedelta(minutes=1), params, warm, out_dir=OUT / "warm",
                     workspace=False)
    warm.close()

    results = []
    for n in sizes:
        when = datetime.now(timezone.utc) - timedelta(minutes=5)
        t = time.perf_counter()
        store = fill_store(f"sqlite:///{OUT / f'store-{n}.db'}", rows, n, when)
        fill = time.perf_counter() - t
        since, until = when - timedelta(minutes=1), datetime.now(timezone.utc) + timedelta(minutes=1)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = monitor_task(args.task, since, until, params, store, out_dir=OUT / "reports")
        total = time.perf_counter() - t
        alone = evidently_alone(args.task, store, since, until, params)
        store.close()
        sec = run.summary["seconds"]
        in_run = sec.get("evidently_run", 0.0) + sec.get("save_html", 0.0)
        res = {"current": n, "reference": ref_rows, "task": args.task, "columns": alone["columns"],
               "monitoring_run_s": round(total, 2), "evidently_report_run_s": round(alone["report_run"], 2),
               "evidently_save_html_s": round(alone["save_html"], 2),
               "evidently_in_run_s": round(in_run, 2), "overhead_s": round(total - in_run, 2),
               "breakdown_s": sec, "status": run.status, "store_fill_s": round(fill, 1)}
        results.append(res)
        print(f"current {n:>7,} vs reference {ref_rows:,}: monitoring run {total:6.1f} s, of which Evidently "
              f"{in_run:5.1f} s and the project's own work {res['overhead_s']:5.1f} s "
              f"({', '.join(f'{k} {v:.1f}' for k, v in sec.items() if k not in ('evidently_run', 'save_html'))}) | "
              f"Evidently's report alone on the same frames {alone['report_run']:6.1f} s + HTML {alone['save_html']:4.1f} s")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    print(f"peak memory {peak:.2f} GB")
    (OUT / "results.json").write_text(json.dumps({"results": results, "peak_gb": round(peak, 2),
                                                  "imports_s": round(imports, 2)}, indent=2))
    print(f"results: {OUT / 'results.json'}")


if __name__ == "__main__":
    main()

"""Batch-scoring benchmark: `tpas score-batch` on a local Dask cluster vs single-process `tpas predict`.

For a synthetic panel of N households x 2 waves (2024-2025; generated into
``bench/out/batch-panel-N`` once, then reused), in the same run:

1. single-process `training.commands.predict` (what `tpas predict` runs), in a child process so
   that its peak memory (``ru_maxrss``) is its own: seconds, households/s, peak RSS;
2. `serving.batch.score_batch` on a `LocalCluster` of 2 single-threaded worker processes:
   cluster start, plan / stage / score seconds, households/s, peak RSS of each worker (sampled
   every 0.2 s with psutil, and the workers' own ``ru_maxrss``) and of this (client) process;

then checks that both give the same risk, score and tier for every household, and writes
the figures to ``bench/out/batch-bench-N.json``.

Models: the champion of ``--task`` in ``--data-dir`` (default ``bench/out/batch-data``, so the
bench runs alone); when that folder has none, a LightGBM is trained there on a 3,000-household
panel and promoted (gate relaxed) first. ``--data-dir data`` uses the demo's champions.

    .venv/bin/python bench/batch_bench.py --quick          # 20,000 households, about a minute
    .venv/bin/python bench/batch_bench.py                  # 1,000,000 households (quiet machine; ~15 GB for predict)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

YEARS = [2024, 2025]
TRAIN_HOUSEHOLDS = 3000


def log(msg: str) -> None:
    print(msg, flush=True)


def panel_for(n: int, params) -> Path:
    """The cached N-household panel (2 waves), generated when absent."""
    from features.sources.synthetic import generate_panel

    path = OUT / f"batch-panel-{n}"
    if (path / "manifest.json").exists():
        return path
    log(f"generating {n:,} households x {len(YEARS)} waves into {path} (once; cached) ...")
    t0 = time.perf_counter()
    generate_panel(path, households=n, years=YEARS, seed=11, params=params, progress=False)
    log(f"  generated in {time.perf_counter() - t0:.0f} s")
    return path


def champion(task: str, params) -> str:
    """The fixed URI of the task's champion in the data folder, training one there first if needed."""
    from features.build import build_training_set
    from features.sources.synthetic import generate_panel
    from training import commands, tracking

    version = tracking.resolve_version(task)
    if version is None:
        data_dir = Path(os.environ["TPAS_DATA_DIR"])
        log(f"no {task} champion in {data_dir}: training a LightGBM on {TRAIN_HOUSEHOLDS:,} households there ...")
        panel = data_dir / "train-panel"
        if not (panel / "manifest.json").exists():
            generate_panel(panel, households=TRAIN_HOUSEHOLDS, years=list(range(2016, 2026)), seed=2016,
                           params=params, progress=False)
        ts = data_dir / "training" / task
        build_training_set(task, panel, ts, params)
        uri = commands.train(task, ts, "lightgbm", params)[-1].split()[-1]
        version = uri.rsplit("/", 1)[1]
        relaxed = params.model_copy(update={"gate": {t: g.model_copy(update={"min_auc": 0.5, "max_ece": 1.0})
                                                     for t, g in params.gate.items()}})
        tracking.promote(task, version, relaxed)
    return f"models:/{tracking.model_name(task)}/{version}"


PREDICT_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from training.commands import predict
from features.dask_build import _import_pipeline
import mlflow, training.tracking, features.sources.registry  # imports are not timed (as the workers' warm-up)
warm = _import_pipeline()
t0 = time.perf_counter()
lines = predict(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
print(json.dumps({"seconds": time.perf_counter() - t0, "import_s": warm,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "lines": lines}))
"""


def run_predict(task: str, uri: str, panel: Path, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", PREDICT_CHILD, task, uri, str(panel), str(out)], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"single-process predict failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


class RssSampler(threading.Thread):
    """Peak RSS of some local processes, sampled every `interval` seconds."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self.procs = {k: psutil.Process(p) for k, p in pids.items()}
        self.peak = {k: 0 for k in pids}
        self.interval = interval
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            for k, p in self.procs.items():
                try:
                    self.peak[k] = max(self.peak[k], p.memory_info().rss)
                except Exception:  # a worker restarted: keep what was seen
                    pass
            self.stop_event.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self.stop_event.set()
        self.join()
        return {k: v / 2**20 for k, v in self.peak.items()}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_batch(task: str, uri: str, panel: Path, out: Path, workers: int, partition_rows: int, runs: int) -> dict:
    from distributed import Client, LocalCluster

    from serving.batch import score_batch

    t0 = time.perf_counter()
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        cluster_s = time.perf_counter() - t0
        pids = client.run(os.getpid)
        sampler = RssSampler({**{f"worker {i + 1}": pid for i, pid in enumerate(pids.values())},
                              "client": os.getpid()})
        sampler.start()
        each = []
        for i in range(runs):  # run 2+: the same job again on the now warm workers (a long-lived cluster)
            t1 = time.perf_counter()
            lines = score_batch(task, str(panel), out, client=client, model_uri=uri, partition_rows=partition_rows,
                                overwrite=True, progress=False, echo=log if i == 0 else (lambda s: None))
            seconds = time.perf_counter() - t1
            manifest = json.loads((out / "manifest.json").read_text())
            timings = manifest["runs"][-1]["timings"]
            parts = manifest["partitions_done"].values()
            each.append({"seconds": seconds, "seconds_after_warm_up": seconds - timings["worker_warm_up_s"],
                         "timings": timings, "lines": lines,
                         "partition_seconds_max": max(e["seconds"]["total"] for e in parts),
                         "partition_seconds_sum": sum(e["seconds"]["total"] for e in parts)})
        sampled = sampler.stop()
        maxrss = client.run(_maxrss_mb)
    return {"runs": each, "cluster_start_s": cluster_s, "partitions": manifest["partitions_total"],
            "households": manifest["households_scored"], "peak_rss_mb_sampled": sampled,
            "peak_rss_mb_workers": sorted(maxrss.values()),
            "partition_waves_max": max(e["waves_read"] for e in parts)}


def identical(a_path: Path, b_out: Path) -> tuple[bool, int]:
    import pandas as pd

    cols = ["household_id", "year", "risk", "score", "tier", "main_causes_en"]
    a = pd.read_parquet(a_path, columns=cols).sort_values("household_id").reset_index(drop=True)
    b = pd.concat([pd.read_parquet(f, columns=cols) for f in sorted((b_out / "scores").glob("part-*.parquet"))])
    b = b.sort_values("household_id").reset_index(drop=True)
    return bool(len(a) == len(b) and b["household_id"].is_unique and a.equals(b)), len(a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--households", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="20,000 households (about a minute)")
    ap.add_argument("--task", default="poverty", choices=["poverty", "relapse"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partition-rows", type=int, default=None,
                    help="household waves per partition (default 50,000; --quick 5,000)")
    ap.add_argument("--data-dir", default=str(OUT / "batch-data"),
                    help="data folder with the champion (trained there when absent)")
    ap.add_argument("--skip-predict", action="store_true", help="only the Dask run")
    ap.add_argument("--runs", type=int, default=None,
                    help="Dask runs on the same cluster (default: 2 with --quick, where the first run's "
                         "one-time costs weigh, else 1)")
    args = ap.parse_args()
    n = 20_000 if args.quick else args.households
    partition_rows = args.partition_rows or (5_000 if args.quick else 50_000)
    runs = args.runs or (2 if args.quick else 1)
    os.environ["TPAS_DATA_DIR"] = str(Path(args.data_dir).resolve())
    os.environ.pop("MLFLOW_TRACKING_URI", None)

    from tpas.config import load_params
    from tpas.settings import PROJECT_ROOT

    params = load_params(PROJECT_ROOT / "params.yaml")
    OUT.mkdir(parents=True, exist_ok=True)
    panel = panel_for(n, params)
    uri = champion(args.task, params)
    log(f"model {uri}; panel {panel} ({n:,} households x {len(YEARS)} waves); {args.workers} workers; "
        f"{partition_rows:,} household waves per partition")

    result: dict = {"households": n, "task": args.task, "model": uri, "workers": args.workers,
                    "partition_rows": partition_rows, "cpus": os.cpu_count(),
                    "load_average_start": os.getloadavg()}
    pred_out = OUT / f"batch-predict-{n}.parquet"
    if not args.skip_predict:
        log("single-process predict ...")
        result["predict"] = p = run_predict(args.task, uri, panel, pred_out)
        log(f"  {p['seconds']:.1f} s, {n / p['seconds']:,.0f} households/s, peak RSS {p['peak_rss_mb']:,.0f} MB")
    log(f"score-batch on a local cluster of {args.workers} workers ...")
    batch_out = OUT / f"batch-out-{n}"
    result["batch"] = b = run_batch(args.task, uri, panel, batch_out, args.workers, partition_rows, runs)
    for i, r in enumerate(b["runs"]):
        t, warm = r["timings"], r["seconds_after_warm_up"]
        what = "first run" if i == 0 else f"run {i + 1}, warm workers"
        log(f"  {what}: {warm:.1f} s, {n / warm:,.0f} households/s (not counted: cluster start "
            f"{b['cluster_start_s']:.1f} s, worker imports {t['worker_warm_up_s']:.1f} s): model {t['model_s']:.1f} s, "
            f"plan {t['plan_s']:.1f} s, stage {t['stage_s']:.1f} s, score {t['score_s']:.1f} s; {b['partitions']} "
            f"partitions (largest {b['partition_waves_max']:,} waves, slowest {r['partition_seconds_max']:.1f} s)")
    peaks = ", ".join(f"{v:,.0f}" for v in b["peak_rss_mb_workers"])
    log(f"  peak RSS per worker {peaks} MB (sampled: " +
        ", ".join(f"{k} {v:,.0f}" for k, v in b["peak_rss_mb_sampled"].items()) + " MB)")
    best = min(r["seconds_after_warm_up"] for r in b["runs"])
    b["households_per_s_first"] = n / b["runs"][0]["seconds_after_warm_up"]
    b["households_per_s_best"] = n / best
    if not args.skip_predict:
        same, rows = identical(pred_out, batch_out)
        result["identical"] = same
        result["speedup_first"] = result["predict"]["seconds"] / b["runs"][0]["seconds_after_warm_up"]
        result["speedup_best"] = result["predict"]["seconds"] / best
        log(f"same risk, score, tier and causes for all {rows:,} households: {same}; batch vs single process: "
            f"{result['speedup_first']:.2f}x (first run), {result['speedup_best']:.2f}x (best run)")
    result["load_average_end"] = os.getloadavg()
    dest = OUT / f"batch-bench-{n}.json"
    dest.write_text(json.dumps(result, indent=2, default=str))
    log(f"figures -> {dest}")


if __name__ == "__main__":
    main()

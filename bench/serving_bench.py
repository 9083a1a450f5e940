"""Scoring-service benchmark: latency and throughput over HTTP beside in-process scoring.

Starts `tpas serve` on a loopback port (its own process), then, from this process, sends a
bounded load (a fixed number of requests at a fixed concurrency):

- single-household `/score` requests with explanations at concurrency 1 and 8: p50 / p99 latency;
- 100-household batches: explained households per second;

and scores the same households in this process through `serving.scoring.Scorer` (no HTTP,
no store), so the service's overhead shows as a ratio. The service runs with 1 and 2 worker
processes (`--workers`) and without the contribution cache (every household explained anew). Aims on 2 cores: p99 < 50 ms for one
household at concurrency 1; >= 2,000 explained households/s in batches.

Needs champion models in the data folder (`make demo`, or set TPAS_DATA_DIR). Run:

    .venv/bin/python bench/serving_bench.py [--requests 300] [--batches 30] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def payload(n: int, seed: int = 5) -> list[dict]:
    """`n` households of the demo panel (latest wave, with the earlier waves the relapse model reads)."""
    from features.sources.registry import load_registry
    from serving.payload import records_to_payload
    from tpas.settings import get_settings

    panel = get_settings().data_dir / "demo" / "panel"
    if not panel.exists():
        sys.exit(f"no demo panel at {panel}: run `make demo` first (or set TPAS_DATA_DIR)")
    records, _ = load_registry(panel)
    ids = records.households["household_id"].drop_duplicates().sample(frac=1, random_state=seed).head(n)
    # earlier waves as a registry sends them: the relapse model reads `features.history_years` of them
    from tpas.config import get_params

    history = get_params(str(get_settings().params_path)).features.history_years
    return records_to_payload(records.select_households(ids), max_previous=history)


def load(url: str, key: str, bodies: list[list[dict]], concurrency: int) -> tuple[list[float], float]:
    """Send every body once with `concurrency` workers; returns per-request latencies (s) and wall time.

    The load generator shares the 2 cores with the service, so it is kept lean, as wrk would be: the
    bodies are encoded to JSON before the clock starts, requests go out on keep-alive `http.client`
    connections, and an answer is read as its bytes and its status checked (the first answer of each
    run is parsed and its count of scored households checked). httpx, parsing ~530 KB answers in pure
    Python, cost 15 ms of CPU per 100-household request, taken from the service being measured.
    `LOAD_CPU` gets the generator's own CPU seconds per request.
    """
    import http.client
    import json
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    latencies: list[float] = []
    cpu: list[float] = []
    lock = threading.Lock()
    queue = [(i, json.dumps({"households": b}).encode()) for i, b in enumerate(bodies)]
    expected = {i: len(b) for i, b in enumerate(bodies)}
    errors: list[str] = []
    checked = threading.Event()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def worker() -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        c0 = time.thread_time()
        n = 0
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    i, body = queue.pop()
                t0 = time.perf_counter()
                conn.request("POST", "/score", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                dt = time.perf_counter() - t0
                n += 1
                with lock:
                    latencies.append(dt)
                    if resp.status != 200:
                        errors.append(f"{resp.status}: {data[:200]!r}")
                    elif not checked.is_set():
                        checked.set()
                        if json.loads(data)["scored"] != expected[i]:
                            errors.append(f"households[{i}]: not every household scored")
        finally:
            conn.close()
            with lock:
                cpu.append((time.thread_time() - c0, n))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        sys.exit(f"{len(errors)} failed requests, e.g. {errors[0]}")
    LOAD_CPU.append(sum(c for c, _ in cpu) / max(1, sum(n for _, n in cpu)))
    return latencies, wall


#: The load generator's CPU seconds per request, one figure per `load` call.
LOAD_CPU: list[float] = []


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=300, help="single-household requests per concurrency level")
    ap.add_argument("--batches", type=int, default=30, help="100-household batches")
    ap.add_argument("--workers", default="1,2", help="service worker processes to measure, comma-separated "
                                                      "(`tpas serve --workers`; default 1,2)")
    ap.add_argument("--store", help="inference-store URL to write to (default: a new SQLite file under bench/out; "
                                    "writes cost more in a store of millions of rows)")
    ap.add_argument("--quick", action="store_true", help="a short run to check the script (60 requests, 5 batches)")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.batches = 60, 5
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"inference store: {args.store or 'a new SQLite file (bench/out/serving-bench.db)'}")

    from serving.auth import create_key
    from serving.schemas import LenientHousehold
    from serving.scoring import Scorer, load_champions
    from serving.store import InferenceStore
    from pydantic import TypeAdapter

    n = max(args.requests, args.batches * 100)
    households = payload(n)
    singles = [[h] for h in households[:args.requests]]
    batches = [households[i * 100:(i + 1) * 100] for i in range(args.batches)]

    # A store of the bench's own, new each run: the bench's scores must not land in the data folder's inference
    # store (its risk lists and monitoring windows). Writes cost more in a store of millions of rows (README).
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    db = out / "serving-bench.db"
    if args.store is None:
        for f in out.glob("serving-bench.db*"):
            f.unlink()
    shutil.rmtree(out / "serving-bench-spool", ignore_errors=True)
    os.environ["TPAS_DATABASE_URL"] = args.store or f"sqlite:///{db}"
    store = InferenceStore(os.environ["TPAS_DATABASE_URL"], spool_dir=out / "serving-bench-spool")
    store.migrate()
    key = create_key(store, "registry", label="bench")[1]
    from serving.launch import ServerFailed, start_server, stop_server

    rows = []
    best_batch = 0.0
    for workers in [int(w) for w in args.workers.split(",")]:
        try:
            # the contribution cache off: every household is explained from scratch, however often the bench
            # sends it (a re-scored unchanged household would be cheaper: models_bench.py measures that)
            proc, url = start_server(out / f"serving-bench-server-{workers}.log", workers=workers,
                                     env={**os.environ, "TPAS_CONTRIBUTION_CACHE_ROWS": "0"})
        except ServerFailed as exc:
            sys.exit(f"{exc}\n(are champions registered? `make demo`)")
        tag = f"{workers} worker{'s' if workers > 1 else ''}"
        try:
            load(url, key, singles[:20] * workers, workers)  # warm up every worker
            load(url, key, batches[:2 * workers], workers)
            for conc in (1, 8):
                lat, wall = load(url, key, singles, conc)
                rows.append((f"/score 1 household, conc. {conc}, {tag}", pct(lat, 50), pct(lat, 99),
                             len(singles) / wall))
            for conc in sorted({1, 2, 2 * workers}):
                lat, wall = load(url, key, batches, conc)
                rate = 100 * len(batches) / wall
                best_batch = max(best_batch, rate)
                rows.append((f"/score 100 households, conc. {conc}, {tag}", pct(lat, 50), pct(lat, 99), rate))
            print(f"{tag}: load generator CPU per 100-household request {LOAD_CPU[-1] * 1000:.1f} ms", flush=True)
        finally:
            stop_server(proc)

    # the same households in this process, no HTTP and no store
    scorer = Scorer(load_champions(), cache_rows=0)  # no contribution cache, like the service above
    ta = TypeAdapter(list[LenientHousehold])
    scorer.score(ta.validate_python(singles[0]))
    single_ms = []
    for body in singles:
        t0 = time.perf_counter()
        scorer.score(ta.validate_python(body))
        single_ms.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for body in batches:
        scorer.score(ta.validate_python(body))
    batch_rate = 100 * len(batches) / (time.perf_counter() - t0)
    inproc = [("in process, 1 household", pct(single_ms, 50), pct(single_ms, 99), len(singles) / sum(single_ms)),
              ("in process, 100 households", float("nan"), float("nan"), batch_rate)]

    print(f"\n{'':48s} {'p50 ms':>8s} {'p99 ms':>8s} {'households/s':>13s}")
    for name, p50, p99, rate in rows + inproc:
        print(f"{name:48s} {p50:8.1f} {p99:8.1f} {rate:13,.0f}")
    print(f"\nservice overhead: single household p50 {rows[0][1] / inproc[0][1]:.2f}x in-process "
          f"({rows[0][0].split(', ', 1)[1]}); best batch rate {best_batch:,.0f} households/s = "
          f"{best_batch / inproc[1][3]:.2f}x one in-process scorer "
          f"(aims: p99 < 50 ms single, >= 2,000 households/s batched)")


if __name__ == "__main__":
    main()

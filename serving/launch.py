"""Start and stop `tpas serve` in its own process (used by the demo, the tests and the serving bench)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping


class ServerFailed(RuntimeError):
    """The service exited or did not become ready (the message ends with the tail of its log)."""


def serve_environment(workers: int | None, environ: Mapping[str, str]) -> tuple[int, dict[str, str]]:
    """The worker count and the environment `tpas serve` starts BentoML with.

    `workers` None: one per CPU core. The count reaches BentoML as ``services.tpas.workers`` in
    ``BENTOML_CONFIG_OPTIONS`` (merged over the service decorator's config; other options kept). With
    more than one worker, LightGBM (OpenMP) and the TreeSHAP kernels (numba) get one thread each: a
    second thread per worker only waits for a core the other worker holds (1,050 vs 1,830 households/s
    in 100-household batches on 2 cores, bench/serving_bench.py). An operator's own setting wins.
    """
    n = workers or os.cpu_count() or 1
    env = dict(environ)
    env["BENTOML_CONFIG_OPTIONS"] = " ".join(x for x in (env.get("BENTOML_CONFIG_OPTIONS", ""),
                                                          f"services.tpas.workers={n}") if x)
    if n > 1:
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("NUMBA_NUM_THREADS", "1")
    return n, env


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(log: Path, port: int | None = None, env: dict | None = None,
                 timeout_s: float = 180.0, workers: int | None = None) -> tuple[subprocess.Popen, str]:
    """`tpas serve` on 127.0.0.1:`port` (free one by default), output to `log`; waits for /readyz.

    `workers`: worker processes (`tpas serve --workers`; default one per CPU core)."""
    import httpx

    port = port or free_port()
    tpas = Path(sys.executable).with_name("tpas")
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        cmd = [str(tpas), "serve", "--port", str(port)] + (["--workers", str(workers)] if workers else [])
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise ServerFailed(f"tpas serve exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_server(proc)
            raise ServerFailed(f"tpas serve was not ready in {timeout_s:.0f} s:\n{_tail(log)}")
        time.sleep(0.5)


def stop_server(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM the server's process group, SIGKILL if it does not stop in time."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)


def _tail(log: Path, n: int = 3000) -> str:
    try:
        return Path(log).read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"

"""The scoring service in process: champions trained on the small panel, an ASGI test client, API keys."""

from __future__ import annotations

import pytest

from tests.conftest import _clear_caches


@pytest.fixture(scope="session")
def champions(training_sets, params, tpas_env):
    """LightGBM champions of both tasks in the session registry (gate relaxed: 1,200 households)."""
    from training import commands, tracking

    relaxed = params.model_copy(update={"gate": {t: g.model_copy(update={"min_auc": 0.5, "max_ece": 1.0})
                                                 for t, g in params.gate.items()}})
    versions = {}
    for task in ("poverty", "relapse"):
        uri = commands.train(task, training_sets[task], "lightgbm", params)[-1].split()[-1]
        versions[task] = uri.rsplit("/", 1)[1]
        tracking.promote(task, versions[task], relaxed)
    return versions


@pytest.fixture(scope="session")
def service_app(champions, tpas_env):
    """The BentoML service as an ASGI app (the same app `tpas serve` runs), started once."""
    from starlette.testclient import TestClient

    from serving.service import TPAS

    _clear_caches()
    client = TestClient(TPAS.to_asgi(), raise_server_exceptions=False)
    with client:
        yield client


@pytest.fixture(scope="session")
def keys(service_app):
    """One key per role; the official's is for county 430121 (the small panel's first county)."""
    from serving.auth import create_key
    from serving.service import _state

    store = _state["store"]
    return {
        "registry": create_key(store, "registry")[1],
        "analyst": create_key(store, "analyst")[1],
        "official": create_key(store, "official", region_code="430121")[1],
        "other_official": create_key(store, "official", region_code="439999")[1],
    }


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(champions, tpas_env, tmp_path_factory):
    """`tpas serve` in its own process on a free loopback port (the real BentoML server); yields its URL."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    tpas = Path(sys.executable).with_name("tpas")
    env = {**os.environ, "TPAS_DATA_DIR": str(tpas_env), "BENTOML_HOME": str(tpas_env / "bentoml")}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(tpas), "serve", "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"tpas serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"tpas serve did not become ready in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)

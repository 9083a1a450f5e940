"""The real server (`tpas serve`, BentoML in its own process): readiness, scoring over HTTP, Prometheus metrics."""

from __future__ import annotations

import re

import httpx

from serving.schemas import example
from tests.service.conftest import bearer


def test_served_over_http_with_metrics(live_server, keys, champions):
    assert httpx.get(f"{live_server}/healthz").status_code == 200
    assert httpx.get(f"{live_server}/readyz").status_code == 200
    r = httpx.post(f"{live_server}/score", json=example("score_request"), headers=bearer(keys["registry"]), timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["model_versions"]["poverty"] == f"tpas-poverty/{champions['poverty']}"
    assert httpx.post(f"{live_server}/score", json=example("score_request")).status_code == 401
    text = httpx.get(f"{live_server}/metrics").text
    assert 'tpas_households_scored_total{task="poverty"}' in text
    served = re.search(r'tpas_model_version_served\{model="tpas-poverty",[^}]*version="(\d+)"\} 1\.0', text)
    assert served and served.group(1) == champions["poverty"]
    assert "tpas_records_rejected" in text
    assert "request_duration_seconds_bucket" in text  # BentoML's latency histogram
    doc = httpx.get(f"{live_server}/docs.json").json()
    assert "ApiKey" in doc["components"]["securitySchemes"]


def test_serve_environment_sets_workers_and_one_thread_each():
    from serving.launch import serve_environment

    n, env = serve_environment(2, {"BENTOML_CONFIG_OPTIONS": "api_server.traffic.timeout=5", "PATH": "/bin"})
    assert n == 2 and env["PATH"] == "/bin"
    assert env["BENTOML_CONFIG_OPTIONS"] == "api_server.traffic.timeout=5 services.tpas.workers=2"
    assert env["OMP_NUM_THREADS"] == "1" and env["NUMBA_NUM_THREADS"] == "1"
    n, env = serve_environment(2, {"OMP_NUM_THREADS": "4"})
    assert env["OMP_NUM_THREADS"] == "4"  # the operator's setting wins
    n, env = serve_environment(1, {})
    assert n == 1 and env == {"BENTOML_CONFIG_OPTIONS": "services.tpas.workers=1"}  # one worker: threads left alone
    n, _ = serve_environment(None, {})
    assert n >= 1

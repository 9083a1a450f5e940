"""The scoring service in process: champions trained on the small panel, an ASGI test client, API keys."""

from __future__ import annotations

import pytest

from tests.conftest import _clear_caches, pin_champions


@pytest.fixture(scope="session")
def service_app(champions, tpas_env):
    """The BentoML service as an ASGI app (the same app `tpas serve` runs), started once."""
    from starlette.testclient import TestClient

    from serving.service import TPAS

    pin_champions(champions)
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


def score_in_batches(client, key: str, households: list[dict], size: int = 200) -> list[dict]:
    """POST the households to /score in batches (each must answer 200); returns every result."""
    out = []
    for i in range(0, len(households), size):
        r = client.post("/score", json={"households": households[i:i + size]}, headers=bearer(key))
        assert r.status_code == 200, r.text
        out += r.json()["results"]
    return out

"""Fixtures of the review-list tests.

- from tests/service/conftest.py: the LightGBM champions of the small panel and `tpas serve` running them
  in its own process (`live_server`). The in-process `service_app` is not reused: BentoML registers its
  Prometheus metrics once per process, so a second in-process app (tests/service starts its own) fails;
- from tests/serving/conftest.py: an empty SQLite file and the local PostgreSQL test database
  (`test_roster_store.py` runs the roster's queries on both).
"""

from __future__ import annotations

import pytest

from tests.serving.conftest import backend, db_url, pg_database, spool_dir  # noqa: F401


@pytest.fixture(scope="session")
def roster_store(live_server):
    """The inference store the live server writes (the session's SQLite file), opened in this process."""
    from serving.store import InferenceStore

    store = InferenceStore()
    store.migrate()  # done by the server at start; re-runnable
    yield store
    store.close()


@pytest.fixture(scope="session")
def keys(roster_store):
    """One key per role; the official's is for county 430121 (the small panel's first county)."""
    from serving.auth import create_key

    return {
        "registry": create_key(roster_store, "registry")[1],
        "analyst": create_key(roster_store, "analyst")[1],
        "official": create_key(roster_store, "official", region_code="430121")[1],
        "other_official": create_key(roster_store, "official", region_code="439999")[1],
    }


@pytest.fixture(scope="session")
def client(live_server):
    """An HTTP client of the live server."""
    import httpx

    with httpx.Client(base_url=live_server, timeout=120) as c:
        yield c

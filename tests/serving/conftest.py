"""Fixtures of the serving persistence tests: a store on SQLite and on the local PostgreSQL.

Every test using `db_url`/`store` runs twice: on a temporary SQLite file and on a database
created for this test session on the local PostgreSQL server (``tpas_test_<random>``, dropped at
the end; the schema is wiped before each test). The server is found at
``TPAS_TEST_POSTGRES_URL`` or ``postgresql+psycopg://postgres@127.0.0.1:5432/test`` (then the OS
user); if none answers, the PostgreSQL variants are skipped with the URLs tried.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import secrets
import sqlite3
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

#: application_name of the stores the tests create (so the admin connection can find their backends).
STORE_APP = "tpas-test-store"
TEST_KEY = b"0123456789abcdef0123456789abcdef"
T0 = datetime(2025, 6, 1, 8, 0, tzinfo=timezone.utc)


def _candidates() -> list[str]:
    env = os.environ.get("TPAS_TEST_POSTGRES_URL")
    if env:
        return [env]
    urls = ["postgresql+psycopg://postgres@127.0.0.1:5432/test"]
    user = getpass.getuser()
    if user != "postgres":
        urls.append(f"postgresql+psycopg://{user}@127.0.0.1:5432/test")
    return urls


def conninfo(url: str) -> str:
    """A psycopg conninfo of an SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class PgDatabase:
    """The session's PostgreSQL test database and a way to act on it as an administrator."""

    admin_url: str  # the server's maintenance database (where CREATE/DROP DATABASE run)
    url: str        # the test database
    name: str

    def admin(self, sql: str, params: tuple = (), on_test_db: bool = False) -> list[tuple]:
        import psycopg

        target = self.url if on_test_db else self.admin_url
        with psycopg.connect(conninfo(target), autocommit=True, connect_timeout=5,
                             application_name="tpas-test-admin") as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def terminate(self, application_name: str | None = STORE_APP) -> int:
        """pg_terminate_backend on the test database's backends (the stores' by default)."""
        sql = ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
               "AND pid <> pg_backend_pid()")
        params: tuple = (self.name,)
        if application_name is not None:
            sql += " AND application_name = %s"
            params += (application_name,)
        return len(self.admin(sql, params))

    @contextlib.contextmanager
    def outage(self):
        """The test database refuses connections and its current backends are killed."""
        self.admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        try:
            self.terminate(None)
            yield
        finally:
            self.admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def reset(self) -> None:
        self.terminate(None)
        self.admin("DROP SCHEMA public CASCADE; CREATE SCHEMA public", on_test_db=True)


@pytest.fixture(scope="session")
def pg_database():
    """A fresh PostgreSQL database for this test session (skips if the server is unreachable)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover
        pytest.skip("psycopg is not installed")
    errors = []
    admin_url = None
    for url in _candidates():
        try:
            with psycopg.connect(conninfo(url), autocommit=True, connect_timeout=3):
                admin_url = url
                break
        except psycopg.Error as exc:
            errors.append(f"{make_url(url).render_as_string(hide_password=True)} "
                          f"({str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__})")
    if admin_url is None:
        pytest.skip("PostgreSQL server not reachable: tried " + "; ".join(errors))
    name = f"tpas_test_{secrets.token_hex(4)}"
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    db = PgDatabase(admin_url, url, name)
    db.admin(f'CREATE DATABASE "{name}"')
    try:
        yield db
    finally:
        db.admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        db.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request) -> str:
    return request.param


@pytest.fixture
def db_url(backend, tmp_path, request) -> str:
    """An empty database of the backend (no tables yet)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'tpas.db'}"
    pg = request.getfixturevalue("pg_database")
    pg.reset()
    return pg.url


@pytest.fixture
def spool_dir(tmp_path) -> Path:
    return tmp_path / "spool"


def open_store(url: str, spool: Path, **kw):
    from serving.store import InferenceStore

    kw.setdefault("application_name", STORE_APP)
    return InferenceStore(url, spool_dir=spool, **kw)


@pytest.fixture
def store(db_url, spool_dir):
    """A migrated store on the backend, its spool in the test's folder."""
    s = open_store(db_url, spool_dir)
    s.migrate()
    yield s
    s.close()


@pytest.fixture(autouse=True)
def serving_env(tmp_path, monkeypatch):
    """An isolated data folder, no database URL or id key from the environment, fresh caches."""
    from serving import auth, pseudonym
    from tpas import settings

    monkeypatch.setenv("TPAS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("TPAS_DATABASE_URL", raising=False)
    monkeypatch.delenv("TPAS_ID_KEY", raising=False)
    settings.get_settings.cache_clear()
    pseudonym.clear_key_cache()
    auth.clear_key_cache()
    yield tmp_path / "data"
    settings.get_settings.cache_clear()
    pseudonym.clear_key_cache()
    auth.clear_key_cache()


# -- rows ------------------------------------------------------------------------------------------------------
def pid(household_id: str) -> str:
    from serving.pseudonym import pseudonymize

    return pseudonymize(household_id, key=TEST_KEY)


def score_row(household_id: str = "H1", *, village: str = "430521101201", task: str = "poverty", risk: float = 0.5,
              tier: str | None = None, minutes: float = 0, **kw) -> dict:
    """A score row as the service hands it to the store."""
    tier = tier or ("high" if risk >= 0.8 else "medium" if risk >= 0.6 else "low")
    row = {
        "record_id": uuid.uuid4().hex, "household_pid": pid(household_id), "region_code": village, "task": task,
        "year": 2025, "risk": risk, "score": round(100 * risk, 2), "tier": tier,
        "eligible": True if task == "relapse" else None,
        "features": {"members_ill": 1.0, "per_capita_land": 0.8, "head_schooling_years": None},
        "contributions": {"members_ill": 0.12, "per_capita_land": -0.03, "base": 0.2},
        "reasons": {"up": [{"indicator": "members_ill", "contribution": 0.12, "sentence_zh": "患病人数：1，风险上升0.12"}],
                    "down": [], "causes": {"illness": 0.12}},
        "main_causes_en": "main causes: illness (+0.12)", "main_causes_zh": "主要风险：疾病（+0.12）",
        "model_name": f"tpas-{task}", "model_version": "3", "scored_at": T0 + timedelta(minutes=minutes),
    }
    row.update(kw)
    return row


def batch(n: int, start: int = 0, **kw) -> list[dict]:
    return [score_row(f"H{start + i:05d}", risk=((start + i) % 97) / 97, **kw) for i in range(n)]


def record_id_counts(store, table: str = "scores") -> Counter:
    from serving.store import TABLES

    t = TABLES[table]
    with store.engine.connect() as conn:
        return Counter(conn.execute(sa.select(t.c.record_id)).scalars())


def assert_exactly_once(store, rows: list[dict], table: str = "scores") -> None:
    counts = record_id_counts(store, table)
    expected = {r["record_id"] for r in rows}
    missing = expected - set(counts)
    doubled = {k: v for k, v in counts.items() if v > 1}
    assert not missing, f"{len(missing)} records lost"
    assert not doubled, f"{len(doubled)} records stored more than once"
    assert set(counts) == expected


@contextlib.contextmanager
def sqlite_locked(url: str):
    """Another connection holds the SQLite database's write lock (writers time out: 'database is locked')."""
    conn = sqlite3.connect(make_url(url).database, timeout=1, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def wait_for(predicate, timeout_s: float = 10.0, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return predicate()

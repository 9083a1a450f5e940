"""Database outages: nothing is lost (batches spool to disk), nothing is doubled on replay.

On PostgreSQL the outage is real: the store's backends are killed with ``pg_terminate_backend``
from an administrator connection, between batches and in the middle of one, and the database
refuses connections (``ALLOW_CONNECTIONS false``) while batches keep coming. On SQLite another
connection holds the write lock. Both also face a store pointed at an address where no database
answers (a closed port, a path that cannot be a database file).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import threading
import time

import pytest
from sqlalchemy import exc as sa_exc

from serving.store import StoreResult
from tests.serving.conftest import (STORE_APP, assert_exactly_once, batch, open_store, record_id_counts, sqlite_locked,
                                    wait_for)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unreachable_url(backend: str, tmp_path) -> str:
    if backend == "sqlite":
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        return f"sqlite:///{blocker / 'tpas.db'}"
    return f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/tpas"


@pytest.fixture
def outage(backend, db_url, request):
    """A context manager: the store's database is unavailable inside it."""
    if backend == "sqlite":
        return lambda: sqlite_locked(db_url)
    return request.getfixturevalue("pg_database").outage


@pytest.fixture
def quick_store(db_url, spool_dir):
    """A migrated store that gives up quickly on a locked SQLite file."""
    s = open_store(db_url, spool_dir, connect_timeout_s=0.2)
    s.migrate()
    yield s
    s.close()


# -- a store pointed at nothing ---------------------------------------------------------------------------------------
def test_unreachable_database_spools_then_replays(backend, db_url, spool_dir, tmp_path):
    down = open_store(_unreachable_url(backend, tmp_path), spool_dir, connect_timeout_s=1)
    sent = []
    try:
        assert down.healthy() is False
        for i in range(3):  # scoring goes on during the outage
            rows = batch(40, start=40 * i)
            sent += rows
            assert down.record_scores(rows) == StoreResult(written=0, spooled=40)
        assert down.flush_spool() == 0  # still down: nothing replayed, nothing lost
    finally:
        down.close()
    files = list(spool_dir.iterdir())
    batches = [p for p in files if p.suffix == ".jsonl"]
    assert len(batches) == 3 and not [p for p in files if p.name.endswith(".tmp")]
    for p in batches:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        lines = p.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 40 and all(json.loads(line)["household_pid"] for line in lines)

    up = open_store(db_url, spool_dir)  # the database is back (another process, same spool)
    try:
        up.migrate()
        assert up.spooled() == 120
        assert up.flush_spool() == 120
        assert up.spooled() == 0 and up.flush_spool() == 0
        assert_exactly_once(up, sent)
        rows, total = up.latest_scores("poverty", page_size=5)
        assert total == 120 and rows[0]["reasons"]["causes"] == {"illness": 0.12}
        assert rows[0]["scored_at"].tzinfo is not None
    finally:
        up.close()


def test_outcomes_spool_too(backend, db_url, spool_dir, tmp_path):
    import uuid
    from datetime import date

    from tests.serving.conftest import pid

    rows = [{"record_id": uuid.uuid4().hex, "household_pid": pid(f"H{i}"), "task": "relapse",
             "outcome": "relapsed" if i % 2 else "not_relapsed", "observed_on": date(2025, 12, 1)} for i in range(5)]
    with open_store(_unreachable_url(backend, tmp_path), spool_dir, connect_timeout_s=1) as down:
        assert down.record_outcomes(rows) == StoreResult(spooled=5)
    with open_store(db_url, spool_dir) as up:
        up.migrate()
        assert up.flush_spool() == 5
        assert_exactly_once(up, rows, "outcomes")
        assert {r["observed_on"] for r in up.list_outcomes()} == {date(2025, 12, 1)}


# -- the database goes away under a running store ----------------------------------------------------------------------
def test_outage_mid_run_with_the_flusher_thread(quick_store, outage):
    store = quick_store
    sent = batch(30)
    assert store.record_scores(sent).written == 30
    store.start_flusher(interval_s=0.1)
    try:
        with outage():
            for i in range(1, 4):
                rows = batch(30, start=30 * i)
                sent += rows
                result = store.record_scores(rows)
                assert result == StoreResult(written=0, spooled=30)
            assert store.spooled() == 90
        # back: the flusher replays without anyone asking
        assert wait_for(lambda: store.spooled() == 0), f"{store.spooled()} rows still spooled"
        more = batch(10, start=1000)
        sent += more
        assert store.record_scores(more).written == 10
    finally:
        store.stop_flusher()
    assert_exactly_once(store, sent)


def test_a_write_after_the_outage_replays_the_spool(quick_store, outage):
    store = quick_store
    with outage():
        first = batch(25)
        assert store.record_scores(first).spooled == 25
    second = batch(25, start=25)
    assert store.record_scores(second) == StoreResult(written=25)  # ... and replays the spool behind it
    assert store.spooled() == 0
    assert_exactly_once(store, first + second)


@pytest.fixture
def pg_store(pg_database, spool_dir):
    pg_database.reset()
    s = open_store(pg_database.url, spool_dir)
    s.migrate()
    yield s
    s.close()


@pytest.mark.postgres
def test_backends_killed_between_batches(pg_store, pg_database):
    store = pg_store
    sent = []
    for i in range(4):
        rows = batch(50, start=50 * i)
        sent += rows
        assert store.record_scores(rows).written == 50
        assert pg_database.terminate() >= 1  # the pooled connection dies; pre-ping reconnects
    assert store.healthy()
    assert store.spooled() == 0
    assert_exactly_once(store, sent)


@pytest.mark.postgres
def test_backend_killed_during_a_batch(pg_store, pg_database):
    """The store's INSERT waits on a lock; its backend is terminated mid-statement; the batch spools."""
    import psycopg

    from tests.serving.conftest import conninfo

    store = pg_store
    first = batch(20)
    assert store.record_scores(first).written == 20
    victim = batch(200, start=20)
    result: dict = {}
    with psycopg.connect(conninfo(pg_database.url), application_name="tpas-test-locker") as locker:
        locker.execute("LOCK TABLE scores IN ACCESS EXCLUSIVE MODE")
        worker = threading.Thread(target=lambda: result.update(r=store.record_scores(victim)))
        worker.start()
        waiting = wait_for(lambda: pg_database.admin(
            "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND application_name = %s "
            "AND wait_event_type = 'Lock'", (pg_database.name, STORE_APP)), timeout_s=10)
        assert waiting, "the store's INSERT never reached the lock"
        assert pg_database.terminate() == 1
        worker.join(15)
        locker.rollback()
    assert not worker.is_alive()
    assert result["r"] == StoreResult(written=0, spooled=200)
    assert store.spooled() == 200
    after = batch(20, start=500)
    assert store.record_scores(after).written == 20  # reconnects, then replays the spool
    assert store.spooled() == 0
    assert_exactly_once(store, first + victim + after)


# -- replays that meet rows already written ----------------------------------------------------------------------------
def test_commit_went_through_but_the_answer_was_lost(store, monkeypatch):
    """A batch is committed, then the connection drops before the store hears back: it spools
    rows that are already in the database; the replay must not double them."""
    real_insert = store._insert
    calls = []

    def insert_then_drop(kind, rows):
        calls.append(len(rows))
        written = real_insert(kind, rows)
        if len(calls) == 1:
            raise sa_exc.OperationalError("COMMIT", {}, ConnectionResetError("server closed the connection"))
        return written

    monkeypatch.setattr(store, "_insert", insert_then_drop)
    lost_answer = batch(30)
    assert store.record_scores(lost_answer) == StoreResult(spooled=30)
    assert sum(record_id_counts(store).values()) == 30 and store.spooled() == 30
    # a partly new batch: half of it was written before, half not -- spooled whole after a failure
    overlap = lost_answer[:15] + batch(15, start=100)
    monkeypatch.setattr(store, "_insert", _failing)
    assert store.record_scores(overlap) == StoreResult(spooled=30)
    monkeypatch.setattr(store, "_insert", real_insert)
    assert store.flush_spool() == 60
    assert store.spooled() == 0
    assert_exactly_once(store, lost_answer + overlap)


def _failing(kind, rows):
    raise sa_exc.OperationalError("INSERT", {}, ConnectionRefusedError("connection refused"))


def test_crash_between_commit_and_delete_replays_harmlessly(store, monkeypatch):
    """The replay committed but the process died before deleting the file: the file is replayed again."""
    real_insert = store._insert
    monkeypatch.setattr(store, "_insert", _failing)
    rows = batch(40)
    store.record_scores(rows)
    monkeypatch.setattr(store, "_insert", real_insert)
    [path] = store.spool.files()
    keep = path.with_name("copy.bak")
    shutil.copy(path, keep)
    assert store.flush_spool() == 40
    os.replace(keep, path)  # "the delete never happened"
    assert store.spooled() == 40
    assert store.flush_spool() == 40
    assert store.spooled() == 0
    assert_exactly_once(store, rows)


def test_a_refused_batch_stays_and_a_broken_file_is_set_aside(store, monkeypatch, spool_dir):
    good = batch(10)
    refused = batch(10, start=10)
    real_insert = store._insert
    monkeypatch.setattr(store, "_insert", _failing)
    store.record_scores(refused)
    store.record_scores(good)
    refused_file, good_file = store.spool.files()
    (spool_dir / "20000101T000000000000Z-scores-1-dead.jsonl").write_text('{"record_id": "x"\n')  # torn by hand

    def refuse_first(kind, rows):
        if rows[0]["record_id"] == refused[0]["record_id"]:
            raise sa_exc.IntegrityError("INSERT", {}, ValueError("check constraint"))
        return real_insert(kind, rows)

    monkeypatch.setattr(store, "_insert", refuse_first)
    assert store.flush_spool() == 10  # the good batch goes; the refused one waits; the torn one is moved
    assert store.spool.files() == [refused_file] and store.spooled() == 10
    assert (spool_dir / "bad" / "20000101T000000000000Z-scores-1-dead.jsonl").exists()
    monkeypatch.setattr(store, "_insert", real_insert)
    assert store.flush_spool() == 10
    assert_exactly_once(store, good + refused)


def test_concurrent_writers_and_flushers_during_recovery(quick_store, outage):
    """Several request threads write while the database comes back and replays run: still exactly once."""
    store = quick_store
    sent: list[dict] = []
    lock = threading.Lock()
    with outage():
        for i in range(4):
            rows = batch(20, start=20 * i)
            sent += rows
            store.record_scores(rows)
    assert store.spooled() == 80
    store.start_flusher(interval_s=0.05)

    def writer(n: int) -> None:
        for j in range(5):
            rows = batch(10, start=10_000 + 100 * n + 10 * j)
            with lock:
                sent.extend(rows)
            store.record_scores(rows)
            store.flush_spool()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert wait_for(lambda: store.spooled() == 0)
    finally:
        store.stop_flusher()
    assert_exactly_once(store, sent)


def test_stop_flusher_is_prompt(store):
    store.start_flusher(interval_s=60)
    started = time.monotonic()
    store.stop_flusher()
    assert time.monotonic() - started < 2
    assert store._flusher is None

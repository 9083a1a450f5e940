"""The inference store on SQLite and PostgreSQL: schema, round trips, the risk-list queries."""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from serving.store import InferenceStore, InvalidRow, StoreResult, metadata
from tests.serving.conftest import T0, open_store, pid, record_id_counts, score_row

TABLES = {"scores", "outcomes", "api_keys"}


# -- schema ------------------------------------------------------------------------------------------------------
def test_migrations_create_the_schema_from_empty_and_rerun(db_url, spool_dir, tmp_path, monkeypatch):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    monkeypatch.chdir(tmp_path)  # script_location comes from the package, not the working directory
    store = open_store(db_url, spool_dir)
    try:
        assert not TABLES & set(sa.inspect(store.engine).get_table_names())
        assert store.current_revision() is None
        store.migrate()
        store.migrate()  # re-runnable
        assert store.current_revision() == "0002"
        insp = sa.inspect(store.engine)
        assert TABLES <= set(insp.get_table_names())
        assert {"ix_scores_household_task_time", "ix_scores_task_region_risk"} <= {
            ix["name"] for ix in insp.get_indexes("scores")}
        uniques = {tuple(u["column_names"]) for u in insp.get_unique_constraints("scores")}
        assert ("record_id",) in uniques
        with store.engine.connect() as conn:  # the migration builds exactly what the code declares
            assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata) == []
        store.downgrade("base")
        assert not TABLES & set(sa.inspect(store.engine).get_table_names())
        store.migrate()
        assert store.record_scores([score_row()]).written == 1
    finally:
        store.close()


def test_migrate_unreachable_database_is_a_clear_error(tmp_path):
    from serving.store import StoreUnavailable

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store = InferenceStore(f"sqlite:///{blocker / 'x.db'}", spool_dir=tmp_path / "spool")
    with pytest.raises(StoreUnavailable, match="cannot migrate the inference store at sqlite"):
        store.migrate()
    assert store.healthy() is False


def test_healthy(store):
    assert store.healthy() is True


# -- round trip --------------------------------------------------------------------------------------------------
def test_record_and_read_round_trip_with_json_columns(store):
    row = score_row("H1", task="relapse", risk=0.83, eligible=np.bool_(True),
                    features={"members_ill": np.float32(2.0), "land": float("nan"), "years_poor": np.int64(3)},
                    contributions={"members_ill": np.float64(0.21), "base": 0.07})
    result = store.record_scores([row])
    assert result == StoreResult(written=1, spooled=0, duplicates=0)
    [got] = store.household_latest(row["household_pid"])
    assert got["record_id"] == row["record_id"]
    assert got["task"] == "relapse" and got["tier"] == "high" and got["eligible"] is True
    assert got["risk"] == pytest.approx(0.83) and got["score"] == pytest.approx(83.0)
    assert got["features"] == {"members_ill": 2.0, "land": None, "years_poor": 3}  # NaN -> null
    assert got["contributions"] == {"members_ill": 0.21, "base": 0.07}
    assert got["reasons"] == row["reasons"]
    assert got["reasons"]["up"][0]["sentence_zh"] == "患病人数：1，风险上升0.12"
    assert got["main_causes_zh"] == "主要风险：疾病（+0.12）"
    assert got["model_name"] == "tpas-relapse" and got["model_version"] == "3" and got["year"] == 2025
    assert got["scored_at"] == T0 and got["scored_at"].tzinfo is not None
    # replaying the same request stores nothing twice
    assert store.record_scores([row]) == StoreResult(written=0, spooled=0, duplicates=1)
    assert record_id_counts(store)[row["record_id"]] == 1


def test_scored_at_is_utc_whatever_the_input_zone(store):
    cst = timezone(timedelta(hours=8))
    row = score_row("H1", scored_at=datetime(2025, 6, 1, 16, 0, tzinfo=cst))
    store.record_scores([row])
    [got] = store.household_latest(row["household_pid"])
    assert got["scored_at"] == T0 and got["scored_at"].utcoffset() == timedelta(0)


def test_rows_are_checked_before_the_database(store):
    with pytest.raises(InvalidRow, match="household_pid must be a pseudonym"):
        store.record_scores([score_row(household_pid="HH-430521-0042")])
    with pytest.raises(InvalidRow, match="personal fields"):
        store.record_scores([{**score_row(), "head_name": "张三"}])
    with pytest.raises(InvalidRow, match="personal fields"):
        store.record_scores([{**score_row(), "household_id": "H1"}])
    with pytest.raises(InvalidRow, match="region_code"):
        store.record_scores([score_row(village="4305")])
    with pytest.raises(InvalidRow, match="risk must be between"):
        store.record_scores([score_row(risk=1.5)])
    with pytest.raises(InvalidRow, match="task must be one of"):
        store.record_scores([score_row(task="idb-level")])
    assert sum(record_id_counts(store).values()) == 0
    assert store.spooled() == 0


def test_personal_fields_inside_features_are_dropped(store):
    row = score_row("H1", features={"members_ill": 1.0, "id_card_no": "430521198001011234", "phone": "13800000000"})
    store.record_scores([row])
    [got] = store.household_latest(row["household_pid"])
    assert got["features"] == {"members_ill": 1.0}


# -- latest per household, regions, ranking, filters -----------------------------------------------------------
def test_latest_score_per_household_hides_older_ones(store):
    old = score_row("H1", risk=0.9, tier="high", minutes=0)
    new = score_row("H1", risk=0.3, tier="low", minutes=60)
    other = score_row("H2", risk=0.7, minutes=0)
    store.record_scores([new, other])
    store.record_scores([old])  # arrives late (e.g. from the spool): still not the latest
    rows, total = store.latest_scores("poverty")
    assert total == 2
    assert [r["record_id"] for r in rows] == [other["record_id"], new["record_id"]]
    # filters apply to the latest score: H1's old 'high' score does not make it a 'high' household
    rows, total = store.latest_scores("poverty", tier="high")
    assert (rows, total) == ([], 0)
    assert [r["record_id"] for r in store.household_latest(pid("H1"))] == [new["record_id"]]
    # list rows carry the reasons but not the feature values
    listed = store.latest_scores("poverty")[0][0]
    assert "features" not in listed and "contributions" not in listed and "reasons" in listed
    assert "features" in store.latest_scores("poverty", with_details=True)[0][0]


def test_same_time_ties_go_to_the_later_row(store):
    a = score_row("H1", risk=0.2, minutes=5)
    b = score_row("H1", risk=0.4, minutes=5)
    store.record_scores([a])
    store.record_scores([b])
    rows, total = store.latest_scores("poverty")
    assert total == 1 and rows[0]["record_id"] == b["record_id"]


def test_tasks_are_separate(store):
    p = score_row("H1", task="poverty", risk=0.2)
    r = score_row("H1", task="relapse", risk=0.9, eligible=True)
    store.record_scores([p, r])
    assert [x["record_id"] for x in store.latest_scores("relapse")[0]] == [r["record_id"]]
    assert [x["record_id"] for x in store.latest_scores("poverty")[0]] == [p["record_id"]]
    both = store.household_latest(pid("H1"))
    assert [x["task"] for x in both] == ["poverty", "relapse"]
    assert [x["task"] for x in store.household_latest(pid("H1"), task="relapse")] == ["relapse"]
    assert store.household_latest(pid("nobody")) == []


VILLAGES = {
    "a1": "430521101201",  # county 430521, township 430521101
    "a2": "430521101202",
    "a3": "430521102201",  # county 430521, another township
    "b1": "430522101201",  # the neighbouring county
    "c1": "440101001001",  # another province
}


@pytest.fixture
def regional(store):
    rows = []
    for i, (tag, village) in enumerate(VILLAGES.items()):
        for j in range(2):
            rows.append(score_row(f"{tag}-{j}", village=village, risk=round(0.1 + 0.08 * (2 * i + j), 2)))
    store.record_scores(rows)
    return store, {r["household_pid"]: r for r in rows}


def _villages(rows):
    return sorted({r["region_code"] for r in rows})


@pytest.mark.parametrize("prefix, expected", [
    ("", sorted(VILLAGES.values())),
    ("43", sorted(v for v in VILLAGES.values() if v.startswith("43"))),
    ("4305", sorted(v for v in VILLAGES.values() if v.startswith("4305"))),
    ("430521", ["430521101201", "430521101202", "430521102201"]),  # county: its villages, not 430522
    ("430521101", ["430521101201", "430521101202"]),               # township
    ("430521101202", ["430521101202"]),                            # village
    ("430529", []),
])
def test_region_prefix_filter(regional, prefix, expected):
    store, _ = regional
    rows, total = store.latest_scores("poverty", region_prefix=prefix, page_size=100)
    assert _villages(rows) == expected
    assert total == len(rows) == 2 * len(expected)


def test_ranking_paging_and_filters(regional):
    store, by_pid = regional
    rows, total = store.latest_scores("poverty", page_size=100)
    risks = [r["risk"] for r in rows]
    assert risks == sorted(risks, reverse=True) and total == 10
    pages = [store.latest_scores("poverty", page=p, page_size=4) for p in (1, 2, 3, 4)]
    assert [len(r) for r, _ in pages] == [4, 4, 2, 0]
    assert all(t == 10 for _, t in pages)
    assert [r["record_id"] for p, _ in pages for r in p] == [r["record_id"] for r in rows]
    # village filter, within a prefix and outside it
    rows, total = store.latest_scores("poverty", region_prefix="430521", village="430521101202")
    assert total == 2 and _villages(rows) == ["430521101202"]
    assert store.latest_scores("poverty", region_prefix="430521", village="430522101201") == ([], 0)
    # one household
    target = pid("b1-1")
    rows, total = store.latest_scores("poverty", household_pid=target)
    assert total == 1 and rows[0]["record_id"] == by_pid[target]["record_id"]
    # tier
    rows, _ = store.latest_scores("poverty", tier="high", page_size=100)
    assert rows and all(r["tier"] == "high" and r["risk"] >= 0.8 for r in rows)


@pytest.mark.parametrize("kwargs", [
    {"region_prefix": "43%"}, {"region_prefix": "4305211012011"}, {"village": "4305"}, {"page": 0},
    {"page_size": 0}, {"page_size": 5000},
])
def test_bad_query_arguments(store, kwargs):
    with pytest.raises(ValueError):
        store.latest_scores("poverty", **kwargs)


def test_scores_between(store):
    rows = [score_row(f"H{i}", minutes=10 * i) for i in range(5)]
    store.record_scores(rows)
    got = store.scores_between("poverty", since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=40))
    assert [r["record_id"] for r in got] == [r["record_id"] for r in rows[1:4]]
    assert got[0]["features"]["members_ill"] == 1.0


# -- outcomes ----------------------------------------------------------------------------------------------------
def test_outcomes(store):
    import uuid

    rows = [
        {"record_id": uuid.uuid4().hex, "household_pid": pid("H1"), "task": "relapse", "outcome": "relapsed",
         "observed_on": date(2025, 12, 31), "reporter_key_id": "abcdef012345"},
        {"record_id": uuid.uuid4().hex, "household_pid": pid("H2"), "task": "poverty", "outcome": "not_poor",
         "observed_on": "2025-11-30", "reported_at": T0},
    ]
    assert store.record_outcomes(rows) == StoreResult(written=2)
    assert store.record_outcomes(rows) == StoreResult(written=0, duplicates=2)
    got = store.list_outcomes()
    assert [g["record_id"] for g in got] == [rows[1]["record_id"], rows[0]["record_id"]]
    assert got[0]["observed_on"] == date(2025, 11, 30) and got[0]["reported_at"] == T0
    assert got[1]["reporter_key_id"] == "abcdef012345" and got[1]["reported_at"].tzinfo is not None
    assert [g["outcome"] for g in store.list_outcomes(task="relapse", household_pid=pid("H1"))] == ["relapsed"]
    with pytest.raises(InvalidRow, match="a poverty outcome is one of poor, not_poor"):
        store.record_outcomes([{**rows[0], "record_id": uuid.uuid4().hex, "task": "poverty"}])
    assert record_id_counts(store, "outcomes") == {r["record_id"]: 1 for r in rows}


# -- pseudonymity --------------------------------------------------------------------------------------------------
def test_raw_ids_never_reach_the_database(store, backend, db_url, pg_database_if_postgres):
    from serving.auth import create_key
    from serving.pseudonym import pseudonymize

    raw = "HH-430521-77731"
    row = score_row("x", household_pid=pseudonymize(raw))  # the key file in the test's data folder
    store.record_scores([row])
    store.record_outcomes([{"record_id": "o1" * 16, "household_pid": pseudonymize(raw), "task": "poverty",
                            "outcome": "poor", "observed_on": date(2025, 1, 1)}])
    _, secret_key = create_key(store, "registry", label="county registry")
    store.close()
    if backend == "sqlite":
        files = [p for p in Path(sa.engine.make_url(db_url).database).parent.iterdir() if p.is_file()]
        blob = b"".join(p.read_bytes() for p in files)
        assert pseudonymize(raw).encode() in blob
        assert raw.encode() not in blob and secret_key.encode() not in blob
        assert secret_key.split("_", 2)[2].encode() not in blob
    else:
        text = "\n".join(str(r) for t in ("scores", "outcomes", "api_keys") for r in pg_database_if_postgres.admin(
            f"SELECT row_to_json(t)::text FROM {t} t", on_test_db=True))
        assert pseudonymize(raw) in text
        assert raw not in text and secret_key.split("_", 2)[2] not in text


@pytest.fixture
def pg_database_if_postgres(backend, request):
    return request.getfixturevalue("pg_database") if backend == "postgres" else None


def test_json_sanitiser():
    from serving.store import jsonable

    assert jsonable({"a": np.float32(1.5), "b": math.inf, 3: [np.int64(2), None, float("nan")],
                     "d": date(2025, 1, 2)}) == {"a": 1.5, "b": None, "3": [2, None, None], "d": "2025-01-02"}
    with pytest.raises(TypeError):
        jsonable(object())


def test_json_columns_are_encoded_by_the_sanitiser_rules():
    import json

    from serving.store import encode_json, jsonable

    value = {"a": np.float64("nan"), "b": np.float32(1.5), "c": np.int64(3), "d": np.bool_(True), "e": -math.inf,
             "f": [np.array([1.0, np.nan])], 5: "x", "g": pd.NA, "h": Decimal("1.25"), "i": date(2020, 1, 2),
             "j": (1, 2), "k": np.float64(0.1) + 0.2, "z": "因病致贫"}
    text = encode_json(value)
    assert json.loads(text) == jsonable(value)
    assert "因病致贫" in text  # readable Chinese, not \\u escapes
    with pytest.raises(TypeError):
        encode_json({"x": object()})


def test_a_row_whose_json_cannot_be_encoded_is_refused_before_the_database(store):
    row = score_row()
    row["features"] = {"n_members": object()}
    with pytest.raises(InvalidRow, match=r"score row 0\.features"):
        store.record_scores([row])

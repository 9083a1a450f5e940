"""The roster's store queries on SQLite and PostgreSQL: latest of a wave as of a time, the exit window,
moved households, runs and their lists, the latest run covering a region. Hand-made rows, no models."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.serving.conftest import T0, open_store, pid, score_row

DAY, MONTH = timedelta(days=1), timedelta(days=30)
V1, V2 = "430121101201", "430122101201"  # two counties


def row(hid, village, task, risk, age, status="not_registered", year=2025, eligible=None):
    tier = {"poverty": ("impoverished", "likely_impoverished", "out_of_poverty"),
            "relapse": ("high_risk", "watch", "stable")}[task]
    tier = tier[0] if risk > .4 else tier[2] if risk < .2 else tier[1]
    return score_row(hid, village=village, task=task, risk=risk, tier=tier, year=year, registry_status=status,
                     eligible=(True if eligible is None else eligible) if task == "relapse" else None,
                     score=round(100 * (1 - risk), 1), scored_at=T0 - age)


ROWS = [
    row("A", V1, "poverty", .90, DAY),                                   # enrolment
    row("B", V1, "poverty", .36, DAY, "exited"),                          # enrolment (risk rule)
    row("C", V2, "poverty", .10, 5 * MONTH, "monitored"), row("C", V2, "poverty", .15, 3 * MONTH, "monitored"),
    row("C", V2, "poverty", .05, DAY, "monitored"),                       # exit
    row("D", V1, "poverty", .10, DAY, "monitored"), row("D", V1, "relapse", .50, DAY, "monitored"),  # relapse watch
    row("E", V1, "poverty", .90, DAY, None),                              # status unknown
    row("F", V1, "poverty", .10, 2 * DAY), row("F", V1, "poverty", .90, DAY, year=2024),  # 2025: low; 2024: high
    row("G", V1, "poverty", .90, 3 * DAY), row("G", V2, "poverty", .95, DAY),  # moved to county 2
    row("H", V1, "poverty", .10, DAY), row("H", V1, "poverty", .99, -DAY),      # a score after as_of: ignored
    row("R", V1, "relapse", .60, DAY, "exited", eligible=False),          # not eligible: no relapse watch
]


@pytest.fixture
def db_store(db_url, spool_dir):
    s = open_store(db_url, spool_dir)
    s.migrate()
    assert s.record_scores(ROWS).written == len(ROWS)
    yield s
    s.close()


def names(rows) -> list[str]:
    back = {pid(h): h for h in "ABCDEFGHR"}
    return [back[r["household_pid"]] for r in rows]


def test_lists_on_both_databases(db_store, tmp_path):
    from monitoring import roster
    from serving.store import review_lists, scores
    from tpas.config import RosterParams

    with db_store.engine.connect() as conn:
        before = [tuple(r) for r in conn.execute(sa.select(scores).order_by(scores.c.id))]
    run = roster.review(db_store, 2025, "", RosterParams(), out=tmp_path / "all", as_of=T0)
    assert names(run.lists["enrolment"]) == ["A", "B", "G"]  # county 1 by risk, then county 2
    assert [r["rank"] for r in run.lists["enrolment"]] == [1, 2, 1]
    assert [r["region_group"] for r in run.lists["enrolment"]] == ["430121", "430121", "430122"]
    assert names(run.lists["exit"]) == ["C"]
    ev = run.lists["exit"][0]["evidence"]
    assert ev["scores_in_window"] == 3 and ev["max_risk_in_window"] == pytest.approx(.15)
    assert ev["first_in_window"].startswith((T0 - 5 * MONTH).date().isoformat())
    assert names(run.lists["relapse_watch"]) == ["D"]
    assert run.status_unknown == 1 and run.households == 9  # A-H and R (a relapse score only)
    assert run.counts == {"enrolment": {"430121": 2, "430122": 1}, "exit": {"430121": 0, "430122": 1},
                          "relapse_watch": {"430121": 1, "430122": 0}}
    old = roster.select_lists(db_store, 2024, "", RosterParams(), as_of=T0)
    assert names(old.lists["enrolment"]) == ["F"]
    later = roster.select_lists(db_store, 2025, "430121", RosterParams(), as_of=T0 + 2 * DAY)
    assert "H" in names(later.lists["enrolment"]) and "G" not in names(later.lists["enrolment"])

    # stored; the latest run covering a region; pages in region and rank order
    county = roster.review(db_store, 2025, "430121", RosterParams(), out=tmp_path / "county", as_of=T0)
    assert db_store.latest_review_run("430121")["run_id"] == county.run_id
    assert db_store.latest_review_run("430121101201")["run_id"] == county.run_id
    assert db_store.latest_review_run("430122")["run_id"] == run.run_id
    assert db_store.latest_review_run("43")["run_id"] == run.run_id
    assert db_store.latest_review_run("43", year=2024) is None
    page1, total = db_store.review_list(run.run_id, "enrolment", "43", page=1, page_size=2)
    page2, _ = db_store.review_list(run.run_id, "enrolment", "43", page=2, page_size=2)
    assert total == 3 and names(page1 + page2) == ["A", "B", "G"]
    assert names(db_store.review_list(run.run_id, "enrolment", "430122")[0]) == ["G"]
    stored = db_store.review_list(county.run_id, "relapse_watch", "430121")[0][0]
    assert stored["reasons"]["causes"] == {"illness": 0.12} and stored["evidence"]["why_zh"]
    assert stored["relapse_risk"] == pytest.approx(.5) and stored["registry_status"] == "monitored"
    with db_store.engine.connect() as conn:
        after = [tuple(r) for r in conn.execute(sa.select(scores).order_by(scores.c.id))]
        n = conn.execute(sa.select(sa.func.count()).select_from(review_lists)).scalar_one()
    assert after == before  # the scores table is only read
    assert n == sum(run.totals.values()) + sum(county.totals.values())


def test_status_columns_round_trip_and_are_checked(db_store):
    from serving.store import InvalidRow

    got = {r["household_pid"]: r for r in db_store.household_latest(pid("C"))}
    assert got[pid("C")]["registry_status"] == "monitored"
    with pytest.raises(InvalidRow, match="poor_since_year must be an integer"):
        db_store.record_scores([score_row("X", poor_since_year="twenty")])
    with pytest.raises(InvalidRow, match="registry_status must be at most 32"):
        db_store.record_scores([score_row("X", registry_status="x" * 40)])
    old = score_row("Y")  # a row without the status (an older client, a spooled batch from before 0002)
    assert db_store.record_scores([old]).written == 1
    assert db_store.household_latest(pid("Y"))[0]["registry_status"] is None


def test_upgrade_from_0001_keeps_every_score(db_url, spool_dir):
    """A store with scores at revision 0001 upgrades in place: rows kept (status NULL), the record_id still
    unique, the long poverty tier now accepted (PostgreSQL refused it in VARCHAR(16))."""
    from serving.store import prepare_score, scores

    s = open_store(db_url, spool_dir)
    try:
        s.migrate("0001")
        old = [prepare_score(score_row(f"O{i}", minutes=i)) for i in range(3)]
        cols = [c for c in old[0] if c not in ("registry_status", "poor_since_year", "exit_year", "monitoring_group")]
        with s.engine.begin() as conn:
            at_0001 = sa.Table("scores", sa.MetaData(), *(c._copy() for c in scores.columns if c.name in cols))
            conn.execute(at_0001.insert(), [{c: r[c] for c in cols} for r in old])
        s.migrate()
        assert s.current_revision() == "0002"
        kept = {r["record_id"]: r for r in s.scores_between("poverty")}
        assert set(kept) == {r["record_id"] for r in old}
        assert all(r["registry_status"] is None and r["tier"] == "low" for r in kept.values())
        assert s.record_scores([score_row("O0", record_id=old[0]["record_id"])]).duplicates == 1  # still unique
        assert s.record_scores([score_row("L", tier="likely_impoverished", registry_status="exited")]).written == 1
        assert {ix["name"] for ix in sa.inspect(s.engine).get_indexes("scores")} >= {
            "ix_scores_household_task_time", "ix_scores_task_region_risk"}
        s.downgrade("0001")  # and back: the scores stay
        with s.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM scores")).scalar_one() == 4
    finally:
        s.close()
    assert scores.c.tier.type.length == 32

"""Review lists (`tpas roster review`): the rules, ranks, reasons, regions, CSV files, the database, the API, the CLI.

The store is filled by scoring the small panel through `tpas serve` (wave 2025, registry statuses as the
panel has them) and by a few made-up households of another province (52) with scores at chosen times, so
every branch of every rule is met. Expected lists are computed here from the raw ``scores`` rows, apart
from `monitoring.roster`.
"""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import sqlalchemy as sa

from tests.service.conftest import bearer, score_in_batches

YEAR = 2025
COUNTY = "430121"
FAKE_VILLAGE = "520101001001"   # a province no other test reads (its lists and risk lists stay untouched)
FAKE_VILLAGE_2 = "520102001001"
DAY = timedelta(days=1)
MONTH = timedelta(days=30)


# -- fixtures ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(roster_store):
    return roster_store


@pytest.fixture(scope="module")
def roster_params(tpas_env):
    from tpas.config import get_params
    from tpas.settings import get_settings

    return get_params(str(get_settings().params_path)).roster


@pytest.fixture(scope="module")
def scored(client, keys, panel_payload):
    """The small panel scored through /score (its latest wave, 2025)."""
    return score_in_batches(client, keys["registry"], panel_payload)


def _tier(task: str, risk: float) -> str:
    score = round(100 * (1 - risk), 1)
    labels = {"poverty": ("impoverished", "likely_impoverished", "out_of_poverty"),
              "relapse": ("high_risk", "watch", "stable")}[task]
    return labels[0] if score < 60 else labels[2] if score > 80 else labels[1]


@pytest.fixture(scope="module")
def fake(store, scored):
    """Made-up households in province 52 with scores at chosen times (inserted through record_scores).

    name -> (village, status, [(task, age, risk, eligible)]); the last entry of a task is the latest."""
    from serving.pseudonym import pseudonymize

    now = datetime.now(timezone.utc)
    template = {t: store.latest_scores(t, region_prefix="43", page_size=1, with_details=True,
                                       eligible=True if t == "relapse" else None)[0][0] for t in ("poverty", "relapse")}
    plan = {
        # exit review: enrolled, every poverty score of the last 6 months below 0.2, at least 3 of them
        "E1": (FAKE_VILLAGE, "monitored", [("poverty", 5 * MONTH, .10, None), ("poverty", 3 * MONTH, .08, None),
                                           ("poverty", MONTH, .05, None)]),
        "E2": (FAKE_VILLAGE, "registered_poor", [("poverty", 4 * MONTH, .15, None), ("poverty", 2 * MONTH, .12, None),
                                                 ("poverty", DAY, .19, None)]),
        "E3": (FAKE_VILLAGE, "monitored", [("poverty", 5 * MONTH, .10, None), ("poverty", 3 * MONTH, .35, None),
                                           ("poverty", MONTH, .05, None)]),           # one score too high
        "E4": (FAKE_VILLAGE, "monitored", [("poverty", 2 * MONTH, .05, None), ("poverty", MONTH, .05, None)]),  # 2
        "E5": (FAKE_VILLAGE, "monitored", [("poverty", 9 * MONTH, .05, None), ("poverty", 2 * MONTH, .05, None),
                                           ("poverty", MONTH, .05, None)]),           # one before the window
        "E6": (FAKE_VILLAGE, "exited", [("poverty", 5 * MONTH, .05, None), ("poverty", 3 * MONTH, .05, None),
                                        ("poverty", MONTH, .05, None)]),              # not enrolled
        "E7": (FAKE_VILLAGE_2, "monitored", [("poverty", 5 * MONTH, .10, None), ("poverty", 3 * MONTH, .11, None),
                                             ("poverty", 2 * DAY, .09, None)]),       # another county
        # enrolment review: predicted poor, not enrolled
        "N1": (FAKE_VILLAGE, "not_registered", [("poverty", 3 * MONTH, .10, None), ("poverty", DAY, .90, None)]),
        "N2": (FAKE_VILLAGE, "exited", [("poverty", DAY, .36, None)]),               # risk rule only (0.35)
        "N3": (FAKE_VILLAGE, "not_registered", [("poverty", DAY, .30, None)]),       # not high enough
        "N4": (FAKE_VILLAGE, "monitored", [("poverty", DAY, .90, None)]),            # already enrolled
        "N5": (FAKE_VILLAGE, "not_registered", [("poverty", DAY, .95, None), ("poverty", 3 * MONTH, .10, None)]),
        "U1": (FAKE_VILLAGE, None, [("poverty", DAY, .90, None)]),                   # no status stored
        # relapse watch: eligible, relapse tier high_risk or risk >= 0.25
        "R1": (FAKE_VILLAGE, "exited", [("poverty", DAY, .10, None), ("relapse", DAY, .50, True)]),
        "R2": (FAKE_VILLAGE, "exited", [("poverty", DAY, .10, None), ("relapse", 2 * DAY, .50, True),
                                        ("relapse", DAY, .90, False)]),               # no longer eligible
        "R3": (FAKE_VILLAGE, "exited", [("poverty", DAY, .10, None), ("relapse", DAY, .10, True)]),
        "R4": (FAKE_VILLAGE_2, "not_registered", [("relapse", DAY, .26, True)]),    # risk rule only, no poverty row
    }
    rows, pids = [], {}
    for name, (village, status, scores_) in plan.items():
        pid = pseudonymize(f"FAKE-{name}-{uuid.uuid4().hex[:6]}")
        pids[name] = pid
        for task, age, risk, eligible in scores_:
            t = template[task]
            rows.append({**{k: t[k] for k in ("features", "contributions", "reasons", "main_causes_en",
                                              "main_causes_zh", "model_name", "model_version")},
                         "record_id": uuid.uuid4().hex, "household_pid": pid, "region_code": village, "task": task,
                         "year": YEAR, "risk": risk, "score": round(100 * (1 - risk), 1), "tier": _tier(task, risk),
                         "eligible": eligible, "scored_at": now - age, "registry_status": status,
                         "monitoring_group": "unstable_exited" if status == "monitored" else None})
    assert store.record_scores(rows).written == len(rows)
    return pids


@pytest.fixture(scope="module")
def as_of(fake):
    return datetime.now(timezone.utc)


# -- the expected lists, from the raw rows -----------------------------------------------------------------------------
def all_scores(store) -> list[dict]:
    from serving.store import scores

    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(scores).order_by(scores.c.id))]


def latest(rows, task, as_of, prefix=""):
    best = {}
    for r in rows:
        if r["task"] == task and r["year"] == YEAR and r["scored_at"] <= as_of:
            b = best.get(r["household_pid"])
            if b is None or (r["scored_at"], r["id"]) > (b["scored_at"], b["id"]):
                best[r["household_pid"]] = r
    return {k: v for k, v in best.items() if v["region_code"].startswith(prefix)}


def expected_lists(rows, as_of, p, prefix="") -> dict[str, set[str]]:
    pov, rel = latest(rows, "poverty", as_of, prefix), latest(rows, "relapse", as_of, prefix)
    since = (pd.Timestamp(as_of) - pd.DateOffset(months=p.exit.months)).to_pydatetime()
    out = {"enrolment": set(), "exit": set(), "relapse_watch": set()}
    for pid, r in pov.items():
        status = r["registry_status"]
        if status in p.enrolment.statuses and (r["tier"] in p.enrolment.tiers or r["risk"] >= p.enrolment.min_risk):
            out["enrolment"].add(pid)
        if status in p.exit.statuses:
            window = [x["risk"] for x in rows if x["household_pid"] == pid and x["task"] == "poverty"
                      and since < x["scored_at"] <= as_of and x["year"] <= YEAR]
            if len(window) >= p.exit.min_scores and max(window) < p.exit.max_risk:
                out["exit"].add(pid)
    for pid, r in rel.items():
        if r["eligible"] is True and (r["tier"] in p.relapse_watch.tiers or r["risk"] >= p.relapse_watch.min_risk):
            out["relapse_watch"].add(pid)
    return out


def check_ranked(rows: list[dict], kind: str) -> None:
    """Ranks 1..n within each region, in the list's order, every row with reasons."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["region_group"], []).append(r)
    for group, members in groups.items():
        members.sort(key=lambda r: r["rank"])
        assert [r["rank"] for r in members] == list(range(1, len(members) + 1)), (kind, group)
        assert all(r["region_code"].startswith(group) for r in members)
        if kind == "exit":
            key = [r["evidence"]["max_risk_in_window"] for r in members]
            assert key == sorted(key)
        else:
            key = [r["poverty_risk" if kind == "enrolment" else "relapse_risk"] for r in members]
            assert key == sorted(key, reverse=True)
    for r in rows:
        assert r["reasons"] and "causes" in r["reasons"] and (r["reasons"]["up"] or r["reasons"]["down"])
        assert r["evidence"]["why_en"] and r["evidence"]["why_zh"]
        assert r["year"] == YEAR


def stored_run(store, run_id: str) -> dict[str, list[dict]]:
    from serving.store import review_lists

    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(review_lists).where(review_lists.c.run_id == run_id))]
    out = {"enrolment": [], "exit": [], "relapse_watch": []}
    for r in rows:
        out[r["list_kind"]].append(r)
    return out


@pytest.fixture(scope="module")
def full_run(store, fake, as_of, roster_params, tmp_path_factory):
    """One run over every region (the scores table is snapshotted around it)."""
    from monitoring import roster

    before = all_scores(store)
    out = tmp_path_factory.mktemp("roster-all")
    run = roster.review(store, YEAR, None, roster_params, out=out, as_of=as_of)
    return run, before, all_scores(store), out


# -- the rules ---------------------------------------------------------------------------------------------------------
def test_each_list_holds_exactly_the_households_its_rule_selects(store, full_run, fake, roster_params, as_of):
    run, before, _, _ = full_run
    expected = expected_lists(before, as_of, roster_params)
    saved = stored_run(store, run.run_id)
    for kind in ("enrolment", "exit", "relapse_watch"):
        got = {r["household_pid"] for r in saved[kind]}
        assert got == expected[kind], kind
        assert len(got) == len(saved[kind])  # once per list
        assert {r["household_pid"] for r in run.lists[kind]} == got
        check_ranked(saved[kind], kind)
    # the made-up households land where their rule says
    names = {k: {n for n, pid in fake.items() if pid in {r["household_pid"] for r in saved[k]}} for k in saved}
    assert names["exit"] == {"E1", "E2", "E7"}
    assert names["enrolment"] == {"N1", "N2", "N5"}  # not N3 (risk too low), N4 (enrolled), U1 (status unknown)
    assert names["relapse_watch"] == {"R1", "R4"}
    # ... and the small panel puts real households on the enrolment and relapse-watch lists
    assert {r["region_code"][:2] for r in saved["enrolment"]} >= {"43", "52"}
    assert {r["region_code"][:2] for r in saved["relapse_watch"]} >= {"43", "52"}
    # exit: ranked by the highest risk in the window, with the evidence; reasons are those lowering the risk
    fake_exit = {r["household_pid"]: r for r in saved["exit"] if r["region_group"] == "520101"}
    assert [r["household_pid"] for r in sorted(fake_exit.values(), key=lambda r: r["rank"])][:2] == [fake["E1"],
                                                                                                     fake["E2"]]
    e2 = fake_exit[fake["E2"]]["evidence"]
    assert e2["scores_in_window"] == 3 and e2["max_risk_in_window"] == pytest.approx(.19)
    assert "below 20%" in e2["why_en"] and "exit rules" in e2["why_en"] and "退出标准" in e2["why_zh"]
    # status unknown: counted, on no enrolment or exit list; the status stored is the scored wave's
    assert run.status_unknown >= 1
    assert run.households == len(set(latest(before, "poverty", as_of)) | set(latest(before, "relapse", as_of)))
    r4 = next(r for r in saved["relapse_watch"] if r["household_pid"] == fake["R4"])
    assert r4["poverty_risk"] is None and r4["relapse_risk"] == pytest.approx(.26) and r4["region_group"] == "520102"


def test_status_is_stored_with_every_score(store, scored, panel_payload):
    from serving.pseudonym import pseudonymize

    wanted = {pseudonymize(h["household_id"]): h.get("registry_status") for h in panel_payload[:300]}
    rows = [r for r in all_scores(store) if r["household_pid"] in wanted]
    assert rows and {r["task"] for r in rows} == {"poverty", "relapse"}
    assert all(r["registry_status"] == wanted[r["household_pid"]] for r in rows)
    statuses = {r["registry_status"] for r in rows}
    assert {"not_registered", "monitored"} <= statuses  # the 2025 wave: exits done, relapse monitoring on
    first = panel_payload[0]
    one = [r for r in rows if r["household_pid"] == pseudonymize(first["household_id"])][0]
    assert one["exit_year"] == first.get("exit_year") and one["poor_since_year"] == first.get("poor_since_year")


def test_a_run_changes_nothing_in_the_scores_table(full_run):
    _, before, after, _ = full_run
    assert after == before


def test_region_filter(store, full_run, roster_params, as_of, tmp_path):
    from monitoring import roster

    before = all_scores(store)
    run = roster.review(store, YEAR, COUNTY, roster_params, out=tmp_path, as_of=as_of)
    assert run.scope == COUNTY and run.groups == [COUNTY]
    expected = expected_lists(before, as_of, roster_params, prefix=COUNTY)
    saved = stored_run(store, run.run_id)
    for kind, rows in saved.items():
        assert {r["household_pid"] for r in rows} == expected[kind]
        assert all(r["region_code"].startswith(COUNTY) for r in rows)
        check_ranked(rows, kind)
    # the same households as the county's part of the run over every region, same ranks
    whole = stored_run(store, full_run[0].run_id)
    for kind in saved:
        assert ({(r["household_pid"], r["rank"]) for r in saved[kind]}
                == {(r["household_pid"], r["rank"]) for r in whole[kind] if r["region_group"] == COUNTY})
    assert sorted(p.name for p in tmp_path.glob("*.csv")) == sorted(
        f"{k}-{COUNTY}.csv" for k in ("enrolment", "exit", "relapse_watch"))
    town = store.villages(COUNTY)[0][:9]
    township = roster.select_lists(store, YEAR, town, roster_params, as_of)
    assert township.groups == [COUNTY]
    for kind, rows in township.lists.items():
        assert {r["household_pid"] for r in rows} == expected_lists(before, as_of, roster_params, prefix=town)[kind]


def test_csv_files_one_per_list_and_region(full_run):
    import json

    run, _, _, out = full_run
    groups = run.groups
    assert COUNTY in groups and "520101" in groups and "520102" in groups
    names = {p.name for p in out.glob("*.csv")}
    assert names == {f"{k}-{g}.csv" for k in ("enrolment", "exit", "relapse_watch") for g in groups}
    for kind in ("enrolment", "exit", "relapse_watch"):
        for g in groups:
            table = pd.read_csv(out / f"{kind}-{g}.csv", dtype={"region_code": str, "region_group": str})
            listed = [r for r in run.lists[kind] if r["region_group"] == g]
            assert len(table) == len(listed) == run.counts[kind][g]
            assert table["rank"].tolist() == list(range(1, len(table) + 1))
            assert table["household"].tolist() == [r["household_pid"] for r in listed]
            if len(table):
                assert table["region_code"].str.startswith(g).all()
                assert table["why_zh"].notna().all() and table["top_reasons_en"].notna().all()
    summary = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert summary["run_id"] == run.run_id and summary["counts"] == run.counts
    assert "automatically" in summary["note_en"] and "由工作人员" in summary["note_zh"]


# -- the API -----------------------------------------------------------------------------------------------------------
def test_review_lists_access_control(client, keys, store, full_run):
    url = f"/review-lists?region={COUNTY}&list=enrolment"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=bearer("tpas_000000000000_" + "x" * 43)).status_code == 401
    assert client.get(url, headers=bearer(keys["registry"])).status_code == 403
    assert client.get(url, headers=bearer(keys["other_official"])).status_code == 403
    assert client.get(url, headers=bearer(keys["official"])).status_code == 200
    for region in ("43", "4301", "430122", "52"):  # wider, or another county: refused
        r = client.get(f"/review-lists?region={region}&list=exit", headers=bearer(keys["official"]))
        assert r.status_code == 403, region
    town = store.villages(COUNTY)[0][:9]
    assert client.get(f"/review-lists?region={town}&list=exit",
                           headers=bearer(keys["official"])).status_code == 200  # a township inside
    assert client.get("/review-lists?region=52", headers=bearer(keys["analyst"])).status_code == 200
    h = bearer(keys["analyst"])
    assert client.get("/review-lists?region=12345", headers=h).status_code == 422
    assert client.get("/review-lists?region=43&list=everyone", headers=h).status_code == 422
    assert client.get("/review-lists?region=43&page=0", headers=h).status_code == 422


def test_review_lists_content_is_the_latest_run_covering_the_region(client, keys, store, full_run, as_of,
                                                                     roster_params):
    from monitoring import roster

    whole = stored_run(store, full_run[0].run_id)
    h = bearer(keys["analyst"])
    # a later run for one county only: the county now reads it, other regions still read the run over everything
    county_run = roster.review(store, YEAR, COUNTY, roster_params, out=None, as_of=as_of)
    for kind in ("enrolment", "exit", "relapse_watch"):
        body = client.get(f"/review-lists?region=52&list={kind}&page_size=1000", headers=h).json()
        assert body["run"]["run_id"] == full_run[0].run_id and body["run"]["year"] == YEAR
        assert "automatically" in body["note_en"] and "由工作人员" in body["note_zh"]
        mine = sorted((r for r in whole[kind] if r["region_code"].startswith("52")),
                      key=lambda r: (r["region_group"], r["rank"]))
        assert [x["household"] for x in body["items"]] == [r["household_pid"] for r in mine]
        assert body["total"] == len(mine)
        for x in body["items"]:
            assert x["list"] == kind and x["why_en"] and x["why_zh"] and x["causes"]
            assert x["reasons_up"] or x["reasons_down"]
        official = client.get(f"/review-lists?region={COUNTY}&list={kind}&page_size=1000",
                                   headers=bearer(keys["official"])).json()
        assert official["run"]["run_id"] == county_run.run_id and official["run"]["scope"] == COUNTY
        assert [x["household"] for x in official["items"]] == [r["household_pid"] for r in county_run.lists[kind]]
        assert [x["rank"] for x in official["items"]] == list(range(1, official["total"] + 1))
        assert all(x["region_code"].startswith(COUNTY) for x in official["items"])
    # pages, CSV, a year without a run
    url = f"/review-lists?region={COUNTY}&list=relapse_watch"
    total = client.get(url, headers=bearer(keys["official"])).json()["total"]
    assert total >= 3
    paged = [x["household"] for n in range(1, (total + 1) // 2 + 1)
             for x in client.get(f"{url}&page_size=2&page={n}", headers=bearer(keys["official"])).json()["items"]]
    assert paged == [r["household_pid"] for r in county_run.lists["relapse_watch"]]
    csv = client.get(f"/review-lists?region={COUNTY}&list=relapse_watch&format=csv",
                          headers=bearer(keys["official"]))
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(csv.text), dtype={"region_code": str})
    assert table["household"].tolist() == [r["household_pid"] for r in county_run.lists["relapse_watch"]]
    none = client.get(f"/review-lists?region={COUNTY}&year=2010", headers=bearer(keys["official"])).json()
    assert none["run"] is None and none["items"] == [] and none["total"] == 0
    doc = client.get("/docs.json").json()
    op = doc["paths"]["/review-lists"]["get"]
    assert op["security"] == [{"ApiKey": []}] and "automatically" in op["description"]


# -- the command line --------------------------------------------------------------------------------------------------
def run_cli(*args):
    from typer.testing import CliRunner

    from tpas.cli import app

    return CliRunner().invoke(app, ["roster", "review", *args])


def test_cli_prints_counts_per_list_and_region(fake, tmp_path, tpas_env, store):
    from serving.store import review_runs

    out = run_cli("--year", str(YEAR), "--region", "52")
    assert out.exit_code == 0, out.output
    text = out.output
    assert "review lists of wave 2025 for region 52" in text
    for kind in ("enrolment", "exit", "relapse_watch"):
        for group in ("520101", "520102"):
            assert any(line.split()[:2] == [kind, group] for line in text.splitlines()), (kind, group)
    exit_line = next(line for line in text.splitlines() if line.split()[:2] == ["exit", "520101"])
    assert exit_line.split()[2] == "2"  # E1, E2
    assert "no household enters or leaves the registry automatically" in text
    assert "no registry status" in text  # U1
    run_id = text.split("run ", 1)[1].split(",", 1)[0]
    folder = tpas_env / "roster" / run_id  # the default folder
    assert {p.name for p in folder.glob("*.csv")} == {f"{k}-{g}.csv" for k in ("enrolment", "exit", "relapse_watch")
                                                      for g in ("520101", "520102")}
    with store.engine.connect() as conn:
        scope = conn.execute(sa.select(review_runs.c.scope).where(review_runs.c.run_id == run_id)).scalar_one()
    assert scope == "52"
    out = run_cli("--year", str(YEAR), "--region", "520102", "--out", str(tmp_path / "here"), "--as-of", "2100-01-01")
    assert out.exit_code == 0, out.output
    assert (tmp_path / "here" / "exit-520102.csv").exists()


@pytest.mark.parametrize("args, message", [
    (["--year", "2025", "--region", "12345"], "--region must be a region code of 2, 4, 6, 9 or 12 digits"),
    (["--year", "2025", "--region", "43ab"], "--region must be a region code"),
    (["--year", "2010"], "no scores of wave year 2010 for any region"),
    (["--year", "2025", "--region", "110101"], "no scores of wave year 2025 for region 110101"),
    (["--year", "2025", "--as-of", "yesterday"], "--as-of must be an ISO date"),
    (["--year", "2025", "--as-of", "2001-01-01"], "no scores of wave year 2025"),
    (["--year", "1800"], "1990"),
    (["--region", "43"], "--year"),
])
def test_cli_bad_arguments_exit_2_with_a_message(fake, args, message):
    out = run_cli(*args)
    assert out.exit_code == 2, out.output
    assert message in out.output
    assert "Traceback" not in out.output


def test_cli_unwritable_out_is_exit_2(fake, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = run_cli("--year", str(YEAR), "--region", "52", "--out", str(blocker))
    assert out.exit_code == 2 and "is a file, not a folder" in out.output
    out = run_cli("--year", str(YEAR), "--region", "52", "--out", str(blocker / "below"))
    assert out.exit_code == 2 and "cannot write the review lists to" in out.output

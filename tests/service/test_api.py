"""The scoring API end to end in process: scoring, errors, access control, lists, store, OpenAPI, metrics."""

from __future__ import annotations

import copy
import io

import numpy as np
import pandas as pd
import pytest

from tests.service.conftest import bearer, score_in_batches


@pytest.fixture(scope="module")
def scored(service_app, keys, panel_payload):
    """The whole small panel scored through /score in batches of 200 (fills the store for the lists)."""
    return score_in_batches(service_app, keys["registry"], panel_payload)


def test_score_example_from_the_openapi_document_answers_200(service_app, keys, champions):
    doc = service_app.get("/docs.json").json()
    body = doc["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]
    schema = body["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    example = {"households": schema["properties"]["households"]["examples"][0]}
    r = service_app.post("/score", json=example, headers=bearer(keys["registry"]))
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["scored"] == 1 and res["rejected"] == 0
    hh = res["results"][0]
    assert 0 <= hh["poverty"]["risk"] <= 1 and hh["poverty"]["tier"] in {"impoverished", "likely_impoverished",
                                                                          "out_of_poverty"}
    assert hh["poverty"]["model"] == f"tpas-poverty/{champions['poverty']}"
    reason = (hh["poverty"]["reasons_up"] + hh["poverty"]["reasons_down"])[0]
    assert {"indicator", "value", "contribution", "cause", "sentence_en", "sentence_zh"} <= set(reason)
    assert res["model_versions"] == {t: f"tpas-{t}/{v}" for t, v in champions.items()}
    # the document declares the key scheme on protected operations
    assert doc["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    assert doc["paths"]["/score"]["post"]["security"] == [{"ApiKey": []}]
    assert "/risk-list" in doc["paths"] and "/households/{household_id}/explanation" in doc["paths"]


def test_invalid_records_get_errors_while_valid_ones_are_scored(service_app, keys, panel_payload):
    good = copy.deepcopy(panel_payload[:2])
    bad_age = copy.deepcopy(panel_payload[2])
    bad_age["members"][0]["age"] = 130
    bad_cat = copy.deepcopy(panel_payload[3])
    bad_cat["terrain"] = "seaside"
    missing = {k: v for k, v in panel_payload[4].items() if k != "year"}
    r = service_app.post("/score", json={"households": good + [bad_age, bad_cat, missing, "not a household"]},
                         headers=bearer(keys["registry"]))
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["scored"] == 2 and res["rejected"] == 4
    fields = {e["index"]: e["field"] for e in res["errors"]}
    assert fields[2] == "households[2].members[0].age"
    assert fields[3] == "households[3].terrain"
    assert fields[4] == "households[4].year"
    assert 5 in fields
    assert [x["index"] for x in res["results"]] == [0, 1]


def test_no_valid_record_is_422_and_bad_bodies_are_never_500(service_app, keys, panel_payload):
    h = bearer(keys["registry"])
    bad = copy.deepcopy(panel_payload[0])
    bad["members"] = []
    r = service_app.post("/score", json={"households": [bad]}, headers=h)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "households[0].members"
    assert service_app.post("/score", json={"households": []}, headers=h).status_code == 422
    too_many = service_app.post("/score", json={"households": [panel_payload[0]] * 1001}, headers=h)
    assert too_many.status_code == 422
    for body in (b"{not json", b"[]", b'{"households": 3}', b'{"nothing": []}'):
        r = service_app.post("/score", content=body, headers={**h, "content-type": "application/json"})
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    # the same household twice: the second is an error, the first is scored
    r = service_app.post("/score", json={"households": [panel_payload[0], panel_payload[0]]}, headers=h)
    assert r.status_code == 200 and r.json()["errors"][0]["field"] == "households[1].household_id"


def test_access_control(service_app, keys, scored):
    assert service_app.post("/score", json={"households": []}).status_code == 401
    assert service_app.post("/score", json={"households": []}, headers=bearer("tpas_nokey_x")).status_code == 401
    assert service_app.get("/risk-list?region=430121").status_code == 401
    assert service_app.post("/score", json={"households": []}, headers=bearer(keys["official"])).status_code == 403
    assert service_app.post("/score", json={"households": []}, headers=bearer(keys["analyst"])).status_code == 403
    assert service_app.get("/risk-list?region=430121", headers=bearer(keys["registry"])).status_code == 403
    # an official reads their county and its villages, not another county or the province
    assert service_app.get("/risk-list?region=430121", headers=bearer(keys["official"])).status_code == 200
    assert service_app.get("/risk-list?region=430122", headers=bearer(keys["official"])).status_code == 403
    assert service_app.get("/risk-list?region=43", headers=bearer(keys["official"])).status_code == 403
    assert service_app.get("/risk-list?region=430122", headers=bearer(keys["analyst"])).status_code == 200
    other = next(x for x in scored if not x["household_id"].startswith("430121"))
    url = f"/households/{other['household_id']}/explanation"
    assert service_app.get(url, headers=bearer(keys["official"])).status_code == 403
    assert service_app.get(url, headers=bearer(keys["analyst"])).status_code == 200


def test_risk_list_ranked_filtered_and_downloadable(service_app, keys, scored):
    h = bearer(keys["official"])
    r = service_app.get("/risk-list?region=430121&task=poverty&page_size=20", headers=h).json()
    risks = [x["risk"] for x in r["items"]]
    assert risks == sorted(risks, reverse=True) and len(risks) == 20
    assert all(x["region_code"].startswith("430121") for x in r["items"])
    expected = sum(1 for x in scored if x["household_id"].startswith("430121") and x["poverty"])
    assert r["total"] == expected
    # no raw ids in lists: pseudonyms only
    raw_ids = {x["household_id"] for x in scored}
    assert not raw_ids & {x["household"] for x in r["items"]}
    tier = r["items"][0]["tier"]
    tiered = service_app.get(f"/risk-list?region=430121&tier={tier}&page_size=1000", headers=h).json()
    assert tiered["items"] and all(x["tier"] == tier for x in tiered["items"]) and tiered["total"] <= r["total"]
    page2 = service_app.get("/risk-list?region=430121&page=2&page_size=20", headers=h).json()
    assert page2["items"][0]["risk"] <= risks[-1]
    csv = service_app.get("/risk-list?region=430121&format=csv", headers=h)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(csv.text))
    assert len(table) == r["total"] and table["risk"].is_monotonic_decreasing
    xlsx = service_app.get("/risk-list?region=430121&format=xlsx", headers=h)
    assert len(pd.read_excel(io.BytesIO(xlsx.content))) == r["total"]
    one = scored[0]["household_id"]
    found = service_app.get(f"/risk-list?region={one[:6]}&household={one}", headers=bearer(keys["analyst"])).json()
    assert found["total"] == 1
    relapse = service_app.get("/risk-list?region=43&task=relapse&page_size=5", headers=bearer(keys["analyst"])).json()
    assert relapse["total"] == sum(1 for x in scored if x["relapse"])
    assert service_app.get("/risk-list?region=4301", headers=h).status_code == 403
    assert service_app.get("/risk-list?region=12345", headers=h).status_code == 422


def test_explanation_has_every_contribution_adding_up(service_app, keys, scored):
    hh = next(x for x in scored if x["relapse"] and x["household_id"].startswith("430121"))
    r = service_app.get(f"/households/{hh['household_id']}/explanation", headers=bearer(keys["official"]))
    assert r.status_code == 200
    scores = {s["task"]: s for s in r.json()["scores"]}
    assert set(scores) == {"poverty", "relapse"}
    pov = scores["poverty"]
    assert pov["risk"] == pytest.approx(hh["poverty"]["risk"], abs=1e-4)
    assert len(pov["contributions"]) > 10 and pov["features"]
    assert sum(pov["causes"].values()) == pytest.approx(sum(pov["contributions"].values()), abs=2e-3)
    assert service_app.get("/households/nobody/explanation", headers=bearer(keys["analyst"])).status_code == 404


def test_full_contributions_on_request(service_app, keys, panel_payload):
    r = service_app.post("/score", json={"households": panel_payload[:1], "full_contributions": True},
                         headers=bearer(keys["registry"])).json()
    contrib = r["results"][0]["poverty"]["contributions"]
    assert contrib and sum(r["results"][0]["poverty"]["causes"].values()) == pytest.approx(sum(contrib.values()),
                                                                                          abs=2e-3)
    r = service_app.post("/score", json={"households": panel_payload[:1]}, headers=bearer(keys["registry"])).json()
    assert r["results"][0]["poverty"]["contributions"] is None


def test_outcomes(service_app, keys, panel_payload):
    from serving.pseudonym import pseudonymize
    from serving.service import _state

    hid = panel_payload[0]["household_id"]
    body = {"outcomes": [{"household_id": hid, "task": "poverty", "outcome": "poor", "observed_on": "2026-04-01"},
                         {"household_id": hid, "task": "relapse", "outcome": "poor", "observed_on": "2026-04-01"},
                         {"household_id": hid, "task": "relapse", "outcome": "relapsed", "observed_on": "not a date"}]}
    r = service_app.post("/outcomes", json=body, headers=bearer(keys["registry"]))
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["accepted"] == 1 and res["rejected"] == 2
    assert {e["field"] for e in res["errors"]} == {"outcomes[1].outcome", "outcomes[2].observed_on"}
    stored = _state["store"].list_outcomes(household_pid=pseudonymize(hid))
    assert [o["outcome"] for o in stored] == ["poor"]
    assert service_app.post("/outcomes", json={"outcomes": body["outcomes"][1:]},
                            headers=bearer(keys["registry"])).status_code == 422
    assert service_app.post("/outcomes", json=body, headers=bearer(keys["official"])).status_code == 403


def test_store_keeps_pseudonyms_and_no_personal_data(service_app, scored, panel_payload, tpas_env):
    from serving.service import _state

    store = _state["store"]
    assert store.url.startswith("sqlite")
    raw = (tpas_env / "tpas.db").read_bytes()
    for hh in panel_payload[:50]:
        assert hh["household_id"].encode() not in raw
        for field in ("head_name", "id_card_no", "phone"):
            if hh.get(field):
                assert str(hh[field]).encode("utf-8") not in raw


def test_health_and_ready(service_app, scored):
    assert service_app.get("/healthz").status_code == 200
    assert service_app.get("/readyz").status_code == 200


def test_service_scores_equal_tpas_predict(service_app, keys, panel_payload, small_panel, tmp_path, champions):
    """Parity: the same households through the API and through `tpas predict` give identical scores."""
    from training.commands import predict

    for task in ("poverty", "relapse"):
        out = tmp_path / f"{task}.parquet"
        predict(task, None, small_panel, out)
        offline = pd.read_parquet(out).astype({"household_id": str}).set_index("household_id")
        api = {}
        for i in range(0, 400, 200):
            res = service_app.post("/score", json={"households": panel_payload[i:i + 200]},
                                   headers=bearer(keys["registry"])).json()
            api.update({x["household_id"]: x[task]["risk"] for x in res["results"] if x[task]})
        assert len(api) > 20
        ids = list(api)
        np.testing.assert_array_equal(np.array([api[i] for i in ids]), offline.loc[ids, "risk"].to_numpy())
        if task == "relapse":
            eligible = offline.loc[offline.index.isin([x["household_id"] for x in panel_payload[:400]]), "eligible"]
            assert set(eligible[eligible].index) == set(ids)


def test_no_champion_refuses_to_start(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tests.conftest import _clear_caches
    from tpas.cli import app

    monkeypatch.setenv("TPAS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _clear_caches()
    try:
        out = CliRunner().invoke(app, ["serve", "--check"])
    finally:
        monkeypatch.undo()
        _clear_caches()
    assert out.exit_code == 2
    assert "no champion model for task 'poverty'" in out.output and "tpas train --task poverty --promote" in out.output


def test_database_down_reads_answer_503(service_app, keys, monkeypatch):
    from serving.service import _state
    from serving.store import StoreUnavailable

    def down(*a, **k):
        raise StoreUnavailable("database unreachable")

    monkeypatch.setattr(_state["store"], "latest_scores", down)
    r = service_app.get("/risk-list?region=430121", headers=bearer(keys["official"]))
    assert r.status_code == 503 and "retry" in r.json()["error"]


def test_unchanged_households_are_explained_from_the_cache(pinned_champions, panel_payload):
    from pydantic import TypeAdapter

    from serving.schemas import LenientHousehold
    from serving.scoring import Scorer, load_champions

    scorer = Scorer(load_champions())
    items = TypeAdapter(list[LenientHousehold]).validate_python(panel_payload[:30])
    first = scorer.score(items)
    assert scorer.caches["poverty"].hits == 0 and scorer.caches["poverty"].misses == 30
    again = scorer.score(items)
    assert scorer.caches["poverty"].hits == 30
    assert [r["poverty"] for r in again.results] == [r["poverty"] for r in first.results]


def test_score_answer_is_exactly_the_documented_response_model(service_app, keys, panel_payload):
    """/score encodes its answer itself (no response-model pass): the bytes must be what `ScoreResponse`
    would give, with every field and nothing else, valid and invalid households mixed."""
    import json

    from serving.schemas import ScoreResponse

    bad = copy.deepcopy(panel_payload[3])
    bad["members"][0]["age"] = -1
    body = panel_payload[:3] + [bad, 7]
    r = service_app.post("/score", json={"households": body, "full_contributions": True},
                         headers=bearer(keys["registry"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    sent = json.loads(r.content)
    assert sent == json.loads(ScoreResponse.model_validate_json(r.content).model_dump_json())
    assert sent["scored"] == 3 and sent["rejected"] == 2 and len(sent["results"]) == 3
    assert all(set(h) == {"index", "household_id", "year", "poverty", "relapse"} for h in sent["results"])
    assert all(h["poverty"]["contributions"] for h in sent["results"])
    none = service_app.post("/score", json={"households": [bad]}, headers=bearer(keys["registry"]))
    assert none.status_code == 422
    assert json.loads(none.content) == json.loads(ScoreResponse.model_validate_json(none.content).model_dump_json())


def test_request_records_are_read_exactly_as_model_dump_gives_them(panel_payload):
    """`Scorer.to_records` reads the validated models' fields directly; it must equal `model_dump`."""
    from pydantic import TypeAdapter

    from serving.schemas import LenientHousehold, checked
    from serving.scoring import Scorer

    items = [checked(x) for x in TypeAdapter(list[LenientHousehold]).validate_python(panel_payload[:40])]
    assert any(item.previous_waves for item in items)
    _, hh_rows, mb_rows, errors = Scorer({}).to_records(items)
    assert not errors
    want_hh, want_mb = [], []
    for item in items:
        dumped = item.model_dump()
        for wave in [dumped, *dumped.pop("previous_waves")]:
            for m in wave.pop("members"):
                want_mb.append({**m, "household_id": item.household_id, "year": wave["year"]})
            want_hh.append({**wave, "household_id": item.household_id})
    assert hh_rows == want_hh and mb_rows == want_mb

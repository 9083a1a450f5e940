"""`tpas monitor simulate`: the next wave of the champions' own panel, scored like the service scores.

- The panel: the one the champion models were trained on, named by their training-set manifest
  (logged with the model as ``training_set/manifest.json``: ``source.path``).
- The wave: `features.sources.synthetic.continue_panel` re-simulates the panel from its seed and
  recorded parameters (checking that it reproduces the last written wave exactly) and simulates the
  same households on through the next year (or up to `year`). ``steady`` continues the process;
  ``shock`` adds, in that year, a county-wide natural disaster in a share of the counties and a
  collapse of migrant work (`monitoring.shock` in params.yaml), acting through the process: crops,
  livestock and houses are damaged, migrants lose months or their jobs, incomes and remittances
  fall, and the registry's indicators record what follows. Latent traits stay latent.
- Scoring: the wave's households (with their earlier waves, for the relapse history) become `/score`
  request bodies (`serving.payload.records_to_payload`), checked by the API's own request model
  (`serving.schemas.LenientHousehold`) and scored by `serving.scoring.Scorer` with the registry's
  champions into the inference store (`InferenceStore.record_scores`): the same path as the service.
  With `url` (and a registry key) the batches are posted to the running service's ``/score`` instead.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from tpas.config import Params
from tpas.errors import DataError

SCENARIOS = ("steady", "shock")
TASKS = ("poverty", "relapse")


def champion_panel(tasks: tuple[str, ...] = TASKS) -> Path:
    """The synthetic panel the champion models were trained on (their training-set manifest's source)."""
    from mlflow import MlflowClient

    from monitoring.context import MANIFEST_ARTIFACT, NoModel, _download
    from training.tracking import configure, model_name, resolve_version

    configure()
    paths = {}
    for task in tasks:
        version = resolve_version(task)
        if version is None:
            raise NoModel(f"no champion model for task '{task}': train and promote one with "
                          f"`tpas train --task {task} --promote`")
        mv = MlflowClient().get_model_version(model_name(task), version)
        man = _download(mv.run_id, MANIFEST_ARTIFACT)
        if man is None:
            raise DataError(f"models:/{model_name(task)}/{version} was logged without its training-set manifest")
        paths[task] = Path(json.loads(man.read_text(encoding="utf-8"))["source"]["path"])
    first = paths[tasks[0]]
    different = {t: str(p) for t, p in paths.items() if p.resolve() != first.resolve()}
    if different:
        raise DataError(f"the champions were trained on different panels ({first} for {tasks[0]}, "
                        + ", ".join(f"{p} for {t}" for t, p in different.items()) + "): simulate needs one panel")
    if not (first / "manifest.json").exists() or not (first / "households").is_dir():
        raise DataError(f"the champions' training panel {first} is not there (or is not a synthetic panel from "
                        f"`tpas data synth`): simulate continues that panel")
    return first


def shock_counties(panel: Path, share: float, seed: int) -> list[str]:
    """A seeded choice of `share` of the panel's counties (at least one)."""
    from features.sources.synthetic import county_codes

    codes = list(county_codes(panel))
    k = max(1, math.ceil(share * len(codes) - 1e-9))
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(codes, size=min(k, len(codes)), replace=False).tolist())


def make_wave(panel: Path, scenario: str, params: Params, year: int | None = None,
              counties: list[str] | None = None, households: int | None = None, seed: int = 0,
              history_years: int | None = None):
    """The next wave (with the earlier waves scoring needs) as `HouseholdRecords`, and what was done."""
    from features.records import HouseholdRecords
    from features.sources.synthetic import WaveShock, continue_panel, read_panel

    if scenario not in SCENARIOS:
        raise DataError(f"--scenario must be steady or shock (got {scenario!r})")
    manifest = json.loads((panel / "manifest.json").read_text(encoding="utf-8"))
    shock = None
    if scenario == "shock":
        sp = params.monitoring.shock
        chosen = counties or shock_counties(panel, sp.disaster_county_share, int(manifest.get("seed", 0)))
        shock = WaveShock(disaster_counties=tuple(chosen), disaster_severity=sp.disaster_severity,
                          migrant_factor=sp.migrant_factor)
    hh_new, mb_new, info = continue_panel(panel, until_year=year, params=params, shock=shock)
    target = info["years"][-1]
    ids = hh_new.loc[hh_new["year"] == target, "household_id"].drop_duplicates()
    if households is not None and households < len(ids):
        ids = ids.sample(n=households, random_state=seed).sort_values()
    h = history_years if history_years is not None else params.features.history_years
    panel_years = [int(y) for y in manifest["year_list"]]
    earlier = [y for y in panel_years if y >= target - h]
    hh_old, mb_old, _ = read_panel(panel, years=earlier) if earlier else (hh_new.iloc[:0], mb_new.iloc[:0], None)
    hh = pd.concat([hh_old, hh_new], ignore_index=True)
    mb = pd.concat([mb_old, mb_new], ignore_index=True)
    hh = hh[hh["household_id"].isin(ids) & (hh["year"] >= target - h)]
    mb = mb[mb["household_id"].isin(ids) & (mb["year"] >= target - h)]
    info.update({"scenario": scenario, "year": target, "households_in_wave": int(len(ids))})
    return HouseholdRecords(hh.reset_index(drop=True), mb.reset_index(drop=True)), info


def _post(url: str, key: str, batch: list[dict], timeout: float = 300.0) -> dict:
    import httpx

    try:
        resp = httpx.post(url.rstrip("/") + "/score", json={"households": batch},
                          headers={"Authorization": f"Bearer {key}"}, timeout=timeout)
    except httpx.HTTPError as exc:
        raise DataError(f"cannot reach the scoring service at {url}: {exc}") from None
    if resp.status_code in (401, 403):
        raise DataError(f"the service at {url} refused the key ({resp.status_code}): "
                        f"{resp.json().get('error', resp.text)[:200]}; use a registry key (`tpas keys create --role registry`)")
    if resp.status_code not in (200, 422):
        raise DataError(f"the service at {url} answered {resp.status_code}: {resp.text[:300]}")
    return resp.json()


def score_wave(records, year: int, params: Params, url: str | None = None, key: str | None = None,
               history_years: int | None = None) -> dict:
    """Score the wave's households of `year` in batches, in process (Scorer + store) or through `url`."""
    from serving.payload import batches, records_to_payload

    h = history_years if history_years is not None else params.features.history_years
    payload = records_to_payload(records, year=year, max_previous=h)
    size = params.monitoring.score_batch
    counts = {"sent": len(payload), "scored": 0, "rejected": 0, "batches": 0}
    if url:
        if not key:
            raise DataError("--url needs --key: a registry API key of that service (`tpas keys create --role registry`)")
        for batch in batches(payload, size):
            body = _post(url, key, batch)
            counts["scored"] += int(body.get("scored", 0))
            counts["rejected"] += int(body.get("rejected", 0))
            counts["batches"] += 1
        counts["via"] = url
        return counts
    from pydantic import TypeAdapter

    from serving.schemas import LenientHousehold
    from serving.scoring import Scorer, load_champions
    from serving.store import InferenceStore

    adapter = TypeAdapter(list[LenientHousehold])
    scorer = Scorer(load_champions(), top_k=params.train.top_k_reasons)
    counts.update(written=0, spooled=0)
    store = InferenceStore()
    try:
        store.migrate()
        for batch in batches(payload, size):
            out = scorer.score(adapter.validate_python(batch))
            counts["scored"] += out.scored
            counts["rejected"] += out.rejected
            counts["batches"] += 1
            if out.store_rows:
                res = store.record_scores(out.store_rows)
                counts["written"] += res.written
                counts["spooled"] += res.spooled
    finally:
        store.close()
    counts["via"] = "in process (serving.scoring.Scorer -> inference store)"
    counts["models"] = scorer.versions
    return counts


def save_wave(records, info: dict, folder: Path) -> Path:
    """Keep the simulated wave (personal fields dropped) for the record: households, members, info."""
    from features.schema import pii_columns

    folder.mkdir(parents=True, exist_ok=True)
    pii = pii_columns()
    year = info["year"]
    records.households[records.households["year"] == year].drop(columns=[c for c in pii if c in records.households]) \
        .to_parquet(folder / "households.parquet", index=False)
    records.members[records.members["year"] == year].drop(columns=[c for c in pii if c in records.members]) \
        .to_parquet(folder / "members.parquet", index=False)
    (folder / "info.json").write_text(json.dumps(info, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return folder


def simulate(scenario: str, params: Params, households: int | None = None, url: str | None = None,
             key: str | None = None, year: int | None = None, counties: list[str] | None = None,
             seed: int = 0) -> dict:
    """Generate the next wave of the champions' panel and score it (see module docstring)."""
    from monitoring.run import monitoring_dir

    if scenario not in SCENARIOS:
        raise DataError(f"--scenario must be steady or shock (got {scenario!r})")
    if households is not None and households <= 0:
        raise DataError(f"--households must be positive (got {households})")
    if url and not key:
        raise DataError("--url needs --key: a registry API key of that service (`tpas keys create --role registry`)")
    t0 = time.perf_counter()
    panel = champion_panel()
    records, info = make_wave(panel, scenario, params, year=year, counties=counties, households=households, seed=seed)
    t1 = time.perf_counter()
    counts = score_wave(records, info["year"], params, url=url, key=key)
    t2 = time.perf_counter()
    now = datetime.now(timezone.utc)
    folder = monitoring_dir() / "waves" / f"{scenario}-{info['year']}-{now:%Y%m%dT%H%M%SZ}"
    info.update(counts)
    info.update({"generate_seconds": round(t1 - t0, 2), "score_seconds": round(t2 - t1, 2)})
    info["wave_folder"] = str(save_wave(records, info, folder))
    return info

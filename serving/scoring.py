"""Scoring requests through the registered champion models (no HTTP here, so it is testable alone).

`Scorer` takes the households of a `/score` request (already checked field by field by
`serving.schemas`), turns the valid ones into canonical `HouseholdRecords`, runs the same
record-level validation as `tpas predict` (`features.validation.validate_records`), and
scores them with each task's `RiskModel` -- the very object `tpas predict` loads from the
MLflow registry, so both give identical scores. It returns the API response and the rows
for the inference store (pseudonymous id, feature values, scores, contributions, versions;
never the raw id or personal data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from features.records import HouseholdRecords
from features.schema import pii_columns
from features.validation import validate_records
from models.explain import main_causes_text
from serving.store import new_record_id
from tpas.errors import TpasError

log = logging.getLogger("tpas.serving")

TASKS = ("poverty", "relapse")
PII = pii_columns()


class NoChampion(TpasError):
    """A task has no model with the `champion` alias in the registry."""


@dataclass
class LoadedModel:
    """A registered model version held by the service."""

    task: str
    name: str
    version: str
    model: Any  # models.bundle.RiskModel

    @property
    def label(self) -> str:
        return f"{self.name}/{self.version}"


def champion_versions(tasks: tuple[str, ...] = TASKS, pinned: dict[str, str] | None = None) -> dict[str, str]:
    """Each task's champion version (or the pinned one) in the MLflow registry, without loading a model.

    Raises `NoChampion` naming the command that registers one when a task has none.
    """
    from training.tracking import resolve_version

    out = {}
    for task in tasks:
        version = (pinned or {}).get(task) or resolve_version(task)
        if version is None:
            raise NoChampion(
                f"no champion model for task '{task}' in the registry: register and promote one with "
                f"`tpas train --task {task} --promote` (or `tpas promote --task {task} --version V`)")
        out[task] = str(version)
    return out


def load_champions(tasks: tuple[str, ...] = TASKS, pinned: dict[str, str] | None = None) -> dict[str, LoadedModel]:
    """Load each task's champion (or the pinned version) from the MLflow registry (see `champion_versions`)."""
    from training.tracking import load_bundle, model_name

    out = {}
    for task, version in champion_versions(tasks, pinned).items():
        name = model_name(task)
        model = load_bundle(f"models:/{name}/{version}")
        if model.task != task:
            raise NoChampion(f"models:/{name}/{version} is a {model.task} model, not {task}")
        out[task] = LoadedModel(task, name, version, model)
    return out


@dataclass
class ScoreOutcome:
    """What a `/score` request produced."""

    results: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    store_rows: list[dict] = field(default_factory=list)

    @property
    def scored(self) -> int:
        return len(self.results)

    @property
    def rejected(self) -> int:
        return len({e["index"] for e in self.errors})


def _error(index: int, hid: str | None, path: str, reason: str) -> dict:
    return {"index": index, "household_id": hid, "field": path, "reason": reason}


class Scorer:
    """Scores request households with loaded champion models (see module docstring)."""

    def __init__(self, models: dict[str, LoadedModel], top_k: int = 5, pseudonymize=None,
                 cache_rows: int = 200_000):
        from models.explain import ContributionCache

        self.models = models
        self.top_k = top_k
        #: One contribution cache per served model: a household whose record has not changed since it was
        #: last scored is explained without recomputing its TreeSHAP values (`cache_rows=0`: none).
        self.caches = {task: ContributionCache(cache_rows) for task in models} if cache_rows > 0 else {}
        if pseudonymize is None:
            from serving.pseudonym import pseudonymize
        self.pseudonymize = pseudonymize

    @property
    def versions(self) -> dict[str, str]:
        return {t: m.label for t, m in self.models.items()}

    # -- request -> canonical records ----------------------------------------------------------------------
    def to_records(self, items: list[Any]) -> tuple[dict[int, dict], list[dict], list[dict], list[dict]]:
        """Valid items -> (index -> info, household rows, member rows, errors)."""
        from serving.schemas import InvalidRecord, checked, error_path

        infos: dict[int, dict] = {}
        hh_rows: list[dict] = []
        mb_rows: list[dict] = []
        errors: list[dict] = []
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            prefix = f"households[{i}]"
            item = checked(item)
            if isinstance(item, InvalidRecord):
                for e in item.errors:
                    errors.append(_error(i, item.household_id, error_path(prefix, e["loc"]), e["msg"]))
                continue
            hid, year = item.household_id, item.year
            if hid in seen:
                errors.append(_error(i, hid, f"{prefix}.household_id",
                                     f"household {hid} appears twice in the request (first at households[{seen[hid]}])"))
                continue
            bad_wave = [j for j, w in enumerate(item.previous_waves) if w.year >= year]
            years = [w.year for w in item.previous_waves]
            if bad_wave:
                j = bad_wave[0]
                errors.append(_error(i, hid, f"{prefix}.previous_waves[{j}].year",
                                     f"an earlier wave must have a year before {year}"))
                continue
            if len(set(years)) != len(years):
                errors.append(_error(i, hid, f"{prefix}.previous_waves", "two earlier waves have the same year"))
                continue
            seen[hid] = i
            waves = {year: (prefix, item)}
            for j, w in enumerate(item.previous_waves):
                waves[w.year] = (f"{prefix}.previous_waves[{j}]", w)
            infos[i] = {"household_id": hid, "year": year, "village_code": item.village_code, "waves": waves}
            # The validated models' field values, read directly (the models hold plain str/int/float/bool/None
            # values and lists of nested models): 5x cheaper than model_dump, and equal to it (tested).
            for wave in (item, *item.previous_waves):
                row = dict(wave.__dict__)
                members = row.pop("members")
                row.pop("previous_waves", None)
                row["household_id"] = hid
                hh_rows.append(row)
                wyear = row["year"]
                for m in members:
                    mrow = dict(m.__dict__)
                    mrow["household_id"], mrow["year"] = hid, wyear
                    mb_rows.append(mrow)
        return infos, hh_rows, mb_rows, errors

    # -- scoring ---------------------------------------------------------------------------------------------
    def score(self, items: list[Any], full_contributions: bool = False) -> ScoreOutcome:
        """Score the valid households of a request; the invalid ones become error entries."""
        infos, hh_rows, mb_rows, errors = self.to_records(items)
        out = ScoreOutcome(errors=errors)
        if not infos:
            out.errors.sort(key=lambda e: e["index"])
            return out
        from features.schema import HOUSEHOLD_COLUMNS, MEMBER_COLUMNS

        households = pd.DataFrame(hh_rows, columns=[c.name for c in HOUSEHOLD_COLUMNS])
        members = pd.DataFrame(mb_rows, columns=[c.name for c in MEMBER_COLUMNS])
        records, report = validate_records(households, members, source="api")
        by_hid = {info["household_id"]: i for i, info in infos.items()}
        if report.n_rejected:
            for rej in report.rejects.to_dict("records"):
                i = by_hid.get(str(rej["household_id"]))
                if i is None or i not in infos:
                    continue
                info = infos[i]
                prefix, wave = info["waves"].get(int(rej["year"]), (f"households[{i}]", None))
                path = prefix
                if rej.get("table") == "members" and wave is not None and pd.notna(rej.get("member_no")):
                    nos = [m.member_no for m in wave.members]
                    k = nos.index(int(rej["member_no"])) if int(rej["member_no"]) in nos else 0
                    path += f".members[{k}]"
                path += f".{rej['column']}"
                out.errors.append(_error(i, info["household_id"], path, str(rej["reason"])))
            bad = {e["household_id"] for e in out.errors}
            keep = [h for h in records.households["household_id"].unique() if h not in bad]
            records = records.select_households(keep)
            infos = {i: info for i, info in infos.items() if info["household_id"] not in bad}
        if not infos:
            out.errors.sort(key=lambda e: e["index"])
            return out

        per_task = {task: self._score_task(lm, records, full_contributions) for task, lm in self.models.items()}
        now = datetime.now(timezone.utc)
        for i in sorted(infos):
            info = infos[i]
            hid, year = info["household_id"], info["year"]
            # every field of `serving.schemas.HouseholdScore`: the service encodes these dicts as they are
            result: dict[str, Any] = {"index": i, "household_id": hid, "year": year, "poverty": None,
                                      "relapse": None}
            pid = self.pseudonymize(hid)
            for task, table in per_task.items():
                row = table.get((hid, year))
                if row is None:
                    continue
                # A household not eligible for relapse gets no relapse score in the answer, but the row
                # is stored (eligible = false) so that it supersedes an older score on the relapse lists.
                result[task] = row["api"] if task != "relapse" or row["eligible"] else None
                out.store_rows.append({
                    "record_id": new_record_id(), "household_pid": pid, "region_code": info["village_code"],
                    "task": task, "year": int(year), **row["store"], "scored_at": now,
                    # the wave's registry status (registry facts, not personal data): who is enrolled, for
                    # the review lists of `tpas roster review`
                    **{f: getattr(info["waves"][year][1], f, None)
                       for f in ("registry_status", "poor_since_year", "exit_year", "monitoring_group")},
                })
            out.results.append(result)
        out.errors.sort(key=lambda e: e["index"])
        return out

    def _score_task(self, lm: LoadedModel, records: HouseholdRecords, full: bool) -> dict[tuple, dict]:
        """(household_id, year) -> the API view and the store columns of this task's score."""
        model = lm.model
        X = model.select_waves(model.features(records))
        risk = model.predict_risk(X)
        score, tier = model.score_and_tier(risk)
        reasons, contrib = model.explain_detail(X, risk, top_k=self.top_k, cache=self.caches.get(lm.task))
        keys = X.index.to_frame(index=False)
        eligible = model._eligible(records, keys) if model.task == "relapse" else np.ones(len(X), bool)
        names = list(X.columns)
        values = X.to_numpy(dtype=np.float64)
        finite = np.isfinite(values)
        values_list = values.tolist()
        contrib_list = np.round(contrib, 6).tolist()
        hids = keys["household_id"].tolist()
        years = keys["year"].astype("int64").tolist()
        out = {}
        for r in range(len(X)):
            rs = reasons[r]
            en, zh = main_causes_text(rs["causes"])
            contributions = {n: c for n, c in zip(names, contrib_list[r]) if c != 0.0}
            feats = {n: v for n, v, ok in zip(names, values_list[r], finite[r].tolist()) if ok}
            api = {
                "risk": float(risk[r]), "score": float(score[r]), "tier": str(tier[r]),
                "eligible": bool(eligible[r]) if model.task == "relapse" else None,
                "main_causes_en": en, "main_causes_zh": zh, "causes": rs["causes"],
                "reasons_up": rs["up"], "reasons_down": rs["down"],
                "contributions": contributions if full else None, "model": lm.label,
            }
            store = {
                "risk": float(risk[r]), "score": float(score[r]), "tier": str(tier[r]),
                "eligible": bool(eligible[r]) if model.task == "relapse" else None,
                "features": feats,
                "contributions": contributions, "reasons": rs,
                "main_causes_en": en, "main_causes_zh": zh,
                "model_name": lm.name, "model_version": lm.version,
            }
            out[(hids[r], years[r])] = {
                "api": api, "store": store, "eligible": bool(eligible[r])}
        return out

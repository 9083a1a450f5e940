"""Dynamic management: enrolment, exit and relapse-watch review lists from the inference store.

`tpas roster review --year Y [--region CODE]` reads the latest score of each household for wave
year Y (as of a time, default now) and writes three lists per region (``roster.region_digits`` of
the village code; 6 = county), each household with its risks, registry status and the reasons of
its stored score:

- **enrolment** review: predicted poor (poverty tier in ``roster.enrolment.tiers`` or poverty risk
  >= ``min_risk``) and not enrolled (registry status in ``roster.enrolment.statuses``:
  not registered, or exited and found poor again). Ranked by poverty risk, highest first; the
  reasons are those pushing the poverty risk up.
- **exit** review: enrolled (status in ``roster.exit.statuses``: registered poor, monitored) and
  every poverty score of the household given in the last ``months`` months (waves up to Y) below
  ``max_risk``, with at least ``min_scores`` of them, so an official checks whether it meets the
  exit rules (income above the line for the required time, the two no-worries and three
  guarantees). Ranked by the highest risk in that window, lowest first; reasons: those pushing the
  risk down.
- **relapse watch**: relapse-eligible at its latest relapse score (left poverty or near the line:
  the stored ``eligible``) with relapse tier in ``roster.relapse_watch.tiers`` or relapse risk >=
  ``min_risk``. Ranked by relapse risk, highest first; reasons: those pushing it up.

Who is enrolled comes from the score rows themselves: since store revision 0002 the service stores
the registry status of the scored wave with every score (``registry_status``, ``poor_since_year``,
``exit_year``, ``monitoring_group``; registry facts, not personal data), so the status and the risk
always describe the same wave. A household whose latest score has no status (scored before 0002)
is counted as "status unknown" and put on no enrolment or exit list (re-score it); the relapse
watch does not need the status.

The lists go to the ``review_runs`` / ``review_lists`` tables (the service's ``GET /review-lists``
and the officials' page read the latest run covering a region), to one CSV file per list and
region (``$TPAS_DATA_DIR/roster/<run>/`` or ``--out``), and are printed as counts. Nothing in the
``scores`` table is changed. No household enters or leaves the registry automatically: the lists
are recommendations for officials, who decide after a visit.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from serving.store import REGION_LENGTHS, REVIEW_LISTS, InferenceStore
from tpas.config import RosterParams
from tpas.errors import TpasError

log = logging.getLogger("tpas.roster")

LIST_KINDS = REVIEW_LISTS  # ("enrolment", "exit", "relapse_watch")
NOTE_EN = ("These lists are recommendations for officials to review: no household enters or leaves the "
           "registry automatically; people decide, after a visit.")
NOTE_ZH = "名单仅为建议，供工作人员复核：系统不会自动将任何农户纳入或移出名单，由工作人员入户核实后决定。"
LIST_NAMES = {"enrolment": ("enrolment review", "纳入复核"), "exit": ("exit review", "退出复核"),
              "relapse_watch": ("relapse watch", "返贫监测关注")}
STATUS_NAMES = {"not_registered": ("not registered", "未建档立卡"), "registered_poor": ("registered poor", "建档立卡贫困户"),
                "exited": ("exited (lifted out)", "已脱贫"), "monitored": ("under relapse monitoring", "监测对象")}
TIER_NAMES = {"impoverished": ("impoverished", "贫困"), "likely_impoverished": ("likely impoverished", "疑似贫困"),
              "out_of_poverty": ("out of poverty", "非贫困"), "high_risk": ("high risk", "高风险"),
              "watch": ("watch", "需关注"), "stable": ("stable", "稳定")}
CSV_COLUMNS = ("rank", "household", "region_code", "region_group", "year", "registry_status", "monitoring_group",
               "poverty_risk", "poverty_tier", "relapse_risk", "relapse_tier", "why_en", "why_zh", "main_causes_en",
               "main_causes_zh", "top_reasons_en", "top_reasons_zh", "model", "scored_at")


class RosterError(TpasError):
    """A review run cannot be made as asked (bad region or year, no scores, unwritable folder)."""


@dataclass
class RosterRun:
    """One `tpas roster review` run: its lists (rows in region, rank order) and where they went."""

    run_id: str
    year: int
    scope: str
    as_of: datetime
    created_at: datetime
    params: dict
    lists: dict[str, list[dict]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    households: int = 0
    status_unknown: int = 0
    files: list[Path] = field(default_factory=list)
    out_dir: Path | None = None

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """{list: {region: households}} (zeros included)."""
        out = {k: {g: 0 for g in self.groups} for k in LIST_KINDS}
        for kind, rows in self.lists.items():
            for r in rows:
                out[kind][r["region_group"]] = out[kind].get(r["region_group"], 0) + 1
        return out

    @property
    def totals(self) -> dict[str, int]:
        return {k: len(self.lists.get(k, [])) for k in LIST_KINDS}


# -- arguments ------------------------------------------------------------------------------------------------------
def check_region(region: str | None) -> str:
    """'' (everywhere) or a 2/4/6/9/12-digit region code; `RosterError` otherwise."""
    region = "" if region is None else str(region).strip()
    if region and (not region.isdigit() or len(region) not in REGION_LENGTHS):
        raise RosterError(f"--region must be a region code of 2, 4, 6, 9 or 12 digits (got {region!r})")
    return region


def parse_as_of(text: str | datetime | None) -> datetime:
    """An ISO date or date-time (UTC if no zone; a date means the end of that day); now if None."""
    if text is None:
        return datetime.now(timezone.utc)
    if isinstance(text, datetime):
        value = text
    else:
        try:
            value = datetime.fromisoformat(str(text).strip())
        except ValueError:
            raise RosterError(f"--as-of must be an ISO date or date-time like 2026-04-01 or "
                              f"2026-04-01T12:00 (got {text!r})") from None
        if len(str(text).strip()) == 10:  # a date: the whole day counts
            value = value + timedelta(days=1) - timedelta(microseconds=1)
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def months_before(when: datetime, months: int) -> datetime:
    """`when` minus whole calendar months (day clipped to the month's length)."""
    import pandas as pd

    return (pd.Timestamp(when) - pd.DateOffset(months=int(months))).to_pydatetime()


# -- the rules --------------------------------------------------------------------------------------------------------
def _high(row: dict, tiers: list[str], min_risk: float | None) -> tuple[bool, bool]:
    """(tier rule met, risk rule met) of a score row."""
    return row["tier"] in tiers, min_risk is not None and float(row["risk"]) >= min_risk


def _status(pov: dict | None, rel: dict | None) -> dict:
    """The registry status of a household's scored wave (from its poverty score, else its relapse score)."""
    for row in (pov, rel):
        if row is not None and row.get("registry_status") is not None:
            return {k: row.get(k) for k in ("registry_status", "poor_since_year", "exit_year", "monitoring_group")}
    return {"registry_status": None, "poor_since_year": None, "exit_year": None, "monitoring_group": None}


def _pct(x: float) -> str:
    return f"{100 * float(x):.0f}%"


def _why(kind: str, row: dict, p: RosterParams) -> tuple[str, str]:
    """Why a household is on a list, in English and Chinese."""
    status = row.get("registry_status")
    st_en, st_zh = STATUS_NAMES.get(status, (status or "unknown", status or "未知"))
    if kind == "enrolment":
        tier_en, tier_zh = TIER_NAMES.get(row["poverty_tier"], (row["poverty_tier"], row["poverty_tier"]))
        return (f"Predicted poor: poverty risk {_pct(row['poverty_risk'])} (tier {tier_en}); registry status: {st_en}.",
                f"预测为贫困：贫困风险 {_pct(row['poverty_risk'])}（等级：{tier_zh}）；建档立卡状态：{st_zh}。")
    if kind == "exit":
        ev = row["evidence"]
        return (f"All {ev['scores_in_window']} poverty scores of the last {p.exit.months} months below "
                f"{_pct(p.exit.max_risk)} (highest {_pct(ev['max_risk_in_window'])}); registry status: {st_en}. "
                f"Check the exit rules before any decision.",
                f"近 {p.exit.months} 个月 {ev['scores_in_window']} 次评估的贫困风险均低于 {_pct(p.exit.max_risk)}"
                f"（最高 {_pct(ev['max_risk_in_window'])}）；建档立卡状态：{st_zh}。请按退出标准核实后再作决定。")
    tier_en, tier_zh = TIER_NAMES.get(row["relapse_tier"], (row["relapse_tier"], row["relapse_tier"]))
    return (f"Left poverty or near the line, relapse risk {_pct(row['relapse_risk'])} (tier {tier_en}).",
            f"已脱贫或处于监测线附近，返贫风险 {_pct(row['relapse_risk'])}（等级：{tier_zh}）。")


def select_lists(store: InferenceStore, year: int, region: str = "", params: RosterParams | None = None,
                 as_of: datetime | None = None) -> RosterRun:
    """Compute the three lists from the store (reads only; nothing is written)."""
    p = params if params is not None else RosterParams()
    region = check_region(region)
    as_of = parse_as_of(as_of)
    created = datetime.now(timezone.utc)
    run = RosterRun(run_id=f"{created:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}", year=int(year), scope=region,
                    as_of=as_of, created_at=created, params=p.model_dump(mode="json"))
    pov = {r["household_pid"]: r for r in store.latest_of_year("poverty", year, region, until=as_of)}
    rel = {r["household_pid"]: r for r in store.latest_of_year("relapse", year, region, until=as_of)}
    if not pov and not rel:
        years = store.years_scored(region)
        where = f"region {region}" if region else "any region"
        have = f"years with scores there: {', '.join(map(str, years))}" if years else "no household is scored there yet"
        raise RosterError(f"no scores of wave year {year} for {where} in the inference store at {store.safe_url} "
                          f"(given up to {as_of:%Y-%m-%d %H:%M} UTC); {have}")
    digits = p.region_digits
    since = months_before(as_of, p.exit.months)
    window = store.score_window("poverty", since, as_of, max_year=year, region_prefix=region)
    households = set(pov) | set(rel)
    run.households = len(households)
    run.groups = sorted({r["region_code"][:digits] for r in (*pov.values(), *rel.values())})

    def base(kind: str, pid: str, primary: dict, status: dict) -> dict:
        p_row, r_row = pov.get(pid), rel.get(pid)
        r_ok = r_row is not None and r_row.get("eligible") is True  # a relapse risk means something only then
        return {
            "run_id": run.run_id, "list_kind": kind, "region_group": primary["region_code"][:digits],
            "region_code": primary["region_code"], "household_pid": pid, "year": int(year), "rank": 0,
            "poverty_risk": None if p_row is None else float(p_row["risk"]),
            "poverty_score": None if p_row is None else float(p_row["score"]),
            "poverty_tier": None if p_row is None else p_row["tier"],
            "relapse_risk": float(r_row["risk"]) if r_ok else None,
            "relapse_score": float(r_row["score"]) if r_ok else None,
            "relapse_tier": r_row["tier"] if r_ok else None,
            "registry_status": status["registry_status"], "monitoring_group": status["monitoring_group"],
            "reasons": primary.get("reasons"), "main_causes_en": primary.get("main_causes_en"),
            "main_causes_zh": primary.get("main_causes_zh"), "model_name": primary.get("model_name"),
            "model_version": primary.get("model_version"), "scored_at": primary.get("scored_at"),
            "created_at": created,
        }

    lists: dict[str, list[tuple[tuple, dict]]] = {k: [] for k in LIST_KINDS}
    for pid in sorted(households):
        p_row, r_row = pov.get(pid), rel.get(pid)
        status = _status(p_row, r_row)
        if status["registry_status"] is None:
            run.status_unknown += 1
        elif p_row is not None:
            if status["registry_status"] in p.enrolment.statuses:
                tier_rule, risk_rule = _high(p_row, p.enrolment.tiers, p.enrolment.min_risk)
                if tier_rule or risk_rule:
                    row = base("enrolment", pid, p_row, status)
                    row["evidence"] = {"tier_rule": tier_rule, "risk_rule": risk_rule,
                                       "min_risk": p.enrolment.min_risk, "tiers": p.enrolment.tiers}
                    lists["enrolment"].append(((-row["poverty_risk"], pid), row))
            if status["registry_status"] in p.exit.statuses:
                w = window.get(pid)
                if w is not None and w["n"] >= p.exit.min_scores and float(w["max_risk"]) < p.exit.max_risk:
                    row = base("exit", pid, p_row, status)
                    row["evidence"] = {"scores_in_window": int(w["n"]), "max_risk_in_window": float(w["max_risk"]),
                                       "min_risk_in_window": float(w["min_risk"]), "months": p.exit.months,
                                       "window_from": since.isoformat(), "window_to": as_of.isoformat(),
                                       "first_in_window": w["first"].isoformat(),
                                       "last_in_window": w["last"].isoformat(),
                                       "max_risk": p.exit.max_risk}
                    lists["exit"].append(((float(w["max_risk"]), row["poverty_risk"], pid), row))
        if r_row is not None and r_row.get("eligible") is True:
            tier_rule, risk_rule = _high(r_row, p.relapse_watch.tiers, p.relapse_watch.min_risk)
            if tier_rule or risk_rule:
                row = base("relapse_watch", pid, r_row, status)
                row["evidence"] = {"eligible": True, "tier_rule": tier_rule, "risk_rule": risk_rule,
                                   "min_risk": p.relapse_watch.min_risk, "tiers": p.relapse_watch.tiers}
                lists["relapse_watch"].append(((-row["relapse_risk"], pid), row))

    for kind, keyed in lists.items():
        keyed.sort(key=lambda kr: (kr[1]["region_group"], kr[0]))
        rank, group = 0, None
        out = []
        for _, row in keyed:
            rank = rank + 1 if row["region_group"] == group else 1
            group = row["region_group"]
            row["rank"] = rank
            en, zh = _why(kind, row, p)
            row["evidence"].update(why_en=en, why_zh=zh)
            out.append(row)
        run.lists[kind] = out
    return run


# -- outputs -----------------------------------------------------------------------------------------------------------
def _sentences(row: dict, lang: str, k: int = 3) -> str:
    reasons = row.get("reasons") or {}
    side = "down" if row["list_kind"] == "exit" else "up"
    sep = "；" if lang == "zh" else "; "
    return sep.join(r.get(f"sentence_{lang}", "") for r in (reasons.get(side) or [])[:k])


def csv_frame(rows: list[dict]):
    """A list's rows as the CSV table (columns `CSV_COLUMNS`)."""
    import pandas as pd

    def fmt(x):
        return None if x is None else round(float(x), 4)

    return pd.DataFrame([{
        "rank": r["rank"], "household": r["household_pid"], "region_code": r["region_code"],
        "region_group": r["region_group"], "year": r["year"], "registry_status": r["registry_status"],
        "monitoring_group": r["monitoring_group"], "poverty_risk": fmt(r["poverty_risk"]),
        "poverty_tier": r["poverty_tier"], "relapse_risk": fmt(r["relapse_risk"]), "relapse_tier": r["relapse_tier"],
        "why_en": r["evidence"]["why_en"], "why_zh": r["evidence"]["why_zh"], "main_causes_en": r["main_causes_en"],
        "main_causes_zh": r["main_causes_zh"], "top_reasons_en": _sentences(r, "en"),
        "top_reasons_zh": _sentences(r, "zh"),
        "model": f"{r['model_name']}/{r['model_version']}" if r.get("model_name") else None,
        "scored_at": r["scored_at"].isoformat() if isinstance(r.get("scored_at"), datetime) else r.get("scored_at"),
    } for r in rows], columns=list(CSV_COLUMNS))


def prepare_out(out: Path) -> Path:
    """Create the output folder (`RosterError` if it cannot be)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RosterError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{secrets.token_hex(4)}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise RosterError(f"cannot write the review lists to {out}: {exc.strerror or exc}") from None
    return out


def write_csv(run: RosterRun, out: Path) -> list[Path]:
    """One CSV per list and region (``<list>-<region>.csv``, empty lists too) and ``run.json``."""
    out = prepare_out(out)
    files = []
    for kind in LIST_KINDS:
        by_group: dict[str, list[dict]] = {g: [] for g in run.groups}
        for r in run.lists.get(kind, []):
            by_group.setdefault(r["region_group"], []).append(r)
        for group, rows in sorted(by_group.items()):
            path = out / f"{kind}-{group}.csv"
            try:
                csv_frame(rows).to_csv(path, index=False, encoding="utf-8")
            except OSError as exc:
                raise RosterError(f"cannot write {path}: {exc.strerror or exc}") from None
            files.append(path)
    summary = {"run_id": run.run_id, "year": run.year, "region": run.scope or "all", "as_of": run.as_of.isoformat(),
               "created_at": run.created_at.isoformat(), "households": run.households,
               "status_unknown": run.status_unknown, "counts": run.counts, "params": run.params,
               "note_en": NOTE_EN, "note_zh": NOTE_ZH}
    (out / "run.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    run.files, run.out_dir = files, out
    return files


def save(store: InferenceStore, run: RosterRun) -> int:
    """Store the run and its lists (``review_runs``, ``review_lists``); returns the rows written."""
    rows = [r for kind in LIST_KINDS for r in run.lists.get(kind, [])]
    record = {"run_id": run.run_id, "year": run.year, "scope": run.scope, "as_of": run.as_of,
              "created_at": run.created_at, "params": run.params,
              "counts": {"lists": run.counts, "households": run.households, "status_unknown": run.status_unknown}}
    return store.save_review_run(record, rows)


def review(store: InferenceStore, year: int, region: str | None = None, params: RosterParams | None = None,
           out: Path | None = None, as_of: Any = None, data_dir: Path | None = None) -> RosterRun:
    """The whole run: check the arguments, compute the lists, write the CSV files, store the lists."""
    region = check_region(region)
    as_of = parse_as_of(as_of)
    if out is not None:
        prepare_out(out)  # a bad folder fails before any work
    run = select_lists(store, year, region, params, as_of)
    if out is None:
        if data_dir is None:
            from tpas.settings import get_settings

            data_dir = get_settings().data_dir
        out = Path(data_dir) / "roster" / run.run_id
    write_csv(run, out)
    save(store, run)
    log.info("roster run %s (year %s, region %s): %s", run.run_id, year, region or "all", run.totals)
    return run

"""`tpas monitor run`: one task's window against its model's reference, reported, stored and alerted on.

`monitor_task` does, for one task:

1. read the window's scores from the inference store (`monitoring.window`): the latest score of
   each household, from the champion's rows (or the version that scored the window);
2. load that model version and what was logged with it (`monitoring.context`);
3. build the frames and the Evidently report, run it (`monitoring.drift`);
4. judge targeting quality on reported outcomes, if any (`monitoring.quality`);
5. save the report as HTML and JSON (Evidently's snapshot dict with a ``tpas`` summary added) under
   ``<data>/monitoring/reports/<task>-<timestamp>.{html,json}`` (or `out_dir`), add the snapshot to
   the Evidently workspace ``<data>/monitoring/workspace`` (project ``tpas-<task>``), and on a failed
   test or a retraining recommendation write the alert (`monitoring.alerts`).
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tpas.config import Params

TASKS = ("poverty", "relapse")


def monitoring_dir() -> Path:
    from tpas.settings import get_settings

    return get_settings().data_dir / "monitoring"


def workspace_dir() -> Path:
    return monitoring_dir() / "workspace"


@dataclass
class TaskRun:
    """The outcome of one task's monitoring run."""

    task: str
    summary: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def alert(self) -> bool:
        return self.status == "alert"


def add_to_workspace(task: str, snapshot, path: Path) -> dict[str, str]:
    """Add a snapshot to the local Evidently workspace at `path` (project ``tpas-<task>``, created once)."""
    from evidently.ui.workspace import Workspace

    path.mkdir(parents=True, exist_ok=True)
    ws = Workspace.create(str(path))
    name = f"tpas-{task}"
    found = ws.search_project(name)
    if found:
        project = found[0]
    else:
        project = ws.create_project(name, description=f"TPAS-ML {task} model: drift, data quality and targeting "
                                                      f"quality of the served scores (tpas monitor run)")
        _dashboard(project)
    ref = ws.add_run(project.id, snapshot)
    return {"path": str(path), "project": name, "project_id": str(project.id), "snapshot_id": str(ref.id)}


def _dashboard(project) -> None:
    """Panels of a new project: the tested figures and the shock indicators, run after run."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    def drift(column: str, legend: str) -> PanelMetric:
        return PanelMetric(legend=legend, metric="evidently:metric_v2:ValueDrift", metric_labels={"column": column})

    project.dashboard.add_panel(line_plot_panel(
        title="Share of drifted feature columns (test: below monitoring.max_drifted_share)", size="half",
        values=[PanelMetric(legend="share", metric="evidently:metric_v2:DriftedColumnsCount",
                            metric_labels={"value_type": "share"})]))
    project.dashboard.add_panel(line_plot_panel(
        title="Risk score drift", size="half",
        values=[drift("risk_recent", "PSI vs the latest held-out year (test: below monitoring.max_risk_psi)"),
                drift("risk", "normed Wasserstein vs the training reference")]))
    project.dashboard.add_panel(line_plot_panel(
        title="Shock indicators: drift from the training reference",
        values=[drift("disaster_affected", "hit by a natural disaster 受灾"),
                drift("disaster_loss_yuan", "disaster loss 灾害损失"),
                drift("migrant_months", "months of migrant work 外出务工月数"),
                drift("n_migrant_workers", "migrant workers 外出务工人数")]))


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"


def monitor_task(task: str, since: datetime, until: datetime, params: Params, store, out_dir: Path | None = None,
                 workspace: bool = True, now: datetime | None = None) -> TaskRun:
    """Monitor one task over [since, until) (see module docstring)."""
    from monitoring.alerts import write_alert
    from monitoring.context import load_model_context, model_versions, officials_words
    from monitoring.drift import (build_frames, build_report, quick_drift, ranked_columns, read_snapshot,
                                  since_previous)
    from monitoring.quality import targeting_quality
    from monitoring.window import load_window

    mp = params.monitoring
    now = now or datetime.now(timezone.utc)
    stamp = _stamp(now)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    champion = model_versions(task)["champion"]
    window = load_window(store, task, since, until, champion, lookback_days=mp.previous_days)
    seconds["read_store"] = time.perf_counter() - t0
    base = {"task": task, "created": now.isoformat(timespec="seconds"),
            "window": {"since": since.isoformat(timespec="seconds"), "until": until.isoformat(timespec="seconds")},
            "scores_read": window.scores_read}
    if window.rows.empty:
        return TaskRun(task, {**base, "status": "no_data", "notes": window.notes}, seconds)

    t = time.perf_counter()
    ctx = load_model_context(task, window.model_version)
    seconds["load_model"] = time.perf_counter() - t
    t = time.perf_counter()
    frames = build_frames(ctx, window, mp)
    quick = quick_drift(frames, mp)
    summary_cols = sorted(quick, key=quick.get, reverse=True)[:mp.top_columns]
    plan = build_report(frames, mp, summary_cols,
                        metadata={"task": task, "model": ctx.label, "since": base["window"]["since"],
                                  "until": base["window"]["until"]},
                        tags=[task, f"version-{ctx.version}"])
    seconds["build_frames"] = time.perf_counter() - t
    t = time.perf_counter()
    with warnings.catch_warnings():  # Evidently 0.7 on pandas 2.3: FutureWarnings about its own calls
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = plan.report.run(plan.current, plan.reference,
                                   name=f"{task} {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} ({ctx.label})")
    seconds["evidently_run"] = time.perf_counter() - t
    snap = snapshot.dict()
    result = read_snapshot(snap)

    t = time.perf_counter()
    quality = targeting_quality(store, task, window.model_version, ctx.heldout_metrics, params, until)
    seconds["targeting_quality"] = time.perf_counter() - t

    t = time.perf_counter()
    previous = since_previous(frames, window, mp)
    seconds["since_previous"] = time.perf_counter() - t

    info = ctx.info()
    if previous:
        ranked = sorted(previous["columns"].items(), key=lambda kv: kv[1]["score"] / kv[1]["threshold"], reverse=True)
        previous["top_changed"] = [{**officials_words(info.get(k), k), **v} for k, v in ranked[:mp.top_columns]]
        previous["columns"] = {k: v for k, v in ranked}
    top = []
    for name, entry in ranked_columns(result)[:mp.top_columns]:
        top.append({**officials_words(info.get(name), name), **entry})
    failed = []
    for test in result.failed:
        item = dict(test)
        if test.get("column") in info:
            item["words"] = officials_words(info[test["column"]], test["column"])["words"]
        elif test.get("column") == "risk_recent":
            item["words"] = f"risk score against the model's held-out scores of {frames.recent_year}"
        failed.append(item)
    passed = sum(1 for x in result.tests if x["status"] == "SUCCESS")
    retrain = bool(quality and quality["retrain"])
    notes = list(window.notes)
    if len(frames.current) < mp.min_rows:
        notes.append(f"only {len(frames.current):,} households in the window (fewer than monitoring.min_rows = "
                     f"{mp.min_rows}): drift figures are noisy")
    if frames.skipped:
        notes.append(f"{len(frames.skipped)} feature(s) not compared: " + ", ".join(
            f"{k} ({v})" for k, v in list(frames.skipped.items())[:5]) + (" ..." if len(frames.skipped) > 5 else ""))
    if frames.recent_year is None:
        notes.append("no held-out predictions were logged with this model: the risk score is compared with the "
                     "training reference only, without a test")

    out = Path(out_dir) if out_dir is not None else monitoring_dir() / "reports"
    out.mkdir(parents=True, exist_ok=True)
    html, js = out / f"{task}-{stamp}.html", out / f"{task}-{stamp}.json"
    status = "alert" if failed or retrain else "ok"
    summary = {
        **base, "status": status, "model": ctx.label, "model_version": ctx.version, "run_id": ctx.run_id,
        "model_versions_in_window": window.versions, "wave_year": window.year,
        "rows_compared": int(len(frames.current)), "not_eligible": window.not_eligible,
        "reference": {"rows": int(len(frames.reference)), "years": frames.reference_years,
                      "artifact": "reference/reference.parquet"},
        "drift": {"share_drifted": result.share_drifted, "drifted_count": result.drifted_count,
                  "columns_compared": len(frames.drift_columns), "max_share": mp.max_drifted_share,
                  "num_method": mp.num_method, "cat_method": mp.cat_method,
                  "num_threshold": mp.num_threshold, "cat_threshold": mp.cat_threshold,
                  "numerical": frames.numerical, "categorical": frames.categorical,
                  "not_compared": frames.skipped,
                  "columns": {k: {**v, **{x: officials_words(info.get(k), k)[x] for x in ("en", "zh", "cause")}}
                              for k, v in result.columns.items()}},
        "risk": {"vs_reference": result.risk_vs_reference, "vs_recent": result.risk_vs_recent,
                 "recent_year": frames.recent_year, "recent_rows": frames.recent_rows},
        "top_drifted": top,
        "since_previous": previous,
        "tests": {"passed": passed, "failed": failed, "all": result.tests},
        "targeting_quality": quality, "retrain": retrain, "notes": notes,
        "report": {"html": str(html), "json": str(js)},
    }
    t = time.perf_counter()
    snapshot.save_html(str(html))
    seconds["save_html"] = time.perf_counter() - t
    if workspace:
        t = time.perf_counter()
        summary["workspace"] = add_to_workspace(task, snapshot, workspace_dir())
        seconds["workspace"] = time.perf_counter() - t
    if status == "alert":
        summary["alert"] = str(write_alert(summary, monitoring_dir() / "alerts", stamp))
    summary["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    js.write_text(json.dumps({**snap, "tpas": summary}, ensure_ascii=False, default=_plain), encoding="utf-8")
    return TaskRun(task, summary, seconds)


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars and other plain values."""
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)

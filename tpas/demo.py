"""`tpas demo` / `make demo`: the main job end to end on embedded defaults.

Generate a synthetic registry panel, validate it, export one wave as a registry system
would, build the `poverty`, `relapse` and `idb-level` training sets, train LightGBM and the
baselines, promote the models that pass the quality gate, score the latest wave with the
champion and show the runs side by side. Later stages (serving, monitoring) extend it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import typer

from tpas.settings import PROJECT_ROOT, get_settings

IDB_SURVEY = PROJECT_ROOT.parent / "shared" / "data" / "idb-costa-rica" / "survey.csv"


def idb_survey_path() -> Path | None:
    """The IDB survey shipped beside the checkout (``../shared/data/idb-costa-rica/survey.csv``), if present."""
    import os

    env = os.environ.get("TPAS_IDB_SURVEY")
    path = Path(env) if env else IDB_SURVEY
    return path if path.exists() else None


def run_demo(out: Path | None = None) -> None:
    """Run the demo into `out` (default ``$TPAS_DATA_DIR/demo``), printing each step."""
    from features.build import build_training_set
    from features.sources.registry import load_registry, write_registry_export
    from features.sources.synthetic import generate_panel
    from tpas.cli import _panel_line, _params, _training_set_line

    params = _params()
    settings = get_settings()
    out = Path(out) if out else settings.ensure_data_dir() / "demo"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()

    typer.secho("1/9 generating a synthetic registry panel", bold=True)
    panel = out / "panel"
    manifest = generate_panel(panel, households=params.demo.households, years=params.demo.years.years,
                              seed=params.demo.seed, params=params, progress=False)
    typer.echo(f"    {_panel_line(manifest)} -> {panel}")

    typer.secho("2/9 validating the panel against the canonical schema", bold=True)
    records, report = load_registry(panel, rejects_path=out / "panel.rejects.csv")
    typer.echo("    " + report.summary().replace("\n", "\n    "))

    last = max(records.years)
    typer.secho(f"3/9 exporting wave {last} as a registry system would (CSV)", bold=True)
    export = write_registry_export(records.select_years(first=last), out / f"export-{last}", fmt="csv")
    _, export_report = load_registry(export)
    typer.echo(f"    {export} re-read: " + "; ".join(t.line() for t in export_report.tables))

    typer.secho("4/9 building training sets", bold=True)
    for task in ("poverty", "relapse"):
        m = build_training_set(task, panel, out / "training" / task, params)
        typer.echo("    " + _training_set_line(m, out / "training" / task))
    survey = idb_survey_path()
    if survey is None:
        typer.echo("    idb-level: skipped, the IDB survey is not beside the checkout (set TPAS_IDB_SURVEY)")
    else:
        m = build_training_set("idb-level", survey, out / "training" / "idb-level", params)
        typer.echo("    " + _training_set_line(m, out / "training" / "idb-level"))
    typer.secho("5/9 training LightGBM and the baselines, logging to MLflow, promoting through the gate",
                bold=True)
    from training.commands import compare, predict, train
    from training.tracking import GateFailed

    runs = [("poverty", "pmt"), ("poverty", "scorecard"), ("relapse", "rules"), ("relapse", "pmt")]
    for task, kind in runs:
        typer.echo("    " + train(task, out / "training" / task, kind, params)[0])
    for task in ("poverty", "relapse"):
        try:
            lines = train(task, out / "training" / task, "lightgbm", params, promote_after=True)
        except GateFailed as exc:  # the system recommends, people decide: report and go on
            typer.secho(f"    {exc}", fg=typer.colors.YELLOW)
            continue
        typer.echo("    " + "\n    ".join(lines))
        with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
            table = compare(task)[["model", "auc", "exclusion_err", "calib_err", "train_s"]]
            typer.echo("    " + table.to_string(index=False).replace("\n", "\n    "))

    typer.secho(f"6/9 scoring wave {last} with the champions", bold=True)
    for task in ("poverty", "relapse"):
        try:
            for line in predict(task, None, panel, out / "scores" / f"{task}-{last}.csv", year=last)[1:]:
                typer.echo("    " + line)
        except Exception as exc:  # no champion (gate refused): say so, keep the demo going
            typer.secho(f"    {task}: not scored ({exc})", fg=typer.colors.YELLOW)
    where = _serve_monitor_review(out, records, last, settings)
    typer.secho("where to look", bold=True)
    typer.echo(f"    MLflow UI: mlflow ui --backend-store-uri {settings.tracking_uri}")
    for line in where:
        typer.echo("    " + line)
    typer.secho(f"demo finished in {time.perf_counter() - t0:.0f} s; everything is under {out}", fg=typer.colors.GREEN)


def _run_tpas(*args: str) -> int:
    """Run a `tpas` command in its own process (its output goes to ours); returns the exit code."""
    import subprocess
    import sys

    return subprocess.run([str(Path(sys.executable).with_name("tpas")), *args]).returncode


def _serve_monitor_review(out: Path, records, last: int, settings) -> list[str]:
    """Steps 7-9: serve the champions, score the latest wave through the API, simulate the next waves,
    monitor them, write the review lists. Returns the lines saying where to look."""
    import httpx

    from serving.auth import create_key
    from serving.launch import start_server, stop_server
    from serving.payload import batches, records_to_payload
    from serving.store import InferenceStore
    from serving.scoring import NoChampion, champion_versions

    try:
        champion_versions()
    except NoChampion as exc:  # the gate refused a model: say so, keep the demo going
        typer.secho(f"7/9 skipped: {exc}", fg=typer.colors.YELLOW)
        return []
    store = InferenceStore()
    store.migrate()
    registry_key = create_key(store, "registry", label="demo registry")[1]
    county = str(records.households["village_code"].iloc[0])[:6]
    official_key = create_key(store, "official", region_code=county, label="demo official")[1]
    store.close()
    typer.secho("7/9 starting the scoring service and scoring wave "
                f"{last} through POST /score", bold=True)
    proc, url = start_server(out / "service.log")
    typer.echo(f"    serving on {url}")
    try:
        t0 = time.perf_counter()
        scored = rejected = 0
        payload = records_to_payload(records, year=last, max_previous=3)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {registry_key}"}, timeout=300) as c:
            for batch in batches(payload, 500):
                r = c.post("/score", json={"households": batch})
                body = r.json()
                scored += body.get("scored", 0)
                rejected += body.get("rejected", 0)
        typer.echo(f"    {scored:,} households scored, {rejected:,} rejected, in {time.perf_counter() - t0:.1f} s "
                   f"(every score recorded in the inference store with a pseudonymous id)")
        typer.secho("8/9 simulating the next wave (steady, then a shock) through the service and monitoring it",
                    bold=True)
        _run_tpas("monitor", "simulate", "--scenario", "steady", "--url", url, "--key", registry_key)
        code = _run_tpas("monitor", "run")
        typer.echo(f"    monitor run after the steady wave: exit {code} ({'no alert' if code == 0 else 'ALERT'})")
        _run_tpas("monitor", "simulate", "--scenario", "shock", "--url", url, "--key", registry_key)
        code = _run_tpas("monitor", "run")
        typer.echo(f"    monitor run after the shocked wave: exit {code} ({'no alert' if code == 0 else 'alert raised'})")
    finally:
        stop_server(proc)
    typer.secho(f"9/9 review lists for wave {last + 1} (recommendations: people decide)", bold=True)
    _run_tpas("roster", "review", "--year", str(last + 1))
    reports = settings.data_dir / "monitoring" / "reports"
    return [
        f"officials' page: `make serve`, then http://127.0.0.1:3000/officials with the demo official key "
        f"(county {county}): {official_key}",
        f"Evidently reports: {reports} (history: evidently ui --workspace {settings.data_dir / 'monitoring' / 'workspace'})",
        f"alerts: {settings.data_dir / 'monitoring' / 'alerts'}; review lists: {settings.data_dir / 'roster'}",
    ]

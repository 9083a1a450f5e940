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

    typer.secho("1/6 generating a synthetic registry panel", bold=True)
    panel = out / "panel"
    manifest = generate_panel(panel, households=params.demo.households, years=params.demo.years.years,
                              seed=params.demo.seed, params=params, progress=False)
    typer.echo(f"    {_panel_line(manifest)} -> {panel}")

    typer.secho("2/6 validating the panel against the canonical schema", bold=True)
    records, report = load_registry(panel, rejects_path=out / "panel.rejects.csv")
    typer.echo("    " + report.summary().replace("\n", "\n    "))

    last = max(records.years)
    typer.secho(f"3/6 exporting wave {last} as a registry system would (CSV)", bold=True)
    export = write_registry_export(records.select_years(first=last), out / f"export-{last}", fmt="csv")
    _, export_report = load_registry(export)
    typer.echo(f"    {export} re-read: " + "; ".join(t.line() for t in export_report.tables))

    typer.secho("4/6 building training sets", bold=True)
    for task in ("poverty", "relapse"):
        m = build_training_set(task, panel, out / "training" / task, params)
        typer.echo("    " + _training_set_line(m, out / "training" / task))
    survey = idb_survey_path()
    if survey is None:
        typer.echo("    idb-level: skipped, the IDB survey is not beside the checkout (set TPAS_IDB_SURVEY)")
    else:
        m = build_training_set("idb-level", survey, out / "training" / "idb-level", params)
        typer.echo("    " + _training_set_line(m, out / "training" / "idb-level"))
    typer.secho("5/6 training LightGBM and the baselines, logging to MLflow, promoting through the gate",
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

    typer.secho(f"6/6 scoring wave {last} with the champions", bold=True)
    for task in ("poverty", "relapse"):
        try:
            for line in predict(task, None, panel, out / "scores" / f"{task}-{last}.csv", year=last)[1:]:
                typer.echo("    " + line)
        except Exception as exc:  # no champion (gate refused): say so, keep the demo going
            typer.secho(f"    {task}: not scored ({exc})", fg=typer.colors.YELLOW)
    typer.echo(f"    MLflow UI: mlflow ui --backend-store-uri {settings.tracking_uri}")
    typer.secho(f"demo finished in {time.perf_counter() - t0:.0f} s; everything is under {out}", fg=typer.colors.GREEN)

"""`tpas demo` / `make demo`: the main job end to end on embedded defaults.

Today: generate a synthetic registry panel, validate it, export one wave as a registry
system would, and build the `poverty`, `relapse` and `idb-level` training sets. Later stages
(training, serving, monitoring) extend this script.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

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

    typer.secho("1/4 generating a synthetic registry panel", bold=True)
    panel = out / "panel"
    manifest = generate_panel(panel, households=params.demo.households, years=params.demo.years.years,
                              seed=params.demo.seed, params=params, progress=False)
    typer.echo(f"    {_panel_line(manifest)} -> {panel}")

    typer.secho("2/4 validating the panel against the canonical schema", bold=True)
    records, report = load_registry(panel, rejects_path=out / "panel.rejects.csv")
    typer.echo("    " + report.summary().replace("\n", "\n    "))

    last = max(records.years)
    typer.secho(f"3/4 exporting wave {last} as a registry system would (CSV)", bold=True)
    export = write_registry_export(records.select_years(first=last), out / f"export-{last}", fmt="csv")
    _, export_report = load_registry(export)
    typer.echo(f"    {export} re-read: " + "; ".join(t.line() for t in export_report.tables))

    typer.secho("4/4 building training sets", bold=True)
    for task in ("poverty", "relapse"):
        m = build_training_set(task, panel, out / "training" / task, params)
        typer.echo("    " + _training_set_line(m, out / "training" / task))
    survey = idb_survey_path()
    if survey is None:
        typer.echo("    idb-level: skipped, the IDB survey is not beside the checkout (set TPAS_IDB_SURVEY)")
    else:
        m = build_training_set("idb-level", survey, out / "training" / "idb-level", params)
        typer.echo("    " + _training_set_line(m, out / "training" / "idb-level"))
    typer.secho(f"demo finished in {time.perf_counter() - t0:.0f} s; everything is under {out}", fg=typer.colors.GREEN)

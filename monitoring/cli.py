"""`tpas monitor ...`: drift, data quality and targeting quality of the served models (Evidently).

Exit codes: 0 all tests passed; 1 an alert (a failed test, or retraining recommended: the alert
file is written); 2 a usage error (bad option, no model, nothing in the window), one ``error:`` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tpas.cli_common import friendly as _friendly
from tpas.cli_common import load_params as _params

monitor_app = typer.Typer(help="Monitoring: drift, data quality, targeting quality (Evidently).", no_args_is_help=True)

TASKS = ("poverty", "relapse")


def _tasks(task: Optional[str]) -> tuple[str, ...]:
    from tpas.errors import DataError

    if task is None:
        return TASKS
    if task not in TASKS:
        raise DataError(f"--task must be poverty or relapse (got {task!r})")
    return (task,)


@monitor_app.command("run")
@_friendly
def run(
    task: Annotated[Optional[str], typer.Option(help="poverty or relapse (default: both).")] = None,
    since: Annotated[Optional[str], typer.Option(help="Window start, a date or date-time (UTC), inclusive "
                                                      "(default: monitoring.window_days before --until).")] = None,
    until: Annotated[Optional[str], typer.Option(help="Window end, exclusive (default: now).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the HTML and JSON reports "
                                                     "(default: <data>/monitoring/reports).")] = None,
    workspace: Annotated[bool, typer.Option(help="Add the report to the Evidently workspace.")] = True,
) -> None:
    """Compare the window's scores with the champion's reference: drift, data quality, targeting quality.

    Exits 1 and writes an alert (log line + <data>/monitoring/alerts/<task>-<time>.json) when a test
    fails or retraining is recommended.
    """
    from monitoring.alerts import summary_lines
    from monitoring.run import monitor_task
    from monitoring.window import resolve_window
    from serving.store import InferenceStore
    from tpas.errors import DataError

    params = _params()
    tasks = _tasks(task)
    start, end = resolve_window(since, until, params.monitoring.window_days)
    store = InferenceStore()
    runs = []
    try:
        store.migrate()
        for t in tasks:
            runs.append(monitor_task(t, start, end, params, store, out_dir=out, workspace=workspace))
    finally:
        store.close()
    empty = [r for r in runs if r.status == "no_data"]
    if len(empty) == len(runs):
        which = " or ".join(tasks)
        raise DataError(f"no {which} score in the window {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: "
                        f"nothing to monitor (widen it with --since, or score households first)")
    for r in runs:
        for line in summary_lines(r.summary):
            typer.echo(line)
    alerts = [r for r in runs if r.alert]
    if alerts:
        from monitoring.alerts import alert_line

        for r in alerts:
            typer.secho(alert_line(r.summary), err=True, fg=typer.colors.RED)
        raise typer.Exit(1)


@monitor_app.command("simulate")
@_friendly
def simulate(
    scenario: Annotated[str, typer.Option(help="steady (the same process) or shock (disaster in some counties "
                                               "and a collapse of migrant work).")],
    households: Annotated[Optional[int], typer.Option(help="Score this many households of the wave (seeded "
                                                           "sample; default: all).")] = None,
    url: Annotated[Optional[str], typer.Option(help="Post to this running service's /score instead of scoring "
                                                    "in process.")] = None,
    key: Annotated[Optional[str], typer.Option(help="Registry API key of the service at --url.")] = None,
    year: Annotated[Optional[int], typer.Option(help="Wave year (default: the year after the panel's last; "
                                                     "later years are simulated on, the shock in this one).")] = None,
    counties: Annotated[Optional[str], typer.Option(help="Shock: comma-separated 6-digit county codes (default: "
                                                         "a seeded share monitoring.shock.disaster_county_share).")]
    = None,
) -> None:
    """Generate the next wave of the champions' own synthetic panel and score it into the inference store."""
    from monitoring.simulate import simulate as run_simulation
    from tpas.errors import DataError

    if scenario not in ("steady", "shock"):
        raise DataError(f"--scenario must be steady or shock (got {scenario!r})")
    if counties and scenario != "shock":
        raise DataError("--counties applies to --scenario shock only")
    chosen = [c.strip() for c in counties.split(",") if c.strip()] if counties else None
    info = run_simulation(scenario, _params(), households=households, url=url, key=key, year=year, counties=chosen)
    what = "the same process"
    if scenario == "shock":
        names = ", ".join(f"{name} ({code})" for code, name in info["disaster_counties"].items())
        what = (f"disaster in {names} (severity {info['disaster_severity']}), migrant work x {info['migrant_factor']}")
    typer.echo(f"{scenario} wave {info['year']} of {info['panel']}: {info['households_in_wave']:,} households; {what}")
    typer.echo(f"scored {info['scored']:,} of {info['sent']:,} households ({info['rejected']:,} rejected by "
               f"validation) {info['via']} in {info['score_seconds']:.1f} s"
               + (f"; {info['written']:,} score rows stored" if "written" in info else "; stored by the service")
               + (f", {info['spooled']:,} spooled" if info.get("spooled") else ""))
    typer.echo(f"wave kept in {info['wave_folder']}")
    typer.echo("next: `tpas monitor run`")

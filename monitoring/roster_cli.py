"""`tpas roster ...`: review lists for enrolment, exit and relapse watch (recommendations; people decide)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tpas.cli_common import friendly as _friendly
from tpas.cli_common import load_params

roster_app = typer.Typer(help="Dynamic management: enrolment, exit and relapse-watch review lists.",
                         no_args_is_help=True)


@roster_app.command("review")
@_friendly
def review(
    year: Annotated[int, typer.Option(min=1990, max=2100, help="Wave year of the scores to review, e.g. 2025.")],
    region: Annotated[Optional[str], typer.Option(
        help="Only this region: 2 (province), 4 (city), 6 (county), 9 (township) or 12 (village) digits. "
             "Default: everywhere.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        help="Folder for the CSV files (default: $TPAS_DATA_DIR/roster/<run>/).")] = None,
    as_of: Annotated[Optional[str], typer.Option(
        "--as-of", help="Use the scores given up to this ISO date or date-time (UTC); default: now.")] = None,
) -> None:
    """Enrolment, exit and relapse-watch review lists per region from the latest scores of wave YEAR.

    Thresholds and durations: params.yaml `roster`.

    The lists go to the inference store (GET /review-lists, the officials' page) and to CSV files.

    They are recommendations: no household enters or leaves the registry automatically.
    """
    from monitoring import roster
    from serving.store import InferenceStore
    from tpas.settings import get_settings

    region = roster.check_region(region)  # argument errors before the database is opened
    as_of_time = roster.parse_as_of(as_of)
    settings = get_settings()
    params = load_params().roster
    store = InferenceStore()
    try:
        store.migrate()  # the review tables (revision 0002), if the service has not created them yet
        run = roster.review(store, year, region, params, out=out, as_of=as_of_time, data_dir=settings.data_dir)
    finally:
        store.close()

    where = f"region {region}" if region else "every region"
    typer.echo(f"review lists of wave {year} for {where}: run {run.run_id}, scores given up to "
               f"{run.as_of:%Y-%m-%d %H:%M} UTC, {run.households} households scored")
    counts = run.counts
    typer.echo(f"{'list':<15} {'region':<12} {'households':>10}")
    for kind in roster.LIST_KINDS:
        for group in run.groups:
            typer.echo(f"{kind:<15} {group:<12} {counts[kind].get(group, 0):>10}")
    totals = run.totals
    typer.echo("total: " + ", ".join(f"{roster.LIST_NAMES[k][0]} {totals[k]}" for k in roster.LIST_KINDS))
    if run.status_unknown:
        typer.echo(f"{run.status_unknown} households have no registry status with their latest score (scored "
                   f"before the status was stored): they are on no enrolment or exit list until re-scored")
    typer.echo(f"stored in the inference store ({store.safe_url}) as run {run.run_id}: GET /review-lists, "
               f"the officials' page")
    typer.echo(f"CSV files ({len(run.files)}, one per list and region): {run.out_dir}")
    typer.echo(f"note: {roster.NOTE_EN}")

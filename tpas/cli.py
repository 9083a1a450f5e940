"""The `tpas` command line: one entry point for analysts and operators.

Every command reads `params.yaml` once (typed, validated) and the environment settings;
problems the user can fix (bad parameters, unreadable files) end with one clear line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tpas.cli_common import friendly as _friendly
from tpas.cli_common import load_params as _params

app = typer.Typer(help="TPAS-ML: poverty-risk and relapse targeting.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
data_app = typer.Typer(help="Household data: generate, validate, export.", no_args_is_help=True)
features_app = typer.Typer(help="Feature pipelines and training sets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")

from monitoring.cli import monitor_app  # noqa: E402  (light: commands import their work lazily)
from monitoring.roster_cli import roster_app  # noqa: E402

app.add_typer(monitor_app, name="monitor")
app.add_typer(roster_app, name="roster")
keys_app = typer.Typer(help="API keys of the scoring service.", no_args_is_help=True)
db_app = typer.Typer(help="The inference store (database of scores, outcomes, API keys).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")


def _years(text: str) -> list[int]:
    from tpas.config import YearRange
    from tpas.errors import ConfigError

    try:
        return YearRange.model_validate(text).years
    except Exception as exc:  # pydantic ValidationError: report in one line
        msg = str(exc).splitlines()[-2].strip() if "\n" in str(exc) else str(exc)
        raise ConfigError(f"--years: {msg}") from None


@data_app.command("synth")
@_friendly
def data_synth(
    out: Annotated[Path, typer.Option(help="Output folder (partitioned Parquet).")],
    households: Annotated[Optional[int], typer.Option(min=1, help="Households (default: params synth.households).")] = None,
    years: Annotated[Optional[str], typer.Option(help="Waves, e.g. 2016-2025 (default: params synth.years).")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, help="Random seed (default: params synth.seed).")] = None,
    chunk_households: Annotated[Optional[int], typer.Option(min=1, help="Households per chunk (memory bound).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Generate a synthetic registry panel of a province (documented in docs/synthetic_panel.md)."""
    params = _params()
    from features.sources.synthetic import generate_panel

    manifest = generate_panel(
        out, households=households or params.synth.households,
        years=_years(years) if years else params.synth.years.years,
        seed=params.synth.seed if seed is None else seed, params=params,
        chunk_households=chunk_households, progress=progress)
    typer.echo(f"wrote {out}: {_panel_line(manifest)}")


def _panel_line(manifest: dict) -> str:
    rows = manifest.get("rows", {})
    return (f"{manifest.get('households', '?'):,} households, years {manifest.get('years', '?')}, "
            f"{rows.get('households', '?'):,} household waves, {rows.get('members', '?'):,} member rows")


def _detect_kind(path: Path) -> str:
    if path.is_dir():
        return "registry"
    if path.suffix.lower() in (".csv", ".parquet"):
        try:
            head = path.open(encoding="utf-8", errors="replace").readline() if path.suffix.lower() == ".csv" else ""
        except OSError:
            head = ""
        if "idhogar" in head or path.suffix.lower() == ".parquet":
            return "idb"
    return "registry"


@data_app.command("validate")
@_friendly
def data_validate(
    path: Annotated[Path, typer.Argument(help="A registry export folder or an IDB survey file.")],
    kind: Annotated[str, typer.Option(help="auto, registry or idb.")] = "auto",
    rejects: Annotated[Optional[Path], typer.Option(help="Where to write the rejects CSV.")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 when any record is rejected.")] = False,
) -> None:
    """Check records against the schema: print counts, write every rejected record with its reason."""
    from tpas.errors import DataError
    from tpas.settings import get_settings

    if not path.exists():
        raise DataError(f"not found: {path}")
    kind = _detect_kind(path) if kind == "auto" else kind
    if rejects is None:
        rejects = get_settings().ensure_data_dir() / "rejects" / f"{path.stem or 'records'}.rejects.csv"
    if kind == "idb":
        from features.sources.idb import read_survey

        _, report = read_survey(path)
    elif kind == "registry":
        from features.sources.registry import load_registry

        _, report = load_registry(path)
    else:
        raise DataError(f"--kind must be auto, registry or idb (got {kind!r})")
    report.write_rejects(rejects)
    typer.echo(report.summary())
    typer.echo(f"rejects written to {rejects} ({len(report.rejects):,} problems)")
    if strict and report.n_rejected:
        raise typer.Exit(1)


@data_app.command("export")
@_friendly
def data_export(
    data: Annotated[Path, typer.Option(help="A synthetic panel or registry export folder.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    year: Annotated[Optional[int], typer.Option(help="Only this wave.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
) -> None:
    """Write records as a registry system hands them over (households + members, canonical schema)."""
    from features.records import HouseholdRecords
    from features.sources.registry import read_registry_tables, write_registry_export

    households, members, regions = read_registry_tables(data, years=[year] if year else None)
    write_registry_export(HouseholdRecords(households, members, regions), out, fmt=fmt)
    typer.echo(f"wrote {out}: {len(households):,} household waves, {len(members):,} member rows ({fmt})")


@features_app.command("build")
@_friendly
def features_build(
    task: Annotated[str, typer.Option(help="poverty, relapse or idb-level.")],
    data: Annotated[Path, typer.Option(help="Registry export / synthetic panel folder, or the IDB survey CSV.")],
    out: Annotated[Path, typer.Option(help="Output folder for dataset.parquet, featurizer.joblib, manifest.json.")],
) -> None:
    """Build a task's training set: labels, time/household split, fitted featurizer, manifest."""
    from features.build import build_training_set

    manifest = build_training_set(task, data, out, _params())
    typer.echo(_training_set_line(manifest, out))


def _training_set_line(manifest: dict, out: Path) -> str:
    rows = ", ".join(f"{k} {v:,}" for k, v in manifest["rows"].items())
    rates = ", ".join(f"{k} {v:.3f}" for k, v in manifest["label_rate"].items())
    return (f"{manifest['task']}: {rows} rows; label rate {rates}; {len(manifest['feature_columns'])} features "
            f"-> {out}")


@app.command("train")
@_friendly
def train(
    task: Annotated[str, typer.Option(help="poverty, relapse or idb-level.")],
    data: Annotated[Optional[Path], typer.Option(help="Training-set folder or raw data (default: "
                                                      "$TPAS_DATA_DIR/training/TASK).")] = None,
    model: Annotated[str, typer.Option(help="lightgbm, pmt, scorecard or rules.")] = "lightgbm",
    promote: Annotated[bool, typer.Option(help="Promote to champion if the quality gate passes.")] = False,
) -> None:
    """Train, evaluate on held-out data, log to MLflow and register a new model version."""
    from training.commands import train as run

    for line in run(task, data, model, _params(), promote_after=promote):
        typer.echo(line)


@app.command("tune")
@_friendly
def tune(
    task: Annotated[str, typer.Option(help="poverty, relapse or idb-level.")],
    trials: Annotated[Optional[int], typer.Option(min=1, help="Trials to add (default: params tune.trials).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Training-set folder (default: the task's).")] = None,
    storage: Annotated[Optional[str], typer.Option(help="Optuna RDB URL (default: SQLite in the data folder).")]
    = None,
) -> None:
    """Tune LightGBM with Optuna (resumable study, MLflow child runs); best parameters go where train reads."""
    from training.tune import tune as run

    params = _params()
    for line in run(task, trials or params.tune.trials, params, data, storage):
        typer.echo(line)


@app.command("promote")
@_friendly
def promote(
    task: Annotated[str, typer.Option(help="poverty, relapse or idb-level.")],
    version: Annotated[str, typer.Option(help="Registered model version.")],
) -> None:
    """Make a version the champion if it passes the quality gate (the old champion becomes 'previous')."""
    from training.tracking import promote as run

    typer.echo(run(task, version, _params()))


@app.command("compare")
@_friendly
def compare(task: Annotated[str, typer.Option(help="poverty, relapse or idb-level.")]) -> None:
    """Print the task's runs side by side (model, data hash, AUC, exclusion error, calibration, time)."""
    import pandas as pd

    from training.commands import compare as run

    table = run(task)
    if table.empty:
        typer.echo(f"no runs for {task} yet: train one with `tpas train --task {task}`")
        return
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        typer.echo(table.to_string(index=False))


@app.command("predict")
@_friendly
def predict(
    task: Annotated[str, typer.Option(help="poverty, relapse or idb-level.")],
    input: Annotated[Path, typer.Option(help="Registry export / panel folder, or the survey file for idb-level.")],
    out: Annotated[Path, typer.Option(help="Output file (.csv or .parquet).")],
    model: Annotated[Optional[str], typer.Option(help="Model URI (default: models:/tpas-TASK@champion).")] = None,
    year: Annotated[Optional[int], typer.Option(help="Score this wave (default: each household's latest).")] = None,
) -> None:
    """Score raw household records with a registered model: risk, score, tier and top reasons."""
    from training.commands import predict as run

    for line in run(task, model, input, out, year=year):
        typer.echo(line)


@app.command("score-batch")
@_friendly
def score_batch(
    task: Annotated[str, typer.Option(help="poverty or relapse.")],
    input: Annotated[str, typer.Option(help="Partitioned Parquet registry export folder, or a glob of such folders.")],
    out: Annotated[Path, typer.Option(help="Output folder (scores/, rejects/, summary, manifest.json).")],
    scheduler: Annotated[str, typer.Option(help="Dask scheduler address, or 'local' for a local cluster.")] = "local",
    year: Annotated[Optional[int], typer.Option(help="Score this wave (default: each household's latest).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes of the local cluster.")] = 2,
    model: Annotated[Optional[str], typer.Option(help="Model URI (default: models:/tpas-TASK@champion), "
                                                      "resolved once to a fixed version.")] = None,
    partitions: Annotated[Optional[int], typer.Option(min=1, help="Partitions (default: one per "
                                                                  "--partition-rows household waves).")] = None,
    partition_rows: Annotated[int, typer.Option(min=1, help="Household waves per partition.")] = 50_000,
    overwrite: Annotated[bool, typer.Option(help="Replace an output folder of another model or input.")] = False,
    features_only: Annotated[bool, typer.Option(help="Write the model's features instead of scores.")] = False,
    memory_limit: Annotated[Optional[str], typer.Option(help="Memory limit per local worker, e.g. 4GiB.")] = None,
    max_partitions: Annotated[Optional[int], typer.Option(min=1, hidden=True,
                                                          help="Debug: stop after N partitions.")] = None,
) -> None:
    """Score a partitioned registry on a Dask cluster with one fixed model version (resumable)."""
    from serving.batch import score_batch as run

    for line in run(task, input, out, scheduler=scheduler, year=year, workers=workers, model_uri=model,
                    partitions=partitions, partition_rows=partition_rows, overwrite=overwrite,
                    features_only=features_only, memory_limit=memory_limit, max_partitions=max_partitions,
                    echo=typer.echo):
        typer.echo(line)


@app.command("evaluate")
@_friendly
def evaluate(
    task: Annotated[str, typer.Option(help="poverty, relapse or idb-level.")],
    model: Annotated[Optional[str], typer.Option(help="Model URI (default: the champion).")] = None,
    data: Annotated[Optional[Path], typer.Option(help="Training set (its test rows), labelled records, or survey.")]
    = None,
    out: Annotated[Optional[Path], typer.Option(help="Also write the report as JSON here.")] = None,
) -> None:
    """Evaluate a model as targeting: AUC, calibration, errors at budgets, per group with CIs."""
    from training.commands import evaluate as run

    md, report = run(task, model, data, _params())
    typer.echo(md)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")


@app.command("demo")
@_friendly
def demo(
    out: Annotated[Optional[Path], typer.Option(help="Demo folder (default: $TPAS_DATA_DIR/demo).")] = None,
) -> None:
    """The main job end to end on embedded defaults (see README)."""
    from tpas.demo import run_demo

    run_demo(out)


@app.command("serve")
@_friendly
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 3000,
    check: Annotated[bool, typer.Option("--check", help="Only check that the champions load, then exit.")] = False,
    workers: Annotated[Optional[int], typer.Option(
        min=1, max=64, help="Worker processes (each loads the models and takes requests; default: one per CPU "
                            "core).")] = None,
) -> None:
    """Start the scoring service (BentoML) with the champion model of each task."""
    import os

    from serving.scoring import champion_versions, load_champions
    from tpas.settings import PROJECT_ROOT
    from training.tracking import model_name

    if check:
        models = load_champions()
        typer.echo("champions load: " + ", ".join(m.label for m in models.values()))
        return
    # Fails here, naming the command that registers a champion, before BentoML starts (which loads them).
    versions = champion_versions()
    typer.echo("serving " + ", ".join(f"{model_name(t)}/{v}" for t, v in versions.items()) + f" on http://{host}:{port}")
    cmd = [sys.executable, "-m", "bentoml", "serve", "serving.service:TPAS", "--host", host, "--port", str(port),
           "--working-dir", str(PROJECT_ROOT)]
    from serving.launch import serve_environment

    n, env = serve_environment(workers, os.environ)
    typer.echo(f"{n} worker process{'es' if n > 1 else ''}")
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)


def _store():
    """The inference store at TPAS_DATABASE_URL (default SQLite in the data folder), migrated to head."""
    from serving.store import InferenceStore

    store = InferenceStore()
    store.migrate()
    return store


@db_app.command("upgrade")
@_friendly
def db_upgrade() -> None:
    """Create or upgrade the inference store's tables (Alembic migrations; safe to re-run)."""
    store = _store()
    try:
        typer.echo(f"inference store {store.safe_url}: at revision {store.current_revision()} (head)")
    finally:
        store.close()


@keys_app.command("create")
@_friendly
def keys_create(
    role: Annotated[str, typer.Option(help="registry (score, outcomes), official (read its region) or analyst "
                                           "(read everything).")],
    region: Annotated[Optional[str], typer.Option(help="Region code an official may read (2/4/6/9/12 digits).")]
    = None,
    label: Annotated[Optional[str], typer.Option(help="Who the key is for (shown in `tpas keys list`).")] = None,
) -> None:
    """Create an API key; it is printed once, as the last word of the last line."""
    from serving.auth import ROLES, ApiKeyError, check_region, create_key

    if role not in ROLES:  # checked before touching the database
        raise ApiKeyError(f"--role must be one of {', '.join(ROLES)} (got {role!r})")
    check_region(region, role)
    store = _store()
    try:
        key_id, key = create_key(store, role, region, label)
    finally:
        store.close()
    scope = {"registry": "may score households and report outcomes",
             "official": f"may read risk lists of region {region}",
             "analyst": "may read risk lists of every region"}[role]
    typer.echo(f"created {role} key {key_id}{f' ({label})' if label else ''}: it {scope}.")
    typer.echo("Copy the key now: it is shown only this once (the store keeps only its hash).")
    typer.echo(f"key: {key}")


@keys_app.command("list")
@_friendly
def keys_list() -> None:
    """List API keys (ids, roles, regions, labels; never the keys)."""
    from serving.auth import list_keys

    store = _store()
    try:
        keys = list_keys(store)
    finally:
        store.close()
    if not keys:
        typer.echo("no API keys yet: create one with `tpas keys create --role registry|official|analyst`")
        return
    typer.echo(f"{'key_id':<14}{'role':<10}{'region':<14}{'created (UTC)':<18}{'status':<24}label")
    for k in keys:
        status = "active" if k["revoked_at"] is None else f"revoked {k['revoked_at']:%Y-%m-%d %H:%M}"
        typer.echo(f"{k['key_id']:<14}{k['role']:<10}{k['region_code'] or '-':<14}"
                   f"{k['created_at']:%Y-%m-%d %H:%M}  {status:<24}{k['label'] or ''}")


@keys_app.command("revoke")
@_friendly
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id (from `tpas keys list`).")]) -> None:
    """Revoke an API key (it stops working at once here, within 30 s in running services)."""
    from serving.auth import revoke_key

    store = _store()
    try:
        changed = revoke_key(store, key_id)
    finally:
        store.close()
    typer.echo(f"revoked key {key_id}" if changed else f"key {key_id} was already revoked")


bento_app = typer.Typer(help="Package the scoring service as a Bento.", no_args_is_help=True)
app.add_typer(bento_app, name="bento")


@bento_app.command("build")
@_friendly
def bento_build() -> None:
    """`bentoml build` with the champion versions of today pinned in the Bento (serving/pinned_models.json)."""
    from serving.scoring import champion_versions
    from serving.service import PINNED_FILE
    from tpas.settings import PROJECT_ROOT

    pinned = champion_versions()  # NoChampion names the command that registers one
    import bentoml

    PINNED_FILE.write_text(json.dumps(pinned, indent=1))
    try:
        bento = bentoml.bentos.build_bentofile(str(PROJECT_ROOT / "bentofile.yaml"), build_ctx=str(PROJECT_ROOT),
                                               labels={f"{t}_model": f"tpas-{t}/{v}" for t, v in pinned.items()})
    finally:
        PINNED_FILE.unlink(missing_ok=True)
    typer.echo(f"pinned models: {', '.join(f'tpas-{t}/{v}' for t, v in pinned.items())}")
    typer.echo(f"bento: {bento.tag}")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

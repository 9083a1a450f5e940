"""Province-scale batch scoring on a Dask cluster: `tpas score-batch`.

A partitioned Parquet registry (one or more export folders: ``households`` and ``members``
tables, possibly hive-partitioned by year) is scored with ONE fixed model version through the
saved pipeline (`RiskModel.predict`, the object `tpas predict` and the service use), partition
by partition on a Dask cluster (an existing scheduler, or a `LocalCluster`):

- the model URI (default ``models:/tpas-<task>@champion``) is resolved once, at the start, to a
  version (``models:/tpas-poverty/7``); its bundle bytes are hashed and shipped to the workers
  as one task, so every partition is scored by the same bytes;
- households are hashed into partitions (`features.dask_build`): every wave of a household
  and all its members land in the same partition (the relapse history and the latest-wave
  choice need them all);
- each partition task validates its records, scores them and writes, each atomically (a
  temporary name in the same folder, then `os.replace`), in this order:
  ``rejects/part-NNNNN.csv`` (every rejected record with its reason), ``regions/part-NNNNN.parquet``
  (per county: households, sum of risks, counts per tier) and last ``scores/part-NNNNN.parquet``
  (exactly the columns of `tpas predict`: one row per household, its latest wave unless a year
  is given);
- ``manifest.json`` (written by the client only, atomically, after each partition) records the
  model (URI given, name, version, bundle SHA-256), the input (pattern, folders, files, row
  counts, fingerprint), the partitions done with their row counts, rejects, worker and timings,
  and every run; ``summary_by_county.csv`` is written when the last partition is done.

Restarting a killed run with the same arguments resumes: a partition is skipped when its scores
file exists and its manifest entry has the same model version and input fingerprint; the others
are (re)scored and replace whatever a killed task may have left, so no household is lost or
counted twice. An output folder holding another model version, input, year or partitioning is
refused unless ``overwrite`` (which removes only what a batch run writes).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import pandas as pd

from features.dask_build import (
    HASH_RULE,
    PARTITION_ROWS,
    STAGING,
    PartitionedRun,
    atomic_write,
    build_features_on_cluster,
    load_partition,
    open_client,
    partition_file,
    plan_input,
    run_partitions,
    shared_object,
    stage_input,
    warm_workers,
    staged_files,
    write_frame,
    write_rejects,
)
from features.schema import REGION_LEVELS, YEAR_MIN
from tpas.errors import DataError

REGISTRY_TASKS = ("poverty", "relapse")
SCORE_COLUMNS = ["household_id", "year", "risk", "score", "tier", "main_causes_en", "main_causes_zh",
                 "top_reasons_en", "top_reasons_zh", "reasons"]
OUTPUTS = ("scores", "rejects", "regions")
SUMMARY_FILE = "summary_by_county.csv"


# -- the model, fixed once ---------------------------------------------------------------------------
def resolve_model(task: str, model_uri: str | None) -> dict:
    """The model to use, fixed: URI given, registered name and version, fixed URI, bundle bytes and SHA-256.

    ``models:/NAME@ALIAS`` is resolved to the version the alias points at now;
    ``models:/NAME/V`` is used as is; any other URI (``runs:/...``) is immutable already.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from training.tracking import CHAMPION, configure, model_name

    given = model_uri or f"models:/{model_name(task)}@{CHAMPION}"
    configure()
    name, version, fixed = None, None, given
    if given.startswith("models:/"):
        ref = given[len("models:/"):].rstrip("/")
        try:
            if "@" in ref:
                name, alias = ref.split("@", 1)
                version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
            elif "/" in ref:
                name, version = ref.rsplit("/", 1)
                MlflowClient().get_model_version(name, version)
            else:
                raise DataError(f"model URI {given}: give a version or an alias "
                                f"(models:/NAME/3, models:/NAME@champion)")
        except MlflowException:
            hint = (f"; train and promote one with `tpas train --task {task} --promote`"
                    if given.endswith(f"@{CHAMPION}") else "")
            raise DataError(f"no model at {given}{hint}") from None
        fixed = f"models:/{name}/{version}"
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=fixed.rstrip("/") + "/artifacts/bundle.joblib")
    except MlflowException as exc:
        raise DataError(f"cannot load the model bundle of {fixed}: {exc}") from None
    blob = Path(local).read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    return {"uri_given": given, "name": name or given, "version": version or sha[:16], "uri": fixed,
            "sha256": sha, "blob": blob}


def _load_model(info: dict):
    import io

    import joblib

    return joblib.load(io.BytesIO(info["blob"]))


# -- one partition (worker side) ---------------------------------------------------------------------
def empty_scores(task: str) -> pd.DataFrame:
    """The scores frame of a partition without any valid household (same columns and dtypes)."""
    frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in SCORE_COLUMNS})
    frame = frame.astype({"year": "int64", "risk": "float64", "score": "float64"})
    if task == "relapse":
        frame["eligible"] = pd.Series([], dtype=bool)
    return frame


def region_counts(scored: pd.DataFrame, households: pd.DataFrame, tiers: tuple[str, ...]) -> pd.DataFrame:
    """Per county of the scored households: households, sum of risk and score, count per tier (and eligible)."""
    villages = households[["household_id", "year", "village_code"]].astype({"year": "int64"})
    frame = scored.merge(villages, on=["household_id", "year"], how="left", validate="one_to_one")
    county = frame["village_code"].astype("string").str[: REGION_LEVELS["county"]].fillna("unknown")
    grouped = frame.groupby(county.rename("county_code"), sort=True)
    out = pd.DataFrame({"households": grouped.size(), "risk_sum": grouped["risk"].sum(),
                        "score_sum": grouped["score"].sum()})
    for t in tiers:
        out[f"n_{t}"] = (frame["tier"] == t).groupby(county.rename("county_code")).sum()
    if "eligible" in frame:
        out["n_eligible"] = frame["eligible"].astype(bool).groupby(county.rename("county_code")).sum()
    return out.reset_index().astype({c: "int64" for c in out.columns if c.startswith("n_") or c == "households"})


def score_partition(p: int, staged: dict, model, out: str, source: str, year: int | None, entry: dict) -> dict:
    """Validate and score partition `p`; write its rejects, region counts and (last) its scores, atomically."""
    from models.bundle import TIER_LABELS

    t0 = time.perf_counter()
    out = Path(out)
    (records, report), n_hh, n_mb = load_partition(staged, p, source)
    t_read = time.perf_counter()
    years = records.households["year"] if len(records) else pd.Series([], dtype="int64")
    if len(records) and (year is None or (years == year).any()):
        scored = model.predict(records, year=year)
    else:  # no valid household (with a wave of `year`) in this partition
        scored = empty_scores(model.task)
    t_score = time.perf_counter()
    rejected = write_rejects(report, partition_file(out / "rejects", p, ".csv"), p)
    regions = region_counts(scored, records.households, TIER_LABELS[model.task])
    atomic_write(partition_file(out / "regions", p), lambda tmp: regions.to_parquet(tmp, index=False))
    atomic_write(partition_file(out / "scores", p), lambda tmp: write_frame(scored, tmp))
    return {"partition": p, "rows": int(len(scored)), "waves_read": int(n_hh), "member_rows_read": int(n_mb),
            "valid_waves": int(len(records)), "rejected": rejected, "worker_pid": os.getpid(), **entry,
            "seconds": {"read_validate": round(t_read - t0, 3), "score": round(t_score - t_read, 3),
                        "write": round(time.perf_counter() - t_score, 3), "total": round(time.perf_counter() - t0, 3)}}


# -- the run (client side) ---------------------------------------------------------------------------
def _years_to_read(task: str, year: int | None) -> list[int] | None:
    """Waves a partition needs: all (latest wave), the year (poverty), the year and earlier (relapse history)."""
    if year is None:
        return None
    return [int(year)] if task == "poverty" else list(range(YEAR_MIN, int(year) + 1))


def summarize(out: Path, partitions: int, regions_files: list[str]) -> pd.DataFrame:
    """Add up the per-partition region counts into one row per county (with its name when known)."""
    parts = [pd.read_parquet(partition_file(out / "regions", p)) for p in range(partitions)]
    frame = pd.concat(parts, ignore_index=True)
    summary = frame.groupby("county_code", sort=True).sum(numeric_only=True)
    summary["mean_risk"] = summary["risk_sum"] / summary["households"]
    summary["mean_score"] = summary["score_sum"] / summary["households"]
    summary = summary.drop(columns=["risk_sum", "score_sum"]).reset_index()
    names = _county_names(regions_files)
    if names is not None:
        summary.insert(1, "county_name", summary["county_code"].map(names))
    cols = ["county_code"] + (["county_name"] if names is not None else []) + ["households", "mean_risk", "mean_score"]
    return summary[cols + [c for c in summary.columns if c not in cols]]


def _county_names(files: list[str]) -> pd.Series | None:
    frames = []
    for f in files:
        try:
            regions = pd.read_parquet(f, columns=["village_code", "county_name"])
        except Exception:  # an odd regions file only loses the names
            continue
        frames.append(regions)
    if not frames:
        return None
    regions = pd.concat(frames, ignore_index=True).dropna()
    county = regions["village_code"].astype(str).str[: REGION_LEVELS["county"]]
    return regions.assign(county_code=county).drop_duplicates("county_code").set_index("county_code")["county_name"]


def score_batch(task: str, input: str | Path, out: str | Path, *, scheduler: str | None = None,
                year: int | None = None, workers: int = 2, model_uri: str | None = None, overwrite: bool = False,
                partitions: int | None = None, partition_rows: int = PARTITION_ROWS,
                max_partitions: int | None = None, features_only: bool = False, memory_limit: str | None = None,
                client=None, progress: bool = True, keep_staging: bool = False,
                echo: Callable[[str], None] = print) -> list[str]:
    """Score (or, with `features_only`, featurize) a partitioned registry on a Dask cluster; see the module
    docstring. `client`: an existing `distributed.Client` (else one on `scheduler`, or a local cluster of
    `workers` processes). `max_partitions`: stop after that many partitions (a rerun resumes). Returns
    printable lines (the model line is echoed at once)."""
    t0 = time.perf_counter()
    if task not in REGISTRY_TASKS:
        raise DataError(f"score-batch scores registry tasks ({', '.join(REGISTRY_TASKS)}), not {task!r}")
    out = Path(out)
    info = resolve_model(task, model_uri)
    model = _load_model(info)
    model_s = time.perf_counter() - t0
    if model.task != task:
        raise DataError(f"{info['uri']} is a {model.task} model, not {task}")
    echo(f"model: {info['uri_given']} -> {info['name']} version {info['version']} (bundle sha256 "
         f"{info['sha256'][:12]}); every partition is scored with this version")
    model_id = {k: info[k] for k in ("uri_given", "name", "version", "uri", "sha256")}
    if features_only:
        if year is not None:
            raise DataError("--year selects the wave to score; --features-only writes the features of every wave")
        return _features_only(model, model_id, input, out, scheduler, workers, partitions, partition_rows,
                              overwrite, max_partitions, memory_limit, client, progress, keep_staging, echo, t0)

    t_plan = time.perf_counter()
    plan = plan_input(input, years=_years_to_read(task, year))
    n_parts = int(partitions or plan.partitions_for(partition_rows))
    echo(f"input: {plan.pattern}: {len(plan.folders)} folder(s), {plan.files:,} files, "
         f"{plan.rows['households']:,} household waves, {plan.rows['members']:,} member rows -> {n_parts} partitions")
    key = {"kind": "scores", "task": task, "model": {k: info[k] for k in ("name", "version", "sha256")},
           "input": {"fingerprint": plan.fingerprint}, "year": year,
           "partitions": n_parts, "hash": HASH_RULE}
    run = PartitionedRun(out, key, OUTPUTS, overwrite=overwrite, echo=echo)
    run.manifest["input"] = plan.describe()
    run.manifest["model"] = model_id
    plan_s = time.perf_counter() - t_plan
    pending = run.pending()
    if len(pending) < n_parts:
        echo(f"resuming: {n_parts - len(pending)} of {n_parts} partitions already scored with {info['name']} "
             f"version {info['version']} on this input; {len(pending)} to score")
    run_no = len(run.manifest["runs"]) + 1
    stage, counts, cluster_s, warm_s = {}, {"pending_at_start": len(pending), "submitted": 0, "seconds": 0.0}, 0.0, 0.0
    if pending:
        t_cluster = time.perf_counter()
        ctx = nullcontext(client) if client is not None else open_client(scheduler, workers, memory_limit)
        with ctx as cl:
            cluster_s = time.perf_counter() - t_cluster
            warm_s = warm_workers(cl)
            stage = stage_input(cl, plan, out / STAGING, n_parts, echo)
            staged = staged_files(out / STAGING, plan)
            model_future = shared_object(cl, info["blob"], info["sha256"])
            entry = {"model_version": info["version"], "input_fingerprint": plan.fingerprint, "run": run_no}
            try:
                counts = run_partitions(cl, run, score_partition,
                                        (staged, model_future, str(out), plan.pattern, year, entry),
                                        max_partitions=max_partitions, progress=progress, label="score partitions")
            except BaseException as exc:
                run.manifest.update({"status": "failed", "error": f"{type(exc).__name__}: {exc}"})
                run.save()
                raise
            model_future.release()

    t_sum = time.perf_counter()
    left = run.pending()
    done = {k: e for k, e in run.manifest["partitions_done"].items() if int(k) not in set(left)}  # (files exist)
    complete = not left
    totals = {"households_scored": int(sum(e["rows"] for e in done.values())),
              "waves_read": int(sum(e["waves_read"] for e in done.values())),
              "member_rows_read": int(sum(e["member_rows_read"] for e in done.values())),
              "rejected": {k: int(sum(e["rejected"][k] for e in done.values()))
                           for k in ("households", "members", "problems")}}
    summary = None
    if complete:
        summary = summarize(out, n_parts, plan.regions)
        atomic_write(out / SUMMARY_FILE, lambda tmp: summary.to_csv(tmp, index=False))
        if not keep_staging:
            shutil.rmtree(out / STAGING, ignore_errors=True)
    total_s = time.perf_counter() - t0
    scored_now = sum(e["rows"] for e in done.values() if e.get("run") == run_no)
    run.manifest.pop("error", None)
    run.manifest.update({"status": "complete" if complete else "incomplete", "partitions_total": n_parts,
                         "partitions_left": len(left), **totals})
    run.manifest["runs"].append({
        "run": run_no, "finished": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"), **counts,
        "partitions_scored": counts["submitted"], "households_scored": int(scored_now),
        "timings": {"model_s": round(model_s, 2), "plan_s": round(plan_s, 2), "cluster_start_s": round(cluster_s, 2),
                    "worker_warm_up_s": warm_s,
                    "stage_s": stage.get("seconds", 0.0), "score_s": counts.get("seconds", 0.0),
                    "summary_s": round(time.perf_counter() - t_sum, 2), "total_s": round(total_s, 2)},
        "staging": stage, "max_partitions": max_partitions})
    run.save()

    rej = totals["rejected"]
    lines = [f"scored {scored_now:,} households in {counts['submitted']} partitions this run "
             f"({totals['households_scored']:,} households in {len(done)} of {n_parts} partitions in all) "
             f"in {total_s:.1f} s -> {out / 'scores'}",
             f"rejected records: {rej['households']:,} household waves, {rej['members']:,} member rows "
             f"({rej['problems']:,} problems; per partition in {out / 'rejects'})"]
    if complete:
        lines.append(f"summary by county: {len(summary):,} counties -> {out / SUMMARY_FILE}")
    else:
        lines.append(f"incomplete: {len(left)} of {n_parts} partitions left; run the same command again to resume")
    lines.append(f"manifest: {out / 'manifest.json'}")
    return lines


def _features_only(model, model_id, input, out, scheduler, workers, partitions, partition_rows, overwrite,
                   max_partitions, memory_limit, client, progress, keep_staging, echo, t0) -> list[str]:
    ctx = nullcontext(client) if client is not None else open_client(scheduler, workers, memory_limit)
    with ctx as cl:
        manifest = build_features_on_cluster(input, model.featurizer, out, cl, partitions=partitions,
                                             partition_rows=partition_rows, overwrite=overwrite,
                                             max_partitions=max_partitions, progress=progress, echo=echo,
                                             keep_staging=keep_staging,
                                             featurizer_id={k: model_id[k] for k in ("name", "version", "sha256")})
    rej = manifest["rejected"]
    lines = [f"featurized {manifest['rows']:,} household waves with the featurizer of {model_id['name']} "
             f"version {model_id['version']} in {len(manifest['partitions_done'])} of "
             f"{manifest['run']['partitions']} partitions in {time.perf_counter() - t0:.1f} s "
             f"-> {Path(out) / 'features'}",
             f"rejected records: {rej['households']:,} household waves, {rej['members']:,} member rows"]
    if manifest["status"] != "complete":
        lines.append("incomplete: run the same command again to resume")
    lines.append(f"manifest: {Path(out) / 'manifest.json'}")
    return lines


def read_scores(out: str | Path) -> pd.DataFrame:
    """All scores of a finished batch output folder as one frame (small outputs, tests and checks)."""
    files = sorted((Path(out) / "scores").glob("part-*.parquet"))
    if not files:
        raise DataError(f"{out}: no scores")
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


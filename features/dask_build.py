"""Registry inputs larger than memory on a Dask cluster: households hashed into partitions.

Province-scale runs (`tpas score-batch`, `serving.batch`) and the feature build on a cluster
(`build_features_on_cluster`) share this machinery:

1. **Plan** (`plan_input`, on the client, footers only): the export folders matched by a path
   or glob, their ``households`` and ``members`` Parquet tables (hive-partitioned folders or
   single files, as `features.sources.registry` reads them), split into *read units* (small
   files packed, big ones split by row groups: at most `UNIT_ROWS` rows), row counts, and a cheap fingerprint
   of the input (path, size and mtime of every file read). The number of partitions comes from
   the row count (`PARTITION_ROWS` household waves each) unless it is given.
2. **Stage** (`stage_input`, one task per read unit): a unit is read with only the columns the
   pipeline needs (the schema's columns without personal data: names, ID-card and phone
   numbers never travel through the cluster), each row gets ``partition = hash(household_id)
   mod P`` (`partition_of`: pandas' SipHash of the id as text, a fixed key, so it is the same
   in every process and every run), and the rows are written, grouped by partition, one Parquet
   row group per partition, to ``<out>/_staging/<table>/``. A staged file is written under a
   temporary name and renamed, so a restarted run keeps the units already staged.
3. **Partition tasks** read *their* row groups from every staged file (`read_partition`):
   every wave of a household and every member row land in the same partition, whatever file
   or year they came from, so the relapse history and the choice of the latest wave see them
   all, and a task never holds more than its own households.

This is an external hash shuffle: each input byte is read twice and staged once, worker
memory is bounded by one unit (stage) or one partition (score), and both steps resume.
``docs/scaling.md`` compares it with the alternatives (a Dask DataFrame shuffle, id maps).

`build_features_on_cluster` featurizes a registry partition by partition with a fitted
`RegistryFeaturizer` (a training set's ``featurizer.joblib`` or a model's own) and writes
``features/part-NNNNN.parquet`` (key columns + feature columns, one row per valid household
wave, as `RegistryFeaturizer.transform` gives them), the rejects of each partition and a
manifest. Its output equals the single-process featurizer's, row for row (tests/batch).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.schema import HOUSEHOLD_COLUMNS, MEMBER_COLUMNS
from tpas.errors import DataError

TABLES = ("households", "members")
#: Household waves per partition when the number of partitions is not given (a worker scoring a
#: partition of 50,000 waves with reasons peaks near 1 GB; docs/scaling.md).
PARTITION_ROWS = 50_000
#: Rows per read unit of the staging step (small files packed together, big ones split by row groups).
UNIT_ROWS = 500_000
#: Key of the partition hash (16 characters, as pandas' SipHash wants).
HASH_KEY = "tpas-households1"
HASH_RULE = f"pandas.util.hash_array(str(household_id), hash_key={HASH_KEY!r}) mod partitions"
STAGING = "_staging"
_RG_META = b"tpas.partition_row_groups"

#: Columns read from the input: the schema's, without personal data (validation has no check
#: on those, so dropping them changes no result; see the module docstring).
NEEDED_COLUMNS = {
    "households": [c.name for c in HOUSEHOLD_COLUMNS if c.role != "pii"],
    "members": [c.name for c in MEMBER_COLUMNS if c.role != "pii"],
}


# -- the plan ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """Row groups of one input file (None: all), with the file's hive partition values."""

    path: str
    row_groups: tuple[int, ...] | None
    rows: int
    partition_expression: Any = None


@dataclass(frozen=True)
class ReadUnit:
    """What one staging task reads: consecutive pieces of one table of one export folder, at most
    `UNIT_ROWS` rows together (small files are packed, big files split by row groups), so that the
    number of staged files (which every partition task opens) stays small."""

    table: str
    folder: int
    index: int
    pieces: tuple[Piece, ...]

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.pieces)

    @property
    def staged_name(self) -> str:
        return f"f{self.folder:03d}-u{self.index:05d}.parquet"


@dataclass
class InputPlan:
    """What a partitioned run reads (see the module docstring)."""

    pattern: str
    folders: list[str]
    years: list[int] | None
    units: list[ReadUnit]
    schemas: dict[tuple[int, str], pa.Schema]
    filesystems: dict[tuple[int, str], Any]
    rows: dict[str, int]
    files: int
    fingerprint: str
    regions: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        years = self.years
        if years and years == list(range(years[0], years[-1] + 1)) and len(years) > 2:
            years = f"{years[0]}-{years[-1]}"
        return {"pattern": self.pattern, "folders": self.folders, "files": self.files,
                "fingerprint": self.fingerprint, "years": years, "read_units": len(self.units),
                "household_waves": self.rows["households"], "member_rows": self.rows["members"]}

    def partitions_for(self, partition_rows: int = PARTITION_ROWS) -> int:
        return max(1, -(-self.rows["households"] // max(1, int(partition_rows))))


def _is_glob(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def _table_path(root: Path, table: str) -> Path:
    for candidate in (root / table, root / f"{table}.parquet"):
        if candidate.exists():
            return candidate
    for candidate in (root / f"{table}.csv", root / f"{table}.csv.gz"):
        if candidate.exists():
            raise DataError(f"{candidate}: batch runs read Parquet; convert the export first with "
                            f"`tpas data export --data {root} --out DIR --format parquet`")
    raise DataError(f"{root}: no {table} table (expected {table}/ or {table}.parquet)")


def plan_input(pattern: str | Path, years: list[int] | None = None, unit_rows: int = UNIT_ROWS) -> InputPlan:
    """Plan a run over the export folder(s) of `pattern` (a path or a glob); reads Parquet footers only."""
    pattern = str(pattern)
    folders = sorted(glob.glob(pattern)) if _is_glob(pattern) else [pattern]
    folders = [f for f in folders if Path(f).is_dir()] if _is_glob(pattern) else folders
    if not folders:
        raise DataError(f"no registry export folder matches {pattern}")
    units: list[ReadUnit] = []
    schemas, filesystems, rows = {}, {}, {t: 0 for t in TABLES}
    stats: list[tuple[str, int, int]] = []
    regions = []
    flt = ds.field("year").isin([int(y) for y in years]) if years is not None else None
    for fi, folder in enumerate(folders):
        root = Path(folder)
        if not root.exists():
            raise DataError(f"registry export not found: {root}")
        if not root.is_dir():
            raise DataError(f"{root}: a registry export is a folder holding households and members tables")
        if (root / "regions.parquet").exists():
            regions.append(str(root / "regions.parquet"))
        for table in TABLES:
            path = _table_path(root, table)
            try:
                dataset = ds.dataset(path, format="parquet", partitioning="hive")
                missing = {"households": ["household_id", "year"], "members": ["household_id", "year"]}[table]
                lacking = [c for c in missing if c not in dataset.schema.names]
                if lacking:
                    raise DataError(f"{path}: {table} table lacks required column(s) {', '.join(lacking)}")
                wanted = [c for c in NEEDED_COLUMNS[table] if c in dataset.schema.names]
                schemas[(fi, table)] = pa.schema([dataset.schema.field(c) for c in wanted],
                                                 metadata=dataset.schema.metadata)
                filesystems[(fi, table)] = dataset.filesystem
                frag_filter = flt if (flt is not None and "year" in dataset.schema.names) else None
                pieces: list[Piece] = []
                for frag in dataset.get_fragments(filter=frag_filter):
                    meta = frag.metadata
                    st = os.stat(frag.path)
                    stats.append((str(Path(frag.path).resolve()), st.st_size, st.st_mtime_ns))
                    groups: list[int] = []
                    acc = 0
                    for rg in range(meta.num_row_groups):
                        n = meta.row_group(rg).num_rows
                        if groups and acc + n > unit_rows:
                            pieces.append(Piece(frag.path, tuple(groups), acc, frag.partition_expression))
                            groups, acc = [], 0
                        groups.append(rg)
                        acc += n
                    if groups:
                        whole = len(groups) == meta.num_row_groups
                        pieces.append(Piece(frag.path, None if whole else tuple(groups), acc,
                                            frag.partition_expression))
                    rows[table] += meta.num_rows  # (a year filter on a non-partitioned file counts all rows)
                packed: list[Piece] = []
                n_units = 0
                for piece in [*pieces, None]:  # pack consecutive pieces into units of at most unit_rows rows
                    if packed and (piece is None or sum(p.rows for p in packed) + piece.rows > unit_rows):
                        units.append(ReadUnit(table, fi, n_units, tuple(packed)))
                        n_units += 1
                        packed = []
                    if piece is not None:
                        packed.append(piece)
            except DataError:
                raise
            except (OSError, ValueError) as exc:
                raise DataError(f"cannot read {path}: {exc}") from None
            except Exception as exc:  # pyarrow's ArrowInvalid etc.
                raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    digest = hashlib.sha256(json.dumps({"files": sorted(stats), "years": years}).encode()).hexdigest()
    return InputPlan(pattern=pattern, folders=[str(Path(f).resolve()) for f in folders],
                     years=[int(y) for y in years] if years is not None else None, units=units,
                     schemas=schemas, filesystems=filesystems, rows=rows, files=len(stats),
                     fingerprint=digest, regions=regions)


def partition_of(ids: pa.ChunkedArray | pa.Array | pd.Series | np.ndarray, partitions: int) -> np.ndarray:
    """Partition number (int64) of each household id: stable hash of the id as text, mod `partitions`."""
    if isinstance(ids, (pa.ChunkedArray, pa.Array)):
        ids = ids.to_pandas()
    text = pd.Series(ids).astype(str).to_numpy(dtype=object)
    return (pd.util.hash_array(text, hash_key=HASH_KEY, categorize=True) % np.uint64(partitions)).astype(np.int64)


# -- atomic files ------------------------------------------------------------------------------------
def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write `path` through ``write(tmp)`` to a temporary name in the same folder, then rename it.

    A reader (or a restarted run) sees the whole file or no file, never a part of one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_json(path: str | Path, obj: dict) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str)
                                                         + "\n", encoding="utf-8"))


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files left by killed writers (``.NAME.XXXX.tmp``) under `folder`."""
    n = 0
    if folder.exists():
        for tmp in folder.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)
            n += 1
    return n


def partition_file(folder: Path, p: int, suffix: str = ".parquet") -> Path:
    return folder / f"part-{p:05d}{suffix}"


# -- staging (worker side) ---------------------------------------------------------------------------
def stage_unit(unit: ReadUnit, schema: pa.Schema, filesystem, partitions: int, years: list[int] | None,
               dest: str) -> dict:
    """Read one unit (needed columns only), group its rows by partition, write them staged (atomic)."""
    t0 = time.perf_counter()
    final = Path(dest) / unit.table / unit.staged_name
    if final.exists():  # a retry after the file was written (a worker lost after the rename)
        return {"unit": unit.staged_name, "table": unit.table, "rows": pq.read_metadata(final).num_rows,
                "skipped": True, "seconds": 0.0}
    flt = ds.field("year").isin(years) if (years is not None and "year" in schema.names) else None
    tables = []
    for piece in unit.pieces:
        frag = ds.ParquetFileFormat().make_fragment(piece.path, filesystem=filesystem,
                                                    partition_expression=piece.partition_expression)
        if piece.row_groups is not None:
            frag = frag.subset(row_group_ids=list(piece.row_groups))
        tables.append(frag.to_table(schema=schema, columns=schema.names, filter=flt))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    part = partition_of(table.column("household_id"), partitions)
    order = np.argsort(part, kind="stable")  # stable: rows keep their input order inside a partition
    table, part = table.take(pa.array(order)), part[order]
    cuts = np.flatnonzero(np.diff(part)) + 1
    starts = np.r_[0, cuts] if len(part) else np.array([], dtype=np.int64)
    ends = np.r_[cuts, len(part)] if len(part) else np.array([], dtype=np.int64)
    groups = {str(int(part[s])): i for i, s in enumerate(starts)}
    out_schema = schema.with_metadata({**(schema.metadata or {}), _RG_META: json.dumps(groups).encode()})

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, out_schema, compression="zstd") as writer:
            for s, e in zip(starts, ends):
                writer.write_table(table.slice(int(s), int(e - s)), row_group_size=int(e - s))

    atomic_write(final, write)
    return {"unit": unit.staged_name, "table": unit.table, "rows": table.num_rows, "skipped": False,
            "seconds": round(time.perf_counter() - t0, 3)}


def staged_files(staging: Path, plan: InputPlan) -> dict[str, list[tuple[int, str]]]:
    """The staged file of every unit, by table, in input order: [(folder, path), ...]."""
    out: dict[str, list[tuple[int, str]]] = {t: [] for t in TABLES}
    for u in plan.units:
        out[u.table].append((u.folder, str(staging / u.table / u.staged_name)))
    return out


def stage_input(client, plan: InputPlan, staging: Path, partitions: int, echo: Callable[[str], None] = print) -> dict:
    """Stage every unit not staged yet (one task per unit); returns counts and timings."""
    t0 = time.perf_counter()
    for table in TABLES:
        (staging / table).mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(staging)
    todo = [u for u in plan.units if not (staging / u.table / u.staged_name).exists()]
    done_before = len(plan.units) - len(todo)
    token = uuid.uuid4().hex[:8]
    futures = [client.submit(stage_unit, u, plan.schemas[(u.folder, u.table)], plan.filesystems[(u.folder, u.table)],
                             partitions, plan.years, str(staging), key=f"tpas-stage-{u.table}-{u.staged_name}-{token}",
                             pure=False) for u in todo]
    from distributed import as_completed

    rows = {t: 0 for t in TABLES}
    for fut in as_completed(futures):
        res = fut.result()
        rows[res["table"]] += res["rows"]
        fut.release()
    if done_before:
        echo(f"staging: {done_before} of {len(plan.units)} read units were staged by an earlier run; "
             f"{len(todo)} to stage")
    return {"units": len(plan.units), "staged_this_run": len(todo), "rows_staged": rows,
            "seconds": round(time.perf_counter() - t0, 2)}


# -- partition tasks (worker side) -------------------------------------------------------------------
def read_partition(files: list[tuple[int, str]], p: int) -> pd.DataFrame:
    """The rows of partition `p` of one table from its staged files, as `features.sources.registry` reads them."""
    by_folder: dict[int, list[pa.Table]] = {}
    empty: pa.Schema | None = None
    for folder, path in files:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        empty = empty or schema
        rg = json.loads(schema.metadata[_RG_META]).get(str(p))
        if rg is not None:
            by_folder.setdefault(folder, []).append(pf.read_row_group(rg))
    parts = [pa.concat_tables(tables) for _, tables in sorted(by_folder.items())]
    if not parts:
        table = empty.empty_table() if empty is not None else pa.table({"household_id": pa.array([], pa.string())})
    elif len(parts) == 1:
        table = parts[0]
    else:  # several export folders: their schemas may differ a little (a column typed null in one, ...)
        table = pa.concat_tables(parts, promote_options="permissive")
    meta = {k: v for k, v in (table.schema.metadata or {}).items() if k != _RG_META}
    df = table.replace_schema_metadata(meta or None).to_pandas()
    if "year" in df.columns and isinstance(df["year"].dtype, pd.CategoricalDtype):
        df["year"] = df["year"].astype("int64")
    return df


def load_partition(staged: dict[str, list[tuple[int, str]]], p: int, source: str):
    """Valid records and the validation report of partition `p` (all waves of its households)."""
    from features.validation import validate_records

    households = read_partition(staged["households"], p)
    members = read_partition(staged["members"], p)
    return validate_records(households, members, source=source), len(households), len(members)


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """`frame.to_parquet`; an empty frame's text columns are typed string (not null), so the part
    files of a folder share one schema and read as one dataset."""
    if len(frame) == 0:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
        table = pa.Table.from_pandas(frame, schema=pa.schema(fields, metadata=table.schema.metadata),
                                     preserve_index=False)
        pq.write_table(table, path)
    else:
        frame.to_parquet(path, index=False)


def write_rejects(report, path: Path, p: int) -> dict:
    """Write one partition's rejects (CSV, header only when there are none); return its counts."""
    rejects = report.rejects.assign(partition=p)
    atomic_write(path, lambda tmp: rejects.to_csv(tmp, index=False))
    counts = {t.table: t.n_rejected for t in report.tables}
    return {"households": int(counts.get("households", 0)), "members": int(counts.get("members", 0)),
            "problems": int(len(report.rejects))}


def featurize_partition(p: int, staged: dict, featurizer, out: str, source: str, run: dict) -> dict:
    """Featurize partition `p`: ``features/part-p.parquet`` (keys + features) and ``rejects/part-p.csv``."""
    t0 = time.perf_counter()
    out = Path(out)
    (records, report), n_hh, n_mb = load_partition(staged, p, source)
    t_read = time.perf_counter()
    if len(records):
        feats = featurizer.transform(records).reset_index()
    else:
        feats = pd.DataFrame({"household_id": pd.Series([], dtype=object), "year": pd.Series([], dtype="int64"),
                              **{c: pd.Series([], dtype="float32") for c in featurizer.feature_names_}})
    rejected = write_rejects(report, partition_file(out / "rejects", p, ".csv"), p)
    atomic_write(partition_file(out / "features", p), lambda tmp: write_frame(feats, tmp))  # last
    return {"partition": p, "rows": int(len(feats)), "waves_read": n_hh, "member_rows_read": n_mb,
            "rejected": rejected, "worker_pid": os.getpid(), **run,
            "seconds": {"read_validate": round(t_read - t0, 3), "total": round(time.perf_counter() - t0, 3)}}


# -- the run (client side) ---------------------------------------------------------------------------
class PartitionedRun:
    """The manifest of an output folder: what it holds, which partitions are done, resumption.

    `key` identifies the run (kind, task, model version and hash, input fingerprint, year,
    partitions, hash rule). An existing folder with another key is refused unless `overwrite`
    (which removes only what such a run writes). A partition counts as done when its output
    file exists *and* its manifest entry carries the same model version and input fingerprint.
    """

    def __init__(self, out: Path, key: dict, outputs: tuple[str, ...], overwrite: bool = False,
                 echo: Callable[[str], None] = print):
        self.out, self.key, self.outputs, self.echo = Path(out), key, outputs, echo
        self.path = self.out / "manifest.json"
        self.out.mkdir(parents=True, exist_ok=True)
        old = json.loads(self.path.read_text(encoding="utf-8")) if self.path.exists() else None
        if old is None and (self.out / outputs[0]).exists() and any((self.out / outputs[0]).iterdir()):
            if not overwrite:
                raise DataError(f"{self.out} holds {outputs[0]}/ but no manifest.json; use another --out or "
                                f"--overwrite")
        if old is not None and old.get("run") != key:
            if not overwrite:
                raise DataError(f"{self.out} holds a different run ({_difference(old.get('run') or {}, key)}); "
                                f"refusing to mix them: use another --out, or --overwrite to replace it")
        if overwrite and (old is not None or any((self.out / o).exists() for o in outputs)):
            self.clear()
            old = None
        self.manifest = old or {"run": key, "created": _now(), "partitions_done": {}, "runs": []}
        self.manifest["status"] = "running"
        for o in outputs:
            (self.out / o).mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.out / o)

    def clear(self) -> None:
        for name in (*self.outputs, STAGING):
            shutil.rmtree(self.out / name, ignore_errors=True)
        for f in self.out.glob("*"):
            if f.is_file() and (f.name == "manifest.json" or f.name.startswith("summary_")):
                f.unlink()

    def is_done(self, p: int) -> bool:
        entry = self.manifest["partitions_done"].get(f"{p:05d}")
        if entry is None or not partition_file(self.out / self.outputs[0], p).exists():
            return False
        model = self.key.get("model") or {}
        return (entry.get("model_version") == model.get("version")
                and entry.get("input_fingerprint") == self.key["input"]["fingerprint"])

    def pending(self) -> list[int]:
        return [p for p in range(self.key["partitions"]) if not self.is_done(p)]

    #: Seconds between manifest writes while partitions complete (a big run has thousands of
    #: entries; a partition finished but not yet recorded when the client dies is simply redone).
    save_every = 1.0

    def record(self, result: dict) -> None:
        self.manifest["partitions_done"][f"{result['partition']:05d}"] = result
        if time.monotonic() - getattr(self, "_saved", 0.0) >= self.save_every:
            self.save()

    def save(self) -> None:
        self.manifest["updated"] = _now()
        atomic_json(self.path, self.manifest)
        self._saved = time.monotonic()


def _now() -> str:
    return pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")


def _difference(old: dict, new: dict) -> str:
    parts = []
    om, nm = old.get("model") or {}, new.get("model") or {}
    if om.get("name") != nm.get("name") or om.get("version") != nm.get("version"):
        parts.append(f"model {om.get('name')} version {om.get('version')} there, "
                     f"{nm.get('name')} version {nm.get('version')} now")
    elif om.get("sha256") != nm.get("sha256"):
        parts.append("a model bundle with other bytes")
    if (old.get("input") or {}).get("fingerprint") != (new.get("input") or {}).get("fingerprint"):
        parts.append(f"other input files (fingerprint {str((old.get('input') or {}).get('fingerprint'))[:12]} there, "
                     f"{new['input']['fingerprint'][:12]} now)")
    for k in ("kind", "task", "year", "partitions", "hash"):
        if old.get(k) != new.get(k):
            parts.append(f"{k} {old.get(k)} there, {new.get(k)} now")
    return "; ".join(parts) or "another run"


def run_partitions(client, run: PartitionedRun, fn, args: tuple, *, max_partitions: int | None = None,
                   progress: bool = True, label: str = "partitions") -> dict:
    """Submit `fn(p, *args)` for every pending partition (at most `max_partitions`), record each result
    in the manifest as it arrives; returns counts. A failing task stops the run (what is done stays done)."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    pending = run.pending()
    todo = pending if max_partitions is None else pending[:max_partitions]
    token = uuid.uuid4().hex[:8]
    kind = run.key.get("kind", "run")
    futures = [client.submit(fn, p, *args, key=f"tpas-{kind}-{p:05d}-{token}", pure=False) for p in todo]
    bar = tqdm(total=len(todo), desc=label, unit="part", disable=not progress)
    t0 = time.perf_counter()
    from distributed import KilledWorker

    try:
        for fut in as_completed(futures):
            result = fut.result()
            run.record(result)
            fut.release()
            bar.update(1)
    except KilledWorker as exc:
        client.cancel(futures)
        raise DataError(f"a partition task killed its worker again and again (out of memory?): use smaller "
                        f"partitions (--partition-rows) or workers with more memory, then run the same command "
                        f"again to resume ({exc})") from None
    except BaseException:
        client.cancel(futures)
        raise
    finally:
        bar.close()
        run.save()  # what is done stays done
    return {"pending_at_start": len(pending), "submitted": len(todo), "seconds": round(time.perf_counter() - t0, 2)}


PIPELINE_MODULES = ("features.dask_build", "features.validation", "features.featurizer", "features.labels",
                    "models.bundle", "models.estimators", "models.calibration", "models.explain", "models.treeshap",
                    "lightgbm", "sklearn.isotonic")


def _import_pipeline(modules: tuple[str, ...] = PIPELINE_MODULES) -> float:
    import importlib

    t0 = time.perf_counter()
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:  # a module a model does not need: the task imports what it needs
            pass
    return time.perf_counter() - t0


def warm_workers(client) -> float:
    """Import the pipeline in every worker at once (a fixed cost per worker process, paid before the
    partitions are timed and so that no worker starts late); returns the seconds it took."""
    t0 = time.perf_counter()
    client.run(_import_pipeline)
    return round(time.perf_counter() - t0, 2)


def open_client(scheduler: str | None, workers: int, memory_limit: str | None = None):
    """A context manager yielding a `distributed.Client`: on `scheduler` (an address), or on a
    `LocalCluster` of `workers` single-threaded worker processes (``None`` or ``"local"``)."""
    from contextlib import contextmanager

    from distributed import Client, LocalCluster

    @contextmanager
    def cm():
        if scheduler in (None, "", "local"):
            kwargs = {"memory_limit": memory_limit} if memory_limit else {}
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                              silence_logs=logging.ERROR, **kwargs) as cluster, Client(cluster) as client:
                yield client
        else:
            try:
                client = Client(scheduler, timeout="20s")
            except OSError as exc:
                raise DataError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
            with client:
                yield client

    return cm()


def build_features_on_cluster(input_path: str | Path, featurizer, out: str | Path, client, *,
                              partitions: int | None = None, partition_rows: int = PARTITION_ROWS,
                              overwrite: bool = False, max_partitions: int | None = None, progress: bool = False,
                              echo: Callable[[str], None] = print, keep_staging: bool = False,
                              featurizer_id: dict | None = None) -> dict:
    """Featurize a partitioned registry on the cluster of `client` with a fitted `featurizer`.

    `featurizer`: a `RegistryFeaturizer` or the path of its ``featurizer.joblib``. Writes
    ``out/features/part-NNNNN.parquet`` (``household_id``, ``year`` and `feature_names_`, one row
    per valid household wave), ``out/rejects/part-NNNNN.csv`` and ``out/manifest.json``; resumes
    like `tpas score-batch`. Returns the manifest.
    """
    import joblib

    t0 = time.perf_counter()
    out = Path(out)
    if isinstance(featurizer, (str, Path)):
        fpath = Path(featurizer)
        digest = hashlib.sha256(fpath.read_bytes()).hexdigest()
        featurizer_id = featurizer_id or {"name": str(fpath.resolve()), "version": digest[:16], "sha256": digest}
        featurizer = joblib.load(fpath)
    if featurizer_id is None:
        digest = hashlib.sha256(joblib_bytes(featurizer)).hexdigest()
        featurizer_id = {"name": "featurizer", "version": digest[:16], "sha256": digest}
    plan = plan_input(input_path)
    n_parts = int(partitions or plan.partitions_for(partition_rows))
    key = {"kind": "features", "task": getattr(featurizer, "task", None), "model": featurizer_id,
           "input": {"fingerprint": plan.fingerprint}, "year": None,
           "partitions": n_parts, "hash": HASH_RULE}
    run = PartitionedRun(out, key, ("features", "rejects"), overwrite=overwrite, echo=echo)
    run.manifest["input"] = plan.describe()
    pending = run.pending()
    stage = {}
    if pending:
        stage = stage_input(client, plan, out / STAGING, n_parts, echo)
        staged = staged_files(out / STAGING, plan)
        fut = shared_object(client, joblib_bytes(featurizer), featurizer_id["sha256"])
        entry = {"model_version": featurizer_id["version"], "input_fingerprint": plan.fingerprint}
        counts = run_partitions(client, run, featurize_partition, (staged, fut, str(out), plan.pattern, entry),
                                max_partitions=max_partitions, progress=progress, label="featurize")
    else:
        counts = {"pending_at_start": 0, "submitted": 0}
    left = set(run.pending())
    done = {k: e for k, e in run.manifest["partitions_done"].items() if int(k) not in left}
    complete = not left
    run.manifest["status"] = "complete" if complete else "incomplete"
    run.manifest["rows"] = int(sum(e["rows"] for e in done.values()))
    run.manifest["rejected"] = {k: int(sum(e["rejected"][k] for e in done.values()))
                                for k in ("households", "members", "problems")}
    run.manifest["runs"].append({"finished": _now(), **counts, "staging": stage,
                                 "seconds": round(time.perf_counter() - t0, 2)})
    run.save()
    if complete and not keep_staging:
        shutil.rmtree(out / STAGING, ignore_errors=True)
    return run.manifest


def _load_blob(blob: bytes):
    import io

    import joblib

    return joblib.load(io.BytesIO(blob))


def shared_object(client, blob: bytes, sha256: str):
    """A future of the object saved in `blob` (joblib bytes), loaded once per worker that needs it.

    A task rather than `client.scatter`: if the worker holding it dies, the scheduler loads it
    again from the bytes in the task instead of failing the tasks that depend on it.
    """
    return client.submit(_load_blob, blob, key=f"tpas-object-{sha256[:20]}", pure=False)


def joblib_bytes(obj) -> bytes:
    import io

    import joblib

    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()

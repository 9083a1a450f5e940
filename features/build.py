"""Training sets: records → labels + fitted featurizer → one Parquet file with a manifest.

`build_training_set(task, data, out)` writes to `out`:

- `dataset.parquet`: one row per labelled household wave (`idb-level`: per household) with
  key columns, `split`, `label`, group columns for fairness reports (prefixed ``group_``) and
  the feature columns, in that order;
- `featurizer.joblib`: the featurizer fitted on the training rows only, the object that the
  model bundle will carry into serving;
- `manifest.json`: rows and label rates per split and year, the feature list with English and
  Chinese names and causes, the source data hash, the time range, the split rule, the
  validation counts;
- `rejects.csv`: every record validation turned away, with the reason.

Splits (panel tasks) are by time *and* by household: a seeded share of households is held
out of training entirely; training rows have their label year ≤ `split.train_until_year`,
test rows their label year ≥ `split.test_from_year`. For `relapse` the label year is t+1, so
a training row never carries an outcome from the test period. `idb-level` is a cross-section:
rows get a stratified fold number (0-4) for household-level cross-validation.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from features.featurizer import RegistryFeaturizer
from features.labels import poverty_labels, relapse_labels
from features.records import HouseholdRecords
from features.schema import REGION_LEVELS
from features.sources.registry import load_registry
from tpas.config import Params
from tpas.errors import DataError

TASKS = ("poverty", "relapse", "idb-level")
KEY = ["household_id", "year"]


def data_hash(path: str | Path) -> str:
    """SHA-256 over the bytes of every file under `path` (sorted by relative path), or of one file."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def holdout_households(household_ids: pd.Series, share: float, seed: int) -> np.ndarray:
    """Deterministic, order-free choice of held-out households: a keyed hash of the id below `share`."""
    hashed = pd.util.hash_pandas_object(household_ids.astype(str), index=False, hash_key=f"{seed:016d}"[:16])
    return (hashed.to_numpy() % 1_000_000) < share * 1_000_000


def household_groups(records: HouseholdRecords, featurized: pd.DataFrame) -> pd.DataFrame:
    """Group columns for per-group evaluation, indexed like `featurized` (household_id, year)."""
    hh = records.households.set_index(KEY)
    village = hh["village_code"].reindex(featurized.index).astype("string")
    groups = pd.DataFrame(index=featurized.index)
    groups["village_code"] = village
    groups["group_county"] = village.str[: REGION_LEVELS["county"]]
    groups["group_female_headed"] = featurized["head_female"].fillna(0).astype(bool)
    groups["group_elderly_headed"] = featurized["elderly_headed"].fillna(0).astype(bool)
    groups["group_disabled_member"] = featurized["n_disabled"].fillna(0) > 0
    if records.regions is not None and "minority_area" in records.regions:
        minority = records.regions.set_index("village_code")["minority_area"].astype("boolean")
        groups["group_minority_area"] = village.map(minority).fillna(False).astype(bool).to_numpy()
    elif "ethnic_minority" in hh:
        groups["group_minority_area"] = hh["ethnic_minority"].reindex(featurized.index).astype("boolean") \
            .fillna(False).astype(bool)
    return groups


def _split_panel(labels: pd.DataFrame, label_year: pd.Series, params: Params) -> pd.Series:
    held = holdout_households(labels["household_id"], params.split.holdout_household_share, params.split.seed)
    split = np.full(len(labels), "gap", dtype=object)
    split[(label_year <= params.split.train_until_year).to_numpy() & ~held] = "train"
    split[(label_year >= params.split.test_from_year).to_numpy()] = "test"
    return pd.Series(split, index=labels.index)


def _rates(frame: pd.DataFrame, by: list[str]) -> dict:
    g = frame.groupby(by)["label"]
    return {str(k if not isinstance(k, tuple) else "/".join(map(str, k))): {"rows": int(n), "label_rate": round(float(r), 4)}
            for (k, n), r in zip(g.size().items(), g.mean().to_numpy())}


def build_registry_training_set(task: str, data: str | Path, out: str | Path, params: Params) -> dict:
    """Build the `poverty` or `relapse` training set from a registry export or synthetic panel."""
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    records, report = load_registry(data, rejects_path=out / "rejects.csv")
    if len(records) == 0:
        raise DataError(f"{data}: no valid household record to build a training set from")
    lines = params.lines
    missing_years = [y for y in records.years if y not in lines.poverty_line]
    if missing_years:
        raise DataError(f"params.yaml: lines.poverty_line has no figure for year(s) {missing_years} found in {data}")

    if task == "poverty":
        labels = poverty_labels(records, lines)
        label_year = labels["year"]
    else:
        labels = relapse_labels(records, lines, params.features.relapse.near_line_multiplier)
        label_year = labels["year"] + 1
    labels["split"] = _split_panel(labels, label_year, params)
    train_keys = labels.loc[labels["split"] == "train", KEY]
    if train_keys.empty:
        raise DataError(f"{data}: no training rows for task {task} with train_until_year="
                        f"{params.split.train_until_year} (years on record: {records.years})")

    # Fit on the training households' waves up to the end of the training period only.
    train_records = records.select_years(last=params.split.train_until_year).select_households(
        train_keys["household_id"].unique())
    featurizer = RegistryFeaturizer(task=task, poverty_lines=dict(lines.poverty_line),
                                    monitoring_lines={y: lines.monitoring_line_for(y) for y in lines.poverty_line},
                                    history_years=params.features.history_years).fit(train_records)
    features = featurizer.transform(records)
    groups = household_groups(records, features)

    labelled = labels.set_index(KEY)
    dataset = pd.concat([labelled[["split", "label"]], groups.reindex(labelled.index),
                         features.reindex(labelled.index)], axis=1).reset_index()
    n_gap = int((dataset["split"] == "gap").sum())
    dataset = dataset[dataset["split"] != "gap"].reset_index(drop=True)

    return _write(out, task, dataset, featurizer, data, report, params, {
        "unlabelled_waves": int(len(records) - len(labels)),
        "gap_rows_excluded": n_gap,
        "label_year": "t" if task == "poverty" else "t+1",
        "time_range": {"first_year": int(min(records.years)), "last_year": int(max(records.years))},
        "split_rule": {"train_label_year_max": params.split.train_until_year,
                       "test_label_year_min": params.split.test_from_year,
                       "holdout_household_share": params.split.holdout_household_share,
                       "seed": params.split.seed},
    }, t0)


def household_folds(labels: pd.Series | np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stratified fold numbers 0..folds-1 of one-row-per-household labels (shape (n,)), seeded.

    The fold column of the `idb-level` training set; `bench/idb_quality.py` redraws it with other seeds.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    out = np.full(len(labels), -1, dtype=np.int64)
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for i, (_, test_idx) in enumerate(skf.split(np.zeros(len(labels)), labels)):
        out[test_idx] = i
    return out


def build_idb_training_set(data: str | Path, out: str | Path, params: Params, folds: int = 5) -> dict:
    """Build the `idb-level` training set (one row per household, stratified folds) from the survey."""
    from features.sources.idb import household_levels, read_survey
    from features.survey_featurizer import SurveyFeaturizer

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    persons, report = read_survey(data, require_target=True)
    report.write_rejects(out / "rejects.csv")
    levels = household_levels(persons).set_index("household_id")
    featurizer = SurveyFeaturizer().fit(persons.drop(columns=["Target"], errors="ignore"))
    features = featurizer.transform(persons.drop(columns=["Target"], errors="ignore"))
    dataset = pd.concat([levels[["level", "label_source", "members_disagree"]].rename(columns={"level": "label"}),
                         features.reindex(levels.index)], axis=1)
    dataset.index.name = "household_id"
    dataset = dataset.sort_index().reset_index()
    dataset.insert(1, "fold", household_folds(dataset["label"], folds, params.split.seed))
    dataset.insert(1, "split", "cv")
    return _write(out, "idb-level", dataset, featurizer, data, report, params, {
        "folds": folds, "split_rule": {"kind": "stratified k-fold over households", "seed": params.split.seed},
    }, t0)


def _write(out: Path, task: str, dataset: pd.DataFrame, featurizer, data, report, params: Params,
           extra: dict, t0: float) -> dict:
    feature_cols = list(featurizer.feature_names_)
    meta_cols = [c for c in dataset.columns if c not in feature_cols]
    dataset.to_parquet(out / "dataset.parquet", index=False)
    joblib.dump(featurizer, out / "featurizer.joblib")
    by = ["split", "year"] if "year" in dataset else ["split"]
    manifest = {
        "task": task,
        "created": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "source": {"path": str(Path(data).resolve()), "sha256": data_hash(data)},
        "rows": {str(k): int(v) for k, v in dataset["split"].value_counts().sort_index().items()},
        "label_rate": {str(k): round(float(v), 4) for k, v in dataset.groupby("split")["label"].mean().items()},
        "by_split_year": _rates(dataset, by),
        "validation": {"tables": [t.__dict__ for t in report.tables], "rejects_file": "rejects.csv"},
        "meta_columns": meta_cols,
        "feature_columns": feature_cols,
        "features": featurizer.feature_info_,
        "featurizer": "featurizer.joblib",
        "lines": {"poverty_line": {str(k): v for k, v in params.lines.poverty_line.items()}},
        "build_seconds": round(time.perf_counter() - t0, 2),
        **extra,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    return manifest


def build_training_set(task: str, data: str | Path, out: str | Path, params: Params) -> dict:
    """Build the training set of `task` (``poverty``, ``relapse`` or ``idb-level``) into `out`."""
    if task not in TASKS:
        raise DataError(f"unknown task {task!r} (expected one of {', '.join(TASKS)})")
    if task == "idb-level":
        return build_idb_training_set(data, out, params)
    return build_registry_training_set(task, data, out, params)

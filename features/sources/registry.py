"""Registry exports in the canonical schema, as a registry system hands them over.

An export is a folder holding a `households` table and a `members` table (and optionally
`regions`), each as one of:

- a hive-partitioned Parquet folder (``households/year=2024/part-0.parquet``; the layout the
  synthetic panel generator writes),
- a single Parquet file (``households.parquet``),
- a CSV file with a header (``households.csv``), read as text and typed by validation, so a
  malformed value is reported rather than crashing the read.

`load_registry` reads and validates; `write_registry_export` writes records back in the
same layout (CSV or Parquet).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from features.records import HouseholdRecords
from features.schema import HOUSEHOLD_COLUMNS, MEMBER_COLUMNS
from features.validation import ValidationReport, validate_records
from tpas.errors import DataError

TABLES = ("households", "members", "regions")


def _find_table(root: Path, table: str) -> Path | None:
    for candidate in (root / table, root / f"{table}.parquet", root / f"{table}.csv", root / f"{table}.csv.gz"):
        if candidate.exists():
            return candidate
    return None


def _read_one(path: Path, years: list[int] | None, columns: list[str] | None) -> pd.DataFrame:
    """Read one table from a partitioned folder, a Parquet file or a CSV file."""
    try:
        if path.is_dir() or path.suffix == ".parquet":
            dataset = ds.dataset(path, format="parquet", partitioning="hive")
            flt = None
            if years is not None and "year" in dataset.schema.names:
                flt = ds.field("year").isin([int(y) for y in years])
            cols = None
            if columns is not None:
                cols = [c for c in columns if c in dataset.schema.names]
            df = dataset.to_table(filter=flt, columns=cols).to_pandas()
            if "year" in df.columns and isinstance(df["year"].dtype, pd.CategoricalDtype):
                df["year"] = df["year"].astype("int64")
            return df
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # pyarrow raises its own ArrowInvalid etc.
        raise DataError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if years is not None and "year" in df.columns:
        df = df[pd.to_numeric(df["year"], errors="coerce").isin(years) | pd.to_numeric(df["year"], errors="coerce").isna()]
    return df


def read_registry_tables(path: str | Path, years: list[int] | None = None
                         ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Read the raw (unvalidated) households, members and regions tables of an export folder.

    `years` keeps only those waves (pushed down to Parquet partitions). Raises `DataError`
    when the folder or one of the two required tables is missing or unreadable.
    """
    root = Path(path)
    if not root.exists():
        raise DataError(f"registry export not found: {root}")
    if not root.is_dir():
        raise DataError(f"{root}: a registry export is a folder holding households and members tables")
    found = {t: _find_table(root, t) for t in TABLES}
    missing = [t for t in ("households", "members") if found[t] is None]
    if missing:
        raise DataError(f"{root}: no {' or '.join(missing)} table (expected {missing[0]}/, "
                        f"{missing[0]}.parquet or {missing[0]}.csv)")
    households = _read_one(found["households"], years, None)
    members = _read_one(found["members"], years, None)
    regions = _read_one(found["regions"], None, None) if found["regions"] is not None else None
    return households, members, regions


def load_registry(path: str | Path, years: list[int] | None = None,
                  rejects_path: str | Path | None = None) -> tuple[HouseholdRecords, ValidationReport]:
    """Read and validate an export; write the rejects (if a path is given); return valid records and report."""
    households, members, regions = read_registry_tables(path, years)
    records, report = validate_records(households, members, source=str(path), regions=regions)
    if rejects_path is not None:
        report.write_rejects(rejects_path)
    return records, report


def write_registry_export(records: HouseholdRecords, out_dir: str | Path, fmt: str = "csv") -> Path:
    """Write records as a canonical export (``households.csv`` + ``members.csv``, or ``.parquet``)."""
    if fmt not in ("csv", "parquet"):
        raise DataError(f"unknown export format {fmt!r} (use csv or parquet)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = {
        "households": records.households[[c.name for c in HOUSEHOLD_COLUMNS if c.name in records.households]],
        "members": records.members[[c.name for c in MEMBER_COLUMNS if c.name in records.members]],
    }
    if records.regions is not None:
        tables["regions"] = records.regions
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(out / f"{name}.csv", index=False)
        else:
            frame.to_parquet(out / f"{name}.parquet", index=False)
    return out

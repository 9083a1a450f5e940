"""Schema validation of household records: bad records out (with reasons), valid ones on.

Every loader goes through `validate_table` / `validate_records`. Each problem becomes a row
of the rejects table (source, table, row number, household id, year, member number, column,
value, reason); the rejected records are removed, every other record is kept as it was
(after type coercion), and the counts of both are reported. A household wave whose member
record is rejected is rejected as a whole (with its own reason), so that no household is
ever scored with a member silently missing.

Type coercion is done here, value checks (ranges, allowed categories, nulls) by a pandera
schema built from the `ColumnSpec`s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pandera
import pyarrow as pa
import pyarrow.compute as pc

from features.records import HouseholdRecords
from features.schema import (
    HOUSEHOLD_COLUMNS,
    HOUSEHOLD_KEY,
    MEMBER_COLUMNS,
    MEMBER_KEY,
    ColumnSpec,
)
from tpas.errors import DataError

REJECT_COLUMNS = ["source", "table", "row", "household_id", "year", "member_no", "column", "value", "reason"]

_TRUE = {"1", "1.0", "true", "t", "yes", "y", "是"}
_FALSE = {"0", "0.0", "false", "f", "no", "n", "否"}


@dataclass
class TableReport:
    """Counts of one validated table."""

    table: str
    n_read: int
    n_valid: int
    n_rejected: int

    def line(self) -> str:
        return f"{self.table}: {self.n_read:,} read, {self.n_valid:,} valid, {self.n_rejected:,} rejected"


@dataclass
class ValidationReport:
    """What a validation run found: per-table counts and the reject rows."""

    source: str
    tables: list[TableReport] = field(default_factory=list)
    rejects: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))

    @property
    def n_rejected(self) -> int:
        return int(sum(t.n_rejected for t in self.tables))

    def summary(self) -> str:
        """Human-readable counts, one line per table, plus the most frequent reasons."""
        lines = [f"validated {self.source}"] + ["  " + t.line() for t in self.tables]
        if len(self.rejects):
            top = self.rejects.groupby(["table", "column", "reason"]).size().sort_values(ascending=False).head(8)
            lines.append("  most frequent problems:")
            lines += [f"    {n:>7,}  {t}.{c}: {r}" for (t, c, r), n in top.items()]
        return "\n".join(lines)

    def write_rejects(self, path: str | Path) -> Path:
        """Write the reject rows as CSV (header only when there are none) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rejects.to_csv(path, index=False)
        return path


def _empty_rejects() -> pd.DataFrame:
    return pd.DataFrame(columns=REJECT_COLUMNS)


def _concat_rejects(parts) -> pd.DataFrame:
    """One rejects table from parts (object columns, so all-missing parts never change dtypes)."""
    parts = [p[REJECT_COLUMNS].astype(object) for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else _empty_rejects()


def _text(values: pd.Series) -> pd.Series:
    """Values as trimmed text, blanks as missing (trimmed by Arrow's C++ kernels)."""
    try:
        arr = pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed objects (numbers among text): via str()
        arr = pa.array(values.astype(str).where(values.notna(), None), type=pa.string(), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = pc.utf8_trim_whitespace(arr)
    arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    # Plain object strings (None when missing): comparisons give plain booleans downstream.
    return pd.Series(arr.to_numpy(zero_copy_only=False), index=values.index, dtype=object)


def _coerce_column(values: pd.Series, spec: ColumnSpec) -> tuple[pd.Series, pd.Series]:
    """Coerce one raw column to its kind; return (coerced, mask of values that could not be read).

    Typed input (Parquet) takes a fast path; text input (CSV) is trimmed and parsed.
    """
    no_problem = pd.Series(False, index=values.index)
    dtype = values.dtype
    typed_number = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if spec.kind in ("int", "float"):
        if typed_number:
            num, bad = values.astype("float64"), no_problem
        else:
            text = _text(values)
            num = pd.to_numeric(text, errors="coerce").astype("float64")
            bad = text.notna() & num.isna()
        if spec.kind == "int":
            frac = num.notna() & (np.floor(num) != num)
            return num.where(~frac).astype("Int64"), bad | frac
        return num, bad
    if spec.kind == "bool":
        if pd.api.types.is_bool_dtype(dtype):
            return values.astype("boolean"), no_problem
        if typed_number:
            num = values.astype("float64")
            out = num.map({1.0: True, 0.0: False}).astype("boolean")
            return out, num.notna() & out.isna()
        text = _text(values).str.lower()
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[text.isin(_TRUE).fillna(False)] = True
        out[text.isin(_FALSE).fillna(False)] = False
        return out, text.notna() & out.isna()
    # str and category: trimmed text, blanks as missing
    return _text(values), no_problem


def _pandera_schema(specs: tuple[ColumnSpec, ...]) -> pandera.DataFrameSchema:
    columns = {}
    for s in specs:
        checks = []
        if s.min is not None and s.max is not None:
            checks.append(pandera.Check.in_range(s.min, s.max, error=f"outside the range {s.min:g} to {s.max:g}"))
        if s.kind == "category":
            checks.append(pandera.Check.isin(list(s.categories), error=f"not one of {', '.join(s.categories)}"))
        columns[s.name] = pandera.Column(nullable=s.nullable, checks=checks, required=False)
    return pandera.DataFrameSchema(columns, strict=False)


def _key_frame(df: pd.DataFrame) -> pd.DataFrame:
    keys = pd.DataFrame(index=df.index)
    for k in ("household_id", "year", "member_no"):
        keys[k] = df[k] if k in df.columns else pd.NA
    return keys


def _rejects_from(df: pd.DataFrame, mask_by_column: dict[str, pd.Series], reasons: dict[str, str],
                  raw: pd.DataFrame, table: str, source: str) -> pd.DataFrame:
    parts = []
    keys = _key_frame(df)
    for col, mask in mask_by_column.items():
        if not mask.any():
            continue
        idx = mask[mask].index
        part = keys.loc[idx].copy()
        part["column"] = col
        part["value"] = raw.loc[idx, col].astype("string") if col in raw.columns else pd.NA
        part["reason"] = reasons[col]
        parts.append(part)
    if not parts:
        return _empty_rejects()
    out = pd.concat(parts)
    out["row"] = out.index.to_numpy() + 1
    out["source"], out["table"] = source, table
    return out[REJECT_COLUMNS].reset_index(drop=True)


def validate_table(raw: pd.DataFrame, specs: tuple[ColumnSpec, ...], table: str, source: str,
                   key: tuple[str, ...] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Coerce and check one table against its specs.

    Returns ``(valid, rejects)``: `valid` holds the rows with no problem, typed per spec
    (extra columns kept untouched); `rejects` has one row per problem found. The row
    `row` is the 1-based record number in the input (in a CSV file with a header, the line
    number minus one). Missing optional columns are added empty. A missing
    required column is a `DataError` (the file is not of this kind at all).
    """
    missing = [s.name for s in specs if s.required and s.name not in raw.columns]
    if missing:
        raise DataError(f"{source}: {table} table lacks required column(s) {', '.join(missing)}")
    raw = raw.reset_index(drop=True)
    out = raw.copy()
    bad: dict[str, pd.Series] = {}
    reasons: dict[str, str] = {}
    for s in specs:
        if s.name not in raw.columns:
            out[s.name] = pd.Series(pd.NA, index=raw.index, dtype="object")
            out[s.name], _ = _coerce_column(out[s.name], s)
            continue
        out[s.name], unreadable = _coerce_column(raw[s.name], s)
        if unreadable.any():
            bad[s.name] = unreadable
            reasons[s.name] = f"not a valid {s.kind}" if s.kind != "int" else "not a whole number"
    rejects = [_rejects_from(out, bad, reasons, raw, table, source)]

    try:
        _pandera_schema(specs).validate(out, lazy=True)
    except pandera.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        fc = fc[fc["index"].notna()]
        for (col, check), grp in fc.groupby(["column", "check"], sort=False):
            idx = pd.Index(grp["index"].astype(int).unique())
            mask = pd.Series(False, index=out.index)
            mask[idx] = True
            reason = "missing value" if "not_nullable" in str(check) else str(check)
            rejects.append(_rejects_from(out, {col: mask}, {col: reason}, raw, table, source))

    if key:
        dup = out.duplicated(list(key), keep=False) & out[list(key)].notna().all(axis=1)
        if dup.any():
            rejects.append(_rejects_from(out, {key[-1]: dup}, {key[-1]: f"duplicate record for key ({', '.join(key)})"},
                                         raw, table, source))
    rej = _concat_rejects(rejects)
    bad_rows = pd.Index(rej["row"].astype(int) - 1) if len(rej) else pd.Index([])
    valid = out.drop(index=bad_rows.unique())
    return valid, rej


def validate_records(households: pd.DataFrame, members: pd.DataFrame, source: str,
                     regions: pd.DataFrame | None = None) -> tuple[HouseholdRecords, ValidationReport]:
    """Validate households and members together.

    Beyond each table's own checks: a member whose household wave is absent or rejected is
    rejected; a household wave with a rejected member, or with no member at all, is rejected.
    Returns the valid records (original row order kept) and the report.
    """
    hh_valid, hh_rej = validate_table(households, HOUSEHOLD_COLUMNS, "households", source, HOUSEHOLD_KEY)
    mb_valid, mb_rej = validate_table(members, MEMBER_COLUMNS, "members", source, MEMBER_KEY)
    n_hh, n_mb = len(households), len(members)

    # Cascade across tables on the (household_id, year) key.
    hh_key = pd.MultiIndex.from_frame(hh_valid[list(HOUSEHOLD_KEY)].astype({"year": "int64"}))
    mb_key = pd.MultiIndex.from_frame(mb_valid[list(HOUSEHOLD_KEY)].astype({"year": "int64"}))
    extra = []
    if len(mb_rej):
        bad_keys = mb_rej[["household_id", "year"]].dropna().drop_duplicates()
        bad_keys = pd.MultiIndex.from_frame(bad_keys.astype({"household_id": "string", "year": "int64"}))
        hit = hh_key.isin(bad_keys)
        if hit.any():
            mask = pd.Series(hit, index=hh_valid.index)
            extra.append(_cascade(hh_valid, mask, "member_no", "a member record of this household wave was rejected",
                                  "households", source))
            hh_valid = hh_valid[~hit]
            hh_key = hh_key[~hit]
    orphan = ~mb_key.isin(hh_key)
    if orphan.any():
        mask = pd.Series(orphan, index=mb_valid.index)
        extra.append(_cascade(mb_valid, mask, "household_id", "no valid household record for this member",
                              "members", source))
        mb_valid = mb_valid[~orphan]
        mb_key = mb_key[~orphan]
    empty = ~hh_key.isin(mb_key)
    if empty.any():
        mask = pd.Series(empty, index=hh_valid.index)
        extra.append(_cascade(hh_valid, mask, "household_id", "household wave has no valid member record",
                              "households", source))
        hh_valid = hh_valid[~empty]

    rejects = _concat_rejects([hh_rej, mb_rej, *extra])
    report = ValidationReport(
        source=source,
        tables=[
            TableReport("households", n_hh, len(hh_valid), n_hh - len(hh_valid)),
            TableReport("members", n_mb, len(mb_valid), n_mb - len(mb_valid)),
        ],
        rejects=rejects,
    )
    records = HouseholdRecords(hh_valid.reset_index(drop=True), mb_valid.reset_index(drop=True), regions)
    return records, report


def _cascade(df: pd.DataFrame, mask: pd.Series, column: str, reason: str, table: str, source: str) -> pd.DataFrame:
    part = _key_frame(df.loc[mask[mask].index]).copy()
    part["row"] = part.index + 1
    part["column"], part["value"], part["reason"] = column, pd.NA, reason
    part["source"], part["table"] = source, table
    return part[REJECT_COLUMNS].reset_index(drop=True)

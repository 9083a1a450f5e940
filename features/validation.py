"""Schema validation of household records: bad records out (with reasons), valid ones on.

Every loader goes through `validate_table` / `validate_records`. Each problem becomes a row
of the rejects table (source, table, row number, household id, year, member number, column,
value, reason); the rejected records are removed, every other record is kept as it was
(after type coercion), and the counts of both are reported. A household wave whose member
record is rejected is rejected as a whole (with its own reason), so that no household is
ever scored with a member silently missing.

Type coercion is done here, value checks (ranges, allowed categories, nulls) by a pandera
schema built from the `ColumnSpec`s (built once per spec tuple and cached).

Small tables (at most `SMALL_TABLE_ROWS` rows: the scoring service's requests) take a fast
path: columns that arrive already typed (the service's pydantic-checked str / int / float /
bool / None values, typed Parquet columns) are coerced with numpy instead of Arrow/pandas,
the table is built in one go, and the ranges, categories and nulls are first checked with
numpy; pandera runs only when that pre-check finds a problem, so the rejects and their
reasons are the ones the general path gives. Columns that need parsing (CSV text, mixed
objects) go through the general coercion. Both paths give identical results
(tests/unit/test_small_batch.py); set `SMALL_TABLE_ROWS = 0` to force the general path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
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

#: Tables of at most this many rows take the small-input fast path (module docstring);
#: 0 forces the general path (tests and bench/serving_path_bench.py compare both).
SMALL_TABLE_ROWS = 50_000

_NONE = type(None)
_EXACT_INT = 2.0 ** 53  # floats below this in magnitude convert to and from int64 exactly


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


_EMPTY_REJECTS = pd.DataFrame(columns=REJECT_COLUMNS)


def _empty_rejects() -> pd.DataFrame:
    return _EMPTY_REJECTS.copy()  # (a copy of a template: building an empty frame costs more)


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


@lru_cache(maxsize=32)
def _pandera_schema(specs: tuple[ColumnSpec, ...]) -> pandera.DataFrameSchema:
    """The pandera schema of a spec tuple (cached: building it costs more than checking a small table)."""
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
    fast = (0 < len(raw) <= SMALL_TABLE_ROWS and raw.columns.is_unique and raw.columns.dtype == object
            and raw.columns.name is None)
    if not (fast and _is_default_index(raw.index)):  # (a default index needs no reset: `raw` is never modified)
        raw = raw.reset_index(drop=True)
    if fast:
        out, bad, columns = _coerce_table_fast(raw, specs)
    else:
        out, bad = _coerce_table(raw, specs)
    reasons = {s.name: f"not a valid {s.kind}" if s.kind != "int" else "not a whole number"
               for s in specs if s.name in bad}
    rejects = [_rejects_from(out, bad, reasons, raw, table, source)] if bad else []

    if not fast or _value_problems(columns, specs):
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

    if key and (not fast or _may_have_duplicates([columns[k] for k in key])):
        dup = out.duplicated(list(key), keep=False) & out[list(key)].notna().all(axis=1)
        if dup.any():
            rejects.append(_rejects_from(out, {key[-1]: dup}, {key[-1]: f"duplicate record for key ({', '.join(key)})"},
                                         raw, table, source))
    rej = _concat_rejects(rejects)
    if not len(rej):
        return out, rej
    bad_rows = pd.Index(rej["row"].astype(int) - 1)
    valid = out.drop(index=bad_rows.unique())
    return valid, rej


def _is_default_index(index: pd.Index) -> bool:
    """The index `reset_index(drop=True)` would give (0, 1, ..., n-1, unnamed)."""
    return (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1
            and index.name is None)


def _coerce_table(raw: pd.DataFrame, specs: tuple[ColumnSpec, ...]) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """The general coercion: (typed copy of `raw`, masks of unreadable values by column)."""
    out = raw.copy()
    bad: dict[str, pd.Series] = {}
    for s in specs:
        if s.name not in raw.columns:
            out[s.name] = pd.Series(pd.NA, index=raw.index, dtype="object")
            out[s.name], _ = _coerce_column(out[s.name], s)
            continue
        out[s.name], unreadable = _coerce_column(raw[s.name], s)
        if unreadable.any():
            bad[s.name] = unreadable
    return out, bad


def _coerce_table_fast(raw: pd.DataFrame, specs: tuple[ColumnSpec, ...]
                       ) -> tuple[pd.DataFrame, dict[str, pd.Series], dict[str, object]]:
    """`_coerce_table` for small tables, built in one go; also returns each spec column's array."""
    by_name = {s.name: s for s in specs}
    n = len(raw)
    arrays: dict = {}
    bad: dict[str, pd.Series] = {}
    columns: dict[str, object] = {}
    for name, values in zip(raw.columns, _column_arrays(raw)):
        spec = by_name.get(name)
        if spec is None:  # extra column: kept untouched (a copy, as `raw.copy()` gives)
            arrays[name] = values.copy()
            continue
        arr = _coerce_typed(values, spec)
        if arr is None:  # needs parsing (text, mixed objects): the general coercion
            coerced, unreadable = _coerce_column(raw[name], spec)
            arr = coerced.to_numpy() if isinstance(coerced.dtype, np.dtype) else coerced.array
            if unreadable.any():
                bad[name] = unreadable
        arrays[name] = columns[name] = arr
    for spec in specs:
        if spec.name not in arrays:
            arrays[spec.name] = columns[spec.name] = _missing_column(spec, n)
    out = pd.DataFrame(arrays, index=raw.index, copy=False)
    return out, {s.name: bad[s.name] for s in specs if s.name in bad}, columns


def _column_arrays(frame: pd.DataFrame):
    """The frame's columns as arrays (numpy or extension), without building a Series for each
    (pandas' own column iterator when present: a Series per column costs more than coercing it)."""
    iterate = getattr(frame, "_iter_column_arrays", None)
    if iterate is not None:
        return iterate()
    return (frame.iloc[:, i].array if not isinstance(frame.dtypes.iloc[i], np.dtype) else frame.iloc[:, i].to_numpy()
            for i in range(frame.shape[1]))


def _missing_column(spec: ColumnSpec, n: int):
    """What the general coercion makes of an absent optional column (all missing)."""
    if spec.kind == "int":
        return pd.arrays.IntegerArray(np.ones(n, dtype=np.int64), np.ones(n, dtype=bool))
    if spec.kind == "float":
        return np.full(n, np.nan)
    if spec.kind == "bool":
        return pd.arrays.BooleanArray(np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
    return np.full(n, None, dtype=object)


def _coerce_typed(values, spec: ColumnSpec):
    """`_coerce_column` for values (a column's array, or Series) that need no parsing, with numpy:
    the very array the general coercion gives, or None when the column needs the general coercion
    (text to parse, values it cannot read, mixed or unusual objects, extension dtypes)."""
    if isinstance(values, pd.Series):
        values = values.to_numpy() if isinstance(values.dtype, np.dtype) else values.array
    if not isinstance(values, np.ndarray):
        return None
    kind = values.dtype.kind
    if spec.kind in ("int", "float"):
        if kind in "iuf":
            num = values.astype(np.float64)  # (a copy)
        elif kind == "O":
            num = _object_ints(values)
            if num is None:
                return None
        else:
            return None
        if spec.kind == "float":
            return num
        nan = np.isnan(num)
        known = num[~nan]
        if not (np.abs(known) < _EXACT_INT).all() or (np.floor(known) != known).any():
            return None  # a fraction is "not a whole number": the general path names it
        data = num.copy()
        data[nan] = 1
        return pd.arrays.IntegerArray(data.astype(np.int64), nan)
    if spec.kind == "bool":
        if kind == "b":
            return pd.arrays.BooleanArray(values.copy(), np.zeros(len(values), dtype=bool))
        if kind in "iuf":
            num = values.astype(np.float64)
            true, false = num == 1.0, num == 0.0
            missing = ~(true | false)
            if (missing & ~np.isnan(num)).any():
                return None
            return pd.arrays.BooleanArray(true, missing)
        if kind != "O":
            return None
        obj = values
        if not set(map(type, obj.tolist())) <= {bool, _NONE}:
            return None
        return pd.arrays.BooleanArray(obj == True, obj == None)  # noqa: E711,E712 (elementwise)
    # str and category: trimmed text, blanks as missing
    if kind != "O":
        return None
    obj = values
    items = obj.tolist()
    types = set(map(type, items))
    if not types <= {str, _NONE}:
        return None
    out = obj.copy()
    if str in types:
        text = [v for v in items if v is not None] if _NONE in types else items
        if list(map(str.strip, text)) != text:
            return None  # whitespace to trim: Arrow's kernel does it (same set as str.isspace)
        joined = "".join(text)
        if not joined.isascii():
            try:
                joined.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates: whatever the general path does with them
                return None
        if "" in text:
            out[out == ""] = None
    return out


def _object_ints(values: np.ndarray) -> np.ndarray | None:
    """Object values that are all Python ints or None as float64 (NaN for None); else None."""
    items = values.tolist()
    types = set(map(type, items))
    if not types <= {int, _NONE}:
        return None  # floats, bools, text, ...: parsed by the general path
    num = np.array([np.nan if v is None else float(v) for v in items], dtype=np.float64) if _NONE in types \
        else np.array(items, dtype=np.float64)
    if not (np.abs(num[~np.isnan(num)]) < _EXACT_INT).all():
        return None
    return num


def _value_problems(columns: dict[str, object], specs: tuple[ColumnSpec, ...]) -> bool:
    """Numpy pre-check of what the pandera schema checks (nulls, ranges, categories) on the
    coerced columns: False only when pandera would find nothing."""
    for s in specs:
        arr = columns[s.name]
        if s.kind in ("int", "float"):
            num = arr if isinstance(arr, np.ndarray) else arr.to_numpy(dtype=np.float64, na_value=np.nan)
            null = np.isnan(num)
            if not s.nullable and null.any():
                return True
            if s.min is not None and s.max is not None and ((num < s.min) | (num > s.max)).any():
                return True
        elif s.kind == "bool":
            if not s.nullable and np.asarray(arr.isna()).any():
                return True
        elif not s.nullable or s.kind == "category":
            # coerced text: str, None when missing
            items = set(np.asarray(arr, dtype=object).tolist())
            if not s.nullable and None in items:
                return True
            if s.kind == "category" and not items - {None} <= set(s.categories):
                return True
    return False


def _may_have_duplicates(key_columns: list) -> bool:
    """False when the rows whose key is complete have distinct keys (no duplicate to report)."""
    lists = []
    for arr in key_columns:
        if isinstance(arr, np.ndarray) and arr.dtype == object:
            lists.append([None if v is None or v is pd.NA or v != v else v for v in arr.tolist()])
        else:
            num = arr if isinstance(arr, np.ndarray) else arr.to_numpy(dtype=np.float64, na_value=np.nan)
            lists.append([None if v != v else v for v in num.tolist()])
    complete = [k for k in zip(*lists) if None not in k]
    return len(set(complete)) != len(complete)


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
    if not len(hh_rej) and not len(mb_rej) and _same_waves(hh_valid, mb_valid):
        # Nothing rejected and every household wave has members, every member its wave: no cascade.
        report = ValidationReport(
            source=source,
            tables=[TableReport("households", n_hh, n_hh, 0), TableReport("members", n_mb, n_mb, 0)],
            rejects=_empty_rejects(),
        )
        return HouseholdRecords(_reset(hh_valid), _reset(mb_valid), regions), report

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


def _same_waves(hh: pd.DataFrame, mb: pd.DataFrame) -> bool:
    """For small tables: True when the (household_id, year) keys of both tables are the same set."""
    if not (0 < len(hh) <= SMALL_TABLE_ROWS and 0 < len(mb) <= SMALL_TABLE_ROWS):
        return False
    keys = []
    for frame in (hh, mb):
        hid, year = frame["household_id"], frame["year"]
        if hid.dtype != object or year.isna().any():
            return False
        keys.append(set(zip(hid.tolist(), year.to_numpy(dtype=np.int64).tolist())))
    return keys[0] == keys[1]


def _reset(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame.reset_index(drop=True)`, skipped when the index is that already (a fresh frame here)."""
    return frame if _is_default_index(frame.index) else frame.reset_index(drop=True)


def _cascade(df: pd.DataFrame, mask: pd.Series, column: str, reason: str, table: str, source: str) -> pd.DataFrame:
    part = _key_frame(df.loc[mask[mask].index]).copy()
    part["row"] = part.index + 1
    part["column"], part["value"], part["reason"] = column, pd.NA, reason
    part["source"], part["table"] = source, table
    return part[REJECT_COLUMNS].reset_index(drop=True)

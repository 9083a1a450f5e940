"""The real IDB Costa Rica household survey as a household data source.

The survey (``/work/shared/data/idb-costa-rica``) has one row per *person*: ``Id`` is the person,
``idhogar`` the household, ``parentesco1 == 1`` marks the household head and ``Target`` is the
household's poverty level (1 extreme poverty, 2 moderate poverty, 3 vulnerable,
4 non-vulnerable). Household variables (rooms, walls, region, ...) are repeated on every
member's row.

- `read_survey` reads the person file (CSV read as text, or Parquet), parses the source's
  quirks (``dependency``, ``edjefe``, ``edjefa`` mix numbers with ``yes`` = 1 / ``no`` = 0),
  checks every person row and returns the valid rows with a `ValidationReport` whose rejects
  follow `features.validation.REJECT_COLUMNS` (``household_id`` = ``idhogar``, ``year`` and
  ``member_no`` empty, ``row`` = 1-based record number). As in `validate_records`, a household
  with a rejected person is rejected as a whole, so no household is ever featurized with a
  member silently missing.
- `parse_survey_numbers` is the one parser of those quirks (the featurizer reuses it, so raw rows
  and validated rows give the same features).
- `household_levels` turns the person labels into one poverty level per household (the head's
  Target is authoritative; see its docstring for households without a head).

The survey is the project's real-data check; `features.survey_featurizer.SurveyFeaturizer`
turns the valid persons into one feature row per household.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from features.validation import REJECT_COLUMNS, TableReport, ValidationReport
from tpas.errors import DataError

PERSON_ID, HOUSEHOLD_ID, TARGET = "Id", "idhogar", "Target"
LEVELS = (1, 2, 3, 4)

#: Columns mixing numbers with the words yes (= 1) and no (= 0), per the source's own definition.
YES_NO_COLUMNS = ("dependency", "edjefe", "edjefa")


def _numbered(prefix: str, numbers) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in numbers)


#: One-hot groups of the survey (one categorical variable each), in the source's order.
ONE_HOT_GROUPS: dict[str, tuple[str, ...]] = {
    "wall_material": ("paredblolad", "paredzocalo", "paredpreb", "pareddes", "paredmad", "paredzinc",
                      "paredfibras", "paredother"),
    "floor_material": ("pisomoscer", "pisocemento", "pisoother", "pisonatur", "pisonotiene", "pisomadera"),
    "roof_material": ("techozinc", "techoentrepiso", "techocane", "techootro"),
    "water": ("abastaguadentro", "abastaguafuera", "abastaguano"),
    "electricity": ("public", "planpri", "noelec", "coopele"),
    "toilet": ("sanitario1", "sanitario2", "sanitario3", "sanitario5", "sanitario6"),
    "cooking_energy": _numbered("energcocinar", range(1, 5)),
    "rubbish": _numbered("elimbasu", range(1, 7)),
    "wall_state": _numbered("epared", range(1, 4)),
    "roof_state": _numbered("etecho", range(1, 4)),
    "floor_state": _numbered("eviv", range(1, 4)),
    "civil_status": _numbered("estadocivil", range(1, 8)),
    "kinship": _numbered("parentesco", range(1, 13)),
    "education_level": _numbered("instlevel", range(1, 10)),
    "tenure": _numbered("tipovivi", range(1, 6)),
    "region": _numbered("lugar", range(1, 7)),
    "area": ("area1", "area2"),
}

#: Flags that must be 0 or 1.
BINARY_COLUMNS: tuple[str, ...] = (
    "hacdor", "hacapo", "v14a", "refrig", "v18q", "cielorazo", "dis", "male", "female",
    "computer", "television", "mobilephone",
) + tuple(c for cols in ONE_HOT_GROUPS.values() for c in cols)

#: Counts (persons, rooms, years, devices): non-negative whole numbers.
COUNT_COLUMNS: tuple[str, ...] = (
    "rooms", "v18q1", "r4h1", "r4h2", "r4h3", "r4m1", "r4m2", "r4m3", "r4t1", "r4t2", "r4t3",
    "tamhog", "tamviv", "escolari", "rez_esc", "hhsize", "hogar_nin", "hogar_adul", "hogar_mayor",
    "hogar_total", "edjefe", "edjefa", "bedrooms", "qmobilephone", "age",
)

#: Non-negative amounts and ratios (rent in colones/month, ratios, the source's squares).
AMOUNT_COLUMNS: tuple[str, ...] = (
    "v2a1", "dependency", "meaneduc", "overcrowding",
    "SQBescolari", "SQBage", "SQBhogar_total", "SQBedjefe", "SQBhogar_nin", "SQBovercrowding",
    "SQBdependency", "SQBmeaned", "agesq",
)

#: Every numeric column the survey defines (the codebook's 142 variables minus the two ids, plus Target).
NUMERIC_COLUMNS: tuple[str, ...] = BINARY_COLUMNS + COUNT_COLUMNS + AMOUNT_COLUMNS

#: Inclusive bounds beyond non-negativity, where the survey's own meaning gives one.
_UPPER = {"age": 120.0}

_TABLE = "persons"


# -- reading ----------------------------------------------------------------------------------------------------


def _read_raw(path: Path) -> pd.DataFrame:
    """Read the file as it is (CSV as text, so a malformed value is reported, not guessed)."""
    if not path.exists():
        raise DataError(f"{path}: survey file not found")
    if path.is_dir():
        raise DataError(f"{path}: expected a CSV or Parquet file, got a folder")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=True, na_values=[""], skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the survey file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        # pyarrow's errors derive from these (ArrowInvalid is a ValueError, ArrowIOError an OSError).
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as a survey file ({first})") from None


def parse_survey_numbers(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse one raw survey column into float64, reading ``yes`` as 1 and ``no`` as 0.

    Returns ``(numbers, unreadable)``: `numbers` has NaN where the value is missing or cannot be
    read; `unreadable` is True where a value was present but is not a number (nor yes/no).
    The input is not modified.
    """
    if pd.api.types.is_bool_dtype(values):
        return values.astype("float64"), pd.Series(False, index=values.index)
    if pd.api.types.is_numeric_dtype(values):
        out = pd.to_numeric(values, errors="coerce").astype("float64")
        return out, pd.Series(False, index=values.index)
    out = pd.to_numeric(values, errors="coerce").astype("float64")
    failed = values.notna() & out.isna()
    if failed.any():  # only the words, blanks and odd spellings take the slow text path
        text = values[failed].astype("string").str.strip().str.lower()
        blank = (text == "").fillna(True)
        out[failed] = pd.to_numeric(text.replace({"yes": "1", "no": "0"}), errors="coerce").astype("float64")
        failed = failed & out.isna()
        failed[blank[blank].index] = False
    return out, failed.astype(bool)


def _ids(values: pd.Series) -> pd.Series:
    """Ids as stripped text, blank as missing."""
    text = values.astype("string").str.strip()
    return text.where(text != "")


def _rejects(frame: pd.DataFrame, raw: pd.DataFrame, mask: pd.Series, column: str, reason: str,
             source: str, raw_values: bool = True) -> pd.DataFrame | None:
    """Reject rows for the persons where `mask` holds (one per person); None when it holds nowhere."""
    idx = mask[mask.to_numpy(dtype=bool)].index
    if not len(idx):
        return None
    out = pd.DataFrame({
        "source": source,
        "table": _TABLE,
        "row": idx + 1,
        "household_id": frame.loc[idx, HOUSEHOLD_ID].astype("object").to_numpy(),
        "year": pd.NA,
        "member_no": pd.NA,
        "column": column,
        "value": raw.loc[idx, column].astype("string").to_numpy() if raw_values and column in raw.columns else pd.NA,
        "reason": reason,
    })
    return out[REJECT_COLUMNS]


def read_survey(path: str | Path, *, require_target: bool = False) -> tuple[pd.DataFrame, ValidationReport]:
    """Read and validate the IDB person-level survey (CSV or Parquet).

    Parameters
    ----------
    path: the survey file (``.csv``, ``.csv.gz`` or ``.parquet``), one row per person.
    require_target: True for training data: the ``Target`` column must exist and every person
        needs a level 1-4. False (scoring input): ``Target`` may be absent or blank.

    Returns
    -------
    persons: the valid person rows, input order, fresh 0..n-1 index; ``Id`` and ``idhogar`` as
        text, every survey column of `NUMERIC_COLUMNS` as float64 (NaN = missing, yes/no parsed),
        ``Target`` (when present) as Int64; other columns untouched.
    report: a `ValidationReport` with tables ``persons`` and ``households`` (read / valid /
        rejected counts) and one reject row per problem found.

    Checks per person: ``Id`` and ``idhogar`` present, ``Id`` unique; every survey column numeric;
    flags in {0, 1}; counts and amounts non-negative (counts whole, age at most 120);
    ``Target`` in 1-4. Per household: at most one head. A household with any rejected person is
    rejected as a whole (a cascade row per remaining person, column ``idhogar``). A person without
    a household id cannot be tied to any household, so only that person's row is rejected.

    Raises `DataError` (message naming the file) when the file cannot be read or lacks
    ``Id``/``idhogar`` (or ``Target`` when `require_target`).
    """
    path = Path(path)
    return validate_persons(_read_raw(path), source=str(path), require_target=require_target)


def validate_persons(raw: pd.DataFrame, source: str = "survey", *, require_target: bool = False
                     ) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate person rows already in memory (API requests, MLflow pyfunc input); see `read_survey`.

    `source` names the input in messages and rejects. Raises `DataError` when the frame lacks
    ``Id``/``idhogar`` (or ``Target`` when `require_target`).
    """
    path = source
    raw = raw.reset_index(drop=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in (PERSON_ID, HOUSEHOLD_ID) if c not in raw.columns]
    if require_target and TARGET not in raw.columns:
        missing.append(TARGET)
    if missing:
        raise DataError(f"{path}: not an IDB survey file: lacks column(s) {', '.join(missing)}")

    persons = raw.copy()
    persons[PERSON_ID] = _ids(raw[PERSON_ID])
    persons[HOUSEHOLD_ID] = _ids(raw[HOUSEHOLD_ID])
    parts: list[pd.DataFrame | None] = []

    parts.append(_rejects(persons, raw, persons[HOUSEHOLD_ID].isna(), HOUSEHOLD_ID, "missing household id", source))
    parts.append(_rejects(persons, raw, persons[PERSON_ID].isna(), PERSON_ID, "missing person id", source))
    dup = persons[PERSON_ID].notna() & persons.duplicated(PERSON_ID, keep=False)
    parts.append(_rejects(persons, raw, dup, PERSON_ID, "duplicate person id", source))

    numeric = [c for c in NUMERIC_COLUMNS if c in raw.columns]
    if TARGET in raw.columns:
        numeric.append(TARGET)
    binary, counts = set(BINARY_COLUMNS), set(COUNT_COLUMNS)
    for col in numeric:
        values, unreadable = parse_survey_numbers(raw[col])
        persons[col] = values
        what = "yes/no or a number" if col in YES_NO_COLUMNS else "a number"
        parts.append(_rejects(persons, raw, unreadable, col, f"not {what}", source))
        if col == TARGET:
            bad = values.notna() & ~values.isin(LEVELS)
            parts.append(_rejects(persons, raw, bad, col, "not a poverty level 1-4", source))
            if require_target:
                parts.append(_rejects(persons, raw, values.isna() & ~unreadable, col, "missing poverty level",
                                      source))
        elif col in binary:
            parts.append(_rejects(persons, raw, values.notna() & ~values.isin((0.0, 1.0)), col, "not 0 or 1", source))
        else:
            parts.append(_rejects(persons, raw, values < 0, col, "negative", source))
            if col in counts:
                parts.append(_rejects(persons, raw, values.notna() & (values != np.floor(values)), col,
                                      "not a whole number", source))
            if col in _UPPER:
                parts.append(_rejects(persons, raw, values > _UPPER[col], col, f"above {_UPPER[col]:g}", source))
    if TARGET in persons.columns:
        persons[TARGET] = persons[TARGET].where(persons[TARGET].isin(LEVELS)).astype("Int64")

    # Two heads make the authoritative label (and the head's features) ambiguous.
    if "parentesco1" in persons.columns:
        is_head = persons["parentesco1"] == 1
        heads = is_head.groupby(persons[HOUSEHOLD_ID]).transform("sum")
        parts.append(_rejects(persons, raw, is_head & (heads > 1), "parentesco1", "household has more than one head",
                              source))

    found = [p for p in parts if p is not None]
    rejects = pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=REJECT_COLUMNS)
    bad_rows = pd.Index(rejects["row"].astype("int64") - 1).unique()
    valid_mask = ~persons.index.isin(bad_rows)

    # Cascade: the other persons of a household with a rejected person.
    bad_households = pd.Index(rejects["household_id"].dropna().unique())
    cascade = valid_mask & persons[HOUSEHOLD_ID].isin(bad_households).to_numpy()
    if cascade.any():
        extra = _rejects(persons, raw, pd.Series(cascade, index=persons.index), HOUSEHOLD_ID,
                         "another person of this household was rejected", source, raw_values=False)
        rejects = pd.concat([rejects, extra], ignore_index=True)
        valid_mask &= ~cascade
    rejects = rejects.sort_values(["row", "column"], kind="stable").reset_index(drop=True)

    valid = persons[valid_mask].reset_index(drop=True)
    n_households = persons[HOUSEHOLD_ID].nunique(dropna=True)
    n_valid_households = valid[HOUSEHOLD_ID].nunique()
    report = ValidationReport(
        source=source,
        tables=[
            TableReport(_TABLE, len(persons), len(valid), len(persons) - len(valid)),
            TableReport("households", n_households, n_valid_households, n_households - n_valid_households),
        ],
        rejects=rejects,
    )
    return valid, report


# -- labels -----------------------------------------------------------------------------------------------------


def household_levels(persons: pd.DataFrame) -> pd.DataFrame:
    """One poverty level per household from the person labels.

    Parameters
    ----------
    persons: valid person rows (from ``read_survey(..., require_target=True)``), columns ``idhogar``,
        ``parentesco1`` and ``Target`` (1-4, no missing values).

    Returns
    -------
    A frame with one row per household, sorted by ``household_id``: ``household_id`` (str),
    ``level`` (int64, 1-4), ``label_source`` (``"head"`` or ``"members_mode"``) and
    ``members_disagree`` (bool: the members' Targets are not all equal).

    Rule: the head's Target is authoritative (the source's definition). A household with no
    head (a few in the survey) takes the most frequent Target among its members; a tie goes to
    the *poorer* level (the smaller number), because leaving a poor household out of a
    targeting list costs more than a visit to a household that turns out not to be poor.
    The input is not modified.
    """
    missing = [c for c in (HOUSEHOLD_ID, "parentesco1", TARGET) if c not in persons.columns]
    if missing:
        raise DataError(f"household levels need column(s) {', '.join(missing)} "
                        "(read the survey with require_target=True)")
    target = pd.to_numeric(persons[TARGET], errors="coerce")
    if target.isna().any() or not target.isin(LEVELS).all():
        raise DataError("household levels need a Target of 1-4 on every person "
                        "(read the survey with require_target=True)")
    frame = pd.DataFrame({
        "household_id": persons[HOUSEHOLD_ID].astype(str).to_numpy(),
        "level": target.astype("int64").to_numpy(),
        "is_head": (pd.to_numeric(persons["parentesco1"], errors="coerce") == 1).to_numpy(),
    })
    grouped = frame.groupby("household_id", sort=True)
    disagree = grouped["level"].nunique() > 1

    # Members' mode with ties to the poorer level: count per (household, level), sort, take the first.
    counts = frame.groupby(["household_id", "level"]).size().rename("n").reset_index()
    counts = counts.sort_values(["household_id", "n", "level"], ascending=[True, False, True], kind="stable")
    mode = counts.drop_duplicates("household_id").set_index("household_id")["level"]

    heads = frame[frame["is_head"]]
    # read_survey rejects households with two heads; if such input arrives anyway, their mode decides.
    single = heads.groupby("household_id")["level"].agg(["first", "size"])
    head_level = single.loc[single["size"] == 1, "first"]

    out = pd.DataFrame(index=mode.index)
    out["level"] = head_level.reindex(out.index)
    out["label_source"] = np.where(out["level"].notna(), "head", "members_mode")
    out["level"] = out["level"].fillna(mode).astype("int64")
    out["members_disagree"] = disagree.reindex(out.index).astype(bool)
    return out.rename_axis("household_id").reset_index()

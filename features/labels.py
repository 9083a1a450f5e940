"""Task labels, built only here and never present in a scoring input.

- `poverty`: poor in year t ⇔ recorded net income per person < the poverty line of t.
- `relapse`: for a wave t that is *eligible* (not poor in t, and either registered poor
  before / poor in an earlier wave on record, or under `near_line_multiplier` x the poverty
  line), relapse ⇔ poor in t+1. Built only from the later wave t+1; waves whose t+1 is not on
  record get no label (they are counted, not silently dropped).
- `idb-level`: the IDB survey's household level 1-4 (head authoritative; see
  `features.sources.idb.household_levels`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.records import HouseholdRecords
from tpas.config import LinesParams

KEY = ["household_id", "year"]


def recorded_poor(households: pd.DataFrame, lines: LinesParams) -> pd.Series:
    """1.0 / 0.0 per wave (NaN when income is missing), indexed like `households`."""
    income = pd.to_numeric(households["net_income_per_capita"], errors="coerce")
    line = households["year"].astype(int).map(lambda y: lines.poverty_line_for(y))
    return (income < line).astype("float64").where(income.notna())


def poverty_labels(records: HouseholdRecords, lines: LinesParams) -> pd.DataFrame:
    """Columns household_id, year, label (0/1) for every wave with a recorded income."""
    hh = records.households
    poor = recorded_poor(hh, lines)
    out = pd.DataFrame({"household_id": hh["household_id"].to_numpy(), "year": hh["year"].astype("int64").to_numpy(),
                        "label": poor.to_numpy()})
    return out.dropna(subset=["label"]).astype({"label": "int8"}).reset_index(drop=True)


def relapse_eligible(records: HouseholdRecords, lines: LinesParams, near_line_multiplier: float) -> pd.DataFrame:
    """Per wave: household_id, year, poor (0/1/NaN) and eligible (bool) for the relapse task.

    Eligible at t: not poor at t, and (registered poor at or before t according to the
    registry, or poor in an earlier wave on record, or income below multiplier x line).
    Rows in the order of ``records.households``; vectorised (the service calls this per request).
    """
    hh = records.households
    year = hh["year"].to_numpy(dtype="int64")
    income = pd.to_numeric(hh["net_income_per_capita"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    years, at = np.unique(year, return_inverse=True)
    line = np.array([lines.poverty_line_for(y) for y in years], dtype="float64")[at]
    poor = np.where(np.isnan(income), np.nan, (income < line).astype("float64"))
    if "poor_since_year" in hh:
        since = pd.to_numeric(hh["poor_since_year"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        registered_before = since <= year
    else:
        registered_before = np.zeros(len(hh), bool)
    # poor in an earlier wave on record: the household's count of poor waves before this one (by year) > 0
    household = pd.factorize(hh["household_id"].to_numpy())[0]
    order = np.lexsort((year, household))
    poor_sorted = np.nan_to_num(poor[order], nan=0.0)
    running = np.cumsum(poor_sorted) - poor_sorted  # poor waves before this row, all households so far
    first = np.r_[True, household[order][1:] != household[order][:-1]] if len(order) else np.zeros(0, bool)
    before_household = running[first][np.cumsum(first) - 1]  # ... counted before the household's first wave
    poor_before = np.empty(len(hh), bool)
    poor_before[order] = (running - before_household) > 0
    near = income < near_line_multiplier * line
    eligible = (poor == 0) & (registered_before | poor_before | near)
    return pd.DataFrame({"household_id": hh["household_id"].to_numpy(), "year": year, "poor": poor,
                         "eligible": eligible})


def relapse_labels(records: HouseholdRecords, lines: LinesParams, near_line_multiplier: float) -> pd.DataFrame:
    """Columns household_id, year (= t, the feature year), label (poor in t+1) for eligible waves
    whose next wave has a recorded income."""
    frame = relapse_eligible(records, lines, near_line_multiplier)
    nxt = frame[["household_id", "year", "poor"]].assign(year=lambda d: d["year"] - 1).rename(columns={"poor": "label"})
    out = frame[frame["eligible"]].merge(nxt, on=KEY, how="inner", validate="one_to_one")
    out = out.dropna(subset=["label"])
    return out[KEY + ["label"]].astype({"label": "int8"}).reset_index(drop=True)

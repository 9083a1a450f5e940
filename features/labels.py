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
    """
    hh = records.households
    poor = recorded_poor(hh, lines)
    frame = pd.DataFrame({"household_id": hh["household_id"].to_numpy(), "year": hh["year"].astype("int64").to_numpy(),
                          "poor": poor.to_numpy()})
    income = pd.to_numeric(hh["net_income_per_capita"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    line = frame["year"].map(lambda y: lines.poverty_line_for(y)).to_numpy(dtype="float64")
    since = pd.to_numeric(hh.get("poor_since_year"), errors="coerce") if "poor_since_year" in hh else None
    registered_before = (since.to_numpy(dtype="float64", na_value=np.nan) <= frame["year"].to_numpy()) \
        if since is not None else np.zeros(len(frame), bool)
    # poor in any earlier wave on record (cumulative max over the household's sorted waves)
    order = frame.sort_values(KEY, kind="stable")
    running = order["poor"].fillna(0).groupby(order["household_id"], sort=False).cummax()
    earlier = running.groupby(order["household_id"], sort=False).shift(1, fill_value=0)
    poor_before = earlier.reindex(frame.index).to_numpy() > 0
    near = income < near_line_multiplier * line
    frame["eligible"] = (frame["poor"] == 0).to_numpy() & (registered_before | poor_before | near)
    return frame


def relapse_labels(records: HouseholdRecords, lines: LinesParams, near_line_multiplier: float) -> pd.DataFrame:
    """Columns household_id, year (= t, the feature year), label (poor in t+1) for eligible waves
    whose next wave has a recorded income."""
    frame = relapse_eligible(records, lines, near_line_multiplier)
    nxt = frame[["household_id", "year", "poor"]].assign(year=lambda d: d["year"] - 1).rename(columns={"poor": "label"})
    out = frame[frame["eligible"]].merge(nxt, on=KEY, how="inner", validate="one_to_one")
    out = out.dropna(subset=["label"])
    return out[KEY + ["label"]].astype({"label": "int8"}).reset_index(drop=True)

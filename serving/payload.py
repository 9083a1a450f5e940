"""Canonical household records -> `/score` request bodies (for clients, the demo, tests and benches)."""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import pandas as pd

from features.records import HouseholdRecords
from serving.schemas import MAX_PREVIOUS_WAVES


def _clean(row: dict) -> dict:
    out = {}
    for k, v in row.items():
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, np.integer):
            v = int(v)
        elif isinstance(v, np.floating):
            v = float(v)
        elif isinstance(v, np.bool_):
            v = bool(v)
        out[k] = v
    return out


def records_to_payload(records: HouseholdRecords, year: int | None = None,
                       max_previous: int = MAX_PREVIOUS_WAVES) -> list[dict[str, Any]]:
    """One API household per household: its wave of `year` (else its latest), earlier waves attached."""
    hh = records.households
    mb = records.members
    member_cols = [c for c in mb.columns if c not in ("household_id", "year")]
    members: dict[tuple, list[dict]] = {}
    for key, grp in mb.sort_values(["household_id", "year", "member_no"]).groupby(["household_id", "year"],
                                                                                  sort=False):
        members[(str(key[0]), int(key[1]))] = [_clean(m) for m in grp[member_cols].to_dict("records")]
    out = []
    for hid, waves in hh.sort_values("year").groupby("household_id", sort=False):
        rows = [_clean(r) for r in waves.to_dict("records")]
        if year is not None:
            current = next((r for r in rows if int(r["year"]) == year), None)
            if current is None:
                continue
        else:
            current = rows[-1]
        cy = int(current["year"])
        earlier = [r for r in rows if int(r["year"]) < cy][-max_previous:] if max_previous else []
        body = dict(current, household_id=str(hid), members=members.get((str(hid), cy), []))
        body["previous_waves"] = [
            {**{k: v for k, v in r.items() if k != "household_id"}, "members": members.get((str(hid), int(r["year"])), [])}
            for r in earlier]
        out.append(body)
    return out


def batches(items: list, size: int) -> Iterator[list]:
    """Consecutive slices of at most `size` items."""
    for i in range(0, len(items), size):
        yield items[i:i + size]

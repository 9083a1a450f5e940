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
    hh = records.households.sort_values(["household_id", "year"], kind="stable")
    mb = records.members.sort_values(["household_id", "year", "member_no"], kind="stable")
    member_cols = [c for c in mb.columns if c not in ("household_id", "year")]
    members: dict[tuple, list[dict]] = {}
    keys = zip(mb["household_id"].astype(str).tolist(), mb["year"].astype("int64").tolist())
    for key, row in zip(keys, mb[member_cols].astype(object).to_dict("records")):
        members.setdefault(key, []).append(_clean(row))
    waves: dict[str, list[dict]] = {}
    for row in hh.astype(object).to_dict("records"):
        row = _clean(row)
        row["household_id"] = str(row["household_id"])
        row["year"] = int(row["year"])
        waves.setdefault(row["household_id"], []).append(row)
    out = []
    for hid, rows in waves.items():
        if year is not None:
            current = next((r for r in rows if r["year"] == year), None)
            if current is None:
                continue
        else:
            current = rows[-1]
        cy = current["year"]
        earlier = [r for r in rows if r["year"] < cy][-max_previous:] if max_previous else []
        body = dict(current, members=members.get((hid, cy), []))
        body["previous_waves"] = [{**{k: v for k, v in r.items() if k != "household_id"},
                                   "members": members.get((hid, r["year"]), [])} for r in earlier]
        out.append(body)
    return out


def batches(items: list, size: int) -> Iterator[list]:
    """Consecutive slices of at most `size` items."""
    for i in range(0, len(items), size):
        yield items[i:i + size]

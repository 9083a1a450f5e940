"""`HouseholdRecords`: household waves and their members travelling together.

The featurizer, the label builders and the scorers take this one object, so that a
household and its members (and, for panel data, its earlier waves) are never separated.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class HouseholdRecords:
    """Canonical household records.

    - `households`: one row per household wave, keyed by (``household_id``, ``year``), columns of
      `features.schema.HOUSEHOLD_COLUMNS`.
    - `members`: one row per member per wave, keyed by (``household_id``, ``year``, ``member_no``),
      columns of `features.schema.MEMBER_COLUMNS`.
    - `regions`: optional region tree (one row per village), columns of `REGION_COLUMNS`.
    """

    households: pd.DataFrame
    members: pd.DataFrame
    regions: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.households)

    @property
    def years(self) -> list[int]:
        """The waves present, sorted."""
        return sorted(int(y) for y in self.households["year"].unique())

    def select_years(self, first: int | None = None, last: int | None = None) -> "HouseholdRecords":
        """Waves with ``first <= year <= last`` (either bound optional); returns a new object."""
        hh_mask = pd.Series(True, index=self.households.index)
        mb_mask = pd.Series(True, index=self.members.index)
        if first is not None:
            hh_mask &= self.households["year"] >= first
            mb_mask &= self.members["year"] >= first
        if last is not None:
            hh_mask &= self.households["year"] <= last
            mb_mask &= self.members["year"] <= last
        return HouseholdRecords(self.households[hh_mask], self.members[mb_mask], self.regions)

    def select_households(self, household_ids) -> "HouseholdRecords":
        """All waves of the given households; returns a new object."""
        ids = pd.Index(household_ids)
        return HouseholdRecords(
            self.households[self.households["household_id"].isin(ids)],
            self.members[self.members["household_id"].isin(ids)],
            self.regions,
        )


def records_to_frame(records: HouseholdRecords) -> pd.DataFrame:
    """One row per household wave with its members as a JSON list in a ``members`` column.

    The flat form MLflow's pyfunc interface and JSON clients exchange; `frame_to_records`
    inverts it.
    """
    members = records.members.copy()
    members["_k"] = list(zip(members["household_id"], members["year"].astype("int64")))
    cols = [c for c in members.columns if c not in ("household_id", "year", "_k")]
    grouped = {k: g[cols] for k, g in members.groupby("_k", sort=False)}
    out = records.households.copy()

    def dump(frame: pd.DataFrame | None) -> str:
        if frame is None:
            return "[]"
        return frame.astype(object).where(frame.notna(), None).to_json(orient="records", force_ascii=False)

    out["members"] = [dump(grouped.get((h, int(y))))
                      for h, y in zip(out["household_id"], out["year"])]
    return out.reset_index(drop=True)


def frame_to_records(frame: pd.DataFrame) -> HouseholdRecords:
    """Inverse of `records_to_frame` (members parsed from JSON; raw values, not yet validated)."""
    import json

    if "members" not in frame.columns:
        raise ValueError("the frame needs a 'members' column holding each household's member list as JSON")
    rows = []
    for hid, year, blob in zip(frame["household_id"], frame["year"], frame["members"]):
        items = json.loads(blob) if isinstance(blob, str) else list(blob or [])
        for m in items:
            rows.append({"household_id": hid, "year": year, **m})
    members = pd.DataFrame(rows)
    return HouseholdRecords(frame.drop(columns=["members"]).reset_index(drop=True), members)

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

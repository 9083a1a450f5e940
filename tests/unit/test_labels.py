"""Labels: poverty from the line of the year; relapse only for eligible waves, from t+1."""

import pandas as pd

from features.labels import poverty_labels, relapse_eligible, relapse_labels
from tests.helpers import LINES, tiny_panel
from tpas.config import LinesParams

LP = LinesParams(poverty_line=LINES)


def _by_key(frame):
    return {(r.household_id, r.year): r.label for r in frame.itertuples()}


def test_poverty_label_follows_line_of_the_year():
    labels = _by_key(poverty_labels(tiny_panel(), LP))
    assert labels[("H1", 2019)] == 1 and labels[("H1", 2020)] == 0 and labels[("H1", 2022)] == 1
    assert all(labels[("H2", y)] == 0 for y in range(2019, 2023))


def test_relapse_eligibility_and_label_from_next_wave():
    records = tiny_panel()
    elig = relapse_eligible(records, LP, 1.5).set_index(["household_id", "year"])["eligible"]
    assert elig[("H1", 2020)] and elig[("H1", 2021)]   # left poverty
    assert not elig[("H1", 2019)]                          # poor in t: not eligible
    assert not elig[("H2", 2020)]                          # never poor, far above the line
    assert elig[("H3", 2019)]                              # near the line (5000 < 1.5 x 3747)
    labels = _by_key(relapse_labels(records, LP, 1.5))
    assert labels[("H1", 2021)] == 1                       # 2022 back under the line
    assert labels[("H1", 2020)] == 0
    assert ("H1", 2022) not in labels                      # no t+1 on record: no label
    assert ("H2", 2020) not in labels


def test_missing_income_gives_no_label():
    records = tiny_panel()
    hh = records.households.copy()
    hh.loc[(hh["household_id"] == "H2") & (hh["year"] == 2020), "net_income_per_capita"] = pd.NA
    from features.records import HouseholdRecords

    labels = _by_key(poverty_labels(HouseholdRecords(hh, records.members), LP))
    assert ("H2", 2020) not in labels and ("H2", 2021) in labels

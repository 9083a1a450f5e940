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


def _eligible_row_by_row(households: pd.DataFrame, lines: LinesParams, multiplier: float) -> dict:
    """The definition read literally, one household and one wave at a time (the reference)."""
    out = {}
    for hid, waves in households.groupby("household_id"):
        poor_before = False
        for w in waves.sort_values("year").itertuples():
            income, line = w.net_income_per_capita, lines.poverty_line_for(w.year)
            poor = None if pd.isna(income) else income < line
            registered = not pd.isna(w.poor_since_year) and w.poor_since_year <= w.year
            near = not pd.isna(income) and income < multiplier * line
            out[(hid, w.year)] = poor is False and (registered or poor_before or near)
            poor_before = poor_before or poor is True
    return out


def test_relapse_eligibility_equals_the_definition_on_shuffled_waves_with_blanks():
    import numpy as np

    from features.records import HouseholdRecords

    rng = np.random.default_rng(3)
    n, years = 60, list(LINES)
    hh = pd.DataFrame([(f"H{i}", y) for i in range(n) for y in years], columns=["household_id", "year"])
    line = hh["year"].map(LINES)
    hh["net_income_per_capita"] = line * rng.uniform(0.5, 2.5, len(hh))
    hh.loc[rng.random(len(hh)) < 0.1, "net_income_per_capita"] = np.nan
    hh["poor_since_year"] = np.where(rng.random(len(hh)) < 0.2, rng.choice(years, len(hh)), np.nan)
    hh = hh.sample(frac=1, random_state=4).reset_index(drop=True)  # waves in no particular order
    got = relapse_eligible(HouseholdRecords(hh, tiny_panel().members.iloc[:0]), LP, 1.5)
    assert list(zip(got["household_id"], got["year"])) == list(zip(hh["household_id"], hh["year"]))  # row order kept
    want = _eligible_row_by_row(hh, LP, 1.5)
    assert {k: bool(v) for k, v in zip(zip(got["household_id"], got["year"]), got["eligible"])} == want
    assert 0 < got["eligible"].sum() < len(hh)

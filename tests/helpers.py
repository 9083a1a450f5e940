"""Small hand-made household records for unit tests (the synthetic panel is used for the rest)."""

from __future__ import annotations

import pandas as pd

from features.records import HouseholdRecords
from features.validation import validate_records

VILLAGE = "430521101201"


def household_row(hid: str, year: int, income: float, **kw) -> dict:
    row = {
        "household_id": hid, "year": year, "village_code": kw.pop("village_code", VILLAGE),
        "household_size": 3, "terrain": "hill", "net_income_per_capita": income,
        "wage_income": income * 2, "farm_business_income": income, "property_income": 0.0, "transfer_income": 0.0,
        "medical_spending": 500.0, "schooling_spending": 200.0, "housing_safety_grade": "B",
        "house_structure": "brick_wood", "drinking_water_source": "tap", "cultivated_land_mu": 3.0,
        "housing_area_m2": 60.0, "disaster_affected": False, "dibao": False, "registry_status": "not_registered",
        "head_name": "张三", "id_card_no": "430521198001011234", "phone": "13800000000",
    }
    row.update(kw)
    return row


def member_rows(hid: str, year: int, ages=(45, 43, 12), health=("healthy", "healthy", "healthy"),
                disability=(0, 0, 0)) -> list[dict]:
    relations = ["head", "spouse", "child", "child", "parent", "parent"]
    rows = []
    for i, age in enumerate(ages):
        rows.append({
            "household_id": hid, "year": year, "member_no": i + 1, "relation": relations[i],
            "sex": "M" if i % 2 == 0 else "F", "age": age, "schooling_years": 9.0 if age >= 18 else 6.0,
            "in_school": age < 18, "health": health[i], "disability_grade": disability[i],
            "work_ability": "full" if 16 <= age <= 64 else "none", "migrant_months": 0,
            "occupation": "farming" if age >= 16 else "student", "medical_insured": True,
        })
    return rows


def tiny_panel() -> HouseholdRecords:
    """Three households over 2019-2022 with known incomes (lines: see `LINES`)."""
    hh, mb = [], []
    incomes = {
        "H1": {2019: 3000, 2020: 4500, 2021: 5000, 2022: 3500},   # poor, exits, relapses in 2022
        "H2": {2019: 9000, 2020: 9500, 2021: 10000, 2022: 11000},  # never poor, far above the line
        "H3": {2019: 5000, 2020: 5200, 2021: 4600, 2022: 6000},    # near the line, never poor
    }
    for hid, by_year in incomes.items():
        for year, income in by_year.items():
            hh.append(household_row(hid, year, income))
            mb.extend(member_rows(hid, year, ages=(45 + year - 2019, 43 + year - 2019, 12 + year - 2019)))
    records, report = validate_records(pd.DataFrame(hh), pd.DataFrame(mb), "tiny")
    assert report.n_rejected == 0, report.rejects
    return records


LINES = {2019: 3747, 2020: 4000, 2021: 4100, 2022: 4200}

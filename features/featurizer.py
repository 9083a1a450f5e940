"""The fitted registry featurizer: household records in, one feature row per household wave out.

`RegistryFeaturizer` is the only place where registry records become model inputs. Training,
batch scoring, the HTTP service and monitoring all call the same fitted (and saved) object.

Input: `HouseholdRecords` (validated canonical households + members; for the `relapse` task
also the household's earlier waves). Output: a float32 `DataFrame` indexed by
(``household_id``, ``year``), one row per household wave, in the input's wave order.

What it learns in `fit` (scikit-learn contract: stored as ``name_``):
- `feature_names_`: the output columns, fixed at fit time, checked at transform;
- `clip_bounds_`: 0.5/99.5 % quantiles of money and area amounts in the training waves,
  which blunt typing slips (an extra zero) without dropping the record;
- `poverty_lines_` / `monitoring_lines_`: the lines in force, copied from the parameters so
  a saved featurizer reproduces its features whatever `params.yaml` says later.

Which fields a task may use (leakage rules, see `task_indicator_columns`):
- `poverty`: year-t indicators only, never the income fields that define the label (nor medical
  spending, which the recorded net income deducts), never the
  registry status (it records the label) and never the programmes received (they follow
  enrolment, so they would teach the model the registry's past decisions, exclusion errors
  included). No history.
- `relapse`: everything known at t, including income and status, plus history from waves
  t-1 ... t-h (h = `history_years`); nothing from t+1 or later.
Unseen category values and missing values become NaN (LightGBM routes them; the linear
baseline imputes), never an error.

`transform` has two implementations giving identical frames (bit for bit; tested in
tests/unit/test_small_batch.py): the general one (pandas, vectorised: fast for large batches)
and, for batches of at most `SMALL_BATCH_ROWS` household waves with plain keys (the scoring
service's requests), a numpy one that builds the output in one go (`_SmallBatch`), since the
general one costs tens of milliseconds of per-call pandas overhead even for one household.
Its sums and means repeat pandas' own (Kahan-compensated, in row order) arithmetic. Set
`SMALL_BATCH_ROWS = 0` to force the general path.
"""

from __future__ import annotations

import weakref
from typing import Iterable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from features.records import HouseholdRecords
from features.schema import CAUSES, HOUSEHOLD_COLUMNS, HOUSEHOLD_SPECS, ColumnSpec
from tpas.errors import DataError

TASKS_WITH_HISTORY = {"relapse"}
REGISTRY_TASKS = ("poverty", "relapse")

#: Amounts whose extreme tails are clipped to the training quantiles.
_CLIPPED = ("wage_income", "farm_business_income", "property_income", "transfer_income", "net_income_per_capita",
            "medical_spending", "schooling_spending", "housing_area_m2", "cultivated_land_mu", "forest_land_mu",
            "livestock_units", "disaster_loss_yuan")

# Derived features: name -> (en, zh, cause, description). Raw indicators take theirs from the schema.
DERIVED: dict[str, tuple[str, str, str | None, str]] = {
    "n_members": ("members listed", "在册人口", "labour", "Members in the member list this wave."),
    "size_mismatch": ("recorded size minus members listed", "人口数不符", None,
                      "Recorded household size minus the member list (data-entry check)."),
    "n_children": ("children under 16", "16岁以下儿童", "labour", "Members aged under 16."),
    "n_elderly": ("members aged 65+", "65岁以上老人", "labour", "Members aged 65 or more."),
    "n_working_age": ("members aged 16-64", "劳动年龄人口", "labour", "Members aged 16-64."),
    "n_able_workers": ("able workers", "普通劳动力", "labour", "Members aged 16-64 with full ability to work."),
    "n_workers_any": ("members able to work at least partly", "有劳动能力人数", "labour",
                      "Members with full or partial ability to work (so partial -> full never lowers it)."),
    "labour_ratio": ("share of able workers", "劳动力占比", "labour", "Able workers / members."),
    "dependency_ratio": ("dependants per working-age member", "抚养比", "labour",
                         "(Children + elderly) / members aged 16-64."),
    "head_age": ("age of the head", "户主年龄", "labour", "Age of the household head."),
    "head_female": ("female head", "女性户主", None, "The head is a woman."),
    "head_schooling": ("head's years of schooling", "户主受教育年限", "education", "Head's years of schooling."),
    "head_illness": ("head's illness", "户主患病程度", "illness", "0 healthy, 1 chronic illness, 2 serious illness."),
    "head_disabled": ("head disabled", "户主残疾", "disability", "The head has a disability."),
    "head_work_ability": ("head's ability to work", "户主劳动能力", "labour", "0 none, 1 partial, 2 full."),
    "max_adult_schooling": ("most schooling of an adult", "成人最高受教育年限", "education",
                            "Highest years of schooling among members 18+."),
    "mean_adult_schooling": ("mean schooling of adults", "成人平均受教育年限", "education",
                             "Mean years of schooling of members 18+."),
    "n_ill": ("members with a chronic or serious illness", "患病人数", "illness",
              "Members with a chronic or a serious illness (chronic -> serious never lowers it)."),
    "n_serious_ill": ("seriously ill members", "大病人数", "illness", "Members with a serious illness."),
    "n_disabled": ("disabled members", "残疾人数", "disability", "Members with a disability."),
    "max_disability_severity": ("most severe disability", "最重残疾等级", "disability",
                                "0 none, 1 mild (grade 4) ... 4 most severe (grade 1)."),
    "n_migrant_workers": ("migrant workers", "外出务工人数", "labour", "Members with migrant work this year."),
    "migrant_months": ("months of migrant work", "外出务工月数", "labour",
                       "Months of migrant work summed over members."),
    "n_school_age_out": ("school-age children not in school", "义务教育阶段失学", "education",
                         "Children aged 6-15 not enrolled."),
    "n_students": ("members in school", "在校生", "education", "Members enrolled in school."),
    "share_insured_members": ("share of members insured", "参保比例", "illness",
                              "Members with basic medical insurance / members."),
    "elderly_headed": ("head aged 60+", "老年户主", "labour", "The head is 60 or older."),
    "land_per_capita": ("land per person", "人均耕地", "land", "Cultivated land (mu) per member."),
    "housing_area_per_capita": ("floor area per person", "人均住房面积", "capital", "Floor area (m2) per member."),
    "livestock_per_capita": ("livestock per person", "人均牲畜", "capital", "Livestock units per member."),
    "assets_count": ("durable assets owned", "耐用品数量", "capital", "Count of the seven asset indicators owned."),
    "medical_spending_per_capita": ("medical spending per person", "人均医疗支出", "illness",
                                    "Medical spending (yuan) per member."),
    # history and income-to-line features (relapse task)
    "income_to_poverty_line": ("income relative to the poverty line", "收入/贫困线", "capital",
                               "Net income per person / poverty line of the year."),
    "income_to_monitoring_line": ("income relative to the monitoring line", "收入/监测线", "capital",
                                  "Net income per person / monitoring line of the year."),
    "income_lag1": ("last year's income per person", "上年人均纯收入", "capital",
                    "Net income per person in t-1 (NaN when t-1 is not on record)."),
    "income_change": ("change in income since last year", "收入变化率", "capital",
                      "Income per person t / t-1, minus 1."),
    "spending_to_last_income": ("unavoidable spending against last year's income", "刚性支出/上年收入", "illness",
                                "(Medical + schooling spending) / last year's household net income."),
    "years_poor_recent": ("recent years below the line", "近年贫困年数", "capital",
                          "Waves below the poverty line among t-h ... t-1."),
    "years_since_exit": ("years since leaving poverty", "脱贫年限", None, "t - exit year (NaN if never exited)."),
    "ever_registered_poor": ("ever registered poor", "曾建档立卡", None, "Has a year of first registration."),
    "new_serious_illness": ("new serious illness", "新发大病", "illness",
                            "More seriously ill members than in t-1."),
    "new_disability": ("new disability", "新增残疾", "disability", "More disabled members than in t-1."),
    "migrant_months_change": ("change in migrant work", "务工月数变化", "labour",
                              "Migrant months t minus t-1."),
    "disaster_lag1": ("hit by disaster last year", "上年受灾", "disaster", "Disaster in t-1."),
}

#: Indicators that enter the recorded net income (medical spending above a deductible is
#: subtracted from it), so they partly define the poverty label and are not its features.
POVERTY_LABEL_INPUTS = frozenset({"medical_spending"})

#: Direction in which a feature may move the risk (LightGBM monotone constraints), so that
#: all else equal a new serious illness or disability never lowers a risk, and a member who
#: becomes able to work never raises it. Features are cumulative (n_ill counts chronic *or*
#: serious, n_workers_any partial *or* full) so each such change moves them one way only.
MONOTONE: dict[str, int] = {
    "n_serious_ill": 1, "n_ill": 1, "head_illness": 1, "new_serious_illness": 1,
    "n_disabled": 1, "max_disability_severity": 1, "head_disabled": 1, "new_disability": 1,
    "n_able_workers": -1, "n_workers_any": -1, "labour_ratio": -1, "head_work_ability": -1,
}

_ASSETS = ("has_motorcycle", "has_car", "has_farm_machinery", "has_fridge", "has_washing_machine", "has_tv",
           "has_smartphone")
_KEY = ["household_id", "year"]

#: Batches of at most this many household waves take the small-batch path of `transform`
#: (module docstring); 0 forces the general path (tests and bench/serving_path_bench.py compare both).
SMALL_BATCH_ROWS = 20_000


def task_indicator_columns(task: str) -> list[ColumnSpec]:
    """The raw household indicators a task may use as features (see the module docstring)."""
    if task not in REGISTRY_TASKS:
        raise ValueError(f"unknown registry task {task!r} (expected one of {', '.join(REGISTRY_TASKS)})")
    out = []
    for spec in HOUSEHOLD_COLUMNS:
        if spec.role not in ("indicator", "income", "status"):
            continue
        if task == "poverty" and (spec.role in ("income", "status") or spec.set == "programmes"
                                  or spec.name in POVERTY_LABEL_INPUTS):
            continue
        if spec.name in ("poor_since_year", "exit_year"):  # years as numbers mean nothing; history uses them
            continue
        out.append(spec)
    return out


def _encode_indicator(values: pd.Series, spec: ColumnSpec) -> dict[str, np.ndarray]:
    """Encode one raw indicator to float columns: bools 0/1, ordered categories 0..k-1, others one-hot."""
    if spec.kind in ("int", "float"):
        return {spec.name: pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)}
    if spec.kind == "bool":
        return {spec.name: values.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)}
    cats = pd.Categorical(_text(values), categories=list(spec.categories))
    codes = cats.codes.astype("float64")
    codes[codes < 0] = np.nan  # missing or unseen value
    if spec.ordered:
        return {spec.name: codes}
    out = {}
    for i, cat in enumerate(spec.categories):
        col = (codes == i).astype("float64")
        col[np.isnan(codes)] = np.nan
        out[f"{spec.name}={cat}"] = col
    return out


def _member_aggregates(members: pd.DataFrame) -> pd.DataFrame:
    """Vectorised member aggregates per (household_id, year). Missing member fields count as unknown."""
    m = members
    age = pd.to_numeric(m["age"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    health = _text(m["health"])
    grade = pd.to_numeric(m["disability_grade"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    ability = _text(m["work_ability"])
    school = pd.to_numeric(m["schooling_years"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    in_school = m["in_school"].astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    migrant = pd.to_numeric(m["migrant_months"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    insured = m["medical_insured"].astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    is_head = _text(m["relation"]) == "head"

    disabled = np.where(np.isnan(grade), np.nan, (grade > 0).astype("float64"))
    severity = np.where(grade > 0, 5.0 - grade, 0.0)
    severity[np.isnan(grade)] = np.nan
    adult = age >= 18
    working_age = (age >= 16) & (age <= 64)
    ability_code = np.select([ability == "none", ability == "partial", ability == "full"], [0.0, 1.0, 2.0], np.nan)

    frame = pd.DataFrame({
        "household_id": m["household_id"].to_numpy(), "year": m["year"].to_numpy(dtype="int64"),
        "n_members": 1.0,
        "n_children": (age < 16).astype("float64"),
        "n_elderly": (age >= 65).astype("float64"),
        "n_working_age": working_age.astype("float64"),
        "n_able_workers": (working_age & (ability == "full")).astype("float64"),
        "n_workers_any": ((ability == "partial") | (ability == "full")).astype("float64"),
        "n_ill": ((health == "chronic") | (health == "serious")).astype("float64"),
        "n_serious_ill": (health == "serious").astype("float64"),
        "n_disabled": np.nan_to_num(disabled),
        "max_disability_severity": severity,
        "n_migrant_workers": (np.nan_to_num(migrant) > 0).astype("float64"),
        "migrant_months": migrant,
        "n_school_age_out": ((age >= 6) & (age <= 15) & (in_school == 0)).astype("float64"),
        "n_students": np.nan_to_num(in_school),
        "insured": insured,
        "adult_schooling": np.where(adult, school, np.nan),
    })
    grouped = frame.groupby(_KEY, sort=False)
    sums = grouped[["n_members", "n_children", "n_elderly", "n_working_age", "n_able_workers", "n_workers_any",
                    "n_ill", "n_serious_ill", "n_disabled", "n_migrant_workers", "n_school_age_out",
                    "n_students"]].sum()
    out = sums
    out["migrant_months"] = grouped["migrant_months"].sum(min_count=1)
    out["max_disability_severity"] = grouped["max_disability_severity"].max()
    out["max_adult_schooling"] = grouped["adult_schooling"].max()
    out["mean_adult_schooling"] = grouped["adult_schooling"].mean()
    out["share_insured_members"] = grouped["insured"].mean()

    # The head: the member marked head; if a record has none (or several), the lowest member number.
    head_rank = np.where(is_head, 0, 1) * 1000 + pd.to_numeric(m["member_no"], errors="coerce").to_numpy(
        dtype="float64", na_value=999)
    heads = pd.DataFrame({
        "household_id": frame["household_id"], "year": frame["year"], "rank": head_rank,
        "head_age": age, "head_female": (_text(m["sex"]) == "F").astype("float64"),
        "head_schooling": school,
        "head_illness": np.select([health == "healthy", health == "chronic", health == "serious"], [0.0, 1.0, 2.0],
                                  np.nan),
        "head_disabled": disabled, "head_work_ability": ability_code,
    })
    heads = heads.sort_values([*_KEY, "rank"], kind="stable").drop_duplicates(_KEY).set_index(_KEY).drop(columns="rank")
    return out.join(heads)


class RegistryFeaturizer(BaseEstimator, TransformerMixin):
    """Fitted featurizer of canonical registry records for the `poverty` and `relapse` tasks.

    Parameters
    ----------
    task: ``"poverty"`` or ``"relapse"`` (decides the allowed fields and whether history is used).
    poverty_lines, monitoring_lines: yuan/person/year by year (from `params.lines`); used for the
        income-to-line features of `relapse`. Years missing here yield NaN for those features.
    history_years: earlier waves looked at for the `relapse` history features.
    """

    def __init__(self, task: str = "poverty", poverty_lines: dict[int, float] | None = None,
                 monitoring_lines: dict[int, float] | None = None, history_years: int = 3):
        self.task = task
        self.poverty_lines = poverty_lines
        self.monitoring_lines = monitoring_lines
        self.history_years = history_years

    # -- sklearn API -------------------------------------------------------------------------
    def fit(self, records: HouseholdRecords, y=None) -> "RegistryFeaturizer":
        """Learn the output columns and the clipping bounds from training records."""
        if self.task not in REGISTRY_TASKS:
            raise ValueError(f"unknown registry task {self.task!r}")
        self._check_input(records)
        self.indicator_specs_ = task_indicator_columns(self.task)
        self.poverty_lines_ = {int(k): float(v) for k, v in (self.poverty_lines or {}).items()}
        self.monitoring_lines_ = {int(k): float(v) for k, v in (self.monitoring_lines or {}).items()}
        hh = records.households
        bounds = {}
        for name in _CLIPPED:
            if name in hh.columns and any(s.name == name for s in self.indicator_specs_):
                vals = pd.to_numeric(hh[name], errors="coerce").dropna()
                if len(vals) >= 50:
                    lo, hi = np.quantile(vals, [0.005, 0.995])
                    bounds[name] = (float(lo), float(hi))
        self.clip_bounds_ = bounds
        frame = self._features(records)
        self.feature_names_ = list(frame.columns)
        self.n_features_out_ = len(self.feature_names_)
        return self

    def transform(self, records: HouseholdRecords) -> pd.DataFrame:
        """Feature rows, float32, indexed by (household_id, year), columns `feature_names_`."""
        check_is_fitted(self, "feature_names_")
        self._check_input(records)
        if 0 < len(records.households) <= SMALL_BATCH_ROWS and len(records.members):
            out = _small_batch_plan(self).transform(self, records)
            if out is not None:  # None: keys or types the small-batch path leaves to the general one
                return out
        frame = self._features(records)
        return frame.reindex(columns=self.feature_names_).astype("float32")

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)

    @property
    def feature_info_(self) -> list[dict]:
        """Per output feature: name, English and Chinese label, cause of poverty, description."""
        check_is_fitted(self, "feature_names_")
        return [describe_feature(n) for n in self.feature_names_]

    # -- internals -------------------------------------------------------------------------------
    @staticmethod
    def _check_input(records: HouseholdRecords) -> None:
        if not isinstance(records, HouseholdRecords):
            raise DataError(f"the featurizer takes HouseholdRecords, got {type(records).__name__}")
        for table, cols in (("households", ("household_id", "year", "village_code")),
                            ("members", ("household_id", "year", "member_no", "relation", "sex", "age"))):
            frame = getattr(records, table)
            missing = [c for c in cols if c not in frame.columns]
            if missing:
                raise DataError(f"{table} records lack column(s) {', '.join(missing)}")

    def _features(self, records: HouseholdRecords) -> pd.DataFrame:
        hh = records.households
        members = _with_defaults(records.members, ("schooling_years", "in_school", "health", "disability_grade",
                                                   "work_ability", "migrant_months", "medical_insured"))
        hh = _with_defaults(hh, [s.name for s in self.indicator_specs_] + ["exit_year", "poor_since_year",
                                                                            "net_income_per_capita"])
        keys = pd.MultiIndex.from_arrays([hh["household_id"].astype("object").to_numpy(),
                                          hh["year"].astype("int64").to_numpy()], names=_KEY)
        cols: dict[str, np.ndarray] = {}
        for spec in self.indicator_specs_:
            values = hh[spec.name]
            if spec.name in self.clip_bounds_:
                lo, hi = self.clip_bounds_[spec.name]
                values = pd.to_numeric(values, errors="coerce").clip(lo, hi)
            cols.update(_encode_indicator(values, spec))
        out = pd.DataFrame(cols, index=keys)

        agg = _member_aggregates(members).reindex(keys)
        out = out.join(agg)
        n = out["n_members"].where(out["n_members"] > 0)
        out["n_members"] = out["n_members"].fillna(0.0)
        out["size_mismatch"] = out["household_size"] - out["n_members"]
        out["labour_ratio"] = out["n_able_workers"] / n
        out["dependency_ratio"] = (out["n_children"] + out["n_elderly"]) / out["n_working_age"].clip(lower=1)
        out["elderly_headed"] = (out["head_age"] >= 60).astype("float64").where(out["head_age"].notna())
        out["land_per_capita"] = out["cultivated_land_mu"] / n
        out["housing_area_per_capita"] = out["housing_area_m2"] / n
        out["livestock_per_capita"] = out["livestock_units"] / n
        out["assets_count"] = out[list(_ASSETS)].sum(axis=1, min_count=1)
        if "medical_spending" in out:
            out["medical_spending_per_capita"] = out["medical_spending"] / n

        if self.task in TASKS_WITH_HISTORY:
            out = out.join(self._history(hh, keys, out))
        return out

    def _line(self, years: np.ndarray, lines: dict[int, float]) -> np.ndarray:
        return pd.Series(years).map(lines).to_numpy(dtype="float64", na_value=np.nan)

    def _history(self, hh: pd.DataFrame, keys: pd.MultiIndex, current: pd.DataFrame) -> pd.DataFrame:
        """Features from waves t-h ... t-1 of the same household, present in the input."""
        years = keys.get_level_values("year").to_numpy()
        income = pd.to_numeric(hh["net_income_per_capita"], errors="coerce").to_numpy(dtype="float64",
                                                                                         na_value=np.nan)
        if "net_income_per_capita" in self.clip_bounds_:
            lo, hi = self.clip_bounds_["net_income_per_capita"]
            income = np.clip(income, lo, hi)
        pline = self._line(years, self.poverty_lines_)
        mline = self._line(years, self.monitoring_lines_)
        poor = np.where(np.isnan(income) | np.isnan(pline), np.nan, (income < pline).astype("float64"))

        base = pd.DataFrame({
            "income": income, "poor": poor,
            "serious": current["n_serious_ill"].to_numpy(), "disabled": current["n_disabled"].to_numpy(),
            "migrant": current["migrant_months"].to_numpy(),
            "disaster": current["disaster_affected"].to_numpy() if "disaster_affected" in current else np.nan,
            "size": current["n_members"].to_numpy(),
        }, index=keys)
        lag = {k: _lag(base, k) for k in range(1, self.history_years + 1)}
        out = pd.DataFrame(index=keys)
        out["income_to_poverty_line"] = income / pline
        out["income_to_monitoring_line"] = income / mline
        out["income_lag1"] = lag[1]["income"].to_numpy()
        out["income_change"] = income / lag[1]["income"].where(lag[1]["income"] > 0).to_numpy() - 1.0
        spending = (current["medical_spending"].fillna(0) + current["schooling_spending"].fillna(0)).to_numpy()  # relapse only
        last_total = (lag[1]["income"] * lag[1]["size"]).to_numpy()
        out["spending_to_last_income"] = spending / np.where(last_total > 0, last_total, np.nan)
        out["years_poor_recent"] = sum(lag[k]["poor"].fillna(0).to_numpy() for k in lag)
        exit_year = pd.to_numeric(hh["exit_year"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        exit_year = np.where(exit_year <= years, exit_year, np.nan)  # a later exit is not known at t
        out["years_since_exit"] = years - exit_year
        since = pd.to_numeric(hh["poor_since_year"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        out["ever_registered_poor"] = ((since <= years) | (out["years_poor_recent"].to_numpy() > 0)).astype("float64")
        out["new_serious_illness"] = (base["serious"].to_numpy() > lag[1]["serious"].to_numpy()).astype("float64")
        out["new_disability"] = (base["disabled"].to_numpy() > lag[1]["disabled"].to_numpy()).astype("float64")
        out["migrant_months_change"] = base["migrant"].to_numpy() - lag[1]["migrant"].to_numpy()
        out["disaster_lag1"] = lag[1]["disaster"].to_numpy()
        return out


def _text(values: pd.Series) -> np.ndarray:
    """Text values as a numpy string array, missing as "" (comparisons then never meet pd.NA)."""
    return values.astype("string").fillna("").to_numpy(dtype=object)


def _with_defaults(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """The frame with absent optional columns added as missing (the input itself is not modified)."""
    absent = [c for c in columns if c not in frame.columns]
    if not absent:
        return frame
    return frame.assign(**{c: pd.Series(pd.NA, index=frame.index, dtype="object") for c in absent})


def _lag(base: pd.DataFrame, k: int) -> pd.DataFrame:
    """Values of wave t-k of the same household, aligned to the rows of `base` (NaN when absent)."""
    hid = base.index.get_level_values("household_id")
    yr = base.index.get_level_values("year").to_numpy()
    lookup = base.copy()
    lookup.index = pd.MultiIndex.from_arrays([hid, yr + k], names=_KEY)
    lookup = lookup[~lookup.index.duplicated()]
    return lookup.reindex(base.index)


# -- small batches -----------------------------------------------------------------------------------
_MEMBER_SUMS = ("n_members", "n_children", "n_elderly", "n_working_age", "n_able_workers", "n_workers_any",
                "n_ill", "n_serious_ill", "n_disabled", "n_migrant_workers", "n_school_age_out", "n_students")
_PLANS: "weakref.WeakKeyDictionary[RegistryFeaturizer, _SmallBatch]" = weakref.WeakKeyDictionary()


def _small_batch_plan(fz: RegistryFeaturizer) -> "_SmallBatch":
    """The featurizer's small-batch plan, built once per fit (rebuilt when the fitted attributes change)."""
    plan = _PLANS.get(fz)
    if plan is None or not plan.matches(fz):
        plan = _PLANS[fz] = _SmallBatch(fz)
    return plan


_MASKED_NUMBERS = (pd.BooleanDtype, pd.Int8Dtype, pd.Int16Dtype, pd.Int32Dtype, pd.Int64Dtype, pd.UInt8Dtype,
                   pd.UInt16Dtype, pd.UInt32Dtype, pd.UInt64Dtype, pd.Float32Dtype, pd.Float64Dtype)


def _plain_number(dtype) -> bool:
    """Numpy bool / int / float, or their pandas masked versions (what validation gives)."""
    return (isinstance(dtype, np.dtype) and dtype.kind in "biuf") or isinstance(dtype, _MASKED_NUMBERS)


def _column_arrays(frame: pd.DataFrame) -> dict | None:
    """The frame's columns by name as arrays (numpy, or pandas extension arrays), without building a
    Series for each (pandas' own column iterator when present); None when names repeat."""
    if not frame.columns.is_unique:
        return None
    iterate = getattr(frame, "_iter_column_arrays", None)
    if iterate is not None:
        return dict(zip(frame.columns, iterate()))
    return {c: frame[c].to_numpy() if isinstance(frame[c].dtype, np.dtype) else frame[c].array for c in frame.columns}


def _float_array(values, na: float = np.nan) -> np.ndarray | None:
    """``Series(values).to_numpy(dtype="float64", na_value=na)`` (a fresh array) for plain number
    columns (numpy bool / int / float, pandas Int / boolean); None for other columns."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "biuf":
            return None
        out = values.astype(np.float64)
        if values.dtype.kind == "f" and not np.isnan(na):
            out[np.isnan(out)] = na
        return out
    if isinstance(values, (pd.arrays.IntegerArray, pd.arrays.BooleanArray)):
        data, mask = getattr(values, "_data", None), getattr(values, "_mask", None)
        if isinstance(data, np.ndarray) and isinstance(mask, np.ndarray):  # (no NaN in their data)
            out = data.astype(np.float64)
            out[mask] = na
            return out
    if _plain_number(values.dtype):
        return values.to_numpy(dtype="float64", na_value=na)
    return None


def _as_float(values) -> np.ndarray:
    """``pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)`` of a
    column array, a fresh array (to_numeric leaves plain number dtypes as they are: those skip it)."""
    out = _float_array(values)
    if out is None:
        out = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return out


def _as_float_bool(values) -> np.ndarray:
    """``values.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)`` (the bool encoding) of a
    column array, a fresh array: for plain number dtypes the same values without the detour."""
    out = _float_array(values)
    if out is None:
        out = pd.Series(values).astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
    return out


def _as_text(values) -> np.ndarray:
    """`_text` of a column array (missing as ""), without pandas' string machinery for str / None."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        items = values.tolist()
        types = set(map(type, items))
        if types <= {str, type(None)}:
            out = values.copy()
            if type(None) in types:
                out[[v is None for v in items]] = ""
            return out
    return _text(pd.Series(values))


def _clip(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``Series.clip(lo, hi)`` of a float64 Series, with numpy (bounds ordered, a NaN bound ignored)."""
    lower = None if np.isnan(lo) else lo
    upper = None if np.isnan(hi) else hi
    if lower is not None and upper is not None:
        lower, upper = min(lower, upper), max(lower, upper)
    nan = np.isnan(x)
    out = x.copy()
    if lower is not None:
        out = np.where(nan | (x >= lower), out, lower)
    if upper is not None:
        out = np.where(nan | (x <= upper), out, upper)
    return out


def _group_stats(values: np.ndarray, group: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group and column of `values` (rows x columns, NaN = missing): Kahan sum, count of non-missing
    and max, computed as pandas' groupby sum / mean / max do (rows added in their order, the same
    compensation), so the results are bit-identical. Rows with group -1 are left out."""
    k = values.shape[1]
    total = np.zeros((n_groups, k))
    comp = np.zeros((n_groups, k))
    nobs = np.zeros((n_groups, k), dtype=np.int64)
    top = np.full((n_groups, k), -np.inf)
    rows = np.flatnonzero(group >= 0)
    if not len(rows):
        return total, nobs, top
    order = rows[np.argsort(group[rows], kind="stable")]
    g_sorted = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g_sorted)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank = np.arange(len(order)) - first
    for r in range(int(rank.max()) + 1):
        at = order[rank == r]  # at most one row per group: plain fancy-index updates are safe
        g = group[at]
        val = values[at]
        ok = ~np.isnan(val)
        s, c = total[g], comp[g]
        with np.errstate(invalid="ignore"):
            y = val - c
            t = s + y
            c_new = t - s - y
        c_new[c_new != c_new] = 0.0  # an infinite value: pandas resets the compensation
        total[g] = np.where(ok, t, s)
        comp[g] = np.where(ok, c_new, c)
        nobs[g] += ok
        m = top[g]
        top[g] = np.where(ok & (val > m), val, m)
    return total, nobs, top


class _SmallBatch:
    """`RegistryFeaturizer.transform` for small batches with numpy (module docstring): per-fit lookups
    computed once, one pass per column, the output frame built once."""

    def __init__(self, fz: RegistryFeaturizer):
        # What the plan is derived from (the fitted lists themselves, compared by identity).
        self._source = (fz.feature_names_, fz.indicator_specs_)
        self.names = pd.Index(list(fz.feature_names_), dtype=object)
        self.position = {n: i for i, n in enumerate(fz.feature_names_)}
        # (spec, {category: code} of a category, its one-hot column names when not ordered)
        self.specs = []
        for spec in fz.indicator_specs_:
            codes = {c: float(i) for i, c in enumerate(spec.categories)} if spec.kind == "category" else None
            onehot = [f"{spec.name}={c}" for c in spec.categories] if codes is not None and not spec.ordered else None
            self.specs.append((spec, codes, onehot))

    def matches(self, fz: RegistryFeaturizer) -> bool:
        return self._source[0] is fz.feature_names_ and self._source[1] is fz.indicator_specs_

    # -- the pieces -------------------------------------------------------------------------------------
    @staticmethod
    def _keys(columns: dict) -> tuple[list, np.ndarray] | None:
        """(household ids, years as int64) when the ids are all str and the years integers, none missing."""
        hid, year = columns["household_id"], columns["year"]
        if not (isinstance(hid, np.ndarray) and hid.dtype == object):
            return None
        ids = hid.tolist()
        if set(map(type, ids)) != {str}:
            return None
        if isinstance(year, np.ndarray) and year.dtype.kind in "iu":
            return ids, year.astype(np.int64)
        if isinstance(year, pd.arrays.IntegerArray) and isinstance(year.dtype, pd.Int64Dtype) and not year.isna().any():
            return ids, year.to_numpy(dtype=np.int64)
        return None

    def _indicators(self, hh: dict, n: int, cols: dict[str, np.ndarray], bounds: dict) -> None:
        """The encoded indicators (as the clip + `_encode_indicator` loop of `_features`), from the
        household columns by name."""
        for spec, codes, onehot in self.specs:
            values = hh.get(spec.name)
            if values is None:  # absent optional column: all missing
                for name in onehot or (spec.name,):
                    cols[name] = np.full(n, np.nan)
                continue
            if spec.name in bounds:
                lo, hi = bounds[spec.name]
                if spec.kind in ("int", "float") and isinstance(values, np.ndarray) and values.dtype == np.float64:
                    cols[spec.name] = _clip(values, lo, hi)
                    continue
                clipped = pd.to_numeric(pd.Series(values), errors="coerce").clip(lo, hi)
                values = clipped.to_numpy() if isinstance(clipped.dtype, np.dtype) else clipped.array
            if spec.kind in ("int", "float"):
                cols[spec.name] = _as_float(values)
            elif spec.kind == "bool":
                cols[spec.name] = _as_float_bool(values)
            else:
                code = np.array([codes.get(v, np.nan) for v in _as_text(values).tolist()], dtype=np.float64)
                if onehot is None:
                    cols[spec.name] = code
                    continue
                nan = np.isnan(code)
                for i, name in enumerate(onehot):
                    col = (code == i).astype("float64")
                    col[nan] = np.nan
                    cols[name] = col

    @staticmethod
    def _members(m: dict, row: np.ndarray, n: int, cols: dict[str, np.ndarray]) -> None:
        """Member aggregates (as `_member_aggregates` + reindex) of the household rows, from the
        member columns by name, `row` giving each member's household row (-1: none)."""
        size = len(row)

        def col(name, conv):
            return conv(m[name]) if name in m else np.full(size, np.nan)

        def text(name):
            return _as_text(m[name]) if name in m else np.full(size, "", dtype=object)

        age = _as_float(m["age"])
        health = text("health")
        grade = col("disability_grade", _as_float)
        ability = text("work_ability")
        school = col("schooling_years", _as_float)
        in_school = col("in_school", _as_float_bool)
        migrant = col("migrant_months", _as_float)
        insured = col("medical_insured", _as_float_bool)
        is_head = _as_text(m["relation"]) == "head"

        disabled = np.where(np.isnan(grade), np.nan, (grade > 0).astype("float64"))
        severity = np.where(grade > 0, 5.0 - grade, 0.0)
        severity[np.isnan(grade)] = np.nan
        adult = age >= 18
        working_age = (age >= 16) & (age <= 64)
        able_full, able_part = ability == "full", ability == "partial"
        ability_code = np.select([ability == "none", able_part, able_full], [0.0, 1.0, 2.0], np.nan)
        ill_serious, ill_chronic = health == "serious", health == "chronic"

        sums = np.column_stack([
            np.ones(size),
            (age < 16).astype("float64"),
            (age >= 65).astype("float64"),
            working_age.astype("float64"),
            (working_age & able_full).astype("float64"),
            (able_part | able_full).astype("float64"),
            (ill_chronic | ill_serious).astype("float64"),
            ill_serious.astype("float64"),
            np.nan_to_num(disabled),
            (np.nan_to_num(migrant) > 0).astype("float64"),
            ((age >= 6) & (age <= 15) & (in_school == 0)).astype("float64"),
            np.nan_to_num(in_school),
            migrant,                                   # sum, min_count=1
            insured,                                   # mean
            np.where(adult, school, np.nan),           # max and mean
            severity,                                  # max
        ])
        total, nobs, top = _group_stats(sums, row, n)
        missing = np.bincount(row[row >= 0], minlength=n) == 0  # no member: NaN everywhere (the reindex)

        def keep(x):
            x[missing] = np.nan
            return x

        for j, name in enumerate(_MEMBER_SUMS):
            cols[name] = keep(total[:, j].copy())
        with np.errstate(invalid="ignore", divide="ignore"):
            cols["migrant_months"] = keep(np.where(nobs[:, 12] >= 1, total[:, 12], np.nan))
            cols["share_insured_members"] = keep(np.where(nobs[:, 13] > 0, total[:, 13] / nobs[:, 13], np.nan))
            cols["mean_adult_schooling"] = keep(np.where(nobs[:, 14] > 0, total[:, 14] / nobs[:, 14], np.nan))
        cols["max_adult_schooling"] = keep(np.where(nobs[:, 14] > 0, top[:, 14], np.nan))
        cols["max_disability_severity"] = keep(np.where(nobs[:, 15] > 0, top[:, 15], np.nan))

        # The head: the member marked head; if none (or several), the lowest member number; ties: first row.
        head_rank = np.where(is_head, 0, 1) * 1000 + _member_no_rank(m["member_no"])
        member = np.flatnonzero(row >= 0)
        order = member[np.lexsort((member, head_rank[member], row[member]))]
        firsts = order[np.r_[True, row[order][1:] != row[order][:-1]]] if len(order) else order
        head = np.full(n, -1)
        head[row[firsts]] = firsts
        has = head >= 0

        def of_head(x):
            out = np.full(n, np.nan)
            out[has] = x[head[has]]
            return out

        cols["head_age"] = of_head(age)
        cols["head_female"] = of_head((_as_text(m["sex"]) == "F").astype("float64"))
        cols["head_schooling"] = of_head(school)
        cols["head_illness"] = of_head(np.select([health == "healthy", ill_chronic, ill_serious], [0.0, 1.0, 2.0],
                                                 np.nan))
        cols["head_disabled"] = of_head(disabled)
        cols["head_work_ability"] = of_head(ability_code)

    @staticmethod
    def _derived(cols: dict[str, np.ndarray]) -> None:
        """The derived household features (as in `RegistryFeaturizer._features`)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            members = cols["n_members"]
            n = np.where(members > 0, members, np.nan)
            cols["n_members"] = members = np.where(np.isnan(members), 0.0, members)
            cols["size_mismatch"] = cols["household_size"] - members
            cols["labour_ratio"] = cols["n_able_workers"] / n
            working = cols["n_working_age"]
            cols["dependency_ratio"] = (cols["n_children"] + cols["n_elderly"]) / np.where(
                np.isnan(working) | (working >= 1), working, 1)
            head_age = cols["head_age"]
            cols["elderly_headed"] = np.where(np.isnan(head_age), np.nan, (head_age >= 60).astype("float64"))
            cols["land_per_capita"] = cols["cultivated_land_mu"] / n
            cols["housing_area_per_capita"] = cols["housing_area_m2"] / n
            cols["livestock_per_capita"] = cols["livestock_units"] / n
            # ``sum(axis=1, min_count=1)``: numpy adds up to 7 values per row one after the other
            # (pairwise summation starts at 8), so do we.
            assets = [cols[a] for a in _ASSETS]
            total = np.where(np.isnan(assets[0]), 0.0, assets[0])
            for a in assets[1:]:
                total = total + np.where(np.isnan(a), 0.0, a)
            known = sum((~np.isnan(a)).astype(np.int64) for a in assets)
            cols["assets_count"] = np.where(known >= 1, total, np.nan)
            if "medical_spending" in cols:
                cols["medical_spending_per_capita"] = cols["medical_spending"] / n

    @staticmethod
    def _history(fz: RegistryFeaturizer, hh: dict, ids: list, years: np.ndarray, where: dict,
                 cols: dict[str, np.ndarray]) -> None:
        """The history features (as `RegistryFeaturizer._history`), from the household columns by name
        (`where`: row of each (household_id, year))."""
        n = len(years)
        income = _as_float(hh["net_income_per_capita"]) if "net_income_per_capita" in hh else np.full(n, np.nan)
        if "net_income_per_capita" in fz.clip_bounds_:
            lo, hi = fz.clip_bounds_["net_income_per_capita"]
            income = np.clip(income, lo, hi)
        year_list = years.tolist()
        pline = np.array([fz.poverty_lines_.get(y, np.nan) for y in year_list], dtype=np.float64)
        mline = np.array([fz.monitoring_lines_.get(y, np.nan) for y in year_list], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            poor = np.where(np.isnan(income) | np.isnan(pline), np.nan, (income < pline).astype("float64"))
            base = np.column_stack([
                income, poor, cols["n_serious_ill"], cols["n_disabled"], cols["migrant_months"],
                cols["disaster_affected"] if "disaster_affected" in cols else np.full(n, np.nan), cols["n_members"],
            ])
            lag = {}
            for k in range(1, fz.history_years + 1):
                src = np.array([where.get((h, y - k), -1) for h, y in zip(ids, year_list)], dtype=np.int64)
                vals = np.full(base.shape, np.nan)
                ok = src >= 0
                vals[ok] = base[src[ok]]
                lag[k] = vals
            INCOME, POOR, SERIOUS, DISABLED, MIGRANT, DISASTER, SIZE = range(7)
            lag1 = lag[1]
            cols["income_to_poverty_line"] = income / pline
            cols["income_to_monitoring_line"] = income / mline
            cols["income_lag1"] = lag1[:, INCOME].copy()
            cols["income_change"] = income / np.where(lag1[:, INCOME] > 0, lag1[:, INCOME], np.nan) - 1.0
            med = cols["medical_spending"]
            school = cols["schooling_spending"]
            spending = np.where(np.isnan(med), 0.0, med) + np.where(np.isnan(school), 0.0, school)
            last_total = lag1[:, INCOME] * lag1[:, SIZE]
            cols["spending_to_last_income"] = spending / np.where(last_total > 0, last_total, np.nan)
            recent = sum(np.where(np.isnan(lag[k][:, POOR]), 0.0, lag[k][:, POOR]) for k in lag)
            cols["years_poor_recent"] = recent
            exit_year = _as_float(hh["exit_year"]) if "exit_year" in hh else np.full(n, np.nan)
            exit_year = np.where(exit_year <= years, exit_year, np.nan)
            cols["years_since_exit"] = years - exit_year
            since = _as_float(hh["poor_since_year"]) if "poor_since_year" in hh else np.full(n, np.nan)
            cols["ever_registered_poor"] = ((since <= years) | (recent > 0)).astype("float64")
            cols["new_serious_illness"] = (base[:, SERIOUS] > lag1[:, SERIOUS]).astype("float64")
            cols["new_disability"] = (base[:, DISABLED] > lag1[:, DISABLED]).astype("float64")
            cols["migrant_months_change"] = base[:, MIGRANT] - lag1[:, MIGRANT]
            cols["disaster_lag1"] = lag1[:, DISASTER].copy()

    # -- the whole -------------------------------------------------------------------------------------
    def transform(self, fz: RegistryFeaturizer, records: HouseholdRecords) -> pd.DataFrame | None:
        """The float32 feature frame, or None when the batch is left to the general path (ids that
        are not all str, missing or fractional years, a household wave listed twice)."""
        history = fz.task in TASKS_WITH_HISTORY
        if history and fz.history_years < 1:
            return None
        hh, members = _column_arrays(records.households), _column_arrays(records.members)
        if hh is None or members is None:
            return None
        hh_keys, mb_keys = self._keys(hh), self._keys(members)
        if hh_keys is None or mb_keys is None:
            return None
        ids, years = hh_keys
        year_list = years.tolist()
        where = {k: i for i, k in enumerate(zip(ids, year_list))}
        n = len(ids)
        if len(where) != n:
            return None
        row = np.array([where.get(k, -1) for k in zip(mb_keys[0], mb_keys[1].tolist())], dtype=np.int64)

        cols: dict[str, np.ndarray] = {}
        self._indicators(hh, n, cols, fz.clip_bounds_)
        self._members(members, row, n, cols)
        self._derived(cols)
        if history:
            self._history(fz, hh, ids, years, where, cols)

        out = np.full((len(self.names), n), np.nan, dtype=np.float32)
        for name, i in self.position.items():
            values = cols.get(name)
            if values is not None:
                out[i] = values  # float64 -> float32, as astype("float32")
        index = pd.MultiIndex.from_arrays([np.array(ids, dtype=object), years], names=_KEY)
        return pd.DataFrame(out.T, index=index, columns=self.names, copy=False)


def _member_no_rank(values) -> np.ndarray:
    """The member number part of the head rank (missing as 999), as `_member_aggregates` computes it."""
    out = _float_array(values, na=999.0)
    if out is None:
        out = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype="float64", na_value=999)
    return out


def describe_feature(name: str) -> dict:
    """English/Chinese label, cause and description of a registry feature (raw, one-hot or derived)."""
    base, _, level = name.partition("=")
    if name in DERIVED:
        en, zh, cause, desc = DERIVED[name]
        return {"name": name, "en": en, "zh": zh, "cause": cause, "description": desc}
    spec = HOUSEHOLD_SPECS.get(base)
    if spec is None:
        return {"name": name, "en": name, "zh": name, "cause": None, "description": ""}
    en, zh = spec.en or base, spec.zh or base
    if level:
        en, zh = f"{en}: {level}", f"{zh}：{level}"
    return {"name": name, "en": en, "zh": zh, "cause": spec.cause, "description": spec.description}


def causes_of(feature_names: list[str]) -> dict[str, str | None]:
    """Cause of poverty of each feature (for summing contributions by cause)."""
    return {n: describe_feature(n)["cause"] for n in feature_names}


assert all(v[2] is None or v[2] in CAUSES for v in DERIVED.values())

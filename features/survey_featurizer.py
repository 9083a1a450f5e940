"""The fitted featurizer of the IDB Costa Rica survey: persons in, one feature row per household out.

`SurveyFeaturizer` is the only place where survey persons (`features.sources.idb.read_survey`)
become model inputs; training, cross-validation and scoring call the same fitted object.

Input: a person-level `DataFrame` in the survey's layout (``Id``, ``idhogar``, the codebook's
columns; ``yes``/``no`` in ``dependency``/``edjefe``/``edjefa`` are read as 1/0 here too, so raw
rows also work). ``Target`` is dropped on entry and never read.

Output: a float64 `DataFrame` with one row per household, indexed by ``household_id`` (the
``idhogar``), sorted by it, columns `feature_names_`. Missing or unreadable values, flags other
than 0/1 and one-hot groups with no (or several) ticks become NaN, never an error. Persons are put
in a canonical order (household, person ``Id``) first, so the order of the input rows never changes
a value.

What the features are (the household's "proxy means", in officials' terms, see `FEATURES`):
- housing and assets from the head's row (household variables repeat on every member's row):
  rooms, overcrowding, rent, tenure, walls/roof/floor state and materials, water, toilet, cooking
  energy, and a basic-services score adding electricity and rubbish disposal (one-hot groups
  collapsed to ordinal codes, worst = 0), phones, a count of durable assets, region and area;
- members: age structure (children, working-age men and women, elderly; counts and shares), sex
  composition, disabled members, the head's age, sex and disability, single parents, persons of
  other households sharing the dwelling;
- education: schooling (years and attained level) of the head, the spouse and all adults, also
  measured against persons of the same age group (older cohorts had less schooling, so 6 years
  means something else at 25 than at 70), and children behind in school;
- per-person ratios (rooms, bedrooms, phones, tablets, rent per person; adults per room).
The source's squares (``SQB*``, ``agesq``), its redundant size columns and flags that duplicate a
kept feature (``hacdor``, ``v14a``, ...) are left out: in 5-fold CV (``bench/idb_cv.py``) the
redundant copies added nothing measurable, and each one makes the explanations harder to read.

What it learns in `fit` (scikit-learn contract, stored as ``name_``): `feature_names_in_` (the
input columns, minus Target), `feature_names_` and `feature_info_` (name, English and Chinese
label, cause of poverty, description per output column), `schooling_norms_` (median years of
schooling per 5-year age group of the training persons) and `clip_bounds_` (the 99.5 % quantile
of the money amounts in the training households, which blunts a typing slip without dropping
the household). None of it is computed from Target.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from features.schema import CAUSES
from features.sources.idb import HOUSEHOLD_ID, ONE_HOT_GROUPS, PERSON_ID, TARGET, parse_survey_numbers
from tpas.errors import DataError

#: Ordinal scores of the one-hot groups, worst = 0 (the survey's own order where it has one).
ORDINAL_SCORES: dict[str, dict[str, float]] = {
    "wall_state": {"epared1": 1, "epared2": 2, "epared3": 3},
    "roof_state": {"etecho1": 1, "etecho2": 2, "etecho3": 3},
    "floor_state": {"eviv1": 1, "eviv2": 2, "eviv3": 3},
    # Materials: durable (block, brick, prefabricated/cement, ceramic, fibre-cement) above wood and
    # metal sheet, above natural fibre, waste material or none.
    "wall_material": {"paredblolad": 3, "paredpreb": 3, "paredzocalo": 2, "paredmad": 2, "paredzinc": 1,
                      "paredfibras": 1, "paredother": 1, "pareddes": 0},
    "floor_material": {"pisomoscer": 3, "pisocemento": 2, "pisomadera": 2, "pisoother": 1, "pisonatur": 0,
                       "pisonotiene": 0},
    "roof_material": {"techoentrepiso": 3, "techozinc": 2, "techootro": 1, "techocane": 0},
    "water": {"abastaguadentro": 2, "abastaguafuera": 1, "abastaguano": 0},
    "electricity": {"public": 2, "coopele": 2, "planpri": 1, "noelec": 0},
    "toilet": {"sanitario2": 3, "sanitario3": 2, "sanitario5": 1, "sanitario6": 1, "sanitario1": 0},
    "cooking_energy": {"energcocinar2": 3, "energcocinar3": 2, "energcocinar4": 1, "energcocinar1": 0},
    "rubbish": {"elimbasu1": 2, "elimbasu2": 1, "elimbasu3": 1, "elimbasu6": 1, "elimbasu4": 0, "elimbasu5": 0},
    # Attained education level: none, primary incomplete/complete, secondary incomplete/complete
    # (academic and technical at the same step), university, postgraduate.
    "education_level": {"instlevel1": 0, "instlevel2": 1, "instlevel3": 2, "instlevel4": 3, "instlevel6": 3,
                        "instlevel5": 4, "instlevel7": 4, "instlevel8": 5, "instlevel9": 6},
}
_REGION = {f"lugar{i}": float(i) for i in range(1, 7)}
_TENURE = {"tipovivi1": "own_paid", "tipovivi2": "own_paying", "tipovivi3": "rented", "tipovivi4": "precarious",
           "tipovivi5": "other_tenure"}

#: Household variables read from the head's row (they repeat on every member's row).
_HOUSEHOLD_RAW = ("rooms", "bedrooms", "hhsize", "tamviv", "overcrowding", "refrig", "computer", "television",
                  "mobilephone", "qmobilephone", "v18q", "v18q1", "v2a1", "cielorazo", "dependency", "meaneduc")
#: Person variables aggregated over members.
_PERSON_RAW = ("age", "escolari", "dis", "male", "female", "parentesco1", "parentesco2")
#: Flags: anything but 0 or 1 is read as unknown.
_FLAGS = ("refrig", "computer", "television", "mobilephone", "v18q", "cielorazo", "dis", "male", "female",
          "parentesco1", "parentesco2")

#: Every input column the featurizer reads (missing ones are a `DataError`).
REQUIRED_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(
    (PERSON_ID, HOUSEHOLD_ID) + _HOUSEHOLD_RAW + _PERSON_RAW
    + tuple(c for g in ORDINAL_SCORES.values() for c in g) + tuple(_REGION) + tuple(_TENURE) + ("area1", "area2")
))

#: Money amounts clipped at the training quantile (colones per month).
_CLIPPED = ("rent", "rent_per_person", "rent_per_room")

#: Width of the age groups (years) of the schooling norms; the last group is open (80+).
AGE_GROUP_YEARS, LAST_AGE_GROUP = 5, 16

# name -> (English, Chinese, cause of poverty or None, description). Order = output column order.
FEATURES: dict[str, tuple[str, str, str | None, str]] = {
    # -- housing ------------------------------------------------------------------------------------------------
    "rooms": ("rooms", "房间数", "capital", "Rooms in the dwelling."),
    "bedrooms": ("bedrooms", "卧室数", "capital", "Bedrooms in the dwelling."),
    "overcrowding": ("persons per room", "每间居住人数", "capital", "The survey's persons per room."),
    "has_ceiling": ("house has a ceiling", "有吊顶", "capital", "The dwelling has a ceiling (cielorazo)."),
    "wall_state": ("state of the walls", "墙体状况", "capital", "1 bad, 2 regular, 3 good."),
    "roof_state": ("state of the roof", "屋顶状况", "capital", "1 bad, 2 regular, 3 good."),
    "floor_state": ("state of the floor", "地面状况", "capital", "1 bad, 2 regular, 3 good."),
    "housing_state": ("overall state of the house", "住房总体状况", "capital",
                      "Sum of the wall, roof and floor states (3 all bad ... 9 all good)."),
    "housing_materials": ("quality of the house materials", "住房材料质量", "capital",
                          "Sum of the wall (0 waste ... 3 block/brick/cement), floor (0 earth or none ... "
                          "3 ceramic) and roof (0 natural fibre ... 3 fibre cement) material scores (0-9)."),
    "own_paid": ("owns the house outright", "自有住房", "capital", "Tenure: own, fully paid."),
    "rented": ("rents the dwelling", "租房", "capital", "Tenure: rented."),
    "precarious": ("precarious tenure", "住房不稳定", "capital", "Tenure: precarious."),
    "other_tenure": ("borrowed or assigned house", "借住/分配住房", "capital", "Tenure: assigned or borrowed."),
    "rent": ("monthly rent", "月租金", "capital", "Monthly rent or instalment (colones); NaN when none is paid."),
    "rent_per_person": ("monthly rent per person", "人均月租金", "capital", "Monthly rent / members."),
    "rent_per_room": ("monthly rent per room", "每间月租金", "capital", "Monthly rent / rooms."),
    # -- water, energy, sanitation --------------------------------------------------------------------------------
    "water": ("water supply", "供水", "water", "0 none, 1 outside the dwelling, 2 inside."),
    "toilet": ("toilet", "厕所", "capital", "0 none, 1 latrine or other, 2 septic tank, 3 sewer."),
    "cooking_energy": ("cooking energy", "炊事能源", "capital", "0 none, 1 wood or charcoal, 2 gas, 3 electricity."),
    "basic_services": ("basic services", "基本设施综合", "capital",
                       "Sum of the water (0-2), electricity (0 none, 1 private plant, 2 grid), toilet (0-3), "
                       "cooking energy (0-3) and rubbish disposal (0 thrown away, 1 buried or burnt, "
                       "2 collected) scores."),
    # -- assets ---------------------------------------------------------------------------------------------------
    "phones": ("mobile phones", "手机数", "capital", "Number of mobile phones."),
    "assets": ("durable assets owned", "耐用品数量", "capital",
               "Count of fridge, computer, TV, tablet and mobile phone owned (0-5)."),
    # -- location ------------------------------------------------------------------------------------------------
    "region": ("region", "地区", None, "Planning region code 1-6 (1 Central ... 6 Huetar Norte)."),
    "urban": ("urban area", "城镇", "transport", "1 urban, 0 rural."),
    # -- members and labour --------------------------------------------------------------------------------------
    "n_children": ("children under 12", "12岁以下儿童", "labour", "Members aged under 12."),
    "n_working_age": ("members aged 18-64", "劳动年龄人口", "labour", "Members aged 18-64."),
    "n_working_age_men": ("men aged 18-64", "劳动年龄男性", "labour", "Male members aged 18-64."),
    "n_working_age_women": ("women aged 18-64", "劳动年龄女性", "labour", "Female members aged 18-64."),
    "share_minors": ("share of members under 18", "未成年人占比", "labour", "Members under 18 / members."),
    "share_working_age": ("share of members aged 18-64", "劳动力占比", "labour", "Members aged 18-64 / members."),
    "share_elderly": ("share of members aged 65+", "老人占比", "labour", "Members aged 65+ / members."),
    "dependency": ("dependency rate (survey)", "抚养比（调查）", "labour",
                   "The survey's dependency rate (yes = 1, no = 0)."),
    "dependants_per_worker": ("dependants per working-age member", "抚养比", "labour",
                              "(Members under 18 + aged 65+) / max(1, members aged 18-64)."),
    "n_male": ("male members", "男性人数", "labour", "Male members."),
    "n_female": ("female members", "女性人数", "labour", "Female members."),
    "share_female_adults": ("share of women among adults", "成年女性占比", "labour", "Women / members aged 18+."),
    "mean_age": ("mean age", "平均年龄", "labour", "Mean age of the members (years)."),
    "oldest_age": ("age of the oldest member", "最年长成员年龄", "labour", "Age of the oldest member (years)."),
    "n_disabled": ("disabled members", "残疾人数", "disability", "Members recorded as disabled."),
    "share_disabled": ("share of disabled members", "残疾人占比", "disability", "Disabled members / members."),
    "head_age": ("age of the head", "户主年龄", "labour", "Age of the head (years)."),
    "head_female": ("female head", "女性户主", None, "The head is a woman."),
    "head_disabled": ("head disabled", "户主残疾", "disability", "The head is disabled."),
    "single_parent": ("single adult with children", "单亲家庭", "labour",
                      "No spouse of the head present and at least one member under 18."),
    "others_in_dwelling": ("persons of other households in the dwelling", "同住其他住户人数", "capital",
                           "Persons living in the dwelling (tamviv) minus the household size: a shared dwelling."),
    # -- education -----------------------------------------------------------------------------------------------
    "head_schooling": ("head's years of schooling", "户主受教育年限", "education", "Years of schooling of the head."),
    "head_schooling_gap": ("head's schooling against peers", "户主受教育年限与同龄人之差", "education",
                           "Head's years of schooling minus the median of persons of the same age group."),
    "spouse_schooling": ("spouse's years of schooling", "配偶受教育年限", "education",
                         "Years of schooling of the head's spouse (NaN without one)."),
    "mean_adult_schooling": ("mean schooling of adults", "成人平均受教育年限", "education",
                             "Mean years of schooling of members 18+."),
    "max_adult_schooling": ("most schooling of an adult", "成人最高受教育年限", "education",
                            "Highest years of schooling among members 18+."),
    "min_adult_schooling": ("least schooling of an adult", "成人最低受教育年限", "education",
                            "Lowest years of schooling among members 18+."),
    "meaneduc": ("mean schooling of adults (survey)", "成人平均受教育年限（调查）", "education",
                 "The survey's mean years of education of adults (meaneduc)."),
    "mean_adult_schooling_gap": ("adults' schooling against peers", "成人受教育年限与同龄人之差", "education",
                                 "Mean over members 18+ of years of schooling minus the median of persons of "
                                 "the same age group."),
    "max_adult_schooling_gap": ("best schooling against peers", "成人受教育年限与同龄人之差（最高）", "education",
                                "Largest such difference among members 18+."),
    "min_adult_schooling_gap": ("worst schooling against peers", "成人受教育年限与同龄人之差（最低）", "education",
                                "Smallest such difference among members 18+."),
    "adult_schooling_per_age": ("adults' schooling per year of age", "成人受教育年限/年龄", "education",
                                "Mean over members 18+ of years of schooling / age."),
    "max_education_level": ("highest education level", "最高文化程度", "education",
                            "Highest education level among members: 0 none, 1-2 primary, 3-4 secondary, "
                            "5 university, 6 postgraduate."),
    "mean_adult_education_level": ("mean education level of adults", "成人平均文化程度", "education",
                                   "Mean education level of members 18+ (0-6)."),
    "schooling_per_member": ("adult schooling per member", "人均成人受教育年限", "education",
                             "Sum of adults' years of schooling / members."),
    "years_behind_school": ("years behind in school", "学业滞后年数", "education",
                            "Sum over members aged 7-17 of max(0, age - 7 - years of schooling)."),
    "max_years_behind_school": ("most years behind in school", "最大学业滞后", "education",
                                "Largest such gap among members aged 7-17."),
    # -- per-person ratios ----------------------------------------------------------------------------------------
    "rooms_per_person": ("rooms per person", "人均房间", "capital", "Rooms / members."),
    "bedrooms_per_person": ("bedrooms per person", "人均卧室", "capital", "Bedrooms / members."),
    "adults_per_room": ("adults per room", "每间成人数", "capital", "Members 18+ / rooms."),
    "phones_per_person": ("phones per person", "人均手机", "capital", "Mobile phones / members."),
    "phones_per_adult": ("phones per adult", "成人人均手机", "capital", "Mobile phones / members 18+."),
    "tablets_per_person": ("tablets per person", "人均平板电脑", "capital",
                           "Tablets / members (0 when none is owned)."),
}


assert all(v[2] is None or v[2] in CAUSES for v in FEATURES.values()), "a feature names an unknown cause"


def describe_survey_feature(name: str) -> dict:
    """English/Chinese label, cause of poverty and description of one survey feature."""
    en, zh, cause, desc = FEATURES[name]
    return {"name": name, "en": en, "zh": zh, "cause": cause, "description": desc}


def _ordinal(x: pd.DataFrame, scores: dict[str, float]) -> np.ndarray:
    """Collapse a one-hot group to its score; NaN unless exactly one flag is 1 and none unreadable."""
    flags = x[list(scores)].to_numpy(dtype="float64")
    ticked = (flags == 1).sum(axis=1)
    known = ~np.isnan(flags).any(axis=1)
    code = np.nan_to_num(flags) @ np.asarray(list(scores.values()), dtype="float64")
    return np.where(known & (ticked == 1), code, np.nan)


def _ratio(num: np.ndarray | pd.Series, den: np.ndarray | pd.Series) -> np.ndarray:
    """num / den with NaN where den is missing or zero."""
    num = np.asarray(num, dtype="float64")
    den = np.asarray(den, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.nan)


class SurveyFeaturizer(BaseEstimator, TransformerMixin):
    """Fitted featurizer of IDB survey persons: one float64 feature row per household.

    Parameters
    ----------
    clip_quantile: upper quantile of the training households at which money amounts (rent per
        household, person and room) are clipped; 1.0 switches clipping off.
    """

    def __init__(self, clip_quantile: float = 0.995):
        self.clip_quantile = clip_quantile

    # -- sklearn API ---------------------------------------------------------------------------------------------
    def fit(self, persons: pd.DataFrame, y=None) -> "SurveyFeaturizer":
        """Learn the columns, the schooling norms by age group and the clipping bounds from training persons.

        `persons`: person rows (n_persons x survey columns); `y` is ignored (labels are per
        household, see `features.sources.idb.household_levels`, and nothing here uses them).
        """
        if not 0.5 < self.clip_quantile <= 1.0:
            raise ValueError(f"clip_quantile must be in (0.5, 1], got {self.clip_quantile}")
        self._check_input(persons)
        self.feature_names_in_ = np.asarray([str(c) for c in persons.columns if c != TARGET], dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        x = self._persons(persons)
        # Median years of schooling by age group: the yardstick of the "against peers" features.
        group = _age_group(x["age"])
        self.schooling_norms_ = {int(k): float(v) for k, v in x["escolari"].groupby(group).median().dropna().items()}
        self.clip_bounds_ = {}  # unclipped amounts for the quantiles below
        frame = self._features(x)
        bounds = {}
        if self.clip_quantile < 1.0:
            for name in _CLIPPED:
                vals = frame[name].dropna()
                if len(vals):
                    bounds[name] = float(np.quantile(vals, self.clip_quantile))
        self.clip_bounds_ = bounds
        self.feature_names_ = list(frame.columns)
        self.n_features_out_ = len(self.feature_names_)
        self.feature_info_ = [describe_survey_feature(n) for n in self.feature_names_]
        return self

    def transform(self, persons: pd.DataFrame) -> pd.DataFrame:
        """Feature rows (n_households x `feature_names_`, float64), indexed by sorted ``household_id``.

        `persons` needs the columns of `REQUIRED_COLUMNS` (a `DataError` names any missing); other
        columns, Target included, are ignored. Households present in `persons` only are featurized.
        """
        check_is_fitted(self, "feature_names_")
        self._check_input(persons)
        frame = self._features(self._persons(persons))
        return frame.reindex(columns=self.feature_names_).astype("float64")

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)

    def describe(self) -> pd.DataFrame:
        """The fitted features as a table indexed by name (en, zh, cause, description)."""
        check_is_fitted(self, "feature_names_")
        return pd.DataFrame(self.feature_info_).set_index("name")

    # -- internals -----------------------------------------------------------------------------------------------
    @staticmethod
    def _check_input(persons: pd.DataFrame) -> None:
        if not isinstance(persons, pd.DataFrame):
            raise DataError(f"the survey featurizer takes a DataFrame of persons, got {type(persons).__name__}")
        missing = [c for c in REQUIRED_COLUMNS if c not in persons.columns]
        if missing:
            raise DataError(f"survey persons lack column(s) {', '.join(missing)}")
        no_id = persons[HOUSEHOLD_ID].isna() | (persons[HOUSEHOLD_ID].astype("string").str.strip() == "")
        if no_id.any():
            raise DataError(f"{int(no_id.sum())} survey person(s) have no household id (idhogar); "
                            "validate the file with read_survey first")

    @staticmethod
    def _persons(persons: pd.DataFrame) -> pd.DataFrame:
        """The used columns as float64 (unreadable values, flags outside {0, 1}: NaN), sorted by (household, Id)."""
        x = pd.DataFrame({c: parse_survey_numbers(persons[c])[0].to_numpy(dtype="float64")
                          for c in REQUIRED_COLUMNS[2:]})
        x.insert(0, HOUSEHOLD_ID, persons[HOUSEHOLD_ID].astype(str).str.strip().to_numpy())
        x.insert(1, PERSON_ID, persons[PERSON_ID].astype(str).str.strip().to_numpy())
        flags = list(dict.fromkeys(list(_FLAGS) + [c for g in ONE_HOT_GROUPS.values() for c in g if c in x.columns]))
        x[flags] = x[flags].where(x[flags].isin((0.0, 1.0)))
        # Why sort: sums and means taken in a fixed order give bit-identical values whatever the input order.
        return x.sort_values([HOUSEHOLD_ID, PERSON_ID], kind="stable").reset_index(drop=True)

    def _features(self, x: pd.DataFrame) -> pd.DataFrame:
        """Household features from canonical persons (`_persons`), in `FEATURES` order."""
        age, school = x["age"], x["escolari"]
        adult = age >= 18
        edu_level = pd.Series(_ordinal(x, ORDINAL_SCORES["education_level"]), index=x.index)
        norm = _age_group(age).map(getattr(self, "schooling_norms_", {}))
        gap = school - norm
        school_age = (age >= 7) & (age <= 17)

        person = pd.DataFrame({
            HOUSEHOLD_ID: x[HOUSEHOLD_ID],
            "n_members": 1.0,
            "n_children": (age < 12).astype("float64"),
            "n_minors": (age < 18).astype("float64"),
            "n_working_age": (adult & (age <= 64)).astype("float64"),
            "n_working_age_men": x["male"].where(adult & (age <= 64), 0.0),
            "n_working_age_women": x["female"].where(adult & (age <= 64), 0.0),
            "n_elderly": (age >= 65).astype("float64"),
            "n_adults": adult.astype("float64"),
            "male": x["male"], "female": x["female"],
            "female_adult": x["female"].where(adult),
            "age": age,
            "dis": x["dis"],
            "spouse": x["parentesco2"],
            "adult_school": school.where(adult),
            "adult_gap": gap.where(adult),
            "adult_school_per_age": (school / age).where(adult),
            "adult_edu_level": edu_level.where(adult),
            "edu_level": edu_level,
            "behind": ((age - 7) - school).clip(lower=0).where(school_age),
            "spouse_school": school.where(x["parentesco2"] == 1),
        })
        g = person.groupby(HOUSEHOLD_ID, sort=True)
        sums = g[["n_members", "n_children", "n_minors", "n_working_age", "n_elderly", "n_adults"]].sum()
        index = sums.index.rename("household_id")
        n = sums["n_members"].where(sums["n_members"] > 0)
        n_adults = sums["n_adults"]

        # The head's row carries the household variables; a household without a recorded head uses its
        # oldest member (ties by person Id) so that it still gets them.
        ranked = x.assign(_head=(x["parentesco1"] == 1).astype(int), _age=age.fillna(-1.0), _gap=gap)
        ref = ranked.sort_values([HOUSEHOLD_ID, "_head", "_age", PERSON_ID], ascending=[True, False, False, True],
                                 kind="stable").drop_duplicates(HOUSEHOLD_ID)
        ref = ref.set_index(HOUSEHOLD_ID).reindex(sums.index)

        f: dict[str, pd.Series | np.ndarray] = {}
        # housing
        f["rooms"], f["bedrooms"], f["overcrowding"] = ref["rooms"], ref["bedrooms"], ref["overcrowding"]
        f["has_ceiling"] = ref["cielorazo"]
        for group in ("wall_state", "roof_state", "floor_state"):
            f[group] = _ordinal(ref, ORDINAL_SCORES[group])
        f["housing_state"] = f["wall_state"] + f["roof_state"] + f["floor_state"]
        f["housing_materials"] = sum(_ordinal(ref, ORDINAL_SCORES[m])
                                     for m in ("wall_material", "floor_material", "roof_material"))
        tenure = ref[list(_TENURE)]
        tenure_known = tenure.notna().all(axis=1) & (tenure.sum(axis=1) == 1)
        for col in ("tipovivi1", "tipovivi3", "tipovivi4", "tipovivi5"):
            f[_TENURE[col]] = ref[col].where(tenure_known)
        # Rent is blank when none is paid (owners, borrowed houses): kept as NaN so that trees tell it
        # from a real zero and linear models impute it.
        f["rent"] = ref["v2a1"]
        f["rent_per_person"] = _ratio(ref["v2a1"], n)
        f["rent_per_room"] = _ratio(ref["v2a1"], ref["rooms"])
        # services
        services = {s: _ordinal(ref, ORDINAL_SCORES[s])
                    for s in ("water", "electricity", "toilet", "cooking_energy", "rubbish")}
        f["water"], f["toilet"], f["cooking_energy"] = services["water"], services["toilet"], services["cooking_energy"]
        f["basic_services"] = sum(services.values())
        # assets
        f["phones"] = ref["qmobilephone"]
        f["assets"] = ref[["refrig", "computer", "television", "v18q", "mobilephone"]].sum(axis=1, min_count=5)
        # location
        f["region"] = _ordinal(ref, _REGION)
        f["urban"] = ref["area1"].where((ref["area1"] + ref["area2"]) == 1)
        # members
        f["n_children"], f["n_working_age"] = sums["n_children"], sums["n_working_age"]
        f["n_working_age_men"] = g["n_working_age_men"].sum(min_count=1)
        f["n_working_age_women"] = g["n_working_age_women"].sum(min_count=1)
        f["share_minors"] = _ratio(sums["n_minors"], n)
        f["share_working_age"] = _ratio(sums["n_working_age"], n)
        f["share_elderly"] = _ratio(sums["n_elderly"], n)
        f["dependency"] = ref["dependency"]
        f["dependants_per_worker"] = (sums["n_minors"] + sums["n_elderly"]) / sums["n_working_age"].clip(lower=1)
        f["n_male"] = g["male"].sum(min_count=1)
        f["n_female"] = g["female"].sum(min_count=1)
        f["share_female_adults"] = _ratio(g["female_adult"].sum(min_count=1), n_adults)
        f["mean_age"] = g["age"].mean()
        f["oldest_age"] = g["age"].max()
        f["n_disabled"] = g["dis"].sum(min_count=1)
        f["share_disabled"] = _ratio(f["n_disabled"], n)
        f["head_age"], f["head_female"], f["head_disabled"] = ref["age"], ref["female"], ref["dis"]
        has_spouse = g["spouse"].max() == 1
        f["single_parent"] = (~has_spouse & (sums["n_minors"] > 0)).astype("float64")
        f["others_in_dwelling"] = (ref["tamviv"] - ref["hhsize"]).clip(lower=0)
        # education
        f["head_schooling"], f["head_schooling_gap"] = ref["escolari"], ref["_gap"]
        f["spouse_schooling"] = g["spouse_school"].max()
        f["mean_adult_schooling"] = g["adult_school"].mean()
        f["max_adult_schooling"] = g["adult_school"].max()
        f["min_adult_schooling"] = g["adult_school"].min()
        f["meaneduc"] = ref["meaneduc"]
        f["mean_adult_schooling_gap"] = g["adult_gap"].mean()
        f["max_adult_schooling_gap"] = g["adult_gap"].max()
        f["min_adult_schooling_gap"] = g["adult_gap"].min()
        f["adult_schooling_per_age"] = g["adult_school_per_age"].mean()
        f["max_education_level"] = g["edu_level"].max()
        f["mean_adult_education_level"] = g["adult_edu_level"].mean()
        f["schooling_per_member"] = _ratio(g["adult_school"].sum(min_count=1), n)
        f["years_behind_school"] = g["behind"].sum(min_count=1)
        f["max_years_behind_school"] = g["behind"].max()
        # per-person ratios
        tablets = ref["v18q1"].where(ref["v18q1"].notna(), ref["v18q"].where(ref["v18q"] == 0))  # blank = none owned
        f["rooms_per_person"] = _ratio(ref["rooms"], n)
        f["bedrooms_per_person"] = _ratio(ref["bedrooms"], n)
        f["adults_per_room"] = _ratio(n_adults, ref["rooms"])
        f["phones_per_person"] = _ratio(ref["qmobilephone"], n)
        f["phones_per_adult"] = _ratio(ref["qmobilephone"], n_adults)
        f["tablets_per_person"] = _ratio(tablets, n)

        out = pd.DataFrame({k: np.asarray(v, dtype="float64") for k, v in f.items()}, index=index)
        for name, hi in self.clip_bounds_.items():
            out[name] = out[name].clip(upper=hi)
        return out[list(FEATURES)]


def _age_group(age: pd.Series) -> pd.Series:
    """Age group 0, 1, ... of `AGE_GROUP_YEARS` years each, the last one open; NaN for an unknown age."""
    return (age // AGE_GROUP_YEARS).clip(upper=LAST_AGE_GROUP)

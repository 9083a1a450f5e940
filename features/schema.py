"""The canonical registry schema: household waves, their members, and the region tree.

One `ColumnSpec` per field is the single source of truth for validation (`features.validation`),
for the synthetic generator, for the featurizer's descriptions and, later, for the API's
pydantic models. Household indicators carry their set, Chinese and English names and the
officially recorded cause of poverty they speak to, so that explanations can be worded in
the terms officials use.

Region codes follow the Chinese statistical division code: a 12-digit village code whose
prefixes are the province (2 digits), city (4), county (6) and township (9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["str", "int", "float", "bool", "category"]
Role = Literal["id", "pii", "indicator", "income", "status", "context"]

#: The officially recorded causes of poverty (DOMAIN.md), with their Chinese names.
CAUSES: dict[str, tuple[str, str]] = {
    "illness": ("因病", "illness"),
    "disability": ("因残", "disability"),
    "education": ("因学/缺教育", "lack of education"),
    "disaster": ("因灾", "natural disaster"),
    "land": ("缺土地", "shortage of land"),
    "water": ("缺水", "shortage of water"),
    "skills": ("缺技术", "lack of skills"),
    "labour": ("缺劳力", "shortage of labour"),
    "capital": ("缺资金", "shortage of capital"),
    "transport": ("交通条件落后", "poor transport"),
    "motivation": ("自身发展动力不足", "lack of self-motivation"),
}

#: Indicator sets (named groups of household indicators), Chinese and English.
INDICATOR_SETS: dict[str, tuple[str, str]] = {
    "demography": ("家庭人口", "household members"),
    "income": ("收入情况", "income by source"),
    "spending": ("刚性支出", "unavoidable spending"),
    "guarantees": ("两不愁三保障", "two no-worries and three guarantees"),
    "housing": ("住房条件", "housing"),
    "water": ("饮水条件", "drinking water"),
    "energy_sanitation": ("能源与卫生", "energy and sanitation"),
    "transport": ("交通条件", "transport"),
    "land": ("土地与农业", "land and farming"),
    "assets": ("家庭资产", "household assets"),
    "finance": ("资金与组织", "credit and organisation"),
    "programmes": ("帮扶措施", "programmes received"),
    "shocks": ("风险冲击", "shocks"),
    "registry": ("建档立卡状态", "registry status"),
}


@dataclass(frozen=True)
class ColumnSpec:
    """One field of a canonical table.

    `role` says how the field may be used: ``id`` keys, ``pii`` (never a feature, never logged),
    ``indicator`` (a feature), ``income`` (defines the poverty label: never a feature of the
    `poverty` task), ``status`` (registry enrolment: also reveals the label), ``context``.
    Numeric bounds are inclusive; `categories` lists the allowed values of a category.
    """

    name: str
    kind: Kind
    description: str
    role: Role = "indicator"
    required: bool = False
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    unit: str = ""
    set: str | None = None
    zh: str = ""
    en: str = ""
    cause: str | None = None
    #: For ordered categories: the order from worst to best (used for ordinal encodings).
    ordered: bool = False

    def __post_init__(self) -> None:
        if self.cause is not None and self.cause not in CAUSES:
            raise ValueError(f"{self.name}: unknown cause {self.cause!r}")
        if self.set is not None and self.set not in INDICATOR_SETS:
            raise ValueError(f"{self.name}: unknown indicator set {self.set!r}")
        if self.kind == "category" and not self.categories:
            raise ValueError(f"{self.name}: a category needs its categories")


def _ind(name: str, kind: Kind, set_: str, zh: str, en: str, cause: str | None, description: str, **kw) -> ColumnSpec:
    return ColumnSpec(name=name, kind=kind, set=set_, zh=zh, en=en, cause=cause, description=description, **kw)


YEAR_MIN, YEAR_MAX = 1990, 2100

HOUSEHOLD_COLUMNS: tuple[ColumnSpec, ...] = (
    # --- keys, location, personal data -------------------------------------------------
    ColumnSpec("household_id", "str", "Registry household number (户编号).", role="id", required=True, nullable=False),
    ColumnSpec("year", "int", "Survey wave (calendar year the record describes).", role="id", required=True,
               nullable=False, min=YEAR_MIN, max=YEAR_MAX),
    ColumnSpec("village_code", "str", "12-digit administrative code of the village (行政村代码).", role="context",
               required=True, nullable=False),
    ColumnSpec("head_name", "str", "Name of the household head (personal data).", role="pii"),
    ColumnSpec("id_card_no", "str", "Resident ID-card number of the head (personal data).", role="pii"),
    ColumnSpec("phone", "str", "Contact phone number (personal data).", role="pii"),
    ColumnSpec("responsible_official", "str", "Id of the official responsible for helping the household (帮扶责任人).",
               role="context"),
    # --- demography --------------------------------------------------------------------
    _ind("household_size", "int", "demography", "家庭人口数", "household size", "labour",
         "Number of registered members (as recorded; may disagree with the member list).", min=1, max=30, unit="persons"),
    _ind("ethnic_minority", "bool", "demography", "少数民族户", "ethnic-minority household", None,
         "Head belongs to an ethnic minority."),
    _ind("terrain", "category", "land", "地形", "terrain", "land", "Terrain of the homestead.",
         categories=("plain", "hill", "mountain")),
    # --- income (defines the poverty label) ---------------------------------------------
    _ind("wage_income", "float", "income", "工资性收入", "wage income", "labour",
         "Wages from local and migrant work in the year.", role="income", min=0, max=5e6, unit="yuan/year"),
    _ind("farm_business_income", "float", "income", "生产经营性收入", "farming and business income", "land",
         "Net income from farming, livestock and household business (can be negative).", role="income",
         min=-1e6, max=5e6, unit="yuan/year"),
    _ind("property_income", "float", "income", "财产性收入", "property income", "capital",
         "Rent, dividends from cooperatives and land transfer fees.", role="income", min=0, max=5e6, unit="yuan/year"),
    _ind("transfer_income", "float", "income", "转移性收入", "transfer income", None,
         "Allowances, pensions, subsidies and remittances.", role="income", min=0, max=5e6, unit="yuan/year"),
    _ind("net_income_per_capita", "float", "income", "人均纯收入", "net income per person", None,
         "The registry's key figure: household net income divided by household size.", role="income",
         min=-1e5, max=1e6, unit="yuan/person/year"),
    # --- unavoidable spending -------------------------------------------------------------
    _ind("medical_spending", "float", "spending", "医疗支出", "medical spending", "illness",
         "Out-of-pocket medical spending in the year.", min=0, max=2e6, unit="yuan/year"),
    _ind("schooling_spending", "float", "spending", "教育支出", "schooling spending", "education",
         "Spending on children's schooling in the year.", min=0, max=1e6, unit="yuan/year"),
    # --- two no-worries and three guarantees --------------------------------------------
    _ind("food_secure", "bool", "guarantees", "不愁吃", "enough food", "capital", "Enough food all year."),
    _ind("clothing_secure", "bool", "guarantees", "不愁穿", "enough clothing", "capital",
         "Enough clothing for all seasons."),
    _ind("compulsory_education_secured", "bool", "guarantees", "义务教育有保障", "compulsory education secured",
         "education", "Every child of compulsory-school age is enrolled (or the household has none)."),
    _ind("medical_insurance_share", "float", "guarantees", "基本医疗有保障", "share insured", "illness",
         "Share of members enrolled in basic medical insurance.", min=0, max=1),
    _ind("housing_safety_grade", "category", "guarantees", "住房安全等级", "house safety grade", "capital",
         "House safety appraisal: A safe ... D dangerous (C and D unsafe).", categories=("D", "C", "B", "A"),
         ordered=True),
    _ind("safe_drinking_water", "bool", "guarantees", "饮水安全有保障", "safe drinking water", "water",
         "Drinking water is safe and sufficient."),
    # --- housing, water, energy, sanitation -----------------------------------------------
    _ind("housing_area_m2", "float", "housing", "住房面积", "housing floor area", "capital",
         "Floor area of the dwelling.", min=0, max=2000, unit="m2"),
    _ind("house_structure", "category", "housing", "房屋结构", "house structure", "capital",
         "Main building material of the dwelling.",
         categories=("earth_wood", "other", "brick_wood", "brick_concrete", "reinforced_concrete"), ordered=True),
    _ind("drinking_water_source", "category", "water", "饮用水来源", "drinking-water source", "water",
         "Main source of drinking water.",
         categories=("surface", "cistern", "unprotected_well", "spring", "protected_well", "tap"), ordered=True),
    _ind("water_shortage_months", "int", "water", "缺水月数", "months short of water", "water",
         "Months of the year with insufficient water.", min=0, max=12, unit="months"),
    _ind("electricity", "category", "energy_sanitation", "通电情况", "electricity", "capital",
         "Household electricity supply.", categories=("none", "grid_unstable", "grid_stable"), ordered=True),
    _ind("cooking_fuel", "category", "energy_sanitation", "炊事燃料", "cooking fuel", "capital",
         "Main cooking fuel.", categories=("firewood", "coal", "biogas", "electric_gas"), ordered=True),
    _ind("toilet", "category", "energy_sanitation", "厕所类型", "toilet", "capital", "Type of toilet.",
         categories=("none", "pit", "improved_pit", "flush_sanitary"), ordered=True),
    _ind("road_distance_km", "float", "transport", "距硬化路距离", "distance to paved road", "transport",
         "Distance from the house to the nearest paved road.", min=0, max=100, unit="km"),
    _ind("township_distance_km", "float", "transport", "距乡镇距离", "distance to township", "transport",
         "Distance to the township seat.", min=0, max=300, unit="km"),
    # --- land and farming -----------------------------------------------------------------
    _ind("cultivated_land_mu", "float", "land", "耕地面积", "cultivated land", "land",
         "Cultivated land held by the household.", min=0, max=1000, unit="mu"),
    _ind("irrigated_share", "float", "land", "有效灌溉比例", "share of land irrigated", "water",
         "Share of the cultivated land that is irrigated.", min=0, max=1),
    _ind("forest_land_mu", "float", "land", "林地面积", "forest land", "land", "Forest land held.",
         min=0, max=10000, unit="mu"),
    _ind("livestock_units", "float", "land", "牲畜存栏", "livestock", "capital",
         "Livestock in standard units (1 = one cattle, 0.2 = one pig, 0.1 = one goat).", min=0, max=1000,
         unit="units"),
    _ind("cash_crops", "bool", "land", "种植经济作物", "grows cash crops", "skills",
         "Grows tea, fruit, medicinal herbs or other cash crops."),
    # --- assets ---------------------------------------------------------------------------
    _ind("has_motorcycle", "bool", "assets", "摩托车/三轮车", "motorcycle or tricycle", "capital", "Owns one."),
    _ind("has_car", "bool", "assets", "汽车", "car or van", "capital", "Owns one."),
    _ind("has_farm_machinery", "bool", "assets", "农用机械", "farm machinery", "capital", "Owns farm machinery."),
    _ind("has_fridge", "bool", "assets", "冰箱", "refrigerator", "capital", "Owns one."),
    _ind("has_washing_machine", "bool", "assets", "洗衣机", "washing machine", "capital", "Owns one."),
    _ind("has_tv", "bool", "assets", "电视机", "television", "capital", "Owns one."),
    _ind("has_smartphone", "bool", "assets", "智能手机", "smartphone", "skills", "A member owns one."),
    # --- credit and organisation --------------------------------------------------------------
    _ind("has_loan", "bool", "finance", "有未还贷款", "has a loan outstanding", "capital",
         "Has a bank or credit-union loan outstanding."),
    _ind("cooperative_member", "bool", "finance", "加入合作社", "cooperative member", "skills",
         "Member of a farmers' cooperative."),
    # --- programmes received --------------------------------------------------------------------
    _ind("dibao", "bool", "programmes", "低保", "minimum living allowance", "labour",
         "Receives the minimum living allowance (dibao)."),
    _ind("tekun_support", "bool", "programmes", "特困供养", "extreme-hardship support", "labour",
         "Receives support for people in extreme hardship (tekun)."),
    _ind("relocated", "bool", "programmes", "易地扶贫搬迁", "relocated", "transport",
         "Moved under the poverty-relief relocation programme."),
    _ind("industry_support", "bool", "programmes", "产业扶持", "industry support", "capital",
         "Received industry support (seedlings, livestock, cooperative dividends)."),
    _ind("skills_training", "bool", "programmes", "技能培训", "skills training", "skills",
         "A member attended vocational training this year."),
    _ind("microcredit", "bool", "programmes", "小额信贷", "poverty-relief microcredit", "capital",
         "Holds a poverty-relief microcredit loan."),
    _ind("public_welfare_job", "bool", "programmes", "公益岗位", "public-welfare job", "labour",
         "A member holds a public-welfare job."),
    _ind("education_subsidy", "bool", "programmes", "教育资助", "education subsidy", "education",
         "Receives education subsidies for a child."),
    _ind("medical_assistance", "bool", "programmes", "医疗救助", "medical assistance", "illness",
         "Received medical assistance beyond insurance."),
    # --- shocks and motivation ----------------------------------------------------------------
    _ind("disaster_affected", "bool", "shocks", "受灾", "hit by a natural disaster", "disaster",
         "Hit by flood, drought, hail, landslide or frost this year."),
    _ind("disaster_loss_yuan", "float", "shocks", "灾害损失", "disaster loss", "disaster",
         "Estimated loss from natural disasters this year.", min=0, max=5e6, unit="yuan"),
    _ind("self_development_will", "int", "shocks", "内生动力评价", "self-development drive", "motivation",
         "The visiting official's rating of the household's drive to improve, 1 (none) to 5 (strong).",
         min=1, max=5),
    # --- registry status (reveals the label of the poverty task) -----------------------------
    _ind("registry_status", "category", "registry", "建档立卡状态", "registry status", None,
         "Registry enrolment: not registered, registered poor, exited (lifted out), or under relapse monitoring.",
         role="status", categories=("not_registered", "registered_poor", "exited", "monitored")),
    _ind("poor_since_year", "int", "registry", "识别年份", "registered poor since", None,
         "Year the household was first registered as poor.", role="status", min=YEAR_MIN, max=YEAR_MAX),
    _ind("exit_year", "int", "registry", "脱贫年份", "year lifted out", None,
         "Year the household last exited poverty in the registry.", role="status", min=YEAR_MIN, max=YEAR_MAX),
    _ind("monitoring_group", "category", "registry", "监测对象类型", "monitoring group", None,
         "For monitored households: unstable exited, near-poor, or sudden severe hardship.", role="status",
         categories=("unstable_exited", "near_poor", "sudden_hardship")),
)

MEMBER_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("household_id", "str", "Registry household number.", role="id", required=True, nullable=False),
    ColumnSpec("year", "int", "Survey wave.", role="id", required=True, nullable=False, min=YEAR_MIN, max=YEAR_MAX),
    ColumnSpec("member_no", "int", "Member number within the household (1 = head).", role="id", required=True,
               nullable=False, min=1, max=30),
    ColumnSpec("name", "str", "Member's name (personal data).", role="pii"),
    ColumnSpec("id_card_no", "str", "Member's ID-card number (personal data).", role="pii"),
    ColumnSpec("relation", "category", "Relationship to the head.", required=True, nullable=False,
               categories=("head", "spouse", "child", "child_in_law", "grandchild", "parent", "sibling", "other")),
    ColumnSpec("sex", "category", "Sex.", required=True, nullable=False, categories=("F", "M")),
    ColumnSpec("age", "int", "Age in completed years.", required=True, nullable=False, min=0, max=120, unit="years"),
    ColumnSpec("schooling_years", "float", "Completed years of schooling.", min=0, max=22, unit="years"),
    ColumnSpec("in_school", "bool", "Enrolled in school this year."),
    ColumnSpec("health", "category", "Health: healthy, chronic illness, or serious illness (大病).",
               categories=("healthy", "chronic", "serious")),
    ColumnSpec("disability_grade", "int", "Disability grade: 0 none, 1 most severe ... 4 mild.", min=0, max=4),
    ColumnSpec("work_ability", "category", "Ability to work: full, partial (弱劳动力), none.",
               categories=("none", "partial", "full"), ordered=True),
    ColumnSpec("migrant_months", "int", "Months worked away from home (migrant work) this year.", min=0, max=12,
               unit="months"),
    ColumnSpec("occupation", "category", "Main occupation.",
               categories=("farming", "local_wage", "migrant", "self_employed", "student", "retired", "none")),
    ColumnSpec("medical_insured", "bool", "Enrolled in basic medical insurance."),
)

REGION_COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("village_code", "str", "12-digit village code.", role="id", required=True, nullable=False),
    ColumnSpec("village_name", "str", "Village name.", role="context"),
    ColumnSpec("township_name", "str", "Township name.", role="context"),
    ColumnSpec("county_name", "str", "County name.", role="context"),
    ColumnSpec("city_name", "str", "City (prefecture) name.", role="context"),
    ColumnSpec("province_name", "str", "Province name.", role="context"),
    ColumnSpec("minority_area", "bool", "The county is an ethnic-minority autonomous area.", role="context"),
    ColumnSpec("poor_village", "bool", "The village was designated a poor village (贫困村).", role="context"),
)

HOUSEHOLD_KEY = ("household_id", "year")
MEMBER_KEY = ("household_id", "year", "member_no")

#: Prefix length of each level of the region code.
REGION_LEVELS: dict[str, int] = {"province": 2, "city": 4, "county": 6, "township": 9, "village": 12}


def spec_map(columns: tuple[ColumnSpec, ...]) -> dict[str, ColumnSpec]:
    """Columns by name."""
    return {c.name: c for c in columns}


HOUSEHOLD_SPECS = spec_map(HOUSEHOLD_COLUMNS)
MEMBER_SPECS = spec_map(MEMBER_COLUMNS)
REGION_SPECS = spec_map(REGION_COLUMNS)


def household_indicators() -> list[ColumnSpec]:
    """The household-level indicators (roles indicator, income and status), in schema order."""
    return [c for c in HOUSEHOLD_COLUMNS if c.role in ("indicator", "income", "status")]


def pii_columns() -> set[str]:
    """Names of fields that hold personal data in any table (never features, never logged)."""
    return {c.name for c in (*HOUSEHOLD_COLUMNS, *MEMBER_COLUMNS) if c.role == "pii"}

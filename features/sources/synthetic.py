"""The synthetic registry panel of a province: `tpas data synth`.

`generate_panel` simulates households of a synthetic province year by year and writes what a
poverty-alleviation registry would hold about them: household waves, their members, and the
region tree, in the canonical schema of `features.schema` (partitioned Parquet, see below).
`read_panel` reads such a panel back (raw, unvalidated). `continue_panel` simulates the same
households on through the next wave(s), optionally with a disaster / migrant-work shock
(`WaveShock`), for monitoring (docs/monitoring.md). The process, its parameters, what is
latent, what is recorded and the rates it produces are documented in ``docs/synthetic_panel.md``.

Layout written under ``out_dir``::

    households/year=YYYY/part-CCCCC.parquet   one row per household wave (HOUSEHOLD_COLUMNS)
    members/year=YYYY/part-CCCCC.parquet      one row per member per wave (MEMBER_COLUMNS)
    regions.parquet                           one row per village (REGION_COLUMNS)
    manifest.json                             version, arguments, parameters, row counts, rates

How it is built, in short:

- The region tree (province > cities > counties > townships > villages), the villages' sizes
  and hidden attributes come from `seed` alone. Households are simulated in chunks of whole
  villages (``chunk_households`` bounds memory); a chunk's draws come from a generator seeded
  with ``(seed, chunk index)``; disaster and weather shocks of a county or village in a year
  come from generators seeded with ``(seed, county or village index, year)``, so they are the
  same whatever the chunking. Same seed and same chunk size give byte-identical files.
- Inside a chunk every array is indexed by household (``H``) or by member slot ``(H, K)``;
  members' lives (births, deaths, leaving home, marriage, illness, disability) are simulated
  first as event years, so each year's roster is a vectorised filter; then the economy and
  the registry are simulated year by year (a loop over years only).
- Latent quantities (household ability/resilience, true income, the persistent recording bias,
  members' migration propensity) are never written. Written values pass through a recording
  step: lognormal income-recording noise, noisy guarantees, missing optional fields, kept
  data-entry slips, and a small share of impossible values that validation must reject.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from features.schema import (
    HOUSEHOLD_COLUMNS,
    HOUSEHOLD_SPECS,
    MEMBER_COLUMNS,
    MEMBER_SPECS,
    REGION_COLUMNS,
    ColumnSpec,
)
from tpas.config import Params
from tpas.errors import ConfigError, DataError

GENERATOR_VERSION = "1.0.0"

# Independent random streams, mixed into every seed so that no two uses share draws.
_STREAM_REGION, _STREAM_COUNTY, _STREAM_VILLAGE, _STREAM_CHUNK, _STREAM_YEAR = 11, 12, 13, 14, 15

STATUS = ("not_registered", "registered_poor", "exited", "monitored")
NOT_REG, REG, EXITED, MON = 0, 1, 2, 3
MON_GROUPS = ("unstable_exited", "near_poor", "sudden_hardship")
RELATIONS = MEMBER_SPECS["relation"].categories  # head, spouse, child, child_in_law, grandchild, parent, sibling, other
R_HEAD, R_SPOUSE, R_CHILD, R_INLAW, R_GRANDCHILD, R_PARENT, R_SIBLING, R_OTHER = 0, 1, 2, 3, 4, 5, 6, 7
TERRAINS = ("plain", "hill", "mountain")
STRUCTURES = HOUSEHOLD_SPECS["house_structure"].categories  # earth_wood, other, brick_wood, brick_concrete, reinf.
GRADES = HOUSEHOLD_SPECS["housing_safety_grade"].categories  # D, C, B, A
WATER = HOUSEHOLD_SPECS["drinking_water_source"].categories  # surface, cistern, unprotected_well, spring, prot., tap
ELECTRICITY = HOUSEHOLD_SPECS["electricity"].categories
FUELS = HOUSEHOLD_SPECS["cooking_fuel"].categories
TOILETS = HOUSEHOLD_SPECS["toilet"].categories
HEALTH = MEMBER_SPECS["health"].categories  # healthy, chronic, serious
ABILITY = MEMBER_SPECS["work_ability"].categories  # none, partial, full
OCCUPATIONS = MEMBER_SPECS["occupation"].categories
ASSETS = ("has_motorcycle", "has_car", "has_farm_machinery", "has_fridge", "has_washing_machine", "has_tv",
          "has_smartphone")

#: Member slots per household: 0 head, 1 spouse, 2-4 children, 5 child-in-law, 6-7 grandchildren or
#: parents, 8-9 children born during the simulation, 10 a son's wife who marries in.
K_SLOTS = 11
_BIRTH_SLOTS, _INLAW_SLOT = (8, 9), 10
_NEVER = 9999

_SYLLABLES = (
    "an", "bai", "bao", "bei", "chang", "chen", "cheng", "chun", "da", "dong", "fang", "feng", "fu", "gao", "gu",
    "guan", "hai", "he", "heng", "hong", "hua", "huai", "jia", "jiang", "jin", "jing", "kang", "lan", "le", "li",
    "lian", "lin", "ling", "long", "lu", "luo", "mei", "ming", "nan", "ning", "pan", "ping", "qi", "qian", "qing",
    "quan", "ren", "rong", "shan", "shang", "shi", "shui", "song", "tai", "tang", "tian", "wan", "wei", "wen",
    "xi", "xia", "xiang", "xin", "xing", "ya", "yan", "yang", "yi", "yong", "yu", "yuan", "yun", "ze", "zhang",
    "zhen", "zhong", "zhou", "zhu",
)
_SURNAMES = ("王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何",
             "林", "罗", "高", "郑", "梁", "谢", "宋", "唐", "许", "邓", "冯", "韩", "曹", "曾", "彭", "萧", "蔡",
             "潘", "田", "董", "袁", "于", "余", "蒋", "杜", "叶", "程", "魏", "苏", "吕", "丁", "任", "卢", "姚",
             "沈", "钟", "姜", "崔", "谭", "陆", "范", "汪", "廖", "石", "金", "韦", "贾", "夏", "付", "方", "邹",
             "熊", "白", "孟", "秦", "邱", "侯", "江", "尹", "薛", "闫", "段", "雷", "龙", "黎", "史", "陶", "贺")
_GIVEN_M = ("伟", "强", "军", "勇", "杰", "涛", "明", "超", "刚", "平", "辉", "华", "建", "国", "志", "海", "林",
            "波", "斌", "文", "东", "春", "生", "福", "贵", "富", "才", "龙", "德", "成", "兵", "全", "荣", "新")
_GIVEN_F = ("芳", "娟", "敏", "静", "丽", "艳", "娜", "霞", "秀", "英", "玲", "兰", "凤", "梅", "琴", "云", "莲",
            "桂", "珍", "红", "燕", "萍", "雪", "慧", "婷", "颖", "玉", "翠", "菊", "花", "月", "春", "金", "银")
_PHONE_PREFIX = np.array([130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158,
                          159, 177, 180, 181, 182, 183, 186, 187, 188, 189, 198, 199])

#: Relative missing rates of optional fields (x measurement.missing_rate), by table.
_MISSING_WEIGHT_HH = {
    "responsible_official": 0.5, "ethnic_minority": 0.5, "terrain": 0.3,
    "wage_income": 0.3, "farm_business_income": 0.3, "property_income": 0.6, "transfer_income": 0.3,
    "net_income_per_capita": 0.1, "medical_spending": 1.0, "schooling_spending": 1.0,
    "food_secure": 0.5, "clothing_secure": 0.5, "compulsory_education_secured": 0.5,
    "medical_insurance_share": 0.5, "housing_safety_grade": 0.8, "safe_drinking_water": 0.6,
    "housing_area_m2": 1.5, "house_structure": 0.8, "drinking_water_source": 0.8, "water_shortage_months": 2.0,
    "electricity": 0.8, "cooking_fuel": 1.2, "toilet": 1.2, "road_distance_km": 1.5,
    "township_distance_km": 1.5, "cultivated_land_mu": 1.0, "irrigated_share": 2.5, "forest_land_mu": 3.0,
    "livestock_units": 2.0, "cash_crops": 1.5, "has_motorcycle": 1.0, "has_car": 1.0, "has_farm_machinery": 1.5,
    "has_fridge": 1.0, "has_washing_machine": 1.0, "has_tv": 1.0, "has_smartphone": 1.0, "has_loan": 2.0,
    "cooperative_member": 1.5, "dibao": 0.3, "tekun_support": 0.3, "relocated": 0.3, "industry_support": 0.8,
    "skills_training": 0.8, "microcredit": 0.8, "public_welfare_job": 0.8, "education_subsidy": 0.8,
    "medical_assistance": 0.8, "disaster_affected": 0.8, "disaster_loss_yuan": 1.5,
    "self_development_will": 2.5,
}
_MISSING_WEIGHT_MB = {
    "name": 0.2, "id_card_no": 0.4, "schooling_years": 1.5, "in_school": 0.6, "health": 0.6,
    "disability_grade": 0.6, "work_ability": 0.8, "migrant_months": 1.2, "occupation": 1.0, "medical_insured": 0.8,
}
#: The impossible values injected at `invalid_rate` (each one makes a household wave invalid).
INVALID_KINDS = ("member_age_999", "negative_wage", "structure_typo", "grade_E", "shortage_13_months",
                 "insured_share_above_1", "member_sex_typo")


# -- small helpers ---------------------------------------------------------------------------------------------


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _pick(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical draw per row of `probs` (rows sum to 1): index array."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(len(probs))[:, None] * cum[:, -1:]
    return np.minimum((u > cum).sum(axis=1), probs.shape[1] - 1)


def _cat(values: np.ndarray, labels: Iterable[str]) -> pa.Array:
    """Codes -> a pyarrow string array (code < 0 is null)."""
    labels = list(labels)
    codes = np.asarray(values)
    dictionary = pa.array(labels, pa.string())
    idx = pa.array(np.where(codes < 0, 0, codes).astype(np.int32), mask=codes < 0)
    return dictionary.take(idx)


def _pinyin_names(rng: np.random.Generator, n: int, suffix: str) -> np.ndarray:
    syl = np.array([s.capitalize() for s in _SYLLABLES])
    a = syl[rng.integers(0, len(syl), n)]
    b = np.array(_SYLLABLES)[rng.integers(0, len(syl), n)]
    return np.char.add(np.char.add(a, b), suffix)


# -- the region tree -------------------------------------------------------------------------------------------


@dataclass
class RegionTree:
    """Villages of the synthetic province, with their written names and hidden attributes.

    Arrays are indexed by village (0 .. n-1) unless named ``county_*``. Written: `frame`
    (REGION_COLUMNS). Hidden (used by the process only): terrain, remoteness, water, timing of
    infrastructure, development level.
    """

    frame: pd.DataFrame
    sizes: np.ndarray              # households per village
    first_household: np.ndarray    # index of the village's first household in the province
    county: np.ndarray             # county index of each village
    county_code: np.ndarray        # 6-digit county code of each village (str)
    terrain: np.ndarray            # 0 plain, 1 hill, 2 mountain
    minority: np.ndarray           # minority-area county
    poor_village: np.ndarray
    road_km: np.ndarray            # typical distance of a house to a paved road before the road campaign
    township_km: np.ndarray
    water_scarce: np.ndarray
    tap_year: np.ndarray           # year piped water reaches the village
    road_year: np.ndarray          # year paved roads reach the village's groups
    grid_year: np.ndarray          # year the village grid is upgraded (unstable before)
    development: np.ndarray        # village income level (log scale)
    county_minority: np.ndarray    # per county
    n_counties: int

    @property
    def n_villages(self) -> int:
        return len(self.sizes)


def build_region_tree(households: int, households_per_village: int, seed: int, params: Params) -> RegionTree:
    """The province's region tree for `households` households (depends on the seed only, never on chunking)."""
    proc = params.synth.process
    rng = _rng(seed, _STREAM_REGION)
    n_v = max(1, int(round(households / households_per_village)))
    n_v = min(n_v, households)
    weights = rng.uniform(0.6, 1.4, n_v)
    sizes = 1 + rng.multinomial(households - n_v, weights / weights.sum())
    n_counties = max(min(n_v, 4), math.ceil(n_v / 30))
    n_town = max(n_counties, math.ceil(n_v / 10))
    n_cities = max(1, math.ceil(n_counties / 9))
    town_of_v = (np.arange(n_v) * n_town) // n_v
    county_of_t = (np.arange(n_town) * n_counties) // n_town
    city_of_c = (np.arange(n_counties) * n_cities) // n_counties
    county = county_of_t[town_of_v]

    # codes: 2 province + 2 city + 2 county + 3 township + 3 village digits
    prov = "43"
    county_in_city = np.zeros(n_counties, int)
    for c in range(n_cities):
        members = np.flatnonzero(city_of_c == c)
        county_in_city[members] = np.arange(len(members))
    town_in_county = np.zeros(n_town, int)
    for c in range(n_counties):
        members = np.flatnonzero(county_of_t == c)
        town_in_county[members] = np.arange(len(members))
    village_in_town = np.zeros(n_v, int)
    for t in range(n_town):
        members = np.flatnonzero(town_of_v == t)
        village_in_town[members] = np.arange(len(members))
    city_code = np.array([f"{prov}{c + 1:02d}" for c in range(n_cities)])
    county_code_c = np.array([f"{city_code[city_of_c[c]]}{21 + county_in_city[c]:02d}" for c in range(n_counties)])
    town_code = np.array([f"{county_code_c[county_of_t[t]]}{101 + town_in_county[t]:03d}" for t in range(n_town)])
    village_code = np.array([f"{town_code[town_of_v[v]]}{201 + village_in_town[v]:03d}" for v in range(n_v)])

    # minority-area counties: the given share (at least one when the share is positive)
    n_minority = max(1, round(proc.minority_county_share * n_counties)) if proc.minority_county_share > 0 else 0
    county_minority = np.zeros(n_counties, bool)
    county_minority[rng.permutation(n_counties)[:n_minority]] = True
    county_dev = rng.normal(0, 0.12, n_counties) - 0.12 * county_minority
    minority = county_minority[county]
    p_mountain = np.clip(0.30 + 0.30 * minority - county_dev[county], 0.05, 0.9)
    p_plain = np.clip(0.25 - 0.15 * minority + county_dev[county], 0.02, 0.8)
    u = rng.random(n_v)
    terrain = np.where(u < p_mountain, 2, np.where(u < p_mountain + p_plain, 0, 1))
    base_road = np.array([0.6, 1.6, 3.2])[terrain]
    road_km = np.round(base_road * rng.lognormal(0, 0.6, n_v), 2)
    township_km = np.round(np.array([4.0, 8.0, 14.0])[terrain] * rng.lognormal(0, 0.45, n_v), 1)
    development = county_dev[county] + rng.normal(0, 0.08, n_v) - 0.06 * terrain - 0.02 * np.minimum(road_km, 8)
    score = -development + rng.normal(0, 0.08, n_v)
    n_poor = int(round(proc.poor_village_share * n_v))
    poor_village = np.zeros(n_v, bool)
    if n_poor > 0:
        poor_village[np.argsort(-score, kind="stable")[:n_poor]] = True
    water_scarce = rng.random(n_v) < np.array([0.08, 0.22, 0.35])[terrain]
    # Infrastructure: poor villages were prioritised by the 2016-2020 campaign.
    tap_year = np.where(rng.random(n_v) < np.array([0.45, 0.25, 0.12])[terrain], 2010,
                        2015 + rng.integers(0, 6, n_v) + np.where(poor_village, -1, rng.integers(0, 4, n_v)))
    road_year = 2015 + rng.integers(0, 6, n_v) + np.where(poor_village, 0, rng.integers(0, 3, n_v))
    grid_year = np.where(terrain == 2, 2015 + rng.integers(0, 5, n_v), 2000)

    province_name = "Xiangnan Sheng"
    city_names = _pinyin_names(rng, n_cities, " Shi")
    county_names = _pinyin_names(rng, n_counties, " Xian")
    county_names = np.where(county_minority, np.char.add(county_names, " (Zizhixian)"), county_names)
    town_names = _pinyin_names(rng, n_town, "")
    town_names = np.char.add(town_names, np.where(rng.random(n_town) < 0.6, " Zhen", " Xiang"))
    village_names = _pinyin_names(rng, n_v, " Cun")

    frame = pd.DataFrame({
        "village_code": village_code,
        "village_name": village_names,
        "township_name": town_names[town_of_v],
        "county_name": county_names[county],
        "city_name": city_names[city_of_c[county]],
        "province_name": province_name,
        "minority_area": minority,
        "poor_village": poor_village,
    })
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return RegionTree(frame=frame, sizes=sizes, first_household=first, county=county,
                      county_code=county_code_c[county], terrain=terrain, minority=minority,
                      poor_village=poor_village, road_km=road_km, township_km=township_km,
                      water_scarce=water_scarce, tap_year=tap_year, road_year=road_year, grid_year=grid_year,
                      development=development, county_minority=county_minority, n_counties=n_counties)


def village_chunks(sizes: np.ndarray, chunk_households: int) -> list[tuple[int, int]]:
    """Consecutive whole-village ranges ``[lo, hi)`` holding about `chunk_households` households each."""
    chunks, lo, total = [], 0, 0
    for v, n in enumerate(sizes):
        if total > 0 and total + n > chunk_households:
            chunks.append((lo, v))
            lo, total = v, 0
        total += int(n)
    chunks.append((lo, len(sizes)))
    return chunks


# -- year-level environment ------------------------------------------------------------------------------------


@dataclass
class _Year:
    """Province-wide factors of one simulated year."""

    year: int
    price: float          # nominal level of wages and prices (1 in 2016)
    farm_price: float     # farm-gate price level
    labour: float         # migrant labour-market factor (wages)
    migrant: float        # migrant-work factor (share migrating, months), < 1 in a collapse
    line: float
    mline: float          # monitoring line (from the monitoring start year; else 1.5 x line)
    dibao_std: float      # rural minimum-living standard, yuan/person/year
    pension: float        # basic rural pension, yuan/person/year


def _log_price(t: int, proc) -> float:
    """Log nominal level in year `t` (0 in 2016): growth `income_growth` a year up to the break year, then
    `income_growth_after`."""
    def g(year: int) -> float:
        return proc.income_growth if year <= proc.growth_break_year else proc.income_growth_after
    if t >= 2016:
        return sum(g(y) for y in range(2017, t + 1))
    return -sum(g(y) for y in range(t + 1, 2017))


def _years_env(sim_years: list[int], params: Params, seed: int) -> dict[int, _Year]:
    proc = params.synth.process
    env = {}
    for t in sim_years:
        g = _rng(seed, _STREAM_YEAR, t)
        line = params.lines.poverty_line_for(t)
        mline = params.lines.monitoring_line_for(t) if t >= proc.monitoring_start_year else 1.5 * line
        # The dibao standard caught up with the poverty line by 2018 (the "two lines merged") and kept rising.
        ratio = 0.85 if t <= 2016 else 1.0 if t == 2017 else 1.15 if t <= 2020 else min(1.4, 1.2 + 0.03 * (t - 2021))
        env[t] = _Year(
            year=t,
            price=math.exp(_log_price(t, proc)),
            farm_price=math.exp(0.5 * _log_price(t, proc) + g.normal(0, 0.04)),
            labour=math.exp(g.normal(0, 0.03)) * (0.92 if proc.migrant_shocks.get(t, 1.0) < 0.9 else 1.0),
            migrant=float(proc.migrant_shocks.get(t, 1.0)),
            line=line, mline=mline,
            dibao_std=ratio * line,
            pension=1250.0 * math.exp(0.055 * (t - 2016)),
        )
    return env


def _region_shocks(tree: RegionTree, v_lo: int, v_hi: int, sim_years: list[int], seed: int, params: Params,
                   forced: dict[int, float] | None = None):
    """Disaster and weather shocks of the villages ``[v_lo, v_hi)``: arrays (villages, years).

    A county-year draw (seeded by seed, county, year) says whether the county has a bad year and
    how bad; each village draws (seeded by seed, village, year) whether it is hit and its weather.
    `forced` (county index -> severity in [0.3, 1]) makes those counties have a bad year of that
    severity in every year of `sim_years`, with every one of their villages hit (the disaster shock
    of `continue_panel`); the villages' own severity and weather draws are unchanged.
    """
    proc = params.synth.process
    n, y = v_hi - v_lo, len(sim_years)
    hit = np.zeros((n, y), bool)
    severity = np.zeros((n, y))
    weather = np.zeros((n, y))
    county_cache: dict[tuple[int, int], tuple[bool, float]] = {}
    for i, v in enumerate(range(v_lo, v_hi)):
        c = int(tree.county[v])
        for j, t in enumerate(sim_years):
            if (c, t) not in county_cache:
                gc = _rng(seed, _STREAM_COUNTY, c, t)
                county_cache[(c, t)] = (bool(gc.random() < proc.disaster_county_prob), float(gc.uniform(0.3, 1.0)))
            bad, csev = county_cache[(c, t)]
            if forced and c in forced:
                bad, csev = True, float(forced[c])
            gv = _rng(seed, _STREAM_VILLAGE, v, t)
            u, sev, w = gv.random(), gv.uniform(0.15, 0.8), gv.normal(0, 0.07)
            p = (0.03 + (0.55 * csev if bad else 0.0)) * (0.8, 1.0, 1.25)[int(tree.terrain[v])]
            hit[i, j] = u < p or bool(forced and c in forced)
            severity[i, j] = sev * (csev if bad else 0.6)
            weather[i, j] = w - (0.10 * csev if bad else 0.0)
    return hit, severity, weather


# -- personal data ------------------------------------------------------------------------------------------------


_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK = np.array(list("10X98765432"))


def _id_numbers(county_code: np.ndarray, birth_year: np.ndarray, birth_day: np.ndarray, sex_male: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """18-character resident ID numbers: county code, birth date, sequence (odd for men), ISO 7064 check."""
    n = len(county_code)
    dates = pd.to_datetime(birth_year.astype(str), format="%Y") + pd.to_timedelta(birth_day, unit="D")
    ymd = (dates.year * 10000 + dates.month * 100 + dates.day).to_numpy().astype(np.int64)
    seq = rng.integers(0, 500, n) * 2 + np.where(sex_male, 1, 0)
    seq = np.where(seq > 999, seq - 2, seq)
    first17 = county_code.astype(np.int64) * 10**11 + ymd * 1000 + seq
    digits = (first17[:, None] // (10 ** np.arange(16, -1, -1, dtype=np.int64))[None, :]) % 10
    check = _ID_CHECK[(digits * _ID_WEIGHTS).sum(axis=1) % 11]
    return np.char.add(first17.astype(str), check)


def _phones(rng: np.random.Generator, n: int) -> np.ndarray:
    prefix = _PHONE_PREFIX[rng.integers(0, len(_PHONE_PREFIX), n)].astype(np.int64)
    return (prefix * 10**8 + rng.integers(0, 10**8, n)).astype(str)


def _given_names(rng: np.random.Generator, male: np.ndarray) -> np.ndarray:
    n = len(male)
    gm, gf = np.array(_GIVEN_M), np.array(_GIVEN_F)
    first = np.where(male, gm[rng.integers(0, len(gm), n)], gf[rng.integers(0, len(gf), n)])
    second = np.where(male, gm[rng.integers(0, len(gm), n)], gf[rng.integers(0, len(gf), n)])
    two = rng.random(n) < 0.7
    return np.where(two, np.char.add(first, second), first)


# -- the chunk simulation ------------------------------------------------------------------------------------------


class _Chunk:
    """Households of whole villages ``[v_lo, v_hi)``, simulated over `sim_years`.

    Household arrays have shape (H,); member arrays (H, K_SLOTS); per-year member states
    (H, K_SLOTS, Y). Latent attributes (never written): the household trait ``a``, the recording
    bias ``rec_bias``, members' ``m_prop`` / ``skill`` / ``u_*`` draws, and every true income.
    `trace`, when set to a dict, collects the latent quantities of each year (calibration only).
    """

    def __init__(self, tree: RegionTree, v_lo: int, v_hi: int, sim_years: list[int], params: Params, seed: int,
                 chunk_index: int, first_written: int | None = None):
        self.tree, self.params, self.proc = tree, params, params.synth.process
        # households are those on record in the first written wave: their heads survive the years before it
        self.first_written = sim_years[0] if first_written is None else first_written
        self.meas = params.synth.measurement
        self.sim_years = sim_years
        self.t0 = sim_years[0]
        self.rng = _rng(seed, _STREAM_CHUNK, chunk_index)
        sizes = tree.sizes[v_lo:v_hi]
        self.H = H = int(sizes.sum())
        self.vil = np.repeat(np.arange(v_lo, v_hi), sizes)                     # global village index
        self.vloc = self.vil - v_lo                                            # village index in this chunk
        self.seq_in_village = np.arange(H) - np.repeat(np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
        codes = tree.frame["village_code"].to_numpy()[self.vil].astype(str)
        self.village_code = codes
        self.household_id = np.char.add(codes, np.char.zfill((self.seq_in_village + 1).astype(str), 4))
        self.hit, self.severity, self.weather = _region_shocks(tree, v_lo, v_hi, sim_years, seed, params)
        self._init_households()
        self._init_members()
        self._simulate_lives()
        self._init_pii()
        self.trace: dict | None = None

    # ---- households ------------------------------------------------------------------------------------
    def _init_households(self) -> None:
        rng, tree, H, v = self.rng, self.tree, self.H, self.vil
        self.a = rng.normal(0, 1, H)                                        # latent ability / resilience
        self.rec_bias = rng.normal(0, 1, H)                                 # latent persistent recording bias
        step = np.clip(tree.terrain[v] + rng.choice([-1, 1], H), 0, 2)
        self.terrain = np.where(rng.random(H) < 0.9, tree.terrain[v], step)
        self.minority_hh = rng.random(H) < np.where(tree.minority[v], 0.7, 0.04)
        self.poor_v = tree.poor_village[v]
        self.dev = tree.development[v] + rng.normal(0, 0.05, H)
        self.road0 = np.clip(tree.road_km[v] * rng.lognormal(0, 0.5, H), 0, 60)
        self.town_km0 = np.clip(tree.township_km[v] * rng.lognormal(0, 0.25, H), 0.3, 150)
        lp = rng.lognormal(np.log(np.array([1.6, 1.3, 1.0])[self.terrain]), 0.45)
        self.land_pc = lp
        fm = np.array([0.6, 4.0, 12.0])[self.terrain]
        self.forest = np.where((self.terrain == 0) & (rng.random(H) < 0.7), 0.0, rng.lognormal(np.log(fm), 0.8))
        self.forest = np.round(np.clip(self.forest, 0, 3000), 1)
        alpha = np.array([6.0, 3.0, 1.5])[self.terrain]
        beta = np.array([2.0, 3.0, 5.0])[self.terrain]
        self.irrigated = np.round(rng.beta(alpha, beta) * 20) / 20
        self.livestock = np.where(rng.random(H) < 0.35, 0.0,
                                  rng.lognormal(np.log(0.8) + 0.3 * (self.terrain == 2), 0.9))
        self.cash_crops = rng.random(H) < _sigmoid(-1.6 + 0.5 * self.a + 0.4 * (self.terrain > 0))
        self.business = rng.random(H) < _sigmoid(-3.1 + 0.8 * self.a - 0.12 * self.road0 + 0.5 * (self.terrain == 0))
        self.farm_skill = rng.normal(0, 0.25, H)
        self.biz_level = rng.normal(0, 0.4, H)
        self.coop = rng.random(H) < 0.04
        # housing
        score = 0.8 * self.a + rng.normal(0, 1, H) - 0.6 * (self.terrain == 2) - 0.4 * self.minority_hh \
            - 0.05 * np.minimum(self.road0, 10) + 0.3 * (self.terrain == 0) + 0.4 * self.business
        self.structure = np.searchsorted(np.array([-1.45, -1.25, -0.05, 2.0]), score)
        g_probs = np.array([[0.25, 0.55, 0.20, 0.0], [0.15, 0.45, 0.35, 0.05], [0.03, 0.22, 0.60, 0.15],
                            [0.0, 0.04, 0.30, 0.66], [0.0, 0.0, 0.08, 0.92]])
        self.grade = _pick(rng, g_probs[self.structure])
        self.area_u = rng.lognormal(0, 0.3, H)
        # water, energy, sanitation
        w_probs = np.array([[0.02, 0.02, 0.20, 0.06, 0.50, 0.20], [0.05, 0.10, 0.20, 0.30, 0.20, 0.15],
                            [0.15, 0.20, 0.10, 0.35, 0.05, 0.15]])
        self.water0 = _pick(rng, w_probs[self.terrain])
        self.tap_u = rng.random(H)
        self.off_grid = rng.random(H) < 0.004 + 0.03 * (self.road0 > 8)
        self.shortage_base = rng.poisson(np.where(tree.water_scarce[v], 2.5, 0.3))
        self.fuel = np.where(rng.random(H) < _sigmoid(0.6 + 0.9 * (self.terrain == 2) - 0.8 * self.a), 0,
                             np.where(rng.random(H) < 0.15, 1, np.where(rng.random(H) < 0.1, 2, 3)))
        t_score = 0.8 * self.a + rng.normal(0, 1, H) - 0.3 * (self.terrain == 2)
        self.toilet = np.searchsorted(np.array([-1.7, 0.3, 1.0]), t_score)
        self.assets = np.zeros((H, len(ASSETS)), bool)
        self.asset_u = rng.random((H, len(ASSETS)))
        # registry and programme state
        self.status = np.zeros(H, np.int8)
        self.poor_since = np.zeros(H, np.int16)
        self.exit_year = np.zeros(H, np.int16)
        self.mon_group = np.full(H, -1, np.int8)
        self.mon_since = np.zeros(H, np.int16)
        self.dibao = np.zeros(H, bool)
        self.dibao_cover = np.where(rng.random(H) < 0.6, 1.0, 0.5)
        self.tekun = np.zeros(H, bool)
        self.industry_since = np.zeros(H, np.int16)
        self.micro_since = np.zeros(H, np.int16)
        self.micro_return = 0.05 + 0.08 * self.a + rng.normal(0, 0.04, H)
        self.pwj = np.zeros(H, bool)
        self.relocated_year = np.zeros(H, np.int16)
        self.loan_until = np.zeros(H, np.int16)
        self.keep_u = rng.random(H)
        self.official_bias = rng.normal(0, 0.35, H)   # the rating official's leniency (per household's official)
        self.prev_total = None
        self.prev_pc_rec = None
        self.prev_pc_true = None
        self.k_away = np.zeros(H)   # filled after members (needs the head's age)
        self.remit_u = rng.normal(-0.3, 0.8, H)

    # ---- members ---------------------------------------------------------------------------------------
    def _init_members(self) -> None:
        rng, H, K, t0 = self.rng, self.H, K_SLOTS, self.t0
        typ = rng.choice(6, H, p=[0.11, 0.15, 0.35, 0.18, 0.14, 0.07])
        present = np.zeros((H, K), bool)
        rel = np.full((H, K), -1, np.int8)
        male = np.zeros((H, K), bool)
        age = np.zeros((H, K), np.int16)
        married = np.zeros((H, K), bool)   # a son living with his wife

        lo = np.array([60, 60, 25, 46, 28, 25])[typ]
        hi = np.array([89, 86, 56, 73, 53, 63])[typ]
        head_age = rng.integers(lo, hi)
        head_male = rng.random(H) < np.where(np.isin(typ, (0, 5)), 0.45, 0.9)
        present[:, 0], rel[:, 0], male[:, 0], age[:, 0] = True, R_HEAD, head_male, head_age

        has_sp = rng.random(H) < np.array([0.0, 1.0, 0.93, 0.85, 0.93, 0.0])[typ]
        sp_age = np.clip(head_age + np.where(head_male, -1, 1) * np.round(rng.normal(2, 2.5, H)), 18, 100)
        present[:, 1], rel[:, 1], male[:, 1], age[:, 1] = has_sp, R_SPOUSE, ~head_male, sp_age
        mother_age = np.where(~head_male, head_age, np.where(has_sp, sp_age, head_age - 2))

        n_kids = np.select(
            [typ == 2, typ == 4, typ == 5],
            [rng.choice(4, H, p=[0.12, 0.35, 0.38, 0.15]), rng.choice(4, H, p=[0.15, 0.35, 0.35, 0.15]),
             rng.choice(3, H, p=[0.3, 0.45, 0.25])],
            np.where((typ == 1) & (rng.random(H) < 0.08), 1, 0))
        for j in range(3):
            slot = 2 + j
            on = n_kids > j
            max_age = np.clip(mother_age - 20, 0, np.where(typ == 1, 55, 28))
            kid_age = np.floor(rng.random(H) * (max_age + 1))
            kid_age = np.where(typ == 1, np.maximum(kid_age, 25), kid_age)
            present[:, slot] |= on
            rel[:, slot] = np.where(on, R_CHILD, rel[:, slot])
            male[:, slot] = np.where(on, rng.random(H) < 0.53, male[:, slot])
            age[:, slot] = np.where(on, kid_age, age[:, slot])
        # three generations: a married son, his wife, grandchildren, maybe an unmarried younger child
        t3 = typ == 3
        son_age = np.clip(head_age - rng.integers(22, 33, H), 20, 60)
        present[:, 2] |= t3
        rel[:, 2] = np.where(t3, R_CHILD, rel[:, 2])
        male[:, 2] = np.where(t3, True, male[:, 2])
        age[:, 2] = np.where(t3, son_age, age[:, 2])
        married[:, 2] = t3
        extra = t3 & (rng.random(H) < 0.25)
        present[:, 3] |= extra
        rel[:, 3] = np.where(extra, R_CHILD, rel[:, 3])
        male[:, 3] = np.where(extra, rng.random(H) < 0.5, male[:, 3])
        age[:, 3] = np.where(extra, np.clip(son_age - rng.integers(1, 8, H), 14, 60), age[:, 3])
        inlaw = t3 & (rng.random(H) < 0.9)
        il_age = np.clip(son_age - rng.integers(-1, 5, H), 19, 60)
        present[:, 5], rel[:, 5], age[:, 5] = inlaw, R_INLAW, il_age
        n_gc = np.where(t3, rng.choice(3, H, p=[0.2, 0.4, 0.4]), 0)
        gmax = np.clip(np.where(inlaw, il_age, son_age) - 20, 0, 15)
        for j in range(2):
            on = n_gc > j
            slot = 6 + j
            present[:, slot] |= on
            rel[:, slot] = np.where(on, R_GRANDCHILD, rel[:, slot])
            male[:, slot] = np.where(on, rng.random(H) < 0.53, male[:, slot])
            age[:, slot] = np.where(on, np.floor(rng.random(H) * (gmax + 1)), age[:, slot])
        # elderly parents living with the head
        n_par = np.where(typ == 4, rng.choice([1, 2], H, p=[0.6, 0.4]),
                         np.where((typ == 5) & (rng.random(H) < 0.3), 1, 0))
        for j in range(2):
            on = n_par > j
            slot = 6 + j
            present[:, slot] |= on
            rel[:, slot] = np.where(on, R_PARENT, rel[:, slot])
            male[:, slot] = np.where(on, rng.random(H) < 0.35, male[:, slot])   # a lone parent: mostly a widow
            age[:, slot] = np.where(on, np.clip(head_age + rng.integers(22, 35, H), 50, 99), age[:, slot])
        # the two parents are a couple: one man, one woman
        both = n_par == 2
        male[both, 6], male[both, 7] = False, True
        # an unmarried or widowed sibling of the head (single adults, elderly singles), a nephew or foster child
        sib_slot = np.where(typ == 0, 6, 7)
        sib = ((typ == 5) & (rng.random(H) < 0.2)) | ((typ == 0) & (rng.random(H) < 0.06))
        idx = np.flatnonzero(sib)
        present[idx, sib_slot[idx]] = True
        rel[idx, sib_slot[idx]] = R_SIBLING
        male[idx, sib_slot[idx]] = rng.random(len(idx)) < 0.55
        age[idx, sib_slot[idx]] = np.clip(head_age[idx] + rng.integers(-8, 9, len(idx)), 18, 99)
        other = (typ == 2) & (rng.random(H) < 0.03)
        present[other, 7], rel[other, 7] = True, R_OTHER
        male[other, 7] = rng.random(int(other.sum())) < 0.5
        age[other, 7] = rng.integers(3, 17, int(other.sum()))

        # sex of the in-law slots: the son's wife
        male[:, 5] = False
        male[:, _INLAW_SLOT] = False
        self.typ = typ
        self.present0 = present
        self.rel = rel
        self.male = male
        self.birth_year = (t0 - age).astype(np.int16)
        self.married = married
        self.entry = np.where(present, t0, _NEVER).astype(np.int16)
        self.exit = np.full((H, K), _NEVER, np.int16)
        self.birth_day = rng.integers(0, 365, (H, K))
        # latent individual traits
        self.m_prop = rng.normal(0, 1, (H, K))        # migration propensity
        self.skill = rng.normal(0, 1, (H, K))         # earnings skill
        self.u_wa = rng.random((H, K))                # how illness translates into ability to work
        self.u_drop = rng.random((H, K))              # school-dropout propensity
        self.u_ins = rng.random((H, K))               # insurance enrolment propensity
        self.u_local = rng.random((H, K))
        self.u_days = rng.random((H, K))              # how many days of local work a member finds
        self.trained = np.zeros((H, K), bool)
        self.was_migrant = np.zeros((H, K), bool)     # state dependence of migrant work
        # schooling by cohort (older cohorts fewer years), sex, minority, remoteness and the household trait
        by = self.birth_year.astype(float)
        mu = np.clip(2.0 + 0.17 * (by - 1930), 1.0, 10.5)
        mu -= np.where(~male, np.where(by < 1965, 1.8, np.where(by < 1985, 0.6, 0.0)), 0.0)
        mu -= 0.7 * self.minority_hh[:, None] + 0.1 * np.minimum(self.road0, 10)[:, None]
        mu += 0.8 * self.a[:, None] + 0.3 * self.skill
        final = np.round(mu + rng.normal(0, 2.0, (H, K)))
        young = by >= 1995
        cont = rng.random((H, K))
        final = np.where(young, np.where(cont < 0.03, np.clip(final, 5, 8), 9.0), final)
        p_senior = _sigmoid(0.3 + 0.8 * self.a[:, None] + 0.3 * self.skill)
        p_college = _sigmoid(-0.9 + 0.8 * self.a[:, None] + 0.5 * self.skill)
        senior = young & (cont >= 0.03) & (cont < 0.03 + p_senior)
        final = np.where(senior, np.where(rng.random((H, K)) < p_college, 16.0, 12.0), final)
        self.final_school = np.clip(final, 0, 19).astype(np.int8)
        # health and disability at the start (prevalence by age); onset years in the life simulation
        agef = age.astype(float)
        chronic0 = rng.random((H, K)) < np.clip(0.02 + 0.007 * np.maximum(agef - 30, 0), 0, 0.6)
        self.chronic_on = np.where(chronic0, t0 - 1, _NEVER).astype(np.int16)
        dis0 = rng.random((H, K)) < np.clip(0.012 + 0.0018 * np.maximum(agef - 20, 0), 0, 0.2)
        self.dis_on = np.where(dis0, t0 - 1, _NEVER).astype(np.int16)
        self.dis_grade = rng.choice([1, 2, 3, 4], (H, K), p=[0.12, 0.23, 0.30, 0.35]).astype(np.int8)
        Y = len(self.sim_years)
        self.serious = np.zeros((H, K, Y), bool)
        self.serious[:, :, 0] = rng.random((H, K)) < np.clip(0.006 + 0.0008 * np.maximum(agef - 30, 0), 0, 0.08) \
            * np.where(chronic0, 1.8, 1.0)
        self.head_slot = np.zeros((H, Y), np.int8)
        self.dissolved = np.full(H, _NEVER, np.int16)
        # grown children living elsewhere (send remittances); the head's age decides how many
        self.k_away = np.where(head_age >= 50, rng.poisson(1.8, H), rng.poisson(0.15, H)).astype(float)

    def _active(self, t: int) -> np.ndarray:
        return (self.entry <= t) & (t < self.exit)

    def _simulate_lives(self) -> None:
        """Deaths, leaving home, marriages in, births, head succession and illness/disability, year by year."""
        rng, H = self.rng, self.H
        rows = np.arange(H)
        for k in range(1, len(self.sim_years)):
            t = self.sim_years[k]
            prev = self._active(t - 1)
            age = (t - 1 - self.birth_year).astype(float)
            chronic = self.chronic_on <= t - 1
            disabled_severe = (self.dis_on <= t - 1) & (self.dis_grade <= 2)
            q = np.exp(-10.3 + 0.092 * age)
            q = np.maximum(q, np.where(age < 1, 0.004, 0.0004))
            q *= np.where(self.serious[:, :, k - 1], 3.0, 1.0) * np.where(chronic, 1.3, 1.0) \
                * np.where(disabled_severe, 1.5, 1.0) * np.exp(-0.1 * self.a)[:, None]
            dies = prev & (rng.random(q.shape) < np.minimum(q, 0.6))
            is_head = np.arange(K_SLOTS)[None, :] == self.head_slot[:, k - 1][:, None]
            if t <= self.first_written:
                dies &= ~is_head
            child = (self.rel == R_CHILD) | (self.rel == R_GRANDCHILD)
            leave_h = np.where((age >= 18) & (age <= 35) & ~self.married,
                               np.where(self.male, 0.07, 0.13), 0.0)
            leave_h = np.where(self.final_school >= 12, leave_h * 1.3, leave_h)
            leaves = prev & child & ~is_head & ~dies & (rng.random(q.shape) < leave_h)
            gone = dies | leaves
            self.exit = np.where(gone, t, self.exit).astype(np.int16)
            active = self._active(t)
            # head succession: the spouse, else the oldest adult; none -> the household is dissolved
            hs = self.head_slot[:, k - 1].astype(int)
            head_gone = ~active[rows, hs] & (self.dissolved == _NEVER)
            if head_gone.any():
                age_t = t - self.birth_year
                cand = active & (age_t >= 18)
                score = np.where(cand, age_t + 1000 * (self.rel == R_SPOUSE), -1)
                best = score.argmax(axis=1)
                ok = score[rows, best] >= 0
                new_head = np.where(head_gone & ok, best, hs)
                dissolve = head_gone & ~ok
                self.dissolved = np.where(dissolve, t, self.dissolved).astype(np.int16)
                self.exit = np.where(dissolve[:, None] & active, t, self.exit).astype(np.int16)
                hs = new_head
            self.head_slot[:, k] = hs
            active = self._active(t)
            live = self.dissolved > t
            age_t = (t - self.birth_year).astype(int)
            # a son marries and his wife joins the household
            son_ok = active & (self.rel == R_CHILD) & self.male & ~self.married & (age_t >= 22) & (age_t <= 34)
            free_inlaw = (self.entry[:, _INLAW_SLOT] == _NEVER) & ~active[:, 5]
            first_son = np.where(son_ok.any(axis=1), son_ok.argmax(axis=1), -1)
            marry = (first_son >= 0) & free_inlaw & live & (rng.random(H) < 0.08)
            if marry.any():
                idx = np.flatnonzero(marry)
                s_age = age_t[idx, first_son[idx]]
                self.married[idx, first_son[idx]] = True
                self.entry[idx, _INLAW_SLOT] = t
                self.rel[idx, _INLAW_SLOT] = R_INLAW
                self.birth_year[idx, _INLAW_SLOT] = t - np.clip(s_age - rng.integers(0, 5, len(idx)), 20, 40)
                self.male[idx, _INLAW_SLOT] = False
                self.final_school[idx, _INLAW_SLOT] = np.clip(np.round(rng.normal(9.5, 2, len(idx))), 3, 16)
            active = self._active(t)
            # births: the child-in-law's (grandchild) or the spouse's/female head's (child)
            inl = np.where(active[:, _INLAW_SLOT], _INLAW_SLOT, 5)
            inl_ok = active[rows, inl]
            mom_slot = np.where(inl_ok, inl, np.where(active[:, 1] & ~self.male[:, 1], 1, 0))
            mom_ok = active[rows, mom_slot] & ~self.male[rows, mom_slot]
            m_age = age_t[rows, mom_slot]
            young_kids = (active & (age_t < 10) & ((self.rel == R_CHILD) | (self.rel == R_GRANDCHILD))).sum(axis=1)
            hz = np.where((m_age >= 20) & (m_age <= 34), 0.10, np.where((m_age >= 35) & (m_age <= 42), 0.03, 0.0))
            hz *= np.where(young_kids >= 2, 0.15, 1.0)
            free = np.where(self.entry[:, _BIRTH_SLOTS[0]] == _NEVER, _BIRTH_SLOTS[0],
                            np.where(self.entry[:, _BIRTH_SLOTS[1]] == _NEVER, _BIRTH_SLOTS[1], -1))
            born = mom_ok & live & (free >= 0) & (rng.random(H) < hz)
            if born.any():
                idx = np.flatnonzero(born)
                s = free[idx]
                self.entry[idx, s] = t
                self.birth_year[idx, s] = t
                self.rel[idx, s] = np.where(inl_ok[idx], R_GRANDCHILD, R_CHILD)
                self.male[idx, s] = rng.random(len(idx)) < 0.53
            # illness and disability in year t
            active = self._active(t)
            age_f = (t - self.birth_year).astype(float)
            h_chronic = (0.003 + 0.0009 * np.maximum(age_f - 30, 0)) * np.exp(-0.15 * self.a)[:, None]
            ch_new = active & (self.chronic_on == _NEVER) & (rng.random((H, K_SLOTS)) < h_chronic)
            self.chronic_on = np.where(ch_new, t, self.chronic_on).astype(np.int16)
            chronic = self.chronic_on <= t
            was = self.serious[:, :, k - 1]
            p_rec = np.clip(0.55 + 0.1 * self.a, 0.3, 0.8)[:, None]
            stays = was & (rng.random((H, K_SLOTS)) > p_rec)
            onset = ~was & (rng.random((H, K_SLOTS)) < (0.003 + 0.0004 * np.maximum(age_f - 30, 0))
                            * np.where(chronic, 1.8, 1.0) * np.exp(-0.1 * self.a)[:, None])
            self.serious[:, :, k] = active & (stays | onset)
            recovered = was & ~stays & active & (self.chronic_on == _NEVER) & (rng.random((H, K_SLOTS)) < 0.4)
            self.chronic_on = np.where(recovered, t, self.chronic_on).astype(np.int16)
            d_new = active & (self.dis_on == _NEVER) & (
                rng.random((H, K_SLOTS)) < 0.0008 + 0.00018 * np.maximum(age_f - 40, 0))
            self.dis_on = np.where(d_new, t, self.dis_on).astype(np.int16)
        # stable member numbers: initial members in slot order, later arrivals in order of arrival
        arrival = (self.entry.astype(np.int64) - self.t0) * 100 + np.arange(K_SLOTS)
        order_key = np.where(self.entry == _NEVER, 10**6, arrival)
        ranks = np.argsort(np.argsort(order_key, axis=1, kind="stable"), axis=1, kind="stable")
        self.member_no = (ranks + 1).astype(np.int16)

    def _init_pii(self) -> None:
        rng, H = self.rng, self.H
        sur = np.array(_SURNAMES)
        family = sur[rng.integers(0, len(sur), H)]
        own = sur[rng.integers(0, len(sur), (H, K_SLOTS))]
        same = np.isin(self.rel, (R_HEAD, R_CHILD, R_GRANDCHILD)) | ((self.rel == R_PARENT) & self.male)
        surname = np.where(same, family[:, None], own)
        ever = self.entry != _NEVER
        flat = np.flatnonzero(ever.ravel())
        male = self.male.ravel()[flat]
        names = np.char.add(surname.ravel()[flat], _given_names(rng, male))
        county = np.repeat(self.tree.county_code[self.vil], K_SLOTS)[flat]
        ids = _id_numbers(county, self.birth_year.ravel()[flat].astype(int), self.birth_day.ravel()[flat], male, rng)
        # pyarrow arrays over all slots that ever exist, indexed by flat slot number
        self.pos_of_slot = np.full(H * K_SLOTS, -1, np.int64)
        self.pos_of_slot[flat] = np.arange(len(flat))
        self.name_arr = pa.array(names, pa.string())
        self.id_arr = pa.array(ids, pa.string())
        self.phone_arr = pa.array(_phones(rng, H), pa.string())
        per_village_officials = 1 + self.tree.sizes[self.vil] // 25
        off_no = self.vil * 100 + (self.seq_in_village % per_village_officials)
        self.official_arr = pa.array(np.char.add("OFF", np.char.zfill(off_no.astype(str), 7)), pa.string())
        self.hid_arr = pa.array(self.household_id, pa.string())
        self.vcode_arr = pa.array(self.village_code, pa.string())

    # ---- the yearly economy and registry ---------------------------------------------------------------------
    def run(self, env: dict[int, _Year], written: set[int]):
        """Simulate every year; yield ``(year, households table, members table, stats)`` for written years."""
        for k, t in enumerate(self.sim_years):
            out = self._year(k, t, env[t], write=t in written)
            if t in written:
                yield t, *out

    def _year(self, k: int, t: int, e: _Year, write: bool):
        rng, H, proc = self.rng, self.H, self.proc
        rows = np.arange(H)
        live = self.dissolved > t
        act = self._active(t) & live[:, None]
        age = (t - self.birth_year).astype(np.int16)
        agef = age.astype(float)
        a = self.a
        a2 = a[:, None]
        hs = self.head_slot[:, k].astype(int)
        n = act.sum(axis=1)
        n_safe = np.maximum(n, 1)

        # ---- member states ----
        serious = self.serious[:, :, k] & act
        chronic = (self.chronic_on <= t) & act & ~serious
        grade = np.where((self.dis_on <= t) & act, self.dis_grade, 0).astype(np.int8)
        health = np.where(serious, 2, np.where(chronic, 1, 0))
        school_now = np.clip(agef - 6, 0, self.final_school)
        drop_rate = np.where(t < 2018, 0.02, 0.004) * np.where(self.poor_v, 1.5, 1.0)[:, None]
        in_school = act & (agef >= 6) & (agef - 6 < self.final_school) & (agef <= 24)
        in_school &= ~((agef >= 10) & (agef <= 15) & (self.u_drop < drop_rate))
        in_school &= ~((grade > 0) & (grade <= 2) & (self.u_drop < 0.5))
        school_now = np.where(in_school | (agef < 6), school_now, np.minimum(school_now, self.final_school))
        ability = np.full(act.shape, 2, np.int8)                  # 2 full, 1 partial, 0 none
        working_age = (agef >= 16) & (agef <= 64)
        ability = np.where(working_age & chronic & (self.u_wa < 0.5), 1, ability)
        ability = np.where(working_age & (grade == 4) & (self.u_wa < 0.5), 1, ability)
        ability = np.where(working_age & (grade == 3), 1, ability)
        ability = np.where((agef >= 65) & (agef < 75), np.where(chronic & (self.u_wa < 0.3), 0, 1), ability)
        ability = np.where(agef >= 75, np.where(~chronic & (self.u_wa < 0.3), 1, 0), ability)
        ability = np.where(serious, np.where(self.u_wa < 0.7, 0, 1), ability)
        ability = np.where((grade >= 1) & (grade <= 2), 0, ability)
        ability = np.where((agef < 16) | in_school, 0, ability)
        ability = np.where(act, ability, 0).astype(np.int8)

        # ---- programmes known at the start of the year (decided on last year's status) ----
        st_prev = self.status.copy()
        target = (st_prev == REG) | (st_prev == MON)
        # exited households keep policies for a while ("exit without losing support"): a household trait
        transition = (st_prev == EXITED) & (self.keep_u < np.where(t - self.exit_year <= 5, 0.75, 0.3))
        helped = target | transition
        pe = proc.programme_effect

        # ---- care needs: serious illness, severe disability, very old without ability ----
        care = (serious | ((grade >= 1) & (grade <= 2)) | ((agef >= 80) & (ability == 0))).any(axis=1) & (n > 1)
        small_kids = (act & (agef < 6)).any(axis=1)

        # ---- migrant work ----
        elig = act & (ability == 2) & (agef >= 16) & (agef <= 55) & ~in_school
        road = self._road(t)
        relocated = (self.relocated_year > 0) & (self.relocated_year <= t)
        score = (self.m_prop + 0.5 * a2 + 0.10 * (school_now - 9) - 0.22 * np.sqrt(road)[:, None]
                 - 0.04 * np.maximum(agef - 30, 0) + 0.6 * self.trained + 0.3 * relocated[:, None]
                 - np.where(care[:, None] & ~self.male, 1.0, np.where(care[:, None], 0.3, 0.0))
                 - 0.7 * (small_kids[:, None] & ~self.male & ((self.rel == R_SPOUSE) | (self.rel == R_INLAW)))
                 - 0.5 * (np.arange(K_SLOTS) == hs[:, None]) * (n > 1)[:, None]
                 + 0.6 * self.was_migrant + rng.normal(0, 0.15, act.shape))
        thr = -0.5 - 0.03 * min(max(t - 2016, -2), 6)
        migrant = elig & (score > thr)
        months = np.clip(np.round(7.5 + 2.5 * (score - thr) + rng.normal(0, 1.0, act.shape)), 1, 12)
        if e.migrant < 1.0:
            lose = rng.random(act.shape) < 0.6 * (1 - e.migrant)
            months = np.where(lose, np.clip(np.round(months * 0.3), 1, 3), np.round(months * (0.5 + 0.5 * e.migrant)))
        job_loss = rng.random(act.shape) < 0.02
        months = np.where(job_loss, rng.integers(1, 4, act.shape), months)
        months = np.where(migrant, np.clip(months, 1, 12), 0).astype(np.int8)
        # what a migrant nets for the household a month: credentials matter by steps (senior secondary,
        # college), earnings peak in the thirties, and the household's trait and training raise it
        mwage = (1300.0 * e.price * e.labour
                 * np.exp(0.04 * (school_now - 9) + 0.25 * (school_now >= 12) + 0.3 * (school_now >= 15)
                          + 0.2 * a2 + 0.12 * self.skill + 0.15 * self.trained - 0.5 * ((agef - 35) / 20) ** 2)
                 * np.where(self.male, 1.0, 0.82) * np.where(chronic, 0.8, 1.0) * rng.lognormal(0, 0.08, act.shape))
        migrant_wage = (months * mwage).sum(axis=1)
        self.was_migrant = migrant

        # ---- local work and public-welfare jobs ----
        able_local = act & (ability >= 1) & (agef >= 16) & (agef <= 64) & ~in_school
        p_local = _sigmoid(-0.5 + 0.4 * a2 + 0.12 * (school_now - 9) - 0.05 * self._town_km(t)[:, None]
                           + 0.9 * relocated[:, None] + 2 * self.dev[:, None] - np.where(care[:, None], 0.5, 0.0))
        local = able_local & (self.u_local < p_local)
        days = np.where(ability == 2, 170, 80) * (1 - months / 12 * 0.9) * (0.6 + 0.7 * self.u_days) \
            * rng.lognormal(0, 0.1, act.shape)
        day_pay = 75.0 * e.price * np.exp(0.12 * a2 + 0.08 * self.skill + self.dev[:, None])
        local_wage = (local * days * day_pay).sum(axis=1)
        pwj_cand = act & (ability >= 1) & (agef >= 18) & (agef <= 70)
        has_pwj_cand = pwj_cand.any(axis=1)
        if t >= 2017:
            start = helped & has_pwj_cand & ~self.pwj & (migrant.sum(axis=1) == 0) & (rng.random(H) < 0.08)
            keep = self.pwj & has_pwj_cand & (rng.random(H) < np.where(helped, 0.9, 0.7))
            self.pwj = start | keep
        else:
            self.pwj = np.zeros(H, bool)
        pwj_wage = self.pwj * 4000.0 * e.price / math.exp(_log_price(2018, proc)) * pe
        wage = migrant_wage + local_wage + pwj_wage

        # ---- farming, livestock, business ----
        labour = (ability == 2) * 1.0 + (ability == 1) * 0.5 + ((agef >= 65) & (agef < 75) & (ability >= 1)) * 0.2
        labour_home = (labour * (1 - months / 12) * act).sum(axis=1)
        land = self._land(t)
        capacity = np.array([7.0, 5.0, 3.5])[self.terrain] * labour_home
        farmed = np.minimum(land, capacity)
        idle = land - farmed
        vg = self.vloc
        weather = np.exp(self.weather[vg, k])
        crop_gross = (farmed * 800.0 * e.farm_price * np.exp(self.dev) * np.array([1.0, 0.8, 0.6])[self.terrain]
                      * (0.55 + 0.45 * self.irrigated) * (1 + 1.3 * self.cash_crops)
                      * np.exp(0.15 * a + self.farm_skill) * weather)
        lab_f = np.minimum(1.0, labour_home)
        stock_gross = self.livestock * 2600.0 * e.farm_price * np.exp(0.2 * a) * (0.4 + 0.6 * lab_f)
        # disasters: village hit (county-year shock + village draw) or an idiosyncratic hit
        affected = (self.hit[vg, k] & (rng.random(H) < np.where(self.terrain == 2, 0.8, 0.7))) | (rng.random(H) < 0.015)
        sev = np.where(self.hit[vg, k], self.severity[vg, k], rng.uniform(0.1, 0.4, H)) * rng.uniform(0.4, 1.2, H)
        sev = np.clip(sev, 0, 1) * affected
        damaged = affected & (rng.random(H) < 0.15 * (1 + (self.terrain == 2)))
        house_damage = damaged * rng.lognormal(np.log(3000), 0.8, H) * e.price
        loss = sev * (crop_gross + 0.6 * stock_gross) * np.where(self.terrain == 2, 1.2, 1.0) + house_damage * 0.3
        crop_net = 0.55 * crop_gross
        stock_net = 0.45 * stock_gross
        ind_active = (self.industry_since > 0) & (self.industry_since < t)
        ind_years = np.where(ind_active, t - self.industry_since, 0)
        ind_eff = ind_active * 3600.0 * e.price * np.exp(0.7 * a) * np.minimum(1.0, labour_home + 0.2) \
            * np.exp(-0.12 * np.maximum(ind_years - 3, 0)) * pe
        biz_gross = 30000.0 * e.price * np.exp(0.5 * a + self.biz_level + rng.normal(0, 0.3, H))
        biz = self.business * (biz_gross - 9000.0 * e.price) * np.minimum(1.0, 0.3 + labour_home / 2)
        # microcredit: 50,000 yuan for three years; the return depends on the household (negative for some);
        # after repayment half of a positive return stays (the business or cooperative share goes on)
        micro_on = (self.micro_since > 0) & (t - self.micro_since < 3) & (self.micro_since <= t)
        micro_after = (self.micro_since > 0) & (t - self.micro_since >= 3)
        micro_eff = (micro_on * 50000.0 * (self.micro_return + rng.normal(0, 0.03, H))
                     + micro_after * 25000.0 * np.maximum(self.micro_return, 0)) * pe
        farm_business = crop_net + stock_net + ind_eff + biz + micro_eff - loss

        # ---- property income ----
        rent_out = idle * 260.0 * e.price * (rng.random(H) < 0.6)
        coop_div = self.coop * (200 + 800 * rng.random(H)) * e.price
        asset_div = ind_active * helped * 600.0 * e.price * pe
        rental = self.business * (rng.random(H) < 0.08) * rng.lognormal(np.log(5000), 0.6, H) * e.price
        prop = rent_out + coop_div + asset_div + rental

        # ---- transfers (before dibao and tekun, which are means-tested) ----
        n60 = (act & (agef >= 60)).sum(axis=1)
        pension = n60 * e.pension
        n_dis12 = (act & (grade >= 1) & (grade <= 2)).sum(axis=1)
        n_dis34 = (act & (grade >= 3)).sum(axis=1)
        dis_allow = n_dis12 * 1100.0 * math.sqrt(e.price) + n_dis34 * 600.0 * self.dibao
        head_age = age[rows, hs]
        remit = self.k_away * 550.0 * e.price * np.exp(0.3 * a + self.remit_u) * np.where(head_age >= 55, 1.0, 0.3) \
            * (0.6 + 0.4 * e.migrant)
        subsidies = land * 95.0 + self.forest * 14.0
        students = act & in_school
        level_cost = np.select([agef < 12, agef < 15, agef < 18], [400.0, 900.0, 3500.0], 12000.0)
        n_students = students.sum(axis=1)
        edu_sub_on = (n_students > 0) & (rng.random(H) < np.where(helped, 0.9, 0.04))
        edu_sub = edu_sub_on * n_students * 1000.0 * pe
        since_move = t - self.relocated_year
        reloc_sub = ((self.relocated_year > 0) & (since_move >= 0) & (since_move < 2)) * n * 800.0
        transfers_base = pension + dis_allow + remit + subsidies + edu_sub + reloc_sub
        pre = wage + farm_business + prop + transfers_base
        pc_pre = pre / n_safe

        # ---- dibao (gap-filling minimum living allowance) and tekun (extreme-hardship support) ----
        n_full = (act & (ability == 2)).sum(axis=1)
        weak = (n_full == 0) | ((n_full == 1) & (n >= 5)) | (n_dis12 > 0) | serious.any(axis=1)
        need = pc_pre < e.dibao_std
        p_new = np.where(helped, 0.35, 0.06) * np.where(weak, 1.0, 0.25) * np.where(self.poor_v, 1.2, 1.0)
        new_dibao = ~self.dibao & need & (rng.random(H) < p_new)
        capture = ~self.dibao & (pc_pre < 2.5 * e.line) & (rng.random(H) < 0.004)
        drop = self.dibao & (pc_pre > 1.5 * e.dibao_std) & (rng.random(H) < 0.4)
        self.dibao = ((self.dibao & ~drop) | new_dibao | capture) & live
        gap = np.clip(e.dibao_std - pc_pre, 0.25 * e.dibao_std, 0.8 * e.dibao_std)
        dibao_amt = self.dibao * gap * n * self.dibao_cover * np.where(t >= 2016, 1.0, 0.8)
        # tekun: only old or unable members and nobody bound to support them (no grown children elsewhere)
        elderly_alone = ((act & ~((agef >= 60) | (ability == 0))).sum(axis=1) == 0) & (self.k_away == 0)
        tk_new = ~self.tekun & elderly_alone & (n <= 2) & (pc_pre < e.line) \
            & (rng.random(H) < np.where(helped, 0.25, 0.08))
        self.tekun = (self.tekun | tk_new) & live & elderly_alone
        tekun_amt = self.tekun * 4500.0 * e.price
        transfers = transfers_base + dibao_amt + tekun_amt

        total = wage + farm_business + prop + transfers

        # ---- spending ----
        ins_rate = np.clip(0.88 + 0.018 * (t - 2014), 0, 0.995)
        insured = act & ((self.u_ins < ins_rate) | (helped[:, None] & (self.u_ins < 0.995)))
        med_cost = np.where(serious, 24000.0 * rng.lognormal(0, 0.6, act.shape),
                            np.where(chronic, 1800.0 * rng.lognormal(0, 0.5, act.shape), 150.0)) * e.price * act
        med_assist = helped & (serious.any(axis=1) | (chronic.sum(axis=1) >= 2)) & \
            (rng.random(H) < (0.85 if t >= 2017 else 0.5))
        med_assist |= ~helped & serious.any(axis=1) & (rng.random(H) < 0.1)
        oop_share = np.where(insured, np.clip(0.5 - 0.015 * (t - 2016), 0.3, 0.5), 0.9)
        oop_share = np.where(med_assist[:, None], np.minimum(oop_share, 0.12), oop_share)
        medical = (med_cost * oop_share).sum(axis=1)
        schooling = (students * level_cost * e.price).sum(axis=1) * np.where(edu_sub_on, 0.4, 1.0)
        # Net income deducts unavoidable medical spending above a deductible (the registry's treatment of
        # illness-driven poverty); the deduction is capped so that net income stays above minus one line a person.
        deductible = np.maximum(2000.0 * e.price, 0.1 * np.maximum(total, 0))
        med_excess = np.minimum(np.maximum(medical - deductible, 0), np.maximum(total, 0) + n_safe * e.line)
        net = total - med_excess
        pc_true = net / n_safe

        # ---- recording of income and the registry decision of the year ----
        sd = self.meas.income_noise_sd
        rho = proc.noise_persistence
        factor = np.exp(sd * (math.sqrt(rho) * self.rec_bias + math.sqrt(1 - rho) * rng.normal(0, 1, H)))
        rec = {
            "wage_income": np.round(wage * factor),
            "farm_business_income": np.round(farm_business * factor),
            "property_income": np.round(prop * factor),
            "transfer_income": np.round(transfers * factor),
        }
        pc_rec = np.round(pc_true * factor, 1)
        poor = pc_rec < e.line
        prev_total = self.prev_total if self.prev_total is not None else total
        prev_pc_rec = self.prev_pc_rec if self.prev_pc_rec is not None else pc_rec
        # sudden severe hardship: unavoidable spending far above last year's income, a heavy disaster loss,
        # or a sharp drop of recorded income to under the monitoring line
        hardship = (medical + schooling > 0.8 * np.maximum(prev_total, 1000)) \
            | (loss > 0.4 * np.maximum(prev_total, 1000)) | ((pc_rec < 0.7 * prev_pc_rec) & (pc_rec < e.mline))
        visible = (self.grade <= 1) | serious.any(axis=1) | (n_dis12 > 0) | (n_full == 0) | self.dibao
        out_of_school = (act & (agef >= 6) & (agef <= 15) & ~in_school).any(axis=1)
        exit_ok_guarantees = (self.grade >= 2) & self._safe_water(t) & ~out_of_school
        self._registry(t, e, poor, pc_rec, hardship, visible, exit_ok_guarantees, live)

        # ---- programmes decided this year on the new status (recorded this year, effects from next) ----
        st = self.status
        reg_now = (st == REG) | (st == MON)
        helped_now = reg_now | transition
        has_labour = n_full > 0
        if t >= 2014:
            p_ind = np.where(reg_now, 0.30, np.where(transition, 0.08, 0.01)) * _sigmoid(0.5 + 0.8 * a) * 1.6
            start_ind = (self.industry_since == 0) & (has_labour | (labour_home > 0.4)) & (rng.random(H) < p_ind)
            self.industry_since = np.where(start_ind, t, self.industry_since).astype(np.int16)
            self.cash_crops |= start_ind & (rng.random(H) < 0.4)
            self.livestock = self.livestock + start_ind * rng.uniform(0.5, 1.5, H)
            self.coop |= start_ind & (rng.random(H) < 0.4)
        industry_rec = (self.industry_since > 0) & (t - self.industry_since < 3) & (self.industry_since <= t)
        p_micro = np.where(reg_now & (t <= 2020), 0.10, 0.01) * _sigmoid(-0.2 + 1.0 * a) * 2
        start_micro = ((self.micro_since == 0) | (t - self.micro_since >= 3)) & has_labour & (rng.random(H) < p_micro)
        self.micro_since = np.where(start_micro, t, self.micro_since).astype(np.int16)
        micro_rec = (self.micro_since > 0) & (t - self.micro_since < 3) & (self.micro_since <= t)
        train_elig = act & (agef >= 18) & (agef <= 45) & (ability == 2)
        train = train_elig & (rng.random(act.shape) < np.where(helped_now, 0.15, 0.015)[:, None])
        self.trained |= train
        # relocation of households from remote villages (2016-2020), mostly registered poor
        if 2016 <= t <= 2020:
            remote = (road > 3.0) & (self.terrain >= 1)
            p_rel = np.where(reg_now, 0.22, 0.01) * remote
            move = (self.relocated_year == 0) & live & (rng.random(H) < p_rel)
            self.relocated_year = np.where(move, t, self.relocated_year).astype(np.int16)
            self.grade = np.where(move, 3, self.grade)
            self.structure = np.where(move, 3, self.structure)
            self.toilet = np.where(move, 3, self.toilet)
            self.fuel = np.where(move, 3, self.fuel)
            self.terrain = np.where(move, np.minimum(self.terrain, 1), self.terrain)
        # housing renovation of unsafe houses (target households first) and self-financed rebuilding
        renovate = (self.grade <= 1) & (
            (reg_now & (t >= 2016) & (t <= 2021) & (rng.random(H) < 0.35))
            | (rng.random(H) < 0.02 + 0.05 * (pc_true > 2 * e.line)))
        self.grade = np.where(renovate, np.where(rng.random(H) < 0.7, 3, 2), self.grade)
        self.structure = np.where(renovate, np.maximum(self.structure, 3), self.structure)
        decay = (self.grade >= 2) & (self.structure <= 2) & (rng.random(H) < 0.01)
        self.grade = np.where(decay, self.grade - 1, self.grade)
        # sanitation, fuel, assets follow income with a lag
        if t >= 2018:
            up = rng.random(H) < np.where(reg_now, 0.25, 0.12)
            self.toilet = np.where(up, np.minimum(self.toilet + 1 + (rng.random(H) < 0.4), 3), self.toilet)
        ratio = np.log(np.maximum(self.prev_pc_true if self.prev_pc_true is not None else pc_true, 300) / e.line)
        switch = (self.fuel == 0) & (rng.random(H) < _sigmoid(-3.0 + 0.8 * ratio + 0.3 * a + 0.15 * (t - 2016)))
        self.fuel = np.where(switch, np.where(rng.random(H) < 0.8, 3, 2), self.fuel)
        self._assets(t, ratio, act, agef, land)
        # big medical bills and disasters are met by selling livestock and borrowing
        strain = (medical > 0.3 * np.maximum(total, 1000)) | (loss > 0.3 * np.maximum(total, 1000))
        self.livestock = np.where(strain | affected, self.livestock * rng.uniform(0.3, 0.8, H), self.livestock)
        self.livestock = np.clip(self.livestock * rng.lognormal(0.01, 0.12, H), 0, 200)
        self.loan_until = np.where(strain & (rng.random(H) < 0.5), t + 2, self.loan_until).astype(np.int16)
        self.loan_until = np.where(self.business & (rng.random(H) < 0.15), t + 1, self.loan_until).astype(np.int16)
        self.coop |= rng.random(H) < 0.01

        self.prev_total, self.prev_pc_rec, self.prev_pc_true = total, pc_rec, pc_true
        if self.trace is not None:   # diagnostics only (calibration): latent quantities, never written
            self.trace[t] = {"wage": wage, "migrant_wage": migrant_wage, "local_wage": local_wage, "pwj": pwj_wage,
                             "farm_business": farm_business, "crop": crop_net, "stock": stock_net, "ind": ind_eff,
                             "biz": biz, "micro": micro_eff, "loss": loss, "prop": prop, "transfers": transfers,
                             "dibao": dibao_amt, "tekun": tekun_amt, "pension": pension, "remit": remit,
                             "pc_true": pc_true, "pc_rec": pc_rec, "n": n, "status": self.status.copy(),
                             "live": live, "a": a, "medical": medical, "affected": affected}
        if not write:
            return None

        # ---- the household and member records of the year ----
        will = np.clip(np.round(3 + 0.85 * a + self.official_bias + rng.normal(0, 0.7, H) - 0.3 * self.dibao), 1, 5)
        # food and clothing: insecure only in deep poverty without the allowances (and now and then among the poor)
        deep = (pc_true < 0.25 * e.line) & ~self.dibao & ~self.tekun
        food_true = ~((deep & (rng.random(H) < 0.6)) | ((pc_true < e.line) & (rng.random(H) < 0.02)))
        cloth_true = ~((deep & (rng.random(H) < 0.5)) | ((pc_true < e.line) & (rng.random(H) < 0.02)))
        out_school = out_of_school
        water_src = self._water(t)
        shortage = np.where(water_src == 5, np.minimum(self.shortage_base, rng.poisson(0.1, H)), self.shortage_base)
        shortage = np.clip(shortage + (rng.random(H) < 0.03) * rng.integers(1, 3, H), 0, 12)
        safe_water = ((water_src >= 3) & (shortage <= 1)) | ((water_src == 5) & (shortage <= 2))
        elec = np.where((self.terrain == 2) & (t < self.tree.grid_year[self.vil]) & (road > 3), 1, 2)
        elec = np.where((t < 2018) & self.off_grid, 0, elec)   # off-grid hamlets until the 2018 grid upgrade
        area = np.clip(np.round((22.0 * n + 30 + 25 * (self.structure >= 3)) * self.area_u
                                * np.where(self.relocated_year > 0, 0.7, 1.0), 0), 12, 600)
        loan = (self.loan_until >= t) | micro_rec
        hh_state = {
            "n": n, "head_slot": hs, "pc_rec": pc_rec, "rec": rec, "live": live, "medical": medical,
            "schooling": schooling, "insured": insured, "act": act,
            "food": food_true, "cloth": cloth_true, "out_school": out_school, "safe_water": safe_water,
            "water_src": water_src, "shortage": shortage, "elec": elec, "area": area, "road": road, "land": land,
            "affected": affected, "loss": loss, "will": will, "loan": loan, "industry": industry_rec,
            "micro": micro_rec, "train": train.any(axis=1), "edu_sub": edu_sub_on, "med_assist": med_assist,
            "pc_true": pc_true,
        }
        mb_state = {
            "age": age, "health": health, "grade": grade, "ability": ability, "in_school": in_school,
            "school": school_now, "months": months, "local": local, "insured": insured,
            "pwj_member": self._pwj_member(pwj_cand), "farmland": land,
        }
        return self._records(k, t, e, hh_state, mb_state)

    # ---- pieces of the year ---------------------------------------------------------------------------------
    def _road(self, t: int) -> np.ndarray:
        road = self.road0 * np.where(t >= self.tree.road_year[self.vil], 0.35, 1.0)
        return np.where((self.relocated_year > 0) & (self.relocated_year <= t), 0.3 + 0.0 * road, road)

    def _town_km(self, t: int) -> np.ndarray:
        return np.where((self.relocated_year > 0) & (self.relocated_year <= t), self.town_km0 * 0.3, self.town_km0)

    def _land(self, t: int) -> np.ndarray:
        size0 = np.maximum(self.present0.sum(axis=1), 2)
        land = np.round(self.land_pc * size0, 1)
        return np.where((self.relocated_year > 0) & (self.relocated_year <= t), np.round(land * 0.4, 1), land)

    def _water(self, t: int) -> np.ndarray:
        tap = ((t >= self.tree.tap_year[self.vil]) & (self.tap_u < 0.92)) | \
            ((self.relocated_year > 0) & (self.relocated_year <= t))
        return np.where(tap, 5, self.water0)

    def _safe_water(self, t: int) -> np.ndarray:
        src = self._water(t)
        return (src >= 3) & ((src == 5) | (self.shortage_base <= 1))

    def _pwj_member(self, cand: np.ndarray) -> np.ndarray:
        first = np.where(cand.any(axis=1), cand.argmax(axis=1), -1)
        out = np.zeros(cand.shape, bool)
        sel = self.pwj & (first >= 0)
        out[np.flatnonzero(sel), first[sel]] = True
        return out

    def _assets(self, t: int, ratio: np.ndarray, act: np.ndarray, agef: np.ndarray, land: np.ndarray) -> None:
        young = (act & (agef >= 16) & (agef <= 50)).any(axis=1)
        tt = t - 2016
        zero = np.zeros(self.H)
        base = np.stack([
            zero + 0.6 + 0.02 * tt,                         # motorcycle / tricycle
            zero - 3.2 + 0.1 * tt,                          # car
            -2.6 + 0.15 * np.minimum(land, 15) + 0.03 * tt,  # farm machinery
            zero + 0.15 * tt,                               # fridge
            zero - 0.3 + 0.14 * tt,                         # washing machine
            zero + 2.2 + 0.05 * tt,                         # television
            -0.6 + 0.35 * tt + 1.0 * young,                 # smartphone
        ], axis=1)
        slope = np.array([0.6, 1.3, 0.6, 1.0, 1.0, 0.6, 0.8])
        p = _sigmoid(base + slope[None, :] * ratio[:, None] + 0.3 * self.a[:, None])
        if t == self.t0:
            self.assets = self.asset_u < p
        else:
            u = self.rng.random(self.assets.shape)
            acquire = ~self.assets & (u < 0.3 * p)
            lose = self.assets & (u > 0.985)
            self.assets = (self.assets & ~lose) | acquire

    def _registry(self, t, e, poor, pc_rec, hardship, visible, exit_ok, live) -> None:
        """Identification, exit and monitoring decisions of year `t` on the recorded income."""
        proc, rng, H = self.proc, self.rng, self.H
        st = self.status
        u = rng.random(H)
        first_id = t == proc.registry_start_year
        if t <= proc.last_registration_year and t >= proc.registry_start_year:
            base = proc.find_prob_first if first_id else proc.find_prob_yearly
            road = self._road(t)
            logit = _logit(base) + 0.5 * (self.poor_v - 0.3) + 0.6 * (visible - 0.4) - 0.08 * (road - 2)
            p_find = _sigmoid(logit)
            find = poor & ((st == NOT_REG) | ((st == EXITED) & (u < 0.85))) & (u < p_find)
            near = ~poor & (pc_rec < 1.5 * e.line) & (st == NOT_REG)
            p_incl = proc.inclusion_prob * np.where(visible, 1.0, 0.25) * (1.5 if first_id else 0.5)
            include = near & (rng.random(H) < p_incl)
            new = (find | include) & live
            self.poor_since = np.where(new & (self.poor_since == 0), t, self.poor_since).astype(np.int16)
            st = np.where(new, REG, st)
        # exit of registered households recorded above the line (not in their first year)
        p_exit = proc.exit_prob_campaign if t in proc.exit_campaign_years else proc.exit_prob
        p_exit_h = p_exit * np.where(exit_ok, 1.0, 0.3)
        can_exit = (self.status == REG) & (st == REG) & ~poor & (self.poor_since < t)
        exits = can_exit & (rng.random(H) < p_exit_h)
        if t == proc.all_exited_year:   # the declared end of absolute poverty: everyone left is lifted out
            exits |= st == REG
        st = np.where(exits, EXITED, st)
        self.exit_year = np.where(exits, t, self.exit_year).astype(np.int16)
        if t >= proc.monitoring_start_year:
            mline = e.mline
            det = proc.monitor_detect_prob
            u2 = rng.random(H)
            low = pc_rec < mline
            # leaving monitoring: income stably above the monitoring line, no hardship this year
            # leaving monitoring: above the poverty line, no new hardship, and either above the monitoring
            # line or monitored for two years or more (the risk is judged resolved)
            settled = ~low | (t - self.mon_since >= 2)
            leave = (st == MON) & (self.mon_since < t) & ~poor & settled & ~hardship & (u2 < 0.6)
            st = np.where(leave, np.where(self.exit_year > 0, EXITED, NOT_REG), st)
            self.mon_group = np.where(leave, -1, self.mon_group).astype(np.int8)
            # below the poverty line or hit by hardship: usually caught; merely under the monitoring line: less often
            p_ex = det * np.where(poor | hardship, 1.0, 0.08)
            unstable = (st == EXITED) & (low | hardship) & ~leave & (u2 < p_ex)
            near_poor = (st == NOT_REG) & low & ~leave & (u2 < det * np.where(poor, 0.8, 0.06))
            sudden = (st == NOT_REG) & hardship & ~near_poor & ~leave & (u2 < det * 0.8)
            for mask, grp in ((unstable, 0), (near_poor, 1), (sudden, 2)):
                mask = mask & live
                self.mon_group = np.where(mask, grp, self.mon_group).astype(np.int8)
                self.mon_since = np.where(mask, t, self.mon_since).astype(np.int16)
                st = np.where(mask, MON, st)
        self.status = np.where(live, st, self.status).astype(np.int8)

    # ---- records -------------------------------------------------------------------------------------------
    def _records(self, k: int, t: int, e: _Year, h: dict, m: dict):
        """Build the year's household and member tables (with recording noise, gaps, slips, impossible values)."""
        rng, H, meas = self.rng, self.H, self.meas
        live = h["live"]
        keep = np.flatnonzero(live)
        act = h["act"]
        n = h["n"]
        rows = np.arange(H)

        cols: dict[str, np.ndarray] = {}
        mask: dict[str, np.ndarray] = {}

        def flip(x: np.ndarray, p: float) -> np.ndarray:
            return np.where(rng.random(len(x)) < p, ~x, x)

        size_rec = n.astype(np.int64).copy()
        cols["household_size"] = size_rec
        cols["ethnic_minority"] = self.minority_hh
        cols["terrain"] = self.terrain.astype(np.int64)
        for name, val in h["rec"].items():
            cols[name] = val.astype(float)
        cols["net_income_per_capita"] = h["pc_rec"]
        cols["medical_spending"] = np.round(h["medical"] * rng.lognormal(0, 0.15, H))
        cols["schooling_spending"] = np.round(h["schooling"] * rng.lognormal(0, 0.15, H))
        cols["food_secure"] = flip(h["food"], 0.015)
        cols["clothing_secure"] = flip(h["cloth"], 0.015)
        cols["compulsory_education_secured"] = flip(~h["out_school"], 0.01)
        ins = h["insured"] & act
        cols["medical_insurance_share"] = np.round(ins.sum(axis=1) / np.maximum(n, 1), 2)
        grade_rec = np.clip(self.grade + np.where(rng.random(H) < 0.05, rng.choice([-1, 1], H), 0), 0, 3)
        cols["housing_safety_grade"] = grade_rec
        cols["safe_drinking_water"] = flip(h["safe_water"], 0.02)
        cols["housing_area_m2"] = h["area"].astype(float)
        cols["house_structure"] = self.structure.astype(np.int64)
        cols["drinking_water_source"] = h["water_src"].astype(np.int64)
        cols["water_shortage_months"] = h["shortage"].astype(np.int64)
        cols["electricity"] = h["elec"].astype(np.int64)
        cols["cooking_fuel"] = self.fuel.astype(np.int64)
        cols["toilet"] = self.toilet.astype(np.int64)
        cols["road_distance_km"] = np.round(np.clip(h["road"] * rng.lognormal(0, 0.08, H), 0, 100), 1)
        cols["township_distance_km"] = np.round(np.clip(self._town_km(t), 0, 300), 1)
        cols["cultivated_land_mu"] = np.clip(h["land"], 0, 1000)
        cols["irrigated_share"] = self.irrigated
        cols["forest_land_mu"] = self.forest
        cols["livestock_units"] = np.round(self.livestock, 1)
        cols["cash_crops"] = self.cash_crops.copy()
        for j, name in enumerate(ASSETS):
            cols[name] = self.assets[:, j].copy()
        cols["has_loan"] = h["loan"]
        cols["cooperative_member"] = self.coop.copy()
        cols["dibao"] = self.dibao.copy()
        cols["tekun_support"] = self.tekun.copy()
        cols["relocated"] = (self.relocated_year > 0) & (self.relocated_year <= t)
        cols["industry_support"] = h["industry"]
        cols["skills_training"] = h["train"]
        cols["microcredit"] = h["micro"]
        cols["public_welfare_job"] = self.pwj.copy()
        cols["education_subsidy"] = h["edu_sub"]
        cols["medical_assistance"] = h["med_assist"]
        cols["disaster_affected"] = h["affected"]
        cols["disaster_loss_yuan"] = np.round(h["loss"] * h["affected"] * rng.lognormal(0, 0.25, H))
        cols["self_development_will"] = h["will"].astype(np.int64)
        cols["registry_status"] = self.status.astype(np.int64)
        cols["poor_since_year"] = self.poor_since.astype(np.int64)
        mask["poor_since_year"] = self.poor_since == 0
        cols["exit_year"] = self.exit_year.astype(np.int64)
        mask["exit_year"] = self.exit_year == 0
        cols["monitoring_group"] = self.mon_group.astype(np.int64)

        # ---- members of the year ----
        hs = h["head_slot"]
        rel_now = np.where(np.arange(K_SLOTS)[None, :] == hs[:, None], R_HEAD, self.rel)
        rel_now = np.where((rel_now == R_HEAD) & (np.arange(K_SLOTS)[None, :] != hs[:, None]), R_CHILD, rel_now)
        m_ok = act & live[:, None]
        flat = np.flatnonzero(m_ok.ravel())
        hh_of = flat // K_SLOTS
        age = m["age"].ravel()[flat].astype(np.int64)
        agef = age.astype(float)
        ability = m["ability"].ravel()[flat]
        months = m["months"].ravel()[flat].astype(np.int64)
        in_school = m["in_school"].ravel()[flat]
        local = m["local"].ravel()[flat] | m["pwj_member"].ravel()[flat]
        relm = rel_now.ravel()[flat]
        is_head_m = relm == R_HEAD
        biz = self.business[hh_of] & ((relm == R_HEAD) | (relm == R_SPOUSE)) & (ability >= 1)
        occ = np.select(
            [in_school, agef < 6, months >= 6, local, biz, (ability >= 1) & (agef >= 16) & (h["land"][hh_of] > 0),
             (agef >= 60) & (ability == 0)],
            [4, 6, 2, 1, 3, 0, 5], 6)
        mcols = {
            "member_no": self.member_no.ravel()[flat].astype(np.int64),
            "relation": relm.astype(np.int64),
            "sex": np.where(self.male.ravel()[flat], 1, 0),
            "age": age,
            "schooling_years": m["school"].ravel()[flat].astype(float),
            "in_school": in_school,
            "health": m["health"].ravel()[flat].astype(np.int64),
            "disability_grade": m["grade"].ravel()[flat].astype(np.int64),
            "work_ability": ability.astype(np.int64),
            "migrant_months": months,
            "occupation": occ.astype(np.int64),
            "medical_insured": m["insured"].ravel()[flat],
        }
        mmask: dict[str, np.ndarray] = {}

        # the registry app keeps recorded values inside the schema's ranges (extreme draws are capped)
        for name, vals in cols.items():
            spec = HOUSEHOLD_SPECS[name]
            if spec.kind in ("int", "float") and spec.min is not None:
                cols[name] = np.clip(vals, spec.min, spec.max)
        for name in ("schooling_years", "age", "migrant_months"):
            spec = MEMBER_SPECS[name]
            mcols[name] = np.clip(mcols[name], spec.min, spec.max)

        # ---- data-entry slips (plausible, kept) ----
        slip = rng.random(H) < meas.entry_error_rate
        kind = rng.integers(0, 4, H)
        land = cols["cultivated_land_mu"]
        s0 = slip & (kind == 0) & (land > 0)
        land_slip = np.where(rng.random(H) < 0.5, land * 10, land / 15)      # entered in fen, or in hectares
        cols["cultivated_land_mu"] = np.where(s0 & (land_slip <= 1000), np.round(land_slip, 2), land)
        s1 = slip & (kind == 1)
        which = rng.integers(0, 4, H)
        for j, name in enumerate(("wage_income", "medical_spending", "transfer_income", "housing_area_m2")):
            x = cols[name]
            hi = HOUSEHOLD_SPECS[name].max
            cols[name] = np.where(s1 & (which == j) & (x * 10 <= hi), x * 10, x)   # an extra zero
        s2 = slip & (kind == 2)
        cols["household_size"] = np.where(s2, np.maximum(1, size_rec + rng.choice([-1, 1, 2], H)), size_rec)
        s3 = slip & (kind == 3)
        cols["livestock_units"] = np.where(s3, np.round(cols["livestock_units"] * 10, 1), cols["livestock_units"])
        cols["livestock_units"] = np.clip(cols["livestock_units"], 0, 1000)
        m_slip = rng.random(len(flat)) < meas.entry_error_rate
        m_kind = rng.integers(0, 3, len(flat))
        age_slip = np.clip(age + rng.choice([-10, 10, 1, -1], len(flat)), 0, 120)
        mcols["age"] = np.where(m_slip & (m_kind == 0), age_slip, age)
        mcols["sex"] = np.where(m_slip & (m_kind == 1) & ~is_head_m, 1 - mcols["sex"], mcols["sex"])
        sy = mcols["schooling_years"]
        mcols["schooling_years"] = np.where(m_slip & (m_kind == 2) & (sy >= 1) & (sy <= 2.2), sy * 10, sy)

        # ---- missing optional fields ----
        sloppy = rng.lognormal(-0.32, 0.8, H)   # enumerator-level carelessness (mean about 1)
        for name, w in _MISSING_WEIGHT_HH.items():
            p = np.minimum(meas.missing_rate * w * sloppy, 0.9)
            miss = rng.random(H) < p
            mask[name] = mask.get(name, np.zeros(H, bool)) | miss
        m_sloppy = sloppy[hh_of]
        for name, w in _MISSING_WEIGHT_MB.items():
            miss = rng.random(len(flat)) < np.minimum(meas.missing_rate * w * m_sloppy, 0.9)
            if name in ("name", "id_card_no"):
                miss &= ~is_head_m
            mmask[name] = miss

        # ---- impossible values (rejected by validation) ----
        invalid = live & (rng.random(H) < meas.invalid_rate)
        inv_kind = rng.integers(0, len(INVALID_KINDS), H)
        inv_idx = np.flatnonzero(invalid)
        str_override: dict[str, dict[int, str]] = {"house_structure": {}, "housing_safety_grade": {}}
        m_sex_override: dict[int, str] = {}
        head_pos = np.full(H, -1, np.int64)
        head_pos[hh_of[is_head_m]] = np.flatnonzero(is_head_m)
        for i in inv_idx:
            kd = INVALID_KINDS[inv_kind[i]]
            if kd == "member_age_999" and head_pos[i] >= 0:
                mcols["age"][head_pos[i]] = 999
                mmask.setdefault("age", np.zeros(len(flat), bool))
            elif kd == "member_sex_typo" and head_pos[i] >= 0:
                m_sex_override[int(head_pos[i])] = "male"
            elif kd == "negative_wage":
                cols["wage_income"][i] = -abs(cols["wage_income"][i]) - 100.0
                mask["wage_income"][i] = False
            elif kd == "structure_typo":
                str_override["house_structure"][i] = "brick-concrete"
                mask["house_structure"][i] = False
            elif kd == "grade_E":
                str_override["housing_safety_grade"][i] = "E"
                mask["housing_safety_grade"][i] = False
            elif kd == "shortage_13_months":
                cols["water_shortage_months"][i] = 13
                mask["water_shortage_months"][i] = False
            else:  # insured share above 1 (also the fallback of a member kind without a head)
                cols["medical_insurance_share"][i] = 1.25
                mask["medical_insurance_share"][i] = False

        # ---- build the Arrow tables (only households still living in the village) ----
        take = pa.array(keep)
        hh_arrays = {}
        cat_of = {"terrain": TERRAINS, "housing_safety_grade": GRADES, "house_structure": STRUCTURES,
                  "drinking_water_source": WATER, "electricity": ELECTRICITY, "cooking_fuel": FUELS,
                  "toilet": TOILETS, "registry_status": STATUS, "monitoring_group": MON_GROUPS}
        head_flat = keep * K_SLOTS + hs[keep]
        head_pos_in_pii = pa.array(self.pos_of_slot[head_flat])
        official = self.official_arr.take(take)
        off_null = self.status[keep] == NOT_REG
        for spec in HOUSEHOLD_COLUMNS:
            name = spec.name
            if name == "household_id":
                arr = self.hid_arr.take(take)
            elif name == "year":
                arr = pa.array(np.full(len(keep), t, np.int32))
            elif name == "village_code":
                arr = self.vcode_arr.take(take)
            elif name == "head_name":
                arr = self.name_arr.take(head_pos_in_pii)
            elif name == "id_card_no":
                arr = self.id_arr.take(head_pos_in_pii)
            elif name == "phone":
                arr = self.phone_arr.take(take)
            elif name == "responsible_official":
                arr = _with_nulls(official, off_null | mask.get(name, np.zeros(H, bool))[keep])
            else:
                vals = cols[name][keep]
                miss = mask.get(name, np.zeros(H, bool))[keep]
                if name in cat_of:
                    codes = np.where(miss, -1, vals).astype(np.int64)
                    arr = _cat(codes, cat_of[name])
                    over = str_override.get(name)
                    if over:
                        arr = _override_strings(arr, {int(np.searchsorted(keep, i)): s for i, s in over.items()})
                else:
                    arr = _typed(vals, miss, spec)
            hh_arrays[name] = arr
        hh_table = pa.Table.from_pydict(hh_arrays, schema=HOUSEHOLD_SCHEMA)

        mb_arrays = {}
        pii_pos = pa.array(self.pos_of_slot[flat])
        hid_m = self.hid_arr.take(pa.array(hh_of))
        mcat = {"relation": RELATIONS, "sex": ("F", "M"), "health": HEALTH, "work_ability": ABILITY,
                "occupation": OCCUPATIONS}
        for spec in MEMBER_COLUMNS:
            name = spec.name
            if name == "household_id":
                arr = hid_m
            elif name == "year":
                arr = pa.array(np.full(len(flat), t, np.int32))
            elif name == "name":
                arr = _with_nulls(self.name_arr.take(pii_pos), mmask["name"])
            elif name == "id_card_no":
                arr = _with_nulls(self.id_arr.take(pii_pos), mmask["id_card_no"])
            elif name in mcat:
                miss = mmask.get(name, np.zeros(len(flat), bool))
                arr = _cat(np.where(miss, -1, mcols[name]), mcat[name])
                if name == "sex" and m_sex_override:
                    arr = _override_strings(arr, m_sex_override)
            else:
                arr = _typed(mcols[name], mmask.get(name, np.zeros(len(flat), bool)), spec)
            mb_arrays[name] = arr
        mb_table = pa.Table.from_pydict(mb_arrays, schema=MEMBER_SCHEMA)

        stats = {
            "household_id": self.household_id[keep],
            "pc_rec": np.where(mask["net_income_per_capita"][keep] | invalid[keep], np.nan, h["pc_rec"][keep]),
            "pc_true": h["pc_true"][keep],
            "status": self.status[keep].copy(),
            "poor_since": self.poor_since[keep].copy(),
            "exit_year": self.exit_year[keep].copy(),
            "invalid": invalid[keep],
            "index": keep,
        }
        return hh_table, mb_table, stats


# -- Arrow helpers ---------------------------------------------------------------------------------------------

_ARROW_KIND = {"str": pa.string(), "category": pa.string(), "int": pa.int32(), "float": pa.float64(),
               "bool": pa.bool_()}
HOUSEHOLD_SCHEMA = pa.schema([pa.field(s.name, _ARROW_KIND[s.kind], nullable=True) for s in HOUSEHOLD_COLUMNS])
MEMBER_SCHEMA = pa.schema([pa.field(s.name, _ARROW_KIND[s.kind], nullable=True) for s in MEMBER_COLUMNS])


def _typed(values: np.ndarray, miss: np.ndarray, spec: ColumnSpec) -> pa.Array:
    if spec.kind == "int":
        return pa.array(np.asarray(values).astype(np.int32), pa.int32(), mask=miss)
    if spec.kind == "float":
        return pa.array(np.asarray(values, dtype=np.float64), pa.float64(), mask=miss)
    if spec.kind == "bool":
        return pa.array(np.asarray(values, dtype=bool), pa.bool_(), mask=miss)
    raise TypeError(spec.kind)


def _with_nulls(arr: pa.Array, miss: np.ndarray) -> pa.Array:
    if not miss.any():
        return arr
    return pc.if_else(pa.array(miss), pa.nulls(len(arr), arr.type), arr)


def _override_strings(arr: pa.Array, overrides: dict[int, str]) -> pa.Array:
    """`arr` with the values at the given positions replaced (vectorised per distinct value)."""
    for value in sorted(set(overrides.values())):
        where = np.zeros(len(arr), bool)
        where[[i for i, s in overrides.items() if s == value]] = True
        arr = pc.if_else(pa.array(where), pa.scalar(value, pa.string()), arr)
    return arr


# -- rates measured on the written panel -------------------------------------------------------------------------


class _Rates:
    """Accumulates the manifest's per-year rates over chunks (definitions as in `features.labels`)."""

    def __init__(self, years: list[int], params: Params):
        self.years = years
        self.lines = {y: params.lines.poverty_line_for(y) for y in years}
        self.mult = params.features.relapse.near_line_multiplier
        self.c = {y: dict.fromkeys(("households", "income_known", "poor", "true_poor", "registered", "exited",
                                    "monitored", "reg_prev", "exits", "eligible", "relapsed", "invalid",
                                    "poor_registered"), 0) for y in years}

    def add(self, chunk_stats: dict[int, dict], n_households: int) -> None:
        """Add one chunk: `chunk_stats[year]` holds arrays over the chunk's live households (``index``)."""
        years = [y for y in self.years if y in chunk_stats]
        if not years:
            return
        N, Y = n_households, len(years)
        pc = np.full((N, Y), np.nan)
        status = np.full((N, Y), -1)
        since = np.zeros((N, Y))
        exit_y = np.zeros((N, Y))
        for j, y in enumerate(years):
            s = chunk_stats[y]
            r = s["index"]
            pc[r, j] = s["pc_rec"]
            status[r, j] = s["status"]
            since[r, j] = s["poor_since"]
            exit_y[r, j] = s["exit_year"]
            c = self.c[y]
            c["households"] += len(r)
            c["invalid"] += int(s["invalid"].sum())
            c["true_poor"] += int((s["pc_true"] < self.lines[y]).sum())
        lines = np.array([self.lines[y] for y in years])
        known = ~np.isnan(pc)
        poor = known & (pc < lines[None, :])
        ever_before = np.zeros((N, Y), bool)
        if Y > 1:
            ever_before[:, 1:] = np.maximum.accumulate(poor, axis=1)[:, :-1]
        registered_before = (since > 0) & (since <= np.array(years)[None, :])
        near = known & (pc < self.mult * lines[None, :])
        eligible = known & ~poor & (registered_before | ever_before | near)
        for j, y in enumerate(years):
            c = self.c[y]
            c["income_known"] += int(known[:, j].sum())
            c["poor"] += int(poor[:, j].sum())
            c["registered"] += int((status[:, j] == REG).sum())
            c["exited"] += int((status[:, j] == EXITED).sum())
            c["monitored"] += int((status[:, j] == MON).sum())
            c["poor_registered"] += int((poor[:, j] & np.isin(status[:, j], (REG, MON))).sum())
            if j > 0 and years[j - 1] == y - 1:
                was = status[:, j - 1] == REG
                c["reg_prev"] += int(was.sum())
                c["exits"] += int((was & (status[:, j] == EXITED) & (exit_y[:, j] == y)).sum())
            if j + 1 < Y and years[j + 1] == y + 1:
                nxt = known[:, j + 1]
                el = eligible[:, j] & nxt
                c["eligible"] += int(el.sum())
                c["relapsed"] += int((el & poor[:, j + 1]).sum())

    def table(self) -> dict:
        out = {}
        for y in self.years:
            c = self.c[y]
            def rate(a, b):
                return round(c[a] / c[b], 4) if c[b] else None
            out[str(y)] = {
                "households": c["households"],
                "poverty_rate": rate("poor", "income_known"),
                "true_poverty_rate": rate("true_poor", "households"),
                "registered_share": rate("registered", "households"),
                "exited_share": rate("exited", "households"),
                "monitored_share": rate("monitored", "households"),
                "coverage_of_poor": rate("poor_registered", "poor"),
                "exit_rate": rate("exits", "reg_prev"),
                "relapse_eligible": c["eligible"],
                "relapse_rate": rate("relapsed", "eligible"),
                "invalid_share": rate("invalid", "households"),
                "invalid_records": c["invalid"],
            }
        return out


# -- public API ----------------------------------------------------------------------------------------------------


def _sim_years(years: list[int], params: Params) -> list[int]:
    """Years simulated: from the registry start (if its lines exist) to the last written year."""
    first = min(years)
    start = min(first, params.synth.process.registry_start_year)
    while start < first:
        try:
            for y in range(start, first):
                params.lines.poverty_line_for(y)
            break
        except ConfigError:
            start += 1
    return list(range(start, max(years) + 1))


def generate_panel(out_dir: Path, *, households: int, years: list[int], seed: int, params: Params,
                   chunk_households: int | None = None, progress: bool = True) -> dict:
    """Simulate and write a synthetic registry panel; return its manifest (also written to manifest.json).

    Parameters
    ----------
    out_dir: folder to write (created; existing ``households/``, ``members/`` and files of a
        previous panel are replaced).
    households: households in the province (all present in the first written year; a few dissolve later).
    years: waves to write (sorted, unique; the years from ``synth.process.registry_start_year`` to the
        first wave are simulated but not written). Every simulated year needs a poverty line.
    seed: random seed; with the same `chunk_households` the files are byte-identical.
    params: project parameters (`lines`, `synth`, `features.relapse`).
    chunk_households: households simulated at once (whole villages; default ``synth.chunk_households``).
    progress: show a tqdm bar over chunks.

    Returns the manifest: generator version, arguments, parameters used, row counts and the
    measured rates by year (poverty rate, registered share, exit rate, relapse rate among
    eligible households, share of invalid records, ...).
    """
    from tqdm.auto import tqdm

    if households <= 0:
        raise DataError(f"households must be positive, got {households}")
    years = sorted({int(y) for y in years})
    if not years:
        raise DataError("no year to generate")
    chunk = int(chunk_households or params.synth.chunk_households)
    if chunk <= 0:
        raise DataError(f"chunk_households must be positive, got {chunk}")
    sim_years = _sim_years(years, params)
    for y in sim_years:
        params.lines.poverty_line_for(y)   # raises ConfigError naming the missing year
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("households", "members"):
        if (out / name).exists():
            shutil.rmtree(out / name)
    for y in years:
        (out / "households" / f"year={y}").mkdir(parents=True)
        (out / "members" / f"year={y}").mkdir(parents=True)

    tree = build_region_tree(households, params.synth.households_per_village, seed, params)
    pq.write_table(pa.Table.from_pandas(tree.frame, preserve_index=False), out / "regions.parquet",
                   compression="zstd")
    env = _years_env(sim_years, params, seed)
    chunks = village_chunks(tree.sizes, chunk)
    rates = _Rates(years, params)
    rows = {"households": 0, "members": 0, "regions": len(tree.frame)}
    written = set(years)
    bar = tqdm(total=len(chunks), desc="synth chunks", unit="chunk", disable=not progress)
    for ci, (v_lo, v_hi) in enumerate(chunks):
        sim = _Chunk(tree, v_lo, v_hi, sim_years, params, seed, ci, first_written=years[0])
        stats = {}
        for y, hh, mb, st in sim.run(env, written):
            pq.write_table(hh, out / "households" / f"year={y}" / f"part-{ci:05d}.parquet", compression="zstd")
            pq.write_table(mb, out / "members" / f"year={y}" / f"part-{ci:05d}.parquet", compression="zstd")
            rows["households"] += hh.num_rows
            rows["members"] += mb.num_rows
            stats[y] = st
        rates.add(stats, sim.H)
        del sim, stats
        bar.update(1)
    bar.close()

    by_year = rates.table()
    n_invalid = sum(v["invalid_records"] for v in by_year.values())
    manifest = {
        "generator": "features.sources.synthetic",
        "version": GENERATOR_VERSION,
        "households": int(households),
        "years": f"{years[0]}-{years[-1]}" if years == list(range(years[0], years[-1] + 1)) else years,
        "year_list": years,
        "simulated_years": [sim_years[0], sim_years[-1]],
        "seed": int(seed),
        "chunk_households": chunk,
        "chunks": len(chunks),
        "villages": tree.n_villages,
        "counties": tree.n_counties,
        "rows": rows,
        "invalid_records": n_invalid,
        "rates_by_year": by_year,
        "params": {
            "lines": params.lines.model_dump(mode="json"),
            "synth": params.synth.model_dump(mode="json"),
            "relapse_near_line_multiplier": params.features.relapse.near_line_multiplier,
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def read_panel(path: Path, years: list[int] | None = None, columns: Iterable[str] | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read a panel written by `generate_panel`: raw (unvalidated) households, members and regions.

    `years` keeps only those waves (pushed down to the partitions). `columns` keeps only those
    columns in each table where present (the keys ``household_id``, ``year`` and, for members,
    ``member_no`` are always kept). Validate with `features.validation.validate_records`.
    """
    root = Path(path)
    columns = list(columns) if columns is not None else None
    if not (root / "households").is_dir() or not (root / "members").is_dir():
        raise DataError(f"{root}: not a synthetic panel (no households/ or members/ folder)")

    def one(table: str, keys: tuple[str, ...]) -> pd.DataFrame:
        dataset = ds.dataset(root / table, format="parquet", partitioning="hive")
        flt = ds.field("year").isin([int(y) for y in years]) if years is not None else None
        cols = None
        if columns is not None:
            wanted = list(keys) + [c for c in columns if c not in keys]
            cols = [c for c in wanted if c in dataset.schema.names]
        frame = dataset.to_table(filter=flt, columns=cols).to_pandas()
        if "year" in frame.columns:
            frame["year"] = frame["year"].astype("int64")
        sort = [k for k in keys if k in frame.columns]
        return frame.sort_values(sort, kind="stable").reset_index(drop=True)

    households = one("households", ("household_id", "year"))
    members = one("members", ("household_id", "year", "member_no"))
    regions = pd.read_parquet(root / "regions.parquet") if (root / "regions.parquet").exists() else \
        pd.DataFrame(columns=[c.name for c in REGION_COLUMNS])
    return households, members, regions


# -- continuing a panel: the next wave(s) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WaveShock:
    """A shock in the last year `continue_panel` simulates; it acts through the process, never on records.

    - `disaster_counties`: 6-digit codes of counties that have a bad disaster year, with county
      severity `disaster_severity` (the process draws U(0.3, 1) for a county's bad year; 1 is the
      worst it knows), every village of them hit (a county-wide flood or drought; in a drawn bad
      year each village is hit with P = 0.03 + 0.55 x severity). Households are then affected and
      their crops, livestock and houses damaged by the process's own rules (section "Income" of
      docs/synthetic_panel.md).
    - `migrant_factor`: the factor on migrant work of that year, as `synth.process.migrant_shocks`
      (2020 was 0.75): migrants lose months or their job, wages and remittances fall.
    """

    disaster_counties: tuple[str, ...] = ()
    disaster_severity: float = 1.0
    migrant_factor: float | None = None

    def __post_init__(self) -> None:
        if not 0.3 <= self.disaster_severity <= 1.0:
            raise DataError(f"disaster severity must be in [0.3, 1] (the process's range), got {self.disaster_severity}")
        if self.migrant_factor is not None and not 0 < self.migrant_factor <= 1.5:
            raise DataError(f"migrant-work factor must be in (0, 1.5], got {self.migrant_factor}")


def panel_params(manifest: dict, params: Params | None = None) -> Params:
    """The parameters a panel was generated with (its manifest), with `params`' lines for later years.

    The manifest's lines win for every year they cover, so the panel's own years are reproduced
    exactly; a year they lack (a continued wave) takes its poverty and monitoring lines from `params`.
    """
    used = manifest.get("params") or {}
    if "lines" not in used or "synth" not in used:
        raise DataError("the panel's manifest.json does not record the parameters it was generated with")
    lines = {k: (dict(v) if isinstance(v, dict) else v) for k, v in used["lines"].items()}
    if params is not None:
        for key in ("poverty_line", "monitoring_line"):
            have = {str(y) for y in lines.get(key, {})}
            extra = {str(y): v for y, v in getattr(params.lines, key).items() if str(y) not in have}
            lines[key] = {**extra, **lines.get(key, {})}
    return Params.model_validate({
        "lines": lines, "synth": used["synth"],
        "features": {"relapse": {"near_line_multiplier": used.get("relapse_near_line_multiplier", 1.5)}},
    })


def _extend_pii(sim: "_Chunk") -> None:
    """Names and ID numbers for members who joined in a continued year (born, married in)."""
    ever = (sim.entry != _NEVER).ravel()
    flat = np.flatnonzero(ever & (sim.pos_of_slot < 0))
    if len(flat) == 0:
        return
    rng = sim.rng
    hh = flat // K_SLOTS
    male = sim.male.ravel()[flat]
    founder = sim.pos_of_slot[hh * K_SLOTS]          # slot 0 always has a name: the family surname is its first character
    family = np.array([str(n)[:1] for n in sim.name_arr.take(pa.array(founder)).to_pylist()])
    sur = np.array(_SURNAMES)
    own = sur[rng.integers(0, len(sur), len(flat))]
    same = np.isin(sim.rel.ravel()[flat], (R_HEAD, R_CHILD, R_GRANDCHILD))
    names = np.char.add(np.where(same, family, own), _given_names(rng, male))
    county = sim.tree.county_code[sim.vil][hh]
    ids = _id_numbers(county, sim.birth_year.ravel()[flat].astype(int), sim.birth_day.ravel()[flat], male, rng)
    sim.pos_of_slot[flat] = len(sim.name_arr) + np.arange(len(flat))
    sim.name_arr = pa.concat_arrays([sim.name_arr, pa.array(names, pa.string())])
    sim.id_arr = pa.concat_arrays([sim.id_arr, pa.array(ids, pa.string())])


def _continue_year(sim: "_Chunk", v_lo: int, v_hi: int, t: int, e: _Year, seed: int, params: Params,
                   forced: dict[int, float] | None) -> tuple[pa.Table, pa.Table]:
    """Simulate year `t` right after the chunk's last simulated year, from its state; return its tables.

    The chunk's own random stream continues (no draw is repeated), county and village shocks come
    from their (seed, county or village, year) generators as in `generate_panel`, and the members'
    lives of year `t` (deaths, births, marriages, illness, disability) are simulated by the same
    code as every other year: `_Chunk._simulate_lives` run over the two-year window (t-1, t).
    """
    hit, sev, weather = _region_shocks(sim.tree, v_lo, v_hi, [t], seed, params, forced=forced)
    sim.hit = np.concatenate([sim.hit, hit], axis=1)
    sim.severity = np.concatenate([sim.severity, sev], axis=1)
    sim.weather = np.concatenate([sim.weather, weather], axis=1)
    Y = len(sim.sim_years)
    serious = np.concatenate([sim.serious, np.zeros((sim.H, K_SLOTS, 1), bool)], axis=2)
    head_slot = np.concatenate([sim.head_slot, np.zeros((sim.H, 1), sim.head_slot.dtype)], axis=1)
    years = list(sim.sim_years) + [t]
    # one step of the life simulation: views of the last two years, so its writes land in the full arrays
    sim.sim_years, sim.serious, sim.head_slot = [t - 1, t], serious[:, :, Y - 1:], head_slot[:, Y - 1:]
    try:
        sim._simulate_lives()
    finally:
        sim.sim_years, sim.serious, sim.head_slot = years, serious, head_slot
    _extend_pii(sim)
    hh, mb, _ = sim._year(Y, t, e, write=True)
    return hh, mb


def continue_panel(panel_dir: Path, *, until_year: int | None = None, params: Params | None = None,
                   shock: WaveShock | None = None, verify: bool = True
                   ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The next wave(s) of a panel written by `generate_panel`: the same households, one more year each.

    Every chunk is re-simulated from the panel's seed, chunk size and recorded parameters (its
    manifest), which reproduces the written waves exactly (with `verify`, the last written wave is
    compared with the files on disk and a difference is an error), then simulated on from its state
    (latent traits, members, registry status, assets, last year's income) through the years after
    the last written one, up to `until_year` (default: one year). Lines for those years come from
    `params` when the manifest lacks them. `shock` applies to the last year only (`WaveShock`).

    Returns the raw (unvalidated) households and members of the new years, as `read_panel` gives
    them, and a dict describing what was done (years, shocked counties and their names, factor).
    """
    root = Path(panel_dir)
    mpath = root / "manifest.json"
    if not mpath.exists():
        raise DataError(f"{root}: not a synthetic panel (no manifest.json)")
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    if manifest.get("generator") != "features.sources.synthetic" or manifest.get("version") != GENERATOR_VERSION:
        raise DataError(f"{root}: written by {manifest.get('generator')} {manifest.get('version')}, not by this "
                        f"generator ({GENERATOR_VERSION}); it cannot be continued exactly")
    p = panel_params(manifest, params)
    years = [int(y) for y in manifest["year_list"]]
    last = years[-1]
    until = last + 1 if until_year is None else int(until_year)
    if until <= last:
        raise DataError(f"the panel already ends in {last}; the next wave is {last + 1} or later (got {until})")
    new_years = list(range(last + 1, until + 1))
    sim_years = _sim_years(years, p)
    if [sim_years[0], sim_years[-1]] != list(manifest.get("simulated_years", [])):
        raise DataError(f"{root}: simulated years {manifest.get('simulated_years')} cannot be reproduced "
                        f"(got {sim_years[0]}-{sim_years[-1]})")
    for y in new_years:
        p.lines.poverty_line_for(y)   # ConfigError naming the missing year
    seed, households = int(manifest["seed"]), int(manifest["households"])
    tree = build_region_tree(households, p.synth.households_per_village, seed, p)
    env = _years_env(sim_years + new_years, p, seed)
    shock = shock or WaveShock()
    forced: dict[int, float] = {}
    if shock.disaster_counties:
        codes = {str(code): int(c) for c, code in zip(tree.county, tree.county_code)}
        unknown = [c for c in shock.disaster_counties if str(c) not in codes]
        if unknown:
            raise DataError(f"unknown county code(s) {', '.join(unknown)}; the panel's counties are "
                            f"{', '.join(sorted(codes))}")
        forced = {codes[str(c)]: shock.disaster_severity for c in shock.disaster_counties}
    if shock.migrant_factor is not None:
        proc = p.synth.process.model_copy(update={"migrant_shocks": {**p.synth.process.migrant_shocks,
                                                                      until: float(shock.migrant_factor)}})
        p_shock = p.model_copy(update={"synth": p.synth.model_copy(update={"process": proc})})
        env[until] = _years_env([until], p_shock, seed)[until]
    chunks = village_chunks(tree.sizes, int(manifest["chunk_households"]))
    if len(chunks) != int(manifest.get("chunks", len(chunks))):
        raise DataError(f"{root}: the manifest's {manifest.get('chunks')} chunks cannot be reproduced")
    hh_tables: list[pa.Table] = []
    mb_tables: list[pa.Table] = []
    for ci, (v_lo, v_hi) in enumerate(chunks):
        sim = _Chunk(tree, v_lo, v_hi, sim_years, p, seed, ci, first_written=years[0])
        last_hh = None
        for y, hh, _mb, _st in sim.run(env, set(years)):
            if y == last:
                last_hh = hh
        on_disk = root / "households" / f"year={last}" / f"part-{ci:05d}.parquet"
        if verify and on_disk.exists() and not pq.read_table(on_disk).equals(last_hh):
            raise DataError(f"{root}: re-simulating chunk {ci} does not reproduce its {last} wave on disk "
                            f"(edited files, or other parameters): it cannot be continued exactly")
        for t in new_years:
            hh, mb = _continue_year(sim, v_lo, v_hi, t, env[t], seed, p, forced if t == until else None)
            hh_tables.append(hh)
            mb_tables.append(mb)
        del sim

    def frame(tables: list[pa.Table], keys: list[str]) -> pd.DataFrame:
        out = pa.concat_tables(tables).to_pandas()
        out["year"] = out["year"].astype("int64")
        return out.sort_values(keys, kind="stable").reset_index(drop=True)

    households_new = frame(hh_tables, ["household_id", "year"])
    members_new = frame(mb_tables, ["household_id", "year", "member_no"])
    names = dict(zip(tree.county_code, tree.frame["county_name"]))
    info = {
        "panel": str(root), "last_panel_year": last, "years": new_years, "seed": seed,
        "households": int(households_new.loc[households_new["year"] == until, "household_id"].nunique()),
        "disaster_counties": {str(c): str(names[str(c)]) for c in shock.disaster_counties},
        "disaster_severity": shock.disaster_severity if shock.disaster_counties else None,
        "migrant_factor": shock.migrant_factor,
        "verified": bool(verify),
    }
    return households_new, members_new, info


def county_codes(panel_dir: Path) -> dict[str, str]:
    """County code -> county name of a panel (from its regions.parquet)."""
    regions = pd.read_parquet(Path(panel_dir) / "regions.parquet", columns=["village_code", "county_name"])
    codes = regions["village_code"].astype(str).str[:6]
    return dict(sorted(zip(codes, regions["county_name"].astype(str))))

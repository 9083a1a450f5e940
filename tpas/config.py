"""Typed project parameters: `params.yaml`, split by stage, loaded once and validated.

A bad value (unknown key, negative count, reversed year range, a year with no poverty
line) stops the load with a `ConfigError` naming the key, e.g.
``params.yaml: synth.households: Input should be greater than 0 (got -5)``.

Environment settings (paths, URIs) are *not* here: see `tpas.settings`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tpas.errors import ConfigError


class _Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class YearRange(_Strict):
    """An inclusive range of survey years, written ``2016-2025`` or ``{first: 2016, last: 2025}``."""

    first: int = Field(ge=1990, le=2100)
    last: int = Field(ge=1990, le=2100)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_year_range(value)
        if isinstance(value, int):
            return {"first": value, "last": value}
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "YearRange":
        if self.first > self.last:
            raise ValueError(f"year range reversed: first year {self.first} is after last year {self.last}")
        return self

    @property
    def years(self) -> list[int]:
        """The years of the range, in order."""
        return list(range(self.first, self.last + 1))

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def parse_year_range(text: str) -> dict[str, int]:
    """Parse ``"2016-2025"`` (or ``"2020"``) into ``{"first": 2016, "last": 2025}``."""
    parts = [p.strip() for p in str(text).split("-")]
    try:
        if len(parts) == 1:
            return {"first": int(parts[0]), "last": int(parts[0])}
        if len(parts) == 2:
            return {"first": int(parts[0]), "last": int(parts[1])}
    except ValueError:
        pass
    raise ValueError(f"expected a year range like 2016-2025, got {text!r}")


class LinesParams(_Strict):
    """Poverty and monitoring lines, yuan per person per year at current prices."""

    poverty_line: dict[int, float] = Field(min_length=1)
    monitoring_line: dict[int, float] = Field(default_factory=dict)
    #: In years without an explicit monitoring line it is this multiple of the poverty line.
    monitoring_multiplier: float = Field(default=1.5, gt=1.0, le=5.0)

    @field_validator("poverty_line", "monitoring_line")
    @classmethod
    def _positive(cls, value: dict[int, float]) -> dict[int, float]:
        for year, amount in value.items():
            if amount <= 0:
                raise ValueError(f"line for {year} must be positive, got {amount}")
        return value

    def poverty_line_for(self, year: int) -> float:
        """The national poverty line in force in `year` (yuan/person/year)."""
        try:
            return float(self.poverty_line[int(year)])
        except KeyError:
            raise ConfigError(
                f"params.yaml: lines.poverty_line has no figure for {year} "
                f"(it covers {min(self.poverty_line)}-{max(self.poverty_line)})"
            ) from None

    def monitoring_line_for(self, year: int) -> float:
        """The relapse-monitoring line of `year` (explicit, else multiplier x poverty line)."""
        if int(year) in self.monitoring_line:
            return float(self.monitoring_line[int(year)])
        return self.monitoring_multiplier * self.poverty_line_for(year)


class MeasurementParams(_Strict):
    """How recorded fields differ from the truth in the synthetic registry."""

    income_noise_sd: float = Field(default=0.22, ge=0, le=2, description="log-scale sd of income recording error")
    missing_rate: float = Field(default=0.03, ge=0, le=0.5, description="share of optional fields left blank")
    entry_error_rate: float = Field(default=0.004, ge=0, le=0.2, description="share of records with a typing slip")
    invalid_rate: float = Field(default=0.0008, ge=0, le=0.1, description="share of records with an impossible value")


class SynthProcessParams(_Strict):
    """Knobs of the synthetic registry process (documented in docs/synthetic_panel.md)."""

    #: First simulated year: the 2014 identification of poor households. Waves before the first
    #: written year are simulated (not written) so that registry histories start here.
    registry_start_year: int = Field(default=2014, ge=1990, le=2100)
    #: Last year in which new poor households are registered as ``registered_poor``.
    last_registration_year: int = Field(default=2020, ge=1990, le=2100)
    #: First year of relapse monitoring (``monitored`` status, monitoring groups).
    monitoring_start_year: int = Field(default=2021, ge=1990, le=2100)
    #: Years of the exit campaign (registered households above the line exit with `exit_prob_campaign`).
    exit_campaign_years: list[int] = Field(default_factory=lambda: [2019, 2020])
    #: At the end of this year every household still registered poor is declared lifted out (as at the end
    #: of 2020); null keeps them registered until their recorded income is above the line.
    all_exited_year: int | None = Field(default=2020, ge=1990, le=2100)
    #: P(a poor household is found) at the first identification, and per later year if still not registered.
    find_prob_first: float = Field(default=0.80, ge=0, le=1)
    find_prob_yearly: float = Field(default=0.45, ge=0, le=1)
    #: P(registered) of a near-line non-poor household with visible hardship (inclusion error).
    inclusion_prob: float = Field(default=0.06, ge=0, le=1)
    #: P(exit) a year of a registered household recorded above the line; in exit-campaign years.
    exit_prob: float = Field(default=0.55, ge=0, le=1)
    exit_prob_campaign: float = Field(default=0.90, ge=0, le=1)
    #: P(monitored) a year of a household that qualifies for relapse monitoring.
    monitor_detect_prob: float = Field(default=0.55, ge=0, le=1)
    #: Nominal growth of wages and prices per year (log scale) up to `growth_break_year`, and after it.
    income_growth: float = Field(default=0.10, ge=-0.2, le=0.5)
    income_growth_after: float = Field(default=0.07, ge=-0.2, le=0.5)
    growth_break_year: int = Field(default=2020, ge=1990, le=2100)
    #: Share of the income-recording error variance that is a persistent household bias (rest is yearly).
    noise_persistence: float = Field(default=0.8, ge=0, le=1)
    #: Year -> factor on migrant work (share migrating and months away), e.g. the 2020 collapse.
    migrant_shocks: dict[int, float] = Field(default_factory=lambda: {2020: 0.75, 2022: 0.9})
    minority_county_share: float = Field(default=0.25, ge=0, le=1)
    poor_village_share: float = Field(default=0.30, ge=0, le=1)
    #: P(a county has a bad disaster year).
    disaster_county_prob: float = Field(default=0.12, ge=0, le=1)
    #: Multiplier on the income effects of programmes (0 switches them off).
    programme_effect: float = Field(default=1.0, ge=0, le=5)

    @field_validator("migrant_shocks")
    @classmethod
    def _shock_factors(cls, value: dict[int, float]) -> dict[int, float]:
        for year, factor in value.items():
            if not 1990 <= int(year) <= 2100:
                raise ValueError(f"migrant shock year {year} outside 1990-2100")
            if not 0 < factor <= 1.5:
                raise ValueError(f"migrant shock factor of {year} must be in (0, 1.5], got {factor}")
        return value

    @field_validator("exit_campaign_years")
    @classmethod
    def _campaign_years(cls, value: list[int]) -> list[int]:
        for year in value:
            if not 1990 <= int(year) <= 2100:
                raise ValueError(f"exit campaign year {year} outside 1990-2100")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> "SynthProcessParams":
        if self.last_registration_year < self.registry_start_year:
            raise ValueError(f"last_registration_year ({self.last_registration_year}) is before "
                             f"registry_start_year ({self.registry_start_year})")
        if self.monitoring_start_year <= self.registry_start_year:
            raise ValueError(f"monitoring_start_year ({self.monitoring_start_year}) must come after "
                             f"registry_start_year ({self.registry_start_year})")
        return self


class SynthParams(_Strict):
    """Defaults of `tpas data synth` (each can be overridden on the command line)."""

    households: int = Field(default=20_000, gt=0)
    years: YearRange = Field(default_factory=lambda: YearRange(first=2016, last=2025))
    seed: int = Field(default=2016, ge=0)
    chunk_households: int = Field(default=50_000, gt=0, description="households simulated per chunk (bounds memory)")
    households_per_village: int = Field(default=250, gt=0)
    measurement: MeasurementParams = Field(default_factory=MeasurementParams)
    process: SynthProcessParams = Field(default_factory=SynthProcessParams)


class RelapseParams(_Strict):
    """Who is eligible for the relapse task and how its label is read."""

    #: Not poor in t, and (registered poor before t, or per-capita income below this multiple of the poverty line).
    near_line_multiplier: float = Field(default=1.5, gt=1.0, le=5.0)


class FeaturesParams(_Strict):
    """Feature building."""

    history_years: int = Field(default=3, ge=1, le=10, description="earlier waves the featurizer looks back over")
    relapse: RelapseParams = Field(default_factory=RelapseParams)


class SplitParams(_Strict):
    """Time- and household-aware train/test split of panel training sets."""

    train_until_year: int = Field(default=2021, ge=1990, le=2100)
    test_from_year: int = Field(default=2022, ge=1990, le=2100)
    #: Share of households held out entirely (never seen in training) in the test years.
    holdout_household_share: float = Field(default=0.2, ge=0, lt=1)
    seed: int = Field(default=7, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "SplitParams":
        if self.test_from_year <= self.train_until_year:
            raise ValueError(
                f"test_from_year ({self.test_from_year}) must come after train_until_year ({self.train_until_year})"
            )
        return self


class DemoParams(_Strict):
    """Size of the `make demo` run."""

    households: int = Field(default=4_000, gt=0)
    years: YearRange = Field(default_factory=lambda: YearRange(first=2016, last=2025))
    seed: int = Field(default=2016, ge=0)


class LightGBMParams(_Strict):
    """LightGBM shape and learning rate. Shallow trees keep exact TreeSHAP fast (see bench/)."""

    num_boost_round: int = Field(default=300, gt=0, le=10000)
    learning_rate: float = Field(default=0.05, gt=0, le=1)
    num_leaves: int = Field(default=31, ge=2, le=1024)
    max_depth: int = Field(default=6, ge=-1, le=64)
    min_child_samples: int = Field(default=40, ge=1)
    feature_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_fraction: float = Field(default=0.8, gt=0, le=1)
    bagging_freq: int = Field(default=1, ge=0)
    lambda_l2: float = Field(default=1.0, ge=0)
    min_gain_to_split: float = Field(default=0.0, ge=0)


#: The tasks a per-task setting may name (features.build.TASKS; not imported: config loads first).
TASK_NAMES: tuple[str, ...] = ("poverty", "relapse", "idb-level")


class TrainParams(_Strict):
    """Model training."""

    #: The registry default LightGBM settings, used by every task unless `lightgbm_by_task` says otherwise.
    lightgbm: LightGBMParams = Field(default_factory=LightGBMParams)
    #: Task -> LightGBM settings merged over `lightgbm`: only the keys written for the task change
    #: (e.g. ``idb-level: {learning_rate: 0.02}``); a tuned best-params file still overrides both.
    lightgbm_by_task: dict[str, LightGBMParams] = Field(default_factory=dict)
    #: Multiclass (idb-level) fits only: sample weights per level, ``balanced`` = n / (k * n_level)
    #: raised to `class_weight_power` (1 fully balanced, 0 none). Raises the F1 of the rare levels.
    class_weight: str = Field(default="none", pattern="^(none|balanced)$")
    class_weight_power: float = Field(default=1.0, ge=0, le=1)
    #: Multiclass fits only: per-level probability multipliers that maximise macro-F1, chosen on
    #: out-of-fold predictions (``oof``; nested inside the CV, `class_multiplier_folds` inner folds), or ``none``.
    class_multipliers: str = Field(default="none", pattern="^(none|oof)$")
    class_multiplier_folds: int = Field(default=3, ge=2, le=10)
    #: Inverse regularisation strength of the proxy means test's logistic regression.
    pmt_C: float = Field(default=0.5, gt=0)
    calibration: str = Field(default="auto", pattern="^(auto|isotonic|platt)$")
    calibration_folds: int = Field(default=5, ge=2, le=20)
    #: Relapse rule model: an income drop larger than this share counts as sharp.
    rules_sharp_drop: float = Field(default=0.3, gt=0, lt=1)
    seed: int = Field(default=17, ge=0)
    top_k_reasons: int = Field(default=5, ge=1, le=20)
    #: Rows of the training features kept with the model as the monitoring reference.
    reference_rows: int = Field(default=20_000, gt=0)

    @field_validator("lightgbm_by_task")
    @classmethod
    def _known_tasks(cls, value: dict[str, LightGBMParams]) -> dict[str, LightGBMParams]:
        unknown = [t for t in value if t not in TASK_NAMES]
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(map(repr, unknown))} (expected one of {', '.join(TASK_NAMES)})")
        return value

    def lightgbm_for(self, task: str) -> LightGBMParams:
        """The LightGBM settings of `task`: `lightgbm` with the keys written under `lightgbm_by_task[task]`."""
        override = self.lightgbm_by_task.get(task)
        if override is None:
            return self.lightgbm
        written = override.model_dump(include=set(override.model_fields_set))
        return LightGBMParams.model_validate({**self.lightgbm.model_dump(), **written})


class EvaluateParams(_Strict):
    """Evaluation as targeting."""

    budgets: list[float] = Field(default_factory=lambda: [0.10, 0.20, 0.25, 0.30, 0.40], min_length=1)
    main_budget: float = Field(default=0.25, gt=0, lt=1)
    bootstrap: int = Field(default=200, ge=10, le=5000)
    group_min_size: int = Field(default=30, ge=1)
    seed: int = Field(default=11, ge=0)

    @field_validator("budgets")
    @classmethod
    def _shares(cls, value: list[float]) -> list[float]:
        for b in value:
            if not 0 < b < 1:
                raise ValueError(f"budgets are shares of households between 0 and 1, got {b}")
        return sorted(value)


class TierParams(_Strict):
    """0-100 score thresholds (score = 100 x (1 - risk)): below `low`, between, above `high`."""

    low: float = Field(default=60, ge=0, le=100)
    high: float = Field(default=80, ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> "TierParams":
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class GateCriteria(_Strict):
    """Quality gate a model must pass on held-out data to become champion (None = not checked)."""

    min_auc: float | None = Field(default=None, ge=0, le=1)
    max_exclusion_error: float | None = Field(default=None, ge=0, le=1, description="at evaluate.main_budget")
    max_calibration_error: float | None = Field(default=None, ge=0, le=1)
    min_macro_f1: float | None = Field(default=None, ge=0, le=1)


class TuneParams(_Strict):
    """Optuna tuning."""

    trials: int = Field(default=30, gt=0)
    folds: int = Field(default=3, ge=2, le=10)
    seed: int = Field(default=23, ge=0)
    timeout_seconds: int | None = Field(default=None, gt=0)


class RetrainParams(_Strict):
    """When targeting quality measured on reported outcomes calls for retraining (docs/monitoring.md)."""

    #: Outcomes joined to scores of the monitored model version before any figure is judged.
    min_outcomes: int = Field(default=200, ge=10)
    #: Decay against the model's held-out figures at training (MLflow run metrics ``heldout_*``).
    max_auc_drop: float = Field(default=0.05, gt=0, le=1)
    max_exclusion_error_rise: float = Field(default=0.05, gt=0, le=1)
    max_inclusion_error_rise: float = Field(default=0.10, gt=0, le=1)
    max_ece_rise: float = Field(default=0.05, gt=0, le=1)


class ShockParams(_Strict):
    """The `shock` scenario of `tpas monitor simulate` (acts through the synthetic process)."""

    #: Share of the panel's counties (at least one) with a county-wide disaster, all villages hit.
    disaster_county_share: float = Field(default=0.5, gt=0, le=1)
    #: County severity of that disaster year (the process draws U(0.3, 1) for a bad year).
    disaster_severity: float = Field(default=1.0, ge=0.3, le=1.0)
    #: Factor on migrant work that year (as `synth.process.migrant_shocks`; 2020 was 0.75).
    migrant_factor: float = Field(default=0.4, gt=0, lt=1)


#: Evidently drift methods a column type may use: distances (drift when score >= threshold), never
#: p-value tests, whose verdict depends on the sample size (docs/monitoring.md).
NUM_DRIFT_METHODS = ("wasserstein", "jensenshannon", "psi", "hellinger", "kl_div", "ed")
CAT_DRIFT_METHODS = ("jensenshannon", "psi", "hellinger", "kl_div")


class MonitoringParams(_Strict):
    """`tpas monitor run` / `simulate`: drift and data-quality test thresholds, retraining triggers."""

    #: Default window of `tpas monitor run`: scores of the last this many days.
    window_days: int = Field(default=30, gt=0, le=3660)
    #: Reference rows: the snapshot's latest this many training years (more if fewer than
    #: `min_reference_rows` rows), the world the model knew last (docs/monitoring.md).
    reference_years: int = Field(default=1, ge=1, le=50)
    min_reference_rows: int = Field(default=300, ge=1)
    #: Per-column drift: method and threshold by column type (model features: numerical or categorical).
    num_method: str = Field(default="wasserstein")
    cat_method: str = Field(default="jensenshannon")
    num_threshold: float = Field(default=0.1, gt=0)
    cat_threshold: float = Field(default=0.1, gt=0)
    #: Test: share of drifted feature columns must stay below this.
    max_drifted_share: float = Field(default=0.5, gt=0, le=1)
    #: Test: PSI of the risk score (over `risk_bins` quantile bins of the baseline) against the
    #: model's own held-out scores of its latest held-out year must stay below this.
    max_risk_psi: float = Field(default=0.1, gt=0)
    risk_bins: int = Field(default=10, ge=2, le=100)
    #: Test per column: share missing may exceed the reference's by at most this.
    max_missing_increase: float = Field(default=0.10, ge=0, le=1)
    #: Test per numerical column: share of values out of range (schema range of a registry
    #: indicator; derived features: reference min/max widened by `range_margin` x their span).
    max_out_of_range_share: float = Field(default=0.01, ge=0, le=1)
    range_margin: float = Field(default=2.0, ge=0)
    #: Each household's previous score is looked for this many days before the window (0: not at all),
    #: for the "changed since the previous scores" view (no test).
    previous_days: int = Field(default=400, ge=0, le=3660)
    #: Columns named in the summary / alert (most drifted first), and given full statistics in the report.
    top_columns: int = Field(default=10, ge=1, le=200)
    #: Fewer current rows than this: the report is still made, with a warning (drift is noisy).
    min_rows: int = Field(default=100, ge=1)
    retrain: RetrainParams = Field(default_factory=RetrainParams)
    shock: ShockParams = Field(default_factory=ShockParams)
    #: Households per batch when `simulate` scores a wave (the API takes 1-1,000 a request).
    score_batch: int = Field(default=500, ge=1, le=1000)

    @field_validator("num_method")
    @classmethod
    def _num_method(cls, value: str) -> str:
        if value not in NUM_DRIFT_METHODS:
            raise ValueError(f"expected one of {', '.join(NUM_DRIFT_METHODS)}")
        return value

    @field_validator("cat_method")
    @classmethod
    def _cat_method(cls, value: str) -> str:
        if value not in CAT_DRIFT_METHODS:
            raise ValueError(f"expected one of {', '.join(CAT_DRIFT_METHODS)}")
        return value


#: Registry statuses (features.schema `registry_status`; not imported: config loads first).
REGISTRY_STATUSES: tuple[str, ...] = ("not_registered", "registered_poor", "exited", "monitored")
#: Officials' tiers per task (models.bundle.TIER_LABELS; not imported: config loads first).
TIER_NAMES: dict[str, tuple[str, ...]] = {"poverty": ("impoverished", "likely_impoverished", "out_of_poverty"),
                                          "relapse": ("high_risk", "watch", "stable")}
#: Region-code lengths (province, city, county, township, village).
REGION_DIGITS: tuple[int, ...] = (2, 4, 6, 9, 12)


def _known_statuses(value: list[str]) -> list[str]:
    unknown = [s for s in value if s not in REGISTRY_STATUSES]
    if unknown:
        raise ValueError(f"unknown registry status(es) {', '.join(map(repr, unknown))} "
                         f"(expected some of {', '.join(REGISTRY_STATUSES)})")
    return value


def _known_tiers(task: str, value: list[str]) -> list[str]:
    unknown = [t for t in value if t not in TIER_NAMES[task]]
    if unknown:
        raise ValueError(f"unknown {task} tier(s) {', '.join(map(repr, unknown))} "
                         f"(expected some of {', '.join(TIER_NAMES[task])})")
    return value


class EnrolmentReviewParams(_Strict):
    """Enrolment review: predicted poor (poverty tier in `tiers`, or risk >= `min_risk`) and not enrolled."""

    #: Poverty tiers that put a household on the list (the Guizhou tier below 60 points).
    tiers: list[str] = Field(default_factory=lambda: ["impoverished"])
    #: ... or a poverty risk at least this high (None: the tiers alone).
    min_risk: float | None = Field(default=0.35, ge=0, le=1)
    #: Registry statuses that count as "not enrolled" (an exited household found poor again is re-enrolled).
    statuses: list[str] = Field(default_factory=lambda: ["not_registered", "exited"], min_length=1)

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: list[str]) -> list[str]:
        return _known_tiers("poverty", value)

    @model_validator(mode="after")
    def _some_rule(self) -> "EnrolmentReviewParams":
        if not self.tiers and self.min_risk is None:
            raise ValueError("give tiers or min_risk (with neither, nobody could be listed)")
        return self

    @field_validator("statuses")
    @classmethod
    def _statuses(cls, value: list[str]) -> list[str]:
        return _known_statuses(value)


class ExitReviewParams(_Strict):
    """Exit review: enrolled, and every poverty score of the last `months` months below `max_risk`
    (at least `min_scores` of them)."""

    #: Registry statuses that count as "enrolled" (registered poor; under relapse monitoring).
    statuses: list[str] = Field(default_factory=lambda: ["registered_poor", "monitored"], min_length=1)
    #: The window: about six months stably above the line before a household leaves monitoring (DOMAIN.md).
    months: int = Field(default=6, ge=1, le=60)
    min_scores: int = Field(default=3, ge=1, le=100)
    #: Every poverty score in the window must be below this risk (0.2 = above 80 points, "out of poverty").
    max_risk: float = Field(default=0.2, gt=0, le=1)

    @field_validator("statuses")
    @classmethod
    def _statuses(cls, value: list[str]) -> list[str]:
        return _known_statuses(value)


class RelapseWatchParams(_Strict):
    """Relapse watch: relapse-eligible at the latest score, relapse tier in `tiers` or risk >= `min_risk`."""

    tiers: list[str] = Field(default_factory=lambda: ["high_risk"])
    min_risk: float | None = Field(default=0.25, ge=0, le=1)

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, value: list[str]) -> list[str]:
        return _known_tiers("relapse", value)

    @model_validator(mode="after")
    def _some_rule(self) -> "RelapseWatchParams":
        if not self.tiers and self.min_risk is None:
            raise ValueError("give tiers or min_risk (with neither, nobody could be listed)")
        return self


class RosterParams(_Strict):
    """`tpas roster review`: thresholds and durations of the enrolment, exit and relapse-watch lists."""

    #: One list per region of this many digits of the village code (6 = county; 2, 4, 9, 12 also work).
    region_digits: int = Field(default=6)
    enrolment: EnrolmentReviewParams = Field(default_factory=EnrolmentReviewParams)
    exit: ExitReviewParams = Field(default_factory=ExitReviewParams)
    relapse_watch: RelapseWatchParams = Field(default_factory=RelapseWatchParams)

    @field_validator("region_digits")
    @classmethod
    def _region_digits(cls, value: int) -> int:
        if value not in REGION_DIGITS:
            raise ValueError(f"must be one of {', '.join(map(str, REGION_DIGITS))} (province to village)")
        return value


class Params(_Strict):
    """All of `params.yaml`."""

    lines: LinesParams
    synth: SynthParams = Field(default_factory=SynthParams)
    features: FeaturesParams = Field(default_factory=FeaturesParams)
    split: SplitParams = Field(default_factory=SplitParams)
    demo: DemoParams = Field(default_factory=DemoParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    tiers: dict[str, TierParams] = Field(default_factory=lambda: {"poverty": TierParams(), "relapse": TierParams()})
    gate: dict[str, GateCriteria] = Field(default_factory=dict)
    tune: TuneParams = Field(default_factory=TuneParams)
    monitoring: MonitoringParams = Field(default_factory=MonitoringParams)
    roster: RosterParams = Field(default_factory=RosterParams)


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    msg = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    got = error.get("input")
    shown = "" if isinstance(got, (dict, list)) else f" (got {got!r})"
    return f"{key}: {msg}{shown}"


def parse_params(raw: dict[str, Any], source: str = "params.yaml") -> Params:
    """Validate a parsed parameter mapping; raise `ConfigError` naming each bad key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = "; ".join(_describe(e) for e in exc.errors())
        raise ConfigError(f"{source}: {lines}") from None


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate a parameter file (default: ``$TPAS_PARAMS`` or the checkout's ``params.yaml``)."""
    if path is None:
        from tpas.settings import get_settings

        path = get_settings().params_path
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"parameter file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of stages at the top level")
    return parse_params(raw, source=path.name)


@lru_cache(maxsize=4)
def get_params(path: str | None = None) -> Params:
    """The parameters, loaded once per path for the life of the process."""
    return load_params(path)

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


class SynthParams(_Strict):
    """Defaults of `tpas data synth` (each can be overridden on the command line)."""

    households: int = Field(default=20_000, gt=0)
    years: YearRange = Field(default_factory=lambda: YearRange(first=2016, last=2025))
    seed: int = Field(default=2016, ge=0)
    chunk_households: int = Field(default=50_000, gt=0, description="households simulated per chunk (bounds memory)")
    households_per_village: int = Field(default=250, gt=0)
    measurement: MeasurementParams = Field(default_factory=MeasurementParams)


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


class Params(_Strict):
    """All of `params.yaml`."""

    lines: LinesParams
    synth: SynthParams = Field(default_factory=SynthParams)
    features: FeaturesParams = Field(default_factory=FeaturesParams)
    split: SplitParams = Field(default_factory=SplitParams)
    demo: DemoParams = Field(default_factory=DemoParams)


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

"""The API's request and response models, built from the canonical schema.

Every household and member field comes from `features.schema` (the one source of truth for
validation, the generator and the featurizer): its type, its range or allowed values, its
description and its Chinese / English names. A record is checked field by field here;
`serving.scoring` then runs the same record-level validation as `tpas predict`.

`/score` must score the valid households of a request and report the invalid ones with the
path of the bad field, so the list items are validated leniently: a household that fails
its model becomes an `InvalidRecord` carrying pydantic's errors, instead of failing the
whole request (the OpenAPI schema still shows the strict household model).
"""

from __future__ import annotations

import json
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, TypeAdapter,
                      ValidationError, WrapValidator, create_model)
from pydantic_core import core_schema

from features.schema import HOUSEHOLD_COLUMNS, MEMBER_COLUMNS, ColumnSpec

MAX_HOUSEHOLDS = 1000
MAX_MEMBERS = 30
MAX_PREVIOUS_WAVES = 10
EXAMPLES_DIR = Path(__file__).with_name("examples")


def _describe(spec: ColumnSpec) -> str:
    names = f"{spec.zh} / {spec.en}. " if spec.zh else ""
    unit = f" Unit: {spec.unit}." if spec.unit else ""
    pii = " Personal data: accepted, never stored or logged." if spec.role == "pii" else ""
    return f"{names}{spec.description}{unit}{pii}"


def _field(spec: ColumnSpec, required: bool) -> tuple[Any, Any]:
    kw: dict[str, Any] = {"description": _describe(spec)}
    if spec.kind == "str":
        typ: Any = str
        kw.update(min_length=1, max_length=64)
        if spec.name == "village_code":
            kw["pattern"] = r"^\d{12}$"
    elif spec.kind == "int":
        typ = int
    elif spec.kind == "float":
        typ = float
        kw["allow_inf_nan"] = False
    elif spec.kind == "bool":
        typ = bool
    else:
        typ = Literal[spec.categories]  # type: ignore[valid-type]
    if spec.kind in ("int", "float"):
        if spec.min is not None:
            kw["ge"] = spec.min
        if spec.max is not None:
            kw["le"] = spec.max
    if required:
        return typ, Field(..., **kw)
    return typ | None, Field(None, **kw)


def _fields(columns: tuple[ColumnSpec, ...], skip: set[str] = frozenset()) -> dict[str, tuple[Any, Any]]:
    return {s.name: _field(s, s.required and not s.nullable) for s in columns if s.name not in skip}


_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)

Member = create_model(
    "Member", __config__=_STRICT, __doc__="One member of the household in this wave (1 = head).",
    **_fields(MEMBER_COLUMNS, skip={"household_id", "year"}),
)

_members = (Annotated[list[Member], Field(min_length=1, max_length=MAX_MEMBERS,
                                          description="The household's members in this wave (at least the head).")],
            ...)

PreviousWave = create_model(
    "PreviousWave", __config__=_STRICT,
    __doc__="An earlier wave of the same household (same fields), used for the relapse history features.",
    members=_members, **_fields(HOUSEHOLD_COLUMNS, skip={"household_id"}),
)

Household = create_model(
    "Household", __config__=_STRICT,
    __doc__="One household wave in the canonical registry schema, with its members and, optionally, earlier waves.",
    members=_members,
    previous_waves=(Annotated[list[PreviousWave], Field(max_length=MAX_PREVIOUS_WAVES, description=(
        "Earlier waves of this household, oldest first or in any order (the relapse model reads up to "
        "`features.history_years` of them; without them its history features are missing)."))], []),
    **_fields(HOUSEHOLD_COLUMNS),
)


class InvalidRecord(BaseModel):
    """A household item of a request that failed its checks (kept to be reported, not scored)."""

    household_id: str | None = None
    errors: list[dict[str, Any]]


def _lenient_household(value: Any, handler) -> Any:
    try:
        return handler(value)
    except ValidationError as exc:
        hid = value.get("household_id") if isinstance(value, dict) else None
        return InvalidRecord(household_id=str(hid) if hid is not None else None,
                             errors=exc.errors(include_url=False, include_context=False, include_input=False))


_checked_household = TypeAdapter(Annotated[Household, WrapValidator(_lenient_household)])


class LenientHousehold:
    """A request's household item: a `Household` when it is valid, else the raw item as sent.

    Validation tries `Household` first (left-to-right union with "anything"), so a valid item costs
    one strict validation, done by pydantic-core straight from the JSON bytes; an invalid one is kept
    as it came and only then checked again for its errors (`checked`). A wrap validator on every item
    cost 1.5-2x more, because pydantic must then build each item as Python objects before validating
    it. The OpenAPI document shows the `Household` schema.
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.union_schema([handler.generate_schema(Household), core_schema.any_schema()],
                                        mode="left_to_right")

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return handler(schema["choices"][0])


def checked(item: Any) -> "Household | InvalidRecord":
    """A `LenientHousehold` item as a `Household`, or an `InvalidRecord` carrying pydantic's errors."""
    if isinstance(item, (Household, InvalidRecord)):
        return item
    return _checked_household.validate_python(item)


# -- responses -------------------------------------------------------------------------------------------------
class Reason(BaseModel):
    """One indicator pushing the risk up (or down), in officials' words."""

    indicator: str = Field(description="Feature name (e.g. `n_serious_ill`).")
    label_en: str
    label_zh: str
    value: float | None = Field(description="The household's value of the feature.")
    contribution: float = Field(description="Change of the risk (probability scale) due to this indicator.")
    cause: str = Field(description="Cause of poverty it speaks to (illness, disability, labour, ...), or `other`.")
    sentence_en: str
    sentence_zh: str


class TaskScore(BaseModel):
    """The score of one task for one household."""

    risk: float = Field(description="Calibrated probability (poverty: poor now; relapse: poor next year).")
    score: float = Field(description="0-100, 100 = no risk (score = 100 x (1 - risk)).")
    tier: str = Field(description="Officials' tier from the score and the thresholds in params.yaml.")
    eligible: bool | None = Field(None, description="Relapse only: the household is eligible for the relapse "
                                                    "task (not poor now, and poor before or near the line).")
    main_causes_en: str
    main_causes_zh: str
    causes: dict[str, float] = Field(description="Contributions summed by cause of poverty.")
    reasons_up: list[Reason]
    reasons_down: list[Reason]
    contributions: dict[str, float] | None = Field(
        None, description="Every feature's contribution (only when the request asks `full_contributions`).")
    model: str = Field(description="Registered model and version that produced the score, e.g. `tpas-poverty/3`.")


class HouseholdScore(BaseModel):
    index: int = Field(description="Position of the household in the request.")
    household_id: str
    year: int
    poverty: TaskScore | None = None
    relapse: TaskScore | None = None


class RecordError(BaseModel):
    index: int = Field(description="Position of the household in the request.")
    household_id: str | None
    field: str = Field(description="Path of the offending field, e.g. `households[3].members[0].age`.")
    reason: str


class ScoreResponse(BaseModel):
    scored: int
    rejected: int
    results: list[HouseholdScore]
    errors: list[RecordError]
    model_versions: dict[str, str]


class Outcome(BaseModel):
    """A verified outcome reported by the registry."""

    model_config = ConfigDict(extra="forbid")

    household_id: str = Field(min_length=1, max_length=64, description="Registry household number (pseudonymised "
                                                                        "on arrival, never stored).")
    task: Literal["poverty", "relapse"]
    outcome: Literal["poor", "not_poor", "relapsed", "not_relapsed"] = Field(
        description="poverty: poor / not_poor; relapse: relapsed / not_relapsed.")
    observed_on: date = Field(description="Date the outcome was verified.")


class OutcomesResponse(BaseModel):
    accepted: int
    rejected: int
    errors: list[RecordError]
    spooled: int = Field(0, description="Outcomes kept on disk while the database was unreachable.")


def error_path(prefix: str, loc: tuple | list) -> str:
    """`households[3]` + ('members', 0, 'age') -> `households[3].members[0].age`."""
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@lru_cache(maxsize=None)
def example(name: str) -> Any:
    """A stored example request body (`serving/examples/NAME.json`)."""
    return json.loads((EXAMPLES_DIR / f"{name}.json").read_text(encoding="utf-8"))

"""The inference store: every score the service gives, the outcomes reported back, and API keys.

SQLAlchemy 2 Core over SQLite (the default, ``<data_dir>/tpas.db``) or PostgreSQL
(``TPAS_DATABASE_URL=postgresql+psycopg://...``); the schema is created and upgraded by the
Alembic migrations in ``serving/migrations`` (`InferenceStore.migrate`, ``tpas db upgrade``).

Tables
------
- ``scores``: one row per score given: ``record_id`` (unique; the idempotency key), the household's
  pseudonym (`serving.pseudonym`, never the registry id), its 12-digit village code, task, wave
  year, risk, 0-100 score, tier, relapse eligibility, the feature values, contributions and reason
  codes (JSON), the main causes in English and Chinese, model name and version, time (UTC).
- ``outcomes``: what happened to a household afterwards (``poor``/``not_poor``,
  ``relapsed``/``not_relapsed``), when it was observed, who reported it.
- ``api_keys``: see `serving.auth` (hashes only, never a key).
- ``review_runs`` / ``review_lists`` (revision 0002): each `tpas roster review` run (year, region
  scope, as-of time, parameters, counts) and its enrolment / exit / relapse-watch lists, one row per
  listed household with its rank in its region, risks, registry status and reasons
  (`monitoring.roster`). The lists are recommendations; nothing in ``scores`` changes.

Since revision 0002 a score row also carries the household's registry status of the scored wave
(``registry_status``, ``poor_since_year``, ``exit_year``, ``monitoring_group``; registry facts, not
personal data; NULL for rows scored before) so the review lists know who is enrolled.

"Latest" means the most recently scored row of a household and task (``scored_at``, then ``id``);
a household that moved shows under its new village only. Region filters are prefixes of the
12-digit code (2 province, 4 city, 6 county, 9 township, 12 village), evaluated as a range on a
byte-ordered column so an index serves them on both databases.

Nothing is lost when the database fails: a batch the database does not take is written to the
spool folder (`serving.spool`) and `record_scores`/`record_outcomes` report it as spooled instead
of raising; `flush_spool` (after later successful writes, and from the `start_flusher` thread)
replays the spool with ``INSERT ... ON CONFLICT (record_id) DO NOTHING``, so nothing is doubled
either, even when a batch was spooled after the database had in fact committed it.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import secrets
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

import msgspec
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url

from serving.pseudonym import is_pseudonym
from serving.spool import Spool
from tpas.errors import TpasError

try:
    import psycopg
except ImportError:  # pragma: no cover
    psycopg = None

log = logging.getLogger("tpas.serving.store")

TASKS = ("poverty", "relapse")
#: Outcomes a registry may report, per task.
OUTCOMES: dict[str, tuple[str, ...]] = {"poverty": ("poor", "not_poor"), "relapse": ("relapsed", "not_relapsed")}
#: Lengths of the region-code prefixes (province, city, county, township, village).
REGION_LENGTHS = (2, 4, 6, 9, 12)
_DIGITS = re.compile(r"[0-9]*")


def new_record_id() -> str:
    """A new record id: 32 hex characters, a millisecond timestamp (12) then 80 random bits (20).

    Ids in time order keep the unique index on ``record_id`` append-only: random uuid4 ids put each
    insert on a random index page, and writing 100 households cost 25 % more by 80,000 rows, more as
    the store grows. 80 random bits make two ids of one millisecond collide with odds far below 1e-15.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


class StoreUnavailable(TpasError):
    """The inference store cannot be reached or migrated (the message names the URL, no password)."""


class InvalidRow(ValueError):
    """A row handed to the store is malformed (a caller bug); the message names the row and field."""


@dataclass(frozen=True)
class StoreResult:
    """What a write did: rows now in the database, rows kept in the spool, rows already there."""

    written: int = 0
    spooled: int = 0
    duplicates: int = 0


# -- column types ------------------------------------------------------------------------------------------
class UTCDateTime(sa.types.TypeDecorator):
    """A timezone-aware UTC timestamp on every database (SQLite keeps naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        value = value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def json_type() -> sa.types.TypeEngine:
    """JSON (JSONB on PostgreSQL)."""
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def region_type() -> sa.types.TypeEngine:
    """A region code, byte-ordered on PostgreSQL (collation C) so prefix ranges use the index."""
    return sa.String(12).with_variant(sa.String(12, collation="C"), "postgresql")


def id_type() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


metadata = sa.MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "pk": "pk_%(table_name)s",
})

scores = sa.Table(
    "scores", metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(64), nullable=False, unique=True),
    sa.Column("household_pid", sa.String(64), nullable=False),
    sa.Column("region_code", region_type(), nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("year", sa.Integer(), nullable=True),
    sa.Column("risk", sa.Float(), nullable=False),
    sa.Column("score", sa.Float(), nullable=False),
    sa.Column("tier", sa.String(32), nullable=False),  # 32 since revision 0002 (likely_impoverished has 19)
    sa.Column("eligible", sa.Boolean(), nullable=True),
    sa.Column("features", json_type(), nullable=True),
    sa.Column("contributions", json_type(), nullable=True),
    sa.Column("reasons", json_type(), nullable=True),
    sa.Column("main_causes_en", sa.Text(), nullable=True),
    sa.Column("main_causes_zh", sa.Text(), nullable=True),
    sa.Column("model_name", sa.String(128), nullable=True),
    sa.Column("model_version", sa.String(64), nullable=True),
    sa.Column("scored_at", UTCDateTime(), nullable=False),
    # registry status of the scored wave (revision 0002; NULL before): who is enrolled, for the review lists
    sa.Column("registry_status", sa.String(32), nullable=True),
    sa.Column("poor_since_year", sa.Integer(), nullable=True),
    sa.Column("exit_year", sa.Integer(), nullable=True),
    sa.Column("monitoring_group", sa.String(32), nullable=True),
    # latest per household and task: the anti-join "no newer row of this household and task"
    sa.Index("ix_scores_household_task_time", "household_pid", "task", "scored_at", "id"),
    # the risk list of a region: task + region-code range, ranked by risk
    sa.Index("ix_scores_task_region_risk", "task", "region_code", "risk"),
)

outcomes = sa.Table(
    "outcomes", metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("record_id", sa.String(64), nullable=False, unique=True),
    sa.Column("household_pid", sa.String(64), nullable=False),
    sa.Column("task", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("observed_on", sa.Date(), nullable=False),
    sa.Column("reported_at", UTCDateTime(), nullable=False),
    sa.Column("reporter_key_id", sa.String(32), nullable=True),
    sa.Index("ix_outcomes_household_task_observed", "household_pid", "task", "observed_on"),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("key_id", sa.String(32), nullable=False, unique=True),
    sa.Column("key_hash", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("region_code", sa.String(12), nullable=True),
    sa.Column("label", sa.String(200), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)

review_runs = sa.Table(
    "review_runs", metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False, unique=True),
    sa.Column("year", sa.Integer(), nullable=False),
    # the run's region prefix ('' = everywhere): the lists of a region come from the latest run covering it
    sa.Column("scope", region_type(), nullable=False),
    sa.Column("as_of", UTCDateTime(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("params", json_type(), nullable=True),
    sa.Column("counts", json_type(), nullable=True),
    sa.Index("ix_review_runs_scope_created_at", "scope", "created_at"),
)

review_lists = sa.Table(
    "review_lists", metadata,
    sa.Column("id", id_type(), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(32), nullable=False),
    sa.Column("list_kind", sa.String(16), nullable=False),
    sa.Column("region_group", region_type(), nullable=False),
    sa.Column("region_code", region_type(), nullable=False),
    sa.Column("household_pid", sa.String(64), nullable=False),
    sa.Column("year", sa.Integer(), nullable=False),
    sa.Column("rank", sa.Integer(), nullable=False),
    sa.Column("poverty_risk", sa.Float(), nullable=True),
    sa.Column("poverty_score", sa.Float(), nullable=True),
    sa.Column("poverty_tier", sa.String(32), nullable=True),
    sa.Column("relapse_risk", sa.Float(), nullable=True),
    sa.Column("relapse_score", sa.Float(), nullable=True),
    sa.Column("relapse_tier", sa.String(32), nullable=True),
    sa.Column("registry_status", sa.String(32), nullable=True),
    sa.Column("monitoring_group", sa.String(32), nullable=True),
    sa.Column("reasons", json_type(), nullable=True),
    sa.Column("main_causes_en", sa.Text(), nullable=True),
    sa.Column("main_causes_zh", sa.Text(), nullable=True),
    sa.Column("evidence", json_type(), nullable=True),
    sa.Column("model_name", sa.String(128), nullable=True),
    sa.Column("model_version", sa.String(64), nullable=True),
    sa.Column("scored_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # one list of a run under a region prefix, in rank order
    sa.Index("ix_review_lists_run_id_list_kind_region_code", "run_id", "list_kind", "region_code"),
)

TABLES = {"scores": scores, "outcomes": outcomes}
SCORE_FIELDS = tuple(c.name for c in scores.columns if c.name != "id")
OUTCOME_FIELDS = tuple(c.name for c in outcomes.columns if c.name != "id")
#: Columns of a risk-list row (no feature values or contributions: those come with `household_latest`).
LIST_FIELDS = tuple(f for f in SCORE_FIELDS if f not in ("features", "contributions"))
#: The registry-status columns of a score row (revision 0002).
STATUS_FIELDS = ("registry_status", "poor_since_year", "exit_year", "monitoring_group")
#: The review lists `tpas roster review` writes.
REVIEW_LISTS = ("enrolment", "exit", "relapse_watch")
REVIEW_RUN_FIELDS = tuple(c.name for c in review_runs.columns if c.name != "id")
REVIEW_FIELDS = tuple(c.name for c in review_lists.columns if c.name != "id")


# -- row preparation ----------------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy/pandas scalars unwrapped, NaN/inf/NA -> None, dates as ISO text.

    Subclasses of str/int/float (numpy's float64) come back as the plain type, so `jsonable` can also
    serve as msgspec's hook for what it cannot encode itself (`encode_json`)."""
    if value is None or type(value) in (bool, str, int):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):
        return jsonable(value.item())
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (ImportError, TypeError, ValueError):
        pass
    raise TypeError(f"cannot store a value of type {type(value).__name__} as JSON")


class EncodedJSON(str):
    """A JSON column value already encoded by `encode_json` (the engines' serializer passes it through)."""

    __slots__ = ()


_ENCODER = msgspec.json.Encoder(enc_hook=jsonable, decimal_format="number")


def encode_json(value: Any) -> EncodedJSON:
    """`value` as JSON text with the rules of `jsonable` (NaN/inf -> null, numpy unwrapped, readable
    Chinese), encoded once: 20-50x faster than walking it with `jsonable` and then `json.dumps`.
    Raises TypeError for a value that has no JSON form."""
    if type(value) is EncodedJSON:
        return value
    return EncodedJSON(_ENCODER.encode(value).decode("utf-8"))


def decode_json(value: Any) -> Any:
    """The structure behind an `EncodedJSON` value (anything else is returned as it is)."""
    return msgspec.json.decode(value.encode("utf-8")) if type(value) is EncodedJSON else value


def _json_column(value: Any, where: str) -> EncodedJSON | None:
    if value is None:
        return None
    try:
        return encode_json(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidRow(f"{where}: cannot be stored as JSON ({exc})") from None


@functools.lru_cache(maxsize=1)
def _forbidden_keys() -> frozenset[str]:
    from features.schema import pii_columns

    return frozenset(pii_columns() | {"household_id"})


def _strip_pii(mapping: Any, where: str) -> Any:
    if not isinstance(mapping, dict):
        return mapping
    bad = _forbidden_keys().intersection(mapping)  # the forbidden names are str; other keys cannot match
    if bad:
        log.warning("dropped personal fields %s from %s before storing", sorted(bad), where)
        mapping = {k: v for k, v in mapping.items() if str(k) not in bad}
    return mapping


def _record_id(value: Any, where: str) -> str:
    if isinstance(value, uuid.UUID):
        value = value.hex
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise InvalidRow(f"{where}: record_id must be a non-empty string of at most 64 characters "
                         f"(new_record_id())")
    return value.strip()


def _pid(value: Any, where: str) -> str:
    if not is_pseudonym(value):
        raise InvalidRow(f"{where}: household_pid must be a pseudonym from serving.pseudonym.pseudonymize "
                         f"(32 hex characters); raw household ids are never stored")
    return value


def _task(value: Any, where: str) -> str:
    if value not in TASKS:
        raise InvalidRow(f"{where}: task must be one of {', '.join(TASKS)} (got {value!r})")
    return value


def _utc(value: Any, where: str, name: str) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidRow(f"{where}: {name} is not an ISO date-time ({value!r})") from None
    if not isinstance(value, datetime):
        raise InvalidRow(f"{where}: {name} must be a datetime")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _number(value: Any, where: str, name: str, low: float, high: float) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InvalidRow(f"{where}: {name} must be a number (got {type(value).__name__})") from None
    if not (math.isfinite(x) and low <= x <= high):
        raise InvalidRow(f"{where}: {name} must be between {low:g} and {high:g} (got {x!r})")
    return x


def _check_keys(row: Any, fields: tuple[str, ...], where: str) -> None:
    if not isinstance(row, dict):
        raise InvalidRow(f"{where}: a row must be a dict (got {type(row).__name__})")
    extra = set(row) - set(fields)
    if extra:
        forbidden = extra & _forbidden_keys()
        if forbidden:
            raise InvalidRow(f"{where}: personal fields {sorted(forbidden)} must never reach the store "
                             f"(pseudonymize the household id into household_pid)")
        raise InvalidRow(f"{where}: unknown fields {sorted(extra)}; the store takes {', '.join(fields)}")


def prepare_score(row: dict, index: int = 0) -> dict:
    """A checked copy of one score row as the `scores` table takes it (InvalidRow if malformed)."""
    where = f"score row {index}"
    _check_keys(row, SCORE_FIELDS, where)
    for name in ("record_id", "household_pid", "region_code", "task", "risk", "score", "tier"):
        if row.get(name) is None:
            raise InvalidRow(f"{where}: {name} is required")
    region = str(row["region_code"])
    if len(region) != 12 or not region.isdigit():
        raise InvalidRow(f"{where}: region_code must be the 12-digit village code")
    eligible = row.get("eligible")
    if eligible is not None and not isinstance(eligible, bool):
        if hasattr(eligible, "item"):
            eligible = eligible.item()
        if eligible not in (0, 1, True, False):
            raise InvalidRow(f"{where}: eligible must be true, false or null")
        eligible = bool(eligible)
    year = _int_or_none(row.get("year"), where, "year")
    return {
        "record_id": _record_id(row["record_id"], where),
        "household_pid": _pid(row["household_pid"], where),
        "region_code": region,
        "task": _task(row["task"], where),
        "year": year,
        "risk": _number(row["risk"], where, "risk", 0.0, 1.0),
        "score": _number(row["score"], where, "score", 0.0, 100.0),
        "tier": str(row["tier"]),
        "eligible": eligible,
        "features": _json_column(_strip_pii(row.get("features"), f"{where}.features"), f"{where}.features"),
        "contributions": _json_column(_strip_pii(row.get("contributions"), f"{where}.contributions"),
                                      f"{where}.contributions"),
        "reasons": _json_column(row.get("reasons"), f"{where}.reasons"),
        "main_causes_en": row.get("main_causes_en"),
        "main_causes_zh": row.get("main_causes_zh"),
        "model_name": None if row.get("model_name") is None else str(row["model_name"]),
        "model_version": None if row.get("model_version") is None else str(row["model_version"]),
        "scored_at": _utc(row.get("scored_at"), where, "scored_at"),
        "registry_status": _text_or_none(row.get("registry_status"), where, "registry_status"),
        "poor_since_year": _int_or_none(row.get("poor_since_year"), where, "poor_since_year"),
        "exit_year": _int_or_none(row.get("exit_year"), where, "exit_year"),
        "monitoring_group": _text_or_none(row.get("monitoring_group"), where, "monitoring_group"),
    }


def _int_or_none(value: Any, where: str, name: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidRow(f"{where}: {name} must be an integer") from None


def _text_or_none(value: Any, where: str, name: str, length: int = 32) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if len(text) > length:
        raise InvalidRow(f"{where}: {name} must be at most {length} characters")
    return text or None


def prepare_outcome(row: dict, index: int = 0) -> dict:
    """A checked copy of one outcome row (InvalidRow if malformed)."""
    where = f"outcome row {index}"
    _check_keys(row, OUTCOME_FIELDS, where)
    for name in ("record_id", "household_pid", "task", "outcome", "observed_on"):
        if row.get(name) is None:
            raise InvalidRow(f"{where}: {name} is required")
    task = _task(row["task"], where)
    if row["outcome"] not in OUTCOMES[task]:
        raise InvalidRow(f"{where}: a {task} outcome is one of {', '.join(OUTCOMES[task])} (got {row['outcome']!r})")
    observed = row["observed_on"]
    if isinstance(observed, datetime):
        observed = observed.date()
    elif isinstance(observed, str):
        try:
            observed = date.fromisoformat(observed[:10])
        except ValueError:
            raise InvalidRow(f"{where}: observed_on is not an ISO date ({observed!r})") from None
    elif not isinstance(observed, date):
        raise InvalidRow(f"{where}: observed_on must be a date")
    reporter = row.get("reporter_key_id")
    return {
        "record_id": _record_id(row["record_id"], where),
        "household_pid": _pid(row["household_pid"], where),
        "task": task,
        "outcome": row["outcome"],
        "observed_on": observed,
        "reported_at": _utc(row.get("reported_at"), where, "reported_at"),
        "reporter_key_id": None if reporter is None else str(reporter)[:32],
    }


PREPARE = {"scores": prepare_score, "outcomes": prepare_outcome}


def check_region_prefix(prefix: str | None, name: str = "region prefix") -> str:
    """'' or a string of up to 12 digits (ValueError otherwise)."""
    prefix = "" if prefix is None else str(prefix).strip()
    if len(prefix) > 12 or not _DIGITS.fullmatch(prefix):
        raise ValueError(f"{name} must be up to 12 digits of a region code (got {prefix!r})")
    return prefix


def _prefix_range(column, prefix: str):
    """``column LIKE prefix%`` as a range (digits only, byte order): index-friendly on both databases."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return sa.and_(column >= prefix, column < upper)


# -- errors ---------------------------------------------------------------------------------------------------
_DRIVER_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error,) + ((psycopg.Error,) if psycopg else ())
DB_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.DBAPIError, sa_exc.DisconnectionError, sa_exc.TimeoutError, ConnectionError) + _DRIVER_ERRORS
_OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError, ConnectionError,
    sqlite3.OperationalError, sqlite3.InterfaceError) + (
    (psycopg.OperationalError, psycopg.InterfaceError) if psycopg else ())


def is_outage(exc: BaseException) -> bool:
    """True if the error means the database is unreachable (rather than refusing these rows)."""
    return isinstance(exc, _OUTAGE_ERRORS) or bool(getattr(exc, "connection_invalidated", False))


def _json_dumps(value: Any) -> str:
    """JSON column values through `encode_json`: text `prepare_score` already encoded passes as it is
    (readable Chinese text; NaN becomes null)."""
    return encode_json(value)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the store -----------------------------------------------------------------------------------------------
class InferenceStore:
    """Scores, outcomes and API keys in SQLite or PostgreSQL, with an on-disk spool for outages."""

    def __init__(self, url: str | None = None, spool_dir: Path | None = None, *, connect_timeout_s: float = 5.0,
                 application_name: str = "tpas-serving", engine_kwargs: dict | None = None):
        from tpas.settings import get_settings

        settings = get_settings()
        self.url = url or settings.db_url
        self.spool = Spool(Path(spool_dir) if spool_dir is not None else settings.data_dir / "spool")
        self.engine = self._create_engine(self.url, connect_timeout_s, application_name, engine_kwargs or {})
        self._flush_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    @property
    def safe_url(self) -> str:
        """The URL with any password masked (for messages and logs)."""
        return make_url(self.url).render_as_string(hide_password=True)

    url_safe = safe_url  # alias

    @property
    def spool_dir(self) -> Path:
        return self.spool.directory

    @staticmethod
    def _create_engine(url: str, timeout: float, application_name: str, extra: dict) -> Engine:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        kwargs: dict[str, Any] = {
            "pool_pre_ping": True,
            "json_serializer": _json_dumps,
        }
        connect_args: dict[str, Any] = {}
        if backend == "sqlite":
            connect_args["timeout"] = timeout
            db = parsed.database
            if db and db != ":memory:" and not db.startswith("file:"):
                try:
                    Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
                except OSError:  # unreachable folder: the first write spools, healthy() says False
                    pass
        elif backend == "postgresql":
            connect_args["connect_timeout"] = max(2, int(math.ceil(timeout)))
            connect_args["application_name"] = application_name
            kwargs["pool_timeout"] = max(1.0, timeout)
        kwargs.update(extra)
        kwargs["connect_args"] = {**connect_args, **kwargs.get("connect_args", {})}
        engine = sa.create_engine(url, **kwargs)
        if backend == "sqlite":
            @sa.event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # WAL: readers do not block the writer (several workers)
                cur = dbapi_conn.cursor()
                try:
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=NORMAL")
                except sqlite3.Error:  # pragma: no cover - e.g. a read-only file
                    pass
                finally:
                    cur.close()
        return engine

    # -- schema ----------------------------------------------------------------------------------------------
    def alembic_config(self):
        """An Alembic config whose migrations run on this store's engine (see serving/migrations)."""
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """``alembic upgrade head`` on this database (re-runnable; serialised on PostgreSQL)."""
        from alembic import command

        cfg = self.alembic_config()
        try:
            with self.engine.begin() as conn:
                if conn.dialect.name == "postgresql":  # two workers starting at once: one migrates
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7331001)"))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        except DB_ERRORS as exc:
            raise StoreUnavailable(
                f"cannot migrate the inference store at {self.safe_url}: {_first_line(exc)}") from exc

    def downgrade(self, revision: str = "base") -> None:
        """``alembic downgrade`` (tests and operators only: drops what the migrations created)."""
        from alembic import command

        cfg = self.alembic_config()
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at (None before the first migration)."""
        from alembic.runtime.migration import MigrationContext

        try:
            with self.engine.connect() as conn:
                return MigrationContext.configure(conn).get_current_revision()
        except DB_ERRORS as exc:
            raise StoreUnavailable(f"cannot read the inference store at {self.safe_url}: {_first_line(exc)}") from exc

    def healthy(self) -> bool:
        """True if the database answers a ``SELECT 1`` (never raises)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - a health probe reports, it does not raise
            return False

    # -- writes ----------------------------------------------------------------------------------------------
    def record_scores(self, rows: list[dict]) -> StoreResult:
        """Store score rows (household_pid already pseudonymized, record_id set by the caller).

        Raises `InvalidRow` for a malformed row (before touching the database). A database failure
        never raises: the batch goes to the spool and the result says ``spooled=len(rows)``.
        A row whose record_id is already stored is skipped (counted in ``duplicates``).
        """
        return self._write("scores", [prepare_score(r, i) for i, r in enumerate(rows)])

    def record_outcomes(self, rows: list[dict]) -> StoreResult:
        """Store outcome rows; same checks, idempotency and spooling as `record_scores`."""
        return self._write("outcomes", [prepare_outcome(r, i) for i, r in enumerate(rows)])

    def _write(self, kind: str, rows: list[dict]) -> StoreResult:
        rows = _dedupe(rows)
        if not rows:
            return StoreResult()
        try:
            written = self._insert(kind, rows)
        except DB_ERRORS as exc:
            # spooled as plain structures (an OSError here, disk full too, is the one failure that raises)
            self.spool.append(kind, [{k: decode_json(v) for k, v in r.items()} for r in rows])
            level = logging.WARNING if is_outage(exc) else logging.ERROR
            log.log(level, "inference store %s unavailable (%s): %d %s rows spooled to %s",
                    self.safe_url, _first_line(exc), len(rows), kind, self.spool.directory)
            return StoreResult(written=0, spooled=len(rows))
        self._after_write()
        return StoreResult(written=written, spooled=0, duplicates=len(rows) - written)

    def _insert(self, kind: str, rows: list[dict]) -> int:
        """Insert in one transaction, skipping record_ids already stored; returns rows inserted."""
        with self.engine.begin() as conn:
            return insert_ignoring_duplicates(conn, TABLES[kind], rows)

    def _after_write(self) -> None:
        """After a successful write: replay the spool (or wake the flusher thread to do it)."""
        if not self.spool.has_batches():
            return
        if self._flusher is not None and self._flusher.is_alive():
            self._wake.set()
            return
        try:
            self.flush_spool()
        except Exception:  # noqa: BLE001 - the write itself succeeded; the spool waits for the next try
            log.exception("replaying the spool failed; it will be retried")

    # -- spool -----------------------------------------------------------------------------------------------
    def spooled(self) -> int:
        """Rows waiting in the spool folder."""
        return self.spool.count()

    def flush_spool(self) -> int:
        """Replay spooled batches, oldest first; returns the rows taken off the spool.

        Each batch is inserted in one transaction with duplicates ignored, and its file is deleted
        only after the commit. Stops at the first sign of an outage (the rest waits for the next
        try); a batch the database refuses for another reason stays in the spool (logged) and the
        others go on; an unreadable file is moved to ``bad/``. Only one thread/process replays at a time.
        """
        if not self.spool.has_batches() or not self._flush_lock.acquire(blocking=False):
            return 0
        try:
            with self.spool.exclusive() as mine:
                if not mine:
                    return 0
                return self._replay()
        finally:
            self._flush_lock.release()

    def _replay(self) -> int:
        done = 0
        for path in self.spool.files():
            try:
                batch = self.spool.read(path)
                prepare = PREPARE[batch.kind]
                rows = _dedupe([prepare(r, i) for i, r in enumerate(batch.rows)])
            except FileNotFoundError:
                continue
            except (ValueError, TypeError, KeyError) as exc:
                self.spool.quarantine(path, str(exc))
                continue
            try:
                written = self._insert(batch.kind, rows) if rows else 0
            except DB_ERRORS as exc:
                if is_outage(exc):
                    log.info("spool replay paused, %s still unavailable: %s", self.safe_url, _first_line(exc))
                    break
                log.error("spooled batch %s refused by the database (%s); kept in the spool",
                          path.name, _first_line(exc))
                continue
            self.spool.remove(path)
            done += len(rows)
            log.info("replayed spooled batch %s: %d %s rows (%d new, %d already stored)",
                     path.name, len(rows), batch.kind, written, len(rows) - written)
        return done

    def start_flusher(self, interval_s: float = 30.0) -> threading.Thread:
        """Start (once) a daemon thread replaying the spool every `interval_s` seconds."""
        if self._flusher is not None and self._flusher.is_alive():
            return self._flusher
        self._stop.clear()
        self._flusher = threading.Thread(target=self._flush_loop, args=(float(interval_s),),
                                         name="tpas-spool-flusher", daemon=True)
        self._flusher.start()
        return self._flusher

    def stop_flusher(self, timeout_s: float = 10.0) -> None:
        """Stop the flusher thread (waits for a replay in progress, up to `timeout_s`)."""
        thread, self._flusher = self._flusher, None
        self._stop.set()
        self._wake.set()
        if thread is not None:
            thread.join(timeout_s)

    def _flush_loop(self, interval_s: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush_spool()
            except Exception:  # noqa: BLE001 - keep the thread alive; next round retries
                log.exception("spool flusher round failed")

    def close(self) -> None:
        """Stop the flusher and close the database connections."""
        self.stop_flusher()
        self.engine.dispose()

    def __enter__(self) -> "InferenceStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reads -----------------------------------------------------------------------------------------------
    def latest_scores(self, task: str, region_prefix: str = "", tier: str | None = None, village: str | None = None,
                      household_pid: str | None = None, page: int = 1, page_size: int = 50,
                      with_details: bool = False, eligible: bool | None = None) -> tuple[list[dict], int]:
        """The latest score of each household for `task` within a region prefix, highest risk first.

        Filters (all optional): `tier` of the latest score, `village` (12-digit code), one
        `household_pid`, `eligible` (relapse) of the latest score. Returns (rows of the page, total rows matching). Rows hold `LIST_FIELDS`
        (plus features and contributions with ``with_details=True``).
        """
        _task(task, "latest_scores")
        prefix = check_region_prefix(region_prefix)
        if village is not None:
            village = check_region_prefix(village, "village")
            if len(village) != 12:
                raise ValueError("village must be a 12-digit village code")
        if page < 1 or not 1 <= page_size <= 1000:
            raise ValueError("page must be >= 1 and page_size between 1 and 1000")
        s = scores.alias("s")
        where = [s.c.task == task, ~_newer_exists(s)]
        if prefix:
            where.append(_prefix_range(s.c.region_code, prefix))
        if village is not None:
            where.append(s.c.region_code == village)
        if tier is not None:
            where.append(s.c.tier == tier)
        if household_pid is not None:
            where.append(s.c.household_pid == household_pid)
        if eligible is not None:  # relapse: the latest score decides whether the household is still eligible
            where.append(s.c.eligible.is_(eligible))
        fields = SCORE_FIELDS if with_details else LIST_FIELDS
        query = (sa.select(*(s.c[f] for f in fields)).where(*where)
                 .order_by(s.c.risk.desc(), s.c.household_pid, s.c.id)
                 .limit(page_size).offset((page - 1) * page_size))
        count = sa.select(sa.func.count()).select_from(s).where(*where)
        with self.engine.connect() as conn:
            total = conn.execute(count).scalar_one()
            rows = [dict(r._mapping) for r in conn.execute(query)] if total else []
        return rows, int(total)

    def household_latest(self, household_pid: str, task: str | None = None) -> list[dict]:
        """The latest score of each task for one household, with features and contributions."""
        s = scores.alias("s")
        where = [s.c.household_pid == household_pid, ~_newer_exists(s)]
        if task is not None:
            where.append(s.c.task == _task(task, "household_latest"))
        query = sa.select(*(s.c[f] for f in SCORE_FIELDS)).where(*where).order_by(s.c.task)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def scores_between(self, task: str, since: datetime | None = None, until: datetime | None = None,
                       limit: int | None = None) -> list[dict]:
        """Every score of `task` given in [since, until), oldest first, with features (monitoring)."""
        _task(task, "scores_between")
        query = sa.select(*(scores.c[f] for f in SCORE_FIELDS)).where(scores.c.task == task)
        if since is not None:
            query = query.where(scores.c.scored_at >= _utc(since, "scores_between", "since"))
        if until is not None:
            query = query.where(scores.c.scored_at < _utc(until, "scores_between", "until"))
        query = query.order_by(scores.c.scored_at, scores.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def list_outcomes(self, task: str | None = None, household_pid: str | None = None) -> list[dict]:
        """Reported outcomes, oldest observation first (optionally of one task / household)."""
        query = sa.select(*(outcomes.c[f] for f in OUTCOME_FIELDS))
        if task is not None:
            query = query.where(outcomes.c.task == _task(task, "list_outcomes"))
        if household_pid is not None:
            query = query.where(outcomes.c.household_pid == household_pid)
        query = query.order_by(outcomes.c.observed_on, outcomes.c.id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def villages(self, region_prefix: str = "") -> list[str]:
        """The distinct 12-digit village codes with scores (of any task) under a region prefix, in order.

        Every score counts, not only the latest, so a village whose households all moved away still
        shows (its risk list is then empty). ``task IN (...)`` lets the task + region index serve it.
        """
        prefix = check_region_prefix(region_prefix)
        query = sa.select(scores.c.region_code).where(scores.c.task.in_(TASKS)).distinct()
        if prefix:
            query = query.where(_prefix_range(scores.c.region_code, prefix))
        query = query.order_by(scores.c.region_code)
        with self.engine.connect() as conn:
            return [str(v) for v in conn.execute(query).scalars()]

    # -- review lists (`tpas roster review`, revision 0002) -------------------------------------------------------
    def latest_of_year(self, task: str, year: int, region_prefix: str = "",
                       until: datetime | None = None) -> list[dict]:
        """The latest score of `task` for wave `year` of each household under a region prefix, among the
        scores given at or before `until` (default: all): `LIST_FIELDS` (no feature values or contributions),
        in no particular order. Reads only."""
        _task(task, "latest_of_year")
        prefix = check_region_prefix(region_prefix)
        until = None if until is None else _utc(until, "latest_of_year", "until")
        s, n = scores.alias("s"), scores.alias("n")
        newer = [n.c.household_pid == s.c.household_pid, n.c.task == s.c.task, n.c.year == s.c.year,
                 sa.or_(n.c.scored_at > s.c.scored_at, sa.and_(n.c.scored_at == s.c.scored_at, n.c.id > s.c.id))]
        where = [s.c.task == task, s.c.year == int(year)]
        if until is not None:
            newer.append(n.c.scored_at <= until)
            where.append(s.c.scored_at <= until)
        where.append(~sa.select(n.c.id).where(*newer).exists())
        if prefix:
            where.append(_prefix_range(s.c.region_code, prefix))
        query = sa.select(*(s.c[f] for f in LIST_FIELDS)).where(*where)
        return self._read(lambda conn: [dict(r._mapping) for r in conn.execute(query)])

    def score_window(self, task: str, since: datetime, until: datetime, max_year: int | None = None,
                     region_prefix: str = "") -> dict[str, dict]:
        """Per household, its `task` scores given in (since, until] (of waves up to `max_year`): ``n``,
        ``max_risk``, ``min_risk``, ``first``, ``last`` (times). With a region prefix, only households
        with a score of `task` there (their scores elsewhere count too). Reads only."""
        _task(task, "score_window")
        since, until = _utc(since, "score_window", "since"), _utc(until, "score_window", "until")
        where = [scores.c.task == task, scores.c.scored_at > since, scores.c.scored_at <= until]
        if max_year is not None:
            where.append(sa.or_(scores.c.year.is_(None), scores.c.year <= int(max_year)))
        prefix = check_region_prefix(region_prefix)
        if prefix:
            r = scores.alias("r")
            where.append(scores.c.household_pid.in_(
                sa.select(r.c.household_pid).where(r.c.task == task, _prefix_range(r.c.region_code, prefix))))
        query = (sa.select(scores.c.household_pid, sa.func.count().label("n"),
                           sa.func.max(scores.c.risk).label("max_risk"), sa.func.min(scores.c.risk).label("min_risk"),
                           sa.func.min(scores.c.scored_at).label("first"),
                           sa.func.max(scores.c.scored_at).label("last"))
                 .where(*where).group_by(scores.c.household_pid))
        utc = UTCDateTime()

        def read(conn):
            out = {}
            for r in conn.execute(query):
                row = dict(r._mapping)
                for k in ("first", "last"):  # aggregates come back untyped on SQLite
                    v = row[k]
                    if isinstance(v, str):
                        v = datetime.fromisoformat(v)
                    row[k] = utc.process_result_value(v, conn.dialect)
                out[row.pop("household_pid")] = row
            return out

        return self._read(read)

    def years_scored(self, region_prefix: str = "") -> list[int]:
        """The wave years with scores (any task) under a region prefix, in order."""
        prefix = check_region_prefix(region_prefix)
        query = sa.select(scores.c.year).where(scores.c.year.is_not(None)).distinct().order_by(scores.c.year)
        if prefix:
            query = query.where(_prefix_range(scores.c.region_code, prefix))
        return self._read(lambda conn: [int(y) for y in conn.execute(query).scalars()])

    def save_review_run(self, run: dict, rows: list[dict]) -> int:
        """Store a roster run and its list rows in one transaction (all or nothing); returns rows written.

        Raises `StoreUnavailable` when the database cannot take them (a run is simply repeated; no spool)."""
        run = {f: run.get(f) for f in REVIEW_RUN_FIELDS}
        for name in ("run_id", "year", "as_of", "created_at"):
            if run[name] is None:
                raise InvalidRow(f"review run: {name} is required")
        run["scope"] = check_region_prefix(run.get("scope"), "scope")
        run["params"], run["counts"] = jsonable(run["params"]), jsonable(run["counts"])
        prepared = []
        for i, row in enumerate(rows):
            where = f"review row {i}"
            _check_keys(row, REVIEW_FIELDS, where)
            if row.get("list_kind") not in REVIEW_LISTS:
                raise InvalidRow(f"{where}: list_kind must be one of {', '.join(REVIEW_LISTS)}")
            if row.get("run_id") != run["run_id"]:
                raise InvalidRow(f"{where}: run_id must be the run's ({run['run_id']})")
            out = {f: row.get(f) for f in REVIEW_FIELDS}
            out["household_pid"] = _pid(row.get("household_pid"), where)
            for k in ("reasons", "evidence"):
                out[k] = jsonable(out[k])
            prepared.append(out)
        try:
            with self.engine.begin() as conn:
                conn.execute(review_runs.insert(), [run])
                if prepared:
                    conn.execute(review_lists.insert(), prepared)
        except DB_ERRORS as exc:
            raise StoreUnavailable(f"cannot store the review lists in {self.safe_url}: {_first_line(exc)}") from exc
        return len(prepared)

    def latest_review_run(self, region: str = "", year: int | None = None) -> dict | None:
        """The latest roster run whose scope covers `region` (its scope is `region` or a prefix of it),
        of wave `year` if given; None if there is none."""
        region = check_region_prefix(region, "region")
        scopes = [""] + [region[:k] for k in REGION_LENGTHS if k <= len(region)]
        query = sa.select(*(review_runs.c[f] for f in REVIEW_RUN_FIELDS)).where(review_runs.c.scope.in_(scopes))
        if year is not None:
            query = query.where(review_runs.c.year == int(year))
        query = query.order_by(review_runs.c.created_at.desc(), review_runs.c.id.desc()).limit(1)

        def read(conn):
            row = conn.execute(query).first()
            return None if row is None else dict(row._mapping)

        return self._read(read)

    def review_list(self, run_id: str, list_kind: str, region_prefix: str = "", page: int = 1,
                    page_size: int = 50) -> tuple[list[dict], int]:
        """One list of a run under a region prefix, region by region in rank order: (rows of the page, total)."""
        if list_kind not in REVIEW_LISTS:
            raise ValueError(f"list must be one of {', '.join(REVIEW_LISTS)} (got {list_kind!r})")
        if page < 1 or not 1 <= page_size <= 1000:
            raise ValueError("page must be >= 1 and page_size between 1 and 1000")
        prefix = check_region_prefix(region_prefix)
        t = review_lists
        where = [t.c.run_id == run_id, t.c.list_kind == list_kind]
        if prefix:
            where.append(_prefix_range(t.c.region_code, prefix))
        query = (sa.select(*(t.c[f] for f in REVIEW_FIELDS)).where(*where)
                 .order_by(t.c.region_group, t.c.rank, t.c.id).limit(page_size).offset((page - 1) * page_size))
        count = sa.select(sa.func.count()).select_from(t).where(*where)

        def read(conn):
            total = int(conn.execute(count).scalar_one())
            return ([dict(r._mapping) for r in conn.execute(query)] if total else []), total

        return self._read(read)

    def _read(self, fn):
        """Run a read; a database failure becomes `StoreUnavailable` (the service answers 503)."""
        try:
            with self.engine.connect() as conn:
                return fn(conn)
        except DB_ERRORS as exc:
            raise StoreUnavailable(f"cannot read the inference store at {self.safe_url}: {_first_line(exc)}") from exc


def _newer_exists(s):
    """EXISTS (a later score of the same household and task than row `s`)."""
    n = scores.alias("n")
    return (sa.select(n.c.id).where(
        n.c.household_pid == s.c.household_pid, n.c.task == s.c.task,
        sa.or_(n.c.scored_at > s.c.scored_at, sa.and_(n.c.scored_at == s.c.scored_at, n.c.id > s.c.id)))
        .exists())


def _dedupe(rows: list[dict]) -> list[dict]:
    """Drop repeated record_ids within one batch (the first wins)."""
    seen: set[str] = set()
    out = []
    for r in rows:
        if r["record_id"] not in seen:
            seen.add(r["record_id"])
            out.append(r)
    return out


def insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table, rows: Iterable[dict]) -> int:
    """``INSERT ... ON CONFLICT (record_id) DO NOTHING``; returns how many rows were new."""
    rows = list(rows)
    if not rows:
        return 0
    name = conn.dialect.name
    if name in ("postgresql", "sqlite"):
        insert = postgresql.insert if name == "postgresql" else sqlite.insert
        stmt = insert(table).on_conflict_do_nothing(index_elements=["record_id"]).returning(table.c.record_id)
        return len(conn.execute(stmt, rows).all())
    # other databases: skip the ids already there (the unique constraint still guards races)
    ids = [r["record_id"] for r in rows]
    have = set(conn.execute(sa.select(table.c.record_id).where(table.c.record_id.in_(ids))).scalars())
    new = [r for r in rows if r["record_id"] not in have]
    if new:
        conn.execute(table.insert(), new)
    return len(new)

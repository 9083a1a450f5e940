"""API keys of the scoring service: who may score, report outcomes or read, and where.

A key looks like ``tpas_<key_id>_<secret>``: ``key_id`` (12 hex characters) is public and names
the key in lists and logs; ``secret`` (``secrets.token_urlsafe(32)``, 256 bits) is shown once, when
the key is created. The database keeps the key id and the SHA-256 of the secret, never the key.

Roles:

| role | may | regions |
|---|---|---|
| ``registry`` | ``score``, ``outcomes`` (the registry system sends households and outcomes) | reads nothing |
| ``official`` | ``read`` | its own region (a 2/4/6/9/12-digit code prefix; required) |
| ``analyst``  | ``read`` | everything |

`verify_key` runs on every request, so answers are kept in a small in-process cache for
`CACHE_TTL_S` seconds: a key revoked in another process stops working within that time (at once
in this one). While the database is unreachable, a key verified within the last `STALE_OK_S`
seconds keeps working, so registry systems can go on scoring into the spool; an unknown key then
raises `StoreUnavailable` (the service answers 503).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from serving.store import DB_ERRORS, REGION_LENGTHS, InferenceStore, StoreUnavailable, _first_line, api_keys
from tpas.errors import TpasError

ROLES = ("registry", "official", "analyst")
ACTIONS = frozenset({"score", "outcomes", "read"})
#: What each role may do.
PERMISSIONS: dict[str, frozenset[str]] = {
    "registry": frozenset({"score", "outcomes"}),
    "official": frozenset({"read"}),
    "analyst": frozenset({"read"}),
}
PREFIX = "tpas"
KEY_ID_BYTES = 6
CACHE_TTL_S = 30.0
STALE_OK_S = 3600.0
_CACHE_MAX = 10_000


class ApiKeyError(TpasError, ValueError):
    """A key cannot be created or revoked as asked (bad role, region, unknown key id)."""


@dataclass(frozen=True)
class ApiKey:
    """A verified key: who is calling."""

    key_id: str
    role: str
    region_code: str | None = None
    label: str | None = None


# -- keys ------------------------------------------------------------------------------------------------------
def check_region(region_code: str | None, role: str) -> str | None:
    """A valid region code for `role` (None if none), or ApiKeyError saying what is wrong."""
    if region_code is not None:
        region_code = str(region_code).strip() or None
    if region_code is None:
        if role == "official":
            raise ApiKeyError("an official key needs --region: the region code the official may read "
                              "(2 province, 4 city, 6 county, 9 township or 12 village digits)")
        return None
    if not region_code.isdigit() or len(region_code) not in REGION_LENGTHS:
        raise ApiKeyError(f"--region must be a region code of 2, 4, 6, 9 or 12 digits (got {region_code!r})")
    return region_code


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def parse_key(plaintext: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None."""
    if not isinstance(plaintext, str):
        return None
    parts = plaintext.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    key_id, secret = parts[1], parts[2]
    if len(key_id) != 2 * KEY_ID_BYTES or not all(c in "0123456789abcdef" for c in key_id) or len(secret) < 32:
        return None
    return key_id, secret


def _unavailable(store: InferenceStore, exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"cannot reach the inference store at {store.safe_url}: {_first_line(exc)}")


def create_key(store: InferenceStore, role: str, region_code: str | None = None,
               label: str | None = None) -> tuple[str, str]:
    """Create a key; returns (key_id, plaintext key). The plaintext is not kept anywhere."""
    if role not in ROLES:
        raise ApiKeyError(f"--role must be one of {', '.join(ROLES)} (got {role!r})")
    region_code = check_region(region_code, role)
    if label is not None and len(label) > 200:
        raise ApiKeyError("--label must be at most 200 characters")
    secret = secrets.token_urlsafe(32)
    try:
        with store.engine.begin() as conn:
            for _ in range(5):  # a key id collision (48 bits) is unlikely; try a fresh one if it happens
                key_id = secrets.token_hex(KEY_ID_BYTES)
                if conn.execute(sa.select(api_keys.c.id).where(api_keys.c.key_id == key_id)).first() is None:
                    break
            conn.execute(api_keys.insert().values(
                key_id=key_id, key_hash=_hash(secret), role=role, region_code=region_code, label=label,
                created_at=datetime.now(timezone.utc), revoked_at=None))
    except DB_ERRORS as exc:
        raise _unavailable(store, exc) from exc
    return key_id, f"{PREFIX}_{key_id}_{secret}"


def revoke_key(store: InferenceStore, key_id: str) -> bool:
    """Revoke a key (ApiKeyError if there is no such key); False if it was already revoked."""
    try:
        with store.engine.begin() as conn:
            row = conn.execute(sa.select(api_keys.c.revoked_at).where(api_keys.c.key_id == key_id)).first()
            if row is None:
                raise ApiKeyError(f"no API key with id {key_id!r} (see `tpas keys list`)")
            if row.revoked_at is not None:
                return False
            conn.execute(api_keys.update().where(api_keys.c.key_id == key_id)
                         .values(revoked_at=datetime.now(timezone.utc)))
    except DB_ERRORS as exc:
        raise _unavailable(store, exc) from exc
    clear_key_cache()
    return True


def list_keys(store: InferenceStore) -> list[dict]:
    """Every key (never a secret or hash): key_id, role, region_code, label, created_at, revoked_at."""
    cols = [api_keys.c.key_id, api_keys.c.role, api_keys.c.region_code, api_keys.c.label,
            api_keys.c.created_at, api_keys.c.revoked_at]
    try:
        with store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(*cols).order_by(api_keys.c.created_at,
                                                                                      api_keys.c.id))]
    except DB_ERRORS as exc:
        raise _unavailable(store, exc) from exc


# -- verification ------------------------------------------------------------------------------------------------
_cache_lock = threading.Lock()
_cache: dict[tuple[str, str], tuple[float, ApiKey | None]] = {}


def clear_key_cache() -> None:
    """Forget cached verifications (after a revocation; tests)."""
    with _cache_lock:
        _cache.clear()


def verify_key(store: InferenceStore, plaintext: str | None) -> ApiKey | None:
    """The key's identity if it is valid and not revoked, else None (see the module notes on caching)."""
    parsed = parse_key(plaintext) if plaintext else None
    if parsed is None:
        return None
    key_id, secret = parsed
    digest = _hash(secret)
    cache_key = (store.url, hashlib.sha256(plaintext.strip().encode("utf-8")).hexdigest())
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(cache_key)
    if hit is not None and now - hit[0] < CACHE_TTL_S:
        return hit[1]
    try:
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.key_id == key_id)).first()
    except DB_ERRORS as exc:
        if hit is not None and hit[1] is not None and now - hit[0] < STALE_OK_S:
            return hit[1]
        raise _unavailable(store, exc) from exc
    result = None
    if row is not None and hmac.compare_digest(row.key_hash, digest) and row.revoked_at is None:
        result = ApiKey(key_id=row.key_id, role=row.role, region_code=row.region_code, label=row.label)
    with _cache_lock:
        if len(_cache) >= _CACHE_MAX:
            _cache.clear()
        _cache[cache_key] = (now, result)
    return result


# -- permissions ------------------------------------------------------------------------------------------------
def allowed(key: ApiKey | None, action: str) -> bool:
    """May this key do `action` ('score', 'outcomes' or 'read')?"""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {sorted(ACTIONS)}")
    return key is not None and action in PERMISSIONS.get(key.role, frozenset())


def region_allowed(key: ApiKey | None, region_code: str | None) -> bool:
    """May this key read households of `region_code` (a code or prefix; '' or None = everywhere)?

    Officials: only codes that start with their region (so nothing wider); analysts: everything;
    registry keys read nothing.
    """
    if key is None:
        return False
    if key.role == "analyst":
        return True
    if key.role == "official":
        code = "" if region_code is None else str(region_code)
        return bool(key.region_code) and code.startswith(key.region_code)
    return False


def read_scope(key: ApiKey | None, requested: str | None = None) -> str | None:
    """The region prefix a read should use: the request's if allowed, the key's own when none is
    asked (officials), '' (everywhere) for an analyst asking nothing; None if not allowed."""
    if key is None or not allowed(key, "read"):
        return None
    requested = None if requested is None else str(requested).strip()
    if not requested:
        return (key.region_code or "") if key.role == "official" else ""
    return requested if region_allowed(key, requested) else None

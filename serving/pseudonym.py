"""Pseudonymous household ids: a keyed hash, so the store never holds a registry's household id.

`pseudonymize(household_id)` is HMAC-SHA256 over the id with a secret key, hex, truncated to 32
characters (128 bits). The same id gives the same pseudonym for as long as the key stays the same,
so scores and outcomes of one household line up; without the key the id cannot be recovered or
checked by guessing (registry ids are short and structured, a plain hash would not protect them).

The key comes from ``TPAS_ID_KEY`` (at least 16 characters) or, when that is unset, from the file
``<data_dir>/secrets/id_key``: 32 random bytes written hex-encoded with 0600 permissions the first
time it is needed. Either way the key material is the UTF-8 text, so ``TPAS_ID_KEY=$(cat
data/secrets/id_key)`` on another machine gives the same pseudonyms. Losing or changing the key
cuts every stored score off from its household: back the key file up with the database.

Raw household ids, names, ID-card and phone numbers (`features.schema.pii_columns()`) are never
stored or logged by the serving package; nothing here logs an id.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
from pathlib import Path

from tpas.errors import ConfigError

log = logging.getLogger("tpas.serving.pseudonym")

#: Length of a pseudonym (hex characters of the HMAC-SHA256 digest kept).
PSEUDONYM_LENGTH = 32
#: Shortest accepted ``TPAS_ID_KEY``.
MIN_KEY_CHARS = 16
_DOMAIN = b"tpas-household-id:"
_PSEUDONYM_RE = re.compile(r"[0-9a-f]{%d}" % PSEUDONYM_LENGTH)

_lock = threading.Lock()
_file_keys: dict[str, bytes] = {}


def key_path(data_dir: Path | None = None) -> Path:
    """Where the generated key is kept: ``<data_dir>/secrets/id_key``."""
    if data_dir is None:
        from tpas.settings import get_settings

        data_dir = get_settings().data_dir
    return Path(data_dir) / "secrets" / "id_key"


def _create_key_file(path: Path) -> None:
    """Write a new random key at `path` unless one appears first (atomic: never a half-written key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(path.parent, 0o700)
    except OSError:  # pragma: no cover - e.g. a folder owned by someone else
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_bytes(32).hex() + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created the key meanwhile: theirs wins
        log.info("created a new pseudonym key at %s (back it up with the database)", path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def _read_key_file(path: Path) -> bytes:
    text = path.read_text(encoding="ascii").strip()
    if len(text) < MIN_KEY_CHARS:
        raise ConfigError(f"pseudonym key file {path} is empty or too short; restore it from a backup "
                          f"(deleting it changes every pseudonym)")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("pseudonym key file %s is readable by others (mode %o); chmod 600 it", path, mode)
    return text.encode("ascii")


def id_key() -> bytes:
    """The key material: ``TPAS_ID_KEY`` if set, else the key file (created on first use)."""
    from tpas.settings import get_settings

    settings = get_settings()
    env = settings.id_key.get_secret_value().strip() if settings.id_key is not None else ""
    if env:
        if len(env) < MIN_KEY_CHARS:
            raise ConfigError(f"TPAS_ID_KEY: must be at least {MIN_KEY_CHARS} characters (a long random string)")
        return env.encode("utf-8")
    path = key_path(settings.data_dir)
    cache_key = str(path)  # not resolved: resolving the path cost more than the HMAC itself
    key = _file_keys.get(cache_key)
    if key is not None:
        return key
    path = path.resolve()
    with _lock:
        if cache_key not in _file_keys:
            if not path.exists():
                _create_key_file(path)
            _file_keys[cache_key] = _read_key_file(path)
        return _file_keys[cache_key]


def clear_key_cache() -> None:
    """Forget keys read from files (tests; after restoring a key file)."""
    with _lock:
        _file_keys.clear()


def pseudonymize(household_id: str, key: bytes | None = None) -> str:
    """The pseudonym of a household id: HMAC-SHA256(key, id), 32 hex characters.

    Surrounding blanks are ignored ("H1 " and "H1" are the same household); an empty id is refused.
    """
    text = str(household_id).strip()
    if not text:
        raise ValueError("cannot pseudonymize an empty household id")
    digest = hmac.new(key if key is not None else id_key(), _DOMAIN + text.encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:PSEUDONYM_LENGTH]


def is_pseudonym(value: object) -> bool:
    """True for a string shaped like `pseudonymize`'s output (32 lowercase hex characters)."""
    return isinstance(value, str) and _PSEUDONYM_RE.fullmatch(value) is not None

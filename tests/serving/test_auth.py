"""API keys (hash stored, verify, revoke, permissions), the `tpas keys` commands, pseudonyms."""

from __future__ import annotations

import stat

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from serving import auth
from serving.auth import ApiKey, ApiKeyError, allowed, create_key, list_keys, read_scope, region_allowed, revoke_key, \
    verify_key
from serving.store import StoreUnavailable, api_keys
from tpas.errors import ConfigError


# -- keys ----------------------------------------------------------------------------------------------------------
def test_create_stores_the_hash_not_the_key(store):
    key_id, key = create_key(store, "official", "430521", label="county office")
    assert key.startswith(f"tpas_{key_id}_") and len(key) > 50
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(api_keys))]
    assert len(rows) == 1
    row = rows[0]
    secret = key.split("_", 2)[2]
    assert row["key_id"] == key_id and row["role"] == "official" and row["region_code"] == "430521"
    assert all(secret not in str(v) and key not in str(v) for v in row.values())
    assert row["key_hash"] == auth._hash(secret) and row["revoked_at"] is None
    assert verify_key(store, key) == ApiKey(key_id, "official", "430521", "county office")
    listed = list_keys(store)
    assert [k["key_id"] for k in listed] == [key_id] and "key_hash" not in listed[0]


def test_wrong_malformed_and_revoked_keys_are_rejected(store):
    key_id, key = create_key(store, "registry")
    other_id, other = create_key(store, "analyst")
    prefix, kid, secret = key.split("_", 2)
    assert verify_key(store, key).role == "registry"
    wrong_secret = f"{prefix}_{kid}_{'A' * len(secret)}"
    swapped = f"{prefix}_{other_id}_{secret}"  # a real secret under another key's id
    unknown = f"{prefix}_{'0' * 12}_{secret}"
    for bad in (wrong_secret, swapped, unknown, "", None, "tpas_", secret, key[:-1], "Bearer " + key):
        assert verify_key(store, bad) is None, bad
    assert revoke_key(store, key_id) is True
    assert verify_key(store, key) is None  # at once in this process (cache cleared)
    assert revoke_key(store, key_id) is False
    assert verify_key(store, other).role == "analyst"
    with pytest.raises(ApiKeyError, match="no API key with id"):
        revoke_key(store, "feedfacecafe")
    assert [k["revoked_at"] is not None for k in list_keys(store)] == [True, False]


@pytest.mark.parametrize("role, region, message", [
    ("official", None, "an official key needs --region"),
    ("official", "", "an official key needs --region"),
    ("official", "4305x1", "--region must be a region code"),
    ("official", "43052", "--region must be a region code"),
    ("analyst", "4305211", "--region must be a region code"),
    ("admin", None, "--role must be one of registry, official, analyst"),
])
def test_bad_role_or_region(store, role, region, message):
    with pytest.raises(ApiKeyError, match=message.replace("-", r"\-")):
        create_key(store, role, region)
    assert list_keys(store) == []


def test_verification_is_cached_and_survives_an_outage(tmp_path, monkeypatch):
    from tests.serving.conftest import open_store

    store = open_store(f"sqlite:///{tmp_path / 'k.db'}", tmp_path / "spool")
    store.migrate()
    _, key = create_key(store, "registry")
    _, never_seen = create_key(store, "registry")
    assert verify_key(store, key) is not None
    good_engine = store.engine
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    store.engine = sa.create_engine(f"sqlite:///{blocker / 'x.db'}")  # the database goes away
    assert verify_key(store, key) is not None  # fresh cache entry
    clock = [auth.time.monotonic() + auth.CACHE_TTL_S + 1]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    assert verify_key(store, key) is not None  # stale, but the database is down: still accepted
    with pytest.raises(StoreUnavailable, match="cannot reach the inference store"):
        verify_key(store, never_seen)
    clock[0] += auth.STALE_OK_S
    with pytest.raises(StoreUnavailable):
        verify_key(store, key)
    store.engine.dispose()
    store.engine = good_engine
    store.close()


# -- permissions -----------------------------------------------------------------------------------------------------
REGISTRY = ApiKey("a" * 12, "registry")
OFFICIAL = ApiKey("b" * 12, "official", "430521")
ANALYST = ApiKey("c" * 12, "analyst")


@pytest.mark.parametrize("key, action, expected", [
    (REGISTRY, "score", True), (REGISTRY, "outcomes", True), (REGISTRY, "read", False),
    (OFFICIAL, "score", False), (OFFICIAL, "outcomes", False), (OFFICIAL, "read", True),
    (ANALYST, "score", False), (ANALYST, "outcomes", False), (ANALYST, "read", True),
    (None, "read", False),
])
def test_permission_table(key, action, expected):
    assert allowed(key, action) is expected


def test_unknown_action_is_a_bug():
    with pytest.raises(ValueError):
        allowed(ANALYST, "delete")


@pytest.mark.parametrize("key, region, expected", [
    (OFFICIAL, "430521", True), (OFFICIAL, "430521101", True), (OFFICIAL, "430521101201", True),
    (OFFICIAL, "430522101201", False), (OFFICIAL, "4305", False), (OFFICIAL, "", False), (OFFICIAL, None, False),
    (ANALYST, "", True), (ANALYST, "44", True), (ANALYST, None, True),
    (REGISTRY, "430521", False), (REGISTRY, "", False), (None, "430521", False),
])
def test_region_table(key, region, expected):
    assert region_allowed(key, region) is expected


def test_read_scope():
    assert read_scope(OFFICIAL) == "430521"
    assert read_scope(OFFICIAL, "430521101") == "430521101"
    assert read_scope(OFFICIAL, "43") is None
    assert read_scope(ANALYST) == "" and read_scope(ANALYST, "44") == "44"
    assert read_scope(REGISTRY) is None and read_scope(REGISTRY, "430521") is None


# -- the command line --------------------------------------------------------------------------------------------------
@pytest.fixture
def cli(db_url, monkeypatch):
    """Run `tpas` against the test database (TPAS_DATABASE_URL), returning (invoke, store)."""
    from tests.serving.conftest import open_store
    from tpas import settings
    from tpas.cli import app

    monkeypatch.setenv("TPAS_DATABASE_URL", db_url)
    settings.get_settings.cache_clear()
    runner = CliRunner()
    store = open_store(db_url, None)
    yield (lambda *args: runner.invoke(app, list(args))), store
    store.close()


def test_keys_create_prints_a_working_key(cli):
    invoke, store = cli
    result = invoke("keys", "create", "--role", "official", "--region", "430521", "--label", "county office")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) >= 2 and "shown only this once" in result.stdout
    key = lines[-1].split()[-1]
    verified = verify_key(store, key)
    assert verified is not None and verified.role == "official" and verified.region_code == "430521"
    listed = invoke("keys", "list")
    assert listed.exit_code == 0 and verified.key_id in listed.stdout and "county office" in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout
    revoked = invoke("keys", "revoke", verified.key_id)
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert verify_key(store, key) is None
    assert invoke("db", "upgrade").exit_code == 0


def test_keys_create_migrates_an_empty_database(cli):
    invoke, store = cli
    assert "api_keys" not in sa.inspect(store.engine).get_table_names()
    result = invoke("keys", "create", "--role", "registry")
    assert result.exit_code == 0, result.output
    assert verify_key(store, result.stdout.strip().splitlines()[-1].split()[-1]).role == "registry"


@pytest.mark.parametrize("args, message", [
    (["--role", "admin"], "error: --role must be one of registry, official, analyst (got 'admin')"),
    (["--role", "official"], "error: an official key needs --region"),
    (["--role", "official", "--region", "43x"], "error: --region must be a region code of 2, 4, 6, 9 or 12 digits"),
])
def test_keys_create_errors(cli, args, message):
    invoke, store = cli
    result = invoke("keys", "create", *args)
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(message) and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_keys_revoke_unknown_and_unreachable_database(cli, monkeypatch):
    invoke, _ = cli
    result = invoke("keys", "revoke", "feedfacecafe")
    assert result.exit_code == 2 and "no API key with id 'feedfacecafe'" in result.stderr
    from tpas import settings

    monkeypatch.setenv("TPAS_DATABASE_URL", "postgresql+psycopg://tpas:hunter2@127.0.0.1:1/nowhere")
    settings.get_settings.cache_clear()
    result = invoke("keys", "list")
    assert result.exit_code == 2 and "cannot migrate the inference store" in result.stderr
    assert "hunter2" not in result.output


# -- pseudonyms ----------------------------------------------------------------------------------------------------
def test_pseudonyms_are_stable_for_a_key_and_differ_between_keys(monkeypatch):
    from serving.pseudonym import is_pseudonym, pseudonymize
    from tpas import settings

    monkeypatch.setenv("TPAS_ID_KEY", "first-key-0123456789")
    settings.get_settings.cache_clear()
    a = pseudonymize("HH-430521-00042")
    assert a == pseudonymize("HH-430521-00042") == pseudonymize(" HH-430521-00042 ")
    assert is_pseudonym(a) and "00042" not in a
    assert pseudonymize("HH-430521-00043") != a
    monkeypatch.setenv("TPAS_ID_KEY", "second-key-0123456789")
    settings.get_settings.cache_clear()
    assert pseudonymize("HH-430521-00042") != a
    with pytest.raises(ValueError):
        pseudonymize("  ")


def test_key_file_created_once_with_0600(serving_env, monkeypatch):
    from serving import pseudonym
    from tpas import settings

    path = pseudonym.key_path()
    assert not path.exists()
    a = pseudonym.pseudonymize("H1")
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64  # 32 random bytes, hex
    pseudonym.clear_key_cache()
    assert pseudonym.pseudonymize("H1") == a  # read back, not regenerated
    # the same key handed over through the environment gives the same pseudonyms
    monkeypatch.setenv("TPAS_ID_KEY", path.read_text().strip())
    settings.get_settings.cache_clear()
    assert pseudonym.pseudonymize("H1") == a
    # another data folder, another key
    monkeypatch.delenv("TPAS_ID_KEY")
    monkeypatch.setenv("TPAS_DATA_DIR", str(serving_env.parent / "other-data"))
    settings.get_settings.cache_clear()
    assert pseudonym.pseudonymize("H1") != a


def test_short_env_key_is_refused(monkeypatch):
    from serving.pseudonym import pseudonymize
    from tpas import settings

    monkeypatch.setenv("TPAS_ID_KEY", "short")
    settings.get_settings.cache_clear()
    with pytest.raises(ConfigError, match="TPAS_ID_KEY"):
        pseudonymize("H1")

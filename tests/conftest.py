"""Shared fixtures: one small synthetic panel, its training sets, and an isolated data folder.

Everything heavy is built once per test session in a temporary folder; tests that write
(MLflow runs, registry aliases) get the session's own `TPAS_DATA_DIR`, never the checkout's.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import pytest

from tpas.config import load_params
from tpas.settings import PROJECT_ROOT

SMALL_HOUSEHOLDS = 1200
SMALL_SEED = 7


def _clear_caches() -> None:
    from tpas import config, settings

    settings.get_settings.cache_clear()
    config.get_params.cache_clear()


@pytest.fixture(scope="session")
def params():
    """The shipped params.yaml."""
    return load_params(PROJECT_ROOT / "params.yaml")


@contextmanager
def data_dir_env(data_dir: Path, unset: tuple[str, ...] = ("MLFLOW_TRACKING_URI",)):
    """TPAS_DATA_DIR set to `data_dir` (and `unset` removed) inside the block, the environment restored after."""
    keys = ("TPAS_DATA_DIR", *unset)
    old = {k: os.environ.get(k) for k in keys}
    os.environ["TPAS_DATA_DIR"] = str(data_dir)
    for k in unset:
        os.environ.pop(k, None)
    _clear_caches()
    try:
        yield data_dir
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _clear_caches()


@pytest.fixture(scope="session")
def tpas_env(tmp_path_factory):
    """A session-wide data folder (MLflow store, SQLite, training sets) set through the environment."""
    with data_dir_env(tmp_path_factory.mktemp("tpas-data")) as data_dir:
        yield data_dir


@pytest.fixture(scope="session")
def small_panel(tmp_path_factory, params) -> Path:
    """A 1,200-household synthetic panel, 2016-2025 (partitioned Parquet)."""
    from features.sources.synthetic import generate_panel

    out = tmp_path_factory.mktemp("panel") / "panel"
    generate_panel(out, households=SMALL_HOUSEHOLDS, years=list(range(2016, 2026)), seed=SMALL_SEED,
                   params=params, progress=False)
    return out


@pytest.fixture(scope="session")
def training_sets(small_panel, tpas_env, params) -> dict[str, Path]:
    """The poverty and relapse training sets of the small panel, in the session data folder."""
    from features.build import build_training_set

    out = {}
    for task in ("poverty", "relapse"):
        out[task] = tpas_env / "training" / task
        build_training_set(task, small_panel, out[task], params)
    return out


@pytest.fixture(scope="session")
def panel_payload(small_panel) -> list[dict]:
    """The small panel as `/score` households (latest wave, earlier waves attached)."""
    from features.sources.registry import load_registry
    from serving.payload import records_to_payload

    records, _ = load_registry(small_panel)
    return records_to_payload(records)


def idb_survey() -> Path | None:
    from tpas.demo import idb_survey_path

    return idb_survey_path()


@pytest.fixture(scope="session")
def survey_path() -> Path:
    path = idb_survey()
    if path is None:
        pytest.skip("the IDB survey is not beside the checkout (../shared/data/idb-costa-rica/survey.csv); "
                    "set TPAS_IDB_SURVEY to run the real-data tests")
    return path


@pytest.fixture(scope="session")
def champions(training_sets, params, tpas_env):
    """LightGBM champions of both tasks in the session registry (gate relaxed: 1,200 households)."""
    from training import commands, tracking

    relaxed = params.model_copy(update={"gate": {t: g.model_copy(update={"min_auc": 0.5, "max_ece": 1.0})
                                                 for t, g in params.gate.items()}})
    versions = {}
    for task in ("poverty", "relapse"):
        uri = commands.train(task, training_sets[task], "lightgbm", params)[-1].split()[-1]
        versions[task] = uri.rsplit("/", 1)[1]
        tracking.promote(task, versions[task], relaxed)
    return versions


def pin_champions(versions: dict[str, str]) -> None:
    """Point the `champion` aliases back at these versions (model tests promote others in between)."""
    from mlflow import MlflowClient

    from training.tracking import CHAMPION, configure, model_name

    configure()
    client = MlflowClient()
    for task, version in versions.items():
        client.set_registered_model_alias(model_name(task), CHAMPION, version)


@pytest.fixture
def pinned_champions(champions):
    """`champions`, with the aliases pointing at them for this test."""
    pin_champions(champions)
    return champions


@pytest.fixture(scope="session")
def live_server(champions, tpas_env, tmp_path_factory):
    """`tpas serve` in its own process on a free loopback port (the real BentoML server); yields its URL."""
    from serving.launch import ServerFailed, start_server, stop_server

    pin_champions(champions)
    env = {**os.environ, "TPAS_DATA_DIR": str(tpas_env), "BENTOML_HOME": str(tpas_env / "bentoml")}
    env.pop("MLFLOW_TRACKING_URI", None)
    try:
        # two workers whatever the machine: the tests go through the multi-process path (shared store, spool)
        proc, url = start_server(tmp_path_factory.mktemp("server") / "server.log", env=env, timeout_s=120, workers=2)
    except ServerFailed as exc:
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        stop_server(proc)

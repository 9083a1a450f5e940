"""Fixtures of the monitoring tests: their own data folder, fast champions, and the simulated waves.

The monitoring tests write scores of simulated 2026 waves into an inference store, which would
change what the service and review-list tests read from the session store: so they get their own
data folder (MLflow registry, store, reports) for the length of this package, over the session's
small panel (1,200 households, 2016-2025). The champions are LightGBM models logged with the same
artifacts as `tpas train` (reference snapshot, held-out predictions, training-set manifest) but
fitted with fewer trees and calibration folds and without the figures, to keep the package fast.

`steady` and `shock` run in that order on one store, as an operator would: `tpas monitor simulate`,
then `tpas monitor run`; `outcomes` reports outcomes that contradict the scores, then runs again.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import data_dir_env


def tpas(*args: str):
    from tpas.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="package")
def mon_env(tmp_path_factory, small_panel, params):
    """A data folder of its own (TPAS_DATA_DIR) for the monitoring package, restored afterwards."""
    outer = os.environ.get("TPAS_DATA_DIR")
    with data_dir_env(tmp_path_factory.mktemp("monitoring-data"),
                      unset=("MLFLOW_TRACKING_URI", "TPAS_DATABASE_URL")) as data_dir:
        yield data_dir
    from training.tracking import configure

    if outer:
        configure()  # point MLflow back at the session's store


@pytest.fixture(scope="package")
def fast_champions(mon_env, small_panel, params):
    """Champions of both tasks on the small panel: `tpas train`'s artifacts, fewer trees (see module doc)."""
    from features.build import build_training_set
    from training.tracking import log_model_run, promote
    from training.trainer import fit_risk_model, load_training_set

    train = params.train.model_copy(update={
        "lightgbm": params.train.lightgbm.model_copy(update={"num_boost_round": 80}), "calibration_folds": 3})
    fast = params.model_copy(update={"train": train,
                                     "evaluate": params.evaluate.model_copy(update={"bootstrap": 10})})
    relaxed = params.model_copy(update={"gate": {}})
    versions = {}
    for task in ("poverty", "relapse"):
        out = mon_env / "training" / task
        build_training_set(task, small_panel, out, params)
        ts = load_training_set(out)
        fit = fit_risk_model(ts, "lightgbm", fast)
        _, uri = log_model_run(task=task, kind="lightgbm", fit=fit, ts=ts, params=fast,
                               artifacts={"reference/reference.parquet": fit.reference,
                                          "evaluation/heldout_predictions.parquet": fit.test_frame})
        versions[task] = uri.rsplit("/", 1)[1]
        promote(task, versions[task], relaxed)
    return versions


def _latest(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)


@pytest.fixture(scope="package")
def steady(fast_champions, mon_env):
    """`tpas monitor simulate --scenario steady`, then `tpas monitor run` (both tasks)."""
    sim = tpas("monitor", "simulate", "--scenario", "steady")
    run = tpas("monitor", "run")
    reports = _latest(mon_env / "monitoring" / "reports", "*.json")
    return {"simulate": sim, "run": run, "reports": {json.loads(p.read_text())["tpas"]["task"]: p for p in reports}}


@pytest.fixture(scope="package")
def shock(steady, mon_env):
    """After the steady wave: `tpas monitor simulate --scenario shock`, then `tpas monitor run`."""
    before = set((mon_env / "monitoring" / "alerts").glob("*.json")) if (mon_env / "monitoring" / "alerts").exists() \
        else set()
    sim = tpas("monitor", "simulate", "--scenario", "shock")
    run = tpas("monitor", "run")
    alerts = [p for p in _latest(mon_env / "monitoring" / "alerts", "*.json") if p not in before]
    return {"simulate": sim, "run": run,
            "alerts": {json.loads(p.read_text())["task"]: json.loads(p.read_text()) for p in alerts}}


@pytest.fixture(scope="package")
def outcomes(shock, mon_env):
    """Outcomes that contradict the poverty scores (the riskiest half not poor, the rest poor), then a run."""
    import uuid

    import numpy as np

    from monitoring.window import latest_per_household, read_scores
    from serving.store import InferenceStore

    store = InferenceStore()
    try:
        rows = latest_per_household(read_scores(store, "poverty", None, None))
        order = np.argsort(-rows["risk"].to_numpy())
        riskiest = set(rows["household_pid"].to_numpy()[order[: len(order) // 2]])
        store.record_outcomes([
            {"record_id": uuid.uuid4().hex, "household_pid": pid, "task": "poverty",
             "outcome": "not_poor" if pid in riskiest else "poor", "observed_on": datetime.now(timezone.utc).date()}
            for pid in rows["household_pid"]])
    finally:
        store.close()
    before = set((mon_env / "monitoring" / "alerts").glob("poverty-*.json"))
    run = tpas("monitor", "run", "--task", "poverty", "--no-workspace")
    alerts = [p for p in _latest(mon_env / "monitoring" / "alerts", "poverty-*.json") if p not in before]
    report = _latest(mon_env / "monitoring" / "reports", "poverty-*.json")[-1]
    return {"run": run, "alert": json.loads(alerts[-1].read_text()) if alerts else None,
            "summary": json.loads(report.read_text())["tpas"]}

"""Batch scoring on a local Dask cluster: champions of the small panel, one cluster, `tpas predict` references."""

from __future__ import annotations

import logging

import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def _champions_pinned(pinned_champions):
    """Every batch test runs with the session champions as the `champion` aliases."""


def warm_workers(client, wait: bool = True) -> list:
    """Import the scoring pipeline in every worker (once at the start, while the champions train; again
    after a worker restart). Returns the warm-up futures (keep them until they are done)."""
    futures = [client.submit(_warm, workers=[w], allow_other_workers=False, pure=False)
               for w in client.scheduler_info()["workers"]]
    if wait:
        client.gather(futures)
    return futures


def _warm() -> None:
    from features.dask_build import _import_pipeline

    _import_pipeline(("serving.batch", *__import__("features.dask_build").dask_build.PIPELINE_MODULES))


@pytest.fixture(scope="session")
def dask_client():
    """A local cluster of two single-threaded worker processes, shared by the batch tests."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        warming = warm_workers(client, wait=False)  # noqa: F841  (kept until the session ends)
        yield client


def sort_scores(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("household_id", kind="stable").reset_index(drop=True)


@pytest.fixture(scope="session")
def reference(small_panel, champions, tmp_path_factory):
    """`training.commands.predict` of each champion on the small panel (latest waves): scores and rejects."""
    from tests.conftest import pin_champions
    from training import commands

    pin_champions(champions)
    out = tmp_path_factory.mktemp("predict")
    refs = {}
    for task in ("poverty", "relapse"):
        path = out / f"{task}.parquet"
        commands.predict(task, None, small_panel, path)
        refs[task] = {"scores": sort_scores(pd.read_parquet(path)),
                      "rejects": pd.read_csv(out / f"{task}.rejects.csv", dtype=str)}
    return refs

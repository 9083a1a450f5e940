"""`tpas score-batch` on a local Dask cluster of two worker processes equals `tpas predict`, household by
household, also when a worker dies mid-run or the run is interrupted and resumed; the feature build on
the cluster equals the single-process featurizer."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pandas as pd
import pytest

from features.sources.registry import load_registry
from serving.batch import read_scores, score_batch
from tests.batch.conftest import sort_scores
from tpas.errors import DataError

pytestmark = pytest.mark.slow


def _run(task, panel, out, client, **kw):
    kw.setdefault("partitions", 4)
    return score_batch(task, str(panel), out, client=client, progress=False, echo=lambda line: None, **kw)


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _assert_equal_scores(out: Path, expected: pd.DataFrame) -> None:
    got = read_scores(out)
    assert got["household_id"].is_unique  # nobody twice
    pd.testing.assert_frame_equal(sort_scores(got), expected, check_exact=True)  # nobody lost, same values


@pytest.mark.parametrize("task", ["poverty", "relapse"])
def test_scores_equal_predict_household_by_household(task, dask_client, small_panel, champions, reference,
                                                     tmp_path):
    out = tmp_path / "out"
    lines = _run(task, small_panel, out, dask_client)
    expected = reference[task]["scores"]
    _assert_equal_scores(out, expected)  # risk, score, tier, reasons texts, eligible: exact
    assert list(read_scores(out).columns) == list(expected.columns)

    m = _manifest(out)
    assert m["status"] == "complete" and m["partitions_total"] == 4 and len(m["partitions_done"]) == 4
    assert m["model"]["uri_given"] == f"models:/tpas-{task}@champion"
    assert m["model"]["version"] == champions[task] and m["model"]["uri"] == f"models:/tpas-{task}/{champions[task]}"
    assert m["households_scored"] == len(expected) == sum(e["rows"] for e in m["partitions_done"].values())
    assert {e["model_version"] for e in m["partitions_done"].values()} == {champions[task]}
    assert not (out / "_staging").exists()
    assert "1,200 households" in lines[0]

    # rejects: written per partition, together the same records and reasons as `tpas predict`'s
    rej = pd.concat([pd.read_csv(f, dtype=str) for f in sorted((out / "rejects").glob("part-*.csv"))])
    cols = ["table", "household_id", "year", "member_no", "column", "value", "reason"]
    key = lambda f: f[cols].fillna("").sort_values(cols).reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(key(rej), key(reference[task]["rejects"]))
    assert m["rejected"]["problems"] == len(reference[task]["rejects"]) > 0

    # the summary by county adds up to the scores
    summary = pd.read_csv(out / "summary_by_county.csv", dtype={"county_code": str})
    records, _ = load_registry(small_panel)
    villages = records.households[["household_id", "year", "village_code"]].astype({"year": "int64"})
    scored = expected.merge(villages, on=["household_id", "year"], how="left")
    scored["county_code"] = scored["village_code"].str[:6]
    want = scored.groupby("county_code").agg(households=("risk", "size"), mean_risk=("risk", "mean"))
    got = summary.set_index("county_code")
    assert got["households"].sum() == len(expected)
    pd.testing.assert_series_equal(got["households"], want["households"], check_dtype=False)
    pd.testing.assert_series_equal(got["mean_risk"], want["mean_risk"], check_exact=False, rtol=1e-12)
    tiers = [c for c in got.columns if c.startswith("n_") and c != "n_eligible"]
    assert len(tiers) == 3 and (got[tiers].sum(axis=1) == got["households"]).all()
    for t in tiers:
        assert got[t].to_dict() == (scored["tier"] == t[2:]).groupby(scored["county_code"]).sum().to_dict()
    assert got["county_name"].notna().all()


def test_year_equals_predict_year(small_panel, champions, dask_client, tmp_path):
    """`--year`: the wave of that year (relapse: its history from the earlier waves read)."""
    from training import commands

    ref = tmp_path / "ref.parquet"
    commands.predict("relapse", None, small_panel, ref, year=2023)
    out = tmp_path / "out"
    _run("relapse", small_panel, out, dask_client, year=2023, partitions=3)
    expected = sort_scores(pd.read_parquet(ref))
    assert (expected["year"] == 2023).all()
    _assert_equal_scores(out, expected)


def test_interrupted_run_resumes_without_losing_or_duplicating(small_panel, champions, reference, dask_client,
                                                               tmp_path):
    out = tmp_path / "out"
    lines = _run("relapse", small_panel, out, dask_client, partitions=5, max_partitions=2)
    m = _manifest(out)
    assert m["status"] == "incomplete" and sorted(m["partitions_done"]) == ["00000", "00001"]
    assert "incomplete: 3 of 5 partitions left" in lines[2]
    assert (out / "_staging").exists() and not (out / "summary_by_county.csv").exists()
    # a killed run may leave: a partition written but not recorded, a temporary file, a recorded one lost
    (out / "scores" / "part-00000.parquet").unlink()
    (out / "scores" / ".part-00003.parquet.0123456789ab.tmp").write_bytes(b"half a file")

    from typer.testing import CliRunner

    from tpas.cli import app

    res = CliRunner().invoke(app, ["score-batch", "--task", "relapse", "--input", str(small_panel), "--out", str(out),
                                   "--scheduler", dask_client.scheduler.address, "--partitions", "5"])
    assert res.exit_code == 0, res.output
    assert f"tpas-relapse version {champions['relapse']}" in res.output
    assert "resuming: 1 of 5 partitions already scored" in res.output
    m = _manifest(out)
    assert m["status"] == "complete" and len(m["runs"]) == 2
    assert m["runs"][1]["partitions_scored"] == 4
    assert m["partitions_done"]["00001"]["run"] == 1 and m["partitions_done"]["00000"]["run"] == 2
    assert not list((out / "scores").glob(".*.tmp"))
    _assert_equal_scores(out, reference["relapse"]["scores"])
    # a third run with the same arguments has nothing left to do
    again = _run("relapse", small_panel, out, dask_client, partitions=5)
    assert again[0].startswith("scored 0 households in 0 partitions this run (1,200 households")


def test_refuses_to_mix_model_versions_or_inputs(small_panel, champions, dask_client, tmp_path, params):
    from mlflow import MlflowClient

    from features.sources.synthetic import generate_panel
    from training.tracking import configure

    out = tmp_path / "out"
    _run("poverty", small_panel, out, dask_client, max_partitions=1)
    configure()
    mv = MlflowClient().get_model_version("tpas-poverty", champions["poverty"])
    other = MlflowClient().create_model_version("tpas-poverty", mv.source, run_id=mv.run_id).version
    assert str(other) != champions["poverty"]
    with pytest.raises(DataError, match=rf"version {champions['poverty']} there, tpas-poverty version {other} now"):
        _run("poverty", small_panel, out, dask_client, model_uri=f"models:/tpas-poverty/{other}")
    small = tmp_path / "other-panel"
    generate_panel(small, households=250, years=[2024, 2025], seed=3, params=params, progress=False)
    with pytest.raises(DataError, match="other input files"):
        _run("poverty", small, out, dask_client)
    with pytest.raises(DataError, match="partitions 4 there, 3 now"):
        _run("poverty", small_panel, out, dask_client, partitions=3)
    assert len(_manifest(out)["partitions_done"]) == 1  # untouched

    _run("poverty", small_panel, out, dask_client, model_uri=f"models:/tpas-poverty/{other}", overwrite=True,
         max_partitions=1)
    m = _manifest(out)
    assert m["model"]["version"] == str(other) and len(m["partitions_done"]) == 1
    assert len(list((out / "scores").glob("part-*.parquet"))) == 1


def test_feature_build_on_the_cluster_equals_the_featurizer(small_panel, training_sets, dask_client, tmp_path):
    from features.dask_build import build_features_on_cluster

    fz_path = training_sets["relapse"] / "featurizer.joblib"
    out = tmp_path / "features"
    manifest = build_features_on_cluster(small_panel, fz_path, out, dask_client, partitions=3, echo=lambda s: None)
    assert manifest["status"] == "complete"
    got = pd.concat([pd.read_parquet(f) for f in sorted((out / "features").glob("part-*.parquet"))])
    records, report = load_registry(small_panel)
    want = joblib.load(fz_path).transform(records).reset_index()
    assert manifest["rows"] == len(want) == len(got)
    assert manifest["rejected"]["problems"] == len(report.rejects)
    keys = ["household_id", "year"]
    pd.testing.assert_frame_equal(got.sort_values(keys).reset_index(drop=True),
                                  want.sort_values(keys).reset_index(drop=True), check_exact=True)


def test_features_only_writes_the_models_features(small_panel, champions, dask_client, tmp_path):
    """`tpas score-batch --features-only`: the champion's own featurizer, on the cluster, equals it in process."""
    from training.tracking import load_bundle

    out = tmp_path / "out"
    lines = _run("poverty", small_panel, out, dask_client, features_only=True, partitions=2)
    assert lines[0].startswith("featurized 11,4")
    m = _manifest(out)
    assert m["run"]["kind"] == "features" and m["run"]["model"]["version"] == champions["poverty"]
    got = pd.concat([pd.read_parquet(f) for f in sorted((out / "features").glob("part-*.parquet"))])
    model = load_bundle(f"models:/tpas-poverty/{champions['poverty']}")
    want = model.features(load_registry(small_panel)[0]).reset_index()
    keys = ["household_id", "year"]
    pd.testing.assert_frame_equal(got.sort_values(keys).reset_index(drop=True),
                                  want.sort_values(keys).reset_index(drop=True), check_exact=True)


def test_empty_partitions_share_the_schema(small_panel, champions, reference, tmp_path):
    """Partition tasks run in process (no cluster): with far more partitions than households most are
    empty; every part file has the same schema, so the folder reads as one dataset."""
    from features.dask_build import partition_of, plan_input, stage_unit, staged_files
    from serving.batch import _load_model, resolve_model, score_partition

    plan = plan_input(small_panel)
    parts = 4000
    for u in plan.units:
        stage_unit(u, plan.schemas[(u.folder, u.table)], plan.filesystems[(u.folder, u.table)], parts, None,
                   str(tmp_path / "staging"))
    staged = staged_files(tmp_path / "staging", plan)
    model = _load_model(resolve_model("relapse", None))
    rows = [score_partition(p, staged, model, str(tmp_path / "out"), str(small_panel), None, {})["rows"]
            for p in range(10)]
    assert 0 in rows and max(rows) > 0
    got = pd.read_parquet(tmp_path / "out" / "scores")  # one dataset over empty and non-empty parts
    ref = reference["relapse"]["scores"]
    want = ref[partition_of(ref["household_id"], parts) < 10].reset_index(drop=True)
    pd.testing.assert_frame_equal(sort_scores(got), want, check_exact=True)


# (last in the file: the restarted worker would have to import the pipeline again before the next test)
def test_worker_killed_mid_run_does_not_change_the_result(small_panel, champions, reference, dask_client,
                                                           tmp_path):
    from tests.batch.plugins import KillOnce

    marker = tmp_path / "killed"
    dask_client.register_plugin(KillOnce(str(marker)), name=KillOnce.name)
    try:
        out = tmp_path / "out"
        _run("poverty", small_panel, out, dask_client, partitions=6)
    finally:
        dask_client.unregister_worker_plugin(KillOnce.name)
    assert marker.exists()  # a worker did die, right after writing the first partition
    killed = int(marker.read_text())
    _assert_equal_scores(out, reference["poverty"]["scores"])
    m = _manifest(out)
    assert m["status"] == "complete" and len(m["partitions_done"]) == 6
    assert killed not in {e["worker_pid"] for e in m["partitions_done"].values()}  # its partition was redone
    dask_client.wait_for_workers(2, timeout=120)  # the nanny restarted it

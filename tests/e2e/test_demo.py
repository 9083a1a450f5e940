"""The README's demo, end to end, as a user runs it (`tpas demo`), on a smaller panel."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tpas.settings import PROJECT_ROOT


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["demo"]["households"] = 800
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TPAS_", "MLFLOW_"))}
    env.update(TPAS_DATA_DIR=str(tmp_path / "data"), TPAS_PARAMS=str(params))
    tpas = Path(sys.executable).with_name("tpas")
    done = subprocess.run([str(tpas), "demo"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for step in ("1/6", "2/6", "3/6", "4/6", "5/6", "6/6", "demo finished"):
        assert step in out
    demo = tmp_path / "data" / "demo"
    for task in ("poverty", "relapse"):
        assert (demo / "training" / task / "dataset.parquet").exists()
    assert "model_uri: models:/tpas-poverty/" in out
    scores = pd.read_csv(demo / "scores" / "poverty-2025.csv")
    assert len(scores) > 500 and {"risk", "score", "tier", "top_reasons_en"} <= set(scores.columns)
    assert (tmp_path / "data" / "mlflow.db").exists()
    assert "Traceback" not in done.stderr

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
    # 800 households are too few for the relapse gate's AUC 0.70 (held-out AUC ~0.68): relax it here so
    # that both champions exist and the service / monitoring / roster steps run.
    raw["gate"]["relapse"]["min_auc"] = 0.6
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TPAS_", "MLFLOW_"))}
    env.update(TPAS_DATA_DIR=str(tmp_path / "data"), TPAS_PARAMS=str(params))
    tpas = Path(sys.executable).with_name("tpas")
    done = subprocess.run([str(tpas), "demo"], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for step in ("1/9", "2/9", "3/9", "4/9", "5/9", "6/9", "7/9", "demo finished"):
        assert step in out
    demo = tmp_path / "data" / "demo"
    for task in ("poverty", "relapse"):
        assert (demo / "training" / task / "dataset.parquet").exists()
    assert "model_uri: models:/tpas-poverty/" in out
    scores = pd.read_csv(demo / "scores" / "poverty-2025.csv")
    assert len(scores) > 500 and {"risk", "score", "tier", "top_reasons_en"} <= set(scores.columns)
    assert (tmp_path / "data" / "mlflow.db").exists()
    assert "Traceback" not in done.stderr
    # 7-9: the service scored the latest wave through the API, the next waves were simulated and
    # monitored (steady: no alert; shock: alert), the review lists were written
    assert "7/9 skipped" not in out, out[-3000:]
    assert "households scored" in out
    assert "monitor run after the steady wave: exit 0" in out, out[-4000:]
    assert "monitor run after the shocked wave: exit 1" in out, out[-4000:]
    assert any((tmp_path / "data" / "monitoring" / "reports").glob("*.html"))
    assert any((tmp_path / "data" / "roster").rglob("*.csv"))
    assert "/officials with the demo official key" in out

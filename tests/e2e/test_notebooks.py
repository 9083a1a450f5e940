"""End to end: the analysts' notebooks (notebooks/0*.ipynb) run top to bottom on small data.

Each notebook is executed cell by cell in a fresh Jupyter kernel (nbclient, as nbmake does) started
with the venv's own Python, with ``TPAS_DATA_DIR`` pointing at a new temporary folder: the notebook
finds nothing there and builds its small stand-in (synthetic panel, training set, MLflow runs), so
the test never touches the checkout's ``data/``. A cell that raises fails the test with the cell and
its traceback. Notebook 03 is also run in read-only mode (``TPAS_NOTEBOOK_DATA``) on the folder
notebook 02 filled, and must leave it unchanged.

The fast tests check that notebooks are stored without outputs (clean diffs) and that the read-only
mode refuses an empty folder without writing to it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import nbformat
import pytest

from tpas.settings import PROJECT_ROOT

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = {
    "01": NOTEBOOK_DIR / "01_explore_household_data.ipynb",
    "02": NOTEBOOK_DIR / "02_compare_models.ipynb",
    "03": NOTEBOOK_DIR / "03_explain_risk.ipynb",
}
#: Figures each notebook must draw at least (01 draws two more when the IDB survey is present).
MIN_FIGURES = {"01": 5, "02": 4, "03": 5}
CELL_TIMEOUT = 300  # seconds; the slowest cell (building and training in 02) takes ~40 s on 2 busy cores
#: Settings the notebooks read; cleared so the developer's environment never leaks into a test.
NOTEBOOK_ENV = ("TPAS_DATA_DIR", "TPAS_NOTEBOOK_DATA", "TPAS_NOTEBOOK_TASK", "MLFLOW_TRACKING_URI",
                "TPAS_DATABASE_URL")


# -- fast checks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(NOTEBOOKS))
def test_notebook_is_stored_without_outputs(key: str) -> None:
    nb = nbformat.read(NOTEBOOKS[key], as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("language") == "python"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and nb.cells[0].cell_type == "markdown", "a notebook opens with a note on what it is for"
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{NOTEBOOKS[key].name}: cells {dirty} carry outputs; clear them before committing"
    assert "TPAS_NOTEBOOK_DATA" in code[0].source, "the first code cell reads the settings"


def _load_setup():
    spec = importlib.util.spec_from_file_location("notebook_setup", NOTEBOOK_DIR / "_setup.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def clean_settings(monkeypatch):
    """Restore the environment and the settings caches that `NotebookContext` changes."""
    from tpas import config, settings

    for name in NOTEBOOK_ENV + ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",):
        monkeypatch.delenv(name, raising=False)
    yield
    settings.get_settings.cache_clear()
    config.get_params.cache_clear()


def test_read_only_folder_is_never_written(tmp_path, clean_settings) -> None:
    setup = _load_setup()
    ctx = setup.NotebookContext.from_environment(str(tmp_path), task="poverty")
    assert ctx.data_dir == tmp_path.resolve() and not ctx.may_build
    with pytest.raises(FileNotFoundError, match="tpas data synth"):
        ctx.panel()
    with pytest.raises(FileNotFoundError, match="tpas features build"):
        ctx.training_set()
    with pytest.raises(FileNotFoundError, match="tpas train"):
        ctx.model_runs()
    with pytest.raises(FileNotFoundError, match="tpas train"):
        ctx.model_uri()
    assert list(tmp_path.iterdir()) == []


def test_unknown_task_is_refused(clean_settings) -> None:
    setup = _load_setup()
    with pytest.raises(ValueError, match="TPAS_NOTEBOOK_TASK"):
        setup.NotebookContext.from_environment(None, task="poverty-2")


# -- running the notebooks -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    """A kernelspec folder whose one kernel runs this interpreter (the venv's), whatever the user has installed."""
    pytest.importorskip("nbclient")
    from ipykernel.kernelspec import write_kernel_spec

    folder = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(folder / "tpas-venv", overrides={"display_name": "TPAS venv", "argv": [
        sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]})
    return folder


def run_notebook(path: Path, kernel_dir: Path, **env: str) -> nbformat.NotebookNode:
    """Execute a notebook in a fresh kernel with `env` on top of a cleaned environment; return it with outputs.

    Raises `nbclient.exceptions.CellExecutionError` (cell source + traceback) when a cell raises.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    kernel_env = {k: v for k, v in os.environ.items() if k not in NOTEBOOK_ENV}
    kernel_env.update(env, MPLBACKEND="module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    km = AsyncKernelManager(kernel_name="tpas-venv", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel_dir)]))
    client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, allow_errors=False, record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=kernel_env)
    return nb


def _outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All text printed or displayed, and the number of figures drawn."""
    text, figures = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                text.append(out.text)
            elif out.output_type in ("display_data", "execute_result"):
                figures += "image/png" in out.data
                text.append(out.data.get("text/plain", ""))
    return "\n".join(text), figures


def _check(key: str, nb: nbformat.NotebookNode, data_dir: Path) -> str:
    text, figures = _outputs(nb)
    assert f"data folder: {data_dir.resolve()}" in text, "the notebook did not read the test's data folder"
    assert figures >= MIN_FIGURES[key], f"{key}: {figures} figures drawn, expected at least {MIN_FIGURES[key]}"
    return text


@pytest.mark.slow
def test_01_explore_household_data(tmp_path, kernel_dir) -> None:
    from tpas.demo import idb_survey_path

    nb = run_notebook(NOTEBOOKS["01"], kernel_dir, TPAS_DATA_DIR=str(tmp_path))
    text = _check("01", nb, tmp_path)
    assert (tmp_path / "synth-small" / "manifest.json").exists(), "the small panel was not built in the test folder"
    assert "households, waves 2016-2025" in text and "validated" in text
    if idb_survey_path() is None:
        assert "part B is skipped" in text
    else:
        assert "persons:" in text and "have members with different levels" in text


@pytest.fixture(scope="module")
def compared_folder(tmp_path_factory, kernel_dir) -> tuple[Path, nbformat.NotebookNode]:
    """Notebook 02 run on an empty data folder (it builds the panel, the training set and three models)."""
    folder = tmp_path_factory.mktemp("nb02-data")
    return folder, run_notebook(NOTEBOOKS["02"], kernel_dir, TPAS_DATA_DIR=str(folder))


@pytest.mark.slow
def test_02_compare_models(compared_folder) -> None:
    folder, nb = compared_folder
    text = _check("02", nb, folder)
    assert (folder / "mlflow.db").exists() and (folder / "training" / "poverty" / "manifest.json").exists()
    for model in ("LightGBM", "proxy means test", "scorecard"):
        assert f"{model}: at 25% of households" in text, f"no budget line for {model}"


@pytest.mark.slow
def test_03_explain_risk(tmp_path, kernel_dir) -> None:
    nb = run_notebook(NOTEBOOKS["03"], kernel_dir, TPAS_DATA_DIR=str(tmp_path))
    text = _check("03", nb, tmp_path)
    assert "training lightgbm for poverty" in text and "the latest LightGBM version" in text
    assert "主要风险" in text and "main causes:" in text, "reason codes in Chinese and English"


@pytest.mark.slow
def test_03_reads_a_given_folder_without_writing(compared_folder, kernel_dir) -> None:
    folder, _ = compared_folder
    before = {p: p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != "mlflow.db"}
    nb = run_notebook(NOTEBOOKS["03"], kernel_dir, TPAS_NOTEBOOK_DATA=str(folder))
    text = _check("03", nb, folder)
    assert "read as it is" in text and "(no run yet)" not in text
    after = {p: p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != "mlflow.db"}
    assert after == before, "the notebook wrote into a folder given as TPAS_NOTEBOOK_DATA"

"""The first cell of the analysts' notebooks: where their data is, and a small stand-in when it is missing.

Settings come from the environment (read by `NotebookContext.from_environment`):

- ``TPAS_NOTEBOOK_DATA``: a data folder laid out as `tpas` writes it (a panel, ``training/TASK``,
  the MLflow store ``mlflow.db`` + ``mlartifacts/``). It is read as it is: nothing is built or
  trained there, and a missing piece stops the notebook with a message saying what to run.
- otherwise ``TPAS_DATA_DIR`` (default ``data/`` of the checkout), the project's own folder: what a
  notebook needs and does not find there is built small on the spot, so the notebook always runs:
  a synthetic panel of `SMALL_HOUSEHOLDS` households over `SMALL_YEARS` (``synth-small/``), the
  task's training set (``training/TASK``) and models trained and registered with
  `training.commands.train`. Nothing is ever downloaded.
- ``TPAS_NOTEBOOK_TASK``: ``poverty`` (default) or ``relapse``.
- ``MLFLOW_TRACKING_URI`` as everywhere in the project (default: SQLite in the data folder).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

#: The small stand-in panel (a few seconds to build): the size and seed of the test suite's panel
#: (tests/conftest.py). Why not any seed: `tpas train` fails to log a model when the two-household input
#: example it takes from the panel has a blank yes/no field (training/commands.py `_input_example`; most
#: seeds have one), and this panel's example has none.
SMALL_HOUSEHOLDS = 1200
SMALL_YEARS = list(range(2016, 2026))
SMALL_SEED = 7
SMALL_PANEL = "synth-small"

#: Where a panel may sit in a data folder (besides the source of the task's training set).
PANEL_CANDIDATES = ("synth", "demo/panel", "panel", SMALL_PANEL)

MODEL_KINDS = {"poverty": ("lightgbm", "pmt", "scorecard"), "relapse": ("lightgbm", "pmt", "scorecard", "rules")}
KIND_NAMES = {"lightgbm": "LightGBM", "pmt": "proxy means test", "scorecard": "scorecard", "rules": "official rules"}


@contextlib.contextmanager
def _quiet_training():
    """Keep MLflow's logging chatter (signature hints, pickling notes) out of the notebook while training."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
            yield
    finally:
        logger.setLevel(level)


def _is_panel(path: Path) -> bool:
    """A registry export / synthetic panel: a folder holding households and members tables."""
    def has(table: str) -> bool:
        return any((path / f"{table}{suffix}").exists() for suffix in ("", ".parquet", ".csv", ".csv.gz"))

    return path.is_dir() and has("households") and has("members")


@dataclass
class NotebookContext:
    """Where a notebook reads from and whether it may build what is missing there."""

    data_dir: Path
    task: str
    may_build: bool
    params: object  # tpas.config.Params

    @classmethod
    def from_environment(cls, notebook_data: str | None = None, task: str = "poverty") -> "NotebookContext":
        """Read the settings (see module docstring) and point the project's settings at the data folder."""
        from tpas import config, settings

        if task not in MODEL_KINDS:
            raise ValueError(f"TPAS_NOTEBOOK_TASK must be one of {', '.join(MODEL_KINDS)} (got {task!r})")
        if notebook_data:
            folder = Path(notebook_data).expanduser().resolve()
            if not folder.is_dir():
                raise FileNotFoundError(f"TPAS_NOTEBOOK_DATA={notebook_data}: no such folder")
            os.environ["TPAS_DATA_DIR"] = str(folder)  # this kernel only: tpas.settings reads it
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # tqdm warns at import in a kernel without ipywidgets; the progress bars are off anyway.
        warnings.filterwarnings("ignore", message="IProgress not found")
        settings.get_settings.cache_clear()
        config.get_params.cache_clear()
        s = settings.get_settings()
        params = config.get_params(str(s.params_path))
        ctx = cls(data_dir=s.data_dir.resolve(), task=task, may_build=not notebook_data, params=params)
        how = ("read as it is (TPAS_NOTEBOOK_DATA)" if notebook_data else
               "TPAS_DATA_DIR; what is missing is built small on the spot")
        print(f"data folder: {ctx.data_dir}  [{how}]\ntask: {task}\nMLflow: {s.tracking_uri}")
        return ctx

    # -- what a notebook needs, found or built ------------------------------------------------------------
    def _missing(self, what: str, hint: str) -> FileNotFoundError:
        return FileNotFoundError(f"{self.data_dir} has no {what}; {hint} (or unset TPAS_NOTEBOOK_DATA to "
                                 "let the notebook build a small one in TPAS_DATA_DIR)")

    def training_set_path(self, task: str | None = None) -> Path:
        from training.commands import training_set_dir

        return training_set_dir(task or self.task)

    def panel(self) -> Path:
        """The household panel: the source of the task's training set, a known folder, or a new small one."""
        manifest = self.training_set_path() / "manifest.json"
        candidates = []
        if manifest.exists():
            candidates.append(Path(json.loads(manifest.read_text(encoding="utf-8"))["source"]["path"]))
        candidates += [self.data_dir / c for c in PANEL_CANDIDATES]
        for path in candidates:
            if _is_panel(path):
                print(f"panel: {path}")
                return path
        if not self.may_build:
            raise self._missing("household panel (synth/, demo/panel/ or panel/)",
                                "write one with `tpas data synth --out DIR/synth`")
        from features.sources.synthetic import generate_panel

        out = self.data_dir / SMALL_PANEL
        print(f"panel: none found; generating a small synthetic one ({SMALL_HOUSEHOLDS:,} households, "
              f"{SMALL_YEARS[0]}-{SMALL_YEARS[-1]}, seed {SMALL_SEED}) in {out}")
        generate_panel(out, households=SMALL_HOUSEHOLDS, years=SMALL_YEARS, seed=SMALL_SEED, params=self.params,
                       progress=False)
        return out

    def training_set(self, task: str | None = None):
        """The task's training set (`training.trainer.TrainingSet`), built from `panel()` if missing."""
        from training.trainer import load_training_set

        task = task or self.task
        path = self.training_set_path(task)
        if not (path / "manifest.json").exists():
            if not self.may_build:
                raise self._missing(f"{task} training set at {path}",
                                    f"build one with `tpas features build --task {task} --data PANEL --out {path}`")
            from features.build import build_training_set

            print(f"training set: none for {task}; building it in {path}")
            build_training_set(task, self.panel(), path, self.params)
        return load_training_set(path)

    def runs(self) -> pd.DataFrame:
        """Finished MLflow runs of the task that logged a model (one row per run, newest first)."""
        import mlflow

        from tpas.settings import get_settings
        from training.tracking import configure, model_name

        s = get_settings()
        if not self.may_build and s.mlflow_tracking_uri is None and not (self.data_dir / "mlflow.db").exists():
            return pd.DataFrame()  # opening the default store would create it in a folder we only read
        configure()
        exp = mlflow.get_experiment_by_name(model_name(self.task))
        if exp is None:
            return pd.DataFrame()
        runs = mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"])
        if runs.empty or "tags.model_kind" not in runs:
            return pd.DataFrame()
        return runs[runs["tags.model_kind"].isin(MODEL_KINDS[self.task])].reset_index(drop=True)

    def model_runs(self, kinds: tuple[str, ...] | None = None) -> pd.DataFrame:
        """The latest run of each model kind on the same training data, indexed by kind.

        The data is that of the latest LightGBM run (or of the current training set when there
        is none), so every model is judged on the same held-out households. Kinds without a
        run on that data are trained with `training.commands.train` when the folder may be
        written, else left out with a note.
        """
        from training.commands import train

        kinds = tuple(kinds or MODEL_KINDS[self.task])
        runs = self.runs()

        def latest(kind: str, data_hash: str | None) -> pd.DataFrame:
            if runs.empty:
                return runs
            hit = runs["tags.model_kind"] == kind
            if data_hash is not None:
                hit &= runs["tags.data_sha256"] == data_hash
            return runs[hit].head(1)

        ref = latest("lightgbm", None)
        data_hash = ref["tags.data_sha256"].iloc[0] if len(ref) else None
        if self.may_build:
            ts_hash = self.training_set().manifest["source"]["sha256"]
            data_hash = data_hash or ts_hash
            todo = [k for k in kinds if latest(k, data_hash).empty]
            if todo and ts_hash != data_hash:
                print(f"note: no {', '.join(todo)} run on the data of the latest LightGBM run, and the training "
                      f"set in {self.training_set_path()} is different data: they are left out")
                todo = []
            for kind in todo:
                print(f"training {kind} for {self.task} (no run yet) ...")
                with _quiet_training():
                    lines = train(self.task, None, kind, self.params)
                for line in lines:
                    print("   ", line)
            if todo:
                runs = self.runs()
        if data_hash is None:
            raise self._missing(f"MLflow run for {self.task}", f"train one with `tpas train --task {self.task}`")
        found = {k: latest(k, data_hash) for k in kinds}
        for k, r in found.items():
            if r.empty:
                print(f"note: no {k} run on data {data_hash[:10]}: left out of the comparison")
        out = pd.concat([r for r in found.values() if not r.empty]).set_index("tags.model_kind", drop=False)
        out.index.name = "model_kind"
        return out

    def model_uri(self) -> str:
        """The model to explain: the task's champion, else its latest LightGBM version (trained if none)."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from training.tracking import CHAMPION, configure, model_name, resolve_version

        name = model_name(self.task)
        if self.runs().empty and not self.may_build:
            raise self._missing(f"MLflow run for {self.task}", f"train one with `tpas train --task {self.task}`")
        configure()
        if resolve_version(self.task, CHAMPION) is not None:
            print(f"model: the champion of {name}")
            return f"models:/{name}@{CHAMPION}"
        self.model_runs(("lightgbm",))  # trains one when none exists and the folder may be written
        runs = self.runs()
        run_ids = set(runs.loc[runs["tags.model_kind"] == "lightgbm", "run_id"])
        try:
            versions = MlflowClient().search_model_versions(f"name = '{name}'")
        except MlflowException:
            versions = []
        numbers = [int(v.version) for v in versions if v.run_id in run_ids]
        if not numbers:
            raise self._missing(f"registered LightGBM version of {name}",
                                f"train one with `tpas train --task {self.task}`")
        print(f"model: no champion of {name} yet; the latest LightGBM version, {max(numbers)}")
        return f"models:/{name}/{max(numbers)}"

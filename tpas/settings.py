"""Environment settings: where data, the MLflow store and the database live.

These come from environment variables (or a `.env` file in the working directory), never
from `params.yaml`. Nothing here creates a folder or sets a URI at import time: call
`get_settings()` and then `ensure_data_dir()` where a command is about to write.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The checkout this package was installed from (editable install), used for defaults.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _default_root() -> Path:
    """The checkout when running from one, else the current directory."""
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT
    return Path.cwd()


class Settings(BaseSettings):
    """Deployment settings read from the environment.

    - ``TPAS_DATA_DIR``: folder for generated data, training sets, SQLite files (default ``data/``
      in the checkout).
    - ``MLFLOW_TRACKING_URI``: MLflow store (default: SQLite file in the data folder).
    - ``TPAS_DATABASE_URL``: SQLAlchemy URL of the inference store (default: SQLite in the data folder).
    - ``TPAS_PARAMS``: path of the parameter file (default ``params.yaml`` in the checkout).
    - ``TPAS_ID_KEY``: secret key of the pseudonymous household ids (default: a random key kept in
      ``<data_dir>/secrets/id_key``, created on first use; see `serving.pseudonym`).
    - ``TPAS_CONTRIBUTION_CACHE_ROWS``: households whose explanations each service worker keeps per
      model, so an unchanged household re-scored is not explained again (default 200,000; 0 = off).
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    data_dir: Path = Field(default_factory=lambda: _default_root() / "data", alias="TPAS_DATA_DIR")
    mlflow_tracking_uri: str | None = Field(default=None, alias="MLFLOW_TRACKING_URI")
    database_url: str | None = Field(default=None, alias="TPAS_DATABASE_URL")
    params_path: Path = Field(default_factory=lambda: _default_root() / "params.yaml", alias="TPAS_PARAMS")
    id_key: SecretStr | None = Field(default=None, alias="TPAS_ID_KEY")
    contribution_cache_rows: int = Field(default=200_000, ge=0, alias="TPAS_CONTRIBUTION_CACHE_ROWS")

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI, defaulting to SQLite in the data folder."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.data_dir.resolve() / 'mlflow.db'}"

    @property
    def db_url(self) -> str:
        """The inference-store URL, defaulting to SQLite in the data folder."""
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'tpas.db'}"

    def ensure_data_dir(self) -> Path:
        """Create the data folder if needed (called by commands that write) and return it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

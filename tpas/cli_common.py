"""What every `tpas` command module shares (kept apart from `tpas.cli`, which imports the others)."""

from __future__ import annotations

import functools

import typer

from tpas.errors import TpasError


def friendly(fn):
    """Turn `TpasError`s into a one-line ``error: ...`` message and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TpasError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(2) from None

    return wrapper


def load_params():
    """The validated parameters of the file the settings name (`TPAS_PARAMS`, default params.yaml)."""
    from tpas.config import get_params
    from tpas.settings import get_settings

    return get_params(str(get_settings().params_path))

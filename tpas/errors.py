"""Errors the CLI turns into one clear line (and a non-zero exit) instead of a traceback."""


class TpasError(Exception):
    """Base class: a problem the user can fix; its message says what and where."""


class ConfigError(TpasError):
    """`params.yaml` (or an override) holds a bad value; the message names the key."""


class DataError(TpasError):
    """An input file cannot be read or does not carry the expected records."""

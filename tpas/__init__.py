"""TPAS-ML core: typed configuration, environment settings, errors and the `tpas` CLI.

The domain packages sit beside this one: `features` (household data sources, schema,
featurizer, labels, training sets), `models`, `training`, `serving` and `monitoring`.
"""

__version__ = "0.1.0"

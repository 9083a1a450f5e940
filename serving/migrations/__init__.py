"""Alembic migrations of the inference store (run with `tpas db upgrade` or `InferenceStore.migrate()`)."""

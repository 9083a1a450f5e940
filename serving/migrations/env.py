"""Alembic environment of the inference store.

`InferenceStore.migrate()` hands its own connection in ``config.attributes["connection"]`` (so the
URL, password included, never passes through an ini file). Run standalone, the URL comes from the
``sqlalchemy.url`` option or else from `tpas.settings` (``TPAS_DATABASE_URL``). New revisions:

    from alembic import command; from serving.store import InferenceStore
    command.revision(InferenceStore().alembic_config(), "what changes", autogenerate=True)
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from serving.store import metadata

config = context.config


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from tpas.settings import get_settings

    return get_settings().db_url


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things in place
        compare_type=True,
    )


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True,
                      dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

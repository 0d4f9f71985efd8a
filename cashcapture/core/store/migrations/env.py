"""Alembic environment: runs on the connection `cashcapture.core.store.upgrade` passes in."""

from __future__ import annotations

from alembic import context

from cashcapture.core.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - the `alembic` command line
    from cashcapture.core.store.engine import make_engine

    connection = make_engine(config.get_main_option("sqlalchemy.url")).connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

"""Alembic migrations shipped inside the package, run from code (no alembic.ini)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from cashcapture.core.store.engine import make_engine, resolve_url, writer_engine

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_KEY = 0x6361736863617074  # "cashcapt": serialises concurrent upgrades on PostgreSQL


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Bring the database at ``url`` (see `resolve_url`) to ``revision``; safe to re-run."""
    engine = make_engine(resolve_url(url))
    try:
        # Several workers may start at once: one migrates, the others wait, then see head.
        with writer_engine(engine).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        engine.dispose()


def revision(message: str, url: str) -> None:
    """Autogenerate a migration against ``url`` (a database at head). Developers only."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True)
    finally:
        engine.dispose()

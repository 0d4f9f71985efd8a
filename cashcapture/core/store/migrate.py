"""Alembic migrations shipped inside the package, run from code (no alembic.ini)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

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
        with writer_engine(engine).connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # see _foreign_keys
                _foreign_keys(conn, on=False)
            try:
                _migrate(conn, revision, check_keys=sqlite)
            finally:
                if sqlite:
                    _foreign_keys(conn, on=True)
    finally:
        engine.dispose()


def _migrate(conn: Connection, revision: str, *, check_keys: bool) -> None:
    # Several workers may start at once: one migrates, the others wait, then see head.
    with conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        if check_keys and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").all()):
            raise RuntimeError(f"the migration broke {len(broken)} foreign key(s): rolled back")


def _foreign_keys(conn: Connection, *, on: bool) -> None:
    """SQLite changes a column by copying its table and dropping the old one (alembic's
    batch mode); with foreign keys enforced, that DROP would cascade to the rows that
    point at it (a fill's ingredients) or fail on them. SQLite's own procedure turns
    enforcement off around it, outside any transaction (inside one the pragma is a
    no-op), and checks the keys before committing (`upgrade`)."""
    raw = conn.connection.dbapi_connection
    assert raw is not None  # a live connection
    raw.cursor().execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


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

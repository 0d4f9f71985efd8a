"""Shared fixtures: every store test runs on SQLite and on PostgreSQL.

PostgreSQL (127.0.0.1:5432, user postgres, trust auth, database `test`, or
$CASHCAPTURE_TEST_PG) is never skipped: when it is unreachable the tests error.
Each PostgreSQL test gets its own schema (a unique name, so xdist workers never
collide), selected through the URL's ``options=-csearch_path=...`` so that any
process handed the URL (a server under test, a CLI run) lands in it too.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest
from _store_helpers import add_pharmacy
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from cashcapture.core.store import make_engine, session_factory, upgrade

PG_URL = os.environ.get("CASHCAPTURE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_conninfo() -> str:
    return make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    schema = f"cc_{uuid.uuid4().hex[:20]}"
    with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
            conn.execute("SET lock_timeout = '20s'")
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def migrated_db_url(db_url: str) -> str:
    """`db_url` brought to the latest migration."""
    upgrade(db_url)
    return db_url


@pytest.fixture
def db_engine(migrated_db_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_session(db_engine: Engine) -> Iterator[Session]:
    with session_factory(db_engine)() as session:
        yield session


@pytest.fixture
def pharmacy_id(db_engine: Engine) -> int:
    """Id of one registered pharmacy, committed (group commit tests write from other threads)."""
    with session_factory(db_engine)() as session:
        pid = add_pharmacy(session).id
        session.commit()
    return pid

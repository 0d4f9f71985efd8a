"""Engines and sessions: one place decides how a database URL becomes a durable store.

SQLite is the embedded default. It runs in WAL mode with ``synchronous=FULL``:
every commit syncs the WAL, so a capture that was answered survives a power cut;
the group committer (``groupcommit.py``) keeps that affordable by sharing one
sync among many captures.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from cashcapture.core.configfile import database_url
from cashcapture.core.private import touch_private

SQLITE_BUSY_TIMEOUT_MS = 30_000


def resolve_url(url: str | None = None) -> str:
    """The explicit URL, else $CASHCAPTURE_DB, else the default SQLite file."""
    return database_url(url)


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """Create an engine for ``url`` (see `resolve_url`), with durable SQLite settings."""
    url = resolve_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(url, **kwargs)
    database = parsed.database or ""
    memory = database in ("", ":memory:") or "mode=memory" in str(parsed)
    if not memory:  # private: SQLite gives -wal and -shm the database file's mode
        touch_private(Path(database))
    engine = create_engine(url, **kwargs)
    _configure_sqlite(engine, wal=not memory)
    return engine


def beside_database(url: str | URL, suffix: str) -> Path | None:
    """``<database file><suffix>`` for a SQLite file database; None for others and in-memory."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if "mode=memory" in str(parsed):
        return None
    return Path(database).with_name(Path(database).name + suffix)


def _switch_to_wal(cur: Any) -> None:
    """WAL mode, which the file keeps once set. Switching needs the database to itself and
    SQLite does not wait for it (no busy handler): a connection opening while another
    writes to a new database is told "locked" at once, so it waits here instead."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
    # pysqlite's own transaction handling breaks SAVEPOINT; take it over
    # (the recipe in the SQLAlchemy SQLite dialect documentation).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if wal:
            _switch_to_wal(cur)
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # Writers that read first (find, then insert) ask for IMMEDIATE so a
        # second process waits on busy_timeout instead of failing to upgrade.
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class WriterLock:
    """An exclusive lock file next to a SQLite database, for the processes that write it.

    SQLite lets one writer in at a time and makes the others poll (its busy
    handler sleeps up to 100 ms between tries), so two adapter workers on one
    SQLite file answer in bursts. Writers that take this lock first queue in
    the kernel instead and go in the moment the other commits. Other writers
    (the extract, the CLI) need not take it: SQLite's own lock stays the rule.
    A no-op for other databases and in-memory SQLite.
    """

    def __init__(self, engine: Engine) -> None:
        self.path = beside_database(engine.url, ".writer-lock")
        self._fd: int | None = None

    def __enter__(self) -> WriterLock:
        if self.path is not None:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def writer_engine(engine: Engine) -> Engine:
    """The same engine, opening write transactions (BEGIN IMMEDIATE on SQLite)."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(sqlite_immediate=True)
    return engine


def session_factory(engine: Engine, **kwargs) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit."""
    kwargs.setdefault("expire_on_commit", False)
    return sessionmaker(bind=engine, **kwargs)

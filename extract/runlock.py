"""One extract/submit run at a time, across processes.

PostgreSQL: a session advisory lock, held on its own connection, so every
machine sharing the database sees it and a killed process releases it when its
connection drops. SQLite (and anything else): `flock` on a file next to the
database, released by the kernel when the process dies. Neither leaves a stale
lock behind after SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

LOCK_KEY = 0x43434150  # "CCAP"; the second key is the schema, so schemas don't collide


class AlreadyRunning(RuntimeError):
    """Another run holds the lock."""


def lock_path_for(url: str) -> Path:
    """The lock file next to a SQLite database (temp dir for in-memory ones)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        db = Path(u.database)
        return db.with_name(db.name + ".run.lock")
    safe = "".join(c if c.isalnum() else "_" for c in u.render_as_string(hide_password=True))
    return Path(tempfile.gettempdir()) / f"cashcapture-{safe[:100]}.run.lock"


@contextmanager
def run_lock(engine: Engine, lock_file: str | Path | None = None) -> Iterator[None]:
    """Hold the run lock for the block; raise AlreadyRunning if it is taken."""
    if engine.dialect.name == "postgresql" and not lock_file:
        with engine.connect() as conn:
            got = conn.execute(
                text("SELECT pg_try_advisory_lock(:k, hashtext(current_schema()))"),
                {"k": LOCK_KEY},
            ).scalar()
            conn.commit()
            if not got:
                raise AlreadyRunning("another extract/submit run holds the database lock")
            try:
                yield
            finally:
                conn.execute(
                    text("SELECT pg_advisory_unlock(:k, hashtext(current_schema()))"),
                    {"k": LOCK_KEY},
                )
                conn.commit()
        return
    path = Path(lock_file) if lock_file else lock_path_for(engine.url.render_as_string(False))
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise AlreadyRunning(f"another extract/submit run holds {path}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)

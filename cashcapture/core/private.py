"""Files and folders that hold patient data: created 0600 / 0700 whatever the umask.

The database and its -wal/-shm (SQLite gives those the database file's mode),
the outbox, the collector's files, the spool, keys and HTML reports all go
through here or are created by a process whose umask `cli.main` set to 077.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE, DIR_MODE = 0o600, 0o700


def private_dir(path: Path) -> Path:
    """`path` and its missing parents, made 0700 (existing folders are left as they are)."""
    missing = []
    p = Path(path)
    while not p.exists():
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode is filtered by the umask
    return Path(path)


def touch_private(path: Path) -> None:
    """Create `path` empty and 0600 if it does not exist (in a 0700 folder if new)."""
    private_dir(Path(path).parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        if os.fstat(fd).st_size == 0:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole (temporary file renamed over it), mode 0600."""
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, path)

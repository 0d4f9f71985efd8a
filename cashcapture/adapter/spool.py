"""The capture spool: insured answers whose capture the store could not commit.

An insured payer that has paid a claim has paid it: the pharmacy gets the
payer's answer whatever the store does. When the capture cannot be committed,
the request and the payer's response are appended here first, synced to disk,
and only then relayed; the adapter replays the spool into the store at start
and periodically after, and removes a record only once its capture has
committed. Replaying a record twice is harmless (the caller recognises a
capture already stored; the fill key is unique anyway).

One file (on a local disk), shared by every worker of a host: appends and
the removal of replayed records take an exclusive ``flock``, held briefly.
Records are length-prefixed with a CRC: ``CCS1``, request length, response
length, received time (µs since the epoch), request, response, CRC32 of all
before it. A record cut short by a crash (never answered: the answer leaves
only after the sync) is dropped. The file holds patient data: mode 0600, and
nothing of a record is ever logged.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import OperationalError

from cashcapture.adapter import logs
from cashcapture.core.store.engine import beside_database

log = logging.getLogger("cashcapture.spool")

MAGIC = b"CCS1"
_HEAD = struct.Struct(">4sIIQ")
_CRC = struct.Struct(">I")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DEFAULT_NAME = "cashcapture.spool"
#: The store is down (or hung): keep this record and every one after it for the next replay.
_STORE_DOWN = (OperationalError, TimeoutError)
_CREATE = os.O_RDWR | os.O_CREAT


@dataclass(frozen=True)
class Record:
    request: bytes
    response: bytes
    received_at: dt.datetime


def spool_path(setting: str, db_url: str) -> Path:
    """The configured path, else ``<database>.spool`` beside a SQLite file, else
    ``cashcapture.spool`` in the working folder."""
    if setting:
        return Path(setting).expanduser()
    return beside_database(db_url, ".spool") or Path(DEFAULT_NAME)


def encode(record: Record) -> bytes:
    micros = (record.received_at - _EPOCH) // dt.timedelta(microseconds=1)
    head = _HEAD.pack(MAGIC, len(record.request), len(record.response), micros)
    body = head + record.request + record.response
    return body + _CRC.pack(zlib.crc32(body))


def decode(data: bytes) -> tuple[list[tuple[bytes, Record]], int]:
    """Every whole record of ``data`` (raw bytes, record), and the count of bytes skipped.

    A damaged record is skipped up to the next one whose CRC holds.
    """
    out: list[tuple[bytes, Record]] = []
    pos = skipped = 0
    while pos < len(data):
        record, end = _read_one(data, pos)
        if record is None:
            nxt = data.find(MAGIC, pos + 1)
            nxt = len(data) if nxt < 0 else nxt
            skipped += nxt - pos
            pos = nxt
            continue
        out.append((data[pos:end], record))
        pos = end
    return out, skipped


def _read_one(data: bytes, pos: int) -> tuple[Record | None, int]:
    if len(data) - pos < _HEAD.size:
        return None, pos
    magic, req_len, resp_len, micros = _HEAD.unpack_from(data, pos)
    end = pos + _HEAD.size + req_len + resp_len + _CRC.size
    if magic != MAGIC or end > len(data):
        return None, pos
    (crc,) = _CRC.unpack_from(data, end - _CRC.size)
    if crc != zlib.crc32(data[pos : end - _CRC.size]):
        return None, pos
    start = pos + _HEAD.size
    split = start + req_len
    received = _EPOCH + dt.timedelta(microseconds=micros)
    return Record(data[start:split], data[split : end - _CRC.size], received), end


class Spool:
    """Append and replay, safe across threads and processes (blocking calls)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def append(self, record: Record) -> None:
        """Add ``record`` and sync it; on return it survives a power cut. Raises OSError."""
        data = encode(record)
        fd = self._open_locked(os.O_WRONLY | os.O_APPEND)
        try:
            end = os.fstat(fd).st_size
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, end)  # leave no part of it behind
                raise
            if end == 0:
                _sync_dir(self.path)
        finally:
            os.close(fd)

    def replay(self, capture: Callable[[Record], object]) -> tuple[int, int]:
        """Pass each record to ``capture`` (which commits it); drop those it took.

        Returns (replayed, kept). A record whose capture raises is kept; the
        store being down (`_STORE_DOWN`) keeps it and every one after it. The
        spool is not locked while the store works, so appends never wait on
        it; one replay at a time (another process replaying: returns (0, 0)).
        """
        if not self.pending():
            return 0, 0
        guard = os.open(self.path.with_name(self.path.name + ".replay-lock"), _CREATE, 0o600)
        try:
            try:
                fcntl.flock(guard, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return 0, 0
            fd = self._open_locked(os.O_RDONLY)
            try:
                taken = _read_all(fd)
            finally:
                os.close(fd)
            records, skipped = decode(taken)
            kept: list[bytes] = []
            done = 0
            for i, (raw, record) in enumerate(records):
                try:
                    capture(record)
                except _STORE_DOWN as exc:
                    kept.extend(raw for raw, _ in records[i:])
                    left = f"{len(records) - i} kept"
                    logs.event(log, "spool_replay_stopped", logging.WARNING,
                               error=type(exc).__name__, reason=left)  # fmt: skip
                    break
                except Exception as exc:  # this record alone; never its content in the log
                    kept.append(raw)
                    logs.event(log, "spool_record_failed", logging.WARNING,
                               error=type(exc).__name__)  # fmt: skip
                else:
                    done += 1
            if skipped:
                logs.event(log, "spool_damaged", logging.WARNING, reason=f"{skipped} bytes dropped")
            if done or skipped:
                self._replace_prefix(taken, b"".join(kept))
            if done:
                logs.event(log, "spool_replayed", captured=done, reason=f"{len(kept)} kept")
            return done, len(kept)
        finally:
            os.close(guard)

    def _replace_prefix(self, taken: bytes, kept: bytes) -> None:
        """The file's first bytes were ``taken``: keep ``kept`` of them, and whatever was
        appended since."""
        fd = self._open_locked(os.O_RDWR)
        try:
            current = _read_all(fd)
            if not current.startswith(taken):  # only a replay removes; be safe all the same
                return
            rest = kept + current[len(taken) :]
            if not rest:
                os.ftruncate(fd, 0)
                os.fsync(fd)
                return
            # a new file renamed over the old: a crash leaves one or the other, whole
            tmp = self.path.with_name(self.path.name + ".tmp")
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.fchmod(out, 0o600)
                _write_all(out, rest)
                os.fsync(out)
            finally:
                os.close(out)
            os.replace(tmp, self.path)
            _sync_dir(self.path)
        finally:
            os.close(fd)

    def _open_locked(self, flags: int) -> int:
        """The spool file open and exclusively locked (the one now at the path, not a
        file a replay has just replaced)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, flags | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                mine = os.fstat(fd)
                now = os.stat(self.path)
                if (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino):
                    os.fchmod(fd, 0o600)
                    return fd
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _sync_dir(path: Path) -> None:
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

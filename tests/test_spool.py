"""The capture spool's file: synced length-prefixed records, 0600, removed only once taken."""

from __future__ import annotations

import datetime as dt
import os
import stat
import threading

import pytest
from sqlalchemy.exc import OperationalError

from cashcapture.adapter.spool import Record, Spool, encode, spool_path

AT = dt.datetime(2024, 3, 4, 12, 30, 1, 123456, tzinfo=dt.UTC)


def rec(n: int) -> Record:
    return Record(b"request %d \x00\x1c\x1d" % n, b"response %d" % n * n, AT)


def replay_all(spool: Spool) -> list[Record]:
    got: list[Record] = []
    spool.replay(got.append)
    return got


def test_records_round_trip_in_order_then_leave_the_spool(tmp_path):
    spool = Spool(tmp_path / "sub" / "x.spool")
    assert not spool.pending() and spool.replay(lambda r: None) == (0, 0)
    spool.append(rec(1))
    spool.append(rec(2))
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600  # patient data
    assert spool.pending()
    assert replay_all(spool) == [rec(1), rec(2)]
    assert not spool.pending() and replay_all(spool) == []


def test_a_wider_mode_is_narrowed(tmp_path):
    path = tmp_path / "x.spool"
    path.write_bytes(b"")
    path.chmod(0o644)
    Spool(path).append(rec(1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_failed_captures_stay_and_store_down_keeps_the_rest(tmp_path):
    spool = Spool(tmp_path / "x.spool")
    for n in range(1, 6):
        spool.append(rec(n))
    taken: list[Record] = []

    def capture(r: Record) -> None:
        if r == rec(2):
            raise ValueError("this record alone")
        if r == rec(4):
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        taken.append(r)

    assert spool.replay(capture) == (2, 3)
    assert taken == [rec(1), rec(3)]
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o600  # the rewritten file too
    assert replay_all(spool) == [rec(2), rec(4), rec(5)]


def test_damaged_bytes_are_skipped_not_the_records_around_them(tmp_path):
    spool = Spool(tmp_path / "x.spool")
    spool.append(rec(1))
    with open(spool.path, "ab") as fh:
        fh.write(encode(rec(9))[:-7])  # a record cut short
    spool.append(rec(2))
    with open(spool.path, "ab") as fh:
        fh.write(encode(rec(8))[:20])  # a torn tail
    assert replay_all(spool) == [rec(1), rec(2)]
    assert spool.path.stat().st_size == 0


def test_appends_go_on_while_a_replay_waits_on_the_store(tmp_path):
    spool = Spool(tmp_path / "x.spool")
    spool.append(rec(1))
    spool.append(rec(2))
    in_replay, go_on = threading.Event(), threading.Event()

    def capture(r: Record) -> None:
        if r == rec(1):
            in_replay.set()
            assert go_on.wait(10)
            raise ValueError("kept: the file is rewritten, not truncated")

    replayer = threading.Thread(target=spool.replay, args=(capture,))
    replayer.start()
    assert in_replay.wait(10)
    Spool(spool.path).append(rec(3))  # does not wait for the replay
    assert Spool(spool.path).replay(capture) == (0, 0)  # one replay at a time
    go_on.set()
    replayer.join(10)
    assert replay_all(spool) == [rec(1), rec(3)]  # kept, then what came meanwhile


@pytest.mark.parametrize(
    ("setting", "db", "expected"),
    [
        ("/srv/cc/claims.spool", "sqlite:///x.db", "/srv/cc/claims.spool"),
        ("", "sqlite:////var/lib/cc/cashcapture.db", "/var/lib/cc/cashcapture.db.spool"),
        ("", "postgresql+psycopg://postgres@127.0.0.1:5432/test", "cashcapture.spool"),
        ("", "sqlite://", "cashcapture.spool"),
    ],
)
def test_spool_path(setting, db, expected):
    assert str(spool_path(setting, db)) == expected


def test_a_new_spool_folder_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "new" / "x.spool")
        spool.append(rec(1))
    finally:
        os.umask(old)
    assert stat.S_IMODE(spool.path.parent.stat().st_mode) == 0o700  # holds patient data

"""SFTP delivery against a real loopback server, store on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import asyncssh
import pytest
from _sftp_server import remote_files, settings_for, sftp_server  # noqa: F401
from _store_helpers import add_pharmacy, capture, revise_fill, void_fill
from sqlalchemy import select

from cashcapture.core.store import (
    Fill,
    Submission,
    SubmissionRecord,
    make_engine,
    session_factory,
)
from extract.settings import SettingsError
from extract.submit import Refused, submit


@pytest.fixture
def sessions(migrated_db_url):
    engine = make_engine(migrated_db_url)
    yield session_factory(engine)
    engine.dispose()


def written(sessions, tmp_path: Path, name: str, fills: list[Fill], body: bytes = b"") -> int:
    """A file the extract would have written: local copy, row, records."""
    local = tmp_path / "outbox" / name
    local.parent.mkdir(exist_ok=True)
    local.write_bytes(body or f"TH*4.1*{name}~TT*{name}*2~".encode())
    with sessions.begin() as s:
        sub = Submission(file_name=name, submitter_id="FP1234563", path=str(local))
        s.add(sub)
        s.flush()
        for f in fills:
            f = s.merge(f)
            s.add(
                SubmissionRecord(
                    submission_id=sub.id,
                    fill_id=f.id,
                    reporting_status=f.reporting_status,
                    fill_version=f.version,
                )
            )
        return sub.id


def make_fills(sessions, n: int = 2) -> list[Fill]:
    with sessions.begin() as s:
        ph = add_pharmacy(s)
        fills = [capture(s, ph.id, rx=f"10000{i}") for i in range(n)]
    return fills


def states(sessions) -> dict[str, str]:
    with sessions() as s:
        return {sub.file_name: sub.state for sub in s.scalars(select(Submission))}


def test_delivers_each_file_once_and_marks_fills(sessions, sftp_server, tmp_path):  # noqa: F811
    fills = make_fills(sessions)
    written(sessions, tmp_path, "PMP_KY_FP1234563_9004_20240305010000.dat", fills[:1])
    written(sessions, tmp_path, "PMP_KY_FP1234563_9004_20240305010001.dat", fills[1:])
    settings = settings_for(sftp_server, tmp_path)
    result = submit(sessions, settings)
    assert result.ok and len(result.uploaded) == 2
    assert remote_files(sftp_server) == [
        "PMP_KY_FP1234563_9004_20240305010000.dat",
        "PMP_KY_FP1234563_9004_20240305010001.dat",
    ]
    body = (sftp_server.root / "PMP_KY_FP1234563_9004_20240305010000.dat").read_bytes()
    assert body == (tmp_path / "outbox" / "PMP_KY_FP1234563_9004_20240305010000.dat").read_bytes()
    assert set(states(sessions).values()) == {"uploaded"}
    with sessions() as s:
        for f in s.scalars(select(Fill)):
            assert (f.reported_status, f.needs_report) == ("00", False)
            assert f.reported_at is not None and f.last_submission_id is not None
    # A second run has nothing to do and sends nothing again.
    again = submit(sessions, settings)
    assert again.uploaded == [] and again.recovered == []
    assert len(remote_files(sftp_server)) == 2


def test_unknown_host_key_is_refused(sessions, sftp_server, tmp_path):  # noqa: F811
    written(sessions, tmp_path, "PMP_KY_A_1_20240305010000.dat", make_fills(sessions, 1))
    stranger = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    with pytest.raises(Refused, match="not the pinned key"):
        submit(sessions, settings_for(sftp_server, tmp_path, host_key=stranger))
    assert remote_files(sftp_server) == []
    assert set(states(sessions).values()) == {"uploading"}
    with sessions() as s:
        assert all(f.reported_status is None for f in s.scalars(select(Fill)))


def test_no_pinned_key_is_a_settings_error(sessions, sftp_server, tmp_path):  # noqa: F811
    written(sessions, tmp_path, "PMP_KY_A_1_20240305010000.dat", make_fills(sessions, 1))
    with pytest.raises(SettingsError, match="pin"):
        submit(sessions, settings_for(sftp_server, tmp_path, host_key=""))
    assert states(sessions) == {"PMP_KY_A_1_20240305010000.dat": "written"}


def test_network_faults_are_retried_with_backoff(sessions, sftp_server, tmp_path):  # noqa: F811
    written(sessions, tmp_path, "PMP_KY_A_1_20240305010000.dat", make_fills(sessions, 1))
    sftp_server.drop_next(2)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    result = submit(sessions, settings_for(sftp_server, tmp_path, backoff=0.5), sleep=sleep)
    assert result.ok and result.retries == 2
    assert waits == [0.5, 1.0]
    assert sftp_server.dropped == 2
    assert remote_files(sftp_server) == ["PMP_KY_A_1_20240305010000.dat"]


def test_gives_up_after_retries_and_keeps_the_file_pending(sessions, sftp_server, tmp_path):  # noqa: F811
    written(sessions, tmp_path, "PMP_KY_A_1_20240305010000.dat", make_fills(sessions, 1))
    sftp_server.drop_next(10)

    async def sleep(seconds: float) -> None:
        return None

    result = submit(sessions, settings_for(sftp_server, tmp_path, retries=3), sleep=sleep)
    assert (
        not result.ok
        and "gave up after 3 attempts" in result.failed["PMP_KY_A_1_20240305010000.dat"]
    )
    assert remote_files(sftp_server) == []
    with sessions() as s:
        sub = s.scalars(select(Submission)).one()
        assert sub.state == "uploading" and sub.attempts == 3 and "network fault" in sub.last_error
    sftp_server.drop_next(0)
    assert submit(sessions, settings_for(sftp_server, tmp_path)).ok
    assert remote_files(sftp_server) == ["PMP_KY_A_1_20240305010000.dat"]


def test_uploading_file_already_renamed_is_only_marked(sessions, sftp_server, tmp_path):  # noqa: F811
    name = "PMP_KY_A_1_20240305010000.dat"
    sid = written(sessions, tmp_path, name, make_fills(sessions, 1))
    with sessions.begin() as s:
        s.get_one(Submission, sid).state = "uploading"
    (sftp_server.root / name).write_bytes(b"as renamed before the crash")
    result = submit(sessions, settings_for(sftp_server, tmp_path))
    assert result.recovered == [name] and result.uploaded == []
    assert (sftp_server.root / name).read_bytes() == b"as renamed before the crash"
    assert states(sessions) == {name: "uploaded"}


def test_uploading_file_with_partial_temp_is_sent_again(sessions, sftp_server, tmp_path):  # noqa: F811
    name = "PMP_KY_A_1_20240305010000.dat"
    sid = written(sessions, tmp_path, name, make_fills(sessions, 1), body=b"X" * 100_000)
    with sessions.begin() as s:
        s.get_one(Submission, sid).state = "uploading"
    (sftp_server.root / (name + ".part")).write_bytes(b"X" * 10)
    result = submit(sessions, settings_for(sftp_server, tmp_path))
    assert result.uploaded == [name]
    assert remote_files(sftp_server) == [name]
    assert (sftp_server.root / name).read_bytes() == b"X" * 100_000


def test_remote_dir_setting(sessions, sftp_server, tmp_path):  # noqa: F811
    (sftp_server.root / "inbox").mkdir()
    written(sessions, tmp_path, "PMP_KY_A_1_20240305010000.dat", make_fills(sessions, 1))
    assert submit(sessions, settings_for(sftp_server, tmp_path, remote_dir="/inbox")).ok
    assert remote_files(sftp_server) == ["inbox"]
    assert [p.name for p in (sftp_server.root / "inbox").iterdir()] == [
        "PMP_KY_A_1_20240305010000.dat"
    ]


def test_fill_changed_in_flight_stays_queued(sessions, sftp_server, tmp_path):  # noqa: F811
    fills = make_fills(sessions, 2)
    written(sessions, tmp_path, "PMP_KY_A_1_20240305010000.dat", fills)
    with sessions.begin() as s:  # a rebill and a reversal arrive while the 00s are in flight
        revise_fill(s, s.get_one(Fill, fills[0].id), {"quantity": 60})
        void_fill(s, s.get_one(Fill, fills[1].id))
    assert submit(sessions, settings_for(sftp_server, tmp_path)).ok
    with sessions() as s:
        revised, voided = s.get_one(Fill, fills[0].id), s.get_one(Fill, fills[1].id)
        assert (revised.reported_status, revised.needs_report) == ("00", True)
        assert revised.reporting_status == "01"
        assert (voided.reported_status, voided.needs_report) == ("00", True)
        assert voided.reporting_status == "02"

"""SIGKILL the real `cashcapture submit` process mid-delivery, re-run, count on the server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _extract_helpers import TODAY, good_fill, pharmacies, sessions, settings  # noqa: F401
from _sftp_server import remote_files, sftp_server  # noqa: F401
from sqlalchemy import func, select

from cashcapture.core.store import Fill, Submission, SubmissionRecord
from extract.daily import extract
from extract.sftp_server import LoopbackSftpServer

pytestmark = pytest.mark.slow


def write_config(tmp_path: Path, server: LoopbackSftpServer) -> Path:
    assert server.info is not None
    config = tmp_path / "cashcapture.toml"
    config.write_text(
        '[extract]\ntimezone = "UTC"\noutbox = "outbox"\n\n'
        + server.info.toml()
        + "backoff = 0.05\nretries = 3\n"
    )
    return config


PAUSED_SUBMIT = Path(__file__).with_name("_submit_paused.py")


def run_submit(url: str, config: Path, pause: str | None = None, pause_file: Path | None = None):
    args = ["submit", "--db", url, "--config", str(config)]
    if pause:  # the fault-injection seam, set by a test helper in the child process
        command = [sys.executable, str(PAUSED_SUBMIT), pause, str(pause_file), *args]
    else:
        command = [sys.executable, "-m", "cli", *args]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_when_paused(proc: subprocess.Popen, pause_file: Path, times: int = 1) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if pause_file.exists() and len(pause_file.read_text().splitlines()) >= times:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            return
        if proc.poll() is not None:
            raise AssertionError(f"submit exited early: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("submit never reached the pause point")


def prepare(sessions, tmp_path, sftp_server):  # noqa: F811
    with sessions.begin() as s:
        ph = pharmacies(s)
        for i in range(3):
            good_fill(s, ph["solo"], f"A{i}")
        good_fill(s, ph["chain1"], "C1")
    cfg = settings(tmp_path, zero_reports="off")
    result = extract(sessions, cfg, TODAY)
    names = [f.name for f in result.files]  # delivery order: oldest row first
    assert len(names) == 2
    return write_config(tmp_path, sftp_server), names


def assert_delivered_once(sessions, sftp_server, names):  # noqa: F811
    assert remote_files(sftp_server) == sorted(names)  # each final name once, no temp left
    with sessions() as s:
        assert {sub.state for sub in s.scalars(select(Submission))} == {"uploaded"}
        assert s.scalar(select(func.count()).select_from(Submission)) == 2
        fills = s.scalars(select(Fill)).all()
        assert all(f.reported_status == "00" and not f.needs_report for f in fills)
        counts = s.execute(
            select(SubmissionRecord.fill_id, func.count()).group_by(SubmissionRecord.fill_id)
        ).all()
        assert len(counts) == 4 and {n for _, n in counts} == {1}
    for name in names:
        data = (sftp_server.root / name).read_bytes()
        # the default profile (KASPER today) writes ASAP 4.2
        assert data.startswith(b"TH*4.2*") and data.rstrip(b"~").split(b"~")[-1].startswith(b"TT")


@pytest.mark.parametrize("point", ["after-upload", "after-rename"])
def test_killed_mid_delivery_rerun_delivers_each_file_once(
    sessions,  # noqa: F811
    sftp_server,  # noqa: F811
    tmp_path,
    migrated_db_url,
    point,
):
    config, names = prepare(sessions, tmp_path, sftp_server)
    pause_file = tmp_path / "paused"
    proc = run_submit(migrated_db_url, config, point, pause_file)
    kill_when_paused(proc, pause_file)
    first = names[0]
    on_server = remote_files(sftp_server)
    if point == "after-upload":
        assert on_server == [first + ".part"]
    else:
        assert on_server == [first]
    with sessions() as s:
        assert s.scalars(select(Submission).where(Submission.file_name == first)).one().state == (
            "uploading"
        )
        assert all(f.reported_status is None for f in s.scalars(select(Fill)))

    rerun = run_submit(migrated_db_url, config)
    out, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err.decode()
    if point == "after-rename":
        assert b"found on the server after an interrupted run" in out
    assert_delivered_once(sessions, sftp_server, names)


def test_killed_between_commit_and_next_file(sessions, sftp_server, tmp_path, migrated_db_url):  # noqa: F811
    """Second file's upload: the first is committed, the second resumes."""
    config, names = prepare(sessions, tmp_path, sftp_server)
    pause_file = tmp_path / "paused"
    proc = run_submit(migrated_db_url, config, "after-commit", pause_file)
    kill_when_paused(proc, pause_file)
    assert remote_files(sftp_server) == [names[0]]
    proc = run_submit(migrated_db_url, config)
    assert proc.wait(60) == 0
    assert_delivered_once(sessions, sftp_server, names)
